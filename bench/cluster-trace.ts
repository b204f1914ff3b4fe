/**
 * What the cluster benchmark reads from the P2P agents' debug logs: per-agent piece
 * timelines and parents, and the shape of the relay tree they formed.
 */
import type { AgentProc, Proc } from '../test/cluster/harness.js'
import { median } from './lib.js'

export interface PieceEvent { t: number, digest: string, index: number, parent: string, seed: boolean }

/** What a P2P run hands to the tree statistics. */
export interface TracedRun {
  label: string
  /** Wall-clock ms (Date.now) of the common start. */
  start: number
  traces?: Map<string, AgentTrace>
  /** libp2p peer id → agent name ('seed' for the supernode). */
  peerIds?: Map<string, string>
  /** When the seed held each whole blob. */
  seedDone?: number[]
}

export interface AgentTrace {
  pieces: PieceEvent[]
  /** When the transfer manager took a parent (any task). */
  parentAt: number[]
  /** When a task gave up on its parents and went to the origin, and why. */
  origin: Array<{ t: number, why: string }>
}

/** Calls `cb` with each JSON log line a process writes to stderr from now on. */
export function watchLines (proc: Proc, cb: (line: string) => void): void {
  let buf = ''
  proc.proc.stderr?.on('data', (s: string | Buffer) => {
    buf += s.toString()
    let nl
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl)
      buf = buf.slice(nl + 1)
      cb(line)
    }
  })
}

/** Collects an agent's transfer debug lines: pieces and their parents, parents, origin fallbacks. */
export function traceAgent (agent: AgentProc): AgentTrace {
  const trace: AgentTrace = { pieces: [], parentAt: [], origin: [] }
  watchLines(agent, (line) => {
    try {
      if (line.includes('"piece received"')) {
        const o = JSON.parse(line) as { time: number, digest: string, index: number, parent: string, seed: boolean }
        trace.pieces.push({ t: o.time, digest: o.digest, index: o.index, parent: o.parent, seed: o.seed })
      } else if (line.includes('"adding parent"')) {
        trace.parentAt.push((JSON.parse(line) as { time: number }).time)
      } else if (line.includes('the rest of the blob from the origin')) {
        const o = JSON.parse(line) as { time: number, why: string }
        trace.origin.push({ t: o.time, why: o.why })
      }
    } catch {}
  })
  return trace
}

export function peerIdOf (agent: AgentProc): string | undefined {
  for (const line of agent.logs().split('\n')) {
    if (!line.includes('p2p host started')) continue
    try { return (JSON.parse(line) as { peerId: string }).peerId } catch {}
  }
  return undefined
}

export interface TreeStats {
  depthMean: number
  depthMax: number
  hopMedianMs: number
  seedPieces: number
  firstPieceMs: number[]
  /** Agents that went to the origin for the rest of a blob, with the first time and reason. */
  fellBack: Array<{ name: string, t: number, why: string }>
}

/** Relay-tree shape of the P2P phase from the agents' piece logs. */
export function treeStats (r: TracedRun): TreeStats | undefined {
  if (r.traces === undefined || r.peerIds === undefined) return undefined
  const pieces = new Map([...r.traces].map(([name, t]) => [name, t.pieces]))
  const got = new Map<string, number>()
  const key = (who: string, e: { digest: string, index: number }): string => `${who}|${e.digest}|${e.index}`
  for (const [name, list] of pieces) for (const e of list) got.set(key(name, e), e.t)
  const depthMemo = new Map<string, number>()
  const byKey = new Map<string, PieceEvent>()
  for (const [name, list] of pieces) for (const e of list) byKey.set(key(name, e), e)
  const depth = (who: string, e: { digest: string, index: number }, guard = 0): number => {
    const k = key(who, e)
    const known = depthMemo.get(k)
    if (known !== undefined) return known
    const ev = byKey.get(k)
    if (ev === undefined || guard > 64) return NaN
    const parent = r.peerIds?.get(ev.parent)
    const d = ev.seed || parent === 'seed' ? 1 : parent === undefined ? NaN : 1 + depth(parent, e, guard + 1)
    depthMemo.set(k, d)
    return d
  }
  const depths: number[] = []
  const hops: number[] = []
  let seedPieces = 0
  const firstPieceMs: number[] = []
  for (const [name, list] of pieces) {
    if (list.length > 0) firstPieceMs.push(Math.min(...list.map(e => e.t)) - r.start)
    for (const e of list) {
      const d = depth(name, e)
      if (Number.isFinite(d)) depths.push(d)
      if (e.seed) { seedPieces++; continue }
      const parent = r.peerIds.get(e.parent)
      const pt = parent !== undefined ? got.get(key(parent, e)) : undefined
      if (pt !== undefined) hops.push(e.t - pt)
    }
  }
  if (depths.length === 0) return undefined
  const fellBack: TreeStats['fellBack'] = []
  for (const [name, t] of r.traces) {
    const first = t.origin[0]
    if (first !== undefined) fellBack.push({ name, t: first.t - r.start, why: first.why })
  }
  return {
    fellBack,
    depthMean: depths.reduce((a, b) => a + b, 0) / depths.length,
    depthMax: Math.max(...depths),
    hopMedianMs: hops.length > 0 ? median(hops) : NaN,
    seedPieces,
    firstPieceMs
  }
}

export function printTimeline (r: TracedRun, names: string[], pieceCount: number): void {
  if (r.traces === undefined) return
  const seedDone = (r.seedDone ?? []).map(t => ((t - r.start) / 1000).toFixed(1) + 's').join(', ')
  console.log(`  timeline of ${r.label}: pieces verified per second (s: one from the seed that second); the seed held the blobs at ${seedDone}`)
  for (const name of names) {
    const trace = r.traces.get(name)
    const list = trace?.pieces ?? []
    const secs: number[] = []
    for (const e of list) {
      const s = Math.floor((e.t - r.start) / 1000)
      secs[s] = (secs[s] ?? 0) + 1
    }
    const seedSecs = new Set(list.filter(e => e.seed).map(e => Math.floor((e.t - r.start) / 1000)))
    const bar = Array.from({ length: secs.length }, (_, s) => {
      const n = secs[s] ?? 0
      return n === 0 ? '.' : seedSecs.has(s) ? 's' : n > 9 ? '+' : String(n)
    }).join('')
    const parents = new Map<string, number>()
    for (const e of list) {
      const p = r.peerIds?.get(e.parent) ?? e.parent.slice(-6)
      parents.set(p, (parents.get(p) ?? 0) + 1)
    }
    const from = [...parents.entries()].sort((a, b) => b[1] - a[1]).map(([p, n]) => `${p}:${n}`).join(' ')
    const firstParent = Math.min(...(trace?.parentAt ?? [NaN])) - r.start
    const done = Math.max(...list.map(e => e.t)) - r.start
    const origin = trace?.origin[0] !== undefined ? ` origin@${((trace.origin[0].t - r.start) / 1000).toFixed(1)}s` : ''
    console.log(`  ${name} ${String(list.length).padStart(3)}/${pieceCount} parent@${(firstParent / 1000).toFixed(1)}s last@${(done / 1000).toFixed(1)}s${origin} ${bar}  from ${from}`)
  }
}
