// Protocol cases a real registry cannot produce on demand: auth challenges, throttling, 5xx,
// hangs, resets, oversize and lying manifests, redirects to another origin, ignored Range.
// Each test runs small node:http servers on port 0 and talks to them through the real client.
import { after, afterEach, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { text } from 'node:stream/consumers'
import { silentLogger, sha256 } from '../../src/common/index.js'
import {
  MEDIA_TYPES, createRegistryClient, parseReference, type RegistryClient, type RegistryClientInit
} from '../../src/distribution/index.js'

type Handler = (req: IncomingMessage, res: ServerResponse) => void

interface Srv {
  host: string
  url: string
  requests: Array<{ method: string, url: string, headers: IncomingMessage['headers'] }>
  close: () => Promise<void>
}

const servers: Srv[] = []
const clients: RegistryClient[] = []

async function listen (server: Server, handler: Handler, scheme: 'http' | 'https'): Promise<Srv> {
  const requests: Srv['requests'] = []
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers })
    handler(req, res)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const addr = server.address()
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0
  const srv: Srv = {
    host: `127.0.0.1:${port}`,
    url: `${scheme}://127.0.0.1:${port}`,
    requests,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => resolve()))
    }
  }
  servers.push(srv)
  return srv
}

async function serve (handler: Handler): Promise<Srv> {
  return await listen(createHttpServer(), handler, 'http')
}

function client (init: RegistryClientInit = {}): RegistryClient {
  const c = createRegistryClient({ retries: 2, retryBaseMs: 5, timeoutMs: 2000, ...init }, { logger: silentLogger() })
  clients.push(c)
  return c
}

afterEach(async () => {
  await Promise.all(clients.splice(0).map(async c => await c.close()))
  await Promise.all(servers.splice(0).map(async s => await s.close()))
})

const CONFIG = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}')
const LAYER = Buffer.from('layer bytes '.repeat(1000))
const MANIFEST = Buffer.from(JSON.stringify({
  schemaVersion: 2,
  mediaType: MEDIA_TYPES.ociManifest,
  config: { mediaType: MEDIA_TYPES.ociConfig, digest: sha256(CONFIG), size: CONFIG.length },
  layers: [{ mediaType: MEDIA_TYPES.ociLayer, digest: sha256(LAYER), size: LAYER.length }]
}))
const MANIFEST_DIGEST = sha256(MANIFEST)

function sendManifest (res: ServerResponse, body = MANIFEST, headers: Record<string, string> = {}): void {
  res.writeHead(200, { 'content-type': MEDIA_TYPES.ociManifest, 'content-length': body.length, 'docker-content-digest': sha256(body), ...headers })
  res.end(body)
}

function sendError (res: ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}): void {
  const body = JSON.stringify({ errors: [{ code, message }] })
  res.writeHead(status, { 'content-type': 'application/json', ...headers })
  res.end(body)
}

/** A registry serving MANIFEST, CONFIG and LAYER for repo "foo", guarded by `guard`. */
function registry (guard: (req: IncomingMessage, res: ServerResponse) => boolean = () => true): Handler {
  return (req, res) => {
    if (!guard(req, res)) return
    const url = req.url ?? ''
    if (url === '/v2/foo/manifests/latest' || url === `/v2/foo/manifests/${MANIFEST_DIGEST}`) return sendManifest(res)
    const blob = url === `/v2/foo/blobs/${sha256(CONFIG)}` ? CONFIG : url === `/v2/foo/blobs/${sha256(LAYER)}` ? LAYER : undefined
    if (blob !== undefined) {
      res.writeHead(200, { 'content-length': blob.length, 'docker-content-digest': sha256(blob) })
      res.end(req.method === 'HEAD' ? undefined : blob)
      return
    }
    sendError(res, 404, url.includes('/blobs/') ? 'BLOB_UNKNOWN' : 'MANIFEST_UNKNOWN', 'unknown')
  }
}

function ref (srv: Srv, rest = 'foo'): ReturnType<typeof parseReference> {
  return parseReference(`${srv.host}/${rest}`)
}

async function rejectsWith (p: Promise<unknown>, code: string, message?: RegExp): Promise<any> {
  let caught: any
  await assert.rejects(p, (err: any) => {
    caught = err
    assert.equal(err.code, code, `${err.code}: ${err.message}`)
    if (message !== undefined) assert.match(err.message, message)
    return true
  })
  return caught
}

describe('bearer token auth', () => {
  test('gets a token from the realm, retries, and caches it per repository', async () => {
    let tokenRequests = 0
    const srv = await serve((req, res) => {
      const url = new URL(req.url ?? '', 'http://x')
      if (url.pathname === '/token') {
        tokenRequests++
        assert.equal(url.searchParams.get('service'), 'test-registry')
        assert.deepEqual(url.searchParams.getAll('scope'), ['repository:foo:pull'])
        assert.equal(req.headers.authorization, undefined, 'anonymous token request')
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ token: 'tok-1', expires_in: 300 }))
        return
      }
      registry((rq, rs) => {
        if (rq.headers.authorization === 'Bearer tok-1') return true
        rs.writeHead(401, { 'www-authenticate': `Bearer realm="http://${srv.host}/token",service="test-registry",scope="repository:foo:pull"` })
        rs.end()
        return false
      })(req, res)
    })
    const c = client()
    const m = await c.getManifest(ref(srv))
    assert.equal(m.descriptor.digest, MANIFEST_DIGEST)
    assert.equal(m.descriptor.mediaType, MEDIA_TYPES.ociManifest)
    assert.equal(m.descriptor.size, MANIFEST.length)
    assert.deepEqual(m.bytes, MANIFEST)
    assert.deepEqual(await c.getBlobBytes(ref(srv), { mediaType: MEDIA_TYPES.ociConfig, digest: sha256(CONFIG), size: CONFIG.length }), CONFIG)
    assert.equal((await c.headBlob(ref(srv), sha256(LAYER))).size, LAYER.length)
    assert.equal(tokenRequests, 1, 'one token serves every request of the repository')
    assert.equal(srv.requests.filter(r => r.url.startsWith('/v2/') && r.headers.authorization === undefined).length, 1, 'only the first request goes without a token')
  })

  test('sends basic credentials to the realm and accepts access_token', async () => {
    const srv = await serve((req, res) => {
      if ((req.url ?? '').startsWith('/token')) {
        if (req.headers.authorization !== `Basic ${Buffer.from('alice:s3cret').toString('base64')}`) {
          res.writeHead(401)
          res.end()
          return
        }
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ access_token: 'tok-alice', expires_in: 300 }))
        return
      }
      registry((rq, rs) => {
        if (rq.headers.authorization === 'Bearer tok-alice') return true
        rs.writeHead(401, { 'www-authenticate': `Bearer realm="http://${srv.host}/token",service="s"` })
        rs.end()
        return false
      })(req, res)
    })
    const good = client({ hosts: { [srv.host]: { username: 'alice', password: 's3cret' } } })
    assert.equal((await good.getManifest(ref(srv))).descriptor.digest, MANIFEST_DIGEST)

    const bad = client({ hosts: { [srv.host]: { username: 'alice', password: 'wrong' } } })
    await rejectsWith(bad.getManifest(ref(srv)), 'ERR_UNAUTHORIZED', /refused the credentials of user "alice"/)
    const anonymous = client()
    await rejectsWith(anonymous.getManifest(ref(srv)), 'ERR_UNAUTHORIZED', /log in/)
  })

  test('an expired token is fetched again', async () => {
    let n = 0
    const srv = await serve((req, res) => {
      if ((req.url ?? '').startsWith('/token')) {
        n++
        res.writeHead(200, { 'content-type': 'application/json' })
        // Issued long ago: already expired by the time it is cached.
        res.end(JSON.stringify({ token: `tok-${n}`, expires_in: 60, issued_at: new Date(Date.now() - 59_000).toISOString() }))
        return
      }
      registry((rq, rs) => {
        if (rq.headers.authorization === `Bearer tok-${n}`) return true
        rs.writeHead(401, { 'www-authenticate': `Bearer realm="http://${srv.host}/token"` })
        rs.end()
        return false
      })(req, res)
    })
    const c = client()
    await c.getManifest(ref(srv))
    await c.getManifest(ref(srv))
    assert.equal(n, 2)
  })

  test('an identity token is exchanged with the OAuth2 refresh-token grant; other repositories reuse the challenge', async () => {
    const forms: URLSearchParams[] = []
    const srv = await serve((req, res) => {
      if ((req.url ?? '').startsWith('/token')) {
        assert.equal(req.method, 'POST')
        let body = ''
        req.on('data', (c: Buffer) => { body += c.toString() })
        req.on('end', () => {
          const form = new URLSearchParams(body)
          forms.push(form)
          res.writeHead(200, { 'content-type': 'application/json' })
          res.end(JSON.stringify({ access_token: `tok-${form.get('scope')}`, expires_in: 300 }))
        })
        return
      }
      const repo = /^\/v2\/(.+)\/manifests\//.exec(req.url ?? '')?.[1] ?? ''
      if (req.headers.authorization === `Bearer tok-repository:${repo}:pull`) return sendManifest(res)
      res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${srv.host}/token",service="svc"` })
      res.end()
    })
    const dir = await mkdtemp(join(tmpdir(), 'joey-dist-'))
    try {
      const path = join(dir, 'config.json')
      await writeFile(path, JSON.stringify({ auths: { [srv.host]: { auth: Buffer.from('<token>:').toString('base64'), identitytoken: 'refresh-me' } } }))
      const c = client({ dockerConfigPath: path })
      await c.getManifest(ref(srv, 'foo'))
      await c.getManifest(ref(srv, 'bar/baz'))
      assert.deepEqual(forms.map(f => [f.get('grant_type'), f.get('refresh_token'), f.get('service'), f.get('scope')]), [
        ['refresh_token', 'refresh-me', 'svc', 'repository:foo:pull'],
        ['refresh_token', 'refresh-me', 'svc', 'repository:bar/baz:pull']
      ])
      // The second repository got its token before asking, from the remembered challenge.
      assert.equal(srv.requests.filter(r => r.url.startsWith('/v2/') && r.headers.authorization === undefined).length, 1)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  test('a token server without a token is ERR_AUTH_CHALLENGE', async () => {
    const srv = await serve((req, res) => {
      if ((req.url ?? '').startsWith('/token')) {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end('{"nothing":true}')
        return
      }
      res.writeHead(401, { 'www-authenticate': `Bearer realm="http://${srv.host}/token"` })
      res.end()
    })
    await rejectsWith(client().getManifest(ref(srv)), 'ERR_AUTH_CHALLENGE', /no "token"/)
  })
})

describe('basic auth and credentials', () => {
  const expected = `Basic ${Buffer.from('bob:pw:with:colons').toString('base64')}`
  const basicRegistry = registry((req, res) => {
    if (req.headers.authorization === expected) return true
    res.writeHead(401, { 'www-authenticate': 'Basic realm="Registry Realm"' })
    res.end()
    return false
  })

  test('answers a Basic challenge with configured credentials', async () => {
    const srv = await serve(basicRegistry)
    const c = client({ hosts: { [srv.host]: { username: 'bob', password: 'pw:with:colons' } } })
    assert.equal((await c.getManifest(ref(srv))).descriptor.digest, MANIFEST_DIGEST)
    // Once the registry has asked for Basic, later requests carry it up front.
    await c.getManifest(ref(srv))
    assert.equal(srv.requests.filter(r => r.headers.authorization === undefined).length, 1)
  })

  test('reads credentials from a docker config.json', async () => {
    const srv = await serve(basicRegistry)
    const dir = await mkdtemp(join(tmpdir(), 'joey-dist-'))
    try {
      const path = join(dir, 'config.json')
      await writeFile(path, JSON.stringify({ auths: { [`http://${srv.host}/v1/`]: { auth: Buffer.from('bob:pw:with:colons').toString('base64') } } }))
      const c = client({ dockerConfigPath: path })
      assert.equal((await c.getManifest(ref(srv))).descriptor.digest, MANIFEST_DIGEST)

      await writeFile(path, '{not json')
      await rejectsWith(client({ dockerConfigPath: path }).getManifest(ref(srv)), 'ERR_INVALID_CONFIG', /not valid JSON/)
      // A missing file means anonymous, as with the docker CLI.
      await rejectsWith(client({ dockerConfigPath: join(dir, 'missing.json') }).getManifest(ref(srv)), 'ERR_UNAUTHORIZED', /none are configured/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  test('Basic without credentials, and wrong credentials, are ERR_UNAUTHORIZED', async () => {
    const srv = await serve(basicRegistry)
    await rejectsWith(client().getManifest(ref(srv)), 'ERR_UNAUTHORIZED', /log in/)
    await rejectsWith(client({ hosts: { [srv.host]: { username: 'bob', password: 'nope' } } }).getManifest(ref(srv)), 'ERR_UNAUTHORIZED', /configured credentials/)
  })

  test('401 without a challenge says to log in', async () => {
    const srv = await serve((_req, res) => {
      res.writeHead(401)
      res.end()
    })
    const err = await rejectsWith(client().getManifest(ref(srv)), 'ERR_UNAUTHORIZED', /no usable challenge.*log in or configure credentials/)
    assert.match(err.message, /foo:latest/)
  })

  test('a pre-issued token is sent as a bearer token', async () => {
    const srv = await serve(registry((req, res) => {
      if (req.headers.authorization === 'Bearer pre-issued') return true
      res.writeHead(401)
      res.end()
      return false
    }))
    assert.equal((await client({ hosts: { [srv.host]: { token: 'pre-issued' } } }).getManifest(ref(srv))).descriptor.digest, MANIFEST_DIGEST)
  })

  test('a per-request authorization is passed through and never cached', async () => {
    let tokenRequests = 0
    const srv = await serve((req, res) => {
      if ((req.url ?? '').startsWith('/token')) {
        tokenRequests++
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end('{"token":"ours"}')
        return
      }
      registry((rq, rs) => {
        if (rq.headers.authorization === 'Bearer theirs' || rq.headers.authorization === 'Bearer ours') return true
        rs.writeHead(401, { 'www-authenticate': `Bearer realm="http://${srv.host}/token",service="svc"` })
        rs.end()
        return false
      })(req, res)
    })
    const c = client()
    assert.equal((await c.getManifest(ref(srv), { authorization: 'Bearer theirs' })).descriptor.digest, MANIFEST_DIGEST)
    assert.equal(tokenRequests, 0)
    // A rejected passthrough is handed back with the challenge, for the mirror to relay.
    const err = await rejectsWith(c.getManifest(ref(srv), { authorization: 'Bearer stale' }), 'ERR_UNAUTHORIZED')
    assert.match(err.detail.challenge, /Bearer realm=/)
    assert.equal(tokenRequests, 0)
    // Without it the client uses its own (anonymous) token, not the caller's.
    srv.requests.length = 0
    await c.getManifest(ref(srv))
    assert.equal(tokenRequests, 1)
    assert.ok(srv.requests.every(r => r.headers.authorization !== 'Bearer theirs'))
  })
})

describe('retries and failures', () => {
  test('429 with Retry-After and 5xx are retried until success', async () => {
    let n = 0
    const srv = await serve((req, res) => {
      n++
      if (n === 1) return sendError(res, 429, 'TOOMANYREQUESTS', 'slow down', { 'retry-after': '0' })
      if (n === 2) return sendError(res, 503, 'UNAVAILABLE', 'busy')
      registry()(req, res)
    })
    const m = await client({ retries: 3 }).getManifest(ref(srv))
    assert.equal(m.descriptor.digest, MANIFEST_DIGEST)
    assert.equal(n, 3)
  })

  test('Retry-After is honoured', async () => {
    let n = 0
    const srv = await serve((req, res) => {
      if (n++ === 0) return sendError(res, 429, 'TOOMANYREQUESTS', 'slow down', { 'retry-after': '1' })
      registry()(req, res)
    })
    const start = Date.now()
    await client({ retries: 1, retryBaseMs: 1 }).getManifest(ref(srv))
    assert.ok(Date.now() - start >= 950, `waited ${Date.now() - start} ms`)
  })

  test('5xx forever is ERR_REGISTRY_UNAVAILABLE after retries', async () => {
    const srv = await serve((_req, res) => sendError(res, 502, 'UNKNOWN', 'bad gateway'))
    const err = await rejectsWith(client({ retries: 2 }).getManifest(ref(srv)), 'ERR_REGISTRY_UNAVAILABLE', /502.*gave up after 3 attempts/)
    assert.equal(srv.requests.length, 3)
    assert.equal(err.detail.attempts, 3)
  })

  test('a registry that hangs is ERR_REGISTRY_TIMEOUT', async () => {
    const srv = await serve(() => { /* never answers */ })
    const start = Date.now()
    await rejectsWith(client({ retries: 1, timeoutMs: 300 }).getManifest(ref(srv)), 'ERR_REGISTRY_TIMEOUT', /did not answer in time/)
    assert.equal(srv.requests.length, 2)
    assert.ok(Date.now() - start < 5000)
  })

  test('a body that stalls is ERR_REGISTRY_TIMEOUT', async () => {
    const srv = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': MEDIA_TYPES.ociManifest, 'content-length': MANIFEST.length })
      res.write(MANIFEST.subarray(0, 10))
    })
    await rejectsWith(client({ retries: 0, timeoutMs: 300 }).getManifest(ref(srv)), 'ERR_REGISTRY_TIMEOUT', /stopped sending after 10 bytes/)
  })

  test('connection resets are retried, then ERR_REGISTRY_UNAVAILABLE', async () => {
    let n = 0
    const srv = await serve((req, res) => {
      if (n++ < 2) return req.socket.destroy()
      registry()(req, res)
    })
    assert.equal((await client({ retries: 2 }).getManifest(ref(srv))).descriptor.digest, MANIFEST_DIGEST)

    const dead = await serve(req => req.socket.destroy())
    await rejectsWith(client({ retries: 1 }).getManifest(ref(dead)), 'ERR_REGISTRY_UNAVAILABLE', /gave up after 2 attempts/)
    const refused = await serve(() => {})
    const refusedRef = ref(refused)
    await refused.close()
    await rejectsWith(client({ retries: 1 }).headManifest(refusedRef), 'ERR_REGISTRY_UNAVAILABLE', /ECONNREFUSED/)
  })

  test('the signal aborts a hanging request and a backoff', async () => {
    const hang = await serve(() => {})
    const start = Date.now()
    await rejectsWith(client({ timeoutMs: 10_000 }).getManifest(ref(hang), { signal: AbortSignal.timeout(200) }), 'ERR_ABORTED')
    const busy = await serve((_req, res) => sendError(res, 503, 'UNAVAILABLE', 'x', { 'retry-after': '20' }))
    await rejectsWith(client({ retries: 3 }).getBlob(ref(busy), sha256(LAYER), { signal: AbortSignal.timeout(200) }), 'ERR_ABORTED')
    assert.ok(Date.now() - start < 3000)
  })

  test('404 error codes map to stable codes that name the reference', async () => {
    const srv = await serve((req, res) => {
      if ((req.url ?? '').startsWith('/v2/nosuch/')) return sendError(res, 404, 'NAME_UNKNOWN', 'repository name not known to registry')
      if (req.method === 'HEAD') {
        res.writeHead(404)
        return res.end()
      }
      registry()(req, res)
    })
    const c = client()
    await rejectsWith(c.getManifest(ref(srv, 'nosuch:v1')), 'ERR_NAME_UNKNOWN', /nosuch/)
    await rejectsWith(c.getManifest(ref(srv, 'foo:v9')), 'ERR_MANIFEST_UNKNOWN', new RegExp(`${srv.host}/foo:v9`))
    await rejectsWith(c.headManifest(ref(srv, 'foo:v9')), 'ERR_MANIFEST_UNKNOWN', /foo:v9/)
    const missing = sha256('missing')
    await rejectsWith(c.getBlob(ref(srv), missing), 'ERR_BLOB_UNKNOWN', new RegExp(missing))
    await rejectsWith(c.headBlob(ref(srv), missing), 'ERR_BLOB_UNKNOWN', new RegExp(missing))
    await rejectsWith(c.getBlob(ref(srv), 'sha256:nope'), 'ERR_INVALID_DIGEST')
    // Not-found answers are final: no retries.
    assert.equal(srv.requests.filter(r => r.url.includes('foo/manifests/v9') && r.method === 'GET').length, 1)
  })

  test('403 is ERR_UNAUTHORIZED and other statuses ERR_PROTOCOL', async () => {
    const srv = await serve((req, res) => {
      if ((req.url ?? '').includes('denied')) return sendError(res, 403, 'DENIED', 'requested access to the resource is denied')
      sendError(res, 400, 'NAME_INVALID', 'bad')
    })
    await rejectsWith(client().getManifest(ref(srv, 'denied')), 'ERR_UNAUTHORIZED', /DENIED/)
    await rejectsWith(client().getManifest(ref(srv, 'other')), 'ERR_PROTOCOL', /400/)
  })
})

describe('manifest checks', () => {
  test('oversize manifests are refused from Content-Length and while reading', async () => {
    const big = Buffer.alloc(2048, 0x20)
    const srv = await serve((req, res) => {
      if ((req.url ?? '').includes('chunked')) {
        res.writeHead(200, { 'content-type': MEDIA_TYPES.ociManifest })
        res.write(big)
        res.end(big)
        return
      }
      res.writeHead(200, { 'content-type': MEDIA_TYPES.ociManifest, 'content-length': big.length })
      res.end(req.method === 'HEAD' ? undefined : big)
    })
    const c = client({ maxManifestBytes: 1024 })
    await rejectsWith(c.getManifest(ref(srv)), 'ERR_MANIFEST_TOO_LARGE', /1024/)
    await rejectsWith(c.getManifest(ref(srv, 'chunked')), 'ERR_MANIFEST_TOO_LARGE')
    await rejectsWith(c.headManifest(ref(srv)), 'ERR_MANIFEST_TOO_LARGE')
  })

  test('bytes that do not match the requested digest or Docker-Content-Digest are refused', async () => {
    const other = Buffer.from(MANIFEST.toString().replace('"schemaVersion":2', '"schemaVersion":2 '))
    const srv = await serve((req, res) => {
      const url = req.url ?? ''
      if (url.includes('/manifests/sha256:')) return sendManifest(res, other) // wrong bytes for the digest asked
      if (url.includes('lying')) return sendManifest(res, MANIFEST, { 'docker-content-digest': sha256(other) })
      sendManifest(res)
    })
    const c = client()
    const err = await rejectsWith(c.getManifest(parseReference(`${srv.host}/foo@${MANIFEST_DIGEST}`)), 'ERR_DIGEST_MISMATCH')
    assert.equal(err.detail.expected, MANIFEST_DIGEST)
    assert.equal(err.detail.actual, sha256(other))
    await rejectsWith(c.getManifest(ref(srv, 'foo:lying')), 'ERR_DIGEST_MISMATCH', /Docker-Content-Digest/)
    assert.equal((await c.getManifest(ref(srv))).descriptor.digest, MANIFEST_DIGEST)
  })

  test('media type comes from the body, else Content-Type; schema 1 is refused', async () => {
    const noType = Buffer.from(JSON.stringify({ ...JSON.parse(MANIFEST.toString()), mediaType: undefined }))
    const schema1 = Buffer.from(JSON.stringify({ schemaVersion: 1, name: 'foo', tag: 'latest', fsLayers: [], history: [] }))
    const srv = await serve((req, res) => {
      const url = req.url ?? ''
      if (url.includes('notype')) return sendManifest(res, noType, { 'content-type': `${MEDIA_TYPES.dockerManifest}; charset=utf-8` })
      if (url.includes('schema1')) return sendManifest(res, schema1, { 'content-type': 'application/vnd.docker.distribution.manifest.v1+prettyjws' })
      if (url.includes('garbage')) return sendManifest(res, Buffer.from('<html>'), { 'content-type': 'text/html' })
      sendManifest(res)
    })
    const c = client()
    assert.equal((await c.getManifest(ref(srv, 'foo:notype'))).descriptor.mediaType, MEDIA_TYPES.dockerManifest)
    await rejectsWith(c.getManifest(ref(srv, 'foo:schema1')), 'ERR_UNSUPPORTED_MEDIA_TYPE', /schema 1/)
    await rejectsWith(c.getManifest(ref(srv, 'foo:garbage')), 'ERR_MANIFEST_INVALID')
    const accept = srv.requests[0]!.headers.accept ?? ''
    for (const t of [MEDIA_TYPES.ociManifest, MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifest, MEDIA_TYPES.dockerManifestList]) assert.ok(accept.includes(t), t)
  })

  test('HEAD gives the descriptor, and falls back to GET without Docker-Content-Digest', async () => {
    const srv = await serve((req, res) => {
      if ((req.url ?? '').includes('bare') && req.method === 'HEAD') {
        res.writeHead(200, { 'content-type': MEDIA_TYPES.ociManifest })
        return res.end()
      }
      sendManifest(res, MANIFEST)
    })
    const c = client()
    assert.deepEqual(await c.headManifest(ref(srv)), { mediaType: MEDIA_TYPES.ociManifest, digest: MANIFEST_DIGEST, size: MANIFEST.length })
    assert.deepEqual(await c.headManifest(ref(srv, 'foo:bare')), { mediaType: MEDIA_TYPES.ociManifest, digest: MANIFEST_DIGEST, size: MANIFEST.length })
    assert.deepEqual(srv.requests.map(r => r.method), ['HEAD', 'HEAD', 'GET'])
  })
})

describe('blobs', () => {
  test('redirects to another origin drop the registry Authorization header', async () => {
    const storage = await serve((req, res) => {
      const blob = (req.url ?? '').includes('config') ? CONFIG : LAYER
      res.writeHead(200, { 'content-length': blob.length })
      res.end(req.method === 'HEAD' ? undefined : blob)
    })
    const srv = await serve((req, res) => {
      if (req.headers.authorization !== 'Basic ' + Buffer.from('u:p').toString('base64')) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="r"' })
        return res.end()
      }
      const url = req.url ?? ''
      if (url.includes('/blobs/')) {
        res.writeHead(307, { location: `${storage.url}/signed/${url.includes(sha256(CONFIG)) ? 'config' : 'layer'}?sig=abc` })
        return res.end()
      }
      registry()(req, res)
    })
    const c = client({ hosts: { [srv.host]: { username: 'u', password: 'p' } } })
    const blob = await c.getBlob(ref(srv), sha256(LAYER))
    assert.equal(await text(blob.stream), LAYER.toString())
    assert.equal(blob.size, LAYER.length)
    assert.deepEqual(await c.getBlobBytes(ref(srv), { mediaType: MEDIA_TYPES.ociConfig, digest: sha256(CONFIG), size: CONFIG.length }), CONFIG)
    assert.equal((await c.headBlob(ref(srv), sha256(LAYER))).size, LAYER.length)
    assert.equal(storage.requests.length, 3)
    for (const r of storage.requests) {
      assert.equal(r.headers.authorization, undefined, 'no registry credentials at the storage origin')
      assert.match(r.url, /sig=abc/)
    }
  })

  test('resumes with Range, whether the server honours it or not', async () => {
    const srv = await serve((req, res) => {
      const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '')
      if ((req.url ?? '').includes('/honour/') && range !== null) {
        const start = Number(range[1])
        const end = range[2] !== '' ? Number(range[2]) : LAYER.length - 1
        res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${LAYER.length}`, 'content-length': end - start + 1 })
        return res.end(LAYER.subarray(start, end + 1))
      }
      res.writeHead(200, { 'content-length': LAYER.length })
      res.end(LAYER)
    })
    const c = client()
    for (const repo of ['honour', 'ignore']) {
      const r = parseReference(`${srv.host}/${repo}/x`)
      const tail = await c.getBlob(r, sha256(LAYER), { offset: 1000 })
      assert.equal(tail.offset, 1000)
      assert.equal(tail.size, LAYER.length)
      assert.equal(await text(tail.stream), LAYER.subarray(1000).toString(), repo)
      const slice = await c.getBlob(r, sha256(LAYER), { offset: 10, end: 19 })
      assert.equal(await text(slice.stream), LAYER.subarray(10, 20).toString(), repo)
    }
    assert.equal(srv.requests[0]!.headers.range, 'bytes=1000-')
    assert.equal(srv.requests[1]!.headers.range, 'bytes=10-19')
    await rejectsWith(c.getBlob(ref(srv), sha256(LAYER), { offset: -1 }), 'ERR_INVALID_ARGUMENT')
    await rejectsWith(c.getBlob(ref(srv), sha256(LAYER), { offset: LAYER.length + 5 }), 'ERR_INVALID_ARGUMENT', /past the end/)
  })

  test('a cut or stalled blob stream fails with ERR_TRUNCATED / ERR_REGISTRY_TIMEOUT', async () => {
    const srv = await serve((req, res) => {
      res.writeHead(200, { 'content-length': LAYER.length })
      res.write(LAYER.subarray(0, 100))
      if ((req.url ?? '').includes('/cut/')) setTimeout(() => req.socket.destroy(), 20)
    })
    const c = client({ timeoutMs: 300 })
    const cut = await c.getBlob(parseReference(`${srv.host}/cut/x`), sha256(LAYER))
    await rejectsWith(text(cut.stream), 'ERR_TRUNCATED', /after 100 bytes/)
    const stalled = await c.getBlob(parseReference(`${srv.host}/stall/x`), sha256(LAYER))
    await rejectsWith(text(stalled.stream), 'ERR_REGISTRY_TIMEOUT')
    await rejectsWith(client({ retries: 1, timeoutMs: 300 }).getBlobBytes(parseReference(`${srv.host}/cut/x`), { mediaType: 'x', digest: sha256(LAYER), size: LAYER.length }), 'ERR_TRUNCATED', /gave up after 2 attempts/)
  })

  test('getBlobBytes verifies digest and size and caps memory', async () => {
    const srv = await serve((req, res) => {
      const body = (req.url ?? '').includes('/wrong/') ? Buffer.from(CONFIG.toString().toUpperCase()) : CONFIG
      res.writeHead(200, { 'content-length': body.length })
      res.end(body)
    })
    const c = client({ maxConfigBytes: 1000 })
    const desc = { mediaType: MEDIA_TYPES.ociConfig, digest: sha256(CONFIG), size: CONFIG.length }
    assert.deepEqual(await c.getBlobBytes(ref(srv), desc), CONFIG)
    await rejectsWith(c.getBlobBytes(parseReference(`${srv.host}/wrong/x`), desc), 'ERR_DIGEST_MISMATCH')
    await rejectsWith(c.getBlobBytes(ref(srv), { ...desc, size: CONFIG.length - 1 }), 'ERR_SIZE_MISMATCH')
    await rejectsWith(c.getBlobBytes(ref(srv), { ...desc, size: 5000 }), 'ERR_LIMIT_EXCEEDED', /maxConfigBytes/)
  })
})

describe('transport', () => {
  let certDir: string | undefined
  after(async () => { if (certDir !== undefined) await rm(certDir, { recursive: true, force: true }) })

  test('HTTPS with a configured CA, skipVerify, and a clear TLS error without either', async () => {
    certDir = await mkdtemp(join(tmpdir(), 'joey-tls-'))
    await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem')])
    const [key, cert] = await Promise.all([readFile(join(certDir, 'key.pem'), 'utf8'), readFile(join(certDir, 'cert.pem'), 'utf8')])
    const srv = await listen(createHttpsServer({ key, cert }), registry(), 'https')
    assert.equal((await client({ hosts: { [srv.host]: { ca: cert } } }).getManifest(ref(srv))).descriptor.digest, MANIFEST_DIGEST)
    assert.equal((await client({ hosts: { [srv.host]: { skipVerify: true } } }).getManifest(ref(srv))).descriptor.digest, MANIFEST_DIGEST)
    await rejectsWith(client({ hosts: { [srv.host]: { insecure: false } } }).getManifest(ref(srv)), 'ERR_REGISTRY_UNAVAILABLE', /TLS.*\.ca/)
    // Plain HTTP to a TLS port fails too; it is not mistaken for success.
    await assert.rejects(client().getManifest(ref(srv)))
  })

  test('loopback speaks plain HTTP by default; close() ends the client', async () => {
    const srv = await serve(registry())
    const c = client()
    await c.getManifest(parseReference(`localhost:${srv.host.split(':')[1]}/foo`))
    await c.close()
    await rejectsWith(c.getManifest(ref(srv)), 'ERR_UNAVAILABLE', /closed/)
  })

  test('invalid init is ERR_INVALID_CONFIG', () => {
    assert.throws(() => createRegistryClient({ timeoutMs: 0 }, { logger: silentLogger() }), { code: 'ERR_INVALID_CONFIG' })
    assert.throws(() => createRegistryClient({ retries: -1 }, { logger: silentLogger() }), { code: 'ERR_INVALID_CONFIG' })
  })
})
