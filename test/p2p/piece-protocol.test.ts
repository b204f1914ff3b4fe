// Two libp2p hosts in one process speaking /joey/piece/1.0.0 over real TCP + Noise + yamux.
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { silentLogger, isJoeyError, type JoeyError } from '../../src/common/index.js'
import {
  createPieceServer, openPieceSession, pieceRange, PIECE_PROTOCOL,
  type P2PHost, type PieceServer, type PieceSession
} from '../../src/p2p/index.js'
import { MemorySource, MiB, makeBlob, sha256, startHost, startServedPair, type ServedPair } from './helpers.js'

const PIECE = 256 * 1024

describe('piece protocol between two hosts', () => {
  let pair: ServedPair
  let server: P2PHost
  let client: P2PHost
  let pieces: PieceServer
  const source = new MemorySource()
  let addr: string
  const sessions: PieceSession[] = []

  before(async () => {
    pair = await startServedPair({ maxInflightPerStream: 4 }, source)
    ;({ server, client, pieces } = pair)
    addr = server.multiaddrs()[0] as string
  })

  after(async () => {
    for (const s of sessions) await s.close()
    await pair.stop()
  })

  async function open (digest: string): Promise<PieceSession> {
    const s = await openPieceSession(client, addr, digest, { signal: AbortSignal.timeout(5000) })
    sessions.push(s)
    return s
  }

  test('fetches every piece, pipelined past the window, each verified', async () => {
    const blob = makeBlob(5 * MiB + 123, 'all')
    const task = source.add(blob, PIECE)
    const s = await open(task.digest)
    assert.equal(s.peer, server.peerId)
    assert.equal(s.meta.size, blob.byteLength)
    assert.equal(s.meta.pieceSize, PIECE)
    assert.equal(s.meta.pieceCount, task.count)
    assert.equal(s.meta.maxRequests, 4)
    assert.equal(s.meta.bitfield.count, task.count)
    assert.deepEqual(s.meta.pieceDigests, task.digests)
    // 21 requests at once on a window of 4: the rest queue locally.
    const got = await Promise.all(Array.from({ length: task.count }, async (_, i) => await s.request(i)))
    for (let i = 0; i < task.count; i++) {
      const r = pieceRange(blob.byteLength, PIECE, i)
      assert.equal(sha256(got[i] as Uint8Array), sha256(blob.subarray(r.start, r.end)), `piece ${i}`)
    }
    assert.equal((got[task.count - 1] as Uint8Array).byteLength, (5 * MiB + 123) % PIECE)
  })

  test('pushes HAVE as the server gains pieces, without polling', async () => {
    const blob = makeBlob(8 * PIECE, 'have')
    const task = source.add(blob, PIECE, { held: 'none' })
    const s = await open(task.digest)
    assert.equal(s.meta.bitfield.count, 0)
    assert.ok(s.meta.pieceDigests.every(d => d === undefined))
    await assert.rejects(s.request(0), (err: JoeyError) => err.code === 'ERR_FAILED_PRECONDITION')
    const announced: number[] = []
    const all = new Promise<void>(resolve => {
      s.onHave((index, digest) => {
        assert.equal(digest, task.digests[index])
        announced.push(index)
        if (announced.length === 8) resolve()
      })
    })
    const order = [3, 0, 7, 1, 2, 6, 5, 4]
    for (const i of order) {
      source.gain(task.digest, i)
      await new Promise(resolve => setTimeout(resolve, 5))
    }
    await all
    assert.deepEqual(announced, order)
    assert.ok(s.has(7))
    const data = await s.request(7)
    assert.equal(sha256(data), task.digests[7])
  })

  test('a piece announced by digest but not held yet answers ERR_NOT_FOUND and the session goes on', async () => {
    const blob = makeBlob(4 * PIECE, 'seedlike')
    const task = source.add(blob, PIECE, { held: 'none', publishAll: true })
    source.gain(task.digest, 0)
    const s = await open(task.digest)
    assert.equal(s.meta.bitfield.count, 1)
    assert.equal(s.meta.pieceDigests[3], task.digests[3])
    await assert.rejects(s.request(3), (err: JoeyError) => err.code === 'ERR_NOT_FOUND' && err.detail?.index === 3)
    assert.equal(sha256(await s.request(0)), task.digests[0])
    await assert.rejects(s.request(4), (err: JoeyError) => err.code === 'ERR_INVALID_ARGUMENT')
  })

  test('unknown task: open fails with ERR_NOT_FOUND; a bad digest with ERR_INVALID_DIGEST', async () => {
    await assert.rejects(openPieceSession(client, addr, sha256(new Uint8Array([1]))), (err: JoeyError) => err.code === 'ERR_NOT_FOUND' && err.detail?.peer === server.peerId)
    await assert.rejects(openPieceSession(client, addr, 'sha256:nope'), (err: JoeyError) => err.code === 'ERR_INVALID_DIGEST')
    const task = source.add(makeBlob(PIECE, 'aborted'), PIECE)
    await assert.rejects(openPieceSession(client, addr, task.digest, { signal: AbortSignal.abort() }), (err: JoeyError) => err.code === 'ERR_ABORTED')
    await assert.rejects(openPieceSession(client, '/ip4/127.0.0.1/tcp/1', task.digest), (err: JoeyError) => err.code === 'ERR_UNAVAILABLE')
  })

  test('a corrupt piece is ERR_DIGEST_MISMATCH naming the peer and index; good pieces still flow', async () => {
    const blob = makeBlob(4 * PIECE, 'corrupt')
    const task = source.add(blob, PIECE)
    source.corrupt.add(2)
    try {
      const s = await open(task.digest)
      await assert.rejects(s.request(2), (err: JoeyError) => {
        assert.equal(err.code, 'ERR_DIGEST_MISMATCH')
        assert.equal(err.detail?.peer, server.peerId)
        assert.equal(err.detail?.index, 2)
        return true
      })
      assert.equal(sha256(await s.request(1)), task.digests[1])
    } finally {
      source.corrupt.clear()
    }
  })

  test('a read failure on the server fails that request only', async () => {
    const blob = makeBlob(3 * PIECE, 'failing')
    const task = source.add(blob, PIECE)
    source.failing.add(1)
    try {
      const s = await open(task.digest)
      const [a, b, c] = await Promise.allSettled([s.request(0), s.request(1), s.request(2)])
      assert.equal(a.status, 'fulfilled')
      assert.equal(b.status, 'rejected')
      assert.equal(((b as PromiseRejectedResult).reason as JoeyError).code, 'ERR_UNAVAILABLE')
      assert.equal(c.status, 'fulfilled')
    } finally {
      source.failing.clear()
    }
  })

  test('an aborted request sends CANCEL and frees its slot', async () => {
    const blob = makeBlob(12 * PIECE, 'cancel')
    const task = source.add(blob, PIECE)
    source.readDelayMs = 30
    try {
      const s = await open(task.digest)
      const controllers = Array.from({ length: 6 }, () => new AbortController())
      const first = controllers.map(async (c, i) => await s.request(i, { signal: c.signal }))
      for (const c of controllers.slice(1)) c.abort()
      const results = await Promise.allSettled(first)
      assert.equal(results[0]?.status, 'fulfilled')
      for (const r of results.slice(1)) assert.equal(((r as PromiseRejectedResult).reason as JoeyError).code, 'ERR_ABORTED')
      // The same indexes can be asked again, and the window is whole.
      const again = await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map(async i => await s.request(i)))
      again.forEach((d, k) => assert.equal(sha256(d), task.digests[k + 1]))
      await assert.rejects(s.request(0, { signal: AbortSignal.abort() }), (err: JoeyError) => err.code === 'ERR_ABORTED')
    } finally {
      source.readDelayMs = 0
    }
  })

  test('close fails outstanding requests and later ones; the server lets go of the stream', async () => {
    const blob = makeBlob(4 * PIECE, 'close')
    const task = source.add(blob, PIECE)
    source.readDelayMs = 50
    const streamsBefore = pieces.activeStreams
    try {
      const s = await openPieceSession(client, addr, task.digest)
      assert.equal(pieces.activeStreams, streamsBefore + 1)
      let closedWith: Error | undefined | null = null
      s.onClose((err) => { closedWith = err })
      const p = s.request(0)
      await s.close()
      await assert.rejects(p, (err: JoeyError) => err.code === 'ERR_ABORTED')
      await assert.rejects(s.request(1), (err: JoeyError) => isJoeyError(err))
      assert.equal(closedWith, undefined)
      assert.equal(s.closed, true)
    } finally {
      source.readDelayMs = 0
    }
    for (let i = 0; i < 50 && pieces.activeStreams > streamsBefore; i++) await new Promise(resolve => setTimeout(resolve, 20))
    assert.equal(pieces.activeStreams, streamsBefore)
  })

  test('the server stopping ends sessions with ERR_UNAVAILABLE', async () => {
    const other = await startHost()
    const src = new MemorySource()
    const task = src.add(makeBlob(2 * PIECE, 'stop'), PIECE)
    const srv = createPieceServer({}, { logger: silentLogger(), host: other, source: src })
    await srv.start()
    try {
      const s = await openPieceSession(client, other.multiaddrs()[0] as string, task.digest)
      const ended = new Promise<Error | undefined>(resolve => s.onClose(resolve))
      await srv.stop()
      const err = await ended
      assert.ok(isJoeyError(err, 'ERR_UNAVAILABLE'), String(err))
      await assert.rejects(s.request(0), (e: JoeyError) => e.code === 'ERR_UNAVAILABLE')
    } finally {
      await srv.stop()
      await other.stop()
    }
  })

  test('a busy server refuses streams over maxStreams with ERR_UNAVAILABLE', async () => {
    const other = await startHost()
    const src = new MemorySource()
    const task = src.add(makeBlob(PIECE, 'busy'), PIECE)
    const srv = createPieceServer({ maxStreams: 1 }, { logger: silentLogger(), host: other, source: src })
    await srv.start()
    try {
      const a = await openPieceSession(client, other.multiaddrs()[0] as string, task.digest)
      await assert.rejects(openPieceSession(client, other.multiaddrs()[0] as string, task.digest), (err: JoeyError) => err.code === 'ERR_UNAVAILABLE')
      assert.equal(sha256(await a.request(0)), task.digests[0])
      await a.close()
    } finally {
      await srv.stop()
      await other.stop()
    }
  })

  test('a piece over the client\'s maxFrameBytes is refused at META', async () => {
    const task = source.add(makeBlob(2 * PIECE, 'limit'), PIECE)
    await assert.rejects(openPieceSession(client, addr, task.digest, { maxFrameBytes: PIECE - 1 }), (err: JoeyError) => err.code === 'ERR_LIMIT_EXCEEDED')
  })

  test('the protocol id is versioned', () => {
    assert.equal(PIECE_PROTOCOL, '/joey/piece/1.0.0')
  })
})
