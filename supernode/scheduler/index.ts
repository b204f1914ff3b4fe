/**
 * The supernode's scheduler: soft state about hosts and tasks, and the choice of parents.
 *
 * A task is a blob digest. By default its peers form a mesh: any peer that holds pieces or
 * is downloading may be a parent, so peers trade pieces both ways and the seed's children
 * pass each other what the seed gave each. Optionally (ranked) every peer gets a rank (join
 * order; the seed has rank 0) and may only take parents of a lower rank, or parents that
 * already hold the whole blob: an acyclic graph whatever the order of reports, at the cost
 * of pieces the seed sends twice.
 *
 * Parent choice looks at a bounded sample of holders, so one decision costs the same at
 * 50 peers as at 5,000: usefulness (pieces the child lacks), free upload slots, zone and
 * rack locality, and recent failures. The seed is a parent of last resort among holders:
 * origin bytes leave it once, and its upload link is better spent on the first copies.
 */
import { Bitfield, JoeyError } from '../../src/common/index.js'

export interface HostLabels {
  zone?: string
  rack?: string
  [key: string]: string | undefined
}

export interface HostRegistration {
  peerId: string
  addrs: string[]
  labels?: HostLabels
  /** How many children this host serves at once. */
  uploadSlots?: number
  /** Seeds are the supernode's own piece servers. */
  seed?: boolean
}

export interface HostState {
  peerId: string
  addrs: string[]
  labels: HostLabels
  uploadSlots: number
  seed: boolean
  registeredAt: number
  lastSeen: number
  /** Children currently assigned to this host, over all tasks. */
  load: number
  failures: number
  lastFailureAt: number
}

export interface PeerTaskState {
  peerId: string
  rank: number
  pieces: Bitfield
  complete: boolean
  parents: Set<string>
  /** Peers of this task that have this peer as a parent (the reverse of `parents`). */
  children: Set<string>
  /** The peer's host (a task's peers leave it when their host is removed). */
  host: HostState
  seed: boolean
  /** Position in the task's join order (internal; changes when the order is compacted). */
  slot: number
  /** Position among the task's complete peers, or -1 (internal). */
  doneSlot: number
  /** The last decision that sampled this peer (internal; spares a set per decision). */
  seenBy: number
  /** Parents this peer refuses for this task (sent corrupt pieces). */
  blocked: Set<string>
  backToSource: boolean
  joinedAt: number
  updatedAt: number
}

export interface TaskState {
  digest: string
  size?: number
  pieceSize?: number
  pieceCount?: number
  pieceDigests: Array<string | undefined>
  peers: Map<string, PeerTaskState>
  /**
   * Non-seed peers in join order (so in rank order), with holes where peers left: the
   * peers a child may take while they download are a prefix of it, which lets a decision
   * sample them without looking at all of them.
   */
  order: Array<PeerTaskState | undefined>
  holes: number
  /** Peers holding the whole blob: parents for anyone, whatever their rank. */
  completes: PeerTaskState[]
  seeds: Set<string>
  nextRank: number
  /** Peers blocked for everyone in this task (reported corrupt by several peers). */
  blocked: Set<string>
  corruptReports: Map<string, Set<string>>
  backToSource: Set<string>
  createdAt: number
  updatedAt: number
}

export interface ParentChoice {
  parents: Array<{ peerId: string, addrs: string[], seed: boolean }>
  /** Whether this peer may fetch from the origin itself (capped per task). */
  backToSource: boolean
}

export type FailureReason = 'corrupt' | 'timeout' | 'refused' | 'slow' | 'error'

export interface SchedulerInit {
  maxParents?: number
  /** Peers of one task allowed to fetch from the origin at the same time. */
  maxBackToSource?: number
  /** Candidates scored per decision. */
  sampleSize?: number
  hostTtlMs?: number
  /** A host with this many recent failures is skipped until failureWindowMs passes. */
  maxFailures?: number
  failureWindowMs?: number
  /** Distinct reporters of corrupt pieces after which a peer is blocked for everyone. */
  corruptReportsToBlock?: number
  defaultUploadSlots?: number
  /** Children of one task a seed serves while agents can relay to the rest. */
  seedChildrenPerTask?: number
  /** Whether a peer may only take parents that joined before it (or hold the whole blob). */
  ranked?: boolean
  now?: () => number
  random?: () => number
}

export const SCHEDULER_DEFAULTS = {
  maxParents: 4,
  maxBackToSource: 2,
  sampleSize: 48,
  hostTtlMs: 30_000,
  maxFailures: 3,
  failureWindowMs: 60_000,
  corruptReportsToBlock: 2,
  defaultUploadSlots: 8,
  // The seed sends a piece once and defers others' requests for it (first copies), so a few
  // more children only spread fresh pieces faster (simulated: N = 4 at 1.27 → 1.11 × S÷B).
  seedChildrenPerTask: 4,
  // Unranked: peers trade pieces both ways (the seed's children above all), so the seed sends
  // each piece about once; with ranks a seed child could never take a piece from the other.
  ranked: false
}

const NO_PEERS: ReadonlySet<string> = new Set()

export class Scheduler {
  readonly hosts = new Map<string, HostState>()
  readonly tasks = new Map<string, TaskState>()
  private readonly opts: Required<Omit<SchedulerInit, 'now' | 'random'>>
  private readonly now: () => number
  private readonly random: () => number
  decisions = 0

  constructor (init: SchedulerInit = {}) {
    this.opts = {
      maxParents: init.maxParents ?? SCHEDULER_DEFAULTS.maxParents,
      maxBackToSource: init.maxBackToSource ?? SCHEDULER_DEFAULTS.maxBackToSource,
      sampleSize: init.sampleSize ?? SCHEDULER_DEFAULTS.sampleSize,
      hostTtlMs: init.hostTtlMs ?? SCHEDULER_DEFAULTS.hostTtlMs,
      maxFailures: init.maxFailures ?? SCHEDULER_DEFAULTS.maxFailures,
      failureWindowMs: init.failureWindowMs ?? SCHEDULER_DEFAULTS.failureWindowMs,
      corruptReportsToBlock: init.corruptReportsToBlock ?? SCHEDULER_DEFAULTS.corruptReportsToBlock,
      defaultUploadSlots: init.defaultUploadSlots ?? SCHEDULER_DEFAULTS.defaultUploadSlots,
      seedChildrenPerTask: init.seedChildrenPerTask ?? SCHEDULER_DEFAULTS.seedChildrenPerTask,
      ranked: init.ranked ?? SCHEDULER_DEFAULTS.ranked
    }
    this.now = init.now ?? Date.now
    this.random = init.random ?? Math.random
  }

  get hostTtlMs (): number { return this.opts.hostTtlMs }

  /** Registers a host or refreshes it (heartbeat). */
  upsertHost (reg: HostRegistration): HostState {
    const now = this.now()
    const existing = this.hosts.get(reg.peerId)
    if (existing !== undefined) {
      existing.addrs = reg.addrs
      if (reg.labels !== undefined) existing.labels = { ...reg.labels }
      if (reg.uploadSlots !== undefined) existing.uploadSlots = reg.uploadSlots
      existing.lastSeen = now
      return existing
    }
    const host: HostState = {
      peerId: reg.peerId,
      addrs: reg.addrs,
      labels: { ...(reg.labels ?? {}) },
      uploadSlots: reg.uploadSlots ?? this.opts.defaultUploadSlots,
      seed: reg.seed === true,
      registeredAt: now,
      lastSeen: now,
      load: 0,
      failures: 0,
      lastFailureAt: 0
    }
    this.hosts.set(reg.peerId, host)
    return host
  }

  removeHost (peerId: string): void {
    if (!this.hosts.delete(peerId)) return
    for (const task of this.tasks.values()) this.leaveTask(task.digest, peerId)
  }

  /** Drops hosts not seen within the TTL (seeds never expire). Returns the removed ids. */
  expireHosts (): string[] {
    const cutoff = this.now() - this.opts.hostTtlMs
    const gone: string[] = []
    for (const host of this.hosts.values()) {
      if (!host.seed && host.lastSeen < cutoff) gone.push(host.peerId)
    }
    for (const id of gone) this.removeHost(id)
    return gone
  }

  /** Creates the task if needed and records what is known of the blob. */
  upsertTask (digest: string, meta: { size?: number, pieceSize?: number } = {}): TaskState {
    const now = this.now()
    let task = this.tasks.get(digest)
    if (task === undefined) {
      task = {
        digest,
        pieceDigests: [],
        peers: new Map(),
        order: [],
        holes: 0,
        completes: [],
        seeds: new Set(),
        nextRank: 1,
        blocked: new Set(),
        corruptReports: new Map(),
        backToSource: new Set(),
        createdAt: now,
        updatedAt: now
      }
      this.tasks.set(digest, task)
    }
    if (meta.size !== undefined && meta.pieceSize !== undefined && task.pieceCount === undefined) {
      if (!Number.isSafeInteger(meta.size) || meta.size < 0 || !Number.isSafeInteger(meta.pieceSize) || meta.pieceSize <= 0) {
        throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid task size ${meta.size} or piece size ${meta.pieceSize}`)
      }
      task.size = meta.size
      task.pieceSize = meta.pieceSize
      task.pieceCount = Math.max(1, Math.ceil(meta.size / meta.pieceSize))
      for (const peer of task.peers.values()) peer.pieces.resize(task.pieceCount)
    }
    task.updatedAt = now
    return task
  }

  setPieceDigest (digest: string, index: number, pieceDigest: string): void {
    const task = this.mustTask(digest)
    this.checkIndex(task, index)
    task.pieceDigests[index] = pieceDigest
  }

  /** Adds a peer to a task (idempotent) and returns its state. */
  joinTask (digest: string, peerId: string): PeerTaskState {
    const task = this.mustTask(digest)
    const host = this.hosts.get(peerId)
    if (host === undefined) throw new JoeyError('ERR_NOT_FOUND', `host ${peerId} is not registered; register it first`)
    let peer = task.peers.get(peerId)
    if (peer === undefined) {
      const now = this.now()
      peer = {
        peerId,
        rank: host.seed ? 0 : task.nextRank++,
        pieces: new Bitfield(task.pieceCount ?? 0),
        complete: false,
        parents: new Set(),
        children: new Set(),
        host,
        seed: host.seed,
        slot: host.seed ? -1 : task.order.length,
        doneSlot: -1,
        seenBy: 0,
        blocked: new Set(),
        backToSource: false,
        joinedAt: now,
        updatedAt: now
      }
      task.peers.set(peerId, peer)
      if (host.seed) task.seeds.add(peerId)
      else task.order.push(peer)
    }
    return peer
  }

  leaveTask (digest: string, peerId: string): void {
    const task = this.tasks.get(digest)
    if (task === undefined) return
    const peer = task.peers.get(peerId)
    if (peer === undefined) return
    this.dropParents(task, peer)
    // Children of the leaving peer lose it as a parent.
    for (const childId of peer.children) task.peers.get(childId)?.parents.delete(peerId)
    const host = this.hosts.get(peerId)
    if (host !== undefined) host.load = Math.max(0, host.load - peer.children.size)
    peer.children.clear()
    this.setComplete(task, peer, false)
    task.backToSource.delete(peerId)
    task.peers.delete(peerId)
    task.seeds.delete(peerId)
    if (peer.slot >= 0) {
      task.order[peer.slot] = undefined
      task.holes++
      if (task.holes > 64 && task.holes * 2 > task.order.length) this.compact(task)
    }
  }

  private compact (task: TaskState): void {
    const order: PeerTaskState[] = []
    for (const p of task.order) {
      if (p === undefined) continue
      p.slot = order.length
      order.push(p)
    }
    task.order = order
    task.holes = 0
  }

  private setComplete (task: TaskState, peer: PeerTaskState, complete: boolean): void {
    peer.complete = complete
    if (complete && peer.doneSlot < 0) {
      peer.doneSlot = task.completes.length
      task.completes.push(peer)
    } else if (!complete && peer.doneSlot >= 0) {
      // Swap-remove keeps the list dense.
      const last = task.completes.pop() as PeerTaskState
      if (last !== peer) { task.completes[peer.doneSlot] = last; last.doneSlot = peer.doneSlot }
      peer.doneSlot = -1
    }
  }

  /** Records pieces a peer holds (verified). `complete` marks the whole blob. */
  reportPieces (digest: string, peerId: string, report: { pieces?: number[], complete?: boolean }): PeerTaskState {
    const task = this.mustTask(digest)
    const peer = task.peers.get(peerId) ?? this.joinTask(digest, peerId)
    for (const index of report.pieces ?? []) {
      this.checkIndex(task, index)
      // Before the piece count is known, the set grows with what peers report.
      if (index >= peer.pieces.length) peer.pieces.resize(index + 1)
      peer.pieces.set(index)
    }
    if (report.complete === true) {
      if (task.pieceCount !== undefined) peer.pieces.fill()
      this.setComplete(task, peer, true)
      this.dropParents(task, peer)
      task.backToSource.delete(peerId)
      peer.backToSource = false
    } else if (task.pieceCount !== undefined && task.pieceCount > 0 && peer.pieces.count === task.pieceCount) {
      this.setComplete(task, peer, true)
      this.dropParents(task, peer)
    }
    peer.updatedAt = this.now()
    task.updatedAt = peer.updatedAt
    return peer
  }

  /** A child reports a failing parent. Corrupt pieces block the parent for that child at once. */
  reportFailure (digest: string, peerId: string, parentId: string, reason: FailureReason): void {
    const task = this.mustTask(digest)
    const peer = task.peers.get(peerId)
    const now = this.now()
    const parentHost = this.hosts.get(parentId)
    if (parentHost !== undefined) {
      if (now - parentHost.lastFailureAt > this.opts.failureWindowMs) parentHost.failures = 0
      parentHost.failures++
      parentHost.lastFailureAt = now
    }
    if (peer !== undefined) {
      if (peer.parents.has(parentId)) this.unlink(task, peer, parentId)
      if (reason === 'corrupt') peer.blocked.add(parentId)
    }
    if (reason === 'corrupt') {
      let reporters = task.corruptReports.get(parentId)
      if (reporters === undefined) { reporters = new Set(); task.corruptReports.set(parentId, reporters) }
      reporters.add(peerId)
      if (reporters.size >= this.opts.corruptReportsToBlock) task.blocked.add(parentId)
    }
  }

  /**
   * Chooses up to maxParents parents for a peer of a task. Replaces the peer's previous
   * assignment, so asking again after a parent failed or finished rebalances load.
   */
  parents (digest: string, peerId: string, options: { exclude?: string[] } = {}): ParentChoice {
    this.decisions++
    const task = this.mustTask(digest)
    const peer = task.peers.get(peerId) ?? this.joinTask(digest, peerId)
    const me = peer.host
    // A seed's child keeps its seed until it completes: the agent keeps that session
    // anyway, and the seed's cap of children must go on counting it.
    const keptSeeds = [...peer.parents].filter(id => task.seeds.has(id))
    this.dropParents(task, peer)
    if (peer.complete) return { parents: [], backToSource: false }

    const exclude = options.exclude !== undefined && options.exclude.length > 0 ? new Set(options.exclude) : NO_PEERS
    const now = this.now()
    const candidates = this.sample(task, peer, exclude, now)
    const scored: Array<{ host: HostState, score: number }> = []
    const missing = Math.max(1, (task.pieceCount ?? 1) - peer.pieces.count)
    const zone = me.labels.zone
    const rack = me.labels.rack
    const failureWindowMs = this.opts.failureWindowMs
    // Once an agent holds most of the blob the swarm needs few new pieces from the seed
    // (its last reports may still be on their way, so "complete" alone comes too late).
    const pieceCount = task.pieceCount ?? Infinity
    const agentHolds = candidates.some(c => !c.host.seed && (c.complete || c.pieces.count * 2 >= pieceCount))
    for (const cand of candidates) {
      const host = cand.host
      const useful = cand.complete ? missing : cand.pieces.countMissingIn(peer.pieces)
      const downloading = !cand.complete && (cand.parents.size > 0 || cand.backToSource)
      // A seed or a peer still downloading is useful even before it holds a piece the child lacks.
      if (useful === 0 && !downloading && !(host.seed && !cand.complete)) continue
      let score = useful === 0 ? 0.1 : Math.min(1, useful / missing)
      const free = host.uploadSlots - host.load
      score += free > 0 ? Math.min(1, free / Math.max(1, host.uploadSlots)) : -2
      if (zone !== undefined && zone === host.labels.zone) {
        score += 0.5
        if (rack !== undefined && rack === host.labels.rack) score += 0.5
      }
      if (host.failures > 0 && now - host.lastFailureAt <= failureWindowMs) score -= 0.5 * host.failures
      if (host.seed) {
        // Unranked, every peer is a candidate from the start, so the seed's few children are
        // given it first: they are the swarm's only way in for new pieces.
        score += !this.opts.ranked && !agentHolds && cand.children.size < this.opts.seedChildrenPerTask ? 2 : -0.75
      } else if (!this.opts.ranked && keptSeeds.length > 0 && [...cand.parents].some(id => task.seeds.has(id))) {
        // The seed's children trade with each other, so the seed need send each piece once.
        score += 1
      }
      // A little noise breaks ties so equal peers share the load.
      score += this.random() * 0.05
      scored.push({ host, score })
    }
    // A seed feeds only a few children of a task when agents can relay: each piece should
    // leave the seed about once and spread from agent to agent. With nothing else to
    // offer, the seed is still given.
    const capSeeds = scored.some(x => !x.host.seed)
    // The best maxParents by score: a partial selection, not a sort of the whole sample.
    const kept = scored.filter(x => keptSeeds.includes(x.host.peerId))
    const slots = this.opts.maxParents - kept.length
    const best: Array<{ host: HostState, score: number }> = []
    for (const x of scored) {
      if (keptSeeds.includes(x.host.peerId)) continue
      if (capSeeds && x.host.seed && (task.peers.get(x.host.peerId)?.children.size ?? 0) >= this.opts.seedChildrenPerTask) continue
      if (best.length === slots && (slots === 0 || x.score <= (best[best.length - 1] as { score: number }).score)) continue
      let i = best.length
      while (i > 0 && (best[i - 1] as { score: number }).score < x.score) i--
      best.splice(i, 0, x)
      if (best.length > slots) best.pop()
    }
    const chosen = [...kept, ...best]
    for (const { host } of chosen) this.link(task, peer, host)
    let backToSource = false
    if (chosen.length === 0) {
      // A live seed keeps everyone off the origin, even a peer that just failed to reach it:
      // that peer retries shortly, and its own stall timer is the last resort.
      if (task.seeds.size === 0 && (peer.backToSource || task.backToSource.size < this.opts.maxBackToSource)) {
        task.backToSource.add(peerId)
        peer.backToSource = true
        backToSource = true
      }
    }
    return {
      parents: chosen.map(({ host }) => ({ peerId: host.peerId, addrs: host.addrs, seed: host.seed })),
      backToSource
    }
  }

  /** Whether a peer of the task may serve this child now. */
  private eligible (task: TaskState, peer: PeerTaskState, cand: PeerTaskState, exclude: ReadonlySet<string>, failureCutoff: number): boolean {
    if (cand === peer) return false
    if (exclude.has(cand.peerId) || task.blocked.has(cand.peerId) || peer.blocked.has(cand.peerId)) return false
    if (this.opts.ranked && !cand.complete && cand.rank >= peer.rank) return false
    const host = cand.host
    if (host.failures >= this.opts.maxFailures && host.lastFailureAt > failureCutoff) return false
    // A peer with no piece yet is a candidate only while it is itself downloading: its
    // pieces will reach the child through HAVE as they land (a pipeline, not a wait).
    if (!host.seed && cand.pieces.count === 0 && !cand.complete && cand.parents.size === 0 && !cand.backToSource) return false
    return true
  }

  /**
   * Up to sampleSize eligible candidates, seeds always among them. The pool is the peers
   * that joined before this one (lower ranks) and the complete peers; above twice the
   * sample it is probed at random rather than scanned, so a decision costs O(sample).
   */
  private sample (task: TaskState, peer: PeerTaskState, exclude: ReadonlySet<string>, now: number): PeerTaskState[] {
    const failureCutoff = now - this.opts.failureWindowMs
    const out: PeerTaskState[] = []
    for (const id of task.seeds) {
      const cand = task.peers.get(id)
      if (cand !== undefined && this.eligible(task, peer, cand, exclude, failureCutoff)) out.push(cand)
    }
    const k = this.opts.sampleSize
    const lower = peer.seed ? 0 : this.opts.ranked ? peer.slot : task.order.length
    const pool = lower + task.completes.length
    const at = (r: number): PeerTaskState | undefined => r < lower ? task.order[r] : task.completes[r - lower]
    const mark = this.decisions
    const consider = (cand: PeerTaskState | undefined): void => {
      if (cand === undefined || cand.seed || cand.seenBy === mark) return
      cand.seenBy = mark
      if (this.eligible(task, peer, cand, exclude, failureCutoff)) out.push(cand)
    }
    if (pool <= 2 * k) {
      for (let r = 0; r < pool; r++) consider(at(r))
      return out
    }
    const want = out.length + k
    for (let attempts = 4 * k; attempts > 0 && out.length < want; attempts--) consider(at(Math.floor(this.random() * pool)))
    return out
  }

  private link (task: TaskState, peer: PeerTaskState, parent: HostState): void {
    peer.parents.add(parent.peerId)
    task.peers.get(parent.peerId)?.children.add(peer.peerId)
    parent.load++
  }

  private unlink (task: TaskState, peer: PeerTaskState, parentId: string): void {
    peer.parents.delete(parentId)
    task.peers.get(parentId)?.children.delete(peer.peerId)
    const host = this.hosts.get(parentId)
    if (host !== undefined) host.load = Math.max(0, host.load - 1)
  }

  private dropParents (task: TaskState, peer: PeerTaskState): void {
    for (const parentId of [...peer.parents]) this.unlink(task, peer, parentId)
  }

  private mustTask (digest: string): TaskState {
    const task = this.tasks.get(digest)
    if (task === undefined) throw new JoeyError('ERR_NOT_FOUND', `unknown task ${digest}; register it first`)
    return task
  }

  private checkIndex (task: TaskState, index: number): void {
    if (!Number.isSafeInteger(index) || index < 0 || (task.pieceCount !== undefined && index >= task.pieceCount)) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `piece index ${index} out of range for task ${task.digest}`)
    }
  }

  /** Removes tasks nobody has touched for maxIdleMs (soft state). */
  expireTasks (maxIdleMs: number): string[] {
    const cutoff = this.now() - maxIdleMs
    const gone: string[] = []
    for (const task of this.tasks.values()) {
      if (task.updatedAt < cutoff) gone.push(task.digest)
    }
    for (const digest of gone) {
      const task = this.tasks.get(digest)
      if (task !== undefined) for (const peerId of [...task.peers.keys()]) this.leaveTask(digest, peerId)
      this.tasks.delete(digest)
    }
    return gone
  }
}
