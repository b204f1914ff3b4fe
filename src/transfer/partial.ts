/**
 * Partial blobs for piece transfer: pieces arrive in any order from several parents, so
 * they are written at their offsets into a sparse file beside the content store, with
 * the piece bitmap and the trusted piece digests kept in a small state file.
 *
 * A piece is marked held only after its bytes hashed to the trusted digest and were
 * written. The state file is rewritten at most every STATE_FLUSH_MS, and after a restart
 * every piece it claims is re-read and re-verified, so a crash can cost a few pieces but
 * never lets an unverified byte be served. The whole blob is verified again by the
 * content store at commit.
 */
import { open, mkdir, readFile, writeFile, rename, rm, stat, type FileHandle } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { EventEmitter } from 'node:events'
import { Readable } from 'node:stream'
import { JoeyError, digestHex, isDigest, receivedPieceDigest, sha256, type Logger } from '../common/index.js'
import { Bitfield } from '../common/index.js'

export const STATE_FLUSH_MS = 100

export interface PartialBlobInit {
  digest: string
  size: number
  pieceSize: number
}

interface StateFile {
  digest: string
  size: number
  pieceSize: number
  pieceDigests: Array<string | null>
  have: string // base64 bitfield
}

export class PartialBlob extends EventEmitter {
  readonly digest: string
  readonly size: number
  readonly pieceSize: number
  readonly pieceCount: number
  readonly have: Bitfield
  readonly pieceDigests: Array<string | undefined>
  readonly dir: string
  private fh?: FileHandle
  private flushTimer?: NodeJS.Timeout
  private closed = false
  private readonly writing = new Map<number, Promise<void>>()
  private readers = 0
  private removeWhenIdle?: () => void
  private verifiedResult?: boolean
  private readonly verifiedWaiters: Array<(ok: boolean) => void> = []

  constructor (dir: string, init: PartialBlobInit) {
    super()
    this.setMaxListeners(0)
    this.dir = dir
    this.digest = init.digest
    this.size = init.size
    this.pieceSize = init.pieceSize
    this.pieceCount = Math.max(1, Math.ceil(init.size / init.pieceSize))
    this.have = new Bitfield(this.pieceCount)
    this.pieceDigests = new Array(this.pieceCount).fill(undefined)
  }

  get dataPath (): string { return join(this.dir, 'data') }
  private get statePath (): string { return join(this.dir, 'state.json') }

  /** Opens the data file, and on resume re-verifies every piece the state file claims. */
  async open (logger: Logger): Promise<void> {
    await mkdir(this.dir, { recursive: true })
    this.fh = await open(this.dataPath, 'a+')
    await this.fh.close()
    this.fh = await open(this.dataPath, 'r+')
    await this.fh.truncate(this.size)
    let state: StateFile | undefined
    try {
      state = JSON.parse(await readFile(this.statePath, 'utf8')) as StateFile
    } catch {}
    if (state === undefined || state.digest !== this.digest || state.size !== this.size || state.pieceSize !== this.pieceSize) return
    const claimed = Bitfield.fromBytes(Buffer.from(state.have, 'base64'), this.pieceCount)
    let kept = 0
    for (let i = 0; i < this.pieceCount; i++) {
      const d = state.pieceDigests[i]
      if (typeof d === 'string' && isDigest(d)) this.pieceDigests[i] = d
      if (!claimed.has(i) || this.pieceDigests[i] === undefined) continue
      const bytes = await this.readRange(i)
      if (sha256(bytes) === this.pieceDigests[i]) {
        this.have.set(i)
        kept++
      }
    }
    logger.debug({ digest: this.digest, kept, claimed: claimed.count }, 'resumed partial blob')
  }

  /** Learns trusted piece digests (from the supernode / seed). */
  /** Learns trusted piece digests; `digests[k]` is piece `from + k`'s. */
  setPieceDigests (digests: Array<string | null | undefined>, from = 0): void {
    if (!Number.isSafeInteger(from) || from < 0) throw new JoeyError('ERR_PROTOCOL', `bad piece digest offset ${String(from)}`)
    for (let i = from; i < Math.min(from + digests.length, this.pieceCount); i++) {
      const d = digests[i - from]
      if (typeof d === 'string' && this.pieceDigests[i] === undefined) {
        if (!isDigest(d)) throw new JoeyError('ERR_INVALID_DIGEST', `bad piece digest ${d} for piece ${i}`)
        this.pieceDigests[i] = d
      }
    }
    this.scheduleFlush()
  }

  pieceRange (index: number): { offset: number, length: number } {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.pieceCount) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `piece ${index} out of range (0..${this.pieceCount - 1}) for ${this.digest}`)
    }
    const offset = index * this.pieceSize
    return { offset, length: Math.min(this.pieceSize, this.size - offset) }
  }

  /**
   * Verifies and stores a piece. Without a trusted digest (`trust: 'self'`, only for bytes
   * read from the origin or the seed's own fetch) the digest is computed and recorded.
   */
  async writePiece (index: number, data: Uint8Array, options: { trust?: 'self' } = {}): Promise<string> {
    const { offset, length } = this.pieceRange(index)
    if (data.byteLength !== length) {
      throw new JoeyError('ERR_SIZE_MISMATCH', `piece ${index} of ${this.digest} has ${data.byteLength} bytes, expected ${length}`, { detail: { index, expected: length, actual: data.byteLength } })
    }
    // A piece session hashed these bytes as they arrived; the hash is checked here against
    // the digest this node trusts (the peer's own claim was all the session could check).
    const actual = receivedPieceDigest(data) ?? sha256(data)
    const expected = this.pieceDigests[index]
    if (expected === undefined && options.trust !== 'self') {
      throw new JoeyError('ERR_FAILED_PRECONDITION', `no trusted digest for piece ${index} of ${this.digest}`)
    }
    if (expected !== undefined && expected !== actual) {
      throw new JoeyError('ERR_DIGEST_MISMATCH', `piece ${index} of ${this.digest} hashed to ${actual}, expected ${expected}`, { detail: { index, expected, actual } })
    }
    if (this.have.has(index)) return actual
    const pending = this.writing.get(index)
    if (pending !== undefined) { await pending; return actual }
    const fh = this.handle()
    const p = (async () => {
      let written = 0
      while (written < length) {
        const { bytesWritten } = await fh.write(data, written, length - written, offset + written)
        written += bytesWritten
      }
    })()
    this.writing.set(index, p)
    try { await p } finally { this.writing.delete(index) }
    this.pieceDigests[index] = actual
    this.have.set(index)
    this.scheduleFlush()
    this.emit('piece', index, actual)
    if (this.have.count === this.pieceCount) this.emit('complete')
    return actual
  }

  /** Bytes of a held (verified) piece. */
  async readPiece (index: number): Promise<Uint8Array> {
    if (!this.have.has(index)) throw new JoeyError('ERR_NOT_FOUND', `piece ${index} of ${this.digest} is not held`)
    return await this.readRange(index)
  }

  private async readRange (index: number): Promise<Buffer> {
    const { offset, length } = this.pieceRange(index)
    const buf = Buffer.allocUnsafe(length)
    let read = 0
    const fh = this.handle()
    while (read < length) {
      const { bytesRead } = await fh.read(buf, read, length - read, offset + read)
      if (bytesRead === 0) break
      read += bytesRead
    }
    if (read !== length) throw new JoeyError('ERR_TRUNCATED', `short read of piece ${index} of ${this.digest}`)
    return buf
  }

  get complete (): boolean { return this.have.count === this.pieceCount }

  /** Waits until a piece is held (or the signal aborts / the blob is closed). */
  async waitFor (index: number, signal?: AbortSignal): Promise<void> {
    if (this.have.has(index)) return
    await new Promise<void>((resolve, reject) => {
      const onPiece = (i: number): void => { if (i === index) done() }
      const onClose = (): void => { cleanup(); reject(new JoeyError('ERR_ABORTED', `transfer of ${this.digest} ended before piece ${index}`)) }
      const onAbort = (): void => { cleanup(); reject(new JoeyError('ERR_ABORTED', 'aborted')) }
      const done = (): void => { cleanup(); resolve() }
      const cleanup = (): void => {
        this.off('piece', onPiece); this.off('closed', onClose); signal?.removeEventListener('abort', onAbort)
      }
      this.on('piece', onPiece)
      this.on('closed', onClose)
      signal?.addEventListener('abort', onAbort, { once: true })
      if (signal?.aborted === true) onAbort()
    })
  }

  /**
   * Streams the blob from `start` to `end` (inclusive) in order, each piece as soon as it
   * is verified: what a mirror client reads while the swarm is still filling the blob.
   */
  stream (options: { start?: number, end?: number, signal?: AbortSignal } = {}): Readable {
    const start = options.start ?? 0
    const end = options.end ?? this.size - 1
    this.retain()
    const gen = async function * (this: PartialBlob): AsyncGenerator<Buffer> {
      let pos = start
      while (pos <= end) {
        const index = Math.floor(pos / this.pieceSize)
        await this.waitFor(index, options.signal)
        const { offset, length } = this.pieceRange(index)
        const piece = await this.readRange(index)
        // The last bytes of the blob go out only once the whole blob is verified, so a
        // reader never receives a complete blob that fails its digest.
        if (index === this.pieceCount - 1 && !(await this.waitVerified())) {
          throw new JoeyError('ERR_DIGEST_MISMATCH', `blob ${this.digest} failed verification`)
        }
        const from = pos - offset
        const to = Math.min(length, end - offset + 1)
        yield piece.subarray(from, to)
        pos = offset + to
      }
    }
    const readable = Readable.from(gen.call(this), { objectMode: false })
    let released = false
    const done = (): void => { if (!released) { released = true; this.release() } }
    readable.once('close', done)
    readable.once('end', done)
    readable.once('error', done)
    return readable
  }

  /** Whether the whole blob was verified (undefined while unknown). */
  get verified (): boolean | undefined { return this.verifiedResult }

  /** Waits for the whole-blob verdict (set by verify(), or false when the blob is closed first). */
  async waitVerified (): Promise<boolean> {
    if (this.verifiedResult !== undefined) return this.verifiedResult
    if (this.closed) return false
    return await new Promise<boolean>(resolve => { this.verifiedWaiters.push(resolve) })
  }

  private settleVerified (ok: boolean): void {
    if (this.verifiedResult !== undefined) return
    this.verifiedResult = ok
    for (const w of this.verifiedWaiters.splice(0)) w(ok)
  }

  get busy (): boolean { return this.readers > 0 }

  /** Readers keep the data file alive past remove() until they finish. */
  retain (): void { this.readers++ }
  release (): void {
    this.readers = Math.max(0, this.readers - 1)
    if (this.readers === 0 && this.removeWhenIdle !== undefined) {
      const fn = this.removeWhenIdle
      this.removeWhenIdle = undefined
      fn()
    }
  }

  /** Whole-blob sha256 of the data file, for the final check before commit. */
  async verify (): Promise<boolean> {
    const ok = await this.hashMatches()
    this.settleVerified(ok)
    return ok
  }

  private async hashMatches (): Promise<boolean> {
    const hash = createHash('sha256')
    const fh = this.handle()
    const buf = Buffer.allocUnsafe(1 << 20)
    let pos = 0
    while (pos < this.size) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, this.size - pos), pos)
      if (bytesRead === 0) break
      hash.update(buf.subarray(0, bytesRead))
      pos += bytesRead
    }
    return pos === this.size && `sha256:${hash.digest('hex')}` === this.digest
  }

  private handle (): FileHandle {
    if (this.fh === undefined || this.closed) throw new JoeyError('ERR_ABORTED', `partial blob ${this.digest} is closed`)
    return this.fh
  }

  private scheduleFlush (): void {
    if (this.flushTimer !== undefined || this.closed) return
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined
      this.flush().catch(() => {})
    }, STATE_FLUSH_MS)
    this.flushTimer.unref()
  }

  async flush (): Promise<void> {
    if (this.fh === undefined) return
    await this.fh.datasync()
    const state: StateFile = {
      digest: this.digest,
      size: this.size,
      pieceSize: this.pieceSize,
      pieceDigests: this.pieceDigests.map(d => d ?? null),
      have: Buffer.from(this.have.toBytes()).toString('base64')
    }
    const tmp = this.statePath + '.tmp'
    await writeFile(tmp, JSON.stringify(state))
    await rename(tmp, this.statePath)
  }

  async close (): Promise<void> {
    if (this.closed) return
    if (this.flushTimer !== undefined) { clearTimeout(this.flushTimer); this.flushTimer = undefined }
    try { await this.flush() } catch {}
    this.closed = true
    this.settleVerified(false)
    this.emit('closed')
    await this.fh?.close()
  }

  async remove (): Promise<void> {
    if (this.flushTimer !== undefined) { clearTimeout(this.flushTimer); this.flushTimer = undefined }
    if (this.readers > 0) {
      // Streaming readers finish first; a verified blob stays readable for them.
      await new Promise<void>(resolve => { this.removeWhenIdle = resolve })
    }
    if (!this.closed) {
      this.closed = true
      this.settleVerified(false)
      this.emit('closed')
      await this.fh?.close()
    }
    await rm(this.dir, { recursive: true, force: true })
  }
}

/** Partial blobs by digest under one directory. */
export class PartialStore {
  private readonly blobs = new Map<string, Promise<PartialBlob>>()

  constructor (readonly root: string, private readonly logger: Logger) {}

  /** Opens (or resumes) the partial blob of a digest. */
  async open (init: PartialBlobInit): Promise<PartialBlob> {
    let p = this.blobs.get(init.digest)
    if (p === undefined) {
      const blob = new PartialBlob(join(this.root, digestHex(init.digest)), init)
      p = blob.open(this.logger).then(() => { this.opened.set(init.digest, blob); return blob })
      this.blobs.set(init.digest, p)
      p.catch(() => this.blobs.delete(init.digest))
    }
    const blob = await p
    if (blob.size !== init.size || blob.pieceSize !== init.pieceSize) {
      throw new JoeyError('ERR_SIZE_MISMATCH', `partial ${init.digest} is open with size ${blob.size}/${blob.pieceSize}, not ${init.size}/${init.pieceSize}`)
    }
    return blob
  }

  /** An already-opened partial blob, if any. */
  get (digest: string): PartialBlob | undefined {
    return this.opened.get(digest)
  }

  private readonly opened = new Map<string, PartialBlob>()

  async remove (digest: string): Promise<void> {
    const p = this.blobs.get(digest)
    this.blobs.delete(digest)
    this.opened.delete(digest)
    if (p !== undefined) {
      const blob = await p.catch(() => undefined)
      // With readers still streaming, the files go when the last one finishes.
      if (blob?.busy === true) void blob.remove().catch(() => {})
      else await blob?.remove()
    } else {
      await rm(join(this.root, digestHex(digest)), { recursive: true, force: true })
    }
  }

  async close (): Promise<void> {
    for (const p of this.blobs.values()) {
      const blob = await p.catch(() => undefined)
      await blob?.close()
    }
    this.blobs.clear()
    this.opened.clear()
  }

  async exists (digest: string): Promise<boolean> {
    try { await stat(join(this.root, digestHex(digest), 'data')); return true } catch { return false }
  }
}
