/**
 * joeyd's composition root: the only place that decides which implementation of each
 * component runs and with which options. start() builds logger → content store → registry
 * client → transfer → image service → Engine API listeners; stop() undoes it in reverse.
 */
import { execFile } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { lstat, chmod, mkdir, readFile, unlink, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { arch, cpus, hostname, machine, release, totalmem, type as osType } from 'node:os'
import { dirname, join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { JoeyError, isJoeyError, createGcPacer, createLogger, errorMessage, type Logger, type Service } from '../common/index.js'
import { buildEngineApi, createAgentMetrics, engineErrorBody, engineUpgradeHandler, type SystemInfo } from '../api/index.js'
import { createContainerService, type ContainerService, type SnapshotCollector } from '../runtime/index.js'
import { createSnapshotter, detectSnapshotter } from '../unpack/index.js'
import { createContentStore, type ContentStore } from '../content/index.js'
import { createRegistryClient, defaultPlatform, type RegistryClient } from '../distribution/index.js'
import { createImageService, type ImageService } from '../image/index.js'
import {
  PartialStore, PieceIndex, createDirectTransfer, createP2PTransfer, createSupernodeClient, partialPieceSource,
  type P2PTransfer, type PieceSessionLike
} from '../transfer/index.js'
import type { P2PHost } from '../p2p/index.js'
import { createRateLimiter } from '../common/index.js'
import { mirrorApi } from '../api/mirror/index.js'
import Fastify from 'fastify'
import type { AgentConfig, ListenAddress } from './config.js'
import { ENGINE_ID_FILE, HEARTBEAT_MS, IDLE_SWEEP_MS, SHUTDOWN_GRACE_MS, SOCKET_MODE } from './constants.js'
import { AGENT_NAME, AGENT_VERSION, BUILD_TIME, GIT_COMMIT, STORAGE_DRIVER } from './version.js'

export { parseAgentConfig, parseListenAddress, registryHostFromEnvName } from './config.js'
export type { AgentConfig, ListenAddress, LogFormat, LogLevel } from './config.js'

export interface AgentOptions {
  /** A logger to use instead of one built from the config (tests). */
  logger?: Logger
}

export interface Agent extends Service {
  readonly config: AgentConfig
  /** Where the Engine API listens, with tcp port 0 resolved; empty before start(). */
  addresses: () => string[]
  /** The image service, once started (for in-process tests and future components). */
  images: () => ImageService
  /** The registry mirror's address (http://host:port), once started; undefined when off. */
  mirrorAddress: () => string | undefined
  /** libp2p addresses, when P2P is on. */
  p2pAddresses: () => string[]
}

interface Listener {
  address: ListenAddress
  server: Server
  /** The socket file we created, removed again on stop. */
  socketPath?: string
}

function isLoopbackHost (host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host)
}

/** Removes a socket file left by a process that died; refuses to touch anything else. */
async function clearStaleSocket (path: string): Promise<void> {
  let st
  try {
    st = await lstat(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw err
  }
  if (!st.isSocket()) throw new JoeyError('ERR_FAILED_PRECONDITION', `${path} exists and is not a socket; refusing to replace it`, { detail: { path } })
  const live = await new Promise<boolean>((resolve) => {
    const s = connect(path)
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => { resolve(false) })
  })
  if (live) throw new JoeyError('ERR_IN_USE', `another daemon is already listening on unix://${path}`, { detail: { path } })
  await unlink(path)
}

async function listen (server: Server, address: ListenAddress): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => { reject(err) }
    server.once('error', onError)
    const done = (): void => { server.off('error', onError); resolve() }
    if (address.kind === 'unix') server.listen(address.path, done)
    else server.listen(address.port, address.host, done)
  })
}

async function closeServer (server: Server, graceMs: number): Promise<void> {
  if (!server.listening) return
  const closed = new Promise<void>((resolve) => { server.close(() => { resolve() }) })
  // close() drops only the connections idle at that moment; a keep-alive connection whose
  // last response (say, a cancelled pull) ends later would hold the stop for the whole grace.
  const sweeper = setInterval(() => { server.closeIdleConnections() }, IDLE_SWEEP_MS)
  const timer = setTimeout(() => { server.closeAllConnections() }, graceMs)
  try {
    await closed
  } finally {
    clearInterval(sweeper)
    clearTimeout(timer)
  }
}

/** docker info's ID: made once, kept under the data root. */
async function engineId (dataRoot: string): Promise<string> {
  const path = join(dataRoot, ENGINE_ID_FILE)
  try {
    const id = (await readFile(path, 'utf8')).trim()
    if (/^[A-Za-z0-9:-]{8,128}$/.test(id)) return id
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const id = randomUUID()
  await writeFile(path, `${id}\n`, { mode: 0o644 })
  return id
}

/** Whether `runc --version` works: without it joeyd serves images only. */
async function runcAvailable (): Promise<boolean> {
  return await new Promise<boolean>((resolve) => {
    execFile('runc', ['--version'], { timeout: 10_000 }, (err) => { resolve(err === null) })
  })
}

/** The container runtime, when runc is there; containers it left running are adopted, not killed. */
async function startContainers (dataRoot: string, log: Logger, components: { contentStore: ContentStore, images: ImageService }): Promise<ContainerService & SnapshotCollector & Service | undefined> {
  if (!await runcAvailable()) {
    log.warn('runc --version failed: containers are not enabled (install runc to run containers)')
    return undefined
  }
  const snapshotRoot = join(dataRoot, 'snapshots')
  const snapshotter = createSnapshotter(await detectSnapshotter(snapshotRoot), { root: snapshotRoot }, { logger: log })
  const service = createContainerService({ root: join(dataRoot, 'containers') }, { logger: log, ...components, snapshotter })
  await service.start()
  return service
}

/** Removing an image also frees the layer snapshots nothing else uses, as containerd's GC does. */
/**
 * The image service as the Engine API sees it when containers run here: docker's rule that
 * an image a container uses is only removed with force (removing one of several tags is
 * always fine), and layer snapshots released once their last image goes.
 */
function withContainers (images: ImageService, containers: ContainerService & SnapshotCollector, log: Logger): ImageService {
  return {
    ...images,
    remove: async (nameOrId, options) => {
      await refuseIfUsed(images, containers, nameOrId, options?.force === true)
      const result = await images.remove(nameOrId, options)
      await containers.collectSnapshots().catch(err => { log.warn({ err }, 'snapshot collection after image removal failed') })
      return result
    }
  }
}

async function refuseIfUsed (images: ImageService, containers: ContainerService, nameOrId: string, force: boolean): Promise<void> {
  let detail: Awaited<ReturnType<ImageService['inspect']>>
  try {
    detail = await images.inspect(nameOrId)
  } catch (err) {
    // A name whose content is gone cannot be inspected, and no container can run it:
    // remove() clears such records, or answers the not-found itself.
    if (isJoeyError(err, 'ERR_IMAGE_NOT_FOUND')) return
    throw err
  }
  const bare = nameOrId.replace(/^sha256:/, '')
  const byId = /^[0-9a-f]{1,64}$/.test(bare) && detail.id.replace(/^sha256:/, '').startsWith(bare)
  // Untagging one of several names leaves the image, and its containers, as they were;
  // by name, force untags anyway (the containers keep their layers).
  if ((!byId && detail.repoTags.length > 1) || (force && !byId)) return
  const users = (await containers.list({ all: true })).filter(c => c.ImageID === detail.id)
  // dockerd: force removes an image stopped containers use, never one a running container uses.
  const user = force ? users.find(c => c.State === 'running') : users[0]
  if (user === undefined) return
  const cid = user.Id.slice(0, 12)
  const iid = detail.id.replace(/^sha256:/, '').slice(0, 12)
  const running = user.State === 'running'
  const message = !byId
    ? `conflict: unable to remove repository reference "${nameOrId}" (must force) - container ${cid} is using its referenced image ${iid}`
    : `conflict: unable to delete ${iid} (${force ? 'cannot be forced' : 'must be forced'}) - image is being used by ${running ? 'running' : 'stopped'} container ${cid}`
  throw new JoeyError('ERR_IN_USE', message, { detail: { image: detail.id, container: user.Id } })
}

async function osRelease (): Promise<{ name: string, version: string }> {
  try {
    const text = await readFile('/etc/os-release', 'utf8')
    const field = (key: string): string | undefined => {
      const m = new RegExp(`^${key}=(.*)$`, 'm').exec(text)
      return m?.[1]?.replace(/^"(.*)"$/, '$1')
    }
    return { name: field('PRETTY_NAME') ?? osType(), version: field('VERSION_ID') ?? '' }
  } catch {
    return { name: osType(), version: '' }
  }
}

export function createAgent (config: AgentConfig, options: AgentOptions = {}): Agent {
  const shutdown = new AbortController()
  const listeners: Listener[] = []
  let logger: Logger | undefined
  let store: ContentStore | undefined
  let registry: RegistryClient | undefined
  let imageService: ImageService | undefined
  let containerService: ContainerService & Service | undefined
  let app: FastifyInstance | undefined
  let mirrorApp: FastifyInstance | undefined
  let mirrorUrl: string | undefined
  let host: P2PHost | undefined
  let pieceServer: Service | undefined
  let transfer: P2PTransfer | undefined
  let partials: PartialStore | undefined
  let heartbeat: NodeJS.Timeout | undefined
  let starting: Promise<void> | undefined
  let stopping: Promise<void> | undefined

  async function openListener (address: ListenAddress, handler: FastifyInstance['routing'], log: Logger): Promise<void> {
    const server = createServer((req, res) => {
      try {
        handler(req, res)
      } catch (err) {
        // fastify answers errors itself; this only guards against a throw before routing.
        const { status, body } = engineErrorBody(err)
        res.writeHead(status, { 'content-type': 'application/json' }).end(body)
      }
    })
    server.on('upgrade', engineUpgradeHandler(handler, shutdown.signal))
    const listener: Listener = { address, server }
    if (address.kind === 'unix') {
      await mkdir(dirname(address.path), { recursive: true, mode: 0o755 })
      await clearStaleSocket(address.path)
      await listen(server, address)
      listener.socketPath = address.path
      listeners.push(listener)
      await chmod(address.path, SOCKET_MODE)
    } else {
      await listen(server, address)
      listeners.push(listener)
      if (!isLoopbackHost(address.host)) log.warn({ address: address.address }, 'the Engine API listens on a non-loopback TCP address without TLS or authentication')
    }
    log.info({ address: actualAddress(listener) }, 'Engine API listening')
  }

  function actualAddress (l: Listener): string {
    if (l.address.kind === 'unix') return l.address.address
    const a = l.server.address() as AddressInfo | null
    if (a === null) return l.address.address
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address
    return `tcp://${host}:${a.port}`
  }

  async function doStart (): Promise<void> {
    const log = logger = options.logger ?? createLogger({ level: config.logLevel, format: config.logFormat, name: AGENT_NAME })
    log.info({ version: AGENT_VERSION, dataRoot: config.dataRoot, hosts: config.hosts.map(h => h.address) }, 'joeyd starting')
    await mkdir(config.dataRoot, { recursive: true, mode: 0o711 })
    const id = await engineId(config.dataRoot)

    const gcPacer = createGcPacer()
    const contentStore = store = createContentStore({ root: join(config.dataRoot, 'content') }, { logger: log, gcPacer })
    await contentStore.start()
    const client = registry = createRegistryClient({
      hosts: config.registries,
      insecureRegistries: config.insecureRegistries,
      ...(config.registryConfig !== undefined ? { dockerConfigPath: config.registryConfig } : {}),
      userAgent: `${AGENT_NAME}/${AGENT_VERSION}`
    }, { logger: log })
    // Partial blobs: pieces from peers or the origin, streamable before the blob is whole.
    let servedBytes = 0
    const partialStore = partials = new PartialStore(join(config.dataRoot, 'partials'), log.child({ component: 'partials' }))
    const pieceIndex = new PieceIndex(join(config.dataRoot, 'pieces'), log)
    await pieceIndex.load()
    // libp2p and the piece protocol add ~20 MiB to the process: only nodes that talk to
    // peers (a supernode is configured) load them.
    const p2pStack = config.supernodes.length > 0 ? await import('../p2p/index.js') : undefined
    if (p2pStack !== undefined) {
      const { createP2PHost, createPieceServer, parseSwarmKey } = p2pStack
      const swarmKey = config.swarmKeyFile !== undefined ? parseSwarmKey(await readFile(config.swarmKeyFile, 'utf8')) : undefined
      const p2p = host = createP2PHost({
        listen: [config.p2pListen],
        identityPath: join(config.dataRoot, 'peer.key'),
        ...(swarmKey !== undefined ? { swarmKey } : {})
      }, { logger: log.child({ component: 'p2p' }) })
      await p2p.start()
      pieceServer = createPieceServer({
        ...(config.uploadLimit > 0 ? { uploadLimiter: createRateLimiter(config.uploadLimit) } : {}),
        onServed: (bytes) => {
          servedBytes += bytes
          gcPacer.note(bytes)
        }
      }, { logger: log.child({ component: 'piece-server' }), host: p2p, source: partialPieceSource(partialStore, { index: pieceIndex, contentStore }) })
      await pieceServer.start()
    }
    const supernodes = createSupernodeClient({ urls: config.supernodes }, {
      logger: log.child({ component: 'supernode-client' }),
      host: () => ({ peerId: host?.peerId ?? '', addrs: host?.multiaddrs() ?? [], labels: config.labels })
    })
    const downloadLimiter = config.downloadLimit > 0 ? createRateLimiter(config.downloadLimit) : undefined
    const transferManager = transfer = createP2PTransfer({}, {
      logger: log.child({ component: 'transfer' }),
      contentStore,
      registry: client,
      partials: partialStore,
      supernodes,
      pieceIndex,
      direct: createDirectTransfer({}, { logger: log.child({ component: 'origin' }), contentStore, registry: client, ...(downloadLimiter !== undefined ? { downloadLimiter } : {}) }),
      ...(downloadLimiter !== undefined ? { downloadLimiter } : {}),
      openSession: async (parent, digest, signal): Promise<PieceSessionLike> => {
        if (host === undefined || p2pStack === undefined) throw new JoeyError('ERR_UNAVAILABLE', 'P2P is off on this node')
        let lastErr: unknown
        for (const addr of parent.addrs) {
          try {
            const session = await p2pStack.openPieceSession(host, addr.includes('/p2p/') ? addr : `${addr}/p2p/${parent.peerId}`, digest, { signal })
            return {
              has: (i) => session.has(i),
              onHave: (cb) => { session.onHave((i) => { cb(i) }) },
              request: async (i, o) => {
                const piece = await session.request(i, o)
                gcPacer.note(piece.byteLength)
                return piece
              },
              close: () => { void session.close() }
            }
          } catch (err) {
            lastErr = err
          }
        }
        throw lastErr ?? new JoeyError('ERR_UNAVAILABLE', `parent ${parent.peerId} has no address`)
      }
    })
    if (config.supernodes.length > 0) {
      supernodes.onRestart(() => { void transferManager.reannounce() })
      void supernodes.heartbeat().then(async () => { await transferManager.reannounce() })
      heartbeat = setInterval(() => { void supernodes.heartbeat() }, config.supernodeHeartbeatMs ?? HEARTBEAT_MS)
      heartbeat.unref()
    }
    const transfer_ = transferManager
    const images = imageService = createImageService({
      maxConcurrentDownloads: config.maxConcurrentDownloads,
      ...(config.platform !== undefined ? { platform: config.platform } : {})
    }, { logger: log, contentStore, registry: client, transfer: transfer_ })

    const metrics = createAgentMetrics({ transferStats: () => ({ ...transfer_.stats(), uploadedBytes: servedBytes }), usage: async () => await contentStore.usage(), processMetrics: true })
    const os = await osRelease()
    const system: SystemInfo = {
      id,
      name: hostname(),
      version: AGENT_VERSION,
      gitCommit: GIT_COMMIT,
      buildTime: BUILD_TIME,
      dataRoot: config.dataRoot,
      driver: STORAGE_DRIVER,
      operatingSystem: os.name,
      osVersion: os.version,
      kernelVersion: release(),
      osType: defaultPlatform().os,
      arch: defaultPlatform().architecture,
      machine: machine(),
      ncpu: cpus().length,
      memTotal: totalmem(),
      insecureRegistries: config.insecureRegistries,
      runtimeVersion: `node${process.versions.node} (${arch()})`
    }
    const containers = containerService = await startContainers(config.dataRoot, log, { contentStore, images })
    if (containers !== undefined) imageService = withContainers(images, containers, log)
    const api = app = await buildEngineApi({ signal: shutdown.signal }, { logger: log, images: imageService, metrics, system, ...(containers !== undefined ? { containers } : {}) })
    // The mirror listens before the Engine API answers /_ping: a client told "joeyd is up"
    // must not find the mirror closed and quietly fall back to the registry.
    if (config.mirror !== undefined) {
      const m = mirrorApp = Fastify({ logger: false })
      await m.register(mirrorApi({ defaultUpstream: config.mirrorUpstream, allowStaleTags: config.mirrorAllowStaleTags }, {
        logger: log,
        contentStore,
        registry: client,
        transfer: transfer_,
        metrics: {
          request: (kind, status) => { metrics.mirrorRequests.inc({ kind, status: String(status) }) },
          bytesServed: (n) => { metrics.mirrorBytes.inc(n) }
        }
      }))
      mirrorUrl = await m.listen({ host: config.mirror.host, port: config.mirror.port })
      if (!isLoopbackHost(config.mirror.host)) log.warn({ address: mirrorUrl }, 'the registry mirror listens on a non-loopback address')
      log.info({ address: mirrorUrl }, 'registry mirror listening')
    }
    for (const address of config.hosts) await openListener(address, api.routing.bind(api), log)
    log.info({ addresses: listeners.map(actualAddress) }, 'joeyd started')
  }

  async function doStop (): Promise<void> {
    await starting?.catch(() => {})
    const log = logger
    log?.info('joeyd stopping')
    // Stop accepting first, then cancel in-flight pulls (their partial downloads stay for a resume).
    const closing = listeners.map(async (l) => { await closeServer(l.server, SHUTDOWN_GRACE_MS) })
    shutdown.abort(new JoeyError('ERR_ABORTED', 'joeyd is shutting down'))
    await Promise.all(closing)
    for (const l of listeners) {
      if (l.socketPath !== undefined) await unlink(l.socketPath).catch(() => {})
    }
    listeners.length = 0
    if (heartbeat !== undefined) clearInterval(heartbeat)
    const steps: Array<[string, (() => Promise<void>) | undefined]> = [
      ['mirror', mirrorApp !== undefined ? async () => { await mirrorApp!.close() } : undefined],
      ['api', app !== undefined ? async () => { await app!.close() } : undefined],
      // Stops watching containers only: they keep running and are adopted on the next start.
      ['containers', containerService !== undefined ? async () => { await containerService!.stop() } : undefined],
      ['transfer', transfer !== undefined ? async () => { await transfer!.stop() } : undefined],
      ['piece server', pieceServer !== undefined ? async () => { await pieceServer!.stop() } : undefined],
      ['p2p host', host !== undefined ? async () => { await host!.stop() } : undefined],
      ['partials', partials !== undefined ? async () => { await partials!.close() } : undefined],
      ['registry client', registry !== undefined ? async () => { await registry!.close() } : undefined],
      ['content store', store !== undefined ? async () => { await store!.stop() } : undefined]
    ]
    for (const [name, step] of steps) {
      if (step === undefined) continue
      try {
        await step()
      } catch (err) {
        log?.warn({ err }, `error while stopping the ${name}`)
      }
    }
    log?.info('joeyd stopped')
    log?.flush()
  }

  return {
    config,
    addresses: () => listeners.map(actualAddress),
    mirrorAddress: () => mirrorUrl,
    p2pAddresses: () => host?.multiaddrs() ?? [],
    images: () => {
      if (imageService === undefined) throw new JoeyError('ERR_FAILED_PRECONDITION', 'joeyd is not started')
      return imageService
    },
    start: async () => {
      if (stopping !== undefined) throw new JoeyError('ERR_FAILED_PRECONDITION', 'joeyd was stopped; create a new agent')
      starting ??= doStart()
      try {
        await starting
      } catch (err) {
        logger?.error({ err }, `joeyd failed to start: ${errorMessage(err)}`)
        throw err
      }
    },
    stop: async () => {
      stopping ??= doStop()
      await stopping
    }
  }
}
