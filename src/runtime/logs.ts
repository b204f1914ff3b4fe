import { watch, type FSWatcher } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { StringDecoder } from 'node:string_decoder'
import { JoeyError } from '../common/index.js'
import { POLL_MS } from './constants.js'
import { decodeEntry } from './lines.js'
import type { LogEntry } from './types.js'

const CHUNK = 64 * 1024

export interface ReadLogOptions {
  path: string
  stdout: boolean
  stderr: boolean
  sinceMs?: number
  untilMs?: number
  tail?: number
  /** Byte offset to start at (attach starts at the current end). */
  offset?: number
  follow: boolean
  /** Whether no more output will be written; checked before the last read. */
  done: () => boolean
  /** Registers a wake-up (the container exited or was removed); returns the unsubscribe. */
  subscribe: (wake: () => void) => () => void
  signal?: AbortSignal
}

/** Parses docker's `--since`/`--until` forms: Date, unix seconds (fractions allowed) or RFC 3339. */
export function parseTime (value: Date | number | string | undefined, field: string): number | undefined {
  if (value === undefined || value === '') return undefined
  if (value instanceof Date) return value.getTime()
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new JoeyError('ERR_INVALID_ARGUMENT', `${field} must be a time, got ${value}`)
    return value * 1000
  }
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value) * 1000
  const ms = Date.parse(value)
  if (Number.isNaN(ms)) throw new JoeyError('ERR_INVALID_ARGUMENT', `${field} "${value}" is not a unix timestamp or RFC 3339 time`, { detail: { [field]: value } })
  return ms
}

/**
 * Reads a json-file log, optionally following it: at the end of the file it waits for the
 * file to grow (inotify, with a poll as a safety net) until `done()` held before a read that
 * reached the end, so nothing written before the exit is lost. Memory stays bounded by one
 * chunk plus `tail` entries.
 */
export async function * readLog (opts: ReadLogOptions): AsyncGenerator<LogEntry> {
  let fh: FileHandle | undefined
  let watcher: FSWatcher | undefined
  let wake: (() => void) | undefined
  let timer: NodeJS.Timeout | undefined
  const unsubscribe = opts.subscribe(() => wake?.())
  const onAbort = (): void => wake?.()
  opts.signal?.addEventListener('abort', onAbort)

  const sleep = async (): Promise<void> => {
    await new Promise<void>(resolve => {
      wake = resolve
      timer = setTimeout(resolve, POLL_MS)
    })
    clearTimeout(timer)
    wake = undefined
  }

  try {
    // A created container's log may not exist yet when a follower arrives.
    while (fh === undefined) {
      try {
        fh = await open(opts.path, 'r')
      } catch (err) {
        if ((err as { code?: string }).code !== 'ENOENT') throw err
        if (!opts.follow || opts.done() || opts.signal?.aborted === true) return
        await sleep()
      }
    }
    if (opts.follow) {
      try {
        watcher = watch(opts.path, { persistent: false }, () => wake?.())
        watcher.on('error', () => {})
      } catch {}
    }

    let offset = opts.offset ?? 0
    let carry = ''
    const decoder = new StringDecoder('utf8')
    const buf = Buffer.allocUnsafe(CHUNK)
    const ring: LogEntry[] = []
    let tailing = opts.tail !== undefined
    const tail = opts.tail ?? 0

    const readAvailable = function * (n: number): Generator<LogEntry> {
      carry += decoder.write(buf.subarray(0, n))
      let nl = carry.indexOf('\n')
      while (nl !== -1) {
        const text = carry.slice(0, nl)
        carry = carry.slice(nl + 1)
        nl = carry.indexOf('\n')
        const e = decodeEntry(text)
        if (e === undefined) continue
        if (e.stream === 'stdout' ? !opts.stdout : !opts.stderr) continue
        if (opts.sinceMs !== undefined || opts.untilMs !== undefined) {
          const t = Date.parse(e.time)
          if (opts.sinceMs !== undefined && t < opts.sinceMs) continue
          if (opts.untilMs !== undefined && t >= opts.untilMs) continue
        }
        yield { stream: e.stream, line: Buffer.from(e.log, 'utf8'), time: e.time }
      }
    }

    for (;;) {
      const wasDone = !opts.follow || opts.done()
      for (;;) {
        if (isAborted(opts.signal)) return
        const { bytesRead } = await fh.read(buf, 0, CHUNK, offset)
        if (bytesRead === 0) break
        offset += bytesRead
        for (const entry of readAvailable(bytesRead)) {
          if (tailing) {
            if (tail <= 0) continue
            ring.push(entry)
            if (ring.length > tail) ring.shift()
          } else {
            yield entry
          }
        }
      }
      if (tailing) {
        tailing = false
        yield * ring.splice(0)
      }
      if (wasDone || isAborted(opts.signal)) return
      await sleep()
    }
  } finally {
    clearTimeout(timer)
    unsubscribe()
    opts.signal?.removeEventListener('abort', onAbort)
    watcher?.close()
    await fh?.close()
  }
}

function isAborted (signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true
}
