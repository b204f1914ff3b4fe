/**
 * joeyd's Prometheus metrics. Counters the API owns (pulls, requests) are incremented where
 * things happen; figures other components keep (bytes from the origin, store usage) are
 * read from them at scrape time, so there is one source of truth for each.
 */
import type { FastifyInstance } from 'fastify'
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import type { Usage } from '../content/index.js'
import type { TransferStats } from '../transfer/index.js'
import { USAGE_CACHE_MS } from './constants.js'

export interface AgentMetricsSources {
  transferStats?: () => TransferStats
  usage?: () => Promise<Usage>
  /** Process metrics (CPU, memory, event loop); off in unit tests to keep them quiet. */
  processMetrics?: boolean
}

export interface AgentMetrics {
  readonly registry: Registry
  readonly pulls: Counter
  readonly pullFailures: Counter<'code'>
  readonly httpRequests: Counter<'method' | 'route' | 'status'>
  readonly mirrorRequests: Counter<'kind' | 'status'>
  readonly mirrorBytes: Counter
}

export function createAgentMetrics (sources: AgentMetricsSources = {}): AgentMetrics {
  const registry = new Registry()
  if (sources.processMetrics === true) collectDefaultMetrics({ register: registry, prefix: 'joeyd_' })

  const { transferStats, usage } = sources
  // One walk of the store serves every usage gauge of a scrape.
  let cached: { at: number, value: Promise<Usage> } | undefined
  const currentUsage = async (): Promise<Usage | undefined> => {
    if (usage === undefined) return undefined
    const now = Date.now()
    if (cached === undefined || now - cached.at > USAGE_CACHE_MS) {
      cached = { at: now, value: usage() }
      cached.value.catch(() => { cached = undefined })
    }
    return await cached.value
  }
  const usageGauge = (name: string, help: string, pick: (u: Usage) => number): Gauge => new Gauge({
    name,
    help,
    registers: [registry],
    async collect () {
      const u = await currentUsage()
      if (u !== undefined) this.set(pick(u))
    }
  })
  // Counters mirrored from the transfer manager's own totals at scrape time.
  const transferCounter = (name: string, help: string, pick: (s: TransferStats) => number): Counter => new Counter({
    name,
    help,
    registers: [registry],
    collect () {
      if (transferStats === undefined) return
      this.reset()
      this.inc(pick(transferStats()))
    }
  })

  transferCounter('joeyd_origin_bytes_total', 'Blob bytes received from origin registries', s => s.originBytes)
  transferCounter('joeyd_origin_fetches_total', 'Blobs fetched from origin registries', s => s.originFetches)
  transferCounter('joeyd_peer_bytes_total', 'Blob bytes received from peers', s => s.peerBytes)
  transferCounter('joeyd_peer_bytes_served_total', 'Piece bytes served to peers', s => s.uploadedBytes ?? 0)
  usageGauge('joeyd_content_blobs', 'Committed blobs in the content store', u => u.blobs)
  usageGauge('joeyd_content_blob_bytes', 'Bytes of committed blobs in the content store', u => u.blobBytes)
  usageGauge('joeyd_content_ingests', 'Partial downloads (ingests) in the content store', u => u.ingests)
  usageGauge('joeyd_content_ingest_bytes', 'Bytes of partial downloads in the content store', u => u.ingestBytes)

  return {
    registry,
    pulls: new Counter({ name: 'joeyd_pulls_total', help: 'Image pulls started through the Engine API', registers: [registry] }),
    pullFailures: new Counter({ name: 'joeyd_pulls_failed_total', help: 'Image pulls that failed, by error code', labelNames: ['code'] as const, registers: [registry] }),
    httpRequests: new Counter({ name: 'joeyd_http_requests_total', help: 'Engine API requests by method, route and status', labelNames: ['method', 'route', 'status'] as const, registers: [registry] }),
    mirrorRequests: new Counter({ name: 'joeyd_mirror_requests_total', help: 'Registry mirror requests by kind (base, manifest, blob) and status', labelNames: ['kind', 'status'] as const, registers: [registry] }),
    mirrorBytes: new Counter({ name: 'joeyd_mirror_blob_bytes_total', help: 'Blob bytes the registry mirror sent to clients', registers: [registry] })
  }
}

/** Counts every response by route pattern; registered on the root so it sees every plugin's routes. */
export function countRequests (app: FastifyInstance, metrics: AgentMetrics): void {
  app.addHook('onResponse', async (request, reply) => {
    // The route pattern, not the URL: image names must not become label values.
    const route = request.routeOptions.url ?? 'unmatched'
    metrics.httpRequests.inc({ method: request.method, route, status: String(reply.statusCode) })
  })
}

/** GET /metrics in Prometheus text format. */
export function metricsRoutes (metrics: AgentMetrics): (app: FastifyInstance) => Promise<void> {
  return async (app) => {
    app.get('/metrics', async (_request, reply) => {
      const text = await metrics.registry.metrics()
      return reply.type(metrics.registry.contentType).send(text)
    })
  }
}
