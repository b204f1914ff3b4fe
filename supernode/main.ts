import '../src/common/polyfill.js'
import { readFileSync } from 'node:fs'
import { CommanderError } from 'commander'
import { errorMessage, isJoeyError } from '../src/common/index.js'
import { parseSwarmKey } from '../src/p2p/index.js'
import { parseSupernodeConfig } from './config.js'
import { createSupernode } from './index.js'

async function main (): Promise<void> {
  let config
  try {
    config = parseSupernodeConfig(process.argv.slice(2), (path) => parseSwarmKey(readFileSync(path, 'utf8')))
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2)
    process.stderr.write(`joey-supernode: ${errorMessage(err)}\n`)
    process.exit(isJoeyError(err) ? 2 : 1)
  }
  const node = createSupernode(config)
  let stopping = false
  const shutdown = (signal: string): void => {
    if (stopping) return
    stopping = true
    node.stop().then(() => process.exit(0), (err) => {
      process.stderr.write(`joey-supernode: error while stopping on ${signal}: ${errorMessage(err)}\n`)
      process.exit(1)
    })
  }
  process.on('SIGTERM', () => shutdown('SIGTERM'))
  process.on('SIGINT', () => shutdown('SIGINT'))
  try {
    await node.start()
  } catch (err) {
    process.stderr.write(`joey-supernode: cannot start: ${errorMessage(err)}\n`)
    await node.stop().catch(() => {})
    process.exit(1)
  }
}

void main()
