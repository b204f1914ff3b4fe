/** A discrete-event queue in virtual time (ms): a binary heap, ties in scheduling order. */
export class EventQueue {
  now = 0
  processed = 0
  private readonly times: number[] = []
  private readonly seqs: number[] = []
  private readonly fns: Array<() => void> = []
  private seq = 0

  get size (): number { return this.fns.length }

  /** Runs fn at virtual time `at` (never before now). */
  at (at: number, fn: () => void): void {
    const t = Math.max(at, this.now)
    let i = this.fns.length
    this.times.push(t); this.seqs.push(this.seq++); this.fns.push(fn)
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.before(i, parent)) break
      this.swap(i, parent)
      i = parent
    }
  }

  after (ms: number, fn: () => void): void { this.at(this.now + ms, fn) }

  /** Runs events in time order until the queue is empty, `until` passes, or stop() says so. */
  run (until = Infinity, stop: () => boolean = () => false): void {
    while (this.fns.length > 0 && !stop()) {
      if ((this.times[0] as number) > until) { this.now = until; return }
      this.now = this.times[0] as number
      const fn = this.fns[0] as () => void
      this.pop()
      this.processed++
      fn()
    }
  }

  private pop (): void {
    const last = this.fns.length - 1
    this.swap(0, last)
    this.times.pop(); this.seqs.pop(); this.fns.pop()
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < this.fns.length && this.before(l, m)) m = l
      if (r < this.fns.length && this.before(r, m)) m = r
      if (m === i) return
      this.swap(i, m)
      i = m
    }
  }

  private before (a: number, b: number): boolean {
    const ta = this.times[a] as number
    const tb = this.times[b] as number
    return ta < tb || (ta === tb && (this.seqs[a] as number) < (this.seqs[b] as number))
  }

  private swap (a: number, b: number): void {
    const t = this.times[a] as number; this.times[a] = this.times[b] as number; this.times[b] = t
    const s = this.seqs[a] as number; this.seqs[a] = this.seqs[b] as number; this.seqs[b] = s
    const f = this.fns[a] as () => void; this.fns[a] = this.fns[b] as () => void; this.fns[b] = f
  }
}

/**
 * The agent's rate limiter (src/common/rate-limit.ts) in virtual time: a token bucket
 * that admits a take at once and lets later takes wait out the debt, in call order.
 * `take` returns when the caller may go on.
 */
export class VirtualBucket {
  private tokens: number
  private last: number
  private readonly burst: number

  constructor (private readonly bytesPerMs: number, now: number, burstBytes?: number) {
    this.burst = burstBytes ?? Math.max(16 * 1024, Math.floor(bytesPerMs * 1000 / 4))
    this.tokens = this.burst
    this.last = now
  }

  take (now: number, bytes: number): number {
    this.tokens = Math.min(this.burst, this.tokens + (now - this.last) * this.bytesPerMs)
    this.last = now
    this.tokens -= bytes
    return this.tokens >= 0 ? now : now + -this.tokens / this.bytesPerMs
  }

  /** Gives back bytes taken for something that was not sent (as the real limiter's refund). */
  refund (now: number, bytes: number): void {
    this.tokens = Math.min(this.burst, this.tokens + (now - this.last) * this.bytesPerMs + bytes)
    this.last = now
  }
}
