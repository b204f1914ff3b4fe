import { setTimeout as sleep } from 'node:timers/promises'
import { JoeyError, isJoeyError, isAbortError, parseDigest, toJoeyError, type Logger } from '../common/index.js'
import type { ContentStore, ContentWriter } from '../content/index.js'
import type { Descriptor, Reference, RegistryClient } from '../distribution/index.js'
import type { BlobProgress, FetchBlobOptions, TransferManager, TransferStats } from './types.js'
import { LOCK_POLL_MS, LOCK_WAIT_MS, MAX_ATTEMPTS, PROGRESS_INTERVAL_MS, RETRY_BASE_MS, RETRY_MAX_MS } from './constants.js'


export interface DirectTransferInit {
  /** Requests per blob toward the origin before giving up; the partial ingest is kept. */
  maxAttempts?: number
  /** Base backoff between attempts in ms. */
  retryBaseMs?: number
  /** How long to wait for an ingest held by another writer before ERR_LOCKED. */
  lockWaitMs?: number
  progressIntervalMs?: number
}

export interface DirectTransferComponents {
  logger: Logger
  contentStore: ContentStore
  registry: RegistryClient
  /** The node's download cap (joeyd --download-limit), shared with peer downloads. */
  downloadLimiter?: { take: (bytes: number, signal?: AbortSignal) => Promise<void> }
}

/** Content writers use this ref for blob downloads, so every path resumes the same ingest. */
export function blobIngestRef (digest: string): string {
  return `blob-${digest}`
}

interface Task {
  readonly digest: string
  readonly controller: AbortController
  readonly listeners: Set<(p: BlobProgress) => void>
  promise: Promise<void>
  callers: number
  settled: boolean
  last?: BlobProgress
}

/** Errors after which another request may well succeed: dropped connections, 5xx, timeouts. */
const RETRYABLE = new Set(['ERR_TRUNCATED', 'ERR_REGISTRY_UNAVAILABLE', 'ERR_REGISTRY_TIMEOUT', 'ERR_UNAVAILABLE'])
/** Errors that prove the bytes we hold are wrong: the partial must not be resumed. */
const DATA_ERRORS = new Set(['ERR_DIGEST_MISMATCH', 'ERR_SIZE_MISMATCH'])

function abortedError (digest: string, cause?: unknown): JoeyError {
  return new JoeyError('ERR_ABORTED', `download of ${digest} aborted`, { cause, detail: { digest } })
}

/**
 * The origin-only transfer: one download per digest per process, resumable through the
 * content store's ingest, retried from the current offset when a connection drops.
 * The P2P transfer manager wraps this as its back-to-source path.
 */
export function createDirectTransfer (init: DirectTransferInit, components: DirectTransferComponents): TransferManager {
  const log = components.logger.child({ component: 'transfer' })
  const store = components.contentStore
  const registry = components.registry
  const maxAttempts = Math.max(1, init.maxAttempts ?? MAX_ATTEMPTS)
  const retryBaseMs = init.retryBaseMs ?? RETRY_BASE_MS
  const lockWaitMs = init.lockWaitMs ?? LOCK_WAIT_MS
  const progressIntervalMs = init.progressIntervalMs ?? PROGRESS_INTERVAL_MS
  const tasks = new Map<string, Task>()
  const counters: TransferStats = { originBytes: 0, peerBytes: 0, originFetches: 0 }

  // The shared download uses the first caller's ref and credentials: later callers for the
  // same digest get the same verified bytes whoever fetched them.
  function startTask (ref: Reference, desc: Descriptor, digest: string, authorization: string | undefined): Task {
    const task: Task = { digest, controller: new AbortController(), listeners: new Set(), promise: Promise.resolve(), callers: 0, settled: false }
    const emit = (p: BlobProgress): void => {
      task.last = p
      for (const listener of task.listeners) {
        try { listener(p) } catch (err) { log.warn({ err, digest }, 'progress listener threw') }
      }
    }
    task.promise = download(ref, desc, digest, task.controller.signal, emit, authorization)
    const done = (): void => {
      task.settled = true
      if (tasks.get(digest) === task) tasks.delete(digest)
    }
    task.promise.then(done, done)
    tasks.set(digest, task)
    return task
  }

  async function download (ref: Reference, desc: Descriptor, digest: string, signal: AbortSignal, emit: (p: BlobProgress) => void, authorization: string | undefined): Promise<void> {
    const size = desc.size
    const blog = log.child({ digest, ref: ref.toString() })
    if (await store.has(digest)) {
      emit({ digest, current: size, total: size, phase: 'exists' })
      return
    }
    const writer = await openWriter(digest, size, signal, emit)
    if (writer === undefined) {
      emit({ digest, current: size, total: size, phase: 'exists' })
      return
    }

    let offset = writer.offset
    let lastEmit = 0
    let fetched = false
    const progress = (force: boolean): void => {
      const now = Date.now()
      if (!force && now - lastEmit < progressIntervalMs) return
      lastEmit = now
      emit({ digest, current: offset, total: size, phase: 'downloading' })
    }

    const attempt = async (): Promise<void> => {
      if (offset > size) {
        await writer.truncate(0)
        offset = 0
      }
      // A complete ingest left by an earlier run only needs verifying.
      if (offset === size) return
      const start = offset
      const res = await registry.getBlob(ref, digest, { signal, ...(start > 0 ? { offset: start } : {}), ...(authorization !== undefined ? { authorization } : {}) })
      if (!fetched) {
        fetched = true
        counters.originFetches++
      }
      try {
        if (res.size !== undefined && res.size !== size) {
          throw new JoeyError('ERR_SIZE_MISMATCH', `registry reports ${res.size} bytes for ${digest}, the manifest says ${size}`, { detail: { digest, expected: size, actual: res.size } })
        }
        if (res.offset !== offset) {
          // Registries without Range support answer from byte 0: start over.
          if (res.offset !== 0) {
            throw new JoeyError('ERR_PROTOCOL', `registry answered from byte ${res.offset} for a request from byte ${offset}`, { detail: { digest } })
          }
          await writer.truncate(0)
          offset = 0
        }
        if (start > 0 && offset === start) blog.debug({ offset }, 'resuming download')
        progress(true)
        try {
          for await (const chunk of res.stream as AsyncIterable<Uint8Array>) {
            if (offset + chunk.byteLength > size) {
              throw new JoeyError('ERR_SIZE_MISMATCH', `blob ${digest} is larger than the ${size} bytes the manifest says`, { detail: { digest, expected: size } })
            }
            // Paced per chunk, so the cap holds the flow itself rather than bursts of it.
            await components.downloadLimiter?.take(chunk.byteLength, signal)
            await writer.write(chunk)
            offset += chunk.byteLength
            counters.originBytes += chunk.byteLength
            progress(offset === size)
          }
        } catch (err) {
          if (signal.aborted) throw abortedError(digest, err)
          if (err instanceof JoeyError) throw err
          throw new JoeyError('ERR_TRUNCATED', `connection to the registry dropped after ${offset} of ${size} bytes of ${digest}`, { cause: err, detail: { digest, offset, size } })
        }
      } finally {
        res.stream.destroy()
      }
      if (offset < size) {
        throw new JoeyError('ERR_TRUNCATED', `registry sent ${offset} of ${size} bytes of ${digest}`, { detail: { digest, offset, size } })
      }
    }

    try {
      for (let n = 1; ; n++) {
        try {
          await attempt()
          break
        } catch (raw) {
          if (signal.aborted) throw abortedError(digest, raw)
          const err = toJoeyError(raw, 'ERR_REGISTRY_UNAVAILABLE')
          if (!RETRYABLE.has(err.code) || n >= maxAttempts) throw err
          const delay = Math.min(RETRY_MAX_MS, retryBaseMs * 2 ** (n - 1)) * (0.5 + Math.random() / 2)
          blog.warn({ err, attempt: n, offset, delay: Math.round(delay) }, 'blob download failed, retrying')
          await sleep(delay, undefined, { signal }).catch((e: unknown) => { throw abortedError(digest, e) })
        }
      }
    } catch (err) {
      if (isJoeyError(err) && DATA_ERRORS.has(err.code)) {
        await writer.abort().catch((e: unknown) => { blog.warn({ err: e }, 'could not discard ingest') })
      } else {
        // Keep the partial: the next pull resumes from here.
        await writer.close().catch((e: unknown) => { blog.warn({ err: e }, 'could not close ingest') })
      }
      throw err
    }

    emit({ digest, current: size, total: size, phase: 'verifying' })
    try {
      await writer.commit(size, digest)
    } catch (err) {
      // On a mismatch the store has discarded the ingest already; anything else must still release the ref.
      if (!(isJoeyError(err) && DATA_ERRORS.has(err.code))) await writer.close().catch(() => {})
      throw err
    }
    emit({ digest, current: size, total: size, phase: 'done' })
    blog.debug({ size }, 'blob committed')
  }

  /**
   * Opens the ingest; undefined when another writer committed the blob while we waited.
   * We poll rather than block in writer(): a committing writer renames the blob into place
   * before it lets go of the ref, so looking for the blob before each try never races with
   * the cleanup of its ingest.
   */
  async function openWriter (digest: string, size: number, signal: AbortSignal, emit: (p: BlobProgress) => void): Promise<ContentWriter | undefined> {
    const deadline = Date.now() + lockWaitMs
    let waited = false
    for (;;) {
      if (waited && await store.has(digest)) return undefined
      try {
        return await store.writer(blobIngestRef(digest), { expectedDigest: digest, expectedSize: size, lockTimeoutMs: 0 })
      } catch (err) {
        if (!isJoeyError(err, 'ERR_LOCKED') || Date.now() >= deadline) throw err
      }
      if (!waited) emit({ digest, current: 0, total: size, phase: 'waiting' })
      waited = true
      await sleep(Math.min(LOCK_POLL_MS, Math.max(0, deadline - Date.now())), undefined, { signal }).catch((e: unknown) => { throw abortedError(digest, e) })
    }
  }

  async function fetchBlob (ref: Reference, desc: Descriptor, options: FetchBlobOptions = {}): Promise<void> {
    const digest = parseDigest(desc.digest)
    if (!Number.isSafeInteger(desc.size) || desc.size < 0) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid size ${String(desc.size)} for blob ${digest}`, { detail: { digest } })
    }
    const { signal, onProgress } = options
    if (signal?.aborted === true) throw abortedError(digest, signal.reason)

    let task = tasks.get(digest)
    // A task whose callers all left is being torn down: let it settle, then start afresh.
    while (task !== undefined && task.controller.signal.aborted) {
      await task.promise.catch(() => {})
      task = tasks.get(digest)
    }
    if (task === undefined) task = startTask(ref, desc, digest, options.authorization)
    else if (task.last !== undefined) onProgress?.(task.last)
    const t = task
    t.callers++
    if (onProgress !== undefined) t.listeners.add(onProgress)

    return await new Promise<void>((resolve, reject) => {
      let left = false
      const leave = (): void => {
        if (left) return
        left = true
        signal?.removeEventListener('abort', onAbort)
        if (onProgress !== undefined) t.listeners.delete(onProgress)
        t.callers--
        if (t.callers === 0 && !t.settled) t.controller.abort()
      }
      const onAbort = (): void => {
        leave()
        reject(abortedError(digest, signal?.reason))
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      t.promise.then(() => { leave(); resolve() }, (err: unknown) => {
        leave()
        reject(isAbortError(err) ? abortedError(digest, err) : err)
      })
    })
  }

  return {
    fetchBlob,
    stats: () => ({ ...counters })
  }
}
