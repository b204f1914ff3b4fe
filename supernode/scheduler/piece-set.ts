/** A growable bitset of piece indexes with a cached population count. */
const POPCOUNT = new Uint8Array(256)
for (let i = 1; i < 256; i++) POPCOUNT[i] = (i & 1) + (POPCOUNT[i >> 1] as number)

export class PieceSet {
  private bits: Uint8Array
  private size: number
  count = 0

  constructor (size: number) {
    this.size = size
    this.bits = new Uint8Array(Math.ceil(size / 8))
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
    return i >= 0 && i < this.size && ((this.bits[i >> 3] as number) & (1 << (i & 7))) !== 0
  }

  add (i: number): void {
    if (i >= this.size) this.resize(i + 1)
    const byte = this.bits[i >> 3] as number
    const mask = 1 << (i & 7)
    if ((byte & mask) === 0) {
      this.bits[i >> 3] = byte | mask
      this.count++
    }
  }

  fill (): void {
    for (let i = 0; i < this.size; i++) this.add(i)
  }

  /** Pieces this set holds that `other` lacks. */
  countMissingIn (other: PieceSet): number {
    const a = this.bits
    const b = other.bits
    let n = 0
    for (let i = 0; i < a.length; i++) {
      n += POPCOUNT[(a[i] as number) & ~(b[i] ?? 0) & 0xff] as number
    }
    return n
  }

  toArray (): number[] {
    const out: number[] = []
    for (let i = 0; i < this.size; i++) if (this.has(i)) out.push(i)
    return out
  }
}
