/**
 * joey-supernode's composition root: the only place that decides which implementation
 * and which options. Order: logger → scheduler → registry client → p2p host → partial
 * store → seed → piece server → HTTP API; stop in reverse.
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import Fastify, { type FastifyInstance } from 'fastify'
import { createLogger, type Logger } from '../src/common/index.js'
import { createRegistryClient, type RegistryClient } from '../src/distribution/index.js'
import { createP2PHost, createPieceServer, SEED_FIRST_COPY_HOLD_MS, type P2PHost } from '../src/p2p/index.js'
import { createRateLimiter } from '../src/common/index.js'
import { PartialStore, partialPieceSource } from '../src/transfer/index.js'
import type { Service } from '../src/common/index.js'
import { Scheduler } from './scheduler/index.js'
import { supernodeApi, createSupernodeMetrics } from './api.js'
import { createSeed, type Seed } from './seed.js'
import type { SupernodeConfig } from './config.js'

export interface Supernode {
  readonly peerId: string
  readonly url: string
  readonly p2pAddrs: string[]
  readonly scheduler: Scheduler
  start: () => Promise<void>
  stop: () => Promise<void>
}

export function createSupernode (config: SupernodeConfig, logger: Logger = createLogger({ level: config.logLevel, format: config.logFormat, name: 'joey-supernode' })): Supernode {
  const scheduler = new Scheduler({ maxBackToSource: config.maxBackToSource, ranked: config.rankedParents })
  const metrics = createSupernodeMetrics()
  let registry: RegistryClient | undefined
  let host: P2PHost | undefined
  let partials: PartialStore | undefined
  let seed: Seed | undefined
  let pieceServer: Service | undefined
  let app: FastifyInstance | undefined
  let url = ''
  let expiry: NodeJS.Timeout | undefined

  return {
    get peerId () { return host?.peerId ?? '' },
    get url () { return url },
    get p2pAddrs () { return host?.multiaddrs() ?? [] },
    scheduler,
    async start () {
      await mkdir(config.dataRoot, { recursive: true })
      registry = createRegistryClient({ insecureRegistries: config.insecureRegistries, ...(config.registryConfig !== undefined ? { dockerConfigPath: config.registryConfig } : {}) }, { logger: logger.child({ component: 'registry' }) })
      host = createP2PHost({
        listen: [config.p2pListen],
        identityPath: join(config.dataRoot, 'peer.key'),
        ...(config.swarmKey !== undefined ? { swarmKey: config.swarmKey } : {})
      }, { logger: logger.child({ component: 'p2p' }) })
      await host.start()
      partials = new PartialStore(join(config.dataRoot, 'seed'), logger.child({ component: 'partials' }))
      scheduler.upsertHost({ peerId: host.peerId, addrs: host.multiaddrs(), seed: true, uploadSlots: config.seedUploadSlots })
      seed = createSeed({}, { logger: logger.child({ component: 'seed' }), registry, scheduler, partials, metrics, peerId: host.peerId })
      pieceServer = createPieceServer({
        ...(config.uploadLimit > 0 ? { uploadLimiter: createRateLimiter(config.uploadLimit) } : {}),
        // Each piece should leave the seed about once: agents relay it to each other.
        firstCopyHoldMs: SEED_FIRST_COPY_HOLD_MS,
        onServed: (bytes: number) => { metrics.seedPiecesServed.inc(); metrics.seedBytesServed.inc(bytes) }
      }, { logger: logger.child({ component: 'piece-server' }), host, source: partialPieceSource(partials) })
      await pieceServer.start()
      app = Fastify({ logger: false, bodyLimit: 4 * 1024 * 1024 })
      await app.register(supernodeApi({ logger: logger.child({ component: 'api' }), scheduler, seed, metrics }))
      const [h, p] = splitHostPort(config.listen)
      url = await app.listen({ host: h, port: p })
      expiry = setInterval(() => {
        const gone = scheduler.expireHosts()
        if (gone.length > 0) logger.info({ hosts: gone }, 'hosts expired')
        scheduler.expireTasks(config.taskIdleMs)
      }, Math.max(1000, Math.floor(scheduler.hostTtlMs / 3)))
      expiry.unref()
      logger.info({ url, peerId: host.peerId, p2p: host.multiaddrs() }, 'joey-supernode started')
    },
    async stop () {
      if (expiry !== undefined) clearInterval(expiry)
      await app?.close()
      await seed?.stop()
      await pieceServer?.stop()
      await partials?.close()
      await host?.stop()
      await registry?.close()
      logger.info('joey-supernode stopped')
    }
  }
}

export function splitHostPort (listen: string): [string, number] {
  const i = listen.lastIndexOf(':')
  const host = listen.slice(0, i).replace(/^\[|\]$/g, '')
  return [host === '' ? '0.0.0.0' : host, Number(listen.slice(i + 1))]
}
