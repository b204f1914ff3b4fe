/**
 * The agent's transfer manager when a supernode is configured: one task per blob digest
 * per node, pieces from several parents at once, verification of every piece against
 * the digests the seed published, and the origin as the last resort.
 *
 * Order of fallbacks (the supernode is advisory): the digest's supernode, then the next
 * by rendezvous order; with none answering, parents already known for the task; with
 * none of those, the origin — counted and logged, since origin bytes are what Joey saves.
 */
import { JoeyError, errorMessage, isJoeyError, pieceSizeFor, toJoeyError, type Logger } from '../common/index.js'
import type { ContentStore } from '../content/index.js'
import type { Descriptor, Reference, RegistryClient } from '../distribution/index.js'
import type { Readable } from 'node:stream'
import type { BlobProgress, FetchBlobOptions, TransferManager, TransferStats } from './types.js'
import type { PartialBlob, PartialStore } from './partial.js'
import type { SupernodeClient, TaskView, ParentInfo, FailureReason } from './supernode-client.js'
import { fetchPiecesFromOrigin } from './origin-pieces.js'
import type { PieceIndex } from './piece-index.js'

/** What the transfer manager needs of a connection to one parent for one task. */
export interface PieceSessionLike {
  /** Whether the parent holds a piece (kept current by the parent's HAVE messages). */
  has: (index: number) => boolean
  /** Called when the parent announces a new piece. */
  onHave: (cb: (index: number) => void) => void
  /** Fetches a piece; the caller verifies it. */
  request: (index: number, options: { signal: AbortSignal }) => Promise<Uint8Array>
  close: () => void
}

export type SessionOpener = (parent: ParentInfo, digest: string, signal: AbortSignal) => Promise<PieceSessionLike>

export interface P2PTransferInit {
  /** Requests in flight per parent. */
  windowPerParent?: number
  /** Requests in flight to a peer parent that is this node's only parent. */
  soleParentWindow?: number
  /** In-order pieces kept ahead of everything else, for streaming readers. */
  inOrderWindow?: number
  pieceTimeoutMs?: number
  /** With no verified piece for this long, ask for new parents; twice that, go to the origin. */
  stallTimeoutMs?: number
  /** How often piece reports are batched to the supernode. */
  reportIntervalMs?: number
  /** Parents in use at once. */
  maxParents?: number
  /** How often the parent set is refreshed from the scheduler even when full. */
  rebalanceMs?: number
  /** Requests in flight to a seed while peer parents are available too. */
  seedWindow?: number
  /** How long a parent that failed (not corrupt) is skipped before it may be tried again. */
  parentRetryMs?: number
  /** How long a piece a seed deferred (ERR_PIECE_DEFERRED) is not asked of it again. */
  deferRetryMs?: number
  /** Attempts of an origin-only fetch before giving up (each resumes where the last stopped). */
  originAttempts?: number
  originRetryBaseMs?: number
}

export interface P2PTransferComponents {
  logger: Logger
  contentStore: ContentStore
  registry: RegistryClient
  partials: PartialStore
  supernodes: SupernodeClient
  openSession: SessionOpener
  /** Piece digests of whole blobs, so they can be served to peers after the partial is gone. */
  pieceIndex?: PieceIndex
  /**
   * The origin-only transfer into the content store (ingest with Range resume). Used for
   * whole-blob fetches when no supernode answers: it writes each byte once, where the
   * piece path writes, re-reads and copies. Streaming readers (the mirror) use pieces.
   */
  direct?: TransferManager
  /** Throttles piece downloads (bytes/s), shared by all tasks of the node. */
  downloadLimiter?: { take: (bytes: number, signal?: AbortSignal) => Promise<void> }
}

export interface OpenBlobOptions {
  start?: number
  end?: number
  signal?: AbortSignal
  authorization?: string
}

export interface P2PTransfer extends TransferManager {
  /**
   * A stream of the blob's bytes (or a range): from the store when committed, otherwise
   * joining (or starting) the node's task and streaming each piece once it is verified.
   * The stream errors rather than end if the blob fails verification.
   */
  openBlob: (ref: Reference, desc: Descriptor, options?: OpenBlobOptions) => Promise<Readable>
  /** Digests of blobs this node holds whole, with sizes (served to peers from the store). */
  readonly completed: Map<string, number>
  stop: () => Promise<void>
  /** Re-registers held blobs with the supernodes (after a supernode restart). */
  reannounce: () => Promise<void>
}

/** A parent as piece choice sees it: whether it is a seed, and what it holds now. */
export interface ChoiceParent {
  readonly seed: boolean
  has: (index: number) => boolean
}

/** The downloader's side of piece choice. */
export interface ChoiceState {
  pieceCount: number
  have: (index: number) => boolean
  inflight: (index: number) => boolean
  /** Whether the piece's digest is known, so the piece can be verified. */
  trusted: (index: number) => boolean
  /** Parents with an open session. */
  parents: Iterable<ChoiceParent>
}

export interface ChoiceOptions {
  inOrderWindow: number
  random: () => number
}

/**
 * The next piece to ask a parent for: the in-order head first (streaming readers), then
 * the rarest among parents. A seed only gets pieces no peer parent can give, so its
 * upload goes to first copies and agents feed each other. Exported for the simulator,
 * which runs this same choice against modelled peers.
 */
export function choosePiece (state: ChoiceState, parent: ChoiceParent, options: ChoiceOptions): number | undefined {
  const n = state.pieceCount
  let head = 0
  for (let i = 0; i < n && head < options.inOrderWindow; i++) {
    if (state.have(i)) continue
    head++
    if (wanted(state, parent, i)) return i
  }
  let best: number | undefined
  let bestCount = Infinity
  const start = Math.floor(options.random() * n)
  for (let k = 0; k < n; k++) {
    const i = (start + k) % n
    if (!wanted(state, parent, i)) continue
    let count = 0
    for (const q of state.parents) if (q.has(i)) count++
    if (count < bestCount) { best = i; bestCount = count; if (count <= 1) break }
  }
  return best
}

function wanted (state: ChoiceState, parent: ChoiceParent, i: number): boolean {
  if (!parent.has(i) || state.have(i) || state.inflight(i) || !state.trusted(i)) return false
  // A seed is spared pieces a peer parent holds.
  if (parent.seed) for (const q of state.parents) if (!q.seed && q.has(i)) return false
  return true
}

interface Task {
  digest: string
  /** A streaming reader joined: it needs the partial blob, and pieces in order. */
  streaming: boolean
  promise: Promise<void>
  listeners: Set<(p: BlobProgress) => void>
  progress: BlobProgress
}

export function createP2PTransfer (init: P2PTransferInit, components: P2PTransferComponents): P2PTransfer {
  const { logger, contentStore, registry, partials, supernodes, openSession } = components
  const hasSupernodes = supernodes.order('x').length > 0
  const originAttempts = init.originAttempts ?? 5
  const originRetryBaseMs = init.originRetryBaseMs ?? 250
  // One request per parent: a piece asked of a parent waits in its queue behind its other
  // children's, and no other parent may be asked for it meanwhile. The swarm simulator
  // (bench/sim) put whole-swarm completion 15–25% lower with 1 than with 4.
  const windowPerParent = init.windowPerParent ?? 1
  // With one parent, a queued request pins no piece another parent could give, and one
  // request at a time would leave the link idle for a round trip and a verify per piece
  // (the transfer bench's single-parent pull).
  const soleParentWindow = init.soleParentWindow ?? 4
  const inOrderWindow = init.inOrderWindow ?? 2
  const pieceTimeoutMs = init.pieceTimeoutMs ?? 20_000
  const stallTimeoutMs = init.stallTimeoutMs ?? 5_000
  const reportIntervalMs = init.reportIntervalMs ?? 200
  const parentRetryMs = init.parentRetryMs ?? 3000
  const seedWindow = init.seedWindow ?? 1
  const rebalanceMs = init.rebalanceMs ?? 2000
  const maxParents = init.maxParents ?? 4
  const deferRetryMs = init.deferRetryMs ?? 500
  const tasks = new Map<string, Task>()
  const completed = new Map<string, number>()
  const stopController = new AbortController()
  const stats: TransferStats = { originBytes: 0, peerBytes: 0, originFetches: 0 }

  function emit (task: Task, p: Partial<BlobProgress>): void {
    task.progress = { ...task.progress, ...p }
    for (const l of task.listeners) l(task.progress)
  }

  async function run (ref: Reference, desc: Descriptor, task: Task, options: FetchBlobOptions): Promise<void> {
    const log = logger.child({ digest: desc.digest, ref: ref.toString() })
    if (await contentStore.has(desc.digest)) {
      completed.set(desc.digest, desc.size)
      emit(task, { phase: 'exists', current: desc.size })
      return
    }
    let view: TaskView | undefined
    try {
      view = await supernodes.registerTask({
        digest: desc.digest,
        size: desc.size,
        reference: ref.name,
        ...(options.authorization !== undefined ? { authorization: options.authorization } : {})
      })
    } catch (err) {
      if (isJoeyError(err) && err.kind !== 'Unavailable') throw err
      if (hasSupernodes) log.warn({ err: errorMessage(err) }, 'no supernode answered; fetching from the origin')
    }
    if (view === undefined && components.direct !== undefined && !task.streaming) {
      await fromDirect(components.direct, ref, desc, task, options)
      return
    }
    if (view !== undefined && view.pieceSize === null) throw new JoeyError('ERR_PROTOCOL', `supernode sent no piece size for ${desc.digest}`)
    const pieceSize = view?.pieceSize ?? pieceSizeFor(desc.size)
    const blob = await partials.open({ digest: desc.digest, size: desc.size, pieceSize })
    try {
      if (view !== undefined) {
        blob.setPieceDigests(view.pieceDigests)
        await swarm(ref, desc, blob, view, task, options, log)
      } else {
        await originOnly(ref, desc, blob, task, options, log)
      }
      emit(task, { phase: 'verifying', current: desc.size })
      if (!await blob.verify()) {
        await partials.remove(desc.digest)
        throw new JoeyError('ERR_DIGEST_MISMATCH', `blob ${desc.digest} does not match its digest; nothing was stored`, { detail: { digest: desc.digest } })
      }
      await commitFromPartial(blob, desc)
      completed.set(desc.digest, desc.size)
      await components.pieceIndex?.save({ digest: desc.digest, size: desc.size, pieceSize: blob.pieceSize, pieceDigests: blob.pieceDigests as string[] }).catch((err) => {
        log.warn({ err: errorMessage(err) }, 'could not record piece digests; the blob will not be served to peers')
      })
      await partials.remove(desc.digest)
      if (view !== undefined) await supernodes.reportPieces(desc.digest, { complete: true }).catch(() => {})
      emit(task, { phase: 'done', current: desc.size })
    } finally {
      // A partial left after a failure stays on disk (state flushed) for a later resume.
      if (partials.get(desc.digest) !== undefined && !blob.complete) await blob.flush().catch(() => {})
    }
  }

  async function fromDirect (direct: TransferManager, ref: Reference, desc: Descriptor, task: Task, options: FetchBlobOptions): Promise<void> {
    const before = direct.stats()
    try {
      await direct.fetchBlob(ref, desc, {
        ...(options.authorization !== undefined ? { authorization: options.authorization } : {}),
        signal: stopController.signal,
        onProgress: (p) => { emit(task, p) }
      })
      completed.set(desc.digest, desc.size)
    } finally {
      const after = direct.stats()
      stats.originBytes += after.originBytes - before.originBytes
      stats.originFetches += after.originFetches - before.originFetches
    }
  }

  /** No supernode: the origin fills the partial in order, retried from where it stopped. */
  async function originOnly (ref: Reference, desc: Descriptor, blob: PartialBlob, task: Task, options: FetchBlobOptions, log: Logger): Promise<void> {
    const onPiece = (): void => { emit(task, { phase: 'downloading', current: Math.min(desc.size, blob.have.count * blob.pieceSize) }) }
    blob.on('piece', onPiece)
    stats.originFetches++
    try {
      for (let attempt = 1; !blob.complete; attempt++) {
        try {
          await fetchPiecesFromOrigin(registry, ref, blob, {
            ...(stopController.signal !== undefined ? { signal: stopController.signal } : {}),
            onBytes: (n) => { stats.originBytes += n },
            ...(components.downloadLimiter !== undefined ? { limiter: components.downloadLimiter } : {}),
            ...(options.authorization !== undefined ? { authorization: options.authorization } : {})
          })
        } catch (err) {
          const code = (err as { code?: string }).code
          if (attempt >= originAttempts || code === 'ERR_SIZE_MISMATCH' || code === 'ERR_DIGEST_MISMATCH' || stopController.signal.aborted || (isJoeyError(err) && ['NotFound', 'Unauthorized', 'InvalidArgument'].includes(err.kind))) {
            if (code === 'ERR_SIZE_MISMATCH') await partials.remove(desc.digest)
            throw err
          }
          log.warn({ err: errorMessage(err), attempt, have: blob.have.count, of: blob.pieceCount }, 'origin fetch interrupted; resuming')
          await new Promise(resolve => setTimeout(resolve, Math.min(5000, originRetryBaseMs * 2 ** (attempt - 1))))
        }
      }
    } finally {
      blob.off('piece', onPiece)
    }
  }

  async function commitFromPartial (blob: PartialBlob, desc: Descriptor): Promise<void> {
    const writer = await contentStore.writer(`p2p-${desc.digest}`, { expectedDigest: desc.digest, expectedSize: desc.size, lockTimeoutMs: 30_000 })
    try {
      if (writer.offset !== 0) await writer.truncate(0)
      for await (const chunk of blob.stream() as AsyncIterable<Buffer>) await writer.write(chunk)
      await writer.commit(desc.size, desc.digest)
    } catch (err) {
      await writer.abort().catch(() => {})
      throw err
    }
  }

  /** The download loop: parents, windows, rarest-first with an in-order head, fallbacks. */
  async function swarm (ref: Reference, desc: Descriptor, blob: PartialBlob, firstView: TaskView, task: Task, options: FetchBlobOptions, log: Logger): Promise<void> {
    const controller = new AbortController()
    const onAbort = (): void => controller.abort()
    options.signal?.addEventListener('abort', onAbort, { once: true })
    stopController.signal.addEventListener('abort', onAbort, { once: true })
    const signal = controller.signal

    /** `deferred`: pieces the parent (a seed) asked us to get elsewhere, and until when. */
    interface Parent { info: ParentInfo, session?: PieceSessionLike, inflight: Set<number>, opening: boolean, deferred: Map<number, number> }
    const parents = new Map<string, Parent>()
    // Parents that failed, and until when they are skipped; corrupt ones for good.
    const failedUntil = new Map<string, number>()
    const failed = {
      has: (id: string): boolean => (failedUntil.get(id) ?? 0) > Date.now(),
      add: (id: string, ms: number): void => { failedUntil.set(id, Date.now() + ms) },
      list: (): string[] => [...failedUntil.entries()].filter(([, t]) => t > Date.now()).map(([id]) => id)
    }
    const inflight = new Set<number>()
    const pendingReport: number[] = []
    const pendingDigests: Record<number, string> = {}
    let lastProgress = Date.now()
    // A parent announcing a piece this node lacks: the swarm is moving even while this
    // node waits its turn (a deep relay on slow links takes many seconds per piece).
    let lastSwarmProgress = lastProgress
    let backToSource = firstView.backToSource
    let originRun: Promise<void> | undefined
    let supernodeDown = false
    let wake: () => void = () => {}
    const woken = (): Promise<void> => new Promise<void>(resolve => { wake = resolve })

    const reportTimer = setInterval(() => {
      if (pendingReport.length === 0) return
      const pieces = pendingReport.splice(0)
      const digests = { ...pendingDigests }
      for (const k of Object.keys(pendingDigests)) delete pendingDigests[Number(k)]
      supernodes.reportPieces(desc.digest, { pieces, ...(Object.keys(digests).length > 0 ? { pieceDigests: digests } : {}) }).catch((err) => {
        log.debug({ err: errorMessage(err) }, 'piece report failed')
      })
    }, reportIntervalMs)

    const onPiece = (index: number, pieceDigest: string): void => {
      lastProgress = Date.now()
      pendingReport.push(index)
      if (backToSource) pendingDigests[index] = pieceDigest
      emit(task, { phase: 'downloading', current: Math.min(desc.size, blob.have.count * blob.pieceSize) })
      wake()
    }
    blob.on('piece', onPiece)
    emit(task, { phase: 'downloading', current: Math.min(desc.size, blob.have.count * blob.pieceSize) })
    // Pieces kept from an earlier attempt are reported again.
    for (let i = 0; i < blob.pieceCount; i++) if (blob.have.has(i)) pendingReport.push(i)

    function dropParent (id: string, reason: FailureReason | undefined, err?: unknown): void {
      const p = parents.get(id)
      if (p === undefined) return
      parents.delete(id)
      p.session?.close()
      for (const i of p.inflight) inflight.delete(i)
      if (reason !== undefined) {
        failed.add(id, reason === 'corrupt' ? Number.MAX_SAFE_INTEGER : parentRetryMs)
        log.warn({ parent: id, reason, err: err !== undefined ? errorMessage(err) : undefined }, 'dropping parent')
        supernodes.reportFailure(desc.digest, id, reason).catch(() => {})
      }
      wake()
    }

    function addParents (list: ParentInfo[]): void {
      for (const info of list) {
        if (parents.size >= maxParents) break
        if (parents.has(info.peerId) || failed.has(info.peerId)) continue
        const p: Parent = { info, inflight: new Set(), opening: true, deferred: new Map() }
        log.debug({ parent: info.peerId, seed: info.seed }, 'adding parent')
        parents.set(info.peerId, p)
        const open = async (): Promise<PieceSessionLike> => {
          // Connection set-up can fail transiently (simultaneous dials, a busy peer).
          for (let attempt = 1; ; attempt++) {
            try {
              return await openSession(info, desc.digest, signal)
            } catch (err) {
              if (attempt >= 3 || signal.aborted) throw err
              await new Promise(resolve => setTimeout(resolve, 100 * attempt))
            }
          }
        }
        open().then((session) => {
          p.opening = false
          if (!parents.has(info.peerId)) { session.close(); return }
          p.session = session
          session.onHave((i) => {
            if (!blob.have.has(i)) lastSwarmProgress = Date.now()
            wake()
          })
          wake()
        }, (err) => {
          p.opening = false
          dropParent(info.peerId, 'refused', err)
        })
      }
    }

    const open = (p: Parent): ChoiceParent | undefined => {
      const s = p.session
      if (s === undefined) return undefined
      if (p.deferred.size === 0) return { seed: p.info.seed, has: (i) => s.has(i) }
      const now = Date.now()
      for (const [i, until] of p.deferred) if (until <= now) p.deferred.delete(i)
      return { seed: p.info.seed, has: (i) => s.has(i) && !p.deferred.has(i) }
    }
    const choice: ChoiceState = {
      pieceCount: blob.pieceCount,
      have: (i) => blob.have.has(i),
      inflight: (i) => inflight.has(i),
      trusted: (i) => blob.pieceDigests[i] !== undefined,
      parents: {
        * [Symbol.iterator] () {
          for (const p of parents.values()) { const c = open(p); if (c !== undefined) yield c }
        }
      }
    }
    // Pieces in order only help a streaming reader; for a whole-blob fetch they make every
    // child of a parent ask for the same pieces at the same time.
    const choiceOptions: ChoiceOptions = { get inOrderWindow () { return task.streaming ? inOrderWindow : 0 }, random: Math.random }

    function pick (p: Parent): number | undefined {
      const c = open(p)
      return c === undefined ? undefined : choosePiece(choice, c, choiceOptions)
    }

    function fill (): void {
      // Peer parents first, seeds last.
      const ordered = [...parents.values()].sort((a, b) => Number(a.info.seed) - Number(b.info.seed))
      for (const p of ordered) {
        // One request at a time to a seed once peers can serve: each piece should leave
        // the seed as few times as possible.
        const window = p.info.seed ? (parents.size > 1 ? seedWindow : windowPerParent) : parents.size === 1 ? soleParentWindow : windowPerParent
        while (p.session !== undefined && p.inflight.size < window) {
          const index = pick(p)
          if (index === undefined) break
          fetchPiece(p, index)
        }
      }
    }

    function fetchPiece (p: Parent, index: number): void {
      const session = p.session as PieceSessionLike
      p.inflight.add(index)
      inflight.add(index)
      const timeout = AbortSignal.timeout(pieceTimeoutMs)
      const failed = new AbortController()
      const pieceSignal = AbortSignal.any([signal, timeout])
      ;(async () => {
        // The download cap is charged while the piece is on its way, not after: the wait
        // overlaps the parent's upload wait, so a hop costs one piece time at the cap, not two.
        // A failed request gives its reservation back.
        const [data] = await Promise.all([
          session.request(index, { signal: pieceSignal }).catch((err: unknown) => { failed.abort(); throw err }),
          // The piece timeout covers the parent, not this node's own cap.
          components.downloadLimiter?.take(blob.pieceRange(index).length, AbortSignal.any([signal, failed.signal]))
        ])
        await blob.writePiece(index, data)
        stats.peerBytes += data.byteLength
        log.debug({ parent: p.info.peerId, seed: p.info.seed, index }, 'piece received')
      })().then(() => {
        p.inflight.delete(index)
        inflight.delete(index)
        wake()
      }, (err) => {
        p.inflight.delete(index)
        inflight.delete(index)
        if (signal.aborted) return
        const code = (err as { code?: string }).code
        if (code === 'ERR_DIGEST_MISMATCH' || code === 'ERR_SIZE_MISMATCH') {
          dropParent(p.info.peerId, 'corrupt', err)
        } else if (timeout.aborted) {
          dropParent(p.info.peerId, 'timeout', err)
        } else if (code === 'ERR_PIECE_DEFERRED') {
          // The seed is sending this piece to another peer, which will relay it.
          p.deferred.set(index, Date.now() + deferRetryMs)
          wake()
        } else if (code === 'ERR_FAILED_PRECONDITION') {
          // No trusted digest yet for this piece: refresh from the supernode.
          wake()
        } else {
          dropParent(p.info.peerId, 'error', err)
        }
      })
    }

    async function refreshParents (): Promise<void> {
      try {
        let digestsFrom = 0
        while (digestsFrom < blob.pieceCount && blob.pieceDigests[digestsFrom] !== undefined) digestsFrom++
        const view = await supernodes.parents(desc.digest, failed.list(), { digestsFrom })
        supernodeDown = false
        blob.setPieceDigests(view.pieceDigests, view.pieceDigestsFrom ?? 0)
        if (view.backToSource) backToSource = true
        // The scheduler moved this peer off a seed: let the seed go once peers can serve.
        const chosen = new Set(view.parents.map(p => p.peerId))
        const peersLeft = [...parents.values()].some(p => !p.info.seed) || view.parents.some(p => !p.seed)
        for (const p of [...parents.values()]) {
          if (p.info.seed && !chosen.has(p.info.peerId) && peersLeft && p.inflight.size === 0) dropParent(p.info.peerId, undefined)
        }
        addParents(view.parents)
      } catch (err) {
        if (!supernodeDown) log.warn({ err: errorMessage(err) }, 'supernode did not answer; keeping known parents')
        supernodeDown = true
        // A restarted supernode forgot the task: register it again.
        if (isJoeyError(err) && (err.code === 'ERR_NOT_FOUND' || err.code === 'ERR_FAILED_PRECONDITION')) {
          try {
            const view = await supernodes.registerTask({ digest: desc.digest, size: desc.size, reference: ref.name, ...(options.authorization !== undefined ? { authorization: options.authorization } : {}) })
            supernodeDown = false
            blob.setPieceDigests(view.pieceDigests)
            if (view.backToSource) backToSource = true
            addParents(view.parents)
            for (let i = 0; i < blob.pieceCount; i++) if (blob.have.has(i)) pendingReport.push(i)
          } catch {}
        }
      }
    }

    function startOrigin (why: string): void {
      if (originRun !== undefined) return
      log.warn({ why, have: blob.have.count, of: blob.pieceCount }, 'fetching the rest of the blob from the origin')
      stats.originFetches++
      originRun = fetchPiecesFromOrigin(registry, ref, blob, {
        signal,
        onBytes: (n) => { stats.originBytes += n },
        ...(components.downloadLimiter !== undefined ? { limiter: components.downloadLimiter } : {}),
        ...(options.authorization !== undefined ? { authorization: options.authorization } : {})
      }).catch((err) => {
        if (!signal.aborted) log.warn({ err: errorMessage(err) }, 'origin fetch failed')
        originRun = undefined
        throw err
      })
      originRun.catch(() => {})
    }

    addParents(firstView.parents)
    let lastRefresh = Date.now()
    try {
      while (!blob.complete) {
        if (signal.aborted) throw new JoeyError('ERR_ABORTED', `transfer of ${desc.digest} aborted`)
        if (backToSource) startOrigin('scheduler sent this peer back to source')
        fill()
        const now = Date.now()
        const idle = now - lastProgress
        const swarmIdle = now - Math.max(lastProgress, lastSwarmProgress)
        const busy = inflight.size > 0 || [...parents.values()].some(p => p.opening)
        if ((parents.size < maxParents && now - lastRefresh > 1000) || now - lastRefresh > rebalanceMs || (idle > stallTimeoutMs && now - lastRefresh > stallTimeoutMs / 2)) {
          lastRefresh = now
          await refreshParents()
          fill()
        }
        // Requests in flight to parents, or parents still gaining pieces this node lacks, are
        // relay delay, not a stall. Only a swarm with nothing moving, or a very long silence,
        // sends this node to the origin.
        if (originRun === undefined && ((!busy && parents.size === 0 && supernodeDown) || (!busy && swarmIdle > 2 * stallTimeoutMs) || idle > 8 * stallTimeoutMs)) {
          startOrigin(supernodeDown ? 'no supernode and no parents' : 'no progress from parents')
        }
        if (blob.complete) break
        await Promise.race([woken(), new Promise(resolve => setTimeout(resolve, 250)), ...(originRun !== undefined ? [originRun.catch(() => {})] : [])])
        if (originRun !== undefined) {
          // The origin run ending without completing the blob is an error worth surfacing.
          const settled = await Promise.race([originRun.then(() => 'ok', (e: unknown) => e), Promise.resolve('pending')])
          if (settled !== 'pending' && settled !== 'ok' && !blob.complete && parents.size === 0) throw toJoeyError(settled)
        }
      }
    } finally {
      clearInterval(reportTimer)
      blob.off('piece', onPiece)
      for (const id of [...parents.keys()]) dropParent(id, undefined)
      options.signal?.removeEventListener('abort', onAbort)
      stopController.signal.removeEventListener('abort', onAbort)
      controller.abort()
      if (pendingReport.length > 0) {
        await supernodes.reportPieces(desc.digest, { pieces: pendingReport.splice(0), ...(backToSource ? { pieceDigests: { ...pendingDigests } } : {}) }).catch(() => {})
      }
    }
  }

  /** Joins the node's task for a digest, starting it if there is none. */
  async function join (ref: Reference, desc: Descriptor, options: FetchBlobOptions, streaming: boolean): Promise<void> {
    let task = tasks.get(desc.digest)
    if (task !== undefined && streaming) task.streaming = true
    if (task === undefined) {
      const t: Task = {
        digest: desc.digest,
        streaming,
        listeners: new Set(),
        progress: { digest: desc.digest, current: 0, total: desc.size, phase: 'waiting' },
        promise: Promise.resolve()
      }
      // The shared task must not die because the first caller gave up; only stop() ends it.
      const { signal: _ignored, ...shared } = options
      t.promise = run(ref, desc, t, shared).finally(() => { tasks.delete(desc.digest) })
      tasks.set(desc.digest, t)
      task = t
    }
    const listener = options.onProgress
    if (listener !== undefined) { task.listeners.add(listener); listener(task.progress) }
    try {
      if (options.signal === undefined) { await task.promise; return }
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => reject(new JoeyError('ERR_ABORTED', `fetch of ${desc.digest} aborted`))
        if (options.signal?.aborted === true) { onAbort(); return }
        options.signal?.addEventListener('abort', onAbort, { once: true })
        ;(task as Task).promise.then(resolve, reject).finally(() => options.signal?.removeEventListener('abort', onAbort))
      })
    } finally {
      if (listener !== undefined) task.listeners.delete(listener)
    }
  }

  return {
    completed,
    stats: () => ({ ...stats }),
    async fetchBlob (ref, desc, options = {}) {
      await join(ref, desc, options, false)
    },
    async openBlob (ref, desc, options = {}) {
      const range = {
        ...(options.start !== undefined ? { start: options.start } : {}),
        ...(options.end !== undefined ? { end: options.end } : {}),
        ...(options.signal !== undefined ? { signal: options.signal } : {})
      }
      if (await contentStore.has(desc.digest)) return await contentStore.read(desc.digest, range)
      const done = join(ref, desc, options.authorization !== undefined ? { authorization: options.authorization } : {}, true)
      let failure: unknown
      let finished = false
      done.then(() => { finished = true }, (err) => { failure = err; finished = true })
      // Wait for the task's partial blob to appear, or for the task to end.
      for (;;) {
        const partial = partials.get(desc.digest)
        if (partial !== undefined && partial.verified !== false) return partial.stream(range)
        if (finished) break
        if (options.signal?.aborted === true) throw new JoeyError('ERR_ABORTED', 'client went away')
        await Promise.race([done.catch(() => {}), new Promise(resolve => setTimeout(resolve, 20))])
      }
      if (failure !== undefined) throw failure
      return await contentStore.read(desc.digest, range)
    },
    async reannounce () {
      for (const e of components.pieceIndex?.list() ?? []) completed.set(e.digest, e.size)
      for (const [digest, size] of completed) {
        if (components.pieceIndex !== undefined && components.pieceIndex.get(digest) === undefined) continue
        if (!await contentStore.has(digest)) { completed.delete(digest); await components.pieceIndex?.delete(digest); continue }
        try {
          await supernodes.registerTask({ digest, size })
          await supernodes.reportPieces(digest, { complete: true })
        } catch (err) {
          logger.debug({ digest, err: errorMessage(err) }, 're-announce failed')
        }
      }
    },
    async stop () {
      stopController.abort()
      await Promise.allSettled([...tasks.values()].map(t => t.promise))
    }
  }
}
