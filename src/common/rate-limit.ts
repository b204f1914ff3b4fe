import { setTimeout as sleep } from 'node:timers/promises'
import { JoeyError, isAbortError } from './errors.js'

/** Throttles a flow of bytes: `take` resolves once `bytes` may be sent or received. */
export interface RateLimiter {
  take: (bytes: number, signal?: AbortSignal) => Promise<void>
  /**
   * Debits `bytes` at once, in call order with takes, and returns the ms until the last of
   * them is paid for (0 when the bucket covers them). A sender that paces the bytes over
   * the slot ending then keeps to the rate without holding anyone else up.
   */
  reserve: (bytes: number) => number
  /** Gives back bytes reserved or taken but never sent. */
  refund: (bytes: number) => void
  /** The rate, bytes per second. */
  readonly bytesPerSecond: number
}

export interface RateLimiterOptions {
  /** Bytes that may pass at once after an idle period; defaults to a quarter second of rate. */
  burstBytes?: number
  /** Clock in ms, for tests. */
  now?: () => number
}

/**
 * A token bucket that lets callers go into debt: a take larger than the bucket is
 * admitted and later takes wait until the debt is paid back. Takes are served in call
 * order, because each reservation is made before the wait, so one big piece cannot be
 * starved by a stream of small ones. An aborted wait gives its reservation back.
 */
export function createRateLimiter (bytesPerSecond: number, options: RateLimiterOptions = {}): RateLimiter {
  if (!Number.isFinite(bytesPerSecond) || bytesPerSecond <= 0) {
    throw new JoeyError('ERR_INVALID_CONFIG', `rate limit must be a positive number of bytes per second, got ${String(bytesPerSecond)}`)
  }
  const burst = options.burstBytes ?? Math.max(16 * 1024, Math.floor(bytesPerSecond / 4))
  if (!Number.isFinite(burst) || burst < 0) throw new JoeyError('ERR_INVALID_CONFIG', `rate limit burst must be a non-negative number of bytes, got ${String(burst)}`)
  const now = options.now ?? (() => performance.now())
  let tokens = burst
  let last = now()

  function refill (): void {
    const t = now()
    tokens = Math.min(burst, tokens + (t - last) * bytesPerSecond / 1000)
    last = t
  }

  function check (bytes: number): void {
    if (!Number.isFinite(bytes) || bytes < 0) throw new JoeyError('ERR_INVALID_ARGUMENT', `cannot take ${String(bytes)} bytes from a rate limiter`)
  }

  return {
    bytesPerSecond,
    reserve (bytes) {
      check(bytes)
      refill()
      tokens -= bytes
      return tokens >= 0 ? 0 : -tokens * 1000 / bytesPerSecond
    },
    refund (bytes) {
      check(bytes)
      refill()
      tokens = Math.min(burst, tokens + bytes)
    },
    async take (bytes, signal) {
      check(bytes)
      if (signal?.aborted === true) throw new JoeyError('ERR_ABORTED', 'rate limiter wait aborted', { cause: signal.reason })
      refill()
      tokens -= bytes
      if (tokens >= 0) return
      const waitMs = -tokens * 1000 / bytesPerSecond
      try {
        await sleep(waitMs, undefined, signal !== undefined ? { signal } : {})
      } catch (err) {
        tokens += bytes
        if (isAbortError(err)) throw new JoeyError('ERR_ABORTED', 'rate limiter wait aborted', { cause: err })
        throw err
      }
    }
  }
}

/** Parses a byte rate: a whole number of bytes/s, or with a k/M/G (×1000) or Ki/Mi/Gi (×1024) suffix. */
export function parseByteRate (value: string): number {
  const m = /^([0-9]+(?:\.[0-9]+)?)\s*([kKmMgG]i?)?[bB]?(?:\/s)?$/.exec(value.trim())
  if (m === null) throw new JoeyError('ERR_INVALID_CONFIG', `expected bytes per second such as 52428800, 50M or 50Mi, got "${value}"`)
  const n = Number(m[1])
  const unit = (m[2] ?? '').toLowerCase()
  const mult = unit === '' ? 1 : unit === 'k' ? 1e3 : unit === 'm' ? 1e6 : unit === 'g' ? 1e9 : unit === 'ki' ? 1024 : unit === 'mi' ? 1024 ** 2 : 1024 ** 3
  return Math.round(n * mult)
}
