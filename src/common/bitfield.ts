/**
 * A set of piece indexes: which pieces a peer holds. Bit i lives in byte i >> 3 under mask
 * 0x80 >> (i & 7) (BitTorrent's order), so `toBytes()` is the wire form and spare bits
 * stay zero. Writes out of range throw ERR_INVALID_ARGUMENT; reads out of range answer
 * false. The length only changes through resize() (a task's piece count becomes known
 * after its first peers joined).
 */
import { JoeyError } from './errors.js'

const POPCOUNT = new Uint8Array(256)
for (let i = 1; i < 256; i++) POPCOUNT[i] = (i & 1) + (POPCOUNT[i >> 1] as number)

/** The part of a bitfield a reader needs: anything with `has`. */
export interface PieceSet {
  has: (index: number) => boolean
}

export class Bitfield implements PieceSet {
  private bits: Uint8Array
  private size: number
  private ones = 0

  constructor (length: number) {
    if (!Number.isSafeInteger(length) || length < 0) throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid bitfield length ${String(length)}`)
    this.size = length
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

  get length (): number { return this.size }

  /** Pieces held. */
  get count (): number { return this.ones }

  get complete (): boolean { return this.ones === this.size }

  /** Grows to `length` bits (never shrinks). */
  resize (length: number): void {
    if (length <= this.size) return
    const next = new Uint8Array(Math.ceil(length / 8))
    next.set(this.bits)
    this.bits = next
    this.size = length
  }

  has (index: number): boolean {
    return Number.isInteger(index) && index >= 0 && index < this.size && ((this.bits[index >> 3] as number) & (0x80 >> (index & 7))) !== 0
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

  fill (): void {
    for (let i = 0; i < this.size; i++) this.set(i)
  }

  /** Pieces this set holds that `other` lacks. */
  countMissingIn (other: Bitfield): number {
    const a = this.bits
    const b = other.bits
    let n = 0
    for (let i = 0; i < a.length; i++) n += POPCOUNT[(a[i] as number) & ~(b[i] ?? 0) & 0xff] as number
    return n
  }

  toArray (): number[] {
    const out: number[] = []
    for (let i = 0; i < this.size; i++) if (this.has(i)) out.push(i)
    return out
  }

  toBytes (): Uint8Array {
    return this.bits.slice()
  }

  private check (index: number): void {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.size) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `piece index ${String(index)} is out of range (0..${this.size - 1})`, { detail: { index, length: this.size } })
    }
  }
}
