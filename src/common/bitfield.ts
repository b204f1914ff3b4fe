/**
 * A growable bitset of piece indexes with a cached population count: which pieces a peer
 * holds. Bit i lives in byte i >> 3 at mask 0x80 >> (i & 7), BitTorrent's order, so
 * toBytes() is the wire form.
 */
const POPCOUNT = new Uint8Array(256)
for (let i = 1; i < 256; i++) POPCOUNT[i] = (i & 1) + (POPCOUNT[i >> 1] as number)

export class Bitfield {
  private bits: Uint8Array
  private size: number
  count = 0

  constructor (size: number) {
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`invalid bitfield size ${size}`)
    this.size = size
    this.bits = new Uint8Array(Math.ceil(size / 8))
  }

  static fromBytes (bytes: Uint8Array, size: number): Bitfield {
    const b = new Bitfield(size)
    for (let i = 0; i < size; i++) {
      if ((((bytes[i >> 3] ?? 0) << (i & 7)) & 0x80) !== 0) b.set(i)
    }
    return b
  }

  get length (): number { return this.size }

  resize (size: number): void {
    if (size <= this.size) return
    const next = new Uint8Array(Math.ceil(size / 8))
    next.set(this.bits)
    this.bits = next
    this.size = size
  }

  has (i: number): boolean {
    return Number.isInteger(i) && i >= 0 && i < this.size && ((this.bits[i >> 3] as number) & (0x80 >> (i & 7))) !== 0
  }

  set (i: number): void {
    if (!Number.isSafeInteger(i) || i < 0) throw new RangeError(`invalid piece index ${i}`)
    if (i >= this.size) this.resize(i + 1)
    const byte = this.bits[i >> 3] as number
    const mask = 0x80 >> (i & 7)
    if ((byte & mask) === 0) {
      this.bits[i >> 3] = byte | mask
      this.count++
    }
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
}
