import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../../src/common/index.js'
import { CredentialStore, HostTable, isLoopback } from '../../src/distribution/hosts.js'
import { parseWwwAuthenticate } from '../../src/distribution/index.js'

describe('HostTable', () => {
  test('https by default, http for insecure and loopback hosts, docker.io via registry-1', () => {
    const t = new HostTable({ 'lab.example:5000': { insecure: true }, 'localhost:5443': { ca: 'PEM' } }, ['reg.internal', 'other.example:8080'])
    assert.equal(t.settings('docker.io').origin, 'https://registry-1.docker.io')
    assert.equal(t.settings('ghcr.io').origin, 'https://ghcr.io')
    assert.equal(t.settings('lab.example:5000').origin, 'http://lab.example:5000')
    assert.equal(t.settings('reg.internal:5000').origin, 'http://reg.internal:5000')
    assert.equal(t.settings('other.example:8080').origin, 'http://other.example:8080')
    assert.equal(t.settings('other.example:9090').origin, 'https://other.example:9090')
    assert.equal(t.settings('127.0.0.1:5000').origin, 'http://127.0.0.1:5000')
    assert.equal(t.settings('localhost:5000').origin, 'http://localhost:5000')
    assert.equal(t.settings('[::1]:5000').origin, 'http://[::1]:5000')
    // A loopback host configured with a CA speaks TLS.
    assert.equal(t.settings('localhost:5443').origin, 'https://localhost:5443')
  })

  test('loopback detection', () => {
    for (const h of ['localhost', 'localhost:5000', '127.0.0.1', '127.8.9.10:80', '[::1]:5000', 'foo.localhost']) assert.ok(isLoopback(h), h)
    for (const h of ['10.0.0.1', 'example.com', '128.0.0.1:5000', '[::2]:5000', 'localhost.example.com']) assert.ok(!isLoopback(h), h)
  })

  test('docker.io settings can live under any of its names', () => {
    const t = new HostTable({ 'registry-1.docker.io': { username: 'u' } })
    assert.equal(t.config('docker.io').username, 'u')
    assert.equal(t.config('index.docker.io').username, 'u')
  })
})

describe('CredentialStore', () => {
  test('reads docker config.json auths, including the Docker Hub v1 key and identity tokens', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'joey-creds-'))
    try {
      const path = join(dir, 'config.json')
      await writeFile(path, JSON.stringify({
        auths: {
          'https://index.docker.io/v1/': { auth: Buffer.from('hubuser:hubpass').toString('base64') },
          'reg.example:5000': { username: 'plain', password: 'pw' },
          'https://id.example': { auth: Buffer.from('<token>:').toString('base64'), identitytoken: 'refresh-me' },
          'empty.example': {}
        },
        credsStore: 'desktop'
      }))
      const store = new CredentialStore(new HostTable({ 'override.example': { username: 'cfg', password: 'x' } }), path, silentLogger())
      assert.deepEqual(await store.lookup('docker.io'), { username: 'hubuser', password: 'hubpass' })
      assert.deepEqual(await store.lookup('reg.example:5000'), { username: 'plain', password: 'pw' })
      assert.deepEqual(await store.lookup('id.example'), { username: '<token>', password: '', identityToken: 'refresh-me' })
      assert.equal(await store.lookup('empty.example'), undefined)
      assert.equal(await store.lookup('nobody.example'), undefined)
      assert.deepEqual(await store.lookup('override.example'), { username: 'cfg', password: 'x' })

      await writeFile(path, JSON.stringify({ auths: { 'bad.example': { auth: Buffer.from('nocolon').toString('base64') } } }))
      await assert.rejects(new CredentialStore(new HostTable(), path, silentLogger()).lookup('bad.example'), { code: 'ERR_INVALID_CONFIG', message: /user:password/ })
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('parseWwwAuthenticate', () => {
  test('parses Bearer and Basic challenges', () => {
    assert.deepEqual(parseWwwAuthenticate('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"'), [
      { scheme: 'bearer', params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull' } }
    ])
    assert.deepEqual(parseWwwAuthenticate('Basic realm="Registry Realm"'), [{ scheme: 'basic', params: { realm: 'Registry Realm' } }])
    assert.deepEqual(parseWwwAuthenticate('Basic realm="a", Bearer realm="https://x/t", error="insufficient_scope"'), [
      { scheme: 'basic', params: { realm: 'a' } },
      { scheme: 'bearer', params: { realm: 'https://x/t', error: 'insufficient_scope' } }
    ])
    assert.deepEqual(parseWwwAuthenticate(['Basic realm=plain', 'Bearer realm="q\\"uote"']), [
      { scheme: 'basic', params: { realm: 'plain' } },
      { scheme: 'bearer', params: { realm: 'q"uote' } }
    ])
    assert.deepEqual(parseWwwAuthenticate(''), [])
    assert.deepEqual(parseWwwAuthenticate(undefined), [])
    // Garbage never throws; it just yields nothing a client could answer.
    assert.ok(parseWwwAuthenticate('=oops, ,,"').every(c => c.scheme !== 'bearer' && c.scheme !== 'basic'))
  })
})
