/**
 * Pull progress as dockerd streams it: one JSON message per line, with the pre-rendered
 * "[==>   ] 1.2MB/3.4MB" bar for clients that print `progress` as is. Field order and the
 * omitted zero values follow docker's jsonmessage types, so byte-for-byte comparisons hold.
 */
import type { PullEvent } from '../../image/index.js'
import { PROGRESS_BAR_WIDTH } from '../constants.js'

export interface JsonProgressDetail {
  current?: number
  total?: number
}

export interface JsonMessage {
  status?: string
  progressDetail?: JsonProgressDetail
  progress?: string
  id?: string
  errorDetail?: { code?: number, message: string }
  error?: string
}

const UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB', 'ZB', 'YB']

/** Go's "%.4g" for the small positive values a size scales down to. */
function fourSignificant (value: number): string {
  const s = value.toPrecision(4)
  return s.includes('.') && !s.includes('e') ? s.replace(/0+$/, '').replace(/\.$/, '') : s
}

/** docker's units.HumanSize: decimal units, four significant digits ("1.235MB", "512B"). */
export function humanSize (bytes: number): string {
  let size = bytes
  let i = 0
  while (size >= 1000 && i < UNITS.length - 1) {
    size /= 1000
    i++
  }
  return `${fourSignificant(size)}${UNITS[i]!}`
}

/** docker's JSONProgress.String() as the daemon renders it (wide, no time estimate). */
export function formatProgress (current: number, total: number): string {
  if (current <= 0 && total <= 0) return ''
  if (total <= 0) return humanSize(current).padStart(8)
  const percentage = Math.min(PROGRESS_BAR_WIDTH, Math.trunc(Math.trunc(current / total * 100) / 2))
  const bar = `[${'='.repeat(percentage)}>${' '.repeat(Math.max(0, PROGRESS_BAR_WIDTH - percentage))}] `
  const numbers = current > total ? humanSize(current).padStart(8) : `${humanSize(current).padStart(8)}/${humanSize(total)}`
  return bar + numbers
}

/** One pull event as dockerd would send it. */
export function toJsonMessage (event: PullEvent): JsonMessage {
  const msg: JsonMessage = { status: event.status }
  if (event.progressDetail !== undefined) {
    const detail: JsonProgressDetail = {}
    const current = event.progressDetail.current ?? 0
    const total = event.progressDetail.total ?? 0
    if (current !== 0) detail.current = current
    if (total !== 0) detail.total = total
    msg.progressDetail = detail
    const bar = formatProgress(current, total)
    if (bar !== '') msg.progress = bar
  } else if (event.id !== undefined && !event.status.startsWith('Pulling from ')) {
    // Per-layer lines carry an empty progressDetail in dockerd's output; the header line does not.
    msg.progressDetail = {}
  }
  if (event.id !== undefined) msg.id = event.id
  return msg
}

/** The line dockerd sends when a pull fails after the 200 and the first lines went out. */
export function errorMessageLine (message: string, status?: number): JsonMessage {
  return { errorDetail: { ...(status !== undefined ? { code: status } : {}), message }, error: message }
}
