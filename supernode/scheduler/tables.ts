/**
 * The scheduler's hot state in typed arrays. A parent decision probes a random sample of a
 * task's peers; with one object per peer, its host, its labels, its parent set and its
 * bitfield each spread over the heap, a probe of a 5,000-peer task touched six to eight
 * cache lines. Here a probe reads one row of a task's peer table (its lanes and its piece
 * bits together: 64 bytes up to 256 pieces) and one row of the host table.
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

/** Peer table lanes (Int32, the first PEER_LANES of each row, before the piece bits). */
export const P_HOST = 0
export const P_COUNT = 1
export const P_FLAGS = 2
export const P_PARENTS = 3
export const P_SEED_PARENTS = 4
export const P_SEEN = 5
export const P_RANK = 6
export const PEER_LANES = 8

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
  /** Rows of `stride` ints: PEER_LANES lanes, then the piece bits. */
  ints: Int32Array
  /** The same memory as `ints`, for the piece bits: bit i of a row is word i >> 5, mask 1 << (i & 31). */
  bits: Uint32Array
  words: number
  /**
   * Ints per row: the lanes and the bits together, so a probe of a candidate reads one
   * cache line for up to 256 pieces (two for up to 768).
   */
  stride: number
  private readonly rows = new Rows(64)

  constructor (pieces: number) {
    this.words = Math.max(1, Math.ceil(pieces / 32))
    this.stride = strideFor(this.words)
    this.ints = new Int32Array(64 * this.stride)
    this.bits = new Uint32Array(this.ints.buffer)
  }

  alloc (): number {
    const row = this.rows.take()
    if (row >= this.rows.capacity) this.relayout(this.rows.capacity * 2, this.words)
    this.ints.fill(0, row * this.stride, (row + 1) * this.stride)
    return row
  }

  release (row: number): void { this.rows.release(row) }

  /** Widens every row to hold `pieces` bits (a task's piece count can become known late). */
  widen (pieces: number): void {
    const words = Math.ceil(pieces / 32)
    if (words > this.words) this.relayout(this.rows.capacity, words)
  }

  private relayout (capacity: number, words: number): void {
    const stride = strideFor(words)
    const ints = new Int32Array(capacity * stride)
    const used = PEER_LANES + this.words
    for (let r = 0; r < this.rows.capacity; r++) ints.set(this.ints.subarray(r * this.stride, r * this.stride + used), r * stride)
    this.ints = ints
    this.bits = new Uint32Array(ints.buffer)
    this.rows.capacity = capacity
    this.words = words
    this.stride = stride
  }

  /** Sets piece `index` of a row; returns whether it was newly set. */
  set (row: number, index: number): boolean {
    const w = row * this.stride + PEER_LANES + (index >>> 5)
    const mask = 1 << (index & 31)
    const word = this.ints[w] as number
    if ((word & mask) !== 0) return false
    this.ints[w] = word | mask
    this.ints[row * this.stride + P_COUNT]++
    return true
  }

  has (row: number, index: number): boolean {
    return index >= 0 && index < this.words * 32 && ((this.ints[row * this.stride + PEER_LANES + (index >>> 5)] as number) & (1 << (index & 31))) !== 0
  }

  /** Sets pieces 0 … n-1 of a row. */
  fill (row: number, n: number): void {
    for (let i = 0; i < n; i++) this.set(row, i)
  }

  /** Pieces row `a` holds that row `b` lacks. */
  missingIn (a: number, b: number): number {
    const bits = this.bits
    let ia = a * this.stride + PEER_LANES
    let ib = b * this.stride + PEER_LANES
    let n = 0
    for (const end = ia + this.words; ia < end; ia++, ib++) {
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

/** Lanes and bits rounded up to whole 32-byte halves of a cache line. */
function strideFor (words: number): number {
  return Math.ceil((PEER_LANES + words) / 8) * 8
}
