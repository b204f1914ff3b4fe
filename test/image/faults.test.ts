import { describe, test, before, after, beforeEach } from 'node:test'
import assert from 'node:assert/strict'
import { blobIngestRef } from '../../src/transfer/index.js'
import { largeImage, type FixtureImage } from '../fixtures/images.js'
import { startRegistry, type TestRegistry } from '../fixtures/registry.js'
import { startProxy, type CountingProxy } from '../fixtures/proxy.js'
import { envFactory } from './env.js'

describe('image pull under origin faults', () => {
  let registry: TestRegistry
  let proxy: CountingProxy
  let large: FixtureImage
  const envs = envFactory()

  before(async () => {
    large = await largeImage({ layerBytes: 3 * 1024 * 1024, layers: 2 })
    registry = await startRegistry()
    await registry.push('test/large', 'latest', large)
    proxy = await startProxy(registry.url)
  })

  after(async () => {
    await envs.cleanup()
    await proxy?.stop()
    await registry?.stop()
  })

  beforeEach(() => {
    proxy.setFaults([])
    proxy.reset()
  })

  const name = (): string => `${proxy.host}/test/large:latest`
  const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

  test('a corrupt layer is ERR_DIGEST_MISMATCH: no image record, nothing committed for it', async () => {
    const { store, images } = await envs.make()
    const bad = large.layers[1]!
    proxy.setFaults([{ kind: 'corrupt', path: new RegExp(escape(bad.digest)) }])
    await assert.rejects(images.pull(name()), { code: 'ERR_DIGEST_MISMATCH' })
    assert.equal(await store.has(bad.digest), false)
    assert.equal(await store.ingestStatus(blobIngestRef(bad.digest)), undefined)
    assert.deepEqual(await store.listImages(), [])
    assert.deepEqual(await images.list(), [])
    await assert.rejects(images.inspect(name()), { code: 'ERR_IMAGE_NOT_FOUND', message: `No such image: ${name()}` })
    assert.deepEqual(await store.leases(), [])

    // The store stays usable: with the fault gone the pull completes.
    proxy.setFaults([])
    const res = await images.pull(name())
    assert.equal(res.digest, large.root.digest)
  })

  test('a body that keeps breaking fails with ERR_TRUNCATED and leaves a resumable ingest', async () => {
    const { store, images } = await envs.make({ transfer: { maxAttempts: 2 }, image: { maxConcurrentDownloads: 1 } })
    proxy.setFaults([{ kind: 'truncate', afterBytes: 200 * 1024 }])
    await assert.rejects(images.pull(name()), { code: 'ERR_TRUNCATED' })
    assert.deepEqual(await store.listImages(), [])
    const ingests = await store.ingests()
    const partial = ingests.find(i => i.ref === blobIngestRef(large.layers[0]!.digest))
    assert.ok(partial !== undefined && partial.offset > 200 * 1024 && partial.offset <= 400 * 1024, JSON.stringify(ingests))
    for (const l of large.layers) assert.equal(await store.has(l.digest), false)
  })

  test('an aborted pull resumes: the origin sends about the image size in total, not 1.5×', async () => {
    const { store, images } = await envs.make()
    const total = large.blobs().reduce((n, b) => n + b.size, 0)
    proxy.setFaults([{ kind: 'throttle', bytesPerSecond: 12 * 1024 * 1024 }])
    const ac = new AbortController()
    const aborted = images.pull(name(), {
      signal: ac.signal,
      onEvent: (e) => {
        if (e.status === 'Downloading' && e.progressDetail!.current! > e.progressDetail!.total! / 2) ac.abort()
      }
    })
    await assert.rejects(aborted, { code: 'ERR_ABORTED' })
    assert.deepEqual(await store.listImages(), [])
    const first = proxy.stats.blobBytes
    assert.ok(first > 0 && first < total, `aborted midway: ${first} of ${total}`)

    proxy.setFaults([])
    const res = await images.pull(name())
    assert.equal(res.digest, large.root.digest)
    const sent = proxy.stats.blobBytes
    // Bytes in flight when the first pull was cut are sent twice; a restart from zero would be 1.5×.
    assert.ok(sent < total * 1.25, `origin sent ${sent} bytes for an image of ${total}`)
    assert.ok(sent >= total, `origin sent ${sent} bytes for an image of ${total}`)
    assert.deepEqual((await store.ingests()).filter(i => i.ref.startsWith('blob-')), [])
  })
})
