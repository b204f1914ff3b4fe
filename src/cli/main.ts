// Entry point of the `joey` command (bin/joey.js): wires the real process to runCli.
import { runCli } from './cli.js'

const controller = new AbortController()
let interrupted = false
const onSignal = (): void => {
  // A second ^C leaves at once, even if a request is slow to unwind.
  if (interrupted) process.exit(130)
  interrupted = true
  controller.abort()
}
process.on('SIGINT', onSignal)
process.on('SIGTERM', onSignal)
// `joey images | head -1` closes the pipe early; that is not an error worth a stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0)
  throw err
})

process.exitCode = await runCli(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  signal: controller.signal
})
process.off('SIGINT', onSignal)
process.off('SIGTERM', onSignal)
