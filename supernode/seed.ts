/**
 * The seed: fetches each blob from the origin once, cuts it into pieces as the bytes land,
 * publishes each piece's sha256 to the scheduler (the digests agents trust) and serves
 * each piece to agents as soon as it is written — agents need not wait for the whole blob.
 */
import { errorMessage } from '../src/common/index.js'
import type { Logger } from '../src/common/index.js'
import type { RegistryClient } from '../src/distribution/index.js'
import { parseReference } from '../src/distribution/index.js'
import { type PartialStore, type PartialBlob, fetchPiecesFromOrigin } from '../src/transfer/index.js'
import type { Scheduler } from './scheduler/index.js'
import type { SeedControl, SupernodeMetrics } from './api.js'

export interface SeedInit {
  /** Origin fetches running at once. */
  maxConcurrent?: number
  /** Attempts per blob before the seed gives up (agents then go back to source). */
  maxAttempts?: number
}

export interface SeedComponents {
  logger: Logger
  registry: RegistryClient
  scheduler: Scheduler
  partials: PartialStore
  metrics: SupernodeMetrics
  peerId: string
}

interface SeedTask {
  digest: string
  size: number
  reference: string
  authorization?: string
  state: 'idle' | 'fetching' | 'done' | 'failed'
  error?: string
  blob?: PartialBlob
}

export interface Seed extends SeedControl {
  stop: () => Promise<void>
  /** Resolves when the task's fetch ends (for tests and shutdown). */
  settled: (digest: string) => Promise<void>
}

export function createSeed (init: SeedInit, components: SeedComponents): Seed {
  const { logger, registry, scheduler, partials, metrics, peerId } = components
  const maxConcurrent = init.maxConcurrent ?? 4
  const maxAttempts = init.maxAttempts ?? 3
  const tasks = new Map<string, SeedTask>()
  const running = new Map<string, Promise<void>>()
  const queue: SeedTask[] = []
  const controller = new AbortController()

  function pump (): void {
    while (running.size < maxConcurrent && queue.length > 0) {
      const task = queue.shift() as SeedTask
      const p = run(task).finally(() => { running.delete(task.digest); pump() })
      running.set(task.digest, p)
    }
  }

  async function run (task: SeedTask): Promise<void> {
    const log = logger.child({ digest: task.digest, reference: task.reference })
    task.state = 'fetching'
    const st = scheduler.tasks.get(task.digest)
    const pieceSize = st?.pieceSize
    if (pieceSize === undefined) { task.state = 'failed'; task.error = 'task has no piece size'; return }
    let blob: PartialBlob
    try {
      blob = await partials.open({ digest: task.digest, size: task.size, pieceSize })
    } catch (err) {
      task.state = 'failed'; task.error = errorMessage(err); return
    }
    task.blob = blob
    const announce = (index: number, pieceDigest: string): void => {
      try {
        scheduler.setPieceDigest(task.digest, index, pieceDigest)
        scheduler.reportPieces(task.digest, peerId, { pieces: [index] })
      } catch (err) {
        log.warn({ err, index }, 'could not publish piece')
      }
    }
    // Pieces kept from an earlier run of the seed are published again.
    for (let i = 0; i < blob.pieceCount; i++) {
      if (blob.have.has(i)) announce(i, blob.pieceDigests[i] as string)
    }
    blob.on('piece', announce)
    const ref = parseReference(task.reference)
    for (let attempt = 1; attempt <= maxAttempts && !blob.complete; attempt++) {
      try {
        await fetchPiecesFromOrigin(registry, ref, blob, {
          signal: controller.signal,
          onBytes: (n) => metrics.seedOriginBytes.inc(n),
          ...(task.authorization !== undefined ? { authorization: task.authorization } : {})
        })
      } catch (err) {
        if (controller.signal.aborted) break
        log.warn({ err, attempt }, 'seed fetch from origin failed')
        task.error = errorMessage(err)
        if ((err as { code?: string }).code === 'ERR_DIGEST_MISMATCH') break
        await new Promise(resolve => setTimeout(resolve, 200 * attempt))
      }
    }
    if (blob.complete && await blob.verify()) {
      task.state = 'done'
      delete task.error
      scheduler.reportPieces(task.digest, peerId, { complete: true })
      log.info({ size: task.size }, 'seed holds the whole blob')
    } else {
      task.state = 'failed'
      task.error ??= blob.complete ? 'whole-blob digest mismatch' : 'incomplete'
      log.error({ error: task.error }, 'seed could not fetch blob; agents will be sent back to source')
      // The seed must not stay a parent for a blob it cannot finish.
      scheduler.leaveTask(task.digest, peerId)
      if (blob.complete) await partials.remove(task.digest)
    }
  }

  return {
    peerId,
    ensure (t) {
      const existing = tasks.get(t.digest)
      if (existing !== undefined && existing.state !== 'failed') return
      if (existing !== undefined && running.has(t.digest)) return
      const task: SeedTask = { ...t, state: 'idle' }
      tasks.set(t.digest, task)
      queue.push(task)
      pump()
    },
    status (digest) {
      const t = tasks.get(digest)
      if (t === undefined) return undefined
      return { state: t.state, ...(t.error !== undefined ? { error: t.error } : {}) }
    },
    async settled (digest) {
      await running.get(digest)
    },
    async stop () {
      controller.abort()
      await Promise.allSettled([...running.values()])
    }
  }
}
