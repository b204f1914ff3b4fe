import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Uint8ArrayList } from 'uint8arraylist'
import { createRateLimiter, type JoeyError } from '../../src/common/index.js'
import {
  Bitfield, FrameDecoder, encodeMessage, encodePieceHead, encodeSwarmKey, generateSwarmKey, parseSwarmKey,
  pieceCount, pieceLength, pieceRange, pieceSizeFor, peerIdOf, type Message
} from '../../src/p2p/index.js'
import { sha256 } from './helpers.js'

const MiB = 1024 * 1024
const code = (c: string) => (err: JoeyError) => err.code === c

describe('piece layout', () => {
  test('1 MiB pieces, halved (to 256 KiB) for fewer than 64, doubled until a blob has at most 1000', () => {
    assert.equal(pieceSizeFor(0), MiB / 4)
    assert.equal(pieceSizeFor(1), MiB / 4)
    assert.equal(pieceSizeFor(16 * MiB), MiB / 4)
    assert.equal(pieceSizeFor(32 * MiB - 1), MiB / 4)
    assert.equal(pieceSizeFor(32 * MiB), MiB / 2)
    assert.equal(pieceSizeFor(64 * MiB), MiB)
    assert.equal(pieceSizeFor(1000 * MiB), MiB)
    assert.equal(pieceSizeFor(1000 * MiB + 1), 2 * MiB)
    assert.equal(pieceSizeFor(4000 * MiB + 1), 8 * MiB)
    for (const size of [1, 10 * MiB, 4001 * MiB, 100 * 1024 * MiB, 2 ** 45]) {
      const p = pieceSizeFor(size)
      assert.ok(pieceCount(size, p) <= 1000)
      assert.ok(p <= MiB || pieceCount(size, p / 2) > 1000, `${size}: ${p} is larger than needed`)
      assert.ok(p >= MiB || pieceCount(size, p * 2) < 64, `${size}: ${p} is smaller than needed`)
    }
  })

  test('counts and ranges cover the blob exactly once', () => {
    assert.equal(pieceCount(0, 4), 1)
    assert.deepEqual(pieceRange(0, 4, 0), { start: 0, end: 0 })
    assert.equal(pieceCount(8, 4), 2)
    assert.equal(pieceCount(9, 4), 3)
    assert.deepEqual(pieceRange(9, 4, 2), { start: 8, end: 9 })
    assert.equal(pieceLength(9, 4, 1), 4)
    let covered = 0
    for (let i = 0; i < pieceCount(10 * MiB + 7, MiB); i++) {
      const r = pieceRange(10 * MiB + 7, MiB, i)
      assert.equal(r.start, covered)
      covered = r.end
    }
    assert.equal(covered, 10 * MiB + 7)
  })

  test('bad sizes and indexes are ERR_INVALID_ARGUMENT', () => {
    assert.throws(() => pieceCount(-1, 4), code('ERR_INVALID_ARGUMENT'))
    assert.throws(() => pieceCount(10, 0), code('ERR_INVALID_ARGUMENT'))
    assert.throws(() => pieceCount(1.5, 4), code('ERR_INVALID_ARGUMENT'))
    assert.throws(() => pieceRange(9, 4, 3), code('ERR_INVALID_ARGUMENT'))
    assert.throws(() => pieceRange(9, 4, -1), code('ERR_INVALID_ARGUMENT'))
    assert.throws(() => pieceRange(9, 4, 0.5), code('ERR_INVALID_ARGUMENT'))
  })
})

describe('Bitfield', () => {
  test('sets, clears, counts and reports completeness', () => {
    const b = new Bitfield(10)
    assert.equal(b.count, 0)
    assert.equal(b.set(3), true)
    assert.equal(b.set(3), false)
    b.set(9)
    b.set(0)
    assert.equal(b.count, 3)
    assert.deepEqual(b.toArray(), [0, 3, 9])
    assert.equal(b.clear(3), true)
    assert.equal(b.clear(3), false)
    assert.equal(b.count, 2)
    for (let i = 0; i < 10; i++) b.set(i)
    assert.equal(b.complete, true)
  })

  test('wire form: MSB first, exact length, round-trips', () => {
    const b = new Bitfield(10)
    b.set(0); b.set(7); b.set(8)
    assert.deepEqual([...b.toBytes()], [0x81, 0x80])
    const c = Bitfield.fromBytes(b.toBytes(), 10)
    assert.deepEqual(c.toArray(), [0, 7, 8])
    assert.equal(c.count, 3)
    assert.equal(new Bitfield(0).toBytes().byteLength, 0)
    assert.equal(Bitfield.fromBytes(new Uint8Array(0), 0).count, 0)
  })

  test('bounds are checked', () => {
    const b = new Bitfield(10)
    assert.throws(() => b.set(10), code('ERR_INVALID_ARGUMENT'))
    assert.throws(() => b.set(-1), code('ERR_INVALID_ARGUMENT'))
    assert.throws(() => b.set(1.5), code('ERR_INVALID_ARGUMENT'))
    assert.throws(() => b.clear(10), code('ERR_INVALID_ARGUMENT'))
    assert.equal(b.has(10), false)
    assert.equal(b.has(-1), false)
    assert.throws(() => new Bitfield(-1), code('ERR_INVALID_ARGUMENT'))
    assert.throws(() => Bitfield.fromBytes(new Uint8Array(3), 10), code('ERR_INVALID_ARGUMENT'))
    assert.throws(() => Bitfield.fromBytes(new Uint8Array(1), 10), code('ERR_INVALID_ARGUMENT'))
    // Bits past the length would make two encodings of one set.
    assert.throws(() => Bitfield.fromBytes(new Uint8Array([0, 0x20]), 10), code('ERR_INVALID_ARGUMENT'))
  })

  test('copies any piece set', () => {
    const b = Bitfield.from({ has: (i) => i % 3 === 0 }, 10)
    assert.deepEqual(b.toArray(), [0, 3, 6, 9])
  })
})

describe('swarm keys', () => {
  test('generate → parse round-trips 32 random bytes', () => {
    const text = generateSwarmKey()
    assert.match(text, /^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\n$/)
    const key = parseSwarmKey(text)
    assert.equal(key.byteLength, 32)
    assert.equal(encodeSwarmKey(key), text)
    assert.notEqual(generateSwarmKey(), text)
  })

  test('accepts CRLF, uppercase hex, base64 and bytes', () => {
    const key = parseSwarmKey(generateSwarmKey())
    const hex = Buffer.from(key).toString('hex')
    assert.deepEqual(parseSwarmKey(`/key/swarm/psk/1.0.0/\r\n/base16/\r\n${hex.toUpperCase()}\r\n`), key)
    assert.deepEqual(parseSwarmKey(`/key/swarm/psk/1.0.0/\n/base64/\n${Buffer.from(key).toString('base64')}`), key)
    assert.deepEqual(parseSwarmKey(new TextEncoder().encode(encodeSwarmKey(key))), key)
  })

  test('bad files are ERR_INVALID_CONFIG', () => {
    const hex = 'ab'.repeat(32)
    for (const bad of [
      '',
      'hello',
      `/key/swarm/psk/2.0.0/\n/base16/\n${hex}`,
      `/key/swarm/psk/1.0.0/\n/base16/\n${hex.slice(2)}`,
      `/key/swarm/psk/1.0.0/\n/base16/\n${hex}00`,
      `/key/swarm/psk/1.0.0/\n/base16/\n${'zz'.repeat(32)}`,
      `/key/swarm/psk/1.0.0/\n/bin/\n${hex}`,
      `/key/swarm/psk/1.0.0/\n/base16/`,
      `/key/swarm/psk/1.0.0/\n/base16/\n${hex}\nextra`,
      `/key/swarm/psk/1.0.0/\n/base64/\n${Buffer.alloc(16).toString('base64')}`
    ]) {
      assert.throws(() => parseSwarmKey(bad), code('ERR_INVALID_CONFIG'), JSON.stringify(bad))
    }
    assert.throws(() => encodeSwarmKey(new Uint8Array(31)), code('ERR_INVALID_CONFIG'))
  })
})

describe('frame codec', () => {
  const digest = 'sha256:' + 'a'.repeat(64)
  const bits = new Bitfield(3)
  bits.set(1)
  const samples: Message[] = [
    { type: 'HELLO', taskDigest: digest },
    { type: 'META', size: 9, pieceSize: 4, pieceDigests: [undefined, digest, undefined], bitfield: bits, maxRequests: 8 },
    { type: 'HAVE', index: 2, digest },
    { type: 'REQUEST', index: 1 },
    // The decoder adds the payload's sha256, hashed as the bytes arrive; it is never sent.
    { type: 'PIECE', index: 1, payload: new Uint8Array([1, 2, 3, 4]), digest: sha256(new Uint8Array([1, 2, 3, 4])) },
    { type: 'CANCEL', index: 1 },
    { type: 'ERROR', code: 'ERR_NOT_FOUND', message: 'nope', index: 2 },
    { type: 'ERROR', code: 'ERR_PROTOCOL', message: 'bad' }
  ]
  const limits = () => ({ maxHeaderBytes: 4096, maxPayloadBytes: { META: 16, PIECE: 4 } })

  function normalize (m: Message): unknown {
    return m.type === 'META' ? { ...m, bitfield: m.bitfield.toArray() } : m.type === 'PIECE' ? { ...m, payload: [...m.payload] } : m
  }

  test('every message round-trips, whole and split at every byte', () => {
    const wire = new Uint8ArrayList(...samples.map(encodeMessage)).subarray()
    assert.deepEqual(new FrameDecoder(limits()).push(wire).map(normalize), samples.map(normalize))
    const d = new FrameDecoder(limits())
    const got: Message[] = []
    for (const b of wire) got.push(...d.push(new Uint8Array([b])))
    assert.deepEqual(got.map(normalize), samples.map(normalize))
    assert.equal(d.buffered, 0)
  })

  test('a PIECE head followed by its payload in chunks decodes as one PIECE', () => {
    const payload = new Uint8Array([9, 8, 7, 6])
    const d = new FrameDecoder(limits())
    assert.deepEqual(d.push(encodePieceHead(3, 4)), [])
    assert.deepEqual(d.push(payload.subarray(0, 3)), [])
    const [m] = d.push(payload.subarray(3))
    assert.deepEqual(m !== undefined ? normalize(m) : undefined, { type: 'PIECE', index: 3, payload: [9, 8, 7, 6], digest: sha256(payload) })
  })

  test('a PIECE payload is not copied on encode', () => {
    const payload = new Uint8Array(4)
    const enc = encodeMessage({ type: 'PIECE', index: 0, payload }) as Uint8ArrayList
    assert.ok([...enc].includes(payload))
  })

  test('limits are checked on the head, before the frame is buffered', () => {
    const d = new FrameDecoder(limits())
    const big = encodeMessage({ type: 'PIECE', index: 0, payload: new Uint8Array(5) })
    // The head alone is enough to refuse it.
    assert.throws(() => d.push((big as Uint8ArrayList).subarray(0, 9)), code('ERR_LIMIT_EXCEEDED'))
    // A failed decoder stays failed.
    assert.throws(() => d.push(new Uint8Array(1)), code('ERR_LIMIT_EXCEEDED'))
    assert.throws(() => new FrameDecoder({ maxHeaderBytes: 2, maxPayloadBytes: {} }).push(encodeMessage({ type: 'REQUEST', index: 0 })), code('ERR_LIMIT_EXCEEDED'))
    assert.throws(() => new FrameDecoder(limits()).push(encodeMessage({ type: 'PIECE', index: 0, payload: new Uint8Array(1) }).subarray(0, 9).map((b, i) => i === 4 ? 3 : b)), code('ERR_PROTOCOL'))
  })

  test('malformed headers are ERR_PROTOCOL', () => {
    const bad: Array<[number, string]> = [
      [3, '{"index":1}'],
      [3, `{"index":1,"digest":"sha256:abc"}`],
      [4, '{"index":"1"}'],
      [4, '{}'],
      [7, '{"code":"nope","message":"x"}'],
      [1, '{"taskDigest":5}'],
      [2, '{"size":9,"pieceSize":4,"pieceDigests":[null],"maxRequests":1}'],
      [2, '{"size":-1,"pieceSize":4,"pieceDigests":[null],"maxRequests":1}'],
      [2, '{"size":9,"pieceSize":4,"pieceDigests":[null,null,null],"maxRequests":100000}']
    ]
    for (const [type, header] of bad) {
      const h = new TextEncoder().encode(header)
      const f = new Uint8Array(9 + h.byteLength + (type === 2 ? 1 : 0))
      new DataView(f.buffer).setUint32(0, f.byteLength - 4)
      f[4] = type
      new DataView(f.buffer).setUint32(5, h.byteLength)
      f.set(h, 9)
      assert.throws(() => new FrameDecoder(limits()).push(f), code('ERR_PROTOCOL'), header)
    }
  })
})

test('peerIdOf reads the /p2p/ part of a multiaddr', () => {
  const id = '12D3KooWJPW3YD7duFxJnmfejM98x2u6arQJ8M369erQ83vvv2yA'
  assert.equal(peerIdOf(`/ip4/127.0.0.1/tcp/1/p2p/${id}`), id)
  assert.equal(peerIdOf('/ip4/127.0.0.1/tcp/1'), '')
  assert.equal(peerIdOf('garbage'), '')
})

describe('rate limiter', () => {
  test('holds a flow to its rate (roughly)', async () => {
    const rate = 4 * MiB
    const limiter = createRateLimiter(rate, { burstBytes: 64 * 1024 })
    const started = performance.now()
    let sent = 0
    // 2 MiB in 64 KiB takes from two concurrent flows: ~0.5 s at 4 MiB/s.
    await Promise.all([0, 1].map(async () => {
      for (let i = 0; i < 16; i++) { await limiter.take(64 * 1024); sent += 64 * 1024 }
    }))
    const seconds = (performance.now() - started) / 1000
    const measured = (sent - 64 * 1024) / seconds
    assert.ok(measured < rate * 1.15 && measured > rate * 0.7, `measured ${(measured / MiB).toFixed(2)} MiB/s for ${rate / MiB} MiB/s`)
  })

  test('reserve debits at once and says when the bytes are paid; refund gives them back', () => {
    let now = 0
    const limiter = createRateLimiter(1000, { burstBytes: 100, now: () => now })
    assert.equal(limiter.reserve(100), 0)
    // In call order: 500 bytes after the first 100 are paid for 500 ms from now.
    assert.equal(limiter.reserve(500), 500)
    assert.equal(limiter.reserve(250), 750)
    limiter.refund(250)
    now = 500
    // The 500 reserved are paid: the bucket is empty, not in debt.
    assert.equal(limiter.reserve(0), 0)
    assert.equal(limiter.reserve(100), 100)
    assert.equal(limiter.bytesPerSecond, 1000)
  })

  test('a take larger than the bucket goes into debt; later takes wait', async () => {
    let now = 0
    const limiter = createRateLimiter(1000, { burstBytes: 100, now: () => now })
    await limiter.take(100)
    const t0 = performance.now()
    // 50 bytes of debt at 1000 B/s: ~50 ms.
    await limiter.take(50)
    assert.ok(performance.now() - t0 >= 40)
    now += 1000
    const t1 = performance.now()
    await limiter.take(100)
    assert.ok(performance.now() - t1 < 30)
  })

  test('an aborted wait rejects with ERR_ABORTED and returns its tokens', async () => {
    const limiter = createRateLimiter(1000, { burstBytes: 0 })
    const c = new AbortController()
    const p = limiter.take(10_000, c.signal)
    c.abort()
    await assert.rejects(p, code('ERR_ABORTED'))
    const t = performance.now()
    await limiter.take(10)
    assert.ok(performance.now() - t < 100)
  })

  test('bad rates and sizes are refused', async () => {
    assert.throws(() => createRateLimiter(0), code('ERR_INVALID_CONFIG'))
    assert.throws(() => createRateLimiter(Number.NaN), code('ERR_INVALID_CONFIG'))
    assert.throws(() => createRateLimiter(Infinity), code('ERR_INVALID_CONFIG'))
    await assert.rejects(createRateLimiter(10).take(-1), code('ERR_INVALID_ARGUMENT'))
  })
})
