import { PROGRESS_BAR_MIN_WIDTH, PROGRESS_BAR_WIDTH } from './constants.js'
import type { JSONMessage, ProgressDetail } from './types.js'
import { humanSize, shortDuration } from './units.js'

/** Where progress goes: process.stdout or anything with the same few members. */
export interface ProgressSink {
  write: (chunk: string) => unknown
  isTTY?: boolean
  columns?: number
  rows?: number
}

export interface ProgressBarOptions {
  /** Characters between the brackets, not counting the arrow head; 0 leaves the bar out. */
  barWidth?: number
  /** Current time in ms, for the time-left estimate. */
  nowMs?: number
}

const CSI = '\x1b['
const CLEAR_LINE = `${CSI}2K`

/**
 * docker's progress text: `[=====>      ]  12.35MB/45.6MB 3s`, the numbers right-aligned to
 * 8 characters so a column of layers lines up. Empty when there is nothing to show yet.
 */
export function renderProgressBar (detail: ProgressDetail, options: ProgressBarOptions = {}): string {
  const current = detail.current ?? 0
  const total = detail.total ?? 0
  const units = detail.units ?? ''
  if (current <= 0 && total <= 0) return ''
  if (total <= 0) return units !== '' ? `${current} ${units}` : humanSize(current).padStart(8)

  const width = Math.max(0, options.barWidth ?? PROGRESS_BAR_WIDTH)
  let bar = ''
  if (width > 0) {
    const filled = Math.min(width, Math.floor((current / total) * width))
    bar = `[${'='.repeat(filled)}>${' '.repeat(width - filled)}] `
  }
  let numbers: string
  if (units !== '') numbers = current > total ? `${current} ${units}` : `${current}/${total} ${units}`
  else numbers = current > total ? humanSize(current).padStart(8) : `${humanSize(current).padStart(8)}/${humanSize(total)}`

  let left = ''
  const start = detail.start ?? 0
  if (current > 0 && current < total && start > 0 && options.nowMs !== undefined) {
    const elapsed = options.nowMs - start * 1000
    if (elapsed > 0) left = ' ' + shortDuration((total - current) * (elapsed / current))
  }
  return bar + numbers + left
}

export interface ProgressRendererOptions {
  /** Redraw lines in place; defaults to the sink's isTTY. */
  tty?: boolean
  now?: () => number
}

/**
 * Shows a stream of pull messages. On a terminal each layer id owns one line, in first-seen
 * order, rewritten in place with cursor movement; elsewhere (logs, pipes) it prints a plain
 * line only when a layer's status changes, never a progress bar.
 */
export class ProgressRenderer {
  private readonly out: ProgressSink
  private readonly tty: boolean
  private readonly now: () => number
  /** Terminal mode: the output line each id owns, counted from the first line written. */
  private readonly lineOf = new Map<string, number>()
  private lines = 0
  /** Plain mode: the last status printed per id. */
  private readonly lastStatus = new Map<string, string>()
  private lastPlain: string | undefined

  constructor (out: ProgressSink, options: ProgressRendererOptions = {}) {
    this.out = out
    this.tty = options.tty ?? out.isTTY === true
    this.now = options.now ?? Date.now
  }

  render (msg: JSONMessage): void {
    if (typeof msg.stream === 'string') {
      for (const line of msg.stream.replace(/\n$/, '').split('\n')) this.writeLine(line)
      return
    }
    const status = msg.status ?? ''
    const id = msg.id ?? ''
    if (this.tty) this.renderTerminal(id, status, msg)
    else this.renderPlain(id, status)
  }

  private renderPlain (id: string, status: string): void {
    if (id === '') {
      if (status === '' || status === this.lastPlain) return
      this.lastPlain = status
      this.out.write(`${status}\n`)
      return
    }
    if (this.lastStatus.get(id) === status) return
    this.lastStatus.set(id, status)
    this.out.write(`${id}: ${status}\n`)
  }

  private renderTerminal (id: string, status: string, msg: JSONMessage): void {
    const text = this.fit(this.terminalText(id, status, msg))
    if (id === '') {
      if (text !== '') this.writeLine(text)
      return
    }
    const line = this.lineOf.get(id)
    const up = line === undefined ? undefined : this.lines - line
    // A line scrolled off the top of the screen cannot be reached; give the id a new one.
    const reachable = up !== undefined && (this.out.rows === undefined || this.out.rows <= 0 || up < this.out.rows)
    if (up !== undefined && reachable) {
      this.out.write(`${CSI}${up}A\r${CLEAR_LINE}${text}${CSI}${up}B\r`)
      return
    }
    this.lineOf.set(id, this.lines)
    this.writeLine(text)
  }

  private writeLine (text: string): void {
    this.out.write(this.tty ? `\r${CLEAR_LINE}${text}\n` : `${text}\n`)
    this.lines++
  }

  private terminalText (id: string, status: string, msg: JSONMessage): string {
    const prefix = (id !== '' ? `${id}: ` : '') + status
    if (msg.progressDetail === undefined) {
      return typeof msg.progress === 'string' && msg.progress !== '' ? `${prefix} ${msg.progress}` : prefix
    }
    const nowMs = this.now()
    const full = renderProgressBar(msg.progressDetail, { nowMs })
    if (full === '') return prefix
    const columns = this.columns()
    if (columns === undefined || prefix.length + 1 + full.length < columns) return `${prefix} ${full}`
    // Narrow terminal: shrink the bar, then drop it, so each id stays on one physical line.
    const bare = renderProgressBar(msg.progressDetail, { nowMs, barWidth: 0 })
    const room = columns - 1 - (prefix.length + 1) - bare.length - 4
    const barWidth = Math.min(PROGRESS_BAR_WIDTH, room)
    return `${prefix} ${barWidth >= PROGRESS_BAR_MIN_WIDTH ? renderProgressBar(msg.progressDetail, { nowMs, barWidth }) : bare}`
  }

  /** A line wider than the terminal wraps and breaks the cursor arithmetic, so it is cut. */
  private fit (text: string): string {
    const columns = this.columns()
    if (columns === undefined || text.length < columns) return text
    return text.slice(0, Math.max(1, columns - 1))
  }

  private columns (): number | undefined {
    const c = this.out.columns
    return c !== undefined && c > 0 ? c : undefined
  }
}
