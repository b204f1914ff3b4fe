/**
 * The one place Engine API errors are shaped: `{"message": …}` with the status dockerd
 * would use, from the JoeyError kind (httpStatus), fastify's own 4xx errors, or 500.
 */
import type { FastifyError, FastifyInstance } from 'fastify'
import { JoeyError, errorMessage, httpStatus, type Logger } from '../common/index.js'

export interface EngineError {
  status: number
  message: string
  code?: string
}

/** Status and message for any thrown value. */
export function toEngineError (err: unknown): EngineError {
  if (err instanceof JoeyError) return { status: httpStatus(err), message: err.message, code: err.code }
  const e = err as Partial<FastifyError> | undefined
  if (e?.validation !== undefined) {
    return { status: 400, message: `invalid request: ${errorMessage(err)}`, code: 'ERR_INVALID_ARGUMENT' }
  }
  // fastify's own request errors: bad content type, body too large, malformed JSON…
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return { status: e.statusCode, message: errorMessage(err), ...(e.code !== undefined ? { code: e.code } : {}) }
  }
  return { status: 500, message: errorMessage(err) }
}

export function registerErrorHandlers (app: FastifyInstance, logger: Logger): void {
  app.setErrorHandler((err, request, reply) => {
    const e = toEngineError(err)
    if (e.status >= 500) logger.error({ err, method: request.method, url: request.url }, 'request failed')
    else logger.debug({ err, method: request.method, url: request.url, status: e.status }, 'request refused')
    return reply.status(e.status).type('application/json').send({ message: e.message })
  })
  app.setNotFoundHandler((_request, reply) => {
    return reply.status(404).type('application/json').send({ message: 'page not found' })
  })
}
