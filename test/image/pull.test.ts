import { describe, test, before, after, beforeEach } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import type { PullEvent } from '../../src/image/index.js'
import { busyboxImage, dockerV2S2, largeImage, multiLayerImage, twoPlatformIndex, DOCKER_MANIFEST, type FixtureImage } from '../fixtures/images.js'
import { startRegistry, type TestRegistry } from '../fixtures/registry.js'
import { startProxy, type CountingProxy } from '../fixtures/proxy.js'
import { assertSaneEvents, envFactory, pushCrafted } from './env.js'

const GC = 'containerd.io/gc.ref.content.'

describe('image pull against a real registry', () => {
  let registry: TestRegistry
  let proxy: CountingProxy
  let busybox: FixtureImage
  let multi: FixtureImage
  let two: FixtureImage
  let v2s2: FixtureImage
  let large: FixtureImage
  const envs = envFactory()

  before(async () => {
    busybox = await busyboxImage()
    multi = await multiLayerImage()
    two = await twoPlatformIndex()
    v2s2 = await dockerV2S2(busybox)
    large = await largeImage({ layerBytes: 3 * 1024 * 1024, layers: 2 })
    registry = await startRegistry()
    await registry.push('test/busybox', 'latest', busybox)
    await registry.push('test/multi', 'latest', multi)
    await registry.push('test/two', 'latest', two)
    await registry.push('test/busybox-v2', 'latest', v2s2)
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

  const blobGets = (digest: string): number =>
    proxy.stats.requests.filter(r => r.method === 'GET' && r.path.includes(`/blobs/${digest}`)).length

  test('pulls busybox: blobs committed, labelled for GC, record written, events like docker', async () => {
    const { store, images } = await envs.make()
    const events: PullEvent[] = []
    const res = await images.pull(`${proxy.host}/test/busybox`, { onEvent: e => events.push(e) })
    const manifest = busybox.manifests[0]!
    const config = busybox.configs[0]!
    assert.equal(res.name, `${proxy.host}/test/busybox:latest`)
    assert.equal(res.digest, manifest.digest)
    assert.equal(res.id, config.digest)
    assert.equal(res.downloaded, true)
    assert.deepEqual(res.layers.map(l => l.digest), busybox.layers.map(l => l.digest))
    assertSaneEvents(events, { id: 'latest', path: 'test/busybox', layers: busybox.layers.map(l => l.digest) })
    assert.equal(events.at(-2)!.status, `Digest: ${manifest.digest}`)
    assert.equal(events.at(-1)!.status, `Status: Downloaded newer image for ${proxy.host}/test/busybox:latest`)

    const record = await store.getImage(res.name)
    assert.deepEqual(record.target, { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.size })
    const labels = (await store.info(manifest.digest)).labels
    assert.equal(labels[`${GC}config`], config.digest)
    assert.equal(labels[`${GC}l.0`], busybox.layers[0]!.digest)
    assert.deepEqual(await store.leases(), [], 'the pull lease is gone')

    const gc = await store.gc()
    assert.deepEqual(gc.removedBlobs, [])
    for (const b of [manifest, ...busybox.blobs()]) assert.equal(await store.has(b.digest), true, b.digest)
  })

  test('a second pull resolves the tag again, downloads nothing and is up to date', async () => {
    const { images } = await envs.make()
    await images.pull(`${proxy.host}/test/busybox:latest`)
    proxy.reset()
    const events: PullEvent[] = []
    const res = await images.pull(`${proxy.host}/test/busybox:latest`, { onEvent: e => events.push(e) })
    assert.equal(res.downloaded, false)
    assert.equal(proxy.stats.blobBytes, 0)
    assert.ok(proxy.stats.requests.some(r => r.path.endsWith('/manifests/latest')), 'the tag was resolved at the registry')
    assertSaneEvents(events, { id: 'latest', path: 'test/busybox', layers: busybox.layers.map(l => l.digest), existing: busybox.layers.map(l => l.digest), upToDate: true })
  })

  test('an image sharing busybox\'s layer fetches only its own blobs; removing it keeps the shared layer', async () => {
    const { store, images } = await envs.make()
    await images.pull(`${proxy.host}/test/busybox:latest`)
    const shared = busybox.layers[0]!.digest
    assert.equal(multi.layers[0]!.digest, shared)
    proxy.reset()
    const events: PullEvent[] = []
    const res = await images.pull(`${proxy.host}/test/multi:latest`, { onEvent: e => events.push(e) })
    const own = multi.layers.slice(1)
    assert.equal(proxy.stats.blobBytes, multi.configs[0]!.size + own.reduce((n, l) => n + l.size, 0))
    assert.equal(blobGets(shared), 0)
    assertSaneEvents(events, { id: 'latest', path: 'test/multi', layers: multi.layers.map(l => l.digest), existing: [shared] })
    assert.equal(res.layers.length, multi.layers.length)

    const removed = await images.remove(`${proxy.host}/test/multi:latest`)
    assert.deepEqual(removed.untagged, [`${proxy.host}/test/multi:latest`, `${proxy.host}/test/multi@${multi.root.digest}`])
    assert.equal(removed.deleted[0], multi.configs[0]!.digest)
    assert.deepEqual(new Set(removed.deleted), new Set([multi.root.digest, multi.configs[0]!.digest, ...own.map(l => l.digest)]))
    assert.equal(await store.has(shared), true)
    for (const b of [busybox.root, ...busybox.blobs()]) assert.equal(await store.has(b.digest), true)
    await images.inspect(`${proxy.host}/test/busybox:latest`)
  })

  test('a two-platform index: either platform is selectable, a missing one is ERR_NO_MATCHING_PLATFORM', async () => {
    const { store, images } = await envs.make()
    for (const [i, platform] of ['linux/amd64', 'linux/arm64'].entries()) {
      const res = await images.pull(`${proxy.host}/test/two:latest`, { platform })
      assert.equal(res.digest, two.root.digest)
      assert.equal(res.id, two.configs[i]!.digest)
      assert.equal(res.manifest.digest, two.manifests[i]!.digest)
      assert.equal((await store.info(two.root.digest)).labels[`${GC}m.${i}`], two.manifests[i]!.digest)
      const detail = await images.inspect(`${proxy.host}/test/two`)
      assert.equal(detail.id, two.configs[i]!.digest)
      assert.equal(detail.platform.architecture, platform.split('/')[1])
      assert.equal(detail.manifestDigest, two.manifests[i]!.digest)
      assert.deepEqual(detail.repoDigests, [`${proxy.host}/test/two@${two.root.digest}`])
    }
    await store.gc()
    for (const b of [two.root, ...two.blobs()]) assert.equal(await store.has(b.digest), true, 'labels keep both platforms pulled')

    const fresh = await envs.make()
    await assert.rejects(fresh.images.pull(`${proxy.host}/test/two:latest`, { platform: 'linux/s390x' }), { code: 'ERR_NO_MATCHING_PLATFORM' })
    assert.deepEqual(await fresh.store.listImages(), [])
    await assert.rejects(fresh.images.pull(`${proxy.host}/test/two:latest`, { platform: 'not a platform' }), { code: 'ERR_INVALID_PLATFORM' })

    const pinned = await envs.make({ image: { platform: 'linux/arm64' } })
    assert.equal((await pinned.images.pull(`${proxy.host}/test/two:latest`)).id, two.configs[1]!.digest)
  })

  test('a Docker schema 2 copy pulls to the same image id', async () => {
    const { images } = await envs.make()
    const res = await images.pull(`${proxy.host}/test/busybox-v2:latest`)
    assert.equal(res.manifest.mediaType, DOCKER_MANIFEST)
    assert.equal(res.digest, v2s2.root.digest)
    assert.equal(res.id, busybox.configs[0]!.digest)
    const [summary] = await images.list()
    assert.deepEqual(summary!.repoTags, [`${proxy.host}/test/busybox-v2:latest`])
  })

  test('pulling by digest records domain/path@digest', async () => {
    const { store, images } = await envs.make()
    const events: PullEvent[] = []
    const res = await images.pull(`${proxy.host}/test/busybox@${busybox.root.digest}`, { onEvent: e => events.push(e) })
    assert.equal(res.name, `${proxy.host}/test/busybox@${busybox.root.digest}`)
    assert.deepEqual(events[0], { id: busybox.root.digest, status: 'Pulling from test/busybox' })
    assert.equal(events.at(-1)!.status, `Status: Downloaded newer image for ${proxy.host}/test/busybox@${busybox.root.digest}`)
    await store.getImage(res.name)
    const [summary] = await images.list()
    assert.deepEqual(summary!.repoTags, [])
    assert.deepEqual(summary!.repoDigests, [`${proxy.host}/test/busybox@${busybox.root.digest}`])
  })

  test('two concurrent pulls of one image download each blob once', async () => {
    const { store, images, transfer } = await envs.make()
    proxy.setFaults([{ kind: 'throttle', bytesPerSecond: 20 * 1024 * 1024 }])
    const [a, b] = await Promise.all([images.pull(`${proxy.host}/test/large:latest`), images.pull(`${proxy.host}/test/large:latest`)])
    assert.equal(a.id, b.id)
    for (const blob of large.blobs()) assert.equal(blobGets(blob.digest), 1, `${blob.digest} fetched once`)
    assert.equal(proxy.stats.blobBytes, large.blobs().reduce((n, x) => n + x.size, 0))
    assert.equal(transfer.stats().originFetches, large.layers.length)
    assert.equal((await store.listImages()).length, 1)
  })

  test('a GC while a pull is in flight takes nothing the pull needs', async () => {
    const { store, images } = await envs.make()
    proxy.setFaults([{ kind: 'throttle', bytesPerSecond: 8 * 1024 * 1024 }])
    let gcs = 0
    const pulling = images.pull(`${proxy.host}/test/large:latest`, {
      onEvent: (e) => { if (e.status === 'Download complete' && gcs++ === 0) void store.gc() }
    })
    await sleep(50)
    await store.gc()
    await pulling
    await store.gc()
    for (const b of [large.root, ...large.blobs()]) assert.equal(await store.has(b.digest), true)
  })

  test('an unknown tag is ERR_MANIFEST_UNKNOWN and leaves no record', async () => {
    const { store, images } = await envs.make()
    await assert.rejects(images.pull(`${proxy.host}/test/busybox:nope`), { code: 'ERR_MANIFEST_UNKNOWN' })
    await assert.rejects(images.pull(`${proxy.host}/test/absent:latest`), (err: { code: string }) => ['ERR_MANIFEST_UNKNOWN', 'ERR_NAME_UNKNOWN'].includes(err.code))
    await assert.rejects(images.pull('Not A Reference'), { code: 'ERR_INVALID_REFERENCE' })
    assert.deepEqual(await store.listImages(), [])
    assert.deepEqual(await store.leases(), [])
  })

  test('invalid images are refused before any layer is downloaded', async () => {
    const layer = busybox.layers[0]!
    const diffIds = JSON.parse(busybox.configs[0]!.data!.toString()).rootfs.diff_ids as string[]
    const base = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: diffIds } }
    await pushCrafted(registry, 'test/bad', 'media', { config: base, layers: [layer], layerMediaTypes: ['application/vnd.example.unknown'] })
    await pushCrafted(registry, 'test/bad', 'diffids', { config: { ...base, rootfs: { type: 'layers', diff_ids: [] } }, layers: [layer] })
    await pushCrafted(registry, 'test/bad', 'norootfs', { config: { architecture: 'amd64', os: 'linux' }, layers: [layer] })
    await pushCrafted(registry, 'test/bad', 'array', { config: [1, 2], layers: [layer] })
    await pushCrafted(registry, 'test/bad', 'artifact', { config: base, configMediaType: 'application/vnd.example.artifact+json', layers: [layer] })
    const { store, images } = await envs.make()
    proxy.reset()
    const cases: Array<[string, string]> = [
      ['media', 'ERR_UNSUPPORTED_MEDIA_TYPE'],
      ['diffids', 'ERR_MANIFEST_INVALID'],
      ['norootfs', 'ERR_MANIFEST_INVALID'],
      ['array', 'ERR_MANIFEST_INVALID'],
      ['artifact', 'ERR_UNSUPPORTED_MEDIA_TYPE']
    ]
    for (const [tag, code] of cases) {
      await assert.rejects(images.pull(`${proxy.host}/test/bad:${tag}`), { code }, tag)
    }
    assert.equal(blobGets(layer.digest), 0)
    assert.equal(await store.has(layer.digest), false)
    assert.deepEqual(await store.listImages(), [])
  })
})
