// Upload and download limits pace a piece chunk by chunk, so a piece passes both limits of
// one hop in about one piece-time (a relay chain pays one piece-time per hop, not two).
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createRateLimiter } from '../../src/common/index.js'
import { openPieceSession, type P2PHost } from '../../src/p2p/index.js'
import { MemorySource, MiB, makeBlob, sha256, startServedPair, type ServedPair } from './helpers.js'

const RATE = MiB // bytes per second, on both ends
const PIECE = MiB // one piece-time is one second
const BURST = 64 * 1024

describe('rate-limited piece transfer', () => {
  let pair: ServedPair
  let server: P2PHost
  let client: P2PHost
  const source = new MemorySource()
  const blob = makeBlob(2 * PIECE, 'rate-limit')
  const task = source.add(blob, PIECE)

  before(async () => {
    pair = await startServedPair({ uploadLimiter: createRateLimiter(RATE, { burstBytes: BURST }) }, source)
    ;({ server, client } = pair)
  })

  after(async () => {
    await pair.stop()
  })

  async function timedPiece (index: number, downloadLimiter?: ReturnType<typeof createRateLimiter>): Promise<number> {
    const session = await openPieceSession(client, server.multiaddrs()[0] as string, task.digest, {
      signal: AbortSignal.timeout(10_000),
      ...(downloadLimiter !== undefined ? { downloadLimiter } : {})
    })
    try {
      const t = performance.now()
      const data = await session.request(index, { signal: AbortSignal.timeout(20_000) })
      const ms = performance.now() - t
      assert.equal(sha256(data), task.digests[index])
      return ms
    } finally {
      await session.close()
    }
  }

  test('a piece through a limited server and a limited receiver takes about one piece-time', async () => {
    const ms = await timedPiece(0, createRateLimiter(RATE, { burstBytes: BURST }))
    // Whole-piece limits on both ends would take two piece-times (~2000 ms).
    assert.ok(ms > 700, `took ${ms.toFixed(0)} ms: the limits did not hold`)
    assert.ok(ms < 1600, `took ${ms.toFixed(0)} ms: the two limits were paid one after the other`)
  })

  test('under the upload limit pieces go out one at a time, not interleaved across streams', async () => {
    // Interleaved chunks would finish both pieces together after two piece-times; a peer
    // can pass a piece on only once it has all of it, so the first should land after one.
    const [a, b] = await Promise.all([timedPiece(0), timedPiece(1)])
    const first = Math.min(a, b)
    const last = Math.max(a, b)
    assert.ok(first < 1600, `first piece took ${first.toFixed(0)} ms`)
    assert.ok(last > 1500, `second piece took ${last.toFixed(0)} ms: the upload limit did not hold`)
  })

  test('a limited receiver paces what it reads (the piece is handed out after its last byte is admitted)', async () => {
    // A receive limit at half the server's rate sets the pace: about two seconds.
    const ms = await timedPiece(1, createRateLimiter(RATE / 2, { burstBytes: BURST }))
    assert.ok(ms > 1500, `took ${ms.toFixed(0)} ms: the download limit did not hold`)
    assert.ok(ms < 3200, `took ${ms.toFixed(0)} ms`)
  })
})
