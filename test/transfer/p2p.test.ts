// The P2P transfer manager against a real supernode (HTTP API, scheduler, seed fetching
// from a real registry behind a counting proxy). Peer sessions here are in-process
// readers of the other nodes' stores; the libp2p wire is tested in test/p2p and in the
// multi-process cluster tests.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify, { type FastifyInstance } from 'fastify'
import { silentLogger, JoeyError, pieceSizeFor } from '../../src/common/index.js'
import { createContentStore, type ContentStore } from '../../src/content/index.js'
import { createRegistryClient, parseReference, type RegistryClient, type Descriptor } from '../../src/distribution/index.js'
import { PartialStore, createSupernodeClient, rendezvousOrder, createP2PTransfer, type P2PTransfer, type PieceSessionLike, type SessionOpener, createDirectTransfer } from '../../src/transfer/index.js'
import { choosePiece, type ChoiceParent, type ChoiceState } from '../../src/transfer/p2p.js'
import { Scheduler } from '../../supernode/scheduler/index.js'
import { supernodeApi, createSupernodeMetrics } from '../../supernode/api.js'
import { createSeed, type Seed } from '../../supernode/seed.js'
import { largeImage, type FixtureImage } from '../fixtures/images.js'
import { startRegistry, type TestRegistry } from '../fixtures/registry.js'
import { startProxy, type CountingProxy } from '../fixtures/proxy.js'

const logger = silentLogger()
const MiB = 1024 * 1024
let dir: string
let registry: TestRegistry
let proxy: CountingProxy
let image: FixtureImage
let layer: Descriptor
let app: FastifyInstance
let supernodeUrl: string
let seed: Seed
let seedPartials: PartialStore
let seedClient: RegistryClient
const scheduler = new Scheduler({ hostTtlMs: 60_000 })
const SEED_ID = 'seed-peer'

/** Per node: how other nodes read its pieces (partial or committed). */
interface Node { id: string, store: ContentStore, partials: PartialStore, transfer: P2PTransfer, client: RegistryClient, corrupt?: boolean, served: number }
const nodes = new Map<string, Node>()

function sessionFor (parentId: string, digest: string): PieceSessionLike {
  const listeners: Array<(i: number) => void> = []
  const readSeedOrPartial = (): { has: (i: number) => boolean, read: (i: number) => Promise<Uint8Array> } | undefined => {
    const partialStore = parentId === SEED_ID ? seedPartials : nodes.get(parentId)?.partials
    const partial = partialStore?.get(digest)
    if (partial !== undefined) {
      return { has: (i) => partial.have.has(i), read: async (i) => await partial.readPiece(i) }
    }
    const node = nodes.get(parentId)
    if (node !== undefined && node.transfer.completed.has(digest)) {
      const size = node.transfer.completed.get(digest) as number
      const pieceSize = pieceSizeFor(size)
      return {
        has: () => true,
        read: async (i) => {
          const start = i * pieceSize
          const end = Math.min(size, start + pieceSize) - 1
          const chunks: Buffer[] = []
          for await (const c of await node.store.read(digest, { start, end })) chunks.push(c as Buffer)
          return Buffer.concat(chunks)
        }
      }
    }
    return undefined
  }
  const partialStore = parentId === SEED_ID ? seedPartials : nodes.get(parentId)?.partials
  const partial = partialStore?.get(digest)
  const onPiece = (i: number): void => { for (const l of listeners) l(i) }
  partial?.on('piece', onPiece)
  return {
    has: (i) => readSeedOrPartial()?.has(i) ?? false,
    onHave: (cb) => { listeners.push(cb) },
    request: async (i) => {
      const src = readSeedOrPartial()
      if (src === undefined || !src.has(i)) throw new JoeyError('ERR_NOT_FOUND', `${parentId} lacks piece ${i}`)
      const data = Buffer.from(await src.read(i))
      const node = nodes.get(parentId)
      if (node !== undefined) node.served += data.length
      if (node?.corrupt === true) data[0] = (data[0] as number) ^ 0xff
      return data
    },
    close: () => { partial?.off('piece', onPiece) }
  }
}

const opener: SessionOpener = async (parent, digest) => sessionFor(parent.peerId, digest)

async function makeNode (id: string, urls: string[], opts: { corrupt?: boolean, direct?: boolean, openSession?: SessionOpener, deferRetryMs?: number } = {}): Promise<Node> {
  const root = join(dir, id)
  const store = createContentStore({ root: join(root, 'content') }, { logger })
  await store.start()
  const client = createRegistryClient({ retries: 1, retryBaseMs: 10 }, { logger })
  const partials = new PartialStore(join(root, 'partials'), logger)
  const supernodes = createSupernodeClient({ urls, timeoutMs: 2000, penaltyMs: 500 }, { logger, host: () => ({ peerId: id, addrs: [`/memory/${id}`] }) })
  await supernodes.heartbeat()
  const direct = opts.direct === true ? { direct: createDirectTransfer({ retryBaseMs: 5 }, { logger, contentStore: store, registry: client }) } : {}
  const transfer = createP2PTransfer({ stallTimeoutMs: 1000, pieceTimeoutMs: 3000, reportIntervalMs: 50, originRetryBaseMs: 10, ...(opts.deferRetryMs !== undefined ? { deferRetryMs: opts.deferRetryMs } : {}) }, { logger, contentStore: store, registry: client, partials, supernodes, openSession: opts.openSession ?? opener, ...direct })
  const node: Node = { id, store, partials, transfer, client, served: 0, ...(opts.corrupt === true ? { corrupt: true } : {}) }
  nodes.set(id, node)
  return node
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'joey-p2p-transfer-'))
  image = await largeImage({ layerBytes: 18 * MiB })
  registry = await startRegistry()
  await registry.push('big', 'v1', image)
  proxy = await startProxy(registry.url)
  layer = image.layers[0] as Descriptor
  seedPartials = new PartialStore(join(dir, 'seed'), logger)
  seedClient = createRegistryClient({ retries: 1, retryBaseMs: 10 }, { logger })
  const metrics = createSupernodeMetrics()
  scheduler.upsertHost({ peerId: SEED_ID, addrs: ['/memory/seed'], seed: true, uploadSlots: 8 })
  seed = createSeed({}, { logger, registry: seedClient, scheduler, partials: seedPartials, metrics, peerId: SEED_ID })
  app = Fastify()
  await app.register(supernodeApi({ logger, scheduler, seed, metrics }))
  supernodeUrl = await app.listen({ host: '127.0.0.1', port: 0 })
})

after(async () => {
  for (const n of nodes.values()) {
    await n.transfer.stop()
    await n.partials.close()
    await n.client.close()
    await n.store.stop()
  }
  await seed?.stop()
  await seedPartials?.close()
  await seedClient?.close()
  await app?.close()
  await proxy?.stop()
  await registry?.stop()
  await rm(dir, { recursive: true, force: true })
})

test('rendezvous order is stable and spreads digests', () => {
  const urls = ['http://a:1', 'http://b:1', 'http://c:1']
  const first = new Map<string, number>()
  for (let i = 0; i < 300; i++) {
    const d = `sha256:${i.toString(16).padStart(64, '0')}`
    const order = rendezvousOrder(urls, d)
    assert.deepEqual(order, rendezvousOrder([...urls].reverse(), d))
    first.set(order[0] as string, (first.get(order[0] as string) ?? 0) + 1)
  }
  for (const u of urls) assert.ok((first.get(u) ?? 0) > 60, `${u} owns too few digests`)
})

test('first agent gets the blob through the seed; the origin sends it once', async () => {
  proxy.reset()
  const a = await makeNode('agentA', [supernodeUrl])
  const ref = parseReference(`${proxy.host}/big:v1`)
  const phases = new Set<string>()
  await a.transfer.fetchBlob(ref, layer, { onProgress: (p) => phases.add(p.phase) })
  assert.ok(await a.store.has(layer.digest))
  assert.equal((await a.store.info(layer.digest)).size, layer.size)
  assert.equal(a.transfer.stats().originBytes, 0, 'the agent itself never went to the origin')
  assert.ok(a.transfer.stats().peerBytes >= layer.size)
  assert.ok(proxy.stats.blobBytes <= layer.size * 1.02, `origin sent ${proxy.stats.blobBytes} for ${layer.size}`)
  assert.ok(phases.has('done'))
})

test('second agent takes its pieces from the first agent, not the seed', async () => {
  proxy.reset()
  const a = nodes.get('agentA') as Node
  const b = await makeNode('agentB', [supernodeUrl])
  await b.transfer.fetchBlob(parseReference(`${proxy.host}/big:v1`), layer)
  assert.ok(await b.store.has(layer.digest))
  assert.equal(proxy.stats.blobBytes, 0)
  assert.ok(a.served >= layer.size * 0.5, `agentA served only ${a.served} bytes`)
})

test('a peer serving corrupt pieces is dropped and reported; the pull still completes', async () => {
  const d = nodes.get('agentB') as Node
  d.corrupt = true
  const a = nodes.get('agentA') as Node
  a.corrupt = true
  const c = await makeNode('agentC', [supernodeUrl])
  await c.transfer.fetchBlob(parseReference(`${proxy.host}/big:v1`), layer)
  assert.ok(await c.store.has(layer.digest))
  const task = scheduler.tasks.get(layer.digest)
  const peer = task?.peers.get('agentC')
  assert.ok(peer?.blocked.has('agentA') === true || peer?.blocked.has('agentB') === true, 'a corrupt parent was blocked')
  d.corrupt = false
  a.corrupt = false
})

test('with no supernode reachable the agent pulls from the origin and counts it', async () => {
  proxy.reset()
  const lone = await makeNode('lone', ['http://127.0.0.1:9'])
  await lone.transfer.fetchBlob(parseReference(`${proxy.host}/big:v1`), layer)
  assert.ok(await lone.store.has(layer.digest))
  assert.equal(lone.transfer.stats().originBytes, layer.size)
  assert.equal(lone.transfer.stats().originFetches, 1)
})

test('a parent deferring a piece (ERR_PIECE_DEFERRED) is asked for others, then again; it is not dropped', async () => {
  const asked = new Map<number, number>()
  const deferring: SessionOpener = async (parent, digest) => {
    const s = sessionFor(parent.peerId, digest)
    return {
      ...s,
      request: async (i, options) => {
        const n = (asked.get(i) ?? 0) + 1
        asked.set(i, n)
        if (n === 1) throw new JoeyError('ERR_PIECE_DEFERRED', `piece ${i} is on its way to another peer`)
        return await s.request(i, options)
      }
    }
  }
  const failuresBefore = [...scheduler.hosts.values()].reduce((sum, h) => sum + h.failures, 0)
  const n = await makeNode('deferred', [supernodeUrl], { openSession: deferring, deferRetryMs: 20 })
  await n.transfer.fetchBlob(parseReference(`${proxy.host}/big:v1`), layer)
  assert.ok(await n.store.has(layer.digest))
  const pieces = Math.ceil(layer.size / pieceSizeFor(layer.size))
  assert.equal(asked.size, pieces, 'every piece was asked for')
  for (const [i, times] of asked) assert.equal(times, 2, `piece ${i}: deferred once, then served`)
  assert.equal([...scheduler.hosts.values()].reduce((sum, h) => sum + h.failures, 0), failuresBefore, 'no parent was reported as failed')
  assert.equal(n.transfer.stats().originFetches, 0)
})

test('concurrent fetches of one digest share one task', async () => {
  const n = await makeNode('agentD', [supernodeUrl])
  const ref = parseReference(`${proxy.host}/big:v1`)
  await Promise.all([n.transfer.fetchBlob(ref, layer), n.transfer.fetchBlob(ref, layer), n.transfer.fetchBlob(ref, layer)])
  assert.ok(await n.store.has(layer.digest))
  assert.ok(n.transfer.stats().peerBytes <= layer.size * 1.01, 'pieces were fetched once')
})

async function collect (stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of stream) chunks.push(c)
  return Buffer.concat(chunks)
}

test('openBlob streams a blob while it downloads, and ranges of a stored blob', async () => {
  proxy.setFaults([{ kind: 'throttle', bytesPerSecond: 24 * MiB }])
  try {
    const n = await makeNode('streamer', [])
    const ref = parseReference(`${proxy.host}/big:v1`)
    const started = Date.now()
    const stream = await n.transfer.openBlob(ref, layer)
    let firstByteAt = 0
    const chunks: Buffer[] = []
    for await (const c of stream as AsyncIterable<Buffer>) {
      if (firstByteAt === 0) firstByteAt = Date.now()
      chunks.push(c)
    }
    const all = Buffer.concat(chunks)
    const total = Date.now() - started
    assert.equal(all.length, layer.size)
    assert.ok(firstByteAt - started < total / 2, `first byte after ${firstByteAt - started} ms of ${total} ms: not streamed`)
    // The stream ends once the blob is verified; the commit to the store follows.
    await n.transfer.fetchBlob(ref, layer)
    assert.ok(await n.store.has(layer.digest))
    assert.equal(n.transfer.stats().originFetches, 1)
    const part = await collect(await n.transfer.openBlob(ref, layer, { start: 10, end: 19 }) as AsyncIterable<Buffer>)
    assert.deepEqual(part, all.subarray(10, 20))
  } finally {
    proxy.setFaults([])
  }
})

test('a corrupt origin blob: the stream errors instead of ending, nothing is stored', async () => {
  proxy.setFaults([{ kind: 'corrupt' }])
  try {
    const n = await makeNode('victim', [])
    const stream = await n.transfer.openBlob(parseReference(`${proxy.host}/big:v1`), layer)
    await assert.rejects(collect(stream as AsyncIterable<Buffer>), { code: 'ERR_DIGEST_MISMATCH' })
    assert.equal(await n.store.has(layer.digest), false)
    assert.deepEqual(await n.store.ingests(), [])
  } finally {
    proxy.setFaults([])
  }
})

test('without a supernode, a whole-blob fetch goes straight into the store, not through pieces', async () => {
  proxy.reset()
  const n = await makeNode('plain', [], { direct: true })
  await n.transfer.fetchBlob(parseReference(`${proxy.host}/big:v1`), layer)
  assert.ok(await n.store.has(layer.digest))
  assert.equal(proxy.stats.blobBytes, layer.size)
  assert.equal(n.transfer.stats().originBytes, layer.size)
  assert.equal(n.transfer.stats().originFetches, 1)
  const partialDirs = await readdir(n.partials.root).catch(() => [])
  assert.deepEqual(partialDirs, [], 'no partial blob was assembled')
})

test('piece choice: the in-order head first, then the rarest; a seed only gets what no peer parent has', () => {
  const holding = (seed: boolean, pieces: number[]): ChoiceParent => ({ seed, has: (i) => pieces.includes(i) })
  const seed = holding(true, [0, 1, 2, 3, 4, 5, 6, 7])
  const a = holding(false, [1, 2, 3, 4, 5])
  const b = holding(false, [2, 3, 4, 5])
  const have = new Set([0])
  const inflight = new Set<number>()
  const state: ChoiceState = { pieceCount: 8, have: (i) => have.has(i), inflight: (i) => inflight.has(i), trusted: (i) => i < 7, parents: [seed, a, b] }
  const options = { inOrderWindow: 2, random: () => 0 }
  assert.equal(choosePiece(state, a, options), 1, 'the head (piece 1) from a peer')
  inflight.add(1)
  assert.equal(choosePiece(state, b, options), 2, 'the second head piece')
  inflight.add(2)
  assert.equal(choosePiece(state, seed, options), 6, 'the seed: only pieces no peer parent holds, and with a known digest (not 7)')
  inflight.add(6)
  assert.equal(choosePiece(state, seed, options), undefined)
  assert.equal(choosePiece(state, b, options), 3, 'then the rarest among parents, the head being in flight')
})
