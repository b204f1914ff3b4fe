// A piece server in a separate process (test/p2p/peer-process.ts) and a client here, over
// real TCP + Noise + yamux on loopback.
import { describe, test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { silentLogger, type JoeyError } from '../../src/common/index.js'
import { createP2PHost, generateSwarmKey, openPieceSession, parseSwarmKey, pieceRange, type P2PHost } from '../../src/p2p/index.js'
import { MiB, makeBlob, sha256, startHost } from './helpers.js'

interface Peer { child: ChildProcess, peerId: string, addrs: string[], digest: string }
const children: ChildProcess[] = []
const hosts: P2PHost[] = []
let dir: string | undefined

async function startPeer (args: string[]): Promise<Peer> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--import', './test/setup.ts', 'test/p2p/peer-process.ts', ...args], {
    cwd: new URL('../..', import.meta.url).pathname,
    stdio: ['pipe', 'pipe', 'inherit']
  })
  children.push(child)
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  const timeout = setTimeout(() => { child.kill('SIGKILL') }, 20_000)
  try {
    const [line] = await Promise.race([
      once(lines, 'line') as Promise<[string]>,
      once(child, 'exit').then(([code]) => { throw new Error(`peer process exited with ${String(code)} before printing its address`) })
    ])
    return { child, ...JSON.parse(line) as Omit<Peer, 'child'> }
  } finally {
    clearTimeout(timeout)
  }
}

async function client (init: Parameters<typeof startHost>[0] = {}): Promise<P2PHost> {
  const h = await startHost(init)
  hosts.push(h)
  return h
}

after(async () => {
  for (const h of hosts) await h.stop().catch(() => {})
  await Promise.all(children.map(async (c) => {
    if (c.exitCode !== null || c.signalCode !== null) return
    const exited = once(c, 'exit')
    c.kill('SIGTERM')
    const t = setTimeout(() => c.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(t)
  }))
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
})

describe('piece transfer between two processes', () => {
  test('fetches all pieces of a 64 MiB blob with several requests in flight, each verified', async (t) => {
    const size = 64 * MiB
    const pieceSize = 4 * MiB
    const peer = await startPeer(['--size', String(size), '--piece-size', String(pieceSize), '--seed', 'x-process'])
    const blob = makeBlob(size, 'x-process')
    assert.equal(peer.digest, sha256(blob))
    const host = await client()
    const session = await openPieceSession(host, peer.addrs[0] as string, peer.digest, { signal: AbortSignal.timeout(10_000) })
    assert.equal(session.peer, peer.peerId)
    assert.equal(session.meta.pieceCount, 16)
    assert.ok(session.meta.maxRequests > 1)
    const started = performance.now()
    let inFlight = 0
    let maxInFlight = 0
    const pieces = await Promise.all(Array.from({ length: 16 }, async (_, i) => {
      inFlight++
      maxInFlight = Math.max(maxInFlight, inFlight)
      try {
        return await session.request(i, { signal: AbortSignal.timeout(20_000) })
      } finally {
        inFlight--
      }
    }))
    const seconds = (performance.now() - started) / 1000
    t.diagnostic(`64 MiB in ${seconds.toFixed(2)} s: ${(64 / seconds).toFixed(0)} MiB/s`)
    assert.ok(maxInFlight > 1)
    for (let i = 0; i < 16; i++) {
      const r = pieceRange(size, pieceSize, i)
      assert.ok(Buffer.from(pieces[i] as Uint8Array).equals(blob.subarray(r.start, r.end)), `piece ${i} differs`)
    }
    await session.close()
  })

  test('streams pieces as the serving process gains them (HAVE pushes)', async () => {
    const size = 8 * MiB + 5
    const pieceSize = MiB
    const peer = await startPeer(['--size', String(size), '--piece-size', String(pieceSize), '--seed', 'trickle', '--trickle-ms', '40'])
    const blob = makeBlob(size, 'trickle')
    const host = await client()
    const session = await openPieceSession(host, peer.addrs[0] as string, peer.digest)
    const count = session.meta.pieceCount
    assert.equal(count, 9)
    const got = new Map<number, Uint8Array>()
    await new Promise<void>((resolve, reject) => {
      const fetch = (i: number): void => {
        session.request(i).then((data) => {
          got.set(i, data)
          if (got.size === count) resolve()
        }, reject)
      }
      for (const i of session.meta.bitfield.toArray()) fetch(i)
      session.onHave((i) => { fetch(i) })
    })
    for (let i = 0; i < count; i++) {
      const r = pieceRange(size, pieceSize, i)
      assert.ok(Buffer.from(got.get(i) as Uint8Array).equals(blob.subarray(r.start, r.end)), `piece ${i}`)
    }
    await session.close()
  })

  test('a corrupt piece from another process is ERR_DIGEST_MISMATCH naming the peer', async () => {
    const peer = await startPeer(['--size', String(2 * MiB), '--piece-size', String(MiB), '--seed', 'bad', '--corrupt', '1'])
    const host = await client()
    const session = await openPieceSession(host, peer.addrs[0] as string, peer.digest)
    await session.request(0)
    await assert.rejects(session.request(1), (err: JoeyError) => err.code === 'ERR_DIGEST_MISMATCH' && err.detail?.peer === peer.peerId && err.detail?.index === 1)
    await session.close()
  })

  test('a private swarm across processes: members fetch, outsiders cannot connect', async () => {
    dir = await mkdtemp(join(tmpdir(), 'joey-p2p-swarm-'))
    const keyFile = join(dir, 'swarm.key')
    const keyText = generateSwarmKey()
    await writeFile(keyFile, keyText, { mode: 0o600 })
    const peer = await startPeer(['--size', String(MiB), '--piece-size', String(MiB), '--seed', 'swarm', '--swarm-key-file', keyFile])
    const member = await client({ swarmKey: parseSwarmKey(keyText), dialTimeoutMs: 1000 })
    const session = await openPieceSession(member, peer.addrs[0] as string, peer.digest)
    assert.equal(sha256(await session.request(0)), peer.digest)
    await session.close()
    const outsider = createP2PHost({ listen: ['/ip4/127.0.0.1/tcp/0'], dialTimeoutMs: 1000 }, { logger: silentLogger() })
    hosts.push(outsider)
    await outsider.start()
    await assert.rejects(openPieceSession(outsider, peer.addrs[0] as string, peer.digest), (err: JoeyError) => err.code === 'ERR_UNAVAILABLE')
  })
})
