import { pino, type Logger, type LoggerOptions } from 'pino'

export type { Logger }

export interface LoggerInit {
  level?: string
  /** 'json' (default) or 'pretty'; 'auto' means pretty when stderr is a TTY. */
  format?: 'json' | 'pretty' | 'auto'
  name?: string
  /** Where logs go; defaults to stderr (fd 2) so stdout stays free for program output. */
  destination?: number | string
}

export function createLogger (init: LoggerInit = {}): Logger {
  const format = init.format ?? 'auto'
  const pretty = format === 'pretty' || (format === 'auto' && process.stderr.isTTY === true)
  const options: LoggerOptions = {
    level: init.level ?? 'info',
    ...(init.name !== undefined ? { name: init.name } : {}),
    serializers: { err: pino.stdSerializers.err }
  }
  if (pretty) {
    return pino({
      ...options,
      transport: { target: 'pino-pretty', options: { destination: init.destination ?? 2, colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } }
    })
  }
  return pino(options, pino.destination({ dest: init.destination ?? 2, sync: false }))
}

/** A logger that drops everything, for unit tests. */
export function silentLogger (): Logger {
  return pino({ level: 'silent' })
}
