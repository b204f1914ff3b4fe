// The client against Debian's docker-registry (distribution 2.8), directly and through the
// fault-injecting proxy.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { buffer } from 'node:stream/consumers'
import { sha256, silentLogger } from '../../src/common/index.js'
import {
  MEDIA_TYPES, createRegistryClient, parseManifest, parsePlatform, parseReference, selectManifest,
  type Descriptor, type RegistryClient, type RegistryClientInit
} from '../../src/distribution/index.js'
import { busyboxImage, dockerV2S2, twoPlatformIndex, type FixtureBlob, type FixtureImage } from '../fixtures/images.js'
import { startRegistry, type TestRegistry } from '../fixtures/registry.js'
import { startProxy, type CountingProxy } from '../fixtures/proxy.js'

let reg: TestRegistry
let authReg: TestRegistry
let proxy: CountingProxy
let busybox: FixtureImage
let multi: FixtureImage
let v2s2: FixtureImage
const clients: RegistryClient[] = []

function client (init: RegistryClientInit = {}): RegistryClient {
  const c = createRegistryClient({ retries: 1, retryBaseMs: 5, timeoutMs: 5000, ...init }, { logger: silentLogger() })
  clients.push(c)
  return c
}

function desc (b: FixtureBlob): Descriptor {
  return { mediaType: b.mediaType, digest: b.digest, size: b.size }
}

function data (b: FixtureBlob): Buffer {
  assert.ok(b.data !== undefined, `fixture blob ${b.digest} is in memory`)
  return b.data
}

async function rejectsWith (p: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
  await assert.rejects(p, (err: any) => {
    assert.equal(err.code, code, `${err.code}: ${err.message}`)
    if (message !== undefined) assert.match(err.message, message)
    return true
  })
}

before(async () => {
  ;[busybox, multi] = await Promise.all([busyboxImage(), twoPlatformIndex()])
  v2s2 = await dockerV2S2(busybox)
  ;[reg, authReg] = await Promise.all([startRegistry(), startRegistry({ htpasswd: { username: 'joey', password: 'hunter2' } })])
  await reg.push('test/busybox', 'latest', busybox)
  await reg.push('test/multi', 'latest', multi)
  await reg.push('test/busybox-v2s2', 'v1', v2s2)
  await authReg.push('private/busybox', 'latest', busybox)
  proxy = await startProxy(reg.url)
})

after(async () => {
  await Promise.all(clients.map(async c => await c.close()))
  await Promise.all([proxy?.stop(), reg?.stop(), authReg?.stop()])
})

describe('against docker-registry', () => {
  test('manifest by tag and by digest, and HEAD', async () => {
    const c = client()
    const byTag = await c.getManifest(parseReference(`${reg.host}/test/busybox:latest`))
    assert.deepEqual(byTag.descriptor, { mediaType: MEDIA_TYPES.ociManifest, digest: busybox.root.digest, size: busybox.root.size })
    assert.deepEqual(byTag.bytes, data(busybox.root))
    const byDigest = await c.getManifest(parseReference(`${reg.host}/test/busybox@${busybox.root.digest}`))
    assert.deepEqual(byDigest.descriptor, byTag.descriptor)
    assert.deepEqual(await c.headManifest(parseReference(`${reg.host}/test/busybox`)), byTag.descriptor)
    assert.deepEqual(await c.headManifest(parseReference(`${reg.host}/test/busybox:latest@${busybox.root.digest}`)), byTag.descriptor)
  })

  test('index: select a platform, then fetch its manifest and config', async () => {
    const c = client()
    const repo = parseReference(`${reg.host}/test/multi`)
    const top = await c.getManifest(repo)
    assert.equal(top.descriptor.mediaType, MEDIA_TYPES.ociIndex)
    const parsed = parseManifest(top.bytes, top.descriptor.mediaType)
    assert.equal(parsed.kind, 'index')
    if (parsed.kind !== 'index') return
    for (const [i, platform] of ['linux/amd64', 'linux/arm64/v8'].entries()) {
      const chosen = selectManifest(parsed.index, parsePlatform(platform))
      assert.equal(chosen.digest, multi.manifests[i]!.digest, platform)
      const child = await c.getManifest(parseReference(`${reg.host}/test/multi@${chosen.digest}`))
      const m = parseManifest(child.bytes, child.descriptor.mediaType)
      assert.equal(m.kind, 'manifest')
      if (m.kind !== 'manifest') return
      const config = await c.getBlobBytes(repo, m.manifest.config)
      assert.deepEqual(config, data(multi.configs[i]!))
      assert.equal(JSON.parse(config.toString()).architecture, platform.split('/')[1])
    }
    await rejectsWith(Promise.resolve().then(() => selectManifest(parsed.index, parsePlatform('linux/s390x'))), 'ERR_NO_MATCHING_PLATFORM', /linux\/amd64, linux\/arm64/)
  })

  test('Docker schema 2 manifest', async () => {
    const c = client()
    const ref = parseReference(`${reg.host}/test/busybox-v2s2:v1`)
    const got = await c.getManifest(ref)
    assert.equal(got.descriptor.mediaType, MEDIA_TYPES.dockerManifest)
    assert.equal(got.descriptor.digest, v2s2.root.digest)
    const m = parseManifest(got.bytes, got.descriptor.mediaType)
    assert.ok(m.kind === 'manifest')
    assert.equal(m.manifest.config.mediaType, MEDIA_TYPES.dockerConfig)
    assert.equal(m.manifest.layers[0]!.mediaType, MEDIA_TYPES.dockerLayerGzip)
    assert.deepEqual(await c.headManifest(ref), got.descriptor)
    assert.deepEqual(await c.getBlobBytes(ref, m.manifest.config), data(v2s2.configs[0]!))
  })

  test('config and layer, whole and from an offset', async () => {
    const c = client()
    const ref = parseReference(`${reg.host}/test/busybox`)
    assert.deepEqual(await c.getBlobBytes(ref, desc(busybox.configs[0]!)), data(busybox.configs[0]!))
    const layer = busybox.layers[0]!
    const whole = await c.getBlob(ref, layer.digest)
    assert.equal(whole.offset, 0)
    assert.equal(whole.size, layer.size)
    const bytes = await buffer(whole.stream)
    assert.equal(sha256(bytes), layer.digest)
    const offset = Math.floor(layer.size / 3)
    const tail = await c.getBlob(ref, layer.digest, { offset })
    assert.equal(tail.offset, offset)
    assert.equal(tail.size, layer.size)
    assert.deepEqual(await buffer(tail.stream), data(layer).subarray(offset))
    const mid = await c.getBlob(ref, layer.digest, { offset: 10, end: 1033 })
    assert.deepEqual(await buffer(mid.stream), data(layer).subarray(10, 1034))
    assert.deepEqual(await c.headBlob(ref, layer.digest), { size: layer.size })
  })

  test('unknown repository, tag and blob', async () => {
    const c = client()
    const missing = sha256('not there')
    // distribution 2.8 answers MANIFEST_UNKNOWN for a repository it has never seen; NAME_UNKNOWN
    // (from other registries) is covered in protocol.test.ts.
    await rejectsWith(c.getManifest(parseReference(`${reg.host}/test/nosuch:latest`)), 'ERR_MANIFEST_UNKNOWN', /test\/nosuch:latest/)
    await rejectsWith(c.getBlob(parseReference(`${reg.host}/test/nosuch`), missing), 'ERR_BLOB_UNKNOWN', /test\/nosuch/)
    await rejectsWith(c.getManifest(parseReference(`${reg.host}/test/busybox:nosuchtag`)), 'ERR_MANIFEST_UNKNOWN', /busybox:nosuchtag/)
    await rejectsWith(c.headManifest(parseReference(`${reg.host}/test/busybox:nosuchtag`)), 'ERR_MANIFEST_UNKNOWN', /busybox:nosuchtag/)
    await rejectsWith(c.getManifest(parseReference(`${reg.host}/test/busybox@${missing}`)), 'ERR_MANIFEST_UNKNOWN')
    await rejectsWith(c.getBlob(parseReference(`${reg.host}/test/busybox`), missing), 'ERR_BLOB_UNKNOWN', new RegExp(missing))
    await rejectsWith(c.headBlob(parseReference(`${reg.host}/test/busybox`), missing), 'ERR_BLOB_UNKNOWN')
    await rejectsWith(c.getBlobBytes(parseReference(`${reg.host}/test/busybox`), { mediaType: 'x', digest: missing, size: 5 }), 'ERR_BLOB_UNKNOWN')
  })

  test('htpasswd registry: Basic credentials, or ERR_UNAUTHORIZED without them', async () => {
    const ref = parseReference(`${authReg.host}/private/busybox`)
    const c = client({ hosts: { [authReg.host]: { username: 'joey', password: 'hunter2' } } })
    assert.equal((await c.getManifest(ref)).descriptor.digest, busybox.root.digest)
    assert.deepEqual(await c.getBlobBytes(ref, desc(busybox.configs[0]!)), data(busybox.configs[0]!))
    await rejectsWith(client().getManifest(ref), 'ERR_UNAUTHORIZED', /log in/)
    await rejectsWith(client({ hosts: { [authReg.host]: { username: 'joey', password: 'wrong' } } }).getManifest(ref), 'ERR_UNAUTHORIZED')
  })
})

describe('through the fault-injecting proxy', () => {
  test('corrupted blob bytes are ERR_DIGEST_MISMATCH', async () => {
    proxy.setFaults([{ kind: 'corrupt' }])
    try {
      const ref = parseReference(`${proxy.host}/test/busybox`)
      await rejectsWith(client().getBlobBytes(ref, desc(busybox.configs[0]!)), 'ERR_DIGEST_MISMATCH')
      await rejectsWith(client().getBlobBytes(ref, desc(busybox.layers[0]!)), 'ERR_DIGEST_MISMATCH')
    } finally {
      proxy.setFaults([])
    }
  })

  test('a truncated blob is ERR_TRUNCATED, in memory and as a stream', async () => {
    proxy.setFaults([{ kind: 'truncate', afterBytes: 100 }])
    try {
      const ref = parseReference(`${proxy.host}/test/busybox`)
      await rejectsWith(client().getBlobBytes(ref, desc(busybox.layers[0]!)), 'ERR_TRUNCATED', /gave up after 2 attempts/)
      const res = await client().getBlob(ref, busybox.layers[0]!.digest)
      await rejectsWith(buffer(res.stream), 'ERR_TRUNCATED')
    } finally {
      proxy.setFaults([])
    }
  })

  test('transient 503s are retried; persistent ones are ERR_REGISTRY_UNAVAILABLE', async () => {
    const ref = parseReference(`${proxy.host}/test/busybox`)
    proxy.reset()
    proxy.setFaults([{ kind: 'status', status: 503, times: 2 }])
    try {
      const got = await client({ retries: 3 }).getManifest(ref)
      assert.equal(got.descriptor.digest, busybox.root.digest)
      assert.deepEqual(proxy.stats.requests.map(r => r.status), [503, 503, 200])
      proxy.setFaults([{ kind: 'status', status: 503 }])
      await rejectsWith(client({ retries: 1 }).getManifest(ref), 'ERR_REGISTRY_UNAVAILABLE', /503/)
    } finally {
      proxy.setFaults([])
    }
  })

  test('a hanging registry is ERR_REGISTRY_TIMEOUT; resets are retried', async () => {
    const ref = parseReference(`${proxy.host}/test/busybox`)
    proxy.setFaults([{ kind: 'hang' }])
    try {
      await rejectsWith(client({ retries: 0, timeoutMs: 300 }).headManifest(ref), 'ERR_REGISTRY_TIMEOUT')
      proxy.setFaults([{ kind: 'reset', times: 1 }])
      assert.deepEqual(await client().headBlob(ref, busybox.layers[0]!.digest), { size: busybox.layers[0]!.size })
    } finally {
      proxy.setFaults([])
    }
  })
})
