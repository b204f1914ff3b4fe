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
 * rack locality, and recent failures. What a decision reads of each candidate lives in
 * typed arrays (tables.ts), so a probe costs a few cache lines, not a walk over objects. The seed is a parent of last resort among holders:
 * origin bytes leave it once, and its upload link is better spent on the first copies.
 */
import { JoeyError } from '../../src/common/index.js'
import {
  F_BACK_TO_SOURCE, F_COMPLETE, F_SEED, H_FAILURES, H_LOAD, H_RACK, H_SLOTS, H_ZONE, HOST_STRIDE, HostTable,
  P_COUNT, P_FLAGS, P_HOST, P_PARENTS, P_RANK, P_SEED_PARENTS, P_SEEN, PeerTable
} from './tables.js'

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

/** A host as the scheduler knows it. Read-only outside the scheduler (its tables mirror it). */
export interface HostState {
  readonly peerId: string
  readonly addrs: string[]
  readonly labels: HostLabels
  readonly uploadSlots: number
  readonly seed: boolean
  readonly registeredAt: number
  readonly lastSeen: number
  /** Children currently assigned to this host, over all tasks. */
  readonly load: number
  readonly failures: number
  readonly lastFailureAt: number
}

class Host implements HostState {
  readonly seed: boolean
  addrs: string[]
  labels: HostLabels
  uploadSlots: number
  lastSeen: number
  failures = 0
  lastFailureAt = 0
  /** Row in the host table, -1 once the host is removed. */
  row: number
  private loadWhenRemoved = 0

  constructor (
    private readonly table: HostTable,
    readonly peerId: string,
    reg: HostRegistration,
    uploadSlots: number,
    readonly registeredAt: number
  ) {
    this.addrs = reg.addrs
    this.labels = { ...(reg.labels ?? {}) }
    this.uploadSlots = uploadSlots
    this.lastSeen = registeredAt
    this.seed = reg.seed === true
    this.row = table.alloc()
  }

  /** Lives in the table only: a decision links and unlinks parents through their rows. */
  get load (): number {
    return this.row < 0 ? this.loadWhenRemoved : this.table.ints[this.row * HOST_STRIDE + H_LOAD] as number
  }

  remove (): void {
    this.loadWhenRemoved = this.load
    this.table.release(this.row)
    this.row = -1
  }
}

/** A peer of a task. Read-only outside the scheduler. */
export interface PeerTaskState {
  readonly peerId: string
  readonly rank: number
  readonly complete: boolean
  /** The peer's parents in this task, by peer id. */
  readonly parents: ReadonlyMap<string, PeerTaskState>
  /** Peers of this task that have this peer as a parent (the reverse of `parents`). */
  readonly children: ReadonlyMap<string, PeerTaskState>
  /** The peer's host (a task's peers leave it when their host is removed). */
  readonly host: HostState
  readonly seed: boolean
  /** Parents this peer refuses for this task (sent corrupt pieces). */
  readonly blocked: ReadonlySet<string>
  readonly backToSource: boolean
  readonly joinedAt: number
  readonly updatedAt: number
}

interface Peer {
  peerId: string
  rank: number
  complete: boolean
  parents: Map<string, Peer>
  children: Map<string, Peer>
  host: Host
  seed: boolean
  blocked: Set<string>
  backToSource: boolean
  joinedAt: number
  updatedAt: number
  /** Row in the task's peer table. */
  row: number
  /** Position in the task's join order (changes when the order is compacted), -1 for seeds. */
  slot: number
  /** Position among the task's complete peers, or -1. */
  doneSlot: number
}

export interface TaskState {
  readonly digest: string
  readonly size?: number
  readonly pieceSize?: number
  readonly pieceCount?: number
  readonly pieceDigests: ReadonlyArray<string | undefined>
  readonly peers: ReadonlyMap<string, PeerTaskState>
  readonly seeds: ReadonlySet<string>
  /** Peers blocked for everyone in this task (reported corrupt by several peers). */
  readonly blocked: ReadonlySet<string>
  readonly backToSource: ReadonlySet<string>
  readonly createdAt: number
  readonly updatedAt: number
}

interface Task {
  digest: string
  size?: number
  pieceSize?: number
  pieceCount?: number
  pieceDigests: Array<string | undefined>
  peers: Map<string, Peer>
  /** Hot per-peer state, by row. */
  table: PeerTable
  /** The peer of each row of `table`. */
  byRow: Array<Peer | undefined>
  /**
   * Rows of non-seed peers in join order (so in rank order), -1 where peers left: the
   * peers a child may take while they download are a prefix of it, which lets a decision
   * sample them without looking at all of them.
   */
  order: number[]
  holes: number
  /** Rows of the peers holding the whole blob: parents for anyone, whatever their rank. */
  completes: number[]
  seeds: Set<string>
  nextRank: number
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

/** Interns label values as small integers (0: no label), so locality is an integer compare. */
function labelId (ids: Map<string, number>, value: string | undefined): number {
  if (value === undefined) return 0
  let id = ids.get(value)
  if (id === undefined) { id = ids.size + 1; ids.set(value, id) }
  return id
}

export class Scheduler {
  readonly hosts: ReadonlyMap<string, HostState>
  readonly tasks: ReadonlyMap<string, TaskState>
  private readonly hostMap = new Map<string, Host>()
  private readonly taskMap = new Map<string, Task>()
  private readonly hostTable = new HostTable()
  private readonly zones = new Map<string, number>()
  private readonly racks = new Map<string, number>()
  private readonly opts: Required<Omit<SchedulerInit, 'now' | 'random'>>
  private readonly now: () => number
  private readonly random: () => number
  /** Marks the candidates a decision has seen (the peer table's P_SEEN lane). */
  private mark = 0
  // Scratch space of one decision, reused: candidate rows, then scored rows and scores.
  private cands = new Int32Array(128)
  private scoredRows = new Int32Array(128)
  private scores = new Float64Array(128)
  private bestRows = new Int32Array(8)
  private bestScores = new Float64Array(8)
  /** Whether the current decision scored a candidate that is not a seed. */
  private capSeeds = false
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
    this.hosts = this.hostMap
    this.tasks = this.taskMap
    if (this.opts.maxParents > this.bestRows.length) {
      this.bestRows = new Int32Array(this.opts.maxParents)
      this.bestScores = new Float64Array(this.opts.maxParents)
    }
  }

  get hostTtlMs (): number { return this.opts.hostTtlMs }

  /** Registers a host or refreshes it (heartbeat). */
  upsertHost (reg: HostRegistration): HostState {
    const now = this.now()
    let host = this.hostMap.get(reg.peerId)
    if (host !== undefined) {
      host.addrs = reg.addrs
      if (reg.labels !== undefined) host.labels = { ...reg.labels }
      if (reg.uploadSlots !== undefined) host.uploadSlots = reg.uploadSlots
      host.lastSeen = now
    } else {
      host = new Host(this.hostTable, reg.peerId, reg, reg.uploadSlots ?? this.opts.defaultUploadSlots, now)
      this.hostMap.set(reg.peerId, host)
    }
    const at = host.row * HOST_STRIDE
    const ints = this.hostTable.ints
    ints[at + H_SLOTS] = host.uploadSlots
    ints[at + H_ZONE] = labelId(this.zones, host.labels.zone)
    ints[at + H_RACK] = labelId(this.racks, host.labels.rack)
    return host
  }

  removeHost (peerId: string): void {
    const host = this.hostMap.get(peerId)
    if (host === undefined) return
    this.hostMap.delete(peerId)
    for (const task of this.taskMap.values()) this.leaveTask(task.digest, peerId)
    host.remove()
  }

  /** Drops hosts not seen within the TTL (seeds never expire). Returns the removed ids. */
  expireHosts (): string[] {
    const cutoff = this.now() - this.opts.hostTtlMs
    const gone: string[] = []
    for (const host of this.hostMap.values()) {
      if (!host.seed && host.lastSeen < cutoff) gone.push(host.peerId)
    }
    for (const id of gone) this.removeHost(id)
    return gone
  }

  /** Creates the task if needed and records what is known of the blob. */
  upsertTask (digest: string, meta: { size?: number, pieceSize?: number } = {}): TaskState {
    const now = this.now()
    let task = this.taskMap.get(digest)
    if (task === undefined) {
      task = {
        digest,
        pieceDigests: [],
        peers: new Map(),
        table: new PeerTable(0),
        byRow: [],
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
      this.taskMap.set(digest, task)
    }
    if (meta.size !== undefined && meta.pieceSize !== undefined && task.pieceCount === undefined) {
      if (!Number.isSafeInteger(meta.size) || meta.size < 0 || !Number.isSafeInteger(meta.pieceSize) || meta.pieceSize <= 0) {
        throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid task size ${meta.size} or piece size ${meta.pieceSize}`)
      }
      task.size = meta.size
      task.pieceSize = meta.pieceSize
      task.pieceCount = Math.max(1, Math.ceil(meta.size / meta.pieceSize))
      task.table.widen(task.pieceCount)
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
    return this.join(this.mustTask(digest), peerId)
  }

  private join (task: Task, peerId: string): Peer {
    const host = this.hostMap.get(peerId)
    if (host === undefined) throw new JoeyError('ERR_NOT_FOUND', `host ${peerId} is not registered; register it first`)
    let peer = task.peers.get(peerId)
    if (peer === undefined) {
      const now = this.now()
      const row = task.table.alloc()
      peer = {
        peerId,
        rank: host.seed ? 0 : task.nextRank++,
        complete: false,
        parents: new Map(),
        children: new Map(),
        host,
        seed: host.seed,
        blocked: new Set(),
        backToSource: false,
        joinedAt: now,
        updatedAt: now,
        row,
        slot: host.seed ? -1 : task.order.length,
        doneSlot: -1
      }
      const ints = task.table.ints
      ints[row * task.table.stride + P_HOST] = host.row
      ints[row * task.table.stride + P_RANK] = peer.rank
      ints[row * task.table.stride + P_FLAGS] = host.seed ? F_SEED : 0
      task.byRow[row] = peer
      task.peers.set(peerId, peer)
      if (host.seed) task.seeds.add(peerId)
      else task.order.push(row)
    }
    return peer
  }

  leaveTask (digest: string, peerId: string): void {
    const task = this.taskMap.get(digest)
    if (task === undefined) return
    const peer = task.peers.get(peerId)
    if (peer === undefined) return
    this.dropParents(task, peer)
    // Children of the leaving peer lose it as a parent.
    const ints = task.table.ints
    for (const child of peer.children.values()) {
      child.parents.delete(peerId)
      ints[child.row * task.table.stride + P_PARENTS]--
      if (peer.seed) ints[child.row * task.table.stride + P_SEED_PARENTS]--
    }
    const host = this.hostMap.get(peerId)
    if (host !== undefined) this.addLoad(host.row, -peer.children.size)
    peer.children.clear()
    this.setComplete(task, peer, false)
    task.backToSource.delete(peerId)
    task.peers.delete(peerId)
    task.seeds.delete(peerId)
    task.byRow[peer.row] = undefined
    task.table.release(peer.row)
    if (peer.slot >= 0) {
      task.order[peer.slot] = -1
      task.holes++
      if (task.holes > 64 && task.holes * 2 > task.order.length) this.compact(task)
    }
  }

  private compact (task: Task): void {
    const order: number[] = []
    for (const row of task.order) {
      if (row < 0) continue
      ;(task.byRow[row] as Peer).slot = order.length
      order.push(row)
    }
    task.order = order
    task.holes = 0
  }

  private setComplete (task: Task, peer: Peer, complete: boolean): void {
    peer.complete = complete
    const at = peer.row * task.table.stride + P_FLAGS
    const ints = task.table.ints
    ints[at] = complete ? ints[at] | F_COMPLETE : ints[at] & ~F_COMPLETE
    if (complete && peer.doneSlot < 0) {
      peer.doneSlot = task.completes.length
      task.completes.push(peer.row)
    } else if (!complete && peer.doneSlot >= 0) {
      // Swap-remove keeps the list dense.
      const last = task.completes.pop() as number
      if (last !== peer.row) {
        task.completes[peer.doneSlot] = last
        ;(task.byRow[last] as Peer).doneSlot = peer.doneSlot
      }
      peer.doneSlot = -1
    }
  }

  private setBackToSource (task: Task, peer: Peer, on: boolean): void {
    peer.backToSource = on
    const at = peer.row * task.table.stride + P_FLAGS
    const ints = task.table.ints
    ints[at] = on ? ints[at] | F_BACK_TO_SOURCE : ints[at] & ~F_BACK_TO_SOURCE
    if (on) task.backToSource.add(peer.peerId)
    else task.backToSource.delete(peer.peerId)
  }

  private addLoad (hostRow: number, delta: number): void {
    const ints = this.hostTable.ints
    const at = hostRow * HOST_STRIDE + H_LOAD
    ints[at] = Math.max(0, (ints[at] as number) + delta)
  }

  /** Records pieces a peer holds (verified). `complete` marks the whole blob. */
  reportPieces (digest: string, peerId: string, report: { pieces?: number[], complete?: boolean }): PeerTaskState {
    const task = this.mustTask(digest)
    const peer = task.peers.get(peerId) ?? this.join(task, peerId)
    const table = task.table
    if (report.pieces !== undefined) {
      for (const index of report.pieces) {
        this.checkIndex(task, index)
        // Before the piece count is known, the rows widen with what peers report.
        if (index >= table.words * 32) table.widen(index + 1)
        table.set(peer.row, index)
      }
    }
    if (report.complete === true) {
      if (task.pieceCount !== undefined) table.fill(peer.row, task.pieceCount)
      this.setComplete(task, peer, true)
      this.dropParents(task, peer)
      this.setBackToSource(task, peer, false)
    } else if (task.pieceCount !== undefined && task.pieceCount > 0 && table.ints[peer.row * table.stride + P_COUNT] === task.pieceCount) {
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
    const parentHost = this.hostMap.get(parentId)
    if (parentHost !== undefined) {
      if (now - parentHost.lastFailureAt > this.opts.failureWindowMs) parentHost.failures = 0
      parentHost.failures++
      parentHost.lastFailureAt = now
      this.hostTable.ints[parentHost.row * HOST_STRIDE + H_FAILURES] = parentHost.failures
      this.hostTable.lastFailureAt[parentHost.row] = now
    }
    if (peer !== undefined) {
      const parent = peer.parents.get(parentId)
      if (parent !== undefined) this.unlink(task, peer, parent)
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
    const peer = task.peers.get(peerId) ?? this.join(task, peerId)
    const table = task.table
    // A seed's child keeps its seed until it completes: the agent keeps that session
    // anyway, and the seed's cap of children must go on counting it.
    let keptSeeds: string[] | undefined
    if (table.ints[peer.row * table.stride + P_SEED_PARENTS] > 0) {
      keptSeeds = []
      for (const p of peer.parents.values()) if (p.seed) keptSeeds.push(p.peerId)
    }
    this.dropParents(task, peer)
    if (peer.complete) return { parents: [], backToSource: false }

    const exclude = options.exclude !== undefined && options.exclude.length > 0 ? new Set(options.exclude) : NO_PEERS
    const now = this.now()
    const n = this.sample(task, peer, exclude, now)
    const scored = this.score(task, peer, n, keptSeeds !== undefined, now)
    const chosen = this.choose(task, scored, keptSeeds)
    const parents: ParentChoice['parents'] = []
    for (const p of chosen) {
      this.link(task, peer, p)
      parents.push({ peerId: p.peerId, addrs: p.host.addrs, seed: p.seed })
    }
    let backToSource = false
    if (chosen.length === 0) {
      // A live seed keeps everyone off the origin, even a peer that just failed to reach it:
      // that peer retries shortly, and its own stall timer is the last resort.
      if (task.seeds.size === 0 && (peer.backToSource || task.backToSource.size < this.opts.maxBackToSource)) {
        this.setBackToSource(task, peer, true)
        backToSource = true
      }
    }
    return { parents, backToSource }
  }

  /**
   * Scores the sampled candidates (this.cands[0 … n-1]) into this.scoredRows and
   * this.scores; returns how many it scored. Also sets this.capSeeds.
   */
  private score (task: Task, peer: Peer, n: number, hasKeptSeeds: boolean, now: number): number {
    const table = task.table
    const ints = table.ints
    const stride = table.stride
    const hostInts = this.hostTable.ints
    const lastFailureAt = this.hostTable.lastFailureAt
    const me = peer.row
    const myHost = peer.host.row * HOST_STRIDE
    const zone = hostInts[myHost + H_ZONE] as number
    const rack = hostInts[myHost + H_RACK] as number
    const pieceCount = task.pieceCount ?? Infinity
    const missing = Math.max(1, (task.pieceCount ?? 1) - (ints[me * stride + P_COUNT] as number))
    const failureWindowMs = this.opts.failureWindowMs
    const unranked = !this.opts.ranked
    const cands = this.cands
    if (this.scores.length < n) {
      this.scoredRows = new Int32Array(n * 2)
      this.scores = new Float64Array(n * 2)
    }
    const scoredRows = this.scoredRows
    const scores = this.scores
    // Once an agent holds most of the blob the swarm needs few new pieces from the seed
    // (its last reports may still be on their way, so "complete" alone comes too late).
    let agentHolds = false
    for (let i = 0; i < n; i++) {
      const at = (cands[i] as number) * stride
      const flags = ints[at + P_FLAGS] as number
      if ((flags & F_SEED) === 0 && ((flags & F_COMPLETE) !== 0 || (ints[at + P_COUNT] as number) * 2 >= pieceCount)) { agentHolds = true; break }
    }
    let m = 0
    this.capSeeds = false
    for (let i = 0; i < n; i++) {
      const row = cands[i] as number
      const at = row * stride
      const flags = ints[at + P_FLAGS] as number
      const complete = (flags & F_COMPLETE) !== 0
      const seed = (flags & F_SEED) !== 0
      const useful = complete ? missing : (ints[at + P_COUNT] as number) === 0 ? 0 : table.missingIn(row, me)
      const downloading = !complete && ((ints[at + P_PARENTS] as number) > 0 || (flags & F_BACK_TO_SOURCE) !== 0)
      // A seed or a peer still downloading is useful even before it holds a piece the child lacks.
      if (useful === 0 && !downloading && !(seed && !complete)) continue
      let score = useful === 0 ? 0.1 : Math.min(1, useful / missing)
      const hostRow = ints[at + P_HOST] as number
      const h = hostRow * HOST_STRIDE
      const slots = hostInts[h + H_SLOTS] as number
      const free = slots - (hostInts[h + H_LOAD] as number)
      score += free > 0 ? Math.min(1, free / Math.max(1, slots)) : -2
      if (zone !== 0 && zone === hostInts[h + H_ZONE]) {
        score += 0.5
        if (rack !== 0 && rack === hostInts[h + H_RACK]) score += 0.5
      }
      const failures = hostInts[h + H_FAILURES] as number
      if (failures > 0 && now - (lastFailureAt[hostRow] as number) <= failureWindowMs) score -= 0.5 * failures
      if (seed) {
        // Unranked, every peer is a candidate from the start, so the seed's few children are
        // given it first: they are the swarm's only way in for new pieces.
        score += unranked && !agentHolds && (task.byRow[row] as Peer).children.size < this.opts.seedChildrenPerTask ? 2 : -0.75
      } else {
        this.capSeeds = true
        // The seed's children trade with each other, so the seed need send each piece once.
        if (unranked && hasKeptSeeds && (ints[at + P_SEED_PARENTS] as number) > 0) score += 1
      }
      // A little noise breaks ties so equal peers share the load.
      score += this.random() * 0.05
      scoredRows[m] = row
      scores[m] = score
      m++
    }
    return m
  }

  /** The kept seeds among the scored, then the best by score: a partial selection, not a sort. */
  private choose (task: Task, m: number, keptSeeds: string[] | undefined): Peer[] {
    const chosen: Peer[] = []
    const scoredRows = this.scoredRows
    const scores = this.scores
    if (keptSeeds !== undefined) {
      for (let i = 0; i < m; i++) {
        const p = task.byRow[scoredRows[i] as number] as Peer
        if (p.seed && keptSeeds.includes(p.peerId)) chosen.push(p)
      }
    }
    // A seed feeds only a few children of a task when agents can relay: each piece should
    // leave the seed about once and spread from agent to agent. With nothing else to
    // offer, the seed is still given.
    const capSeeds = this.capSeeds
    const slots = this.opts.maxParents - chosen.length
    if (slots <= 0) return chosen
    const bestRows = this.bestRows
    const bestScores = this.bestScores
    let k = 0
    for (let i = 0; i < m; i++) {
      const score = scores[i] as number
      if (k === slots && score <= (bestScores[k - 1] as number)) continue
      const row = scoredRows[i] as number
      if (((task.table.ints[row * task.table.stride + P_FLAGS] as number) & F_SEED) !== 0) {
        const p = task.byRow[row] as Peer
        if (keptSeeds?.includes(p.peerId) === true) continue
        if (capSeeds && p.children.size >= this.opts.seedChildrenPerTask) continue
      }
      let j = k < slots ? k++ : k - 1
      while (j > 0 && (bestScores[j - 1] as number) < score) {
        bestScores[j] = bestScores[j - 1] as number
        bestRows[j] = bestRows[j - 1] as number
        j--
      }
      bestScores[j] = score
      bestRows[j] = row
    }
    for (let i = 0; i < k; i++) chosen.push(task.byRow[bestRows[i] as number] as Peer)
    return chosen
  }

  /**
   * Up to sampleSize eligible candidates into this.cands, seeds always among them; returns
   * how many. The pool is the peers that joined before this one (lower ranks) and the
   * complete peers; above twice the sample it is probed at random rather than scanned, so
   * a decision costs O(sample).
   */
  private sample (task: Task, peer: Peer, exclude: ReadonlySet<string>, now: number): number {
    const failureCutoff = now - this.opts.failureWindowMs
    const k = this.opts.sampleSize
    const lower = peer.seed ? 0 : this.opts.ranked ? peer.slot : task.order.length
    const order = task.order
    const completes = task.completes
    const pool = lower + completes.length
    if (this.cands.length < task.seeds.size + 2 * k) this.cands = new Int32Array(task.seeds.size + 2 * k)
    const cands = this.cands
    // Sets a candidate must be checked against, only when there are any.
    const sets = exclude.size > 0 || task.blocked.size > 0 || peer.blocked.size > 0
    let n = 0
    for (const id of task.seeds) {
      const cand = task.peers.get(id)
      if (cand !== undefined && this.eligible(task, peer, cand.row, sets, exclude, failureCutoff)) cands[n++] = cand.row
    }
    if (++this.mark > 0x3fffffff) this.resetMarks()
    if (pool <= 2 * k) {
      for (let r = 0; r < pool; r++) {
        const row = r < lower ? order[r] as number : completes[r - lower] as number
        if (this.probe(task, peer, row, sets, exclude, failureCutoff)) cands[n++] = row
      }
      return n
    }
    const want = n + k
    for (let attempts = 4 * k; attempts > 0 && n < want; attempts--) {
      const r = Math.floor(this.random() * pool)
      const row = r < lower ? order[r] as number : completes[r - lower] as number
      if (this.probe(task, peer, row, sets, exclude, failureCutoff)) cands[n++] = row
    }
    return n
  }

  /** Whether a row drawn from the pool is a new, eligible candidate (marks it seen). */
  private probe (task: Task, peer: Peer, row: number, sets: boolean, exclude: ReadonlySet<string>, failureCutoff: number): boolean {
    if (row < 0) return false
    const ints = task.table.ints
    const at = row * task.table.stride
    if (ints[at + P_SEEN] === this.mark || ((ints[at + P_FLAGS] as number) & F_SEED) !== 0) return false
    ints[at + P_SEEN] = this.mark
    return this.eligible(task, peer, row, sets, exclude, failureCutoff)
  }

  /** Whether the peer in `row` of the task may serve this child now. */
  private eligible (task: Task, peer: Peer, row: number, sets: boolean, exclude: ReadonlySet<string>, failureCutoff: number): boolean {
    if (row === peer.row) return false
    if (sets) {
      const id = (task.byRow[row] as Peer).peerId
      if (exclude.has(id) || task.blocked.has(id) || peer.blocked.has(id)) return false
    }
    const ints = task.table.ints
    const at = row * task.table.stride
    const flags = ints[at + P_FLAGS] as number
    const complete = (flags & F_COMPLETE) !== 0
    if (this.opts.ranked && !complete && (ints[at + P_RANK] as number) >= peer.rank) return false
    const h = ints[at + P_HOST] as number
    if ((this.hostTable.ints[h * HOST_STRIDE + H_FAILURES] as number) >= this.opts.maxFailures && (this.hostTable.lastFailureAt[h] as number) > failureCutoff) return false
    // A peer with no piece yet is a candidate only while it is itself downloading: its
    // pieces will reach the child through HAVE as they land (a pipeline, not a wait).
    if ((flags & F_SEED) === 0 && ints[at + P_COUNT] === 0 && !complete && ints[at + P_PARENTS] === 0 && (flags & F_BACK_TO_SOURCE) === 0) return false
    return true
  }

  /** Clears every task's seen marks when the mark counter wraps. */
  private resetMarks (): void {
    for (const task of this.taskMap.values()) {
      const ints = task.table.ints
      for (let at = P_SEEN; at < ints.length; at += task.table.stride) ints[at] = 0
    }
    this.mark = 1
  }

  private link (task: Task, peer: Peer, parent: Peer): void {
    peer.parents.set(parent.peerId, parent)
    parent.children.set(peer.peerId, peer)
    const ints = task.table.ints
    ints[peer.row * task.table.stride + P_PARENTS]++
    if (parent.seed) ints[peer.row * task.table.stride + P_SEED_PARENTS]++
    this.addLoad(ints[parent.row * task.table.stride + P_HOST] as number, 1)
  }

  private unlink (task: Task, peer: Peer, parent: Peer): void {
    peer.parents.delete(parent.peerId)
    parent.children.delete(peer.peerId)
    const ints = task.table.ints
    ints[peer.row * task.table.stride + P_PARENTS]--
    if (parent.seed) ints[peer.row * task.table.stride + P_SEED_PARENTS]--
    this.addLoad(ints[parent.row * task.table.stride + P_HOST] as number, -1)
  }

  private dropParents (task: Task, peer: Peer): void {
    // Deleting the entry being visited is safe while iterating a Set.
    for (const parent of peer.parents.values()) this.unlink(task, peer, parent)
  }

  private mustTask (digest: string): Task {
    const task = this.taskMap.get(digest)
    if (task === undefined) throw new JoeyError('ERR_NOT_FOUND', `unknown task ${digest}; register it first`)
    return task
  }

  private checkIndex (task: Task, index: number): void {
    if (!Number.isSafeInteger(index) || index < 0 || (task.pieceCount !== undefined && index >= task.pieceCount)) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `piece index ${index} out of range for task ${task.digest}`)
    }
  }

  /** Removes tasks nobody has touched for maxIdleMs (soft state). */
  expireTasks (maxIdleMs: number): string[] {
    const cutoff = this.now() - maxIdleMs
    const gone: string[] = []
    for (const task of this.taskMap.values()) {
      if (task.updatedAt < cutoff) gone.push(task.digest)
    }
    for (const digest of gone) {
      const task = this.taskMap.get(digest)
      if (task !== undefined) for (const peerId of [...task.peers.keys()]) this.leaveTask(digest, peerId)
      this.taskMap.delete(digest)
    }
    return gone
  }
}
