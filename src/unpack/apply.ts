import {
  closeSync, constants as fsConstants, fchmodSync, fchownSync, futimesSync, lchownSync, lstatSync, lutimesSync, mkdirSync,
  openSync, readFileSync, readlinkSync, symlinkSync, writev, writevSync, chownSync, chmodSync, utimesSync, type Stats
} from 'node:fs'
import {
  chmod, chown, copyFile, lchown, link, lstat, lutimes, readdir, readlink, realpath, rm, symlink, unlink, utimes
} from 'node:fs/promises'
import { join } from 'node:path'
import { Transform, type Readable, type TransformCallback } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createHash } from 'node:crypto'
import tar from 'tar-stream'
import { JoeyError, isAbortError, isJoeyError, silentLogger, type Logger } from '../common/index.js'
import {
  MAX_COMPONENT_LENGTH, MAX_ENTRIES, MAX_FILE_SIZE, MAX_LAYER_BYTES, MAX_PATH_LENGTH, MAX_SYMLINK_HOPS,
  OVERLAY_OPAQUE_XATTR, SMALL_FILE_BYTES, TOOLS, WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE, WHITEOUT_PREFIX, WRITE_BATCH_BYTES
} from './constants.js'
import { compressionOf, decompressor, peek, sniffCompression } from './decompress.js'
import { run, ToolError } from './exec.js'
import { printable, splitEntryPath, type NameLimits } from './paths.js'
import type { ApplyOptions, ApplyResult, UnpackLimits, WhiteoutMode } from './types.js'

/** What tar-stream reports per entry (its bundled types leave pax and type open). */
interface Header {
  name: string
  type?: string | null
  size?: number
  mode?: number
  mtime?: Date
  linkname?: string | null
  uid?: number
  gid?: number
  devmajor?: number
  devminor?: number
  pax?: Record<string, string> | null
  /** Offset of the entry's data in the uncompressed tar. */
  byteOffset?: number
}

type ResolvedLimits = Required<UnpackLimits>

function resolveLimits (limits: UnpackLimits = {}): ResolvedLimits {
  return {
    maxEntries: limits.maxEntries ?? MAX_ENTRIES,
    maxPathLength: limits.maxPathLength ?? MAX_PATH_LENGTH,
    maxComponentLength: limits.maxComponentLength ?? MAX_COMPONENT_LENGTH,
    maxBytes: limits.maxBytes ?? MAX_LAYER_BYTES,
    maxFileSize: limits.maxFileSize ?? MAX_FILE_SIZE
  }
}

function noop (): void {}

/** The process umask, read without changing it (process.umask() sets it twice); undefined if unknown. */
function currentUmask (): number | undefined {
  try {
    const m = /^Umask:\s*([0-7]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))
    return m !== null ? parseInt(m[1]!, 8) : undefined
  } catch {
    return undefined
  }
}

/** The body of an entry tar-stream has fully buffered or is about to: its chunks, uncopied. */
async function readBody (data: Readable): Promise<Buffer[]> {
  return await new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let ended = false
    data.on('data', (c: Buffer) => chunks.push(c))
    data.once('end', () => { ended = true; resolve(chunks) })
    data.once('error', reject)
    data.once('close', () => { if (!ended) reject(new Error('entry stream closed before its end')) })
  })
}

function errno (err: unknown): string | undefined {
  return (err as { code?: string } | null)?.code
}

async function lstatOrNull (path: string): Promise<Stats | null> {
  try {
    return await lstat(path)
  } catch (err) {
    if (errno(err) === 'ENOENT' || errno(err) === 'ENOTDIR') return null
    throw err
  }
}

/** lstatOrNull without the thread-pool round trip (see Applier). */
function lstatOrNullSync (path: string): Stats | null {
  try {
    // A missing path is common here (every new directory); building an exception for it is not cheap.
    return lstatSync(path, { throwIfNoEntry: false }) ?? null
  } catch (err) {
    if (errno(err) === 'ENOENT' || errno(err) === 'ENOTDIR') return null
    throw err
  }
}

/** Creates a new regular file, never following or reusing whatever sits at `path`. */
const CREATE_FLAGS = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_NOFOLLOW

/** What is left of `chunks` after a (possibly short) write of `n` bytes. */
function unwritten (chunks: Buffer[], n: number): Buffer[] {
  const rest: Buffer[] = []
  for (const b of chunks) {
    if (n >= b.byteLength) { n -= b.byteLength; continue }
    rest.push(n > 0 ? b.subarray(n) : b)
    n = 0
  }
  return rest
}

/** Writes all of `chunks` at the file's current offset. */
function writeAllSync (fd: number, chunks: Buffer[]): void {
  for (let pending = chunks; pending.length > 0;) pending = unwritten(pending, writevSync(fd, pending))
}

async function writeAll (fd: number, chunks: Buffer[]): Promise<void> {
  for (let pending = chunks; pending.length > 0;) {
    const n = await new Promise<number>((resolve, reject) => {
      writev(fd, pending, (err, written) => { if (err !== null) reject(err); else resolve(written) })
    })
    pending = unwritten(pending, n)
  }
}

/** overlayfs marks a deleted path with a character device 0/0. */
function isWhiteoutDevice (st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0
}

/** Hashes and counts the uncompressed tar, and stops a decompression bomb at the byte cap. */
class Meter extends Transform {
  readonly hash = createHash('sha256')
  bytes = 0
  constructor (private readonly maxBytes: number) { super() }

  override _transform (chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.byteLength
    if (this.bytes > this.maxBytes) {
      cb(new JoeyError('ERR_LIMIT_EXCEEDED', `layer expands to more than ${this.maxBytes} bytes uncompressed`,
        { detail: { limit: this.maxBytes } }))
      return
    }
    this.hash.update(chunk)
    cb(null, chunk)
  }
}

/**
 * Applies one compressed layer (a tar changeset) to `targetDir`, refusing every entry that
 * would land outside it. On failure the target holds a partial layer: callers apply into a
 * scratch directory (an active snapshot) and discard it, as unpackImage() does.
 */
export async function applyLayer (stream: Readable, mediaType: string, targetDir: string, options: ApplyOptions = {}): Promise<ApplyResult> {
  const limits = resolveLimits(options.limits)
  const logger = options.logger ?? silentLogger()
  const signal = options.signal
  let declared: ReturnType<typeof compressionOf>
  try {
    declared = compressionOf(mediaType)
    signal?.throwIfAborted()
  } catch (err) {
    stream.destroy()
    throw isAbortError(err) ? new JoeyError('ERR_ABORTED', 'layer apply aborted', { cause: err }) : err
  }
  const rootStat = await lstatOrNull(targetDir)
  if (rootStat === null || !rootStat.isDirectory()) {
    stream.destroy()
    throw new JoeyError('ERR_NOT_FOUND', `apply target ${targetDir} is not a directory`)
  }
  const root = await realpath(targetDir)
  const applier = new Applier(root, limits, options, logger)

  const ac = new AbortController()
  const onAbort = (): void => ac.abort(signal?.reason)
  signal?.addEventListener('abort', onAbort, { once: true })
  // A stalled source would otherwise keep peek() waiting after an abort.
  ac.signal.addEventListener('abort', () => stream.destroy(), { once: true })

  const meter = new Meter(limits.maxBytes)
  const extract = tar.extract()
  let piped: Promise<void> | undefined
  let streamError: unknown
  let entryError: unknown
  let current: Promise<void> | undefined
  // Entries come through tar-stream's callback interface: one promise per entry instead of
  // an async iterator's several, which counts when a layer holds tens of thousands.
  const entries = extract as unknown as NodeJS.EventEmitter
  entries.on('entry', (h: Header, data: Readable, next: (err?: unknown) => void) => {
    // A teardown destroys the entry being read with the cause; it is reported from here.
    data.on('error', noop)
    current = applier.entry(h, data).then(() => next(), (err: unknown) => {
      entryError ??= err
      // Tears the extractor and with it the pipeline down.
      next(err)
    })
  })
  try {
    const { head, stream: replay } = await peek(stream, 4)
    // The bytes decide: a gzip blob labelled as plain tar (or the reverse) is common.
    const compression = sniffCompression(head) ?? 'none'
    if (compression !== declared) {
      logger.debug({ mediaType, detected: compression }, 'layer compression differs from its media type')
    }
    const stages = [replay, decompressor(compression), meter, extract].filter(s => s !== undefined)
    for (const stage of stages) (stage as NodeJS.EventEmitter).once('error', (e: unknown) => { streamError ??= e })
    piped = (pipeline as (...args: unknown[]) => Promise<void>)(...stages, { signal: ac.signal })
    piped.catch(() => {})
    // Resolves only after the last entry called next(): every entry has been applied.
    await piped
    await applier.finish()
  } catch (err) {
    ac.abort()
    await piped?.catch(() => {})
    // Nothing may still be writing into the target once the caller gets to remove it.
    await current?.catch(() => {})
    // A failing stage (bad gzip, byte cap) reaches the entry being written as a bare
    // "stream destroyed"; the stage's own error is the one that explains it.
    const cause = isJoeyError(entryError) ? entryError : isJoeyError(err) ? err : (streamError ?? entryError ?? err)
    throw mapError(cause, signal)
  } finally {
    signal?.removeEventListener('abort', onAbort)
  }

  const diffId = `sha256:${meter.hash.digest('hex')}`
  if (options.expectedDiffId !== undefined && options.expectedDiffId !== diffId) {
    throw new JoeyError('ERR_DIGEST_MISMATCH',
      `layer uncompresses to ${diffId}, but its diff ID is ${options.expectedDiffId}`,
      { detail: { expected: options.expectedDiffId, actual: diffId } })
  }
  return { diffId, entries: applier.entries, bytes: meter.bytes }
}

function mapError (err: unknown, signal: AbortSignal | undefined): JoeyError {
  if (isJoeyError(err)) return err
  if (signal?.aborted === true || isAbortError(err)) return new JoeyError('ERR_ABORTED', 'layer apply aborted', { cause: err })
  const code = errno(err)
  const message = err instanceof Error ? err.message : String(err)
  if (code === 'Z_BUF_ERROR' || message === 'Unexpected end of data') {
    return new JoeyError('ERR_TRUNCATED', `layer stream ended early: ${message}`, { cause: err })
  }
  if (code === 'Z_DATA_ERROR' || code === 'Z_NEED_DICT' || code === 'ERR_PADDING_1' || /gzip|zlib/i.test(message)) {
    return new JoeyError('ERR_INVALID_ARGUMENT', `layer is not a valid gzip stream: ${message}`, { cause: err })
  }
  if (/tar header|Header exceeds|Invalid header/i.test(message)) {
    return new JoeyError('ERR_INVALID_ARGUMENT', `layer is not a valid tar stream: ${message}`, { cause: err })
  }
  return new JoeyError('ERR_INTERNAL', `layer apply failed: ${message}`, { cause: err })
}

interface DirMeta { mode: number, atime: number, mtime: number }

/** Per lower layer, what a directory path is there: resolved once per apply. */
type LowerState = 'dir' | 'hidden' | 'absent'

/**
 * The entry-by-entry half of applyLayer. Every path is built from components that were
 * checked one by one on disk (lstat), so nothing is ever reached through a symlink that
 * leaves the root. The target belongs to this apply alone while it runs, which is what
 * makes check-then-act sound here without openat2(RESOLVE_IN_ROOT).
 *
 * Directories, symlinks, small files and the final directory metadata use synchronous fs
 * calls: each entry costs half a dozen metadata syscalls of a few microseconds, and sending
 * each through the thread pool cost a wake-up of a worker and of the main thread, which on
 * a busy node made a layer of small files several times slower than tar. The event loop is
 * held for one entry at a time; file data of large files still goes through async writes.
 */
class Applier {
  entries = 0
  private readonly mode: WhiteoutMode
  private readonly lowers: string[]
  private readonly chown: boolean
  private readonly names: NameLimits
  /** Paths (resolved, relative) this layer wrote: what an opaque marker must keep. */
  private readonly written = new Set<string>()
  /** Directory mode and times, set last so adding children does not undo them. */
  private readonly dirMeta = new Map<string, DirMeta>()
  /** Parent paths already resolved; cleared whenever something is removed. */
  private readonly parents = new Map<string, { real: string, rel: string[] }>()
  private readonly lowerStates = new Map<string, LowerState>()
  private setfattrMissing = false
  private readonly umask = currentUmask()

  constructor (
    private readonly root: string,
    private readonly limits: ResolvedLimits,
    private readonly options: ApplyOptions,
    private readonly logger: Logger
  ) {
    this.mode = options.whiteouts ?? 'delete'
    this.lowers = this.mode === 'overlay' ? (options.lowerDirs ?? []) : []
    this.chown = options.chown ?? (process.getuid?.() === 0)
    this.names = { maxPathLength: limits.maxPathLength, maxComponentLength: limits.maxComponentLength }
  }

  async entry (h: Header, data: Readable): Promise<void> {
    this.entries++
    if (this.entries > this.limits.maxEntries) {
      throw new JoeyError('ERR_LIMIT_EXCEEDED', `layer has more than ${this.limits.maxEntries} entries`,
        { detail: { limit: this.limits.maxEntries, entry: h.name } })
    }
    const parts = splitEntryPath(h.name, this.names)
    const label = printable(h.name)
    const consumed = await this.dispatch(h, parts, label, data)
    // Metadata entries carry no content we use: what they hold flows past. (On an error the
    // whole pipeline is torn down instead: draining a bomb would defeat the limit.)
    if (!consumed) data.resume()
  }

  /** Returns whether the entry's data was read. */
  private async dispatch (h: Header, parts: string[], label: string, data: Readable): Promise<boolean> {
    const type = h.type
    if (parts.length === 0) {
      if (type !== 'directory') {
        throw new JoeyError('ERR_UNSAFE_PATH', `entry "${label}" (${String(type)}) names the layer root itself`, { detail: { entry: h.name } })
      }
      this.dirMeta.set(this.root, this.metaOf(h))
      if (this.chown) await chown(this.root, this.uidOf(h), this.gidOf(h))
      return false
    }
    const base = parts[parts.length - 1]!
    const parentParts = parts.slice(0, -1)

    if (base.startsWith(WHITEOUT_PREFIX)) {
      if (base === WHITEOUT_OPAQUE) await this.opaque(parentParts, label)
      else if (base.startsWith(WHITEOUT_META_PREFIX)) this.logger.debug({ entry: label }, 'skipping aufs metadata entry')
      else await this.whiteout(parentParts, base.slice(WHITEOUT_PREFIX.length), label)
      return false
    }

    switch (type) {
      case 'file':
      case 'contiguous-file':
      case 'directory':
      case 'symlink':
      case 'link':
        break
      case 'character-device':
      case 'block-device':
      case 'fifo':
        if (this.options.allowDevices !== true) {
          throw new JoeyError('ERR_UNSAFE_PATH', `entry "${label}" is a ${type}; device nodes are refused unless allowDevices is set`,
            { detail: { entry: h.name, type } })
        }
        break
      default:
        throw new JoeyError('ERR_INVALID_ARGUMENT', `entry "${label}" has an unsupported tar type (${String(type)})`, { detail: { entry: h.name } })
    }

    const parent = this.parents.get(parentParts.join('/')) ?? await this.resolveParent(parentParts, label, true)
    if (parent === null) throw new JoeyError('ERR_INTERNAL', `parent of "${label}" could not be created`)
    // `base` is one checked component (not empty, `.` or `..`, no `/`): no join() needed.
    const full = parent.real.endsWith('/') ? parent.real + base : `${parent.real}/${base}`
    const rel = [...parent.rel, base].join('/')

    let consumed = false
    switch (type) {
      case 'directory': await this.directory(h, full); break
      case 'file':
      case 'contiguous-file': await this.file(h, full, label, data); consumed = true; break
      case 'symlink': await this.symlink(h, full, label); break
      case 'link': await this.hardlink(h, full, label); break
      default: await this.device(h, full, type); break
    }
    this.written.add(rel)
    return consumed
  }

  /** Resolves a parent path inside the root, creating missing directories when `create`. */
  private async resolveParent (parts: string[], label: string, create: boolean): Promise<{ real: string, rel: string[] } | null> {
    const key = parts.join('/')
    const cached = this.parents.get(key)
    if (cached !== undefined) return cached
    const resolved: string[] = []
    const queue = [...parts]
    let hops = 0
    while (queue.length > 0) {
      const c = queue.shift()!
      if (c === '' || c === '.') continue
      if (c === '..') {
        if (resolved.length === 0) {
          throw new JoeyError('ERR_UNSAFE_PATH', `entry "${label}" resolves above the layer root through a symlink`, { detail: { entry: label } })
        }
        resolved.pop()
        continue
      }
      const cand = [...resolved, c]
      const upper = join(this.root, ...cand)
      let st = lstatOrNullSync(upper)
      let path = upper
      let inUpper = st !== null
      let hidden = false
      if (st !== null && this.mode === 'overlay' && isWhiteoutDevice(st)) {
        st = null
        inUpper = false
        hidden = true
      }
      if (st === null && !hidden && this.lowers.length > 0) {
        const found = await this.lowerLookup(cand)
        if (found !== null) ({ st, path } = found)
      }
      if (st === null) {
        if (!create) return null
        if (hidden) await unlink(upper)
        mkdirSync(upper, 0o755)
        // A directory that replaces a whiteout must not let the lower one show through.
        if (hidden) await this.setOpaque(upper, label)
        resolved.push(c)
        continue
      }
      if (st.isSymbolicLink()) {
        if (++hops > MAX_SYMLINK_HOPS) {
          throw new JoeyError('ERR_UNSAFE_PATH', `entry "${label}": too many levels of symbolic links`, { detail: { entry: label } })
        }
        const target = readlinkSync(path)
        if (target.startsWith('/')) {
          throw new JoeyError('ERR_UNSAFE_PATH',
            `entry "${label}" goes through symlink "${cand.join('/')}" -> "${printable(target)}", which points outside the layer root`,
            { detail: { entry: label, symlink: cand.join('/'), target } })
        }
        // The target is relative to the directory holding the link, i.e. `resolved`.
        queue.unshift(...target.split('/'))
        continue
      }
      if (!st.isDirectory()) {
        throw new JoeyError('ERR_INVALID_ARGUMENT', `parent "${cand.join('/')}" of entry "${label}" is not a directory`,
          { detail: { entry: label, parent: cand.join('/') } })
      }
      if (!inUpper && create) {
        // Copy the lower directory's metadata up, as overlayfs would on a copy-up.
        mkdirSync(upper, st.mode & 0o7777)
        chmodSync(upper, st.mode & 0o7777)
        if (this.chown) chownSync(upper, st.uid, st.gid)
        this.dirMeta.set(upper, { mode: st.mode & 0o7777, atime: st.atimeMs / 1000, mtime: st.mtimeMs / 1000 })
      }
      resolved.push(c)
    }
    const out = { real: join(this.root, ...resolved), rel: resolved }
    if (create) this.parents.set(key, out)
    return out
  }

  /**
   * Finds a path in the lower layers, topmost first, the way the merged overlay would show
   * it. Opaque markers of lower layers are not consulted (reading xattrs would cost a
   * process per directory); they only ever hide more, never let anything escape.
   */
  private async lowerLookup (cand: string[]): Promise<{ st: Stats, path: string } | null> {
    for (let i = 0; i < this.lowers.length; i++) {
      const state = await this.lowerDirState(i, cand.slice(0, -1))
      if (state === 'hidden') return null
      if (state === 'absent') continue
      const path = join(this.lowers[i]!, ...cand)
      const st = lstatOrNullSync(path)
      if (st === null) continue
      if (isWhiteoutDevice(st)) return null
      return { st, path }
    }
    return null
  }

  /** Whether `parts` is a real directory in lower `i` (so lstat below it follows no symlink). */
  private async lowerDirState (i: number, parts: string[]): Promise<LowerState> {
    if (parts.length === 0) return 'dir'
    const key = `${i}\0${parts.join('/')}`
    const cached = this.lowerStates.get(key)
    if (cached !== undefined) return cached
    let state = await this.lowerDirState(i, parts.slice(0, -1))
    if (state === 'dir') {
      const st = lstatOrNullSync(join(this.lowers[i]!, ...parts))
      if (st === null) state = 'absent'
      else if (st.isDirectory()) state = 'dir'
      // A whiteout or a non-directory here hides this path in every layer below.
      else state = 'hidden'
    }
    this.lowerStates.set(key, state)
    return state
  }

  private async removeExisting (full: string): Promise<Stats | null> {
    const st = lstatOrNullSync(full)
    if (st === null) return null
    await rm(full, { recursive: true, force: true })
    this.parents.clear()
    return st
  }

  private async directory (h: Header, full: string): Promise<void> {
    const st = lstatOrNullSync(full)
    if (st === null || !st.isDirectory()) {
      const hidden = st !== null && this.mode === 'overlay' && isWhiteoutDevice(st)
      if (st !== null) await this.removeExisting(full)
      mkdirSync(full, 0o700)
      if (hidden) await this.setOpaque(full, h.name)
    }
    if (this.chown) chownSync(full, this.uidOf(h), this.gidOf(h))
    if (hasXattrs(h)) await this.xattrs(h, full)
    this.dirMeta.set(full, this.metaOf(h))
  }

  private async file (h: Header, full: string, label: string, data: Readable): Promise<void> {
    const size = h.size ?? 0
    const mode = (h.mode ?? 0o644) & 0o7777
    if (size > this.limits.maxFileSize) {
      throw new JoeyError('ERR_LIMIT_EXCEEDED', `entry "${label}" is ${size} bytes, over the file size limit of ${this.limits.maxFileSize}`,
        { detail: { entry: h.name, size, limit: this.limits.maxFileSize } })
    }
    if ((h.byteOffset ?? 0) + size > this.limits.maxBytes) {
      throw new JoeyError('ERR_LIMIT_EXCEEDED', `entry "${label}" (${size} bytes) would take the layer past ${this.limits.maxBytes} bytes uncompressed`,
        { detail: { entry: h.name, size, limit: this.limits.maxBytes } })
    }
    if (size <= SMALL_FILE_BYTES) {
      // Read first (the data is already decompressed in memory), then write in one go.
      const chunks = await readBody(data)
      const fd = this.createNew(full, mode) ?? await this.replace(full, mode)
      try {
        writeAllSync(fd, chunks)
        await this.fileMeta(fd, h, full, mode)
      } finally {
        closeSync(fd)
      }
      return
    }
    const fd = this.createNew(full, mode) ?? await this.replace(full, mode)
    // One ~1 MiB vectored write in flight while the next batch is read: decompression and
    // writing overlap instead of taking turns.
    let inflight: Promise<void> | undefined
    try {
      let batch: Buffer[] = []
      let batched = 0
      for await (const chunk of data as AsyncIterable<Buffer>) {
        batch.push(chunk)
        batched += chunk.byteLength
        if (batched < WRITE_BATCH_BYTES) continue
        await inflight
        inflight = writeAll(fd, batch)
        inflight.catch(() => {})
        batch = []
        batched = 0
      }
      await inflight
      if (batched > 0) await writeAll(fd, batch)
      await this.fileMeta(fd, h, full, mode)
    } finally {
      // Never close (and free the number of) an fd a write is still using.
      await inflight?.catch(() => {})
      closeSync(fd)
    }
  }

  private async fileMeta (fd: number, h: Header, full: string, mode: number): Promise<void> {
    if (this.chown) fchownSync(fd, this.uidOf(h), this.gidOf(h))
    if (hasXattrs(h)) await this.xattrs(h, full)
    // After chown: the kernel clears setuid/setgid on a chown.
    if (this.createMode(mode) !== mode) fchmodSync(fd, mode)
    const { atime, mtime } = this.metaOf(h)
    futimesSync(fd, atime, mtime)
  }

  /**
   * The mode to create a file with: its final mode when open(2) alone yields exactly that
   * (no setuid/setgid/sticky bit, nothing the umask takes away), which saves an fchmod per
   * file; otherwise 0600 until fchmod sets it.
   */
  private createMode (mode: number): number {
    return this.umask !== undefined && (mode & ~0o777) === 0 && (mode & this.umask) === 0 ? mode : 0o600
  }

  /** A new regular file at `full` (O_EXCL|O_NOFOLLOW), or undefined when something is there. */
  private createNew (full: string, mode: number): number | undefined {
    try {
      return openSync(full, CREATE_FLAGS, this.createMode(mode))
    } catch (err) {
      if (errno(err) !== 'EEXIST') throw err
      return undefined
    }
  }

  /** Replaces what the layers below put at `full` with a new regular file. */
  private async replace (full: string, mode: number): Promise<number> {
    await this.removeExisting(full)
    return openSync(full, CREATE_FLAGS, this.createMode(mode))
  }

  private async symlink (h: Header, full: string, label: string): Promise<void> {
    const target = h.linkname ?? ''
    if (target === '' || target.includes('\0')) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `symlink "${label}" has an empty or invalid target`, { detail: { entry: h.name } })
    }
    if (Buffer.byteLength(target) > this.limits.maxPathLength) {
      throw new JoeyError('ERR_LIMIT_EXCEEDED', `symlink "${label}" has a target over ${this.limits.maxPathLength} bytes`,
        { detail: { entry: h.name, limit: this.limits.maxPathLength } })
    }
    // The target is stored as is: a symlink is only dangerous when followed, and nothing
    // here ever follows one out of the root.
    try {
      symlinkSync(target, full)
    } catch (err) {
      if (errno(err) !== 'EEXIST') throw err
      await this.removeExisting(full)
      symlinkSync(target, full)
    }
    if (this.chown) lchownSync(full, this.uidOf(h), this.gidOf(h))
    if (hasXattrs(h)) await this.xattrs(h, full)
    const { atime, mtime } = this.metaOf(h)
    lutimesSync(full, atime, mtime)
  }

  private async hardlink (h: Header, full: string, label: string): Promise<void> {
    const targetParts = splitEntryPath(h.linkname ?? '', this.names, `hard link target of "${label}"`)
    if (targetParts.length === 0) {
      throw new JoeyError('ERR_UNSAFE_PATH', `hard link "${label}" points at the layer root`, { detail: { entry: h.name } })
    }
    const target = await this.linkTarget(targetParts, label)
    if (target === full) return
    await this.removeExisting(full)
    // link(2) does not follow a symlink at the target: a link to a symlink is a second name
    // for the symlink itself, still inside the root.
    await link(target, full)
  }

  /** The real path of an existing hard link target; copied up from a lower layer in overlay mode. */
  private async linkTarget (parts: string[], label: string): Promise<string> {
    const name = parts.join('/')
    const missing = (): JoeyError => new JoeyError('ERR_INVALID_ARGUMENT',
      `hard link "${label}" points at "${printable(name)}", which does not exist in this layer or below`, { detail: { entry: label, target: name } })
    const base = parts[parts.length - 1]!
    const parent = await this.resolveParent(parts.slice(0, -1), label, false)
    if (parent === null) throw missing()
    const upper = join(parent.real, base)
    let st = await lstatOrNull(upper)
    if (st !== null && !(this.mode === 'overlay' && isWhiteoutDevice(st))) {
      if (st.isDirectory()) {
        throw new JoeyError('ERR_INVALID_ARGUMENT', `hard link "${label}" points at directory "${printable(name)}"`, { detail: { entry: label, target: name } })
      }
      return upper
    }
    if (st !== null || this.lowers.length === 0) throw missing()
    const found = await this.lowerLookup([...parent.rel, base])
    if (found === null) throw missing()
    st = found.st
    if (!st.isFile() && !st.isSymbolicLink()) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `hard link "${label}" points at "${printable(name)}", which is not a file`, { detail: { entry: label, target: name } })
    }
    // overlayfs cannot link across layers: copy the target up first, as the kernel would.
    await this.resolveParent(parts.slice(0, -1), label, true)
    if (st.isSymbolicLink()) {
      await symlink(await readlink(found.path), upper)
      if (this.chown) await lchown(upper, st.uid, st.gid)
      await lutimes(upper, st.atimeMs / 1000, st.mtimeMs / 1000)
    } else {
      await copyFile(found.path, upper, fsConstants.COPYFILE_EXCL | fsConstants.COPYFILE_FICLONE)
      if (this.chown) await chown(upper, st.uid, st.gid)
      await chmod(upper, st.mode & 0o7777)
      await utimes(upper, st.atimeMs / 1000, st.mtimeMs / 1000)
    }
    return upper
  }

  private async device (h: Header, full: string, type: 'character-device' | 'block-device' | 'fifo'): Promise<void> {
    await this.removeExisting(full)
    const args = type === 'fifo'
      ? [full, 'p']
      : [full, type === 'character-device' ? 'c' : 'b', String(h.devmajor ?? 0), String(h.devminor ?? 0)]
    await run(TOOLS.mknod, ['-m', '0600', '--', ...args])
    if (this.chown) await chown(full, this.uidOf(h), this.gidOf(h))
    await chmod(full, (h.mode ?? 0o600) & 0o7777)
    const { atime, mtime } = this.metaOf(h)
    await utimes(full, atime, mtime)
  }

  private async whiteout (parentParts: string[], name: string, label: string): Promise<void> {
    if (name === '' || name === '.' || name === '..') {
      throw new JoeyError('ERR_UNSAFE_PATH', `whiteout "${label}" names no file`, { detail: { entry: label } })
    }
    if (this.mode === 'delete') {
      const parent = await this.resolveParent(parentParts, label, false)
      if (parent === null) return
      await this.removeExisting(join(parent.real, name))
      this.forget([...parent.rel, name].join('/'))
      return
    }
    const parent = await this.resolveParent(parentParts, label, true)
    if (parent === null) return
    const full = join(parent.real, name)
    await this.removeExisting(full)
    await run(TOOLS.mknod, ['-m', '0000', '--', full, 'c', '0', '0'])
    this.forget([...parent.rel, name].join('/'))
  }

  private async opaque (parentParts: string[], label: string): Promise<void> {
    const dir = await this.resolveParent(parentParts, label, true)
    if (dir === null) return
    if (this.mode === 'overlay') {
      await this.setOpaque(dir.real, label)
      return
    }
    // Keep what this layer already put there; everything else came from below.
    await this.clearLower(dir.real, dir.rel.join('/'))
    this.parents.clear()
  }

  private async clearLower (dir: string, rel: string): Promise<void> {
    for (const name of await readdir(dir)) {
      const childRel = rel === '' ? name : `${rel}/${name}`
      const child = join(dir, name)
      if (!this.written.has(childRel)) {
        await rm(child, { recursive: true, force: true })
        this.forget(childRel)
        continue
      }
      const st = await lstat(child)
      if (st.isDirectory()) await this.clearLower(child, childRel)
    }
  }

  /** Drops bookkeeping for a removed path so nothing is applied to it (or its replacement) later. */
  private forget (rel: string): void {
    this.written.delete(rel)
    const prefix = join(this.root, rel)
    for (const key of this.dirMeta.keys()) {
      if (key === prefix || key.startsWith(prefix + '/')) this.dirMeta.delete(key)
    }
  }

  private async setOpaque (dir: string, label: string): Promise<void> {
    try {
      await run(TOOLS.setfattr, ['-h', '-n', OVERLAY_OPAQUE_XATTR, '-v', 'y', '--', dir])
    } catch (err) {
      throw new JoeyError('ERR_FAILED_PRECONDITION', `cannot mark "${printable(label)}" opaque for overlayfs: ${(err as Error).message}`, { cause: err })
    }
  }

  /** Applies SCHILY/LIBARCHIVE xattrs where the filesystem allows; never overlayfs' own. */
  private async xattrs (h: Header, full: string): Promise<void> {
    const pax = h.pax
    if (pax === null || pax === undefined) return
    for (const [key, raw] of Object.entries(pax)) {
      let name: string
      let value: Buffer
      if (key.startsWith('SCHILY.xattr.')) {
        name = key.slice('SCHILY.xattr.'.length)
        // tar-stream decodes PAX values as UTF-8; a replacement character means the binary
        // value did not survive and writing it would corrupt the attribute.
        if (raw.includes('\uFFFD')) {
          this.logger.warn({ entry: printable(h.name), xattr: name }, 'skipping xattr with a binary value that did not decode')
          continue
        }
        value = Buffer.from(raw, 'utf8')
      } else if (key.startsWith('LIBARCHIVE.xattr.')) {
        name = decodeURIComponent(key.slice('LIBARCHIVE.xattr.'.length))
        value = Buffer.from(raw, 'base64')
      } else continue
      if (!xattrAllowed(name)) {
        this.logger.debug({ entry: printable(h.name), xattr: name }, 'skipping xattr outside the allowed namespaces')
        continue
      }
      if (this.setfattrMissing) continue
      try {
        await run(TOOLS.setfattr, ['-h', '-n', name, '-v', `0x${value.toString('hex')}`, '--', full])
      } catch (err) {
        if (isJoeyError(err, 'ERR_FAILED_PRECONDITION')) {
          this.setfattrMissing = true
          this.logger.warn({ err }, 'setfattr is missing: layer xattrs are not applied')
        } else if (err instanceof ToolError && /not supported/i.test(err.stderr)) {
          this.logger.debug({ entry: printable(h.name), xattr: name }, 'filesystem does not support this xattr')
        } else {
          this.logger.warn({ err, entry: printable(h.name), xattr: name }, 'could not set xattr')
        }
      }
    }
  }

  private uidOf (h: Header): number {
    const v = h.pax?.uid
    return v !== undefined && /^\d+$/.test(v) ? Number(v) : (h.uid ?? 0)
  }

  private gidOf (h: Header): number {
    const v = h.pax?.gid
    return v !== undefined && /^\d+$/.test(v) ? Number(v) : (h.gid ?? 0)
  }

  private metaOf (h: Header): DirMeta {
    const paxTime = (v: string | undefined): number | undefined =>
      v !== undefined && /^-?\d+(\.\d+)?$/.test(v) ? Number(v) : undefined
    const mtime = paxTime(h.pax?.mtime) ?? (h.mtime !== undefined ? h.mtime.getTime() / 1000 : 0)
    const atime = paxTime(h.pax?.atime) ?? mtime
    return { mode: (h.mode ?? 0o755) & 0o7777, atime, mtime }
  }

  /** Directory modes and times go last: creating children changes a directory's mtime. */
  async finish (): Promise<void> {
    for (const [dir, meta] of [...this.dirMeta.entries()].reverse()) {
      const st = lstatOrNullSync(dir)
      // Only ever a directory this apply saw: chmod and utimes follow symlinks.
      if (st === null || !st.isDirectory()) continue
      chmodSync(dir, meta.mode)
      utimesSync(dir, meta.atime, meta.mtime)
    }
  }
}

function hasXattrs (h: Header): boolean {
  if (h.pax === null || h.pax === undefined) return false
  return Object.keys(h.pax).some(k => k.startsWith('SCHILY.xattr.') || k.startsWith('LIBARCHIVE.xattr.'))
}

function xattrAllowed (name: string): boolean {
  if (name.startsWith('trusted.overlay.')) return false
  return name.startsWith('user.') || name.startsWith('trusted.') || name === 'security.capability'
}
