// Human-readable sizes and durations, following docker's go-units so that `joey` output reads
// like `docker` output (SI units for sizes, "2 hours ago" for ages).

const SIZE_UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB', 'ZB', 'YB']

function significant (value: number, precision: number): number {
  return Number(value.toPrecision(precision))
}

/**
 * A size in SI units with at most `precision` significant digits and no space, as docker
 * prints it: 4.26MB, 512B, 1.235GB. docker uses 4 digits for progress and 3 for `images`.
 */
export function humanSize (bytes: number, precision = 4): string {
  if (!Number.isFinite(bytes)) return String(bytes)
  let value = Math.abs(bytes)
  let unit = 0
  while (value >= 1000 && unit < SIZE_UNITS.length - 1) {
    value /= 1000
    unit++
  }
  // go-units would print 999.96kB as "1e+03kB"; rolling over to the next unit reads better.
  if (significant(value, precision) >= 1000 && unit < SIZE_UNITS.length - 1) {
    value /= 1000
    unit++
  }
  const sign = bytes < 0 ? '-' : ''
  return `${sign}${String(significant(value, precision))}${SIZE_UNITS[unit]}`
}

/** docker's HumanDuration: "Less than a second", "About a minute", "3 hours", "2 weeks". */
export function humanDuration (ms: number): string {
  const seconds = Math.trunc(ms / 1000)
  if (seconds < 1) return 'Less than a second'
  if (seconds === 1) return '1 second'
  if (seconds < 60) return `${seconds} seconds`
  const minutes = Math.trunc(seconds / 60)
  if (minutes === 1) return 'About a minute'
  if (minutes < 60) return `${minutes} minutes`
  const hours = Math.trunc(ms / 3_600_000 + 0.5)
  if (hours === 1) return 'About an hour'
  if (hours < 48) return `${hours} hours`
  if (hours < 24 * 7 * 2) return `${Math.trunc(hours / 24)} days`
  if (hours < 24 * 30 * 2) return `${Math.trunc(hours / 24 / 7)} weeks`
  if (hours < 24 * 365 * 2) return `${Math.trunc(hours / 24 / 30)} months`
  return `${Math.trunc(ms / 3_600_000 / 24 / 365)} years`
}

/** "2 hours ago" for a unix time in seconds; "N/A" when the image carries no creation time. */
export function timeAgo (unixSeconds: number, nowMs: number = Date.now()): string {
  if (!Number.isFinite(unixSeconds) || unixSeconds <= 0) return 'N/A'
  return `${humanDuration(Math.max(0, nowMs - unixSeconds * 1000))} ago`
}

/** A compact remaining-time estimate in Go's Duration style (1h2m3s, 4m0s, 7s). */
export function shortDuration (ms: number): string {
  const total = Math.max(0, Math.trunc(ms / 1000))
  const h = Math.trunc(total / 3600)
  const m = Math.trunc((total % 3600) / 60)
  const s = total % 60
  if (h > 0) return `${h}h${m}m${s}s`
  if (m > 0) return `${m}m${s}s`
  return `${s}s`
}
