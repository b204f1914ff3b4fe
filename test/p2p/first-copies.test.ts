import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { openPieceSession, type PieceSession } from '../../src/p2p/index.js'
import { isJoeyError } from '../../src/common/index.js'
import { MemorySource, makeBlob, sha256, startServedPair, type ServedPair } from './helpers.js'

const PIECE = 64 * 1024

async function deferredCode (p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p
    return undefined
  } catch (err) {
    return isJoeyError(err) ? err.code : String(err)
  }
}

describe('first copies (a seed sends each piece once while others wait)', () => {
  let pair: ServedPair
  const source = new MemorySource()
  const task = source.add(makeBlob(3 * PIECE, 'first-copies'), PIECE)
  const sessions: PieceSession[] = []

  before(async () => {
    pair = await startServedPair({ firstCopyHoldMs: 60_000 }, source)
  })

  after(async () => {
    for (const s of sessions) await s.close().catch(() => {})
    await pair.stop()
  })

  async function open (): Promise<PieceSession> {
    const s = await openPieceSession(pair.client, pair.server.multiaddrs()[0] as string, task.digest, { signal: AbortSignal.timeout(10_000) })
    sessions.push(s)
    return s
  }

  test('a piece another peer got is deferred while unsent pieces remain; unsent ones are served', async () => {
    const a = await open()
    const b = await open()
    assert.equal(sha256(await a.request(0, { signal: AbortSignal.timeout(10_000) })), task.digests[0])
    assert.equal(await deferredCode(b.request(0, { signal: AbortSignal.timeout(10_000) })), 'ERR_PIECE_DEFERRED')
    // The deferral is per piece: the session stays usable and gets a fresh piece.
    assert.equal(sha256(await b.request(1, { signal: AbortSignal.timeout(10_000) })), task.digests[1])
    // The peer that got a piece may ask again (a lost copy), and is served.
    assert.equal(sha256(await a.request(0, { signal: AbortSignal.timeout(10_000) })), task.digests[0])
  })

})

describe('first copies with a short hold', () => {
  let pair: ServedPair
  const source = new MemorySource()
  const task = source.add(makeBlob(3 * PIECE, 'first-copies-short'), PIECE)

  before(async () => { pair = await startServedPair({ firstCopyHoldMs: 1 }, source) })
  after(async () => { await pair.stop() })

  test('second copies wait while any piece has gone to nobody, whatever the hold; then they are served', async () => {
    const open = async (): Promise<PieceSession> => await openPieceSession(pair.client, pair.server.multiaddrs()[0] as string, task.digest, { signal: AbortSignal.timeout(10_000) })
    const a = await open()
    const b = await open()
    try {
      assert.equal(sha256(await a.request(0, { signal: AbortSignal.timeout(10_000) })), task.digests[0])
      await new Promise(resolve => setTimeout(resolve, 20))
      assert.equal(await deferredCode(b.request(0, { signal: AbortSignal.timeout(10_000) })), 'ERR_PIECE_DEFERRED')
      assert.equal(sha256(await b.request(1, { signal: AbortSignal.timeout(10_000) })), task.digests[1])
      assert.equal(sha256(await a.request(2, { signal: AbortSignal.timeout(10_000) })), task.digests[2])
      await new Promise(resolve => setTimeout(resolve, 20))
      for (const i of [0, 2]) assert.equal(sha256(await b.request(i, { signal: AbortSignal.timeout(10_000) })), task.digests[i])
    } finally {
      await a.close()
      await b.close()
    }
  })
})

describe('without first copies every request is served', () => {
  let pair: ServedPair
  const source = new MemorySource()
  const task = source.add(makeBlob(3 * PIECE, 'no-first-copies'), PIECE)

  before(async () => { pair = await startServedPair({}, source) })
  after(async () => { await pair.stop() })

  test('two peers get the same piece', async () => {
    const open = async (): Promise<PieceSession> => await openPieceSession(pair.client, pair.server.multiaddrs()[0] as string, task.digest, { signal: AbortSignal.timeout(10_000) })
    const a = await open()
    const b = await open()
    try {
      assert.equal(sha256(await a.request(0, { signal: AbortSignal.timeout(10_000) })), task.digests[0])
      assert.equal(sha256(await b.request(0, { signal: AbortSignal.timeout(10_000) })), task.digests[0])
    } finally {
      await a.close()
      await b.close()
    }
  })
})
