import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { request } from 'undici'
import { extract as tarExtract, type Header } from 'tar-stream'
import { sha256 } from '../../src/common/digest.js'
import {
  busyboxImage, dockerV2S2, largeImage, multiLayerExpectations, multiLayerImage, twoPlatformIndex, writeOciLayout,
  DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_LAYER_GZIP, OCI_LAYER_TAR,
  OCI_LAYER_ZSTD, OCI_MANIFEST, type FixtureBlob, type FixtureImage
} from '../fixtures/images.js'
import { startRegistry, type TestRegistry } from '../fixtures/registry.js'
import { startProxy, type CountingProxy } from '../fixtures/proxy.js'

const MANIFEST_ACCEPT = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST].join(', ')

async function blobBytes (blob: FixtureBlob): Promise<Buffer> {
  if (blob.data !== undefined) return blob.data
  assert.ok(blob.path !== undefined, `blob ${blob.digest} has neither data nor path`)
  return await readFile(blob.path)
}

function decompress (blob: FixtureBlob, bytes: Buffer): Buffer {
  if (blob.mediaType === OCI_LAYER_TAR) return bytes
  if (blob.mediaType === OCI_LAYER_GZIP || blob.mediaType === DOCKER_LAYER_GZIP) return gunzipSync(bytes)
  if (blob.mediaType === OCI_LAYER_ZSTD) {
    const out = spawnSync('zstd', ['-d', '-c', '-q'], { input: bytes, maxBuffer: 1 << 30 })
    assert.equal(out.status, 0)
    return out.stdout
  }
  throw new Error(`unexpected layer media type ${blob.mediaType}`)
}

async function tarHeaders (tar: Buffer): Promise<Array<Header & { content: Buffer }>> {
  const out: Array<Header & { content: Buffer }> = []
  const ex = tarExtract()
  const done = new Promise<void>((resolve, reject) => { ex.on('finish', resolve); ex.on('error', reject) })
  ex.on('entry', (header, stream, next) => {
    const chunks: Buffer[] = []
    stream.on('data', (c: unknown) => chunks.push(c as Buffer))
    stream.on('end', () => { out.push({ ...header, content: Buffer.concat(chunks) }); next() })
  })
  ex.end(tar)
  await done
  return out
}

/** Every blob's bytes match its digest and size; every config lists the layers' diff_ids. */
async function checkConsistent (image: FixtureImage): Promise<void> {
  assert.ok(image.root.data !== undefined)
  assert.equal(sha256(image.root.data), image.root.digest)
  for (const blob of [...image.manifests, ...image.blobs()]) {
    const bytes = await blobBytes(blob)
    assert.equal(bytes.byteLength, blob.size, `size of ${blob.digest}`)
    assert.equal(sha256(bytes), blob.digest)
  }
  const layersByDigest = new Map(image.layers.map(l => [l.digest, l]))
  const configsByDigest = new Map(image.configs.map(c => [c.digest, c]))
  for (const m of image.manifests) {
    const manifest = JSON.parse(m.data!.toString()) as { config: { digest: string }, layers: Array<{ digest: string }> }
    const config = JSON.parse(configsByDigest.get(manifest.config.digest)!.data!.toString()) as { rootfs: { type: string, diff_ids: string[] } }
    assert.equal(config.rootfs.type, 'layers')
    assert.equal(config.rootfs.diff_ids.length, manifest.layers.length)
    for (const [i, l] of manifest.layers.entries()) {
      const blob = layersByDigest.get(l.digest)!
      if (blob.path !== undefined) continue // large layers: checked by their own test, without buffering twice
      assert.equal(sha256(decompress(blob, await blobBytes(blob))), config.rootfs.diff_ids[i])
    }
  }
}

describe('fixture images', () => {
  test('every builder is deterministic and self-consistent', async () => {
    for (const build of [busyboxImage, multiLayerImage, twoPlatformIndex, async () => await dockerV2S2(await busyboxImage())]) {
      const a = await build()
      const b = await build()
      assert.equal(a.root.digest, b.root.digest, `${a.name} root digest`)
      assert.deepEqual(a.blobs().map(x => x.digest), b.blobs().map(x => x.digest))
      await checkConsistent(a)
    }
  })

  test('busybox has the real binary, applet links, users and a sticky /tmp', async () => {
    const image = await busyboxImage()
    assert.equal(image.root.mediaType, OCI_MANIFEST)
    assert.equal(image.layers.length, 1)
    const entries = await tarHeaders(gunzipSync(image.layers[0].data!))
    const byName = new Map(entries.map(e => [e.name.replace(/\/$/, ''), e]))
    const bin = byName.get('bin/busybox')!
    assert.equal(bin.mode, 0o755)
    assert.ok(bin.content.equals(await readFile('/bin/busybox')))
    for (const applet of ['sh', 'echo', 'ls', 'cat', 'sleep', 'env', 'id', 'true', 'false']) {
      assert.equal(byName.get(`bin/${applet}`)?.type, 'symlink', applet)
      assert.equal(byName.get(`bin/${applet}`)?.linkname, 'busybox')
    }
    assert.match(byName.get('etc/passwd')!.content.toString(), /^nobody:x:1000:1000:/m)
    assert.equal(byName.get('tmp')!.mode, 0o1777)
    for (const e of entries) {
      assert.equal(e.uid, 0)
      assert.equal(e.mtime?.toISOString(), '2024-01-01T00:00:00.000Z')
    }
    const config = JSON.parse(image.configs[0].data!.toString()) as { os: string, config: { Cmd: string[] } }
    assert.equal(config.os, 'linux')
    assert.deepEqual(config.config.Cmd, ['sh'])
  })

  test('multi-layer has whiteouts, an opaque dir, links, long names and every compression', async () => {
    const image = await multiLayerImage()
    const types = image.layers.map(l => l.mediaType)
    assert.ok(types.includes(OCI_LAYER_GZIP))
    assert.ok(types.includes(OCI_LAYER_TAR))
    const zstd = spawnSync('zstd', ['--version']).status === 0
    assert.equal(types.includes(OCI_LAYER_ZSTD), zstd)
    const names: string[] = []
    let hard: Header | undefined
    let link: Header | undefined
    for (const layer of image.layers.slice(1)) {
      for (const e of await tarHeaders(decompress(layer, layer.data!))) {
        names.push(e.name)
        if (e.name === 'data/hard') hard = e
        if (e.name === 'data/link') link = e
      }
    }
    assert.ok(names.includes('data/.wh.gone'))
    assert.ok(names.includes('opaque/.wh..wh..opq'))
    assert.equal(hard?.type, 'link')
    assert.equal(hard?.linkname, 'data/keep')
    assert.equal(link?.type, 'symlink')
    const long = Object.keys(multiLayerExpectations.files).filter(p => p.length > 100)
    assert.equal(long.length, 2)
    for (const p of long) assert.ok(names.includes(p), p)
  })

  test('the index has two platforms, each with its own config architecture', async () => {
    const image = await twoPlatformIndex()
    const index = JSON.parse(image.root.data!.toString()) as { mediaType: string, manifests: Array<{ digest: string, platform: { architecture: string, os: string } }> }
    assert.equal(index.mediaType, OCI_INDEX)
    assert.deepEqual(index.manifests.map(m => `${m.platform.os}/${m.platform.architecture}`), ['linux/amd64', 'linux/arm64'])
    assert.equal(image.manifests.length, 2)
    assert.equal(new Set(image.layers.map(l => l.digest)).size, 2)
    for (const [i, entry] of index.manifests.entries()) {
      const manifest = JSON.parse(image.manifests[i].data!.toString()) as { config: { digest: string } }
      assert.equal(image.manifests[i].digest, entry.digest)
      const config = JSON.parse(image.configs.find(c => c.digest === manifest.config.digest)!.data!.toString()) as { architecture: string }
      assert.equal(config.architecture, entry.platform.architecture)
    }
    // Child manifests are blobs too (an index's blobs() lists them).
    assert.ok(image.blobs().some(b => b.digest === image.manifests[0].digest))
  })

  test('large image streams random bytes to a reused cache file', async () => {
    const layerBytes = 4 * 1024 * 1024
    const a = await largeImage({ layerBytes, layers: 2 })
    assert.equal(a.layers.length, 2)
    assert.notEqual(a.layers[0].digest, a.layers[1].digest)
    const file = a.layers[0].path!
    const before = (await stat(file)).mtimeMs
    const b = await largeImage({ layerBytes, layers: 2 })
    assert.equal(b.root.digest, a.root.digest)
    assert.equal((await stat(file)).mtimeMs, before, 'second build reuses the cached layer')
    const bytes = await readFile(file)
    assert.equal(sha256(bytes), a.layers[0].digest)
    // Incompressible: gzip cannot shrink it.
    assert.ok(a.layers[0].size > layerBytes)
    const config = JSON.parse(a.configs[0].data!.toString()) as { rootfs: { diff_ids: string[] } }
    assert.equal(sha256(gunzipSync(bytes)), config.rootfs.diff_ids[0])
    await assert.rejects(largeImage({ layerBytes: 0 }), { code: 'ERR_INVALID_ARGUMENT' })
    await assert.rejects(largeImage({ layers: 1.5 }), { code: 'ERR_INVALID_ARGUMENT' })
  })

  test('dockerV2S2 rewrites media types and refuses non-gzip layers', async () => {
    const oci = await busyboxImage()
    const docker = await dockerV2S2(oci)
    assert.equal(docker.root.mediaType, DOCKER_MANIFEST)
    const m = JSON.parse(docker.root.data!.toString()) as { mediaType: string, config: { mediaType: string, digest: string }, layers: Array<{ mediaType: string, digest: string }> }
    assert.equal(m.mediaType, DOCKER_MANIFEST)
    assert.equal(m.config.mediaType, DOCKER_CONFIG)
    assert.equal(m.config.digest, oci.configs[0].digest)
    assert.deepEqual(m.layers.map(l => l.mediaType), [DOCKER_LAYER_GZIP])
    assert.equal(m.layers[0].digest, oci.layers[0].digest)
    const list = await dockerV2S2(await twoPlatformIndex())
    assert.equal(list.root.mediaType, DOCKER_MANIFEST_LIST)
    assert.ok(list.manifests.every(x => x.mediaType === DOCKER_MANIFEST))
    await checkConsistent(list)
    await assert.rejects(dockerV2S2(await multiLayerImage()), { code: 'ERR_UNSUPPORTED_MEDIA_TYPE' })
  })

  test('writeOciLayout writes a layout that skopeo reads', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'joey-oci-layout-'))
    try {
      const busybox = await busyboxImage()
      const index = await twoPlatformIndex()
      await writeOciLayout(dir, [{ image: busybox, tag: 'busybox' }, { image: index, tag: 'multi' }])
      assert.deepEqual(JSON.parse(await readFile(join(dir, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' })
      const idx = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string, annotations: Record<string, string> }> }
      assert.deepEqual(idx.manifests.map(m => m.annotations['org.opencontainers.image.ref.name']), ['busybox', 'multi'])
      const blobs = await readdir(join(dir, 'blobs', 'sha256'))
      for (const b of [busybox.root, ...busybox.blobs(), index.root, ...index.blobs()]) assert.ok(blobs.includes(b.digest.slice(7)))
      if (existsSync('/usr/bin/skopeo')) {
        const out = spawnSync('skopeo', ['inspect', '--raw', `oci:${dir}:busybox`])
        assert.equal(out.status, 0, out.stderr.toString())
        assert.equal(sha256(out.stdout), busybox.root.digest)
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('registry and proxy', () => {
  let registry: TestRegistry
  let proxy: CountingProxy
  let busybox: FixtureImage
  let large: FixtureImage

  before(async () => {
    registry = await startRegistry()
    proxy = await startProxy(registry.url)
    busybox = await busyboxImage()
    large = await largeImage({ layerBytes: 4 * 1024 * 1024 })
    await registry.push('fixtures/busybox', 'latest', busybox)
    await registry.push('fixtures/large', 'latest', large)
  })
  after(async () => {
    await proxy?.stop()
    await registry?.stop()
  })

  test('every image pushes and reads back through the proxy with counted blob bytes', async () => {
    const images = [busybox, large, await multiLayerImage(), await twoPlatformIndex(), await dockerV2S2(busybox), await dockerV2S2(await twoPlatformIndex())]
    for (const [i, image] of images.entries()) {
      const repo = `fixtures/img${i}`
      await registry.push(repo, 'v1', image)
      proxy.reset()
      const res = await request(`${proxy.url}/v2/${repo}/manifests/v1`, { headers: { accept: MANIFEST_ACCEPT } })
      assert.equal(res.statusCode, 200, image.name)
      assert.equal(res.headers['content-type'], image.root.mediaType)
      assert.equal(sha256(Buffer.from(await res.body.arrayBuffer())), image.root.digest)
      for (const m of image.manifests) {
        const child = await request(`${proxy.url}/v2/${repo}/manifests/${m.digest}`, { headers: { accept: MANIFEST_ACCEPT } })
        assert.equal(child.statusCode, 200)
        assert.equal(sha256(Buffer.from(await child.body.arrayBuffer())), m.digest)
      }
      const manifestDigests = new Set(image.manifests.map(m => m.digest))
      let expected = 0
      for (const blob of image.blobs().filter(b => !manifestDigests.has(b.digest))) {
        const b = await request(`${proxy.url}/v2/${repo}/blobs/${blob.digest}`)
        assert.equal(b.statusCode, 200)
        assert.equal(sha256(Buffer.from(await b.body.arrayBuffer())), blob.digest)
        expected += blob.size
      }
      assert.equal(proxy.stats.blobBytes, expected, `${image.name}: only blob bodies are counted`)
      assert.ok(proxy.stats.requests.every(r => r.status === 200))
    }
  })

  test('upload Locations are rewritten to the proxy, so pushes through it work', async () => {
    const res = await request(`${proxy.url}/v2/fixtures/through-proxy/blobs/uploads/`, { method: 'POST' })
    await res.body.dump()
    assert.equal(res.statusCode, 202)
    const location = new URL(String(res.headers.location), proxy.url)
    assert.equal(location.host, proxy.host)
    const data = Buffer.from('pushed through the proxy\n')
    location.searchParams.set('digest', sha256(data))
    const put = await request(location, { method: 'PUT', body: data, headers: { 'content-type': 'application/octet-stream' } })
    await put.body.dump()
    assert.equal(put.statusCode, 201)
    const back = await request(`${registry.url}/v2/fixtures/through-proxy/blobs/${sha256(data)}`)
    assert.ok(Buffer.from(await back.body.arrayBuffer()).equals(data))
  })

  test('status fault answers the given status, `times` times', async () => {
    const layer = busybox.layers[0]
    const path = `/v2/fixtures/busybox/blobs/${layer.digest}`
    proxy.setFaults([{ kind: 'status', status: 503, times: 2, path: /\/blobs\// }])
    proxy.reset()
    for (const want of [503, 503, 200]) {
      const res = await request(proxy.url + path, { method: 'HEAD' })
      await res.body.dump()
      assert.equal(res.statusCode, want)
    }
    assert.deepEqual(proxy.stats.requests.map(r => r.status), [503, 503, 200])
    proxy.setFaults([{ kind: 'status', status: 500 }])
    const any = await request(`${proxy.url}/v2/`)
    await any.body.dump()
    assert.equal(any.statusCode, 500)
    proxy.setFaults([])
  })

  test('corrupt fault flips bytes but keeps the length', async () => {
    const layer = busybox.layers[0]
    proxy.setFaults([{ kind: 'corrupt' }])
    const res = await request(`${proxy.url}/v2/fixtures/busybox/blobs/${layer.digest}`)
    const body = Buffer.from(await res.body.arrayBuffer())
    proxy.setFaults([])
    assert.equal(body.byteLength, layer.size)
    assert.notEqual(sha256(body), layer.digest)
    // Manifests are untouched by a corrupt fault without a path.
    proxy.setFaults([{ kind: 'corrupt' }])
    const m = await request(`${proxy.url}/v2/fixtures/busybox/manifests/latest`, { headers: { accept: MANIFEST_ACCEPT } })
    assert.equal(sha256(Buffer.from(await m.body.arrayBuffer())), busybox.root.digest)
    proxy.setFaults([])
  })

  test('truncate fault cuts the body after N bytes and drops the connection', async () => {
    const layer = large.layers[0]
    proxy.setFaults([{ kind: 'truncate', afterBytes: 100_000 }])
    proxy.reset()
    const res = await request(`${proxy.url}/v2/fixtures/large/blobs/${layer.digest}`)
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers['content-length'], String(layer.size))
    let got = 0
    await assert.rejects((async () => { for await (const c of res.body) got += (c as Buffer).byteLength })())
    proxy.setFaults([])
    assert.equal(got, 100_000)
    assert.equal(proxy.stats.blobBytes, 100_000)
  })

  test('hang fault never answers', async () => {
    proxy.setFaults([{ kind: 'hang', path: /manifests/ }])
    await assert.rejects(request(`${proxy.url}/v2/fixtures/busybox/manifests/latest`, { signal: AbortSignal.timeout(300) }))
    const ok = await request(`${proxy.url}/v2/`)
    await ok.body.dump()
    assert.equal(ok.statusCode, 200)
    proxy.setFaults([])
  })

  test('throttle fault slows blob bodies down', async () => {
    const layer = busybox.layers[0]
    proxy.setFaults([{ kind: 'throttle', bytesPerSecond: 2 * 1024 * 1024 }])
    const started = Date.now()
    const res = await request(`${proxy.url}/v2/fixtures/busybox/blobs/${layer.digest}`)
    const body = Buffer.from(await res.body.arrayBuffer())
    const ms = Date.now() - started
    proxy.setFaults([])
    assert.equal(sha256(body), layer.digest)
    const expectedMs = layer.size / (2 * 1024 * 1024) * 1000
    assert.ok(ms >= expectedMs * 0.8, `took ${ms} ms, expected about ${expectedMs}`)
  })

  test('reset fault destroys the socket before answering, `times` times', async () => {
    proxy.setFaults([{ kind: 'reset', times: 1 }])
    await assert.rejects(request(`${proxy.url}/v2/`))
    const ok = await request(`${proxy.url}/v2/`)
    await ok.body.dump()
    assert.equal(ok.statusCode, 200)
    proxy.setFaults([])
  })

  test('bad faults and targets are refused with ERR_INVALID_ARGUMENT', async () => {
    assert.throws(() => proxy.setFaults([{ kind: 'status', status: 42 }]), { code: 'ERR_INVALID_ARGUMENT' })
    assert.throws(() => proxy.setFaults([{ kind: 'throttle', bytesPerSecond: 0 }]), { code: 'ERR_INVALID_ARGUMENT' })
    assert.throws(() => proxy.setFaults([{ kind: 'truncate', afterBytes: -1 }]), { code: 'ERR_INVALID_ARGUMENT' })
    assert.throws(() => proxy.setFaults([{ kind: 'nope' } as never]), { code: 'ERR_INVALID_ARGUMENT' })
    await assert.rejects(startProxy('https://127.0.0.1:1'), { code: 'ERR_INVALID_ARGUMENT' })
  })
})

describe('registry with htpasswd', () => {
  let registry: TestRegistry
  const creds = { username: 'joey', password: 's3cret' }

  before(async () => { registry = await startRegistry({ htpasswd: creds }) })
  after(async () => { await registry?.stop() })

  test('anonymous requests get a Basic challenge; credentials are accepted', async () => {
    const anon = await request(`${registry.url}/v2/`)
    await anon.body.dump()
    assert.equal(anon.statusCode, 401)
    assert.match(String(anon.headers['www-authenticate']), /^Basic realm=/)
    const basic = (u: string, p: string): string => 'Basic ' + Buffer.from(`${u}:${p}`).toString('base64')
    const wrong = await request(`${registry.url}/v2/`, { headers: { authorization: basic(creds.username, 'wrong') } })
    await wrong.body.dump()
    assert.equal(wrong.statusCode, 401)
    const ok = await request(`${registry.url}/v2/`, { headers: { authorization: basic(creds.username, creds.password) } })
    await ok.body.dump()
    assert.equal(ok.statusCode, 200)
    // push authenticates itself.
    const image = await twoPlatformIndex()
    await registry.push('private/img', 'v1', image)
    const m = await request(`${registry.url}/v2/private/img/manifests/v1`, {
      headers: { authorization: basic(creds.username, creds.password), accept: MANIFEST_ACCEPT }
    })
    assert.equal(sha256(Buffer.from(await m.body.arrayBuffer())), image.root.digest)
  })

  test('bad usernames are refused', async () => {
    await assert.rejects(startRegistry({ htpasswd: { username: 'a:b', password: 'x' } }), { code: 'ERR_INVALID_ARGUMENT' })
  })
})

test('a missing registry binary is a clear precondition error', async () => {
  await assert.rejects(startRegistry({ bin: '/nonexistent/docker-registry' }), { code: 'ERR_FAILED_PRECONDITION', message: /install-deps/ })
})

test('stop() ends the registry and removes its directory', async () => {
  const registry = await startRegistry()
  await registry.stop()
  assert.equal(existsSync(registry.dir), false)
  await assert.rejects(request(`${registry.url}/v2/`))
  await registry.stop() // idempotent
})
