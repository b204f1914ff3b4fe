import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { sha256 } from '../../src/common/index.js'
import { busyboxImage, canonicalJson, dockerV2S2, hostArchitecture, twoPlatformIndex, type FixtureImage } from '../fixtures/images.js'
import { FIXTURE_CREATED } from '../fixtures/tar.js'
import { startRegistry, type TestRegistry } from '../fixtures/registry.js'
import { envFactory, pushCrafted } from './env.js'

describe('image list, inspect and remove', () => {
  let registry: TestRegistry
  let busybox: FixtureImage
  let v2s2: FixtureImage
  let two: FixtureImage
  let host: string
  const envs = envFactory()

  before(async () => {
    busybox = await busyboxImage()
    v2s2 = await dockerV2S2(busybox)
    two = await twoPlatformIndex()
    registry = await startRegistry()
    host = registry.host
    await registry.push('test/busybox', 'latest', busybox)
    await registry.push('test/busybox', 'v1', busybox)
    await registry.push('test/busybox-v2', 'latest', v2s2)
    await registry.push('test/two', 'latest', two)
  })

  after(async () => {
    await envs.cleanup()
    await registry?.stop()
  })

  const id = (): string => busybox.configs[0]!.digest
  const hex = (): string => id().slice('sha256:'.length)

  test('list groups names by image id with docker\'s fields', async () => {
    const { images } = await envs.make()
    await images.pull(`${host}/test/busybox:latest`)
    await images.pull(`${host}/test/busybox-v2:latest`)
    await images.pull(`${host}/test/two:latest`, { platform: 'linux/arm64' })
    const list = await images.list()
    assert.equal(list.length, 2)
    const bb = list.find(s => s.id === id())!
    assert.deepEqual(new Set(bb.repoTags), new Set([`${host}/test/busybox:latest`, `${host}/test/busybox-v2:latest`]))
    assert.deepEqual(new Set(bb.repoDigests), new Set([`${host}/test/busybox@${busybox.root.digest}`, `${host}/test/busybox-v2@${v2s2.root.digest}`]))
    assert.equal(bb.created, Math.floor(Date.parse(FIXTURE_CREATED) / 1000))
    assert.equal(bb.size, busybox.configs[0]!.size + busybox.layers.reduce((n, l) => n + l.size, 0))
    assert.deepEqual(bb.platform, { os: 'linux', architecture: hostArchitecture() })
    const arm = list.find(s => s.id === two.configs[1]!.digest)!
    assert.deepEqual(arm.repoTags, [`${host}/test/two:latest`])
    assert.deepEqual(arm.repoDigests, [`${host}/test/two@${two.root.digest}`])
    assert.equal(arm.platform.architecture, 'arm64')
  })

  test('inspect accepts names, ids, id prefixes and name@digest', async () => {
    const { images, store } = await envs.make()
    await images.pull(`${host}/test/busybox:latest`)
    const forms = [
      `${host}/test/busybox:latest`,
      `${host}/test/busybox`,
      id(),
      hex(),
      hex().slice(0, 12),
      `sha256:${hex().slice(0, 12)}`,
      hex().slice(0, 4),
      `${host}/test/busybox@${busybox.root.digest}`
    ]
    for (const form of forms) {
      const d = await images.inspect(form)
      assert.equal(d.id, id(), form)
      assert.equal(d.manifestDigest, busybox.root.digest)
      assert.deepEqual(d.layers.map(l => l.digest), busybox.layers.map(l => l.digest))
      assert.deepEqual(d.rootfs, JSON.parse(busybox.configs[0]!.data!.toString()).rootfs)
      assert.deepEqual(d.config.config.Cmd, ['sh'])
    }
    for (const missing of ['busybox', 'nosuch:1', hex().slice(0, 3), `sha256:${'f'.repeat(64)}`, `${host}/test/busybox:v1`, `${host}/test/busybox@sha256:${'0'.repeat(64)}`]) {
      await assert.rejects(images.inspect(missing), { code: 'ERR_IMAGE_NOT_FOUND', message: `No such image: ${missing}` })
    }

    // Familiar Docker Hub names resolve like docker's: busybox means docker.io/library/busybox:latest.
    const m = busybox.root
    await store.putImage({ name: 'docker.io/library/busybox:latest', target: { mediaType: m.mediaType, digest: m.digest, size: m.size }, labels: {} })
    const d = await images.inspect('busybox')
    assert.ok(d.repoTags.includes('busybox:latest'))
    assert.ok(d.repoDigests.includes(`busybox@${m.digest}`))
    assert.equal((await images.inspect('docker.io/library/busybox')).id, id())
    assert.equal((await images.inspect('busybox:latest')).id, id())
  })

  test('an ambiguous id prefix is ERR_INVALID_ARGUMENT', async () => {
    // Two configs whose digests share their first four hex digits, found by brute force.
    const base = JSON.parse(busybox.configs[0]!.data!.toString()) as Record<string, any>
    const seen = new Map<string, number>()
    let pair: [number, number] | undefined
    for (let n = 0; pair === undefined; n++) {
      const prefix = sha256(canonicalJson({ ...base, config: { ...base.config, Labels: { n: String(n) } } })).slice(7, 11)
      const other = seen.get(prefix)
      if (other !== undefined) pair = [other, n]
      else seen.set(prefix, n)
    }
    const crafted = []
    for (const [i, n] of pair.entries()) {
      crafted.push(await pushCrafted(registry, `test/amb${i}`, 'latest', { config: { ...base, config: { ...base.config, Labels: { n: String(n) } } }, layers: busybox.layers }))
    }
    const { images } = await envs.make()
    await images.pull(`${host}/test/amb0:latest`)
    await images.pull(`${host}/test/amb1:latest`)
    const [a, b] = crafted.map(c => c.config.digest.slice(7))
    assert.equal(a!.slice(0, 4), b!.slice(0, 4))
    await assert.rejects(images.inspect(a!.slice(0, 4)), { code: 'ERR_INVALID_ARGUMENT', message: /ambiguous/ })
    await assert.rejects(images.remove(a!.slice(0, 4)), { code: 'ERR_INVALID_ARGUMENT' })
    let common = 4
    while (a![common] === b![common]) common++
    assert.equal((await images.inspect(a!.slice(0, common + 1))).id, crafted[0]!.config.digest)
    assert.equal((await images.inspect(b!.slice(0, common + 1))).id, crafted[1]!.config.digest)
  })

  test('remove: by name untags one name; by id needs force across repositories; GC frees what nobody uses', async () => {
    const { images, store } = await envs.make()
    await images.pull(`${host}/test/busybox:latest`)
    await images.pull(`${host}/test/busybox-v2:latest`)
    await images.pull(`${host}/test/two:latest`, { platform: 'linux/amd64' })

    await assert.rejects(images.remove(id()), {
      code: 'ERR_IN_USE',
      message: `conflict: unable to delete ${hex().slice(0, 12)} (must be forced) - image is referenced in multiple repositories`
    })
    assert.equal((await store.listImages()).length, 3, 'a refused remove changes nothing')

    const byName = await images.remove(`${host}/test/busybox-v2:latest`)
    assert.deepEqual(byName.untagged, [`${host}/test/busybox-v2:latest`, `${host}/test/busybox-v2@${v2s2.root.digest}`])
    assert.deepEqual(byName.deleted, [v2s2.root.digest], 'only the schema 2 manifest was unique to that name')
    for (const b of busybox.blobs()) assert.equal(await store.has(b.digest), true)

    const byId = await images.remove(hex().slice(0, 12))
    assert.deepEqual(byId.untagged, [`${host}/test/busybox:latest`, `${host}/test/busybox@${busybox.root.digest}`])
    assert.equal(byId.deleted[0], id(), 'the image id comes first, like docker')
    assert.deepEqual(new Set(byId.deleted), new Set([busybox.root.digest, ...busybox.blobs().map(b => b.digest)]))
    await assert.rejects(images.inspect(`${host}/test/busybox`), { code: 'ERR_IMAGE_NOT_FOUND' })
    await assert.rejects(images.remove(`${host}/test/busybox`), { code: 'ERR_IMAGE_NOT_FOUND', message: `No such image: ${host}/test/busybox` })

    // The other image is untouched.
    const left = await images.list()
    assert.deepEqual(left.map(s => s.id), [two.configs[0]!.digest])
    for (const b of [two.root, two.manifests[0]!, two.configs[0]!, two.layers[0]!]) assert.equal(await store.has(b.digest), true)
  })

  test('remove by id: one repository with several tags needs no force; force removes across repositories', async () => {
    const { images, store } = await envs.make()
    await images.pull(`${host}/test/busybox:latest`)
    await images.pull(`${host}/test/busybox:v1`)
    const res = await images.remove(id())
    assert.deepEqual(new Set(res.untagged), new Set([`${host}/test/busybox:latest`, `${host}/test/busybox:v1`, `${host}/test/busybox@${busybox.root.digest}`]))
    assert.deepEqual(await store.listImages(), [])
    assert.deepEqual(await store.list(), [])

    await images.pull(`${host}/test/busybox:latest`)
    await images.pull(`${host}/test/busybox-v2:latest`)
    const forced = await images.remove(id(), { force: true })
    assert.equal(forced.untagged.length, 4)
    assert.deepEqual(await images.list(), [])
    assert.deepEqual(await store.list(), [])
  })

  test('tag: a second name for the same image; untagging one name keeps the other and every blob', async () => {
    const { images, store } = await envs.make()
    await images.pull(`${host}/test/two:latest`, { platform: 'linux/amd64' })
    await images.tag(`${host}/test/two:latest`, 'example.com/team/app:v2')
    await images.tag(two.configs[0]!.digest.slice(7, 19), 'example.com/team/app')
    const summary = (await images.list()).find(s => s.id === two.configs[0]!.digest)
    assert.deepEqual(new Set(summary?.repoTags), new Set([`${host}/test/two:latest`, 'example.com/team/app:v2', 'example.com/team/app:latest']))
    assert.equal((await images.inspect('example.com/team/app:v2')).id, two.configs[0]!.digest, 'the platform chosen at pull is kept')
    assert.deepEqual(summary?.repoDigests, [`${host}/test/two@${two.root.digest}`], 'a tagged name has no repo digest, as in docker')

    await assert.rejects(images.tag(`${host}/test/two:latest`, 'example.com/app@sha256:' + 'a'.repeat(64)), { code: 'ERR_INVALID_REFERENCE' })
    await assert.rejects(images.tag(`${host}/test/two:latest`, 'Bad Name'), { code: 'ERR_INVALID_REFERENCE' })
    await assert.rejects(images.tag('ghost:1', 'example.com/x:1'), { code: 'ERR_IMAGE_NOT_FOUND' })

    await images.remove(`${host}/test/two:latest`)
    assert.deepEqual(await images.remove('example.com/team/app:latest'), { untagged: ['example.com/team/app:latest'], deleted: [] })
    for (const b of [two.root, two.manifests[0]!, two.configs[0]!, two.layers[0]!]) assert.equal(await store.has(b.digest), true)
    await images.remove('example.com/team/app:v2')
    assert.deepEqual(await store.list(), [])
  })
})
