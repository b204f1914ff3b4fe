import { test } from 'node:test'
import assert from 'node:assert/strict'
import { openPieceSession, type PieceServerInit, type PieceSession } from '../../src/p2p/index.js'
import { isJoeyError } from '../../src/common/index.js'
import { MemorySource, makeBlob, sha256, startServedPair, type MemoryTask } from './helpers.js'

const PIECE = 64 * 1024

interface Peers { a: PieceSession, b: PieceSession, task: MemoryTask }

/** A server over a 3-piece blob and two peers' sessions to it, all stopped after `fn`. */
async function withTwoPeers (init: PieceServerInit, name: string, fn: (p: Peers) => Promise<void>): Promise<void> {
  const source = new MemorySource()
  const task = source.add(makeBlob(3 * PIECE, name), PIECE)
  const pair = await startServedPair(init, source)
  const sessions: PieceSession[] = []
  try {
    for (let k = 0; k < 2; k++) sessions.push(await openPieceSession(pair.client, pair.server.multiaddrs()[0] as string, task.digest, { signal: AbortSignal.timeout(10_000) }))
    await fn({ a: sessions[0] as PieceSession, b: sessions[1] as PieceSession, task })
  } finally {
    for (const s of sessions) await s.close().catch(() => {})
    await pair.stop()
  }
}

/** The piece's digest as received, or the error code it was refused with. */
async function ask (session: PieceSession, index: number): Promise<string> {
  try {
    return sha256(await session.request(index, { signal: AbortSignal.timeout(10_000) }))
  } catch (err) {
    return isJoeyError(err) ? err.code : String(err)
  }
}

const pause = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

test('first copies: a piece another peer got is deferred while unsent pieces remain; unsent ones are served', async () => {
  await withTwoPeers({ firstCopyHoldMs: 60_000 }, 'first-copies', async ({ a, b, task }) => {
    assert.equal(await ask(a, 0), task.digests[0])
    assert.equal(await ask(b, 0), 'ERR_PIECE_DEFERRED')
    // The deferral is per piece: the session stays usable and gets a fresh piece.
    assert.equal(await ask(b, 1), task.digests[1])
    // The peer that got a piece may ask again (a lost copy), and is served.
    assert.equal(await ask(a, 0), task.digests[0])
  })
})

test('first copies: second copies wait while any piece has gone to nobody, whatever the hold; then they are served', async () => {
  await withTwoPeers({ firstCopyHoldMs: 1 }, 'first-copies-short', async ({ a, b, task }) => {
    assert.equal(await ask(a, 0), task.digests[0])
    await pause(20)
    assert.equal(await ask(b, 0), 'ERR_PIECE_DEFERRED')
    assert.equal(await ask(b, 1), task.digests[1])
    assert.equal(await ask(a, 2), task.digests[2])
    await pause(20)
    for (const i of [0, 2]) assert.equal(await ask(b, i), task.digests[i])
  })
})

test('without first copies two peers get the same piece', async () => {
  await withTwoPeers({}, 'no-first-copies', async ({ a, b, task }) => {
    assert.equal(await ask(a, 0), task.digests[0])
    assert.equal(await ask(b, 0), task.digests[0])
  })
})
