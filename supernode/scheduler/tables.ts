/**
 * The scheduler's hot state in typed arrays. A parent decision probes a random sample of a
 * task's peers; with one object per peer, its host, its labels, its parent set and its
 * bitfield each spread over the heap, a probe of a 5,000-peer task touched six to eight
 * cache lines. Here a probe reads one row of a task's peer table (32 bytes), that peer's
 * piece bits (contiguous, one line for up to 512 pieces) and one row of the host table.
 *
 * The objects (HostState, PeerTaskState) stay the scheduler's public view and the home of
 * everything a decision does not read per candidate (sets of parents, children, blocked
 * peers); the fields both hold are written through by the scheduler in one place each.
 */

/** Host table lanes (Int32, HOST_STRIDE per host). */
export const H_LOAD = 0
export const H_SLOTS = 1
export const H_FAILURES = 2
export const H_ZONE = 3
export const H_RACK = 4
export const HOST_STRIDE = 8

/** Peer table lanes (Int32, PEER_STRIDE per peer of a task). */
export const P_HOST = 0
export const P_COUNT = 1
export const P_FLAGS = 2
export const P_PARENTS = 3
export const P_SEED_PARENTS = 4
export const P_SEEN = 5
export const P_RANK = 6
export const PEER_STRIDE = 8

export const F_SEED = 1
export const F_COMPLETE = 2
export const F_BACK_TO_SOURCE = 4

function grow (a: Int32Array, size: number): Int32Array {
  const next = new Int32Array(size)
  next.set(a)
  return next
}

/** Rows with a free list: a row is reused once its owner is gone, so nothing needs compacting. */
class Rows {
  capacity: number
  private next = 0
  private readonly free: number[] = []

  constructor (capacity: number) { this.capacity = capacity }

  /** A free row; at or above `capacity` the owner's arrays must grow first. */
  take (): number {
    const row = this.free.pop()
    return row ?? this.next++
  }

  release (row: number): void { this.free.push(row) }
}

export class HostTable {
  ints: Int32Array
  /** Time of each host's last failure (read only when it has failures). */
  lastFailureAt: Float64Array
  private readonly rows = new Rows(256)

  constructor () {
    this.ints = new Int32Array(256 * HOST_STRIDE)
    this.lastFailureAt = new Float64Array(256)
  }

  alloc (): number {
    const row = this.rows.take()
    if (row >= this.rows.capacity) {
      this.rows.capacity *= 2
      this.ints = grow(this.ints, this.rows.capacity * HOST_STRIDE)
      const lf = new Float64Array(this.rows.capacity)
      lf.set(this.lastFailureAt)
      this.lastFailureAt = lf
    }
    this.ints.fill(0, row * HOST_STRIDE, (row + 1) * HOST_STRIDE)
    this.lastFailureAt[row] = 0
    return row
  }

  release (row: number): void { this.rows.release(row) }
}

export class PeerTable {
  ints: Int32Array
  /** Piece bits, `words` 32-bit words per row; bit i of a row is word i >> 5, mask 1 << (i & 31). */
  bits: Uint32Array
  words: number
  private readonly rows = new Rows(64)

  constructor (pieces: number) {
    this.words = Math.max(1, Math.ceil(pieces / 32))
    this.ints = new Int32Array(64 * PEER_STRIDE)
    this.bits = new Uint32Array(64 * this.words)
  }

  alloc (): number {
    const row = this.rows.take()
    if (row >= this.rows.capacity) {
      this.rows.capacity *= 2
      this.ints = grow(this.ints, this.rows.capacity * PEER_STRIDE)
      const bits = new Uint32Array(this.rows.capacity * this.words)
      bits.set(this.bits)
      this.bits = bits
    }
    this.ints.fill(0, row * PEER_STRIDE, (row + 1) * PEER_STRIDE)
    this.bits.fill(0, row * this.words, (row + 1) * this.words)
    return row
  }

  release (row: number): void { this.rows.release(row) }

  /** Widens every row to hold `pieces` bits (a task's piece count can become known late). */
  widen (pieces: number): void {
    const words = Math.ceil(pieces / 32)
    if (words <= this.words) return
    const bits = new Uint32Array(this.rows.capacity * words)
    for (let r = 0; r < this.rows.capacity; r++) bits.set(this.bits.subarray(r * this.words, (r + 1) * this.words), r * words)
    this.bits = bits
    this.words = words
  }

  /** Sets piece `index` of a row; returns whether it was newly set. */
  set (row: number, index: number): boolean {
    const w = row * this.words + (index >>> 5)
    const mask = 1 << (index & 31)
    const word = this.bits[w] as number
    if ((word & mask) !== 0) return false
    this.bits[w] = word | mask
    this.ints[row * PEER_STRIDE + P_COUNT]++
    return true
  }

  has (row: number, index: number): boolean {
    return index >= 0 && index < this.words * 32 && ((this.bits[row * this.words + (index >>> 5)] as number) & (1 << (index & 31))) !== 0
  }

  /** Sets pieces 0 … n-1 of a row. */
  fill (row: number, n: number): void {
    for (let i = 0; i < n; i++) this.set(row, i)
  }

  /** Pieces row `a` holds that row `b` lacks. */
  missingIn (a: number, b: number): number {
    const bits = this.bits
    const words = this.words
    let ia = a * words
    let ib = b * words
    let n = 0
    for (const end = ia + words; ia < end; ia++, ib++) {
      let x = (bits[ia] as number) & ~(bits[ib] as number)
      if (x === 0) continue
      x = x - ((x >>> 1) & 0x55555555)
      x = (x & 0x33333333) + ((x >>> 2) & 0x33333333)
      x = (x + (x >>> 4)) & 0x0f0f0f0f
      n += Math.imul(x, 0x01010101) >>> 24
    }
    return n
  }
}
