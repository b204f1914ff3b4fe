/**
 * A discrete-event simulation of one blob pulled by N agents at once, with the real
 * supernode Scheduler and the agent's real piece choice (choosePiece from the transfer
 * manager) in the loop, and modelled links instead of sockets. Virtual time only: no
 * timers, no I/O, so 5,000 agents run in seconds and every run repeats exactly.
 *
 * The model, after src/transfer/p2p.ts, src/p2p/server.ts and supernode/seed.ts:
 * - Every node has an upload and a download cap B, each a token bucket in call order like
 *   the real rate limiter. A parent serves each child session one piece at a time and takes
 *   the whole piece from its upload bucket before sending it; the child charges the piece
 *   to its download bucket when it asks for it (or, with chargeDownload 'receive', as the
 *   agent did before, after it arrived), then verifies and announces it (HAVE to its own
 *   children, batched report to the supernode).
 * - An agent registers the task (the scheduler joins it and chooses parents, as the API
 *   does), opens sessions to up to maxParents parents, keeps windowPerParent requests in
 *   flight per parent (seedWindow to a seed once it has peers too), asks again for parents
 *   when it has fewer than maxParents (after 1 s) or every rebalanceMs, learns piece digests
 *   only from those answers, and goes to the origin after a stall, as the agent does.
 * - The seed fetches the blob from the origin once, in order, at originRate, and publishes
 *   each piece's digest to the scheduler as it lands; it serves pieces as they land.
 * Not modelled: CPU (hashing, Noise, copies), TCP dynamics below the token buckets,
 * lost or corrupt pieces, failing parents, several tasks per node.
 */
import { pieceSizeFor, pieceCountFor } from '../../src/common/index.js'
import { choosePiece, type ChoiceParent, type ChoiceState } from '../../src/transfer/index.js'
import { SEED_FIRST_COPY_HOLD_MS } from '../../src/p2p/index.js'
import { Scheduler, type SchedulerInit } from '../../supernode/scheduler/index.js'
import { EventQueue, VirtualBucket } from './events.js'
import { seededRandom } from './rng.js'

/** The agent's transfer settings (createP2PTransfer's defaults unless overridden). */
export interface AgentModel {
  windowPerParent: number
  soleParentWindow: number
  inOrderWindow: number
  maxParents: number
  seedWindow: number
  reportIntervalMs: number
  rebalanceMs: number
  stallTimeoutMs: number
  /**
   * When a piece is charged to the child's download limiter: after it arrived ('receive',
   * one more piece time per hop) or while it is requested ('request', overlapping the
   * parent's upload wait).
   */
  chargeDownload: 'receive' | 'request'
  /** Whether a streaming reader joined (only then does the in-order head apply). */
  streaming: boolean
  /** How long a piece the seed deferred is not asked of it again. */
  deferRetryMs: number
}

export const AGENT_DEFAULTS: AgentModel = {
  windowPerParent: 1,
  soleParentWindow: 4,
  inOrderWindow: 2,
  maxParents: 4,
  seedWindow: 1,
  reportIntervalMs: 200,
  rebalanceMs: 2000,
  stallTimeoutMs: 5000,
  chargeDownload: 'request',
  streaming: false,
  deferRetryMs: 500
}

export interface SimInit {
  peers: number
  /** Blob size, bytes. */
  size: number
  /** Upload and download cap of every node, the seed's upload included, bytes/s. */
  bandwidth: number
  /** The seed's fetch from the origin, bytes/s (default B). */
  originRate?: number
  /** How fast a piece crosses the wire once the sender's limiter let it go, bytes/s (default 16 × B). */
  wireRate?: number
  /** One-way latency between nodes, ms. */
  latencyMs?: number
  /** Round trip of a call to the supernode, ms. */
  apiMs?: number
  /** Opening a piece session to a parent, ms. */
  connectMs?: number
  /** Agents start at random times within this window, ms (the real benchmark starts them together). */
  startSpreadMs?: number
  seedUploadSlots?: number
  /** The seed's first-copies hold (the piece server's firstCopyHoldMs); 0 turns it off. */
  seedFirstCopyHoldMs?: number
  /** Piece size, bytes (default pieceSizeFor(size), as the supernode chooses it). */
  pieceSize?: number
  agent?: Partial<AgentModel>
  scheduler?: Omit<SchedulerInit, 'now' | 'random'>
  seed?: number
}

export interface SimResult {
  peers: number
  size: number
  pieceSize: number
  pieceCount: number
  /** S ÷ B, ms. */
  idealMs: number
  /** Each agent's completion, from the common start, ms. */
  completionMs: number[]
  ratioP50: number
  ratioMax: number
  /** Bytes from the origin (seed and agents) ÷ S. */
  originRatio: number
  agentsToOrigin: number
  /** Bytes the seed uploaded ÷ S. */
  seedUploadRatio: number
  /** Requests the seed deferred (first copies). */
  seedDeferrals: number
  hopsMean: number
  hopsMax: number
  firstPieceP50Ms: number
  firstPieceMaxMs: number
  decisions: number
  events: number
  /** Virtual time the run ended, ms. */
  endMs: number
  wallMs: number
  /** CPU time of the run (the machine may be busy with other work), ms. */
  cpuMs: number
  unfinished: number
}

interface Node {
  id: string
  seed: boolean
  have: Uint8Array
  count: number
  hops: Uint16Array
  up: VirtualBucket
  /** Sessions in which this node is the parent. */
  served: Set<Session>
}

interface Session { parent: Node, child: Agent, link: Link, queue: number[], working: boolean, closed: boolean, charged: Map<number, number> }

interface Link {
  node: Node
  seed: boolean
  inflight: Set<number>
  session?: Session
  choice: ChoiceParent
  /** Pieces the seed deferred, and until when they are not asked of it again. */
  deferred: Map<number, number>
  /**
   * Whether a pick for this parent might find something since the last one that found
   * nothing (it announced a piece, digests or parents changed). Only saves the simulator
   * work: a pick that would fail is skipped, none that would succeed.
   */
  dirty: boolean
}

interface Agent extends Node {
  start: number
  done?: number
  firstPiece?: number
  down: VirtualBucket
  links: Map<string, Link>
  open: ChoiceParent[]
  inflight: Set<number>
  pending: number[]
  lastProgress: number
  /** When a parent last announced a piece this agent lacks. */
  lastSwarmProgress: number
  lastRefresh: number
  /** Piece digests this agent has learnt (the seed publishes them in order). */
  known: number
  backToSource: boolean
  originRun: boolean
  loopQueued: boolean
  state: ChoiceState
}

const DIGEST = 'sha256:' + '5'.repeat(64)
const PIECE_DIGEST = 'sha256:' + '6'.repeat(64)

function quantile (xs: number[], q: number): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] as number
}

export function simulate (init: SimInit): SimResult {
  const wallStart = performance.now()
  const cpuStart = process.cpuUsage()
  const a = { ...AGENT_DEFAULTS, ...init.agent }
  const B = init.bandwidth / 1000
  const originRate = (init.originRate ?? init.bandwidth) / 1000
  const wireRate = (init.wireRate ?? 16 * init.bandwidth) / 1000
  const latencyMs = init.latencyMs ?? 0.5
  const apiMs = init.apiMs ?? 2
  const connectMs = init.connectMs ?? 20
  const random = seededRandom(init.seed ?? 1)
  const q = new EventQueue()
  const scheduler = new Scheduler({ ...init.scheduler, now: () => q.now, random })
  const size = init.size
  const pieceSize = init.pieceSize ?? pieceSizeFor(size)
  const n = pieceCountFor(size, pieceSize)
  const bytesOf = (i: number): number => i === n - 1 ? size - pieceSize * (n - 1) : pieceSize
  const idealMs = size / B

  let published = 0
  let originBytes = 0
  let seedUpload = 0
  let agentsToOrigin = 0
  let finished = 0
  const choiceOptions = { inOrderWindow: a.streaming ? a.inOrderWindow : 0, random }

  const node = (id: string, seed: boolean): Node => ({
    id, seed, have: new Uint8Array(n), count: 0, hops: new Uint16Array(n), up: new VirtualBucket(B, 0), served: new Set()
  })
  const seed = node('seed', true)
  scheduler.upsertHost({ peerId: seed.id, addrs: [seed.id], seed: true, uploadSlots: init.seedUploadSlots ?? 16 })
  let seedStarted = false
  const hold = init.seedFirstCopyHoldMs ?? SEED_FIRST_COPY_HOLD_MS
  const seedPending = new Map<number, Session>()
  const seedSent = new Map<number, { at: number, to: Session }>()
  let seedDeferrals = 0
  /** The piece server's first-copies rule, as the seed runs it. */
  function seedDefers (s: Session, index: number): boolean {
    if (hold <= 0) return false
    const owner = seedPending.get(index)
    const last = seedSent.get(index)
    if (owner === s || (owner === undefined && (last === undefined || last.to === s))) return false
    for (let i = 0; i < n; i++) if (i !== index && !seedSent.has(i) && !seedPending.has(i)) return true
    return owner !== undefined || q.now - (last?.at ?? -Infinity) < hold
  }

  const agents: Agent[] = []
  for (let k = 0; k < init.peers; k++) {
    const base = node(`agent${k}`, false)
    const ag: Agent = {
      ...base,
      start: (init.startSpreadMs ?? 0) * random(),
      down: new VirtualBucket(B, 0),
      links: new Map(),
      open: [],
      inflight: new Set(),
      pending: [],
      lastProgress: 0,
      lastSwarmProgress: 0,
      lastRefresh: 0,
      known: 0,
      backToSource: false,
      originRun: false,
      loopQueued: false,
      state: undefined as unknown as ChoiceState
    }
    ag.state = {
      pieceCount: n,
      have: (i) => ag.have[i] === 1,
      inflight: (i) => ag.inflight.has(i),
      trusted: (i) => i < ag.known,
      parents: ag.open
    }
    agents.push(ag)
    scheduler.upsertHost({ peerId: ag.id, addrs: [ag.id] })
  }
  const byId = new Map<string, Node>([[seed.id, seed], ...agents.map(g => [g.id, g] as [string, Node])])

  function announce (nd: Node, index: number): void {
    for (const s of nd.served) {
      if (s.closed) continue
      s.link.dirty = true
      if (s.child.have[index] === 0) s.child.lastSwarmProgress = q.now
      wake(s.child)
    }
  }

  function seedFetch (): void {
    if (seedStarted) return
    seedStarted = true
    let t = q.now + apiMs
    for (let i = 0; i < n; i++) {
      t += bytesOf(i) / originRate
      const index = i
      q.at(t, () => {
        originBytes += bytesOf(index)
        seed.have[index] = 1
        seed.count++
        published++
        scheduler.setPieceDigest(DIGEST, index, PIECE_DIGEST)
        scheduler.reportPieces(DIGEST, seed.id, { pieces: [index], ...(seed.count === n ? { complete: true } : {}) })
        announce(seed, index)
      })
    }
  }

  function wake (ag: Agent): void {
    if (ag.loopQueued || ag.done !== undefined) return
    ag.loopQueued = true
    q.at(q.now, () => { ag.loopQueued = false; loop(ag) })
  }

  function rebuildOpen (ag: Agent): void {
    ag.open.length = 0
    for (const l of ag.links.values()) {
      l.dirty = true
      if (l.session !== undefined) ag.open.push(l.choice)
    }
  }

  function addParents (ag: Agent, list: Array<{ peerId: string, seed: boolean }>): void {
    for (const info of list) {
      if (ag.links.size >= a.maxParents) break
      if (ag.links.has(info.peerId)) continue
      const nd = byId.get(info.peerId) as Node
      const deferred = new Map<number, number>()
      const has = (i: number): boolean => nd.have[i] === 1 && !((deferred.get(i) ?? -1) > q.now)
      const link: Link = { node: nd, seed: info.seed, inflight: new Set(), choice: { seed: info.seed, has }, dirty: true, deferred }
      ag.links.set(info.peerId, link)
      q.after(connectMs, () => {
        if (ag.links.get(info.peerId) !== link || ag.done !== undefined) return
        link.session = { parent: nd, child: ag, link, queue: [], working: false, closed: false, charged: new Map() }
        nd.served.add(link.session)
        rebuildOpen(ag)
        wake(ag)
      })
    }
  }

  function dropParent (ag: Agent, id: string): void {
    const link = ag.links.get(id)
    if (link === undefined) return
    ag.links.delete(id)
    if (link.session !== undefined) {
      link.session.closed = true
      if (link.node.seed) for (const i of link.session.queue) if (seedPending.get(i) === link.session) seedPending.delete(i)
      link.session.queue.length = 0
      link.node.served.delete(link.session)
    }
    for (const i of link.inflight) ag.inflight.delete(i)
    rebuildOpen(ag)
  }

  function pump (s: Session): void {
    if (s.working || s.closed || s.queue.length === 0) return
    const index = s.queue.shift() as number
    s.working = true
    const bytes = bytesOf(index)
    const sent = s.parent.up.take(q.now, bytes)
    q.at(sent, () => {
      s.working = false
      if (s.parent.seed && seedPending.get(index) === s) seedPending.delete(index)
      if (s.closed) return
      if (s.parent.seed) { seedUpload += bytes; seedSent.set(index, { at: q.now, to: s }) }
      const from = s.parent.hops[index] as number
      q.after(bytes / wireRate + latencyMs, () => { receive(s, index, from) })
      pump(s)
    })
  }

  function receive (s: Session, index: number, fromHops: number): void {
    const ag = s.child
    if (s.closed || ag.done !== undefined) return
    const verified = a.chargeDownload === 'request' ? Math.max(q.now, s.charged.get(index) ?? q.now) : ag.down.take(q.now, bytesOf(index))
    s.charged.delete(index)
    q.at(verified, () => {
      if (ag.have[index] === 0) gotPiece(ag, index, fromHops + 1)
      for (const l of ag.links.values()) if (l.session === s) l.inflight.delete(index)
      ag.inflight.delete(index)
      wake(ag)
    })
  }

  function gotPiece (ag: Agent, index: number, hops: number): void {
    ag.have[index] = 1
    ag.count++
    ag.hops[index] = hops
    ag.lastProgress = q.now
    ag.firstPiece ??= q.now
    ag.pending.push(index)
    announce(ag, index)
    if (ag.count === n) finish(ag)
  }

  function finish (ag: Agent): void {
    ag.done = q.now
    finished++
    for (const id of [...ag.links.keys()]) dropParent(ag, id)
    const pieces = ag.pending.splice(0)
    q.after(apiMs, () => { scheduler.reportPieces(DIGEST, ag.id, { pieces, complete: true }) })
  }

  function fetchPiece (ag: Agent, link: Link, index: number): void {
    link.inflight.add(index)
    ag.inflight.add(index)
    const s = link.session as Session
    if (a.chargeDownload === 'request') s.charged.set(index, ag.down.take(q.now, bytesOf(index)))
    q.after(latencyMs, () => {
      if (s.closed) return
      if (s.parent.seed && seedDefers(s, index)) {
        seedDeferrals++
        q.after(latencyMs, () => {
          if (s.closed) return
          link.inflight.delete(index)
          ag.inflight.delete(index)
          ag.down.refund(q.now, bytesOf(index))
          s.charged.delete(index)
          link.deferred.set(index, q.now + a.deferRetryMs)
          q.after(a.deferRetryMs, () => { link.dirty = true; wake(ag) })
          link.dirty = true
          wake(ag)
        })
        return
      }
      if (s.parent.seed && !seedPending.has(index)) seedPending.set(index, s)
      s.queue.push(index)
      pump(s)
    })
  }

  function fill (ag: Agent): void {
    // Peer parents first, seeds last, as the agent does.
    for (const seedPass of [false, true]) for (const l of ag.links.values()) {
      if (l.seed !== seedPass) continue
      const window = l.seed ? (ag.links.size > 1 ? a.seedWindow : a.windowPerParent) : ag.links.size === 1 ? a.soleParentWindow : a.windowPerParent
      while (l.session !== undefined && l.dirty && l.inflight.size < window) {
        const index = choosePiece(ag.state, l.choice, choiceOptions)
        if (index === undefined) { l.dirty = false; break }
        fetchPiece(ag, l, index)
      }
    }
  }

  function refresh (ag: Agent): void {
    const view = scheduler.parents(DIGEST, ag.id)
    const known = published
    q.after(apiMs, () => {
      if (ag.done !== undefined) return
      if (known > ag.known) { ag.known = known; rebuildOpen(ag) }
      if (view.backToSource) ag.backToSource = true
      const chosen = new Set(view.parents.map(p => p.peerId))
      const peersLeft = [...ag.links.values()].some(l => !l.seed) || view.parents.some(p => !p.seed)
      for (const [id, l] of [...ag.links]) {
        if (l.seed && !chosen.has(id) && peersLeft && l.inflight.size === 0) dropParent(ag, id)
      }
      addParents(ag, view.parents)
      fill(ag)
    })
  }

  function startOrigin (ag: Agent): void {
    if (ag.originRun) return
    ag.originRun = true
    agentsToOrigin++
    let first = 0
    while (first < n && ag.have[first] === 1) first++
    const step = (i: number): void => {
      if (i >= n || ag.done !== undefined) return
      originBytes += bytesOf(i)
      q.at(ag.down.take(q.now, bytesOf(i)), () => {
        if (ag.done !== undefined) return
        if (ag.have[i] === 0) gotPiece(ag, i, 0)
        step(i + 1)
      })
    }
    q.after(apiMs, () => { step(first) })
  }

  function loop (ag: Agent): void {
    if (ag.done !== undefined) return
    if (ag.backToSource) startOrigin(ag)
    fill(ag)
    const now = q.now
    const idle = now - ag.lastProgress
    const swarmIdle = now - Math.max(ag.lastProgress, ag.lastSwarmProgress)
    const busy = ag.inflight.size > 0 || [...ag.links.values()].some(l => l.session === undefined)
    if ((ag.links.size < a.maxParents && now - ag.lastRefresh > 1000) || now - ag.lastRefresh > a.rebalanceMs || (idle > a.stallTimeoutMs && now - ag.lastRefresh > a.stallTimeoutMs / 2)) {
      ag.lastRefresh = now
      refresh(ag)
    }
    if (!ag.originRun && ((!busy && swarmIdle > 2 * a.stallTimeoutMs) || idle > 8 * a.stallTimeoutMs)) startOrigin(ag)
  }

  function tick (ag: Agent): void {
    if (ag.done !== undefined) return
    loop(ag)
    q.after(250, () => { tick(ag) })
  }

  function report (ag: Agent): void {
    if (ag.done !== undefined) return
    if (ag.pending.length > 0) {
      const pieces = ag.pending.splice(0)
      q.after(apiMs / 2, () => { scheduler.reportPieces(DIGEST, ag.id, { pieces }) })
    }
    q.after(a.reportIntervalMs, () => { report(ag) })
  }

  for (const ag of agents) {
    q.at(ag.start, () => {
      // POST /api/v1/tasks: the task, the seed's fetch, the join and a first parent choice.
      scheduler.upsertTask(DIGEST, { size, pieceSize })
      scheduler.joinTask(DIGEST, seed.id)
      seedFetch()
      scheduler.joinTask(DIGEST, ag.id)
      const view = scheduler.parents(DIGEST, ag.id)
      const known = published
      q.after(apiMs, () => {
        ag.known = Math.max(ag.known, known)
        ag.lastProgress = q.now
        ag.lastRefresh = q.now
        if (view.backToSource) ag.backToSource = true
        addParents(ag, view.parents)
        tick(ag)
        report(ag)
      })
    })
  }

  const limit = 40 * idealMs
  q.run(limit, () => finished === agents.length)

  const completion = agents.map(g => (g.done ?? q.now) - 0)
  const hops: number[] = []
  for (const g of agents) for (let i = 0; i < n; i++) if (g.have[i] === 1) hops.push(g.hops[i] as number)
  const first = agents.map(g => g.firstPiece ?? q.now)
  return {
    peers: init.peers,
    size,
    pieceSize,
    pieceCount: n,
    idealMs,
    completionMs: completion,
    ratioP50: quantile(completion, 0.5) / idealMs,
    ratioMax: Math.max(...completion) / idealMs,
    originRatio: originBytes / size,
    agentsToOrigin,
    seedUploadRatio: seedUpload / size,
    seedDeferrals,
    hopsMean: hops.reduce((x, y) => x + y, 0) / Math.max(1, hops.length),
    hopsMax: hops.reduce((x, y) => Math.max(x, y), 0),
    firstPieceP50Ms: quantile(first, 0.5),
    firstPieceMaxMs: Math.max(...first),
    decisions: scheduler.decisions,
    events: q.processed,
    endMs: q.now,
    wallMs: performance.now() - wallStart,
    cpuMs: ((u) => (u.user + u.system) / 1000)(process.cpuUsage(cpuStart)),
    unfinished: agents.length - finished
  }
}
