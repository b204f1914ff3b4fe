/**
 * The piece model shared by the piece server, the piece client and the transfer manager:
 * a blob of `size` bytes is cut into pieces of `pieceSize` bytes (the last one shorter).
 */
import { JoeyError } from '../common/errors.js'
import { MAX_PIECES, PIECE_SIZE, pieceSizeFor } from '../common/pieces.js'

export { MAX_PIECES, PIECE_SIZE, pieceSizeFor }

function checkLayout (size: number, pieceSize: number): void {
  if (!Number.isSafeInteger(size) || size < 0) throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid blob size ${String(size)}`)
  if (!Number.isSafeInteger(pieceSize) || pieceSize <= 0) throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid piece size ${String(pieceSize)}`)
}

/**
 * Number of pieces of a blob. An empty blob still has one (empty) piece, so every task has
 * at least one piece digest and one bit to announce, as the rest of Joey assumes.
 */
export function pieceCount (size: number, pieceSize: number): number {
  checkLayout(size, pieceSize)
  return Math.max(1, Math.ceil(size / pieceSize))
}

export interface PieceRange {
  /** First byte of the piece. */
  start: number
  /** One past the last byte. */
  end: number
}

/** Byte range of piece `index`; ERR_INVALID_ARGUMENT when the index is out of range. */
export function pieceRange (size: number, pieceSize: number, index: number): PieceRange {
  const count = pieceCount(size, pieceSize)
  if (!Number.isSafeInteger(index) || index < 0 || index >= count) {
    throw new JoeyError('ERR_INVALID_ARGUMENT', `piece index ${String(index)} is out of range (0..${count - 1})`, { detail: { index, count } })
  }
  const start = index * pieceSize
  return { start, end: Math.min(size, start + pieceSize) }
}

/** Length of piece `index` in bytes. */
export function pieceLength (size: number, pieceSize: number, index: number): number {
  const r = pieceRange(size, pieceSize, index)
  return r.end - r.start
}

/** The part of a bitfield the piece server reads from a source: anything with `has`. */
export interface PieceSet {
  has: (index: number) => boolean
}

const POPCOUNT = new Uint8Array(256)
for (let i = 1; i < 256; i++) POPCOUNT[i] = (i & 1) + (POPCOUNT[i >> 1] as number)

/**
 * A fixed-size set of piece indexes. Bit i lives in byte i >> 3 under mask 0x80 >> (i & 7)
 * (BitTorrent's order), so `toBytes()` is the wire form and spare bits stay zero.
 * Writes out of range throw; reads out of range answer false.
 */
export class Bitfield implements PieceSet {
  readonly length: number
  private readonly bits: Uint8Array
  private ones = 0

  constructor (length: number) {
    if (!Number.isSafeInteger(length) || length < 0) throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid bitfield length ${String(length)}`)
    this.length = length
    this.bits = new Uint8Array(Math.ceil(length / 8))
  }

  /**
   * Parses the wire form strictly: exactly ceil(length / 8) bytes, spare bits zero, so a
   * peer cannot smuggle state past the end or make two encodings of one set.
   */
  static fromBytes (bytes: Uint8Array, length: number): Bitfield {
    const b = new Bitfield(length)
    if (bytes.byteLength !== b.bits.byteLength) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `bitfield of ${length} bits needs ${b.bits.byteLength} bytes, got ${bytes.byteLength}`)
    }
    const spare = b.bits.byteLength * 8 - length
    if (spare > 0 && ((bytes[bytes.byteLength - 1] as number) & ((1 << spare) - 1)) !== 0) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', 'bitfield has bits set past its length')
    }
    b.bits.set(bytes)
    for (const byte of b.bits) b.ones += POPCOUNT[byte] as number
    return b
  }

  /** Copies any piece set (e.g. another module's bitfield) of the given length. */
  static from (set: PieceSet, length: number): Bitfield {
    const b = new Bitfield(length)
    for (let i = 0; i < length; i++) if (set.has(i)) b.set(i)
    return b
  }

  /** Pieces held. */
  get count (): number { return this.ones }

  get complete (): boolean { return this.ones === this.length }

  has (index: number): boolean {
    return Number.isInteger(index) && index >= 0 && index < this.length && ((this.bits[index >> 3] as number) & (0x80 >> (index & 7))) !== 0
  }

  /** Sets a bit; returns whether it was newly set. */
  set (index: number): boolean {
    this.check(index)
    const byte = this.bits[index >> 3] as number
    const mask = 0x80 >> (index & 7)
    if ((byte & mask) !== 0) return false
    this.bits[index >> 3] = byte | mask
    this.ones++
    return true
  }

  /** Clears a bit; returns whether it was set. */
  clear (index: number): boolean {
    this.check(index)
    const byte = this.bits[index >> 3] as number
    const mask = 0x80 >> (index & 7)
    if ((byte & mask) === 0) return false
    this.bits[index >> 3] = byte & ~mask
    this.ones--
    return true
  }

  toArray (): number[] {
    const out: number[] = []
    for (let i = 0; i < this.length; i++) if (this.has(i)) out.push(i)
    return out
  }

  toBytes (): Uint8Array {
    return this.bits.slice()
  }

  private check (index: number): void {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.length) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `piece index ${String(index)} is out of range (0..${this.length - 1})`, { detail: { index, length: this.length } })
    }
  }
}
