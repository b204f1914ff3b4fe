/**
 * A synthetic load for the supernode's scheduler: thousands of hosts pulling the layers of
 * one image at once, driven the way the API drives the scheduler (register, join with a
 * parent choice, batched piece reports, parent requests, failures, completion). No sockets:
 * the real Scheduler is called in-process, so what is measured is its own cost.
 */
import { Scheduler } from '../../supernode/scheduler/index.js'
import { pieceSizeFor } from '../../src/common/index.js'
import { seededRandom } from './rng.js'

export interface WorkloadInit {
  peers: number
  /** Blob sizes of the tasks (layers of one image), bytes. */
  blobSizes: number[]
  seed?: number
}

export interface Workload {
  scheduler: Scheduler
  random: () => number
  digests: string[]
  peerIds: string[]
  /** Advances the virtual clock. */
  tick: (ms: number) => void
  /** Registers every host and joins every task with a parent choice (as POST /tasks does). */
  joinAll: () => void
  /**
   * One round of a pull in progress: the seed gains pieces, every peer reports a few new
   * pieces, some ask for parents, a few report a failed parent. Returns the number of
   * parent choices made.
   */
  round: (opts?: { askFraction?: number, failFraction?: number }) => number
  /** Parent choices only, for random peers of random tasks. */
  decide: (n: number) => void
  /** Whether every peer holds every task. */
  done: () => boolean
}

export const MiB = 1024 * 1024
/** Layers of one image: 256, 128 and 64 pieces of 4 MiB. */
export const BLOB_SIZES = [1024 * MiB, 512 * MiB, 256 * MiB]

export function createWorkload (init: WorkloadInit): Workload {
  let now = 1_000_000
  const random = seededRandom(init.seed ?? 1)
  const scheduler = new Scheduler({ now: () => now, random })
  const digests = init.blobSizes.map((_, i) => 'sha256:' + i.toString(16).padStart(64, '0'))
  const peerIds = Array.from({ length: init.peers }, (_, i) => `12D3KooWpeer${i.toString().padStart(6, '0')}`)
  const seedId = '12D3KooWseed'
  const pieceCounts = init.blobSizes.map(s => Math.ceil(s / pieceSizeFor(s)))
  const seedHave = init.blobSizes.map(() => 0)
  // What each peer holds of each task, as a count of pieces taken in a peer-specific order.
  const have = digests.map(() => new Map<string, number>())
  const orders = pieceCounts.map(n => {
    const order = Array.from({ length: n }, (_, i) => i)
    for (let i = n - 1; i > 0; i--) { const j = Math.floor(random() * (i + 1)); [order[i], order[j]] = [order[j] as number, order[i] as number] }
    return order
  })
  const pieceDigest = 'sha256:' + 'f'.repeat(64)
  const addrsOf = (i: number): string[] => [`/ip4/10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/tcp/4001`]

  function joinAll (): void {
    scheduler.upsertHost({ peerId: seedId, addrs: ['/ip4/10.0.0.1/tcp/4001'], seed: true, uploadSlots: 16 })
    for (const [t, digest] of digests.entries()) {
      scheduler.upsertTask(digest, { size: init.blobSizes[t] as number, pieceSize: pieceSizeFor(init.blobSizes[t] as number) })
      scheduler.joinTask(digest, seedId)
    }
    for (const [i, id] of peerIds.entries()) {
      scheduler.upsertHost({ peerId: id, addrs: addrsOf(i), labels: { zone: `z${i % 4}`, rack: `r${i % 64}` } })
      for (const digest of digests) {
        scheduler.joinTask(digest, id)
        scheduler.parents(digest, id)
      }
      now += 1
    }
  }

  function round (opts: { askFraction?: number, failFraction?: number } = {}): number {
    const ask = opts.askFraction ?? 0.5
    const fail = opts.failFraction ?? 0.01
    let decisions = 0
    now += 200
    for (const [t, digest] of digests.entries()) {
      const n = pieceCounts[t] as number
      if (seedHave[t] as number < n) {
        const from = seedHave[t] as number
        seedHave[t] = Math.min(n, from + 8)
        for (let i = from; i < (seedHave[t] as number); i++) scheduler.setPieceDigest(digest, i, pieceDigest)
        scheduler.reportPieces(digest, seedId, { pieces: Array.from({ length: (seedHave[t] as number) - from }, (_, k) => from + k), complete: seedHave[t] === n })
      }
      const held = have[t] as Map<string, number>
      const order = orders[t] as number[]
      for (const id of peerIds) {
        const h = held.get(id) ?? 0
        if (h >= n) continue
        const gain = Math.min(n - h, 1 + Math.floor(random() * 3))
        const pieces = order.slice(h, h + gain)
        held.set(id, h + gain)
        scheduler.reportPieces(digest, id, { pieces, ...(h + gain === n ? { complete: true } : {}) })
        if (h + gain < n && random() < ask) { scheduler.parents(digest, id); decisions++ }
        if (random() < fail) {
          const parent = peerIds[Math.floor(random() * peerIds.length)] as string
          if (parent !== id) scheduler.reportFailure(digest, id, parent, 'timeout')
        }
      }
    }
    // Heartbeats.
    for (const [i, id] of peerIds.entries()) if (random() < 0.05) scheduler.upsertHost({ peerId: id, addrs: addrsOf(i) })
    return decisions
  }

  function decide (k: number): void {
    for (let i = 0; i < k; i++) {
      const digest = digests[Math.floor(random() * digests.length)] as string
      const id = peerIds[Math.floor(random() * peerIds.length)] as string
      scheduler.parents(digest, id)
    }
  }

  function done (): boolean {
    return have.every((m, t) => m.size === peerIds.length && [...m.values()].every(h => h >= (pieceCounts[t] as number)))
  }

  return { scheduler, random, digests, peerIds, tick: (ms) => { now += ms }, joinAll, round, decide, done }
}
