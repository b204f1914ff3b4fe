import { describe, test, before, after, beforeEach } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { createRateLimiter, silentLogger } from '../../src/common/index.js'
import { createContentStore, type ContentStore } from '../../src/content/index.js'
import { createRegistryClient, parseReference } from '../../src/distribution/index.js'
import type { Descriptor, RegistryClient } from '../../src/distribution/index.js'
import { blobIngestRef, createDirectTransfer } from '../../src/transfer/index.js'
import type { BlobProgress } from '../../src/transfer/index.js'
import { busyboxImage, largeImage, type FixtureBlob, type FixtureImage } from '../fixtures/images.js'
import { startRegistry, type TestRegistry } from '../fixtures/registry.js'
import { startProxy, type CountingProxy } from '../fixtures/proxy.js'

const logger = silentLogger()
const desc = (b: FixtureBlob): Descriptor => ({ mediaType: b.mediaType, digest: b.digest, size: b.size })

describe('direct transfer against a real registry', () => {
  let registry: TestRegistry
  let proxy: CountingProxy
  let client: RegistryClient
  let busybox: FixtureImage
  let large: FixtureImage
  const dirs: string[] = []
  const stores: ContentStore[] = []

  before(async () => {
    busybox = await busyboxImage()
    large = await largeImage({ layerBytes: 2 * 1024 * 1024 })
    registry = await startRegistry()
    await registry.push('test/busybox', 'latest', busybox)
    await registry.push('test/large', 'latest', large)
    proxy = await startProxy(registry.url)
    client = createRegistryClient({ retries: 0, retryBaseMs: 10, timeoutMs: 5000 }, { logger })
  })

  after(async () => {
    await client?.close()
    for (const s of stores) await s.stop().catch(() => {})
    await proxy?.stop()
    await registry?.stop()
    for (const d of dirs) await rm(d, { recursive: true, force: true })
  })

  beforeEach(() => {
    proxy.setFaults([])
    proxy.reset()
  })

  async function freshStore (): Promise<ContentStore> {
    const dir = await mkdtemp(join(tmpdir(), 'joey-transfer-'))
    dirs.push(dir)
    const store = createContentStore({ root: dir }, { logger })
    await store.start()
    stores.push(store)
    return store
  }

  const bbRef = (): ReturnType<typeof parseReference> => parseReference(`${proxy.host}/test/busybox:latest`)
  const largeRef = (): ReturnType<typeof parseReference> => parseReference(`${proxy.host}/test/large:latest`)

  test('downloads, verifies and commits a blob; a second fetch finds it', async () => {
    const store = await freshStore()
    const transfer = createDirectTransfer({}, { logger, contentStore: store, registry: client })
    const layer = busybox.layers[0]!
    const seen: BlobProgress[] = []
    await transfer.fetchBlob(bbRef(), desc(layer), { onProgress: p => seen.push(p) })
    assert.equal(await store.has(layer.digest), true)
    assert.deepEqual((await store.readBytes(layer.digest, layer.size + 1)).equals(layer.data!), true)
    assert.deepEqual(seen.map(p => p.phase).filter((p, i, a) => a[i - 1] !== p), ['downloading', 'verifying', 'done'])
    assert.equal(seen.at(-1)!.current, layer.size)
    assert.deepEqual(transfer.stats(), { originBytes: layer.size, peerBytes: 0, originFetches: 1 })
    assert.equal(proxy.stats.blobBytes, layer.size)

    const again: BlobProgress[] = []
    await transfer.fetchBlob(bbRef(), desc(layer), { onProgress: p => again.push(p) })
    assert.deepEqual(again.map(p => p.phase), ['exists'])
    assert.equal(transfer.stats().originBytes, layer.size)
    assert.equal(proxy.stats.blobBytes, layer.size)
  })

  test('the download cap paces the origin flow', async () => {
    const store = await freshStore()
    const rate = 4 * 1024 * 1024
    const transfer = createDirectTransfer({}, { logger, contentStore: store, registry: client, downloadLimiter: createRateLimiter(rate, { burstBytes: 64 * 1024 }) })
    const layer = large.layers[0]!
    const t0 = performance.now()
    await transfer.fetchBlob(largeRef(), desc(layer))
    const seconds = (performance.now() - t0) / 1000
    // The first chunk rides the burst; the rest waits for the bucket. Fast machines must not pass early.
    assert.ok(seconds >= (layer.size - 256 * 1024) / rate, `${layer.size} bytes took ${seconds.toFixed(2)} s at ${rate} B/s`)
    assert.equal(await store.has(layer.digest), true)
  })

  test('concurrent fetches of one digest share one download and all see progress', async () => {
    const store = await freshStore()
    const transfer = createDirectTransfer({}, { logger, contentStore: store, registry: client })
    const layer = large.layers[0]!
    proxy.setFaults([{ kind: 'throttle', bytesPerSecond: 8 * 1024 * 1024 }])
    const progress: BlobProgress[][] = [[], [], []]
    await Promise.all(progress.map(async (list) => { await transfer.fetchBlob(largeRef(), desc(layer), { onProgress: p => list.push(p) }) }))
    for (const list of progress) {
      assert.ok(list.some(p => p.phase === 'downloading'), 'every caller sees download progress')
      assert.equal(list.at(-1)!.phase, 'done')
    }
    assert.equal(proxy.stats.blobBytes, layer.size)
    assert.equal(proxy.stats.requests.filter(r => r.method === 'GET' && r.path.includes('/blobs/')).length, 1)
    assert.equal(transfer.stats().originFetches, 1)
  })

  test('one caller aborting does not stop the download another caller waits for', async () => {
    const store = await freshStore()
    const transfer = createDirectTransfer({}, { logger, contentStore: store, registry: client })
    const layer = large.layers[0]!
    proxy.setFaults([{ kind: 'throttle', bytesPerSecond: 8 * 1024 * 1024 }])
    const ac = new AbortController()
    const quitter = transfer.fetchBlob(largeRef(), desc(layer), { signal: ac.signal })
    const stayer = transfer.fetchBlob(largeRef(), desc(layer))
    setTimeout(() => ac.abort(), 50)
    await assert.rejects(quitter, { code: 'ERR_ABORTED' })
    await stayer
    assert.equal(await store.has(layer.digest), true)
    assert.equal(proxy.stats.blobBytes, layer.size)
  })

  test('a dropped connection resumes from the new offset instead of starting over', async () => {
    const store = await freshStore()
    const transfer = createDirectTransfer({ maxAttempts: 10, retryBaseMs: 5 }, { logger, contentStore: store, registry: client })
    const layer = large.layers[0]!
    proxy.setFaults([{ kind: 'truncate', afterBytes: 700 * 1024 }])
    await transfer.fetchBlob(largeRef(), desc(layer))
    assert.equal(await store.has(layer.digest), true)
    // The proxy counts bytes it wrote; a few may die in the socket when it cuts the connection.
    assert.ok(proxy.stats.blobBytes >= layer.size && proxy.stats.blobBytes < layer.size + 256 * 1024, `no byte was fetched twice: ${proxy.stats.blobBytes}`)
    const gets = proxy.stats.requests.filter(r => r.method === 'GET' && r.path.includes('/blobs/'))
    assert.ok(gets.length >= Math.ceil(layer.size / (700 * 1024)) && gets.length <= 10)
    assert.equal(transfer.stats().originBytes, layer.size)
  })

  test('a body that keeps breaking fails with ERR_TRUNCATED and leaves a resumable ingest', async () => {
    const store = await freshStore()
    const transfer = createDirectTransfer({ maxAttempts: 2, retryBaseMs: 5 }, { logger, contentStore: store, registry: client })
    const layer = large.layers[0]!
    proxy.setFaults([{ kind: 'truncate', afterBytes: 256 * 1024 }])
    await assert.rejects(transfer.fetchBlob(largeRef(), desc(layer)), { code: 'ERR_TRUNCATED' })
    assert.equal(await store.has(layer.digest), false)
    const status = await store.ingestStatus(blobIngestRef(layer.digest))
    // Two attempts of up to 256 KiB each (a few bytes can die with the cut connection).
    assert.ok(status !== undefined && status.offset > 256 * 1024 && status.offset <= 512 * 1024, `offset ${status?.offset}`)

    proxy.setFaults([])
    proxy.reset()
    await transfer.fetchBlob(largeRef(), desc(layer))
    assert.equal(await store.has(layer.digest), true)
    assert.equal(proxy.stats.blobBytes, layer.size - status.offset, 'the second run fetched only the rest')
  })

  test('corrupt bytes surface as ERR_DIGEST_MISMATCH and nothing is committed', async () => {
    const store = await freshStore()
    const transfer = createDirectTransfer({ retryBaseMs: 5 }, { logger, contentStore: store, registry: client })
    const layer = large.layers[0]!
    proxy.setFaults([{ kind: 'corrupt' }])
    await assert.rejects(transfer.fetchBlob(largeRef(), desc(layer)), { code: 'ERR_DIGEST_MISMATCH' })
    assert.equal(await store.has(layer.digest), false)
    assert.equal(await store.ingestStatus(blobIngestRef(layer.digest)), undefined, 'the bad bytes are not kept for resuming')
    assert.equal(proxy.stats.requests.filter(r => r.method === 'GET' && r.path.includes('/blobs/')).length, 1, 'no retry of bad data')
  })

  test('a wrong size in the descriptor is ERR_SIZE_MISMATCH and nothing is committed', async () => {
    const store = await freshStore()
    const transfer = createDirectTransfer({ retryBaseMs: 5 }, { logger, contentStore: store, registry: client })
    const layer = busybox.layers[0]!
    await assert.rejects(transfer.fetchBlob(bbRef(), { ...desc(layer), size: layer.size - 10 }), { code: 'ERR_SIZE_MISMATCH' })
    assert.equal(await store.has(layer.digest), false)
  })

  test('abort keeps the partial; the next fetch resumes it', async () => {
    const store = await freshStore()
    const transfer = createDirectTransfer({}, { logger, contentStore: store, registry: client })
    const layer = large.layers[0]!
    proxy.setFaults([{ kind: 'throttle', bytesPerSecond: 4 * 1024 * 1024 }])
    const ac = new AbortController()
    let current = 0
    const p = transfer.fetchBlob(largeRef(), desc(layer), {
      signal: ac.signal,
      onProgress: (x) => { current = x.current; if (x.current > layer.size / 3) ac.abort() }
    })
    await assert.rejects(p, { code: 'ERR_ABORTED' })
    assert.ok(current > 0)
    // The writer is closed asynchronously after the caller is released.
    let status
    for (let i = 0; i < 50 && (status = await store.ingestStatus(blobIngestRef(layer.digest))) === undefined; i++) await sleep(20)
    assert.ok(status !== undefined && status.offset > 0, 'partial kept')
    proxy.setFaults([])
    const before = proxy.stats.blobBytes
    await transfer.fetchBlob(largeRef(), desc(layer))
    assert.equal(await store.has(layer.digest), true)
    assert.ok(proxy.stats.blobBytes - before <= layer.size - status.offset, 'only the rest was fetched')
    assert.ok(proxy.stats.blobBytes < layer.size * 1.2, `≈ size sent in total, got ${proxy.stats.blobBytes} of ${layer.size}`)
  })

  test('waits a little for an ingest another writer holds, then downloads or finds the blob', async () => {
    const store = await freshStore()
    const transfer = createDirectTransfer({ lockWaitMs: 5000 }, { logger, contentStore: store, registry: client })
    const layer = busybox.layers[0]!
    const opts = { expectedDigest: layer.digest, expectedSize: layer.size }

    // The other writer gives up: we take over the ingest and download.
    const quitter = await store.writer(blobIngestRef(layer.digest), opts)
    const phases: string[] = []
    const first = transfer.fetchBlob(bbRef(), desc(layer), { onProgress: p => phases.push(p.phase) })
    await sleep(300)
    assert.deepEqual(phases, ['waiting'])
    await quitter.close()
    await first
    assert.equal(phases.at(-1), 'done')
    assert.equal(proxy.stats.blobBytes, layer.size)

    // The other writer finishes the blob: nothing is downloaded.
    const other = await freshStore()
    const t2 = createDirectTransfer({ lockWaitMs: 5000 }, { logger, contentStore: other, registry: client })
    proxy.reset()
    const finisher = await other.writer(blobIngestRef(layer.digest), opts)
    const phases2: string[] = []
    const second = t2.fetchBlob(bbRef(), desc(layer), { onProgress: p => phases2.push(p.phase) })
    await sleep(200)
    await finisher.write(layer.data!)
    await finisher.commit(layer.size, layer.digest)
    await second
    assert.deepEqual(phases2, ['waiting', 'exists'])
    assert.equal(proxy.stats.blobBytes, 0)

    // A writer that never lets go: ERR_LOCKED after the wait.
    const third = await freshStore()
    const t3 = createDirectTransfer({ lockWaitMs: 300 }, { logger, contentStore: third, registry: client })
    const holder = await third.writer(blobIngestRef(layer.digest), opts)
    await assert.rejects(t3.fetchBlob(bbRef(), desc(layer)), { code: 'ERR_LOCKED' })
    await holder.close()
  })

  test('an unknown blob fails without retries and keeps nothing', async () => {
    const store = await freshStore()
    const transfer = createDirectTransfer({ retryBaseMs: 5 }, { logger, contentStore: store, registry: client })
    const missing = { mediaType: 'application/octet-stream', digest: `sha256:${'0'.repeat(64)}`, size: 10 }
    await assert.rejects(transfer.fetchBlob(bbRef(), missing), { code: 'ERR_BLOB_UNKNOWN' })
    assert.equal(proxy.stats.requests.filter(r => r.path.includes('/blobs/')).length, 1)
  })

  test('bad descriptors are rejected up front', async () => {
    const store = await freshStore()
    const transfer = createDirectTransfer({}, { logger, contentStore: store, registry: client })
    await assert.rejects(transfer.fetchBlob(bbRef(), { mediaType: 'x', digest: 'sha256:nothex', size: 1 }), { code: 'ERR_INVALID_DIGEST' })
    await assert.rejects(transfer.fetchBlob(bbRef(), { mediaType: 'x', digest: busybox.layers[0]!.digest, size: -1 }), { code: 'ERR_INVALID_ARGUMENT' })
    assert.equal(proxy.stats.requests.length, 0)
  })
})

describe('direct transfer against a registry without Range support', () => {
  const dirs: string[] = []
  let store: ContentStore

  before(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'joey-transfer-norange-'))
    dirs.push(dir)
    store = createContentStore({ root: dir }, { logger })
    await store.start()
  })
  after(async () => {
    await store?.stop()
    for (const d of dirs) await rm(d, { recursive: true, force: true })
  })

  test('restarts from byte 0 when the registry ignores Range', async () => {
    const large = await largeImage({ layerBytes: 2 * 1024 * 1024 })
    const layer = large.layers[0]!
    const hash = createHash('sha256')
    // Seed a partial ingest of garbage: the restart must drop it, not append to it.
    const w = await store.writer(blobIngestRef(layer.digest), { expectedDigest: layer.digest, expectedSize: layer.size })
    await w.write(Buffer.alloc(1000, 7))
    await w.close()
    const offsets: Array<number | undefined> = []
    const stub: RegistryClient = {
      getManifest: async () => { throw new Error('unused') },
      headManifest: async () => { throw new Error('unused') },
      headBlob: async () => ({ size: layer.size }),
      getBlobBytes: async () => { throw new Error('unused') },
      close: async () => {},
      getBlob: async (_ref, _digest, options) => {
        offsets.push(options?.offset)
        return { stream: createReadStream(layer.path!), offset: 0, size: layer.size }
      }
    }
    const transfer = createDirectTransfer({}, { logger, contentStore: store, registry: stub })
    await transfer.fetchBlob(parseReference('127.0.0.1:1/x:latest'), desc(layer))
    assert.deepEqual(offsets, [1000])
    for await (const chunk of await store.read(layer.digest)) hash.update(chunk as Buffer)
    assert.equal(`sha256:${hash.digest('hex')}`, layer.digest)
    assert.equal(transfer.stats().originBytes, layer.size)
  })

  test('a stream that errors mid-body is retried and counted once as a fetch', async () => {
    const data = Buffer.alloc(300_000, 3)
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`
    let calls = 0
    const stub: RegistryClient = {
      getManifest: async () => { throw new Error('unused') },
      headManifest: async () => { throw new Error('unused') },
      headBlob: async () => ({ size: data.length }),
      getBlobBytes: async () => { throw new Error('unused') },
      close: async () => {},
      getBlob: async (_ref, _digest, options) => {
        calls++
        const offset = options?.offset ?? 0
        const rest = data.subarray(offset)
        if (calls === 1) {
          const s = new Readable({ read () {} })
          s.push(rest.subarray(0, 100_000))
          setImmediate(() => s.destroy(new Error('socket hang up')))
          return { stream: s, offset, size: data.length }
        }
        return { stream: Readable.from([rest]), offset, size: data.length }
      }
    }
    const transfer = createDirectTransfer({ retryBaseMs: 1 }, { logger, contentStore: store, registry: stub })
    await transfer.fetchBlob(parseReference('127.0.0.1:1/x:latest'), { mediaType: 'x', digest, size: data.length })
    assert.equal(calls, 2)
    assert.deepEqual(transfer.stats(), { originBytes: data.length, peerBytes: 0, originFetches: 1 })
    assert.ok((await store.readBytes(digest, data.length)).equals(data))
  })
})
