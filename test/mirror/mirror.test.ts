// The registry mirror served by a real HTTP listener, in front of a real registry (behind
// the counting, fault-injecting proxy), with the real transfer manager and content store;
// real clients (skopeo) as well as raw HTTP.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile, readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import Fastify, { type FastifyInstance } from 'fastify'
import { request } from 'undici'
import { sha256, silentLogger } from '../../src/common/index.js'
import { createContentStore, type ContentStore } from '../../src/content/index.js'
import { createRegistryClient, type RegistryClient } from '../../src/distribution/index.js'
import { PartialStore, createSupernodeClient, createP2PTransfer, type P2PTransfer } from '../../src/transfer/index.js'
import { mirrorApi } from '../../src/api/mirror/index.js'
import { busyboxImage, largeImage, type FixtureImage } from '../fixtures/images.js'
import { startRegistry, type TestRegistry } from '../fixtures/registry.js'
import { startProxy, type CountingProxy } from '../fixtures/proxy.js'

const run = promisify(execFile)
const logger = silentLogger()
let dir: string
let registry: TestRegistry
let proxy: CountingProxy
let store: ContentStore
let client: RegistryClient
let partials: PartialStore
let transfer: P2PTransfer
let app: FastifyInstance
let mirror: string
let busybox: FixtureImage
let big: FixtureImage
const served: Array<{ kind: string, status: number }> = []

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'joey-mirror-'))
  registry = await startRegistry()
  busybox = await busyboxImage()
  big = await largeImage({ layerBytes: 12 * 1024 * 1024 })
  await registry.push('library/busybox', 'latest', busybox)
  await registry.push('big', 'v1', big)
  proxy = await startProxy(registry.url)
  store = createContentStore({ root: join(dir, 'content') }, { logger })
  await store.start()
  client = createRegistryClient({ retries: 1, retryBaseMs: 10, timeoutMs: 5000 }, { logger })
  partials = new PartialStore(join(dir, 'partials'), logger)
  const supernodes = createSupernodeClient({ urls: [] }, { logger, host: () => ({ peerId: 'self', addrs: [] }) })
  transfer = createP2PTransfer({ originRetryBaseMs: 10, originAttempts: 2 }, {
    logger, contentStore: store, registry: client, partials, supernodes,
    openSession: async () => { throw new Error('no peers in this test') }
  })
  app = Fastify()
  await app.register(mirrorApi({ defaultUpstream: proxy.host }, {
    logger, contentStore: store, registry: client, transfer,
    metrics: { request: (kind, status) => { served.push({ kind, status }) }, bytesServed: () => {} }
  }))
  mirror = await app.listen({ host: '127.0.0.1', port: 0 })
})

after(async () => {
  await app?.close()
  await transfer?.stop()
  await partials?.close()
  await client?.close()
  await store?.stop()
  await proxy?.stop()
  await registry?.stop()
  await rm(dir, { recursive: true, force: true })
})

async function get (path: string, headers: Record<string, string> = {}, method: 'GET' | 'HEAD' = 'GET'): Promise<{ status: number, headers: Record<string, string | string[] | undefined>, body: Buffer }> {
  const res = await request(mirror + path, { method, headers })
  const body = Buffer.from(await res.body.arrayBuffer())
  return { status: res.statusCode, headers: res.headers, body }
}

test('base endpoint answers like a registry', async () => {
  for (const method of ['GET', 'HEAD'] as const) {
    const res = await get('/v2/', {}, method)
    assert.equal(res.status, 200)
    assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0')
  }
})

test('manifests by tag resolve at the upstream, with ?ns= and without', async () => {
  const expect = busybox.root.digest
  const viaDefault = await get('/v2/library/busybox/manifests/latest', { accept: 'application/vnd.oci.image.manifest.v1+json' })
  assert.equal(viaDefault.status, 200)
  assert.equal(viaDefault.headers['docker-content-digest'], expect)
  assert.equal(sha256(viaDefault.body), expect)
  const viaNs = await get(`/v2/library/busybox/manifests/latest?ns=${proxy.host}`)
  assert.equal(viaNs.headers['docker-content-digest'], expect)
  const viaPath = await get(`/v2/${proxy.host}/library/busybox/manifests/latest`)
  assert.equal(viaPath.headers['docker-content-digest'], expect)
  const head = await get('/v2/library/busybox/manifests/latest', {}, 'HEAD')
  assert.equal(head.status, 200)
  assert.equal(head.headers['docker-content-digest'], expect)
  assert.equal(Number(head.headers['content-length']), busybox.root.size)
})

test('blobs: HEAD without download, GET, Range, served from the store when present', async () => {
  const layer = big.layers[0] as { digest: string, size: number }
  proxy.reset()
  const head = await get(`/v2/big/blobs/${layer.digest}`, {}, 'HEAD')
  assert.equal(head.status, 200)
  assert.equal(Number(head.headers['content-length']), layer.size)
  assert.equal(proxy.stats.blobBytes, 0, 'HEAD downloads nothing')
  const full = await get(`/v2/big/blobs/${layer.digest}`)
  assert.equal(full.status, 200)
  assert.equal(sha256(full.body), layer.digest)
  assert.ok(await store.has(layer.digest) || (await new Promise(resolve => setTimeout(resolve, 300)), await store.has(layer.digest)))
  proxy.reset()
  const part = await get(`/v2/big/blobs/${layer.digest}`, { range: 'bytes=100-199' })
  assert.equal(part.status, 206)
  assert.equal(part.headers['content-range'], `bytes 100-199/${layer.size}`)
  assert.deepEqual(part.body, full.body.subarray(100, 200))
  const tail = await get(`/v2/big/blobs/${layer.digest}`, { range: 'bytes=-10' })
  assert.deepEqual(tail.body, full.body.subarray(layer.size - 10))
  assert.equal(proxy.stats.blobBytes, 0, 'a stored blob is served locally')
  const bad = await get(`/v2/big/blobs/${layer.digest}`, { range: 'bytes=999999999-' })
  assert.equal(bad.status, 416)
})

test('unknown repository, tag and digest get the distribution error format', async () => {
  const cases: Array<[string, number, string]> = [
    ['/v2/nope/manifests/latest', 404, 'MANIFEST_UNKNOWN'],
    ['/v2/big/manifests/nope', 404, 'MANIFEST_UNKNOWN'],
    [`/v2/big/blobs/sha256:${'0'.repeat(64)}`, 404, 'BLOB_UNKNOWN'],
    ['/v2/big/blobs/sha256:xyz', 400, 'DIGEST_INVALID'],
    ['/v2/UPPER/manifests/latest', 400, 'NAME_INVALID'],
    ['/v2/big/tags/list', 404, 'UNKNOWN']
  ]
  for (const [path, status, code] of cases) {
    const res = await get(path)
    assert.equal(res.status, status, `${path}: ${res.body.toString()}`)
    assert.equal(JSON.parse(res.body.toString()).errors[0].code, code, path)
  }
  const push = await request(mirror + '/v2/big/blobs/uploads/', { method: 'POST' })
  assert.equal(push.statusCode, 405)
  await push.body.dump()
})

test('upstream down: 503 so the client moves on to its next host', async () => {
  proxy.setFaults([{ kind: 'status', status: 503 }])
  try {
    const res = await get('/v2/library/busybox/manifests/latest')
    assert.equal(res.status, 503)
    assert.equal(JSON.parse(res.body.toString()).errors[0].code, 'UNAVAILABLE')
  } finally { proxy.setFaults([]) }
})

test('an upstream serving a corrupt blob: the client sees an aborted transfer and nothing is stored', async () => {
  // A blob of its own: the large fixture above is in the store already.
  const image = await largeImage({ layerBytes: 9 * 1024 * 1024 + 512 })
  await registry.push('corrupt', 'v1', image)
  const fresh = image.layers[0] as { digest: string, size: number }
  proxy.setFaults([{ kind: 'corrupt' }])
  try {
    await assert.rejects(get(`/v2/corrupt/blobs/${fresh.digest}`), (err: Error) => /terminated|aborted|socket|other side closed|premature/i.test(err.message))
    assert.equal(await store.has(fresh.digest), false)
  } finally { proxy.setFaults([]) }
})

test('200 concurrent blob requests are all served', async () => {
  const layer = busybox.layers[0] as { digest: string, size: number }
  const results = await Promise.all(Array.from({ length: 200 }, async () => await get(`/v2/library/busybox/blobs/${layer.digest}`)))
  for (const r of results) {
    assert.equal(r.status, 200)
    assert.equal(r.body.length, layer.size)
  }
  assert.equal(sha256((results[0] as { body: Buffer }).body), layer.digest)
})

test('skopeo pulls through the mirror configured in registries.conf', async () => {
  const conf = join(dir, 'registries.conf')
  const mirrorHost = new URL(mirror).host
  await writeFile(conf, [
    '[[registry]]',
    `location = "${proxy.host}"`,
    'insecure = true',
    '[[registry.mirror]]',
    `location = "${mirrorHost}"`,
    'insecure = true',
    ''
  ].join('\n'))
  proxy.reset()
  served.length = 0
  const out = join(dir, 'skopeo-out')
  await run('skopeo', ['--registries-conf', conf, 'copy', '--src-tls-verify=false', `docker://${proxy.host}/library/busybox:latest`, `dir:${out}`], { timeout: 60_000 })
  const files = await readdir(out)
  const layer = busybox.layers[0] as { digest: string }
  assert.ok(files.includes(layer.digest.slice('sha256:'.length)), `skopeo wrote ${files.join(', ')}`)
  // skopeo asked the mirror for the manifest and every blob (the config and the layer).
  assert.ok(served.filter(r => r.kind === 'manifest' && r.status === 200).length >= 1, JSON.stringify(served))
  assert.ok(served.filter(r => r.kind === 'blob' && r.status === 200).length >= 2, JSON.stringify(served))
  // The registry itself saw only the mirror's upstream calls: no more blob bytes than the image.
  const imageBytes = busybox.blobs().reduce((n, b) => n + b.size, 0)
  assert.ok(proxy.stats.blobBytes <= imageBytes, `${proxy.stats.blobBytes} > ${imageBytes}`)
})
