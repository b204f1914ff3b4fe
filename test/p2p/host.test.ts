import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger, type JoeyError } from '../../src/common/index.js'
import { createP2PHost, generateSwarmKey, parseSwarmKey, loadOrCreateIdentity, type P2PHost } from '../../src/p2p/index.js'
import { startHost } from './helpers.js'

const ECHO = '/joey-test/echo/1.0.0'
const code = (c: string) => (err: JoeyError) => err.code === c

async function serveEcho (host: P2PHost): Promise<void> {
  await host.handle(ECHO, (stream) => {
    stream.addEventListener('message', (evt) => { stream.send(evt.data) })
    stream.addEventListener('remoteCloseWrite', () => { stream.close().catch(() => {}) })
  })
}

async function echo (from: P2PHost, to: P2PHost, text: string): Promise<string> {
  const stream = await from.dialProtocol(to.multiaddrs()[0] as string, ECHO, { signal: AbortSignal.timeout(10_000) })
  const got = new Promise<string>((resolve, reject) => {
    let s = ''
    stream.addEventListener('message', (evt) => {
      s += new TextDecoder().decode(evt.data instanceof Uint8Array ? evt.data : evt.data.subarray())
      if (s.length >= text.length) resolve(s)
    })
    stream.addEventListener('close', () => { reject(new Error('closed early')) })
  })
  stream.send(new TextEncoder().encode(text))
  const out = await got
  await stream.close()
  return out
}

describe('p2p host', () => {
  let dir: string
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'joey-p2p-host-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  test('multiaddrs carry /p2p/<peerId>; a handler set before start is installed by start', async () => {
    const a = createP2PHost({ listen: ['/ip4/127.0.0.1/tcp/0'] }, { logger: silentLogger() })
    assert.equal(a.peerId, '')
    assert.deepEqual(a.multiaddrs(), [])
    await serveEcho(a)
    await a.start()
    const b = await startHost()
    try {
      assert.match(a.peerId, /^12D3KooW/)
      for (const m of a.multiaddrs()) assert.ok(m.endsWith(`/p2p/${a.peerId}`), m)
      assert.equal(await echo(b, a, 'hello'), 'hello')
      assert.deepEqual(b.peers(), [a.peerId])
      await b.hangUp(a.peerId)
      assert.deepEqual(b.peers(), [])
    } finally {
      await b.stop()
      await a.stop()
    }
  })

  test('identity persists across restarts in a 0600 key file', async () => {
    const identityPath = join(dir, 'sub', 'peer.key')
    const a = await startHost({ identityPath })
    const id = a.peerId
    await a.stop()
    assert.equal((await stat(identityPath)).mode & 0o777, 0o600)
    const again = await startHost({ identityPath })
    try {
      assert.equal(again.peerId, id)
    } finally {
      await again.stop()
    }
    const other = await startHost({ identityPath: join(dir, 'other.key') })
    try {
      assert.notEqual(other.peerId, id)
    } finally {
      await other.stop()
    }
  })

  test('two processes creating one key file at once agree on it', async () => {
    const path = join(dir, 'race.key')
    const keys = await Promise.all([0, 1, 2, 3].map(async () => await loadOrCreateIdentity(path)))
    for (const k of keys) assert.ok(k.equals(keys[0] as typeof k))
  })

  test('a corrupt key file fails start with ERR_INVALID_CONFIG and is left alone', async () => {
    const identityPath = join(dir, 'corrupt.key')
    await writeFile(identityPath, 'not a key')
    const h = createP2PHost({ listen: ['/ip4/127.0.0.1/tcp/0'], identityPath }, { logger: silentLogger() })
    await assert.rejects(h.start(), code('ERR_INVALID_CONFIG'))
    assert.equal((await stat(identityPath)).size, 9)
  })

  test('bad config is ERR_INVALID_CONFIG; bad dials are ERR_INVALID_ARGUMENT / ERR_FAILED_PRECONDITION / ERR_UNAVAILABLE', async () => {
    const logger = silentLogger()
    assert.throws(() => createP2PHost({ listen: ['not-a-multiaddr'] }, { logger }), code('ERR_INVALID_CONFIG'))
    assert.throws(() => createP2PHost({ listen: [], swarmKey: new Uint8Array(8) }, { logger }), code('ERR_INVALID_CONFIG'))
    assert.throws(() => createP2PHost({ listen: [], maxConnections: 0 }, { logger }), code('ERR_INVALID_CONFIG'))
    assert.throws(() => createP2PHost({ listen: [], dialTimeoutMs: -1 }, { logger }), code('ERR_INVALID_CONFIG'))
    const idle = createP2PHost({ listen: [] }, { logger })
    await assert.rejects(idle.dialProtocol('/ip4/127.0.0.1/tcp/1', ECHO), code('ERR_FAILED_PRECONDITION'))
    const h = await startHost()
    try {
      await assert.rejects(h.dialProtocol('nope', ECHO), code('ERR_INVALID_ARGUMENT'))
      await assert.rejects(h.hangUp('nope'), code('ERR_INVALID_ARGUMENT'))
      // Port 1 on loopback refuses connections.
      await assert.rejects(h.dialProtocol('/ip4/127.0.0.1/tcp/1', ECHO), code('ERR_UNAVAILABLE'))
      await assert.rejects(h.dialProtocol('/ip4/127.0.0.1/tcp/1', ECHO, { signal: AbortSignal.abort() }), code('ERR_ABORTED'))
    } finally {
      await h.stop()
    }
  })

  test('a protocol the peer does not speak is ERR_UNAVAILABLE', async () => {
    const a = await startHost()
    const b = await startHost()
    try {
      await assert.rejects(b.dialProtocol(a.multiaddrs()[0] as string, '/nobody/1.0.0'), code('ERR_UNAVAILABLE'))
    } finally {
      await b.stop()
      await a.stop()
    }
  })

  test('private swarm: same key connects; no key or another key cannot', async () => {
    const key = parseSwarmKey(generateSwarmKey())
    const a = await startHost({ swarmKey: key, dialTimeoutMs: 1000 })
    const b = await startHost({ swarmKey: key, dialTimeoutMs: 1000 })
    const open = await startHost({ dialTimeoutMs: 1000 })
    const stranger = await startHost({ swarmKey: parseSwarmKey(generateSwarmKey()), dialTimeoutMs: 1000 })
    try {
      await serveEcho(a)
      await serveEcho(open)
      assert.equal(await echo(b, a, 'in the swarm'), 'in the swarm')
      // The handshake cannot complete, so each of these ends at the dial timeout; run them together.
      await Promise.all([
        assert.rejects(echo(open, a, 'x'), code('ERR_UNAVAILABLE')),
        assert.rejects(echo(stranger, a, 'x'), code('ERR_UNAVAILABLE')),
        // A swarm member cannot reach an open host either.
        assert.rejects(echo(b, open, 'x'), code('ERR_UNAVAILABLE'))
      ])
      assert.deepEqual(a.peers(), [b.peerId])
    } finally {
      for (const h of [a, b, open, stranger]) await h.stop()
    }
  })
})
