/**
 * joey-supernode's HTTP API: one fastify plugin for agents (/api/v1) and one for people
 * (/healthz, /metrics, listings). JSON bodies are validated by schema so a wrong body gets
 * a 400 with the field named, never a half-applied change.
 */
import { Type, type Static } from '@sinclair/typebox'
import type { FastifyInstance, FastifyPluginAsync } from 'fastify'
import { Registry, Counter, Gauge, collectDefaultMetrics } from 'prom-client'
import { JoeyError, httpStatus, isDigest, pieceSizeFor } from '../src/common/index.js'

export { pieceSizeFor }
import type { Logger } from '../src/common/index.js'
import type { Scheduler, TaskState } from './scheduler/index.js'

/** What the API needs of the seed: start fetching a blob from the origin once. */
export interface SeedControl {
  readonly peerId: string
  /** Starts (or joins) the seed's fetch of a blob; returns at once. */
  ensure: (task: { digest: string, size: number, reference: string, authorization?: string }) => void
  status: (digest: string) => { state: 'idle' | 'fetching' | 'done' | 'failed', error?: string } | undefined
}

export interface SupernodeApiComponents {
  logger: Logger
  scheduler: Scheduler
  seed?: SeedControl
  metrics: SupernodeMetrics
}

const DigestSchema = Type.String({ pattern: '^sha256:[a-f0-9]{64}$' })
const PeerIdSchema = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.-]+$' })

const HostBody = Type.Object({
  peerId: PeerIdSchema,
  addrs: Type.Array(Type.String({ minLength: 1, maxLength: 512 }), { maxItems: 32 }),
  labels: Type.Optional(Type.Record(Type.String({ maxLength: 64 }), Type.String({ maxLength: 256 }))),
  uploadSlots: Type.Optional(Type.Integer({ minimum: 0, maximum: 1024 }))
}, { additionalProperties: false })

const TaskBody = Type.Object({
  digest: DigestSchema,
  size: Type.Integer({ minimum: 0 }),
  peerId: PeerIdSchema,
  /** Where the seed fetches from: `host[:port]/repository`. */
  reference: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
  /** Scoped pull credentials for a private origin, used by the seed only, never stored. */
  authorization: Type.Optional(Type.String({ maxLength: 8192 }))
}, { additionalProperties: false })

const ParentsBody = Type.Object({
  peerId: PeerIdSchema,
  exclude: Type.Optional(Type.Array(PeerIdSchema, { maxItems: 256 })),
  /** The asker knows the piece digests before this index: only later ones are sent. */
  digestsFrom: Type.Optional(Type.Integer({ minimum: 0 }))
}, { additionalProperties: false })

const PiecesBody = Type.Object({
  peerId: PeerIdSchema,
  pieces: Type.Optional(Type.Array(Type.Integer({ minimum: 0 }), { maxItems: 100_000 })),
  /** sha256 of pieces, index → digest; accepted from the seed and from peers sent back to source. */
  pieceDigests: Type.Optional(Type.Record(Type.String({ pattern: '^[0-9]+$' }), DigestSchema)),
  complete: Type.Optional(Type.Boolean())
}, { additionalProperties: false })

const FailureBody = Type.Object({
  peerId: PeerIdSchema,
  parent: PeerIdSchema,
  reason: Type.Union([Type.Literal('corrupt'), Type.Literal('timeout'), Type.Literal('refused'), Type.Literal('slow'), Type.Literal('error')])
}, { additionalProperties: false })

const DigestParams = Type.Object({ digest: DigestSchema })

export interface SupernodeMetrics {
  registry: Registry
  registrations: Counter
  parentRequests: Counter
  backToSource: Counter
  failures: Counter<'reason'>
  hosts: Gauge
  tasks: Gauge
  seedOriginBytes: Counter
  seedPiecesServed: Counter
  seedBytesServed: Counter
}

export function createSupernodeMetrics (): SupernodeMetrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'joey_supernode_' })
  return {
    registry,
    registrations: new Counter({ name: 'joey_supernode_task_registrations_total', help: 'Task registrations by agents', registers: [registry] }),
    parentRequests: new Counter({ name: 'joey_supernode_parent_decisions_total', help: 'Parent choices made by the scheduler', registers: [registry] }),
    backToSource: new Counter({ name: 'joey_supernode_back_to_source_total', help: 'Agents allowed to fetch from the origin', registers: [registry] }),
    failures: new Counter({ name: 'joey_supernode_parent_failures_total', help: 'Parent failures reported by agents', labelNames: ['reason'], registers: [registry] }),
    hosts: new Gauge({ name: 'joey_supernode_hosts', help: 'Registered hosts', registers: [registry] }),
    tasks: new Gauge({ name: 'joey_supernode_tasks', help: 'Known tasks', registers: [registry] }),
    seedOriginBytes: new Counter({ name: 'joey_supernode_seed_origin_bytes_total', help: 'Blob bytes the seed fetched from origin registries', registers: [registry] }),
    seedPiecesServed: new Counter({ name: 'joey_supernode_seed_pieces_served_total', help: 'Pieces the seed served to agents', registers: [registry] }),
    seedBytesServed: new Counter({ name: 'joey_supernode_seed_bytes_served_total', help: 'Piece bytes the seed served to agents', registers: [registry] })
  }
}

function taskView (task: TaskState, digestsFrom = 0): Record<string, unknown> {
  const from = Math.min(digestsFrom, task.pieceDigests.length)
  return {
    digest: task.digest,
    size: task.size ?? null,
    pieceSize: task.pieceSize ?? null,
    pieceCount: task.pieceCount ?? null,
    pieceDigests: task.pieceDigests.slice(from).map(d => d ?? null),
    ...(from > 0 ? { pieceDigestsFrom: from } : {})
  }
}

export function supernodeApi (components: SupernodeApiComponents): FastifyPluginAsync {
  const { scheduler, seed, metrics, logger } = components
  return async (app: FastifyInstance) => {
    app.setErrorHandler((err, request, reply) => {
      const e = err as { validation?: unknown, code?: string, message: string, statusCode?: number }
      if (e.validation !== undefined) {
        return reply.status(400).send({ code: 'ERR_INVALID_ARGUMENT', message: e.message })
      }
      if (err instanceof JoeyError) {
        return reply.status(httpStatus(err)).send({ code: err.code, message: err.message })
      }
      if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
        return reply.status(e.statusCode).send({ code: 'ERR_INVALID_ARGUMENT', message: e.message })
      }
      logger.error({ err, url: request.url }, 'supernode API error')
      return reply.status(500).send({ code: 'ERR_INTERNAL', message: e.message })
    })
    app.setNotFoundHandler((request, reply) => reply.status(404).send({ code: 'ERR_NOT_FOUND', message: `no route ${request.method} ${request.url}` }))

    app.get('/healthz', async () => ({ status: 'ok', hosts: scheduler.hosts.size, tasks: scheduler.tasks.size }))
    app.get('/metrics', async (_req, reply) => {
      metrics.hosts.set(scheduler.hosts.size)
      metrics.tasks.set(scheduler.tasks.size)
      reply.header('content-type', metrics.registry.contentType)
      return await metrics.registry.metrics()
    })

    app.post<{ Body: Static<typeof HostBody> }>('/api/v1/hosts', { schema: { body: HostBody } }, async (req) => {
      if (seed !== undefined && req.body.peerId === seed.peerId) {
        throw new JoeyError('ERR_ALREADY_EXISTS', 'that peer id belongs to this supernode\'s seed')
      }
      // `known: false` tells an agent that registered before that this supernode forgot it
      // (restart, or TTL expiry): its holdings must be reported again.
      const known = scheduler.hosts.has(req.body.peerId)
      scheduler.upsertHost(req.body)
      return { ttlMs: scheduler.hostTtlMs, known }
    })
    app.delete<{ Params: { peerId: string } }>('/api/v1/hosts/:peerId', async (req, reply) => {
      scheduler.removeHost(req.params.peerId)
      return await reply.status(204).send()
    })
    app.get('/api/v1/hosts', async () => [...scheduler.hosts.values()].map(h => ({
      peerId: h.peerId, addrs: h.addrs, labels: h.labels, uploadSlots: h.uploadSlots, seed: h.seed,
      load: h.load, failures: h.failures, lastSeen: new Date(h.lastSeen).toISOString()
    })))

    app.post<{ Body: Static<typeof TaskBody> }>('/api/v1/tasks', { schema: { body: TaskBody } }, async (req) => {
      const { digest, size, peerId, reference, authorization } = req.body
      if (!scheduler.hosts.has(peerId)) throw new JoeyError('ERR_NOT_FOUND', `host ${peerId} is not registered; POST /api/v1/hosts first`)
      const existing = scheduler.tasks.get(digest)
      if (existing?.size !== undefined && existing.size !== size) {
        throw new JoeyError('ERR_SIZE_MISMATCH', `task ${digest} has size ${existing.size}, not ${size}`)
      }
      const task = scheduler.upsertTask(digest, { size, pieceSize: pieceSizeFor(size) })
      metrics.registrations.inc()
      if (seed !== undefined && reference !== undefined) {
        scheduler.joinTask(digest, seed.peerId)
        seed.ensure({ digest, size, reference, ...(authorization !== undefined ? { authorization } : {}) })
      }
      scheduler.joinTask(digest, peerId)
      const choice = scheduler.parents(digest, peerId)
      metrics.parentRequests.inc()
      if (choice.backToSource) metrics.backToSource.inc()
      return { ...taskView(task), ...choice }
    })
    app.get('/api/v1/tasks', async () => [...scheduler.tasks.values()].map(t => ({
      digest: t.digest,
      size: t.size ?? null,
      pieceCount: t.pieceCount ?? null,
      peers: t.peers.size,
      complete: [...t.peers.values()].filter(p => p.complete).length,
      backToSource: t.backToSource.size,
      /** Peers no one is given as a parent for this task any more (corrupt pieces). */
      blocked: [...t.blocked],
      seed: seed?.status(t.digest) ?? null
    })))
    app.get<{ Params: Static<typeof DigestParams> }>('/api/v1/tasks/:digest', { schema: { params: DigestParams } }, async (req) => {
      const task = scheduler.tasks.get(req.params.digest)
      if (task === undefined) throw new JoeyError('ERR_NOT_FOUND', `unknown task ${req.params.digest}`)
      return taskView(task)
    })
    app.post<{ Params: Static<typeof DigestParams>, Body: Static<typeof ParentsBody> }>('/api/v1/tasks/:digest/parents', { schema: { params: DigestParams, body: ParentsBody } }, async (req) => {
      const choice = scheduler.parents(req.params.digest, req.body.peerId, { exclude: req.body.exclude ?? [] })
      metrics.parentRequests.inc()
      if (choice.backToSource) metrics.backToSource.inc()
      const task = scheduler.tasks.get(req.params.digest) as TaskState
      return { ...taskView(task, req.body.digestsFrom), ...choice }
    })
    app.post<{ Params: Static<typeof DigestParams>, Body: Static<typeof PiecesBody> }>('/api/v1/tasks/:digest/pieces', { schema: { params: DigestParams, body: PiecesBody } }, async (req, reply) => {
      const { digest } = req.params
      const { peerId, pieceDigests } = req.body
      const task = scheduler.tasks.get(digest)
      if (task === undefined) throw new JoeyError('ERR_NOT_FOUND', `unknown task ${digest}; register it first`)
      if (pieceDigests !== undefined) {
        const trusted = peerId === seed?.peerId || task.backToSource.has(peerId)
        if (!trusted) throw new JoeyError('ERR_FAILED_PRECONDITION', 'only the seed or a peer sent back to source may publish piece digests')
        for (const [index, d] of Object.entries(pieceDigests)) {
          const known = task.pieceDigests[Number(index)]
          if (known !== undefined && known !== d) throw new JoeyError('ERR_DIGEST_MISMATCH', `piece ${index} of ${digest} is already known as ${known}`)
          scheduler.setPieceDigest(digest, Number(index), d)
        }
      }
      scheduler.reportPieces(digest, peerId, { pieces: req.body.pieces ?? [], complete: req.body.complete ?? false })
      return await reply.status(204).send()
    })
    app.post<{ Params: Static<typeof DigestParams>, Body: Static<typeof FailureBody> }>('/api/v1/tasks/:digest/failures', { schema: { params: DigestParams, body: FailureBody } }, async (req, reply) => {
      scheduler.reportFailure(req.params.digest, req.body.peerId, req.body.parent, req.body.reason)
      metrics.failures.inc({ reason: req.body.reason })
      logger.warn({ digest: req.params.digest, peer: req.body.peerId, parent: req.body.parent, reason: req.body.reason }, 'parent failure reported')
      return await reply.status(204).send()
    })
    app.delete<{ Params: Static<typeof DigestParams> & { peerId: string } }>('/api/v1/tasks/:digest/peers/:peerId', async (req, reply) => {
      if (!isDigest(req.params.digest)) throw new JoeyError('ERR_INVALID_DIGEST', `invalid digest ${req.params.digest}`)
      scheduler.leaveTask(req.params.digest, req.params.peerId)
      return await reply.status(204).send()
    })
  }
}
