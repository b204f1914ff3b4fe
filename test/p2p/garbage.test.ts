// Hostile and broken peers on both sides of /joey/piece/1.0.0: every violation ends in an
// ERROR frame with a stable code or a reset, never a crash, and the other side keeps serving.
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import { silentLogger, type JoeyError } from '../../src/common/index.js'
import {
  Bitfield, FrameDecoder, FrameType, createPieceServer, encodeMessage, openPieceSession, PIECE_PROTOCOL,
  type Message, type P2PHost, type PieceServer, type Stream
} from '../../src/p2p/index.js'
import { MemorySource, makeBlob, sha256, startHost } from './helpers.js'

const PIECE = 64 * 1024

interface Outcome { messages: Message[], ended: 'closed' | 'reset' | 'open', decodeError?: string }

/** Writes raw bytes on a fresh stream and collects what comes back until the stream ends. */
async function exchange (host: P2PHost, addr: string, chunks: Array<Uint8Array | Uint8ArrayList>, waitMs = 3000): Promise<Outcome> {
  const stream = await host.dialProtocol(addr, PIECE_PROTOCOL, { signal: AbortSignal.timeout(3000) })
  return await collect(stream, chunks, waitMs)
}

async function collect (stream: Stream, chunks: Array<Uint8Array | Uint8ArrayList>, waitMs: number): Promise<Outcome> {
  const decoder = new FrameDecoder({ maxHeaderBytes: 1024 * 1024, maxPayloadBytes: { META: 1024 * 1024, PIECE: 16 * 1024 * 1024 } })
  const out: Outcome = { messages: [], ended: 'open' }
  const done = new Promise<void>(resolve => {
    stream.addEventListener('message', (evt) => {
      try { out.messages.push(...decoder.push(evt.data)) } catch (err) { out.decodeError = (err as Error).message }
    })
    stream.addEventListener('close', (evt) => { out.ended = evt.error !== undefined ? 'reset' : 'closed'; resolve() })
    stream.addEventListener('remoteCloseWrite', () => { stream.close().catch(() => {}) })
    setTimeout(resolve, waitMs).unref()
  })
  for (const c of chunks) stream.send(c)
  await done
  if (stream.status === 'open') stream.abort(new Error('test done'))
  return out
}

function rawFrame (type: number, header: string | Uint8Array, payload = new Uint8Array(0), lengthOverride?: number): Uint8Array {
  const h = typeof header === 'string' ? new TextEncoder().encode(header) : header
  const out = new Uint8Array(9 + h.byteLength + payload.byteLength)
  const v = new DataView(out.buffer)
  v.setUint32(0, lengthOverride ?? 5 + h.byteLength + payload.byteLength)
  out[4] = type
  v.setUint32(5, h.byteLength)
  out.set(h, 9)
  out.set(payload, 9 + h.byteLength)
  return out
}

function errorOf (o: Outcome): Extract<Message, { type: 'ERROR' }> | undefined {
  return o.messages.find((m): m is Extract<Message, { type: 'ERROR' }> => m.type === 'ERROR')
}

describe('a server facing garbage', () => {
  let server: P2PHost
  let client: P2PHost
  let pieces: PieceServer
  let addr: string
  const source = new MemorySource()
  const task = source.add(makeBlob(4 * PIECE, 'garbage'), PIECE)
  const hello = encodeMessage({ type: 'HELLO', taskDigest: task.digest })

  before(async () => {
    server = await startHost()
    client = await startHost()
    pieces = createPieceServer({ maxInflightPerStream: 2, helloTimeoutMs: 300, idleTimeoutMs: 400 }, { logger: silentLogger(), host: server, source })
    await pieces.start()
    addr = server.multiaddrs()[0] as string
  })

  after(async () => {
    await pieces.stop()
    await client.stop()
    await server.stop()
  })

  async function stillServes (): Promise<void> {
    const s = await openPieceSession(client, addr, task.digest, { signal: AbortSignal.timeout(3000) })
    assert.equal(sha256(await s.request(3)), task.digests[3])
    await s.close()
  }

  const cases: Array<{ name: string, chunks: () => Array<Uint8Array | Uint8ArrayList>, codes: string[] }> = [
    { name: 'random bytes', chunks: () => [randomBytes(4096)], codes: ['ERR_PROTOCOL', 'ERR_LIMIT_EXCEEDED'] },
    { name: 'an oversize length prefix', chunks: () => [rawFrame(FrameType.REQUEST, '{"index":0}', new Uint8Array(0), 0xffffffff)], codes: ['ERR_LIMIT_EXCEEDED'] },
    { name: 'an oversize header', chunks: () => [rawFrame(FrameType.HELLO, 'x'.repeat(100_000))], codes: ['ERR_LIMIT_EXCEEDED'] },
    { name: 'a payload on a client frame', chunks: () => [rawFrame(FrameType.REQUEST, '{"index":0}', new Uint8Array(10))], codes: ['ERR_PROTOCOL'] },
    { name: 'an unknown frame type', chunks: () => [rawFrame(0x42, '{}')], codes: ['ERR_PROTOCOL'] },
    { name: 'bad JSON', chunks: () => [rawFrame(FrameType.HELLO, '{"taskDigest": ')], codes: ['ERR_PROTOCOL'] },
    { name: 'a header that is not an object', chunks: () => [rawFrame(FrameType.HELLO, '[1,2]')], codes: ['ERR_PROTOCOL'] },
    { name: 'invalid UTF-8', chunks: () => [rawFrame(FrameType.HELLO, new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]))], codes: ['ERR_PROTOCOL'] },
    { name: 'REQUEST before HELLO', chunks: () => [encodeMessage({ type: 'REQUEST', index: 0 })], codes: ['ERR_PROTOCOL'] },
    { name: 'an unknown task digest', chunks: () => [encodeMessage({ type: 'HELLO', taskDigest: sha256(randomBytes(8)) })], codes: ['ERR_NOT_FOUND'] },
    { name: 'a malformed task digest', chunks: () => [encodeMessage({ type: 'HELLO', taskDigest: 'md5:abc' })], codes: ['ERR_INVALID_DIGEST'] },
    { name: 'an out-of-range index', chunks: () => [hello, encodeMessage({ type: 'REQUEST', index: 4 })], codes: ['ERR_PROTOCOL'] },
    { name: 'a negative index', chunks: () => [hello, rawFrame(FrameType.REQUEST, '{"index":-1}')], codes: ['ERR_PROTOCOL'] },
    { name: 'a fractional index', chunks: () => [hello, rawFrame(FrameType.REQUEST, '{"index":1.5}')], codes: ['ERR_PROTOCOL'] },
    { name: 'HELLO twice', chunks: () => [hello, hello], codes: ['ERR_PROTOCOL'] },
    { name: 'a duplicate REQUEST', chunks: () => [new Uint8ArrayList(hello, encodeMessage({ type: 'REQUEST', index: 0 }), encodeMessage({ type: 'REQUEST', index: 0 }))], codes: ['ERR_PROTOCOL'] },
    { name: 'more requests than the window', chunks: () => [new Uint8ArrayList(hello, ...[0, 1, 2].map(index => encodeMessage({ type: 'REQUEST', index })))], codes: ['ERR_LIMIT_EXCEEDED'] },
    { name: 'a PIECE from the client', chunks: () => [hello, rawFrame(FrameType.PIECE, '{"index":0}')], codes: ['ERR_PROTOCOL'] },
    { name: 'a frame split at every byte', chunks: () => [...rawFrame(0x42, '{}')].map(b => new Uint8Array([b])), codes: ['ERR_PROTOCOL'] }
  ]

  for (const c of cases) {
    test(`${c.name} → ERROR ${c.codes.join('|')} and the stream ends; others are still served`, async () => {
      const o = await exchange(client, addr, c.chunks())
      const err = errorOf(o)
      assert.ok(err !== undefined || o.ended === 'reset', `no ERROR and no reset: ${JSON.stringify(o)}`)
      if (err !== undefined) assert.ok(c.codes.includes(err.code), `got ${err.code}: ${err.message}`)
      assert.notEqual(o.ended, 'open', 'the server left the stream open')
      await stillServes()
    })
  }

  test('no HELLO within the timeout → ERROR and close', async () => {
    const o = await exchange(client, addr, [])
    assert.equal(errorOf(o)?.code, 'ERR_PROTOCOL')
    assert.match(errorOf(o)?.message ?? '', /HELLO/)
    assert.notEqual(o.ended, 'open')
  })

  test('an idle stream is closed with ERR_UNAVAILABLE after META', async () => {
    const o = await exchange(client, addr, [hello])
    assert.equal(o.messages[0]?.type, 'META')
    assert.equal(errorOf(o)?.code, 'ERR_UNAVAILABLE')
    assert.notEqual(o.ended, 'open')
  })

  test('a client that stops reading is cut off after the idle timeout', async () => {
    const big = source.add(makeBlob(4 * 1024 * 1024, 'slow reader'), 1024 * 1024)
    const stream = await client.dialProtocol(addr, PIECE_PROTOCOL)
    const ended = new Promise<void>(resolve => { stream.addEventListener('close', () => { resolve() }) })
    stream.send(new Uint8ArrayList(encodeMessage({ type: 'HELLO', taskDigest: big.digest }), encodeMessage({ type: 'REQUEST', index: 0 }), encodeMessage({ type: 'REQUEST', index: 1 })))
    // Stop granting yamux window: the server's sends stall after ~256 KiB.
    stream.pause()
    const started = Date.now()
    await ended
    const took = Date.now() - started
    assert.ok(took >= 300 && took < 5000, `took ${took} ms`)
  })

  test('every stream was released', async () => {
    for (let i = 0; i < 100 && pieces.activeStreams > 0; i++) await new Promise(resolve => setTimeout(resolve, 20))
    assert.equal(pieces.activeStreams, 0)
  })
})

describe('a client facing a broken server', () => {
  let server: P2PHost
  let client: P2PHost
  const blob = makeBlob(2 * PIECE, 'evil')
  const digests = [sha256(blob.subarray(0, PIECE)), sha256(blob.subarray(PIECE))]
  const taskDigest = sha256(blob)
  let behaviour: (stream: Stream, send: (m: Message | Uint8Array) => void) => void = () => {}

  function meta (pieceSize = PIECE, size = blob.byteLength): Message {
    const count = Math.ceil(size / pieceSize)
    const bits = new Bitfield(count)
    for (let i = 0; i < count; i++) bits.set(i)
    return { type: 'META', size, pieceSize, pieceDigests: count === 2 ? digests : Array.from({ length: count }, () => digests[0]), bitfield: bits, maxRequests: 4 }
  }

  before(async () => {
    server = await startHost()
    client = await startHost()
    await server.handle(PIECE_PROTOCOL, (stream) => {
      const send = (m: Message | Uint8Array): void => { stream.send(m instanceof Uint8Array ? m : encodeMessage(m)) }
      const decoder = new FrameDecoder({ maxHeaderBytes: 4096, maxPayloadBytes: {} })
      stream.addEventListener('message', (evt) => {
        for (const m of decoder.push(evt.data)) {
          if (m.type === 'HELLO') behaviour(stream, send)
          if (m.type === 'REQUEST') onRequest(m.index, send)
        }
      })
    })
  })

  let onRequest: (index: number, send: (m: Message | Uint8Array) => void) => void = () => {}

  after(async () => {
    await client.stop()
    await server.stop()
  })

  async function open (): Promise<ReturnType<typeof openPieceSession>> {
    return await openPieceSession(client, server.multiaddrs()[0] as string, taskDigest, { signal: AbortSignal.timeout(3000), helloTimeoutMs: 1000 })
  }

  test('a piece larger than META\'s piece size → ERR_LIMIT_EXCEEDED, session ends', async () => {
    behaviour = (_s, send) => { send(meta()) }
    onRequest = (index, send) => { send({ type: 'PIECE', index, payload: new Uint8Array(PIECE + 1) }) }
    const s = await open()
    await assert.rejects(s.request(0), (err: JoeyError) => err.code === 'ERR_LIMIT_EXCEEDED')
    assert.equal(s.closed, true)
  })

  test('a short piece → ERR_DIGEST_MISMATCH', async () => {
    behaviour = (_s, send) => { send(meta()) }
    onRequest = (index, send) => { send({ type: 'PIECE', index, payload: blob.subarray(0, 10) }) }
    const s = await open()
    await assert.rejects(s.request(1), (err: JoeyError) => err.code === 'ERR_DIGEST_MISMATCH' && err.detail?.index === 1)
    await s.close()
  })

  test('an unsolicited PIECE → ERR_PROTOCOL', async () => {
    behaviour = (_s, send) => { send(meta()) }
    onRequest = (_index, send) => { send({ type: 'PIECE', index: 1, payload: blob.subarray(PIECE) }) }
    const s = await open()
    await assert.rejects(s.request(0), (err: JoeyError) => err.code === 'ERR_PROTOCOL')
  })

  test('HAVE out of range or changing a digest → ERR_PROTOCOL', async () => {
    for (const have of [{ index: 2, digest: digests[0] as string }, { index: 0, digest: digests[1] as string }]) {
      behaviour = (_s, send) => { send(meta()); setTimeout(() => { send({ type: 'HAVE', ...have }) }, 20) }
      onRequest = () => {}
      const s = await open()
      const ended = await new Promise<Error | undefined>(resolve => s.onClose(resolve))
      assert.equal((ended as JoeyError).code, 'ERR_PROTOCOL')
    }
  })

  test('a META with a bad bitfield, a huge piece count or bad digests fails the open with ERR_PROTOCOL', async () => {
    const frames: Uint8Array[] = [
      rawFrame(FrameType.META, JSON.stringify({ size: blob.byteLength, pieceSize: PIECE, pieceDigests: digests, maxRequests: 4 }), new Uint8Array([0xff])),
      rawFrame(FrameType.META, JSON.stringify({ size: blob.byteLength, pieceSize: PIECE, pieceDigests: digests, maxRequests: 4 }), new Uint8Array(2)),
      rawFrame(FrameType.META, JSON.stringify({ size: 2 ** 50, pieceSize: 1, pieceDigests: digests, maxRequests: 4 }), new Uint8Array(1)),
      rawFrame(FrameType.META, JSON.stringify({ size: blob.byteLength, pieceSize: PIECE, pieceDigests: ['sha256:x', null], maxRequests: 4 }), new Uint8Array(1)),
      rawFrame(FrameType.META, JSON.stringify({ size: blob.byteLength, pieceSize: PIECE, pieceDigests: [null, null], maxRequests: 4 }), new Uint8Array([0x80])),
      rawFrame(FrameType.META, JSON.stringify({ size: blob.byteLength, pieceSize: PIECE, pieceDigests: digests, maxRequests: 0 }), new Uint8Array(1))
    ]
    for (const f of frames) {
      behaviour = (_s, send) => { send(f) }
      await assert.rejects(open(), (err: JoeyError) => err.code === 'ERR_PROTOCOL', new TextDecoder().decode(f.subarray(9, 120)))
    }
  })

  test('a server that never answers HELLO → ERR_UNAVAILABLE after the hello timeout', async () => {
    behaviour = () => {}
    const started = Date.now()
    await assert.rejects(open(), (err: JoeyError) => err.code === 'ERR_UNAVAILABLE')
    assert.ok(Date.now() - started < 2500)
  })

  test('an ERROR for one index fails that request only; a fatal ERROR ends the session', async () => {
    behaviour = (_s, send) => { send(meta()) }
    onRequest = (index, send) => {
      if (index === 0) send({ type: 'ERROR', code: 'ERR_NOT_FOUND', message: 'gone', index })
      else send({ type: 'ERROR', code: 'ERR_SOMETHING_NEW', message: 'from the future' })
    }
    const s = await open()
    await assert.rejects(s.request(0), (err: JoeyError) => err.code === 'ERR_NOT_FOUND')
    await assert.rejects(s.request(1), (err: JoeyError) => err.code === 'ERR_PROTOCOL' && err.detail?.remoteCode === 'ERR_SOMETHING_NEW')
    assert.equal(s.closed, true)
  })
})
