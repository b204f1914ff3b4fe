import { Command, CommanderError, Option } from 'commander'
import { createLogger, isJoeyError, type Logger } from '../common/index.js'
import { EngineClient } from './client.js'
import { registerContainers } from './commands/containers.js'
import { registerImages } from './commands/images.js'
import { registerInspect } from './commands/inspect.js'
import { registerMirror } from './commands/mirror.js'
import { registerPull } from './commands/pull.js'
import { registerRmi } from './commands/rmi.js'
import { registerTag } from './commands/tag.js'
import { registerVersion } from './commands/version.js'
import { DEFAULT_HOST, HOST_ENV } from './constants.js'
import type { CliIO, CommandContext } from './context.js'
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError } from './errors.js'
import { CLIENT_NAME, CLIENT_VERSION } from './meta.js'

export type { CliIO, CommandContext } from './context.js'

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal']
/** Conventional status for a process ended by SIGINT. */
const EXIT_INTERRUPTED = 130

interface GlobalOptions {
  host?: string
  logLevel: string
}

/** Builds the program; exposed so tests and docs can walk the command tree. */
export function createProgram (ctx: CommandContext): Command {
  const program = new Command(CLIENT_NAME)
    .description('Command-line client of joeyd, the Joey node agent (Docker Engine API compatible)')
    .version(`${CLIENT_NAME} version ${CLIENT_VERSION}`, '-v, --version', 'print the client version and exit')
    .option('-H, --host <address>', `daemon address, unix:///path or tcp://host:port (default: $${HOST_ENV} or ${DEFAULT_HOST})`)
    .addOption(new Option('--log-level <level>', 'client log level (logs go to stderr)').choices(LOG_LEVELS).default('info'))
    .helpCommand(true)
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({
      writeOut: (s) => { ctx.io.stdout.write(s) },
      writeErr: (s) => { ctx.io.stderr.write(s) },
      outputError: (s, write) => { write(`${CLIENT_NAME}: ${s.replace(/^error: /, '').trimEnd()}\nSee '${CLIENT_NAME} --help'.\n`) }
    })
  registerPull(program, ctx)
  registerImages(program, ctx)
  registerRmi(program, ctx)
  registerTag(program, ctx)
  registerInspect(program, ctx)
  registerVersion(program, ctx)
  registerMirror(program, ctx)
  registerContainers(program, ctx)
  return program
}

/** Runs one command line (without the node and script arguments) and returns the exit status. */
export async function runCli (argv: string[], io: CliIO): Promise<number> {
  let client: EngineClient | undefined
  let logger: Logger | undefined
  // Read lazily: the global options are known only once commander has parsed them.
  const globals = (): GlobalOptions => program.opts<GlobalOptions>()
  const getLogger = (): Logger => {
    logger ??= createLogger({ level: globals().logLevel, format: 'json', name: CLIENT_NAME })
    return logger
  }
  const ctx: CommandContext = {
    io,
    signal: io.signal,
    now: io.now ?? Date.now,
    exitCode: EXIT_OK,
    logger: getLogger,
    client: () => {
      const host = globals().host ?? nonEmpty(io.env[HOST_ENV]) ?? DEFAULT_HOST
      client ??= new EngineClient({ host, logger: getLogger() })
      return client
    },
    out: (text) => { io.stdout.write(text) },
    error: (message) => { io.stderr.write(`${CLIENT_NAME}: ${message}\n`) }
  }
  const program = createProgram(ctx)
  try {
    await program.parseAsync(argv, { from: 'user' })
    return ctx.exitCode
  } catch (err) {
    return exitStatus(err, ctx, logger)
  } finally {
    await client?.close().catch(() => {})
    logger?.flush()
  }
}

function exitStatus (err: unknown, ctx: CommandContext, logger: Logger | undefined): number {
  if (err instanceof CommanderError) {
    // Commander has already printed help, the version or the usage message.
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT_OK
    return EXIT_USAGE
  }
  if (isJoeyError(err, 'ERR_ABORTED') && ctx.signal?.aborted === true) return EXIT_INTERRUPTED
  ctx.error(err instanceof Error ? err.message : String(err))
  if (isJoeyError(err)) {
    logger?.debug({ err, code: err.code, detail: err.detail }, 'command failed')
    return err instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE
  }
  // Not a JoeyError: a bug in joey rather than a daemon or input problem; keep the stack.
  if (err instanceof Error && err.stack !== undefined) ctx.io.stderr.write(`${err.stack}\n`)
  return EXIT_FAILURE
}

function nonEmpty (value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value
}
