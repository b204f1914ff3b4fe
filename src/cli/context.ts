import type { Logger } from '../common/index.js'
import type { EngineClient } from './client.js'
import type { ProgressSink } from './progress.js'

/** The process's streams and environment, passed in so tests can run commands in-process. */
export interface CliIO {
  stdout: ProgressSink
  stderr: { write: (chunk: string) => unknown }
  env: Record<string, string | undefined>
  /** Aborted on SIGINT/SIGTERM: cancels in-flight requests (a pull stops on the daemon too). */
  signal?: AbortSignal
  now?: () => number
}

/** What every command gets: output, the daemon client (created on first use) and exit status. */
export interface CommandContext {
  readonly io: CliIO
  readonly signal: AbortSignal | undefined
  now: () => number
  client: () => EngineClient
  logger: () => Logger
  /** Set by commands that report some failures and carry on (rmi, inspect of several names). */
  exitCode: number
  out: (text: string) => void
  /** One `joey: <message>` line on stderr. */
  error: (message: string) => void
}
