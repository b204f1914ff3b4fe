// joeyd's entry (bin/joeyd.js). stdout stays empty: logs go to stderr through pino, and a
// fatal error is one line on stderr. Exit status: 0 after a clean stop, 1 when the daemon
// fails, 2 for invalid configuration.
import '../common/polyfill.js'
import { CommanderError } from 'commander'
import { errorMessage, isJoeyError } from '../common/index.js'
import { createAgent, parseAgentConfig, type AgentConfig } from './index.js'

function fatal (message: string, code: number): never {
  process.stderr.write(`joeyd: ${message.split('\n')[0]!}\n`)
  process.exit(code)
}

let config: AgentConfig
try {
  config = parseAgentConfig(process.argv.slice(2), process.env)
} catch (err) {
  if (err instanceof CommanderError && err.exitCode === 0) process.exit(0)
  fatal(errorMessage(err), isJoeyError(err, 'ERR_INVALID_CONFIG') ? 2 : 1)
}

const agent = createAgent(config)
let stopping = false
const stop = (signal: string): void => {
  // A second signal does not wait for the graceful stop.
  if (stopping) fatal(`${signal} again: exiting without a clean stop`, 1)
  stopping = true
  agent.stop().then(() => process.exit(0), (err: unknown) => { fatal(`error while stopping: ${errorMessage(err)}`, 1) })
}
process.on('SIGTERM', () => { stop('SIGTERM') })
process.on('SIGINT', () => { stop('SIGINT') })
process.on('uncaughtException', (err) => { fatal(`internal error: ${errorMessage(err)}`, 1) })
process.on('unhandledRejection', (err) => { fatal(`internal error: ${errorMessage(err)}`, 1) })

try {
  await agent.start()
} catch (err) {
  await agent.stop().catch(() => {})
  fatal(`cannot start: ${errorMessage(err)}`, 1)
}
