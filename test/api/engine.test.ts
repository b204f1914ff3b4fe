import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { JoeyError } from '../../src/common/index.js'
import {
  CONFIG_DIGEST, LAYER_DIGEST, LAYER_SHORT, MANIFEST_DIGEST, authHeader, detail, jsonLines, makeApp, system, type TestApp
} from './helpers.js'

describe('Engine API: system routes', () => {
  let t: TestApp
  before(async () => { t = await makeApp() })
  after(async () => { await t.app.close() })

  test('GET /_ping answers OK with dockerd\'s headers', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/_ping' })
    assert.equal(res.statusCode, 200)
    assert.equal(res.body, 'OK')
    assert.equal(res.headers['api-version'], '1.43')
    assert.equal(res.headers.ostype, 'linux')
    assert.equal(res.headers['docker-experimental'], 'false')
    assert.equal(res.headers['cache-control'], 'no-cache, no-store, must-revalidate')
    assert.equal(res.headers.pragma, 'no-cache')
    assert.match(String(res.headers['content-type']), /^text\/plain/)
  })

  test('HEAD /_ping has the headers and no body', async () => {
    const res = await t.app.inject({ method: 'HEAD', url: '/_ping' })
    assert.equal(res.statusCode, 200)
    assert.equal(res.body, '')
    assert.equal(res.headers['api-version'], '1.43')
    assert.equal(res.headers.pragma, 'no-cache')
  })

  test('every route also answers under a /vX.Y/ prefix', async () => {
    for (const url of ['/v1.43/_ping', '/v1.24/_ping', '/v1.40/version', '/v1.43/images/json', '/v1.43/info']) {
      const res = await t.app.inject({ method: 'GET', url })
      assert.equal(res.statusCode, 200, url)
    }
    const inspect = await t.app.inject({ method: 'GET', url: '/v1.43/images/127.0.0.1:5000/busybox:latest/json' })
    assert.equal(inspect.statusCode, 200)
    assert.equal(inspect.json().Id, CONFIG_DIGEST)
  })

  test('versions outside 1.24–1.43 are refused with dockerd\'s wording', async () => {
    const old = await t.app.inject({ method: 'GET', url: '/v1.12/version' })
    assert.equal(old.statusCode, 400)
    assert.deepEqual(old.json(), { message: 'client version 1.12 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version' })
    const tooNew = await t.app.inject({ method: 'GET', url: '/v1.50/_ping' })
    assert.equal(tooNew.statusCode, 400)
    assert.deepEqual(tooNew.json(), { message: 'client version 1.50 is too new. Maximum supported API version is 1.43' })
    // The docker CLI negotiates down using this header, so it is on error responses too.
    assert.equal(tooNew.headers['api-version'], '1.43')
  })

  test('GET /version has docker\'s fields', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/version' })
    const v = res.json()
    assert.equal(v.Version, '9.9.9')
    assert.equal(v.ApiVersion, '1.43')
    assert.equal(v.MinAPIVersion, '1.24')
    assert.equal(v.Os, 'linux')
    assert.equal(v.Arch, 'amd64')
    assert.equal(v.KernelVersion, '6.0.0-test')
    assert.equal(v.GoVersion, 'node20')
    assert.equal(v.GitCommit, 'abc123')
    assert.equal(v.BuildTime, '2024-01-01T00:00:00Z')
    assert.equal(v.Components[0].Name, 'Engine')
    assert.equal(v.Components[0].Version, '9.9.9')
  })

  test('GET /info reports images, data root and registry config', async () => {
    const info = (await t.app.inject({ method: 'GET', url: '/info' })).json()
    assert.equal(info.ID, 'test-engine-id')
    assert.equal(info.Name, 'testhost')
    assert.equal(info.Images, 1)
    assert.equal(info.Containers, 0)
    assert.equal(info.Driver, 'content-store')
    assert.equal(info.DockerRootDir, system.dataRoot)
    assert.equal(info.OSType, 'linux')
    assert.equal(info.Architecture, 'x86_64')
    assert.equal(info.NCPU, 2)
    assert.equal(info.MemTotal, 1024)
    assert.equal(info.ServerVersion, '9.9.9')
    assert.deepEqual(info.RegistryConfig.InsecureRegistryCIDRs, ['127.0.0.0/8', '::1/128'])
    assert.equal(info.RegistryConfig.IndexConfigs['registry.test:5000'].Secure, false)
    assert.equal(info.RegistryConfig.IndexConfigs['docker.io'].Official, true)
  })

  test('unknown routes get 404 page not found', async () => {
    for (const [method, url] of [['GET', '/nope'], ['GET', '/v1.43/networks'], ['POST', '/_ping'], ['GET', '/images/busybox/history']] as const) {
      const res = await t.app.inject({ method, url })
      assert.equal(res.statusCode, 404, url)
      assert.deepEqual(res.json(), { message: 'page not found' })
    }
  })
})

describe('Engine API: image routes', () => {
  let t: TestApp
  before(async () => { t = await makeApp() })
  after(async () => { await t.app.close() })

  test('GET /images/json returns docker ImageSummary objects', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/images/json?digests=1' })
    assert.equal(res.statusCode, 200)
    assert.deepEqual(res.json(), [{
      Id: CONFIG_DIGEST,
      ParentId: '',
      RepoTags: ['127.0.0.1:5000/busybox:latest'],
      RepoDigests: [`127.0.0.1:5000/busybox@${MANIFEST_DIGEST}`],
      Created: 1704067200,
      Size: 1234,
      SharedSize: -1,
      VirtualSize: 1234,
      Labels: { team: 'joey' },
      Containers: -1
    }])
  })

  test('GET /images/json filters by reference, dangling and label', async () => {
    const q = async (filters: unknown): Promise<unknown[]> => (await t.app.inject({ method: 'GET', url: `/images/json?filters=${encodeURIComponent(JSON.stringify(filters))}` })).json()
    assert.equal((await q({ reference: { '127.0.0.1:5000/busybox': true } })).length, 1)
    assert.equal((await q({ reference: ['127.0.0.1:5000/busybox:*'] })).length, 1)
    assert.equal((await q({ reference: { alpine: true } })).length, 0)
    assert.equal((await q({ dangling: ['true'] })).length, 0)
    assert.equal((await q({ dangling: ['false'] })).length, 1)
    assert.equal((await q({ label: ['team=joey'] })).length, 1)
    assert.equal((await q({ label: ['team=other'] })).length, 0)
  })

  test('bad filters get 400 with the filter named', async () => {
    const cases: Array<[string, RegExp]> = [
      ['{not json', /invalid filters/],
      [JSON.stringify({ colour: ['red'] }), /invalid filter 'colour'/],
      [JSON.stringify({ since: ['busybox'] }), /filter 'since' is not supported/],
      [JSON.stringify({ dangling: ['maybe'] }), /invalid filter 'dangling=maybe'/],
      [JSON.stringify(['x']), /expected a JSON object/]
    ]
    for (const [filters, re] of cases) {
      const res = await t.app.inject({ method: 'GET', url: `/images/json?filters=${encodeURIComponent(filters)}` })
      assert.equal(res.statusCode, 400, filters)
      assert.match(res.json().message, re)
    }
  })

  test('GET /images/{name}/json takes names with slashes, colons and digests', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/images/127.0.0.1:5000/busybox:latest/json' })
    assert.equal(res.statusCode, 200)
    assert.equal(t.images.inspects.at(-1), '127.0.0.1:5000/busybox:latest')
    const body = res.json()
    assert.equal(body.Id, CONFIG_DIGEST)
    assert.deepEqual(body.RepoTags, detail.repoTags)
    assert.deepEqual(body.RepoDigests, detail.repoDigests)
    assert.equal(body.Created, '2024-01-01T00:00:00Z')
    assert.equal(body.Architecture, 'amd64')
    assert.equal(body.Os, 'linux')
    assert.equal(body.Size, 1234)
    assert.deepEqual(body.Config.Cmd, ['sh'])
    assert.deepEqual(body.Config.Env, ['PATH=/bin'])
    assert.deepEqual(body.RootFS, { Type: 'layers', Layers: [`sha256:${'d'.repeat(64)}`] })
    assert.equal(body.Metadata.LastTagTime, '0001-01-01T00:00:00Z')

    await t.app.inject({ method: 'GET', url: `/images/${encodeURIComponent(`busybox@${MANIFEST_DIGEST}`)}/json` })
    assert.equal(t.images.inspects.at(-1), `busybox@${MANIFEST_DIGEST}`)
    await t.app.inject({ method: 'GET', url: `/v1.43/images/${CONFIG_DIGEST}/json` })
    assert.equal(t.images.inspects.at(-1), CONFIG_DIGEST)
  })

  test('a missing image is 404 No such image', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/images/nothere:1/json' })
    assert.equal(res.statusCode, 404)
    assert.deepEqual(res.json(), { message: 'No such image: nothere:1' })
    // Exactly this: the docker CLI prints the raw body for any other Content-Type.
    assert.equal(res.headers['content-type'], 'application/json')
    const ok = await t.app.inject({ method: 'GET', url: '/images/json' })
    assert.equal(ok.headers['content-type'], 'application/json')
    const notRoute = await t.app.inject({ method: 'GET', url: '/nope' })
    assert.equal(notRoute.headers['content-type'], 'application/json')
  })

  test('DELETE /images/{name} returns Untagged and Deleted items', async () => {
    const res = await t.app.inject({ method: 'DELETE', url: '/images/127.0.0.1:5000/busybox:latest?force=1&noprune=0' })
    assert.equal(res.statusCode, 200)
    assert.deepEqual(res.json(), [
      { Untagged: '127.0.0.1:5000/busybox:latest' },
      { Untagged: `127.0.0.1:5000/busybox@${MANIFEST_DIGEST}` },
      { Deleted: CONFIG_DIGEST },
      { Deleted: LAYER_DIGEST }
    ])
    assert.deepEqual(t.images.removes.at(-1), { name: '127.0.0.1:5000/busybox:latest', force: true })
    await t.app.inject({ method: 'DELETE', url: `/images/${CONFIG_DIGEST}?force=false` })
    assert.deepEqual(t.images.removes.at(-1), { name: CONFIG_DIGEST, force: false })
  })

  test('DELETE maps not found to 404 and a conflict to 409', async () => {
    const missing = await t.app.inject({ method: 'DELETE', url: '/images/ghost:1' })
    assert.equal(missing.statusCode, 404)
    assert.deepEqual(missing.json(), { message: 'No such image: ghost:1' })
    const conflict = await t.app.inject({ method: 'DELETE', url: '/images/shared' })
    assert.equal(conflict.statusCode, 409)
    assert.match(conflict.json().message, /^conflict: unable to delete/)
  })

  test('POST /images/{name}/tag: 201 with repo and tag, latest without a tag, 400 without repo, 404 for an unknown image', async () => {
    const ok = await t.app.inject({ method: 'POST', url: '/images/127.0.0.1:5000/busybox:latest/tag?repo=example.com/app&tag=v1' })
    assert.equal(ok.statusCode, 201)
    assert.equal(ok.body, '')
    const bare = await t.app.inject({ method: 'POST', url: `/images/${CONFIG_DIGEST}/tag?repo=example.com/app` })
    assert.equal(bare.statusCode, 201)
    assert.deepEqual(t.images.tags, [
      { source: '127.0.0.1:5000/busybox:latest', target: 'example.com/app:v1' },
      { source: CONFIG_DIGEST, target: 'example.com/app' }
    ])
    const noRepo = await t.app.inject({ method: 'POST', url: '/images/127.0.0.1:5000/busybox:latest/tag' })
    assert.equal(noRepo.statusCode, 400)
    assert.match(noRepo.json().message, /repo/)
    const missing = await t.app.inject({ method: 'POST', url: '/images/ghost:1/tag?repo=x' })
    assert.equal(missing.statusCode, 404)
    const other = await t.app.inject({ method: 'POST', url: '/images/127.0.0.1:5000/busybox:latest/push' })
    assert.equal(other.statusCode, 404)
  })
})

describe('Engine API: POST /images/create', () => {
  let t: TestApp
  before(async () => { t = await makeApp() })
  after(async () => { await t.app.close() })

  test('streams dockerd-shaped progress messages', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/v1.43/images/create?fromImage=127.0.0.1%3A5000%2Fbusybox&tag=latest' })
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers['content-type'], 'application/json')
    assert.equal(t.images.pulls.at(-1)!.ref, '127.0.0.1:5000/busybox:latest')
    const lines = res.body.split('\n').filter(l => l !== '')
    // Byte-exact lines, in docker's field order.
    assert.deepEqual(lines, [
      '{"status":"Pulling from busybox","id":"latest"}',
      `{"status":"Pulling fs layer","progressDetail":{},"id":"${LAYER_SHORT}"}`,
      `{"status":"Downloading","progressDetail":{"current":1234567,"total":3400000},"progress":"[==================>                                ]  1.235MB/3.4MB","id":"${LAYER_SHORT}"}`,
      `{"status":"Verifying Checksum","progressDetail":{},"id":"${LAYER_SHORT}"}`,
      `{"status":"Download complete","progressDetail":{},"id":"${LAYER_SHORT}"}`,
      `{"status":"Pull complete","progressDetail":{},"id":"${LAYER_SHORT}"}`,
      `{"status":"Digest: ${MANIFEST_DIGEST}"}`,
      '{"status":"Status: Downloaded newer image for 127.0.0.1:5000/busybox:latest"}'
    ])
  })

  test('fromImage and tag combine like dockerd: tag, digest, or a tag inside fromImage', async () => {
    const cases: Array<[string, string]> = [
      ['fromImage=busybox&tag=1.36', 'busybox:1.36'],
      [`fromImage=docker.io%2Flibrary%2Fbusybox&tag=${MANIFEST_DIGEST}`, `docker.io/library/busybox@${MANIFEST_DIGEST}`],
      ['fromImage=busybox%3A1.35', 'busybox:1.35'],
      ['fromImage=busybox%3A1.35&tag=1.36', 'busybox:1.36'],
      ['fromImage=localhost%3A5000%2Fa%2Fb&tag=v1', 'localhost:5000/a/b:v1']
    ]
    for (const [query, ref] of cases) {
      const res = await t.app.inject({ method: 'POST', url: `/images/create?${query}` })
      assert.equal(res.statusCode, 200, query)
      assert.equal(t.images.pulls.at(-1)!.ref, ref)
    }
  })

  test('bad parameters get 400 before anything streams', async () => {
    const before = t.images.pulls.length
    const cases: Array<[string, RegExp]> = [
      ['', /fromImage is required/],
      ['fromImage=busybox', /pulling every tag of busybox is not supported/],
      ['fromImage=BusyBox&tag=latest', /invalid reference/],
      ['fromImage=busybox&tag=bad%20tag', /invalid reference/],
      ['fromImage=busybox&tag=sha256%3A1234', /invalid/],
      ['fromImage=busybox&tag=latest&platform=linux%2F%2F', /invalid platform/],
      ['fromSrc=-&repo=x', /fromSrc/],
      [`fromImage=busybox&tag=${'x'.repeat(300)}`, /querystring\/tag must NOT have more than 256 characters/]
    ]
    for (const [query, re] of cases) {
      const res = await t.app.inject({ method: 'POST', url: `/images/create?${query}` })
      assert.equal(res.statusCode, 400, query)
      assert.match(res.json().message, re, query)
    }
    assert.equal(t.images.pulls.length, before, 'no pull reached the image service')
  })

  test('a platform is passed on', async () => {
    await t.app.inject({ method: 'POST', url: '/images/create?fromImage=busybox&tag=latest&platform=linux%2Farm64' })
    assert.equal(t.images.pulls.at(-1)!.options.platform, 'linux/arm64')
  })

  test('an error before the manifest resolves gets a real status and message', async () => {
    t.images.script = async (_ref, _o, emit) => {
      emit({ id: 'latest', status: 'Pulling from busybox' })
      throw new JoeyError('ERR_MANIFEST_UNKNOWN', 'manifest for 127.0.0.1:5000/busybox:nope not found: manifest unknown')
    }
    const res = await t.app.inject({ method: 'POST', url: '/images/create?fromImage=127.0.0.1%3A5000%2Fbusybox&tag=nope' })
    assert.equal(res.statusCode, 404)
    assert.deepEqual(res.json(), { message: 'manifest for 127.0.0.1:5000/busybox:nope not found: manifest unknown' })

    t.images.script = async () => { throw new JoeyError('ERR_UNAUTHORIZED', 'access denied') }
    const denied = await t.app.inject({ method: 'POST', url: '/images/create?fromImage=busybox&tag=1' })
    assert.equal(denied.statusCode, 401)
    assert.deepEqual(denied.json(), { message: 'access denied' })

    t.images.script = async () => { throw new Error('boom') }
    const internal = await t.app.inject({ method: 'POST', url: '/images/create?fromImage=busybox&tag=1' })
    assert.equal(internal.statusCode, 500)
    assert.deepEqual(internal.json(), { message: 'boom' })
  })

  test('an error mid-pull ends the stream with errorDetail', async () => {
    t.images.script = async (_ref, _o, emit) => {
      emit({ id: 'latest', status: 'Pulling from busybox' })
      emit({ id: LAYER_SHORT, status: 'Pulling fs layer' })
      throw new JoeyError('ERR_DIGEST_MISMATCH', `blob ${LAYER_DIGEST} does not match its digest`)
    }
    const res = await t.app.inject({ method: 'POST', url: '/images/create?fromImage=busybox&tag=latest' })
    assert.equal(res.statusCode, 200)
    const lines = jsonLines(res.body)
    assert.equal(lines.length, 3)
    const message = `blob ${LAYER_DIGEST} does not match its digest`
    assert.deepEqual(lines[2], { errorDetail: { code: 502, message }, error: message })
  })

  test('X-Registry-Auth is decoded into the pull\'s authorization', async () => {
    t.images.script = async () => {}
    const basic = (u: string, p: string): string => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`
    const cases: Array<[string, string | undefined]> = [
      [authHeader({ username: 'joey', password: 's3cret:x', serveraddress: '127.0.0.1:5000' }), basic('joey', 's3cret:x')],
      [Buffer.from(JSON.stringify({ username: 'a', password: 'b' })).toString('base64'), basic('a', 'b')],
      [authHeader({ auth: Buffer.from('u:p').toString('base64') }), basic('u', 'p')],
      [authHeader({ identitytoken: 'idtok' }), 'Bearer idtok'],
      [authHeader({ registrytoken: 'regtok', username: 'x', password: 'y' }), 'Bearer regtok'],
      [authHeader({}), undefined],
      ['e30=', undefined]
    ]
    for (const [header, expected] of cases) {
      const res = await t.app.inject({ method: 'POST', url: '/images/create?fromImage=busybox&tag=latest', headers: { 'x-registry-auth': header } })
      assert.equal(res.statusCode, 200, header)
      assert.equal(t.images.pulls.at(-1)!.options.authorization, expected, header)
    }
  })

  test('a malformed X-Registry-Auth is 400', async () => {
    for (const header of ['!!!not-base64!!!', Buffer.from('not json').toString('base64'), authHeader([1, 2]), authHeader({ username: 5 }), authHeader({ auth: Buffer.from('nocolon').toString('base64') })]) {
      const res = await t.app.inject({ method: 'POST', url: '/images/create?fromImage=busybox&tag=latest', headers: { 'x-registry-auth': header } })
      assert.equal(res.statusCode, 400, header)
      assert.match(res.json().message, /^invalid X-Registry-Auth header/)
    }
  })

  test('a body docker sends along does not break the pull', async () => {
    t.images.script = async () => {}
    for (const contentType of ['text/plain', 'application/json', 'application/octet-stream']) {
      const res = await t.app.inject({ method: 'POST', url: '/images/create?fromImage=busybox&tag=latest', headers: { 'content-type': contentType }, payload: '' })
      assert.equal(res.statusCode, 200, contentType)
    }
  })
})

describe('Engine API: pulls over a real socket', () => {
  let t: TestApp
  let url: string
  before(async () => {
    t = await makeApp()
    url = await t.app.listen({ host: '127.0.0.1', port: 0 })
  })
  after(async () => { await t.app.close() })

  /** A pull that emits its header and one layer line, then waits for its signal. */
  const blockingPull = (aborted: { value: boolean }) => async (_ref: string, options: { signal?: AbortSignal }, emit: (e: { id?: string, status: string }) => void): Promise<void> => {
    emit({ id: 'latest', status: 'Pulling from busybox' })
    emit({ id: LAYER_SHORT, status: 'Pulling fs layer' })
    await new Promise<void>((resolve, reject) => {
      options.signal!.addEventListener('abort', () => {
        aborted.value = true
        reject(new JoeyError('ERR_ABORTED', 'pull of busybox aborted'))
      }, { once: true })
      setTimeout(resolve, 10_000).unref()
    })
  }

  test('a client that goes away cancels its pull', async () => {
    const aborted = { value: false }
    t.images.script = blockingPull(aborted)
    const controller = new AbortController()
    const res = await request(`${url}/images/create?fromImage=busybox&tag=latest`, { method: 'POST', signal: controller.signal })
    assert.equal(res.statusCode, 200)
    for await (const chunk of res.body) {
      if (String(chunk).includes('Pulling fs layer')) break
    }
    controller.abort()
    for (let i = 0; i < 100 && !aborted.value; i++) await sleep(20)
    assert.equal(aborted.value, true)
  })

  test('shutting down ends in-flight pulls with an error line', async () => {
    const aborted = { value: false }
    t.images.script = blockingPull(aborted)
    const res = await request(`${url}/images/create?fromImage=busybox&tag=latest`, { method: 'POST' })
    const text = res.body.text()
    await sleep(100)
    t.shutdown.abort()
    const lines = jsonLines(await text)
    assert.equal(aborted.value, true)
    assert.deepEqual(lines.at(-1), { errorDetail: { code: 499, message: 'pull of busybox aborted' }, error: 'pull of busybox aborted' })
  })
})

describe('metrics', () => {
  test('GET /metrics exposes pulls, origin bytes, store usage and requests', async () => {
    const t = await makeApp({
      stats: { originBytes: 4096, peerBytes: 0, originFetches: 2 },
      usage: { blobs: 7, blobBytes: 123456, ingests: 1, ingestBytes: 99 }
    })
    try {
      await t.app.inject({ method: 'POST', url: '/images/create?fromImage=busybox&tag=latest' })
      t.images.script = async () => { throw new JoeyError('ERR_MANIFEST_UNKNOWN', 'manifest unknown') }
      await t.app.inject({ method: 'POST', url: '/images/create?fromImage=busybox&tag=nope' })
      await t.app.inject({ method: 'GET', url: '/images/busybox/json' })
      const res = await t.app.inject({ method: 'GET', url: '/v1.43/metrics' })
      assert.equal(res.statusCode, 200)
      assert.match(String(res.headers['content-type']), /^text\/plain/)
      const text = res.body
      const value = (line: RegExp): number => {
        const m = text.split('\n').find(l => line.test(l))
        assert.ok(m !== undefined, `no line matching ${line.source} in:\n${text}`)
        return Number(m.split(' ').at(-1))
      }
      assert.equal(value(/^joeyd_pulls_total /), 2)
      assert.equal(value(/^joeyd_pulls_failed_total\{code="ERR_MANIFEST_UNKNOWN"\} /), 1)
      assert.equal(value(/^joeyd_origin_bytes_total /), 4096)
      assert.equal(value(/^joeyd_origin_fetches_total /), 2)
      assert.equal(value(/^joeyd_content_blobs /), 7)
      assert.equal(value(/^joeyd_content_blob_bytes /), 123456)
      assert.equal(value(/^joeyd_content_ingest_bytes /), 99)
      assert.equal(value(/^joeyd_http_requests_total\{method="POST",route="\/images\/create",status="200"\} /), 1)
      assert.equal(value(/^joeyd_http_requests_total\{method="POST",route="\/images\/create",status="404"\} /), 1)
      // Image names never become label values.
      assert.equal(value(/^joeyd_http_requests_total\{method="GET",route="\/images\/\*",status="404"\} /), 1)
      assert.ok(!text.includes('busybox'))
    } finally {
      await t.app.close()
    }
  })
})
