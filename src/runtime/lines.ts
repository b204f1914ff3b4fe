// Shared by the shim (which runs on its own, so this file imports only node: modules) and
// the service: how output is cut into docker json-file entries and how they are read back.

/**
 * Cuts a byte stream into lines that keep their '\n', as docker's log copier does; a line
 * longer than `max` is emitted in `max`-byte partial pieces, and a trailing piece without
 * newline is emitted by end().
 */
export class LineSplitter {
  private pending: Buffer[] = []
  private pendingBytes = 0

  constructor (private readonly max: number, private readonly emit: (line: Buffer) => void) {}

  push (chunk: Buffer): void {
    let start = 0
    while (start < chunk.length) {
      const nl = chunk.indexOf(10, start)
      const end = nl === -1 ? chunk.length : nl + 1
      this.pending.push(chunk.subarray(start, end))
      this.pendingBytes += end - start
      start = end
      if (nl !== -1) this.flush()
      else this.cut()
    }
  }

  end (): void {
    this.flush()
  }

  private cut (): void {
    if (this.pendingBytes < this.max) return
    let all = Buffer.concat(this.pending)
    while (all.length >= this.max) {
      this.emit(all.subarray(0, this.max))
      all = all.subarray(this.max)
    }
    this.pending = all.length > 0 ? [all] : []
    this.pendingBytes = all.length
  }

  private flush (): void {
    this.cut()
    if (this.pendingBytes === 0) return
    const line = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending)
    this.pending = []
    this.pendingBytes = 0
    this.emit(line)
  }
}

/** A wall clock with nanosecond digits that never goes backwards within one process. */
export function createClock (): () => string {
  const baseNs = BigInt(Date.now()) * 1_000_000n
  const baseHr = process.hrtime.bigint()
  return () => formatNs(baseNs + (process.hrtime.bigint() - baseHr))
}

/** RFC 3339 with nine fraction digits, docker's `time` field format. */
export function formatNs (ns: bigint): string {
  const ms = Number(ns / 1_000_000n)
  const frac = (ns % 1_000_000_000n).toString().padStart(9, '0')
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, `.${frac}Z`)
}

export function encodeEntry (stream: 'stdout' | 'stderr', line: Buffer, time: string): string {
  return JSON.stringify({ log: line.toString('utf8'), stream, time }) + '\n'
}

export interface RawEntry { log: string, stream: 'stdout' | 'stderr', time: string }

/** undefined for a line that is not a json-file entry (a torn write after a crash). */
export function decodeEntry (text: string): RawEntry | undefined {
  try {
    const v = JSON.parse(text) as Partial<RawEntry>
    if (typeof v.log !== 'string' || (v.stream !== 'stdout' && v.stream !== 'stderr') || typeof v.time !== 'string') return undefined
    return v as RawEntry
  } catch {
    return undefined
  }
}
