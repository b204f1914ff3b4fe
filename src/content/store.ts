import { constants as fsConstants, type Stats } from 'node:fs'
import { chmod, mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile, type FileHandle } from 'node:fs/promises'
import { createHash, randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { addAbortSignal, type Readable } from 'node:stream'
import { Level } from 'level'
import { Digester, JoeyError, isDigest, parseDigest, sha256, toJoeyError, type GcPacer, type Logger } from '../common/index.js'
import {
  GC_REF_LABEL_PREFIX,
  type BlobInfo, type CommitOptions, type ContentStore, type ContentWriter, type GcResult, type ImageRecord,
  type IngestStatus, type Lease, type ReadOptions, type Usage, type WriterOptions
} from './types.js'
import {
  INGEST_EXPIRY_MS, LOCK_TIMEOUT_MS, MAX_LABEL_LENGTH, MAX_REF_LENGTH, READ_BYTES_MAX, REHASH_CHUNK_BYTES, TMP_PREFIX,
  READ_STREAM_CHUNK_BYTES
} from './constants.js'
import { KeyedMutex, RefLocks, RwLock } from './locks.js'

export interface ContentStoreInit {
  /** Directory that holds blobs/, ingest/ and meta/. */
  root: string
  /** gc() removes ingests not written to for this long. Default 24 h. */
  ingestExpiryMs?: number
  /** Default wait of writer() for a ref held by another writer. Default 0 (fail at once). */
  lockTimeoutMs?: number
}

export interface ContentStoreComponents {
  logger: Logger
  /** Told the size of every chunk written, so the process collects dead buffers as data flows. */
  gcPacer?: GcPacer
}

/** What level keeps about a lease: the public record plus the digests it protects. */
interface LeaseRecord extends Lease {
  resources: string[]
}

interface IngestExpectations {
  expectedSize?: number
  expectedDigest?: string
}

/** The few operations used on a sublevel, typed with the value it stores. */
interface Table<V> {
  get: (key: string) => Promise<V | undefined>
  put: (key: string, value: V) => Promise<void>
  del: (key: string) => Promise<void>
  keys: () => AsyncIterable<string>
  values: () => AsyncIterable<V>
}

interface Tables {
  db: Level<string, unknown>
  blobs: Table<BlobInfo>
  leases: Table<LeaseRecord>
  images: Table<ImageRecord>
}

const HEX_RE = /^[a-f0-9]{64}$/
const LEASE_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,254}$/
const BLOB_MODE = 0o444

function errno (err: unknown): string | undefined {
  return (err as { code?: string } | null)?.code
}

async function statOrUndefined (path: string): Promise<Stats | undefined> {
  try {
    return await stat(path)
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined
    throw err
  }
}

/** A rename is durable only once its directory entry is on disk. */
async function fsyncDir (dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

function invalid (message: string, detail?: Record<string, unknown>): JoeyError {
  return new JoeyError('ERR_INVALID_ARGUMENT', message, detail !== undefined ? { detail } : {})
}

function checkSize (value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalid(`${what} must be a non-negative integer, got ${String(value)}`)
  }
  return value
}

function checkRef (ref: unknown): string {
  if (typeof ref !== 'string' || ref.length === 0 || ref.length > MAX_REF_LENGTH) {
    throw invalid(`ingest ref must be a non-empty string of at most ${MAX_REF_LENGTH} characters`)
  }
  return ref
}

/**
 * Validates a label map. With allowEmpty, '' marks a label for removal (updateLabels);
 * elsewhere empty values are simply dropped. gc.ref labels must name digests, since gc
 * follows them.
 */
function checkLabels (labels: unknown, allowEmpty: boolean): Record<string, string> {
  if (labels === undefined) return {}
  if (labels === null || typeof labels !== 'object' || Array.isArray(labels)) throw invalid('labels must be an object of strings')
  const out: Record<string, string> = {}
  for (const [key, value] of Object.entries(labels as Record<string, unknown>)) {
    if (key.length === 0 || key.length > MAX_LABEL_LENGTH) throw invalid(`label key must be 1 to ${MAX_LABEL_LENGTH} characters`, { key })
    if (typeof value !== 'string' || value.length > MAX_LABEL_LENGTH) {
      throw invalid(`label "${key}" must be a string of at most ${MAX_LABEL_LENGTH} characters`, { key })
    }
    if (value === '' && !allowEmpty) continue
    if (value !== '' && key.startsWith(GC_REF_LABEL_PREFIX) && !isDigest(value)) {
      throw new JoeyError('ERR_INVALID_DIGEST', `label "${key}" must name a sha256 digest, got "${value}"`, { detail: { key } })
    }
    out[key] = value
  }
  return out
}

function mergeLabels (current: Record<string, string>, changes: Record<string, string>): Record<string, string> {
  const out = { ...current }
  for (const [key, value] of Object.entries(changes)) {
    if (value === '') delete out[key]
    else out[key] = value
  }
  return out
}

function isLive (lease: Lease, now: number): boolean {
  return lease.expiresAt === undefined || lease.expiresAt > now
}

function publicLease (record: LeaseRecord): Lease {
  return { id: record.id, createdAt: record.createdAt, ...(record.expiresAt !== undefined ? { expiresAt: record.expiresAt } : {}), labels: record.labels }
}

/**
 * containerd's local content store: blobs under blobs/sha256/<hex> (read-only, renamed
 * into place only after size and digest are verified), in-progress writes under
 * ingest/<sha256(ref)>/ and metadata (labels, leases, images) in level under meta/.
 * The filesystem decides whether a blob exists; level only adds to it.
 */
export function createContentStore (init: ContentStoreInit, components: ContentStoreComponents): ContentStore {
  if (typeof init.root !== 'string' || init.root.length === 0) throw new JoeyError('ERR_INVALID_CONFIG', 'content store root must be a non-empty path')
  const log = components.logger.child({ component: 'content' })
  const root = init.root
  const ingestExpiryMs = init.ingestExpiryMs ?? INGEST_EXPIRY_MS
  const defaultLockTimeoutMs = init.lockTimeoutMs ?? LOCK_TIMEOUT_MS
  const blobsDir = join(root, 'blobs', 'sha256')
  const ingestRoot = join(root, 'ingest')
  const metaDir = join(root, 'meta')

  const refLocks = new RefLocks()
  const gcLock = new RwLock()
  const mutex = new KeyedMutex()
  /** Open writers, so stop() can release their files. */
  const active = new Set<{ shutdown: () => Promise<void> }>()
  let tables: Tables | undefined

  function t (): Tables {
    if (tables === undefined) throw new JoeyError('ERR_FAILED_PRECONDITION', `content store at ${root} is not started`)
    return tables
  }

  const blobPath = (digest: string): string => join(blobsDir, digest.slice('sha256:'.length))
  const ingestDir = (ref: string): string => join(ingestRoot, createHash('sha256').update(ref).digest('hex'))

  function notFound (digest: string): JoeyError {
    return new JoeyError('ERR_NOT_FOUND', `blob ${digest} not found`, { detail: { digest } })
  }

  // ---- blobs -------------------------------------------------------------------------

  /**
   * Metadata for a blob file, rebuilt from the file when level lost it (a crash between
   * the rename and the metadata write) or disagrees with it.
   */
  async function ensureMeta (digest: string, st: Stats): Promise<BlobInfo> {
    const { blobs } = t()
    const meta = await blobs.get(digest)
    if (meta !== undefined && meta.size === st.size) return meta
    const info: BlobInfo = {
      digest,
      size: st.size,
      createdAt: meta?.createdAt ?? Math.round(st.mtimeMs),
      updatedAt: Date.now(),
      labels: meta?.labels ?? {}
    }
    await blobs.put(digest, info)
    log.warn({ digest, size: st.size }, 'recovered blob metadata from the filesystem')
    return info
  }

  async function infoOf (digest: string): Promise<BlobInfo> {
    const st = await statOrUndefined(blobPath(digest))
    if (st === undefined) {
      await t().blobs.del(digest)
      throw notFound(digest)
    }
    return await ensureMeta(digest, st)
  }

  async function listBlobFiles (): Promise<string[]> {
    const names = await readdir(blobsDir)
    return names.filter(n => HEX_RE.test(n)).sort().map(n => `sha256:${n}`)
  }

  async function info (digest: string): Promise<BlobInfo> {
    const d = parseDigest(digest)
    t()
    return await infoOf(d)
  }

  async function has (digest: string): Promise<boolean> {
    const d = parseDigest(digest)
    t()
    const st = await statOrUndefined(blobPath(d))
    return st?.isFile() === true
  }

  async function list (): Promise<BlobInfo[]> {
    t()
    const out: BlobInfo[] = []
    for (const digest of await listBlobFiles()) {
      try {
        out.push(await infoOf(digest))
      } catch (err) {
        // Deleted by gc or delete() while we listed.
        if (!(err instanceof JoeyError && err.code === 'ERR_NOT_FOUND')) throw err
      }
    }
    return out
  }

  async function read (digest: string, options: ReadOptions = {}): Promise<Readable> {
    const d = parseDigest(digest)
    t()
    const { signal } = options
    const start = options.start !== undefined ? checkSize(options.start, 'range start') : 0
    const end = options.end !== undefined ? checkSize(options.end, 'range end') : undefined
    if (signal?.aborted === true) throw new JoeyError('ERR_ABORTED', `read of ${d} aborted`, { cause: signal.reason, detail: { digest: d } })
    let fh: FileHandle
    try {
      fh = await open(blobPath(d), 'r')
    } catch (err) {
      if (errno(err) === 'ENOENT') throw notFound(d)
      throw err
    }
    try {
      const { size } = await fh.stat()
      if (start > size || (start === size && end !== undefined) || (end !== undefined && (end < start || end >= size))) {
        throw new JoeyError('ERR_INVALID_ARGUMENT', `range ${start}-${end ?? ''} is not satisfiable for blob ${d} of ${size} bytes`, { detail: { digest: d, size, start, end } })
      }
    } catch (err) {
      await fh.close()
      throw err
    }
    // Streaming from the open handle keeps the read valid even if gc unlinks the file meanwhile.
    const stream = fh.createReadStream({ start, ...(end !== undefined ? { end } : {}), autoClose: true, highWaterMark: READ_STREAM_CHUNK_BYTES })
    if (signal !== undefined) addAbortSignal(signal, stream)
    return stream
  }

  async function readBytes (digest: string, maxBytes: number = READ_BYTES_MAX): Promise<Buffer> {
    const d = parseDigest(digest)
    t()
    checkSize(maxBytes, 'maxBytes')
    let fh: FileHandle
    try {
      fh = await open(blobPath(d), 'r')
    } catch (err) {
      if (errno(err) === 'ENOENT') throw notFound(d)
      throw err
    }
    try {
      const { size } = await fh.stat()
      if (size > maxBytes) {
        throw new JoeyError('ERR_LIMIT_EXCEEDED', `blob ${d} has ${size} bytes, more than the ${maxBytes} allowed here`, { detail: { digest: d, size, limit: maxBytes } })
      }
      return await fh.readFile()
    } finally {
      await fh.close()
    }
  }

  async function del (digest: string): Promise<void> {
    const d = parseDigest(digest)
    t()
    await gcLock.shared(async () => await mutex.run(d, async () => {
      try {
        await unlink(blobPath(d))
      } catch (err) {
        if (errno(err) !== 'ENOENT') throw err
        await t().blobs.del(d)
        throw notFound(d)
      }
      await t().blobs.del(d)
      log.debug({ digest: d }, 'blob deleted')
    }))
  }

  async function updateLabels (digest: string, labels: Record<string, string>): Promise<BlobInfo> {
    const d = parseDigest(digest)
    const changes = checkLabels(labels, true)
    t()
    return await gcLock.shared(async () => await mutex.run(d, async () => {
      const current = await infoOf(d)
      const next: BlobInfo = { ...current, labels: mergeLabels(current.labels, changes), updatedAt: Date.now() }
      await t().blobs.put(d, next)
      return next
    }))
  }

  // ---- ingests -----------------------------------------------------------------------

  interface IngestState extends IngestStatus {
    dir: string
  }

  async function readIngest (dir: string): Promise<IngestState | undefined> {
    let ref: string
    try {
      ref = await readFile(join(dir, 'ref'), 'utf8')
    } catch (err) {
      if (errno(err) === 'ENOENT' || errno(err) === 'ENOTDIR') return undefined
      throw err
    }
    const startedAt = Number(await readFile(join(dir, 'startedat'), 'utf8').catch(() => '0')) || 0
    let expected: IngestExpectations = {}
    try {
      expected = JSON.parse(await readFile(join(dir, 'expected'), 'utf8')) as IngestExpectations
    } catch {}
    const st = await statOrUndefined(join(dir, 'data'))
    return {
      dir,
      ref,
      offset: st?.size ?? 0,
      ...(typeof expected.expectedSize === 'number' ? { expectedSize: expected.expectedSize } : {}),
      ...(typeof expected.expectedDigest === 'string' ? { expectedDigest: expected.expectedDigest } : {}),
      startedAt,
      updatedAt: st !== undefined ? Math.round(st.mtimeMs) : startedAt
    }
  }

  function publicStatus (s: IngestState): IngestStatus {
    const { dir: _dir, ...status } = s
    return status
  }

  async function listIngests (): Promise<IngestState[]> {
    const out: IngestState[] = []
    for (const name of await readdir(ingestRoot)) {
      if (name.startsWith(TMP_PREFIX)) continue
      const s = await readIngest(join(ingestRoot, name))
      if (s !== undefined) out.push(s)
    }
    return out
  }

  async function writeExpectations (dir: string, expected: IngestExpectations): Promise<void> {
    const tmp = join(dir, `${TMP_PREFIX}expected`)
    await writeFile(tmp, JSON.stringify(expected))
    await rename(tmp, join(dir, 'expected'))
  }

  /** Builds the ingest in a temporary directory and renames it in, so it never appears half made. */
  async function createIngest (dir: string, ref: string, expected: IngestExpectations): Promise<void> {
    const tmp = join(ingestRoot, `${TMP_PREFIX}${randomUUID()}`)
    await mkdir(tmp)
    try {
      await writeFile(join(tmp, 'ref'), ref)
      await writeFile(join(tmp, 'startedat'), String(Date.now()))
      await writeFile(join(tmp, 'expected'), JSON.stringify(expected))
      await writeFile(join(tmp, 'data'), '')
      await rename(tmp, dir)
    } catch (err) {
      await rm(tmp, { recursive: true, force: true })
      // Another process created it first: use theirs.
      if (errno(err) !== 'EEXIST' && errno(err) !== 'ENOTEMPTY') throw err
    }
  }

  async function writer (ref: string, options: WriterOptions = {}): Promise<ContentWriter> {
    checkRef(ref)
    const expectedDigest = options.expectedDigest !== undefined ? parseDigest(options.expectedDigest) : undefined
    const expectedSize = options.expectedSize !== undefined ? checkSize(options.expectedSize, 'expectedSize') : undefined
    const lockTimeoutMs = options.lockTimeoutMs !== undefined ? checkSize(options.lockTimeoutMs, 'lockTimeoutMs') : defaultLockTimeoutMs
    t()
    const release = await refLocks.acquire(ref, lockTimeoutMs)
    try {
      const dir = ingestDir(ref)
      let state = await readIngest(dir)
      if (state !== undefined && state.ref !== ref) {
        throw new JoeyError('ERR_INTERNAL', `ingest directory ${dir} belongs to ref "${state.ref}", not "${ref}"`)
      }
      // The caller's expectations win over those stored by an earlier writer.
      const expected: IngestExpectations = {}
      const size = expectedSize ?? state?.expectedSize
      const digest = expectedDigest ?? state?.expectedDigest
      if (size !== undefined) expected.expectedSize = size
      if (digest !== undefined) expected.expectedDigest = digest
      if (state === undefined) {
        await createIngest(dir, ref, expected)
        state = await readIngest(dir)
        if (state === undefined) throw new JoeyError('ERR_INTERNAL', `ingest for ref "${ref}" vanished while it was created`)
      } else if (expected.expectedSize !== state.expectedSize || expected.expectedDigest !== state.expectedDigest) {
        await writeExpectations(dir, expected)
      }
      // O_CREAT without O_TRUNC: a data file lost after a crash restarts at 0, an existing one resumes.
      const fh = await open(join(dir, 'data'), fsConstants.O_RDWR | fsConstants.O_CREAT, 0o644)
      const { size: onDisk } = await fh.stat()
      log.debug({ ref, offset: onDisk }, onDisk > 0 ? 'resuming ingest' : 'opened ingest')
      return openWriter(ref, dir, fh, onDisk, expected, release)
    } catch (err) {
      release()
      throw err
    }
  }

  function openWriter (ref: string, dir: string, fh: FileHandle, initialOffset: number, expected: IngestExpectations, release: () => void): ContentWriter {
    let offset = initialOffset
    // A running hash of bytes [0, offset); undefined when it must be rebuilt from disk.
    let hash: Digester | undefined = offset === 0 ? new Digester() : undefined
    let state: 'open' | 'broken' | 'done' = 'open'
    let fhOpen = true
    let queue: Promise<unknown> = Promise.resolve()

    const handle = { shutdown: async () => { await finish() } }
    active.add(handle)

    // One operation at a time: writes must land in order and commit must see all of them.
    function serialize<T> (fn: () => Promise<T>): Promise<T> {
      const run = queue.then(fn, fn)
      queue = run.catch(() => {})
      return run
    }

    function assertOpen (): void {
      if (state === 'done') throw new JoeyError('ERR_FAILED_PRECONDITION', `writer for ref "${ref}" is already closed`, { detail: { ref } })
      if (state === 'broken') throw new JoeyError('ERR_FAILED_PRECONDITION', `writer for ref "${ref}" failed; close it and open a new one`, { detail: { ref } })
      t()
    }

    async function closeFile (): Promise<void> {
      if (!fhOpen) return
      fhOpen = false
      await fh.close()
    }

    // The ingest dir goes before the ref lock is released: a writer waiting for the lock
    // must find either the whole ingest or none of it.
    async function finish (beforeRelease?: () => Promise<void>): Promise<void> {
      if (state === 'done') return
      state = 'done'
      active.delete(handle)
      try {
        await closeFile()
        if (beforeRelease !== undefined) await beforeRelease()
      } finally {
        release()
      }
    }

    async function discard (): Promise<void> {
      await finish(async () => { await rm(dir, { recursive: true, force: true }) })
    }

    /** Rebuilds the running hash of a resumed partial by reading its bytes once. */
    async function ensureHash (): Promise<Digester> {
      if (hash !== undefined) return hash
      const h = new Digester()
      const buf = Buffer.allocUnsafe(Math.min(REHASH_CHUNK_BYTES, Math.max(1, offset)))
      let pos = 0
      while (pos < offset) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(buf.byteLength, offset - pos), pos)
        if (bytesRead === 0) throw new JoeyError('ERR_TRUNCATED', `ingest "${ref}" ended at ${pos} of ${offset} bytes while re-hashing`, { detail: { ref } })
        h.update(buf.subarray(0, bytesRead))
        pos += bytesRead
      }
      hash = h
      return h
    }

    async function write (chunk: Uint8Array): Promise<void> {
      if (!(chunk instanceof Uint8Array)) throw invalid('write() takes a Uint8Array')
      await serialize(async () => {
        assertOpen()
        if (expected.expectedSize !== undefined && offset + chunk.byteLength > expected.expectedSize) {
          throw new JoeyError('ERR_SIZE_MISMATCH', `writing ${chunk.byteLength} bytes at ${offset} would exceed the expected size ${expected.expectedSize} of ingest "${ref}"`, {
            detail: { ref, expected: expected.expectedSize, actual: offset + chunk.byteLength }
          })
        }
        if (chunk.byteLength === 0) return
        const h = await ensureHash()
        try {
          let written = 0
          while (written < chunk.byteLength) {
            const { bytesWritten } = await fh.write(chunk, written, chunk.byteLength - written, offset + written)
            written += bytesWritten
          }
        } catch (err) {
          // What reached the disk is unknown: take the file's size as the truth and re-hash later.
          hash = undefined
          offset = (await fh.stat().catch(() => ({ size: offset }))).size
          throw toJoeyError(err)
        }
        h.update(chunk)
        offset += chunk.byteLength
      })
      components.gcPacer?.note(chunk.byteLength)
    }

    async function truncate (to: number): Promise<void> {
      await serialize(async () => {
        assertOpen()
        if (typeof to !== 'number' || !Number.isSafeInteger(to) || to < 0 || to > offset) {
          throw invalid(`cannot truncate ingest "${ref}" to ${String(to)}: it holds ${offset} bytes`, { ref, offset })
        }
        await fh.truncate(to)
        offset = to
        hash = to === 0 ? new Digester() : undefined
      })
    }

    async function commit (size: number, digest: string, options: CommitOptions = {}): Promise<BlobInfo> {
      const d = parseDigest(digest)
      checkSize(size, 'size')
      const labels = checkLabels(options.labels, false)
      return await serialize(async () => {
        assertOpen()
        return await gcLock.shared(async () => {
          await fh.sync()
          const actualSize = (await fh.stat()).size
          if (actualSize !== offset) {
            offset = actualSize
            hash = undefined
          }
          // A commit size that contradicts the writer's expected size is as wrong as bad data.
          const wantSize = actualSize !== size ? size : (expected.expectedSize ?? size)
          if (actualSize !== wantSize) {
            await discard()
            throw new JoeyError('ERR_SIZE_MISMATCH', `ingest "${ref}" holds ${actualSize} bytes, expected ${wantSize}`, {
              detail: { ref, digest: d, expected: wantSize, actual: actualSize }
            })
          }
          const actual = (await ensureHash()).digest()
          hash = undefined
          const wantDigest = actual !== d ? d : (expected.expectedDigest ?? d)
          if (actual !== wantDigest) {
            await discard()
            throw new JoeyError('ERR_DIGEST_MISMATCH', `ingest "${ref}" hashes to ${actual}, expected ${wantDigest}`, {
              detail: { ref, expected: wantDigest, actual }
            })
          }
          return await mutex.run(d, async () => {
            const target = blobPath(d)
            const existing = await statOrUndefined(target)
            if (existing !== undefined) {
              await discard()
              let existingInfo = await ensureMeta(d, existing)
              if (Object.keys(labels).length > 0) {
                existingInfo = { ...existingInfo, labels: mergeLabels(existingInfo.labels, labels), updatedAt: Date.now() }
                await t().blobs.put(d, existingInfo)
              }
              log.debug({ ref, digest: d }, 'blob already exists')
              return existingInfo
            }
            // Read-only before it becomes visible, so no one ever sees a writable blob.
            await fh.chmod(BLOB_MODE)
            await closeFile()
            try {
              await rename(join(dir, 'data'), target)
            } catch (err) {
              state = 'broken'
              await chmod(join(dir, 'data'), 0o644).catch(() => {})
              throw toJoeyError(err)
            }
            await fsyncDir(blobsDir)
            const now = Date.now()
            const blob: BlobInfo = { digest: d, size, createdAt: now, updatedAt: now, labels }
            await t().blobs.put(d, blob)
            await finish(async () => { await rm(dir, { recursive: true, force: true }) })
            log.debug({ ref, digest: d, size }, 'blob committed')
            return blob
          })
        })
      })
    }

    async function close (): Promise<void> {
      await serialize(async () => { await finish() })
    }

    async function abort (): Promise<void> {
      await serialize(async () => {
        if (state === 'done') return
        await discard()
      })
    }

    return {
      ref,
      get offset () { return offset },
      write,
      truncate,
      commit,
      close,
      abort
    }
  }

  async function writeBytes (data: Uint8Array, digest: string, options: CommitOptions = {}): Promise<BlobInfo> {
    const d = parseDigest(digest)
    if (!(data instanceof Uint8Array)) throw invalid('writeBytes() takes a Uint8Array')
    checkLabels(options.labels, false)
    t()
    const actual = sha256(data)
    if (actual !== d) {
      throw new JoeyError('ERR_DIGEST_MISMATCH', `data hashes to ${actual}, expected ${d}`, { detail: { expected: d, actual } })
    }
    // A unique ref so concurrent writers of the same small blob never wait on each other.
    const w = await writer(`bytes-${d}-${randomUUID()}`, { expectedDigest: d, expectedSize: data.byteLength })
    try {
      await w.write(data)
      return await w.commit(data.byteLength, d, options)
    } catch (err) {
      await w.abort().catch(() => {})
      throw err
    }
  }

  async function ingests (): Promise<IngestStatus[]> {
    t()
    return (await listIngests()).map(publicStatus)
  }

  async function ingestStatus (ref: string): Promise<IngestStatus | undefined> {
    checkRef(ref)
    t()
    const s = await readIngest(ingestDir(ref))
    return s !== undefined && s.ref === ref ? publicStatus(s) : undefined
  }

  async function abortIngest (ref: string): Promise<void> {
    checkRef(ref)
    t()
    const release = await refLocks.acquire(ref, 0)
    try {
      const dir = ingestDir(ref)
      const s = await readIngest(dir)
      if (s === undefined || s.ref !== ref) throw new JoeyError('ERR_NOT_FOUND', `no ingest for ref "${ref}"`, { detail: { ref } })
      await rm(dir, { recursive: true, force: true })
    } finally {
      release()
    }
  }

  // ---- leases ------------------------------------------------------------------------

  async function createLease (options: { id?: string, ttlMs?: number, labels?: Record<string, string> } = {}): Promise<Lease> {
    const id = options.id ?? `lease-${randomUUID()}`
    if (typeof id !== 'string' || !LEASE_ID_RE.test(id)) throw invalid(`invalid lease id "${String(id)}"`)
    if (options.ttlMs !== undefined && (typeof options.ttlMs !== 'number' || !Number.isFinite(options.ttlMs) || options.ttlMs <= 0)) {
      throw invalid(`lease ttlMs must be a positive number, got ${String(options.ttlMs)}`)
    }
    const labels = checkLabels(options.labels, false)
    t()
    return await gcLock.shared(async () => await mutex.run(`lease:${id}`, async () => {
      const now = Date.now()
      const prior = await t().leases.get(id)
      if (prior !== undefined && isLive(prior, now)) throw new JoeyError('ERR_ALREADY_EXISTS', `lease "${id}" already exists`, { detail: { lease: id } })
      const record: LeaseRecord = { id, createdAt: now, ...(options.ttlMs !== undefined ? { expiresAt: now + options.ttlMs } : {}), labels, resources: [] }
      await t().leases.put(id, record)
      return publicLease(record)
    }))
  }

  async function addLeaseResource (leaseId: string, digest: string): Promise<void> {
    const d = parseDigest(digest)
    t()
    await gcLock.shared(async () => await mutex.run(`lease:${leaseId}`, async () => {
      const record = await t().leases.get(leaseId)
      if (record === undefined || !isLive(record, Date.now())) {
        throw new JoeyError('ERR_NOT_FOUND', `lease "${leaseId}" not found or expired`, { detail: { lease: leaseId } })
      }
      if (record.resources.includes(d)) return
      await t().leases.put(leaseId, { ...record, resources: [...record.resources, d] })
    }))
  }

  async function deleteLease (leaseId: string): Promise<void> {
    t()
    await mutex.run(`lease:${leaseId}`, async () => {
      if (typeof leaseId !== 'string' || await t().leases.get(leaseId) === undefined) {
        throw new JoeyError('ERR_NOT_FOUND', `lease "${String(leaseId)}" not found`, { detail: { lease: leaseId } })
      }
      await t().leases.del(leaseId)
    })
  }

  async function leases (): Promise<Lease[]> {
    const now = Date.now()
    const out: Lease[] = []
    for await (const record of t().leases.values()) if (isLive(record, now)) out.push(publicLease(record))
    return out
  }

  // ---- images ------------------------------------------------------------------------

  function imageNotFound (name: string): JoeyError {
    return new JoeyError('ERR_IMAGE_NOT_FOUND', `image "${name}" not found`, { detail: { name } })
  }

  function checkName (name: unknown): string {
    if (typeof name !== 'string' || name.length === 0 || name.length > MAX_REF_LENGTH) throw invalid('image name must be a non-empty string')
    return name
  }

  async function putImage (image: Omit<ImageRecord, 'createdAt' | 'updatedAt'> & { createdAt?: number }): Promise<ImageRecord> {
    if (image === null || typeof image !== 'object') throw invalid('image record must be an object')
    const name = checkName(image.name)
    const target = image.target as ImageRecord['target'] | undefined
    if (target === null || typeof target !== 'object') throw invalid(`image "${name}" has no target`)
    if (typeof target.mediaType !== 'string' || target.mediaType.length === 0) throw invalid(`image "${name}" target has no media type`)
    const digest = parseDigest(target.digest)
    const size = checkSize(target.size, 'target size')
    const labels = checkLabels(image.labels, false)
    if (image.createdAt !== undefined) checkSize(image.createdAt, 'createdAt')
    t()
    return await gcLock.shared(async () => await mutex.run(`image:${name}`, async () => {
      const prior = await t().images.get(name)
      const now = Date.now()
      const record: ImageRecord = {
        name,
        target: { mediaType: target.mediaType, digest, size },
        createdAt: image.createdAt ?? prior?.createdAt ?? now,
        updatedAt: now,
        labels
      }
      await t().images.put(name, record)
      return record
    }))
  }

  async function getImage (name: string): Promise<ImageRecord> {
    checkName(name)
    const record = await t().images.get(name)
    if (record === undefined) throw imageNotFound(name)
    return record
  }

  async function listImages (): Promise<ImageRecord[]> {
    const out: ImageRecord[] = []
    for await (const record of t().images.values()) out.push(record)
    return out
  }

  async function deleteImage (name: string): Promise<void> {
    checkName(name)
    t()
    await mutex.run(`image:${name}`, async () => {
      if (await t().images.get(name) === undefined) throw imageNotFound(name)
      await t().images.del(name)
    })
  }

  // ---- gc and usage ------------------------------------------------------------------

  async function gc (): Promise<GcResult> {
    t()
    return await gcLock.exclusive(async () => {
      const { blobs, images, leases: leaseTable } = t()
      const now = Date.now()
      const roots = new Set<string>()
      const leased = new Set<string>()
      const expired: string[] = []
      for await (const image of images.values()) roots.add(image.target.digest)
      for await (const lease of leaseTable.values()) {
        if (!isLive(lease, now)) {
          expired.push(lease.id)
          continue
        }
        for (const d of lease.resources) {
          roots.add(d)
          leased.add(d)
        }
      }

      const marked = new Set<string>()
      const pending = [...roots]
      while (pending.length > 0) {
        const d = pending.pop() as string
        if (marked.has(d)) continue
        marked.add(d)
        const meta = await blobs.get(d)
        if (meta === undefined) continue
        for (const [key, value] of Object.entries(meta.labels)) {
          if (key.startsWith(GC_REF_LABEL_PREFIX) && isDigest(value) && !marked.has(value)) pending.push(value)
        }
      }

      const result: GcResult = { removedBlobs: [], removedIngests: [], freedBytes: 0 }
      for (const d of await listBlobFiles()) {
        if (marked.has(d)) continue
        const path = blobPath(d)
        const st = await statOrUndefined(path)
        if (st === undefined) continue
        await unlink(path).catch((err: unknown) => { if (errno(err) !== 'ENOENT') throw err })
        await blobs.del(d)
        result.removedBlobs.push(d)
        result.freedBytes += st.size
      }
      // Metadata whose file is gone (a crash inside delete()).
      for await (const d of blobs.keys()) {
        if (await statOrUndefined(blobPath(d)) === undefined) await blobs.del(d)
      }

      for (const s of await listIngests()) {
        if (refLocks.isHeld(s.ref)) continue
        if (s.updatedAt >= now - ingestExpiryMs) continue
        if (s.expectedDigest !== undefined && leased.has(s.expectedDigest)) continue
        await rm(s.dir, { recursive: true, force: true })
        result.removedIngests.push(s.ref)
        result.freedBytes += s.offset
      }
      for (const id of expired) await leaseTable.del(id)

      log.info({ blobs: result.removedBlobs.length, ingests: result.removedIngests.length, leases: expired.length, freedBytes: result.freedBytes }, 'content gc done')
      return result
    })
  }

  async function usage (): Promise<Usage> {
    t()
    const out: Usage = { blobs: 0, blobBytes: 0, ingests: 0, ingestBytes: 0 }
    for (const d of await listBlobFiles()) {
      const st = await statOrUndefined(blobPath(d))
      if (st === undefined) continue
      out.blobs++
      out.blobBytes += st.size
    }
    for (const s of await listIngests()) {
      out.ingests++
      out.ingestBytes += s.offset
    }
    return out
  }

  // ---- lifecycle ---------------------------------------------------------------------

  /** Removes what a crash can leave behind and makes level agree with the filesystem. */
  async function recover (): Promise<void> {
    for (const name of await readdir(ingestRoot)) {
      const dir = join(ingestRoot, name)
      if (name.startsWith(TMP_PREFIX)) {
        await rm(dir, { recursive: true, force: true })
        log.info({ dir }, 'removed unfinished ingest left by a crash')
        continue
      }
      const s = await readIngest(dir)
      // No ref: not ours. No data: committed before the crash, only the directory was left.
      if (s === undefined || await statOrUndefined(join(dir, 'data')) === undefined) {
        await rm(dir, { recursive: true, force: true })
        continue
      }
      await rm(join(dir, `${TMP_PREFIX}expected`), { force: true })
    }
    for (const name of await readdir(blobsDir)) {
      if (name.startsWith(TMP_PREFIX)) await rm(join(blobsDir, name), { recursive: true, force: true })
    }
    const { blobs } = t()
    for (const d of await listBlobFiles()) {
      const st = await statOrUndefined(blobPath(d))
      if (st === undefined) continue
      const meta = await blobs.get(d)
      if (meta === undefined || meta.size !== st.size) await ensureMeta(d, st)
    }
    for await (const d of blobs.keys()) {
      if (await statOrUndefined(blobPath(d)) === undefined) await blobs.del(d)
    }
  }

  async function start (): Promise<void> {
    if (tables !== undefined) return
    await mkdir(blobsDir, { recursive: true })
    await mkdir(ingestRoot, { recursive: true })
    await mkdir(metaDir, { recursive: true })
    const db = new Level<string, unknown>(metaDir, { valueEncoding: 'json' })
    try {
      await db.open()
    } catch (err) {
      throw new JoeyError('ERR_LOCKED', `cannot open content metadata at ${metaDir}: is another process using this store?`, { cause: err, detail: { root } })
    }
    const sub = <V>(name: string): Table<V> => db.sublevel<string, V>(name, { valueEncoding: 'json' }) as unknown as Table<V>
    tables = { db, blobs: sub<BlobInfo>('blobs'), leases: sub<LeaseRecord>('leases'), images: sub<ImageRecord>('images') }
    try {
      await recover()
    } catch (err) {
      tables = undefined
      await db.close()
      throw err
    }
    log.debug({ root }, 'content store started')
  }

  async function stop (): Promise<void> {
    const current = tables
    if (current === undefined) return
    // Waits for a running gc or commit so the database closes between operations.
    await gcLock.exclusive(async () => {
      for (const w of [...active]) await w.shutdown().catch((err: unknown) => { log.warn({ err }, 'could not close ingest writer') })
      tables = undefined
      await current.db.close()
    })
    log.debug({ root }, 'content store stopped')
  }

  return {
    root,
    start,
    stop,
    info,
    has,
    list,
    read,
    readBytes,
    writer,
    writeBytes,
    ingests,
    ingestStatus,
    abortIngest,
    delete: del,
    updateLabels,
    createLease,
    addLeaseResource,
    deleteLease,
    leases,
    putImage,
    getImage,
    listImages,
    deleteImage,
    gc,
    usage
  }
}
