/**
 * Frames of /joey/piece/1.0.0 (docs/protocol.md):
 *
 *     u32be length   bytes after this field (1 + 4 + headerLength + payload)
 *     u8    type
 *     u32be headerLength
 *     JSON  header   UTF-8 object
 *     bytes payload  the rest (PIECE data, META bitfield)
 *
 * The decoder is fed the stream's chunks as they arrive and checks each limit on the
 * 9-byte head, before buffering anything, so a peer cannot make it hold more than one
 * frame. A payload is copied once, straight from the chunks into its own buffer; a PIECE
 * payload is hashed chunk by chunk as it is copied, while the bytes are still in cache,
 * so verifying a piece costs no second pass over it.
 */
import { createHash, type Hash } from 'node:crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import { ERROR_CODES, JoeyError, isDigest, type ErrorCode } from '../common/index.js'
import { FRAME_HEAD_BYTES, MAX_ERROR_MESSAGE_CHARS } from './constants.js'
import { Bitfield, pieceCount } from './pieces.js'

export const FrameType = {
  HELLO: 1,
  META: 2,
  HAVE: 3,
  REQUEST: 4,
  PIECE: 5,
  CANCEL: 6,
  ERROR: 7
} as const

export type FrameTypeName = keyof typeof FrameType

export type Message =
  | { type: 'HELLO', taskDigest: string }
  | { type: 'META', size: number, pieceSize: number, pieceDigests: Array<string | undefined>, bitfield: Bitfield, maxRequests: number }
  | { type: 'HAVE', index: number, digest: string }
  | { type: 'REQUEST', index: number }
  /** `digest` is the sha256 of the payload, computed by the decoder (never sent). */
  | { type: 'PIECE', index: number, payload: Uint8Array, digest?: string }
  | { type: 'CANCEL', index: number }
  | { type: 'ERROR', code: string, message: string, index?: number }

const NAMES: Record<number, FrameTypeName> = Object.fromEntries(Object.entries(FrameType).map(([k, v]) => [v, k])) as Record<number, FrameTypeName>
const MAX_REQUESTS_LIMIT = 1024
const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

function protocolError (message: string, detail?: Record<string, unknown>): JoeyError {
  return new JoeyError('ERR_PROTOCOL', message, detail !== undefined ? { detail } : {})
}

function head (type: number, header: Uint8Array, payloadBytes: number): Uint8Array {
  const out = new Uint8Array(FRAME_HEAD_BYTES + header.byteLength)
  const view = new DataView(out.buffer)
  view.setUint32(0, 1 + 4 + header.byteLength + payloadBytes)
  out[4] = type
  view.setUint32(5, header.byteLength)
  out.set(header, FRAME_HEAD_BYTES)
  return out
}

/**
 * The head of a PIECE frame carrying `payloadBytes`: a sender may follow it with the
 * payload in as many chunks as it likes (a rate-limited server paces them).
 */
export function encodePieceHead (index: number, payloadBytes: number): Uint8Array {
  return head(FrameType.PIECE, encoder.encode(JSON.stringify({ index })), payloadBytes)
}

/**
 * Encodes a message. The payload is not copied: the result is a list of the head and the
 * caller's buffer, which the stream sends as is.
 */
export function encodeMessage (msg: Message): Uint8Array | Uint8ArrayList {
  switch (msg.type) {
    case 'HELLO': return head(FrameType.HELLO, encoder.encode(JSON.stringify({ taskDigest: msg.taskDigest })), 0)
    case 'META': {
      const bits = msg.bitfield.toBytes()
      const header = encoder.encode(JSON.stringify({ size: msg.size, pieceSize: msg.pieceSize, pieceDigests: msg.pieceDigests.map(d => d ?? null), maxRequests: msg.maxRequests }))
      return new Uint8ArrayList(head(FrameType.META, header, bits.byteLength), bits)
    }
    case 'HAVE': return head(FrameType.HAVE, encoder.encode(JSON.stringify({ index: msg.index, digest: msg.digest })), 0)
    case 'REQUEST': return head(FrameType.REQUEST, encoder.encode(JSON.stringify({ index: msg.index })), 0)
    case 'CANCEL': return head(FrameType.CANCEL, encoder.encode(JSON.stringify({ index: msg.index })), 0)
    case 'PIECE': return new Uint8ArrayList(encodePieceHead(msg.index, msg.payload.byteLength), msg.payload)
    case 'ERROR': {
      const body: Record<string, unknown> = { code: msg.code, message: msg.message.slice(0, MAX_ERROR_MESSAGE_CHARS) }
      if (msg.index !== undefined) body.index = msg.index
      return head(FrameType.ERROR, encoder.encode(JSON.stringify(body)), 0)
    }
  }
}

export interface DecoderLimits {
  /** Largest JSON header. */
  maxHeaderBytes: number
  /** Largest payload per frame type; types not listed carry none. */
  maxPayloadBytes: Partial<Record<FrameTypeName, number>>
}

/**
 * Incremental frame decoder. `push` returns the messages completed by a chunk; a
 * violation throws a JoeyError (ERR_PROTOCOL or ERR_LIMIT_EXCEEDED) and the decoder is
 * then unusable, as the stream should be.
 */
export class FrameDecoder {
  readonly limits: DecoderLimits
  private readonly pending = new Uint8ArrayList()
  private frame?: { type: FrameTypeName, header: unknown, payload: Uint8Array, filled: number, hash?: Hash }
  private failed?: JoeyError

  constructor (limits: DecoderLimits) {
    this.limits = limits
  }

  /** Bytes held for an incomplete frame. */
  get buffered (): number {
    return this.pending.byteLength + (this.frame?.filled ?? 0)
  }

  push (chunk: Uint8Array | Uint8ArrayList): Message[] {
    if (this.failed !== undefined) throw this.failed
    const out: Message[] = []
    try {
      for (const part of chunk instanceof Uint8Array ? [chunk] : chunk) this.consume(part, out)
    } catch (err) {
      this.failed = err instanceof JoeyError ? err : protocolError(String(err))
      throw this.failed
    }
    return out
  }

  private consume (data: Uint8Array, out: Message[]): void {
    let offset = 0
    while (offset < data.byteLength) {
      const f = this.frame
      if (f !== undefined) {
        const n = Math.min(f.payload.byteLength - f.filled, data.byteLength - offset)
        const part = data.subarray(offset, offset + n)
        f.payload.set(part, f.filled)
        f.hash?.update(part)
        f.filled += n
        offset += n
        if (f.filled === f.payload.byteLength) {
          this.frame = undefined
          const msg = decodeBody(f.type, f.header, f.payload)
          if (msg.type === 'PIECE' && f.hash !== undefined) msg.digest = 'sha256:' + f.hash.digest('hex')
          out.push(msg)
        }
        continue
      }
      // Head phase: take only what the head and header need, so payload bytes go
      // straight to their buffer without a stop in `pending`.
      const need = this.headNeed()
      const n = Math.min(need - this.pending.byteLength, data.byteLength - offset)
      this.pending.append(data.subarray(offset, offset + n))
      offset += n
      // Reaching 9 bytes reveals the header length, so the need is asked again.
      if (this.pending.byteLength === this.headNeed()) this.takeHead(out)
    }
  }

  /** Bytes of head + header needed before the payload starts (grows once the head is read). */
  private headNeed (): number {
    if (this.pending.byteLength < FRAME_HEAD_BYTES) return FRAME_HEAD_BYTES
    const { headerLength } = this.readHead()
    return FRAME_HEAD_BYTES + headerLength
  }

  private readHead (): { length: number, typeByte: number, headerLength: number } {
    const length = this.pending.getUint32(0)
    const typeByte = this.pending.get(4)
    const headerLength = this.pending.getUint32(5)
    const maxFrame = 5 + this.limits.maxHeaderBytes + Math.max(0, ...Object.values(this.limits.maxPayloadBytes))
    if (length > maxFrame) throw new JoeyError('ERR_LIMIT_EXCEEDED', `frame of ${length} bytes is over the limit of ${maxFrame}`, { detail: { length, limit: maxFrame } })
    const name = NAMES[typeByte]
    if (name === undefined) throw protocolError(`unknown frame type ${typeByte}`, { type: typeByte })
    if (length < 5 || headerLength > length - 5) throw protocolError(`frame length ${length} cannot hold a ${headerLength}-byte header`)
    if (headerLength > this.limits.maxHeaderBytes) {
      throw new JoeyError('ERR_LIMIT_EXCEEDED', `${name} header of ${headerLength} bytes is over the limit of ${this.limits.maxHeaderBytes}`, { detail: { type: name, headerLength } })
    }
    const payload = length - 5 - headerLength
    const maxPayload = this.limits.maxPayloadBytes[name] ?? 0
    if (payload > maxPayload) {
      throw new JoeyError(maxPayload === 0 ? 'ERR_PROTOCOL' : 'ERR_LIMIT_EXCEEDED', `${name} frame carries ${payload} payload bytes, limit ${maxPayload}`, { detail: { type: name, payload, limit: maxPayload } })
    }
    return { length, typeByte, headerLength }
  }

  private takeHead (out: Message[]): void {
    const { length, typeByte, headerLength } = this.readHead()
    const type = NAMES[typeByte] as FrameTypeName
    const headerBytes = this.pending.subarray(FRAME_HEAD_BYTES, FRAME_HEAD_BYTES + headerLength)
    this.pending.consume(this.pending.byteLength)
    let header: unknown
    try {
      header = JSON.parse(decoder.decode(headerBytes))
    } catch {
      throw protocolError(`${type} header is not valid UTF-8 JSON`)
    }
    if (typeof header !== 'object' || header === null || Array.isArray(header)) throw protocolError(`${type} header is not a JSON object`)
    const payloadLength = length - 5 - headerLength
    if (payloadLength === 0) {
      const msg = decodeBody(type, header, new Uint8Array(0))
      if (msg.type === 'PIECE') msg.digest = 'sha256:' + createHash('sha256').digest('hex')
      out.push(msg)
      return
    }
    // Not zero-filled (every byte is written before the frame is handed out) and not from
    // the shared pool, so the buffer belongs to the piece alone and can be transferred.
    this.frame = { type, header, payload: Buffer.allocUnsafeSlow(payloadLength), filled: 0, ...(type === 'PIECE' ? { hash: createHash('sha256') } : {}) }
  }
}

function index (h: Record<string, unknown>, type: string): number {
  const i = h.index
  if (typeof i !== 'number' || !Number.isSafeInteger(i) || i < 0) throw protocolError(`${type} has an invalid piece index`, { index: i })
  return i
}

function digest (value: unknown, what: string): string {
  if (!isDigest(value)) throw new JoeyError('ERR_PROTOCOL', `${what} is not a sha256 digest`)
  return value
}

function safeInt (value: unknown, what: string, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) throw protocolError(`${what} is not an integer >= ${min}`)
  return value
}

/** Validates a frame's header (and payload) into a typed message; unknown header fields are ignored for forward compatibility. */
function decodeBody (type: FrameTypeName, header: unknown, payload: Uint8Array): Message {
  const h = header as Record<string, unknown>
  switch (type) {
    case 'HELLO':
      // The server answers a string that is not a digest with ERR_INVALID_DIGEST itself.
      if (typeof h.taskDigest !== 'string' || h.taskDigest.length > 200) throw protocolError('HELLO taskDigest is not a string')
      return { type, taskDigest: h.taskDigest }
    case 'META': {
      const size = safeInt(h.size, 'META size', 0)
      const pieceSize = safeInt(h.pieceSize, 'META pieceSize', 1)
      const maxRequests = safeInt(h.maxRequests, 'META maxRequests', 1)
      if (maxRequests > MAX_REQUESTS_LIMIT) throw protocolError(`META maxRequests ${maxRequests} is over ${MAX_REQUESTS_LIMIT}`)
      const count = pieceCount(size, pieceSize)
      if (!Array.isArray(h.pieceDigests) || h.pieceDigests.length !== count) throw protocolError(`META pieceDigests must list ${count} entries`)
      const pieceDigests = h.pieceDigests.map((d, i) => d === null ? undefined : digest(d, `META pieceDigests[${i}]`))
      let bitfield: Bitfield
      try {
        bitfield = Bitfield.fromBytes(payload, count)
      } catch (err) {
        throw protocolError(`META bitfield: ${(err as Error).message}`)
      }
      for (const i of bitfield.toArray()) {
        if (pieceDigests[i] === undefined) throw protocolError(`META announces piece ${i} without its digest`, { index: i })
      }
      return { type, size, pieceSize, pieceDigests, bitfield, maxRequests }
    }
    case 'HAVE': return { type, index: index(h, type), digest: digest(h.digest, 'HAVE digest') }
    case 'REQUEST': return { type, index: index(h, type) }
    case 'CANCEL': return { type, index: index(h, type) }
    case 'PIECE': return { type, index: index(h, type), payload }
    case 'ERROR': {
      if (typeof h.code !== 'string' || !/^ERR_[A-Z0-9_]{1,60}$/.test(h.code)) throw protocolError('ERROR has an invalid code')
      const message = typeof h.message === 'string' ? h.message.slice(0, MAX_ERROR_MESSAGE_CHARS) : ''
      return { type, code: h.code, message, ...(h.index !== undefined ? { index: index(h, type) } : {}) }
    }
  }
}

/** A peer's error code as a local one; codes this version does not know become ERR_PROTOCOL. */
export function localCode (code: string): ErrorCode {
  return Object.hasOwn(ERROR_CODES, code) ? code as ErrorCode : 'ERR_PROTOCOL'
}
