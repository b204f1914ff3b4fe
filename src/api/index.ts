/**
 * joeyd's HTTP surface: the Docker Engine API subset (system and image routes) and
 * Prometheus metrics, as one fastify app. The agent serves it on every listener through
 * `app.routing`; tests drive it with `app.inject()`.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify'
import { JoeyError, errorMessage } from '../common/index.js'
import { API_VERSION } from './constants.js'
import { containerRoutes } from './engine/containers.js'
import { execRoutes } from './engine/exec.js'
import { imageRoutes } from './engine/images.js'
import { engineUpgradeHandler } from './engine/stream.js'
import { systemRoutes } from './engine/system.js'
import { checkVersion, requestedVersion, stripVersionPrefix } from './engine/version.js'
import { registerErrorHandlers, toEngineError } from './errors.js'
import { countRequests, metricsRoutes } from './metrics.js'
import type { EngineApiComponents, EngineApiInit } from './types.js'

export type { EngineApiComponents, EngineApiInit, SystemInfo } from './types.js'
export { createAgentMetrics, type AgentMetrics, type AgentMetricsSources } from './metrics.js'
export { API_VERSION, MIN_API_VERSION } from './constants.js'
export { decodeRegistryAuth, registryAuthorization, type RegistryAuthConfig } from './engine/auth.js'
export { formatProgress, humanSize, toJsonMessage, type JsonMessage } from './engine/progress.js'
export { pullReference, parseImageFilters, boolValue } from './engine/images.js'
export { toEngineError } from './errors.js'
export { engineUpgradeHandler, muxFrame, demuxFrames, MULTIPLEXED_STREAM } from './engine/stream.js'
export { CONTAINERS_DISABLED } from './engine/containers.js'

const DEFAULT_BODY_LIMIT = 1024 * 1024

export async function buildEngineApi (init: EngineApiInit, components: EngineApiComponents): Promise<FastifyInstance> {
  const logger = components.logger.child({ component: 'api' })
  const app: FastifyInstance = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // Requests are logged once, at debug, by the onResponse hook below.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: init.bodyLimit ?? DEFAULT_BODY_LIMIT,
    rewriteUrl: stripVersionPrefix,
    // Image names are long and dockerd does not care about a trailing slash either.
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 2048 }
  })
  registerErrorHandlers(app, logger)

  // dockerd ignores bodies on the routes joeyd has: an empty JSON body is no body, and a type
  // fastify does not know is drained unread, so clients that send either still get served.
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    if (typeof body !== 'string' || body.trim() === '') return done(null, undefined)
    try {
      done(null, JSON.parse(body, (key, value: unknown) => key === '__proto__' ? undefined : value))
    } catch (err) {
      done(new JoeyError('ERR_INVALID_ARGUMENT', `request body is not valid JSON: ${errorMessage(err)}`), undefined)
    }
  })
  app.addContentTypeParser('*', (_request, payload, done) => {
    payload.resume()
    payload.on('end', () => done(null, undefined))
    payload.on('error', (err) => done(err, undefined))
  })

  const serverHeader = `Joey/${components.system.version} (${components.system.osType})`
  app.addHook('onRequest', async (request, reply) => {
    reply.header('Api-Version', API_VERSION).header('Ostype', components.system.osType).header('Server', serverHeader)
    checkVersion(requestedVersion(request.originalUrl))
  })
  // The docker CLI only decodes an error body whose Content-Type is exactly application/json
  // (otherwise it prints the raw JSON), so the charset fastify appends is dropped, as dockerd has none.
  app.addHook('onSend', async (_request, reply, payload) => {
    const type = reply.getHeader('content-type')
    if (typeof type === 'string' && type.startsWith('application/json;')) reply.header('content-type', 'application/json')
    return payload
  })
  app.addHook('onResponse', async (request, reply) => {
    logger.debug({ method: request.method, url: request.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'request')
  })
  countRequests(app, components.metrics)

  await app.register(systemRoutes({ images: components.images, system: components.system }))
  await app.register(imageRoutes({
    logger: components.logger,
    images: components.images,
    metrics: components.metrics,
    driver: components.system.driver,
    ...(init.signal !== undefined ? { signal: init.signal } : {})
  }))
  const containers = { logger: components.logger, ...(components.containers !== undefined ? { containers: components.containers } : {}) }
  await app.register(containerRoutes(containers))
  await app.register(execRoutes(containers))
  await app.register(metricsRoutes(components.metrics))
  // Attach and exec start arrive as HTTP upgrades; this covers app.listen(), the agent wires its own servers.
  app.server.on('upgrade', engineUpgradeHandler(app.routing.bind(app)))
  await app.ready()
  return app
}

/** For callers outside fastify (the agent's listeners) that need the same error shape. */
export function engineErrorBody (err: unknown): { status: number, body: string } {
  const e = toEngineError(err)
  return { status: e.status, body: JSON.stringify({ message: e.message || errorMessage(err) }) }
}
