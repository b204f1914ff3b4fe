/**
 * Cluster pull: N joeyd processes with a per-node link cap B all pull one image of size S
 * at once, (a) through a joey-supernode (P2P) and (b) each straight from the registry.
 * The ideal P2P pull sends S from the origin once and finishes every node in S ÷ B, like
 * a node alone on its link; the direct pull costs N × S of origin egress.
 *
 * Set JOEY_BENCH_TRACE=1 to print a per-agent timeline of the P2P pull (pieces per
 * second and their parents). JOEY_BENCH_CLUSTER_AGENTS, _LIMIT_MIB (B in MiB/s) and
 * _LAYER_MIB (each of the 2 layers) override the shape, for exploration.
 */
import { readdir, readFile, mkdtemp, rm } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { pieceCountFor, pieceSizeFor } from '../../src/common/index.js'
import { largeImage } from '../../test/fixtures/images.js'
import { startRegistry, type TestRegistry } from '../../test/fixtures/registry.js'
import { startProxy, type CountingProxy } from '../../test/fixtures/proxy.js'
import { startAgent, startSupernode, supernodeMetrics, type AgentProc, type Proc, type SupernodeProc } from '../../test/cluster/harness.js'
import { MiB, median, peakRssBytes, type BenchOptions, type CaseResult, type Metric } from '../lib.js'

/** Clock ticks per second of /proc/<pid>/stat on Linux (USER_HZ, fixed at 100 on x86 and arm). */
const CLK_TCK = 100
const TARGET_EGRESS = 1.02
const TARGET_P50 = 1.10
const TARGET_MAX = 1.30

interface Params { agents: number, layerBytes: number, layers: number, limit: number, size: number }

function params (quick: boolean): Omit<Params, 'size'> {
  // Measured here: a joeyd spends ~20–25 ms of CPU per MiB pulled straight from a registry
  // and ~40–55 ms per MiB in the swarm (it also serves what it gets), so two cores carry
  // only some 40–60 MiB/s of swarm traffic. N × B is kept near that, or the run measures
  // the CPU (B = 8 MiB/s at N = 16 saturated both cores).
  const p = quick
    ? { agents: 6, layerBytes: 24 * MiB, layers: 2, limit: 8 * MiB }
    : { agents: 16, layerBytes: 64 * MiB, layers: 2, limit: 4 * MiB }
  // For exploring other shapes; the documented results use the defaults above.
  const env = (name: string): number | undefined => {
    const v = process.env[`JOEY_BENCH_CLUSTER_${name}`]
    return v !== undefined && v !== '' && Number(v) > 0 ? Number(v) : undefined
  }
  return {
    agents: env('AGENTS') ?? p.agents,
    layerBytes: (env('LAYER_MIB') ?? p.layerBytes / MiB) * MiB,
    layers: p.layers,
    limit: Math.round((env('LIMIT_MIB') ?? p.limit / MiB) * MiB)
  }
}

interface PieceEvent { t: number, digest: string, index: number, parent: string, seed: boolean }

interface CpuSample { byPid: Map<number, number>, selfMicros: number, machineBusy: number }

interface PhaseResult {
  label: string
  originBytes: number
  /** Per-agent pull durations from the common start, ms, in agent order. */
  durations: number[]
  failures: string[]
  pullWallMs: number
  phaseWallMs: number
  cpu: { agents: number, supernode: number, registry: number, bench: number, machine: number }
  rss: number[]
  supernodeRss?: number
  seedBytesServed?: number
  traces?: Map<string, AgentTrace>
  peerIds?: Map<string, string>
  /** When the seed held each whole blob. */
  seedDone?: number[]
  start: number
}

/** utime + stime in seconds, or undefined once the process is gone. */
async function cpuSeconds (pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    // comm may hold spaces and parentheses: fields are counted after the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) / CLK_TCK
  } catch {
    return undefined
  }
}

/** CPU seconds all cores spent busy since boot (/proc/stat), to see what else ran meanwhile. */
async function machineBusySeconds (): Promise<number> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? ''
  // user nice system idle iowait irq softirq steal (guest time is already in user).
  const f = line.trim().split(/\s+/).slice(1, 9).map(Number)
  const idle = (f[3] ?? 0) + (f[4] ?? 0)
  return (f.reduce((a, b) => a + b, 0) - idle) / CLK_TCK
}

/** Direct children of this process (agents, the supernode, docker-registry). */
async function childPids (): Promise<number[]> {
  const out: number[] = []
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = await readFile(`/proc/${name}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === process.pid) out.push(Number(name))
    } catch {}
  }
  return out
}

async function sampleCpu (): Promise<CpuSample> {
  const byPid = new Map<number, number>()
  for (const pid of await childPids()) {
    const s = await cpuSeconds(pid)
    if (s !== undefined) byPid.set(pid, s)
  }
  const u = process.cpuUsage()
  return { byPid, selfMicros: u.user + u.system, machineBusy: await machineBusySeconds() }
}

interface AgentTrace {
  pieces: PieceEvent[]
  /** When the transfer manager took a parent (any task). */
  parentAt: number[]
  /** When a task gave up on its parents and went to the origin, and why. */
  origin: Array<{ t: number, why: string }>
}

/** Calls `cb` with each JSON log line a process writes to stderr from now on. */
function watchLines (proc: Proc, cb: (line: string) => void): void {
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
function traceAgent (agent: AgentProc): AgentTrace {
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

function peerIdOf (agent: AgentProc): string | undefined {
  for (const line of agent.logs().split('\n')) {
    if (!line.includes('p2p host started')) continue
    try { return (JSON.parse(line) as { peerId: string }).peerId } catch {}
  }
  return undefined
}

async function runPhase (label: 'p2p' | 'direct', dir: string, ref: string, p: Params, proxy: CountingProxy): Promise<PhaseResult> {
  const phaseStart = performance.now()
  const procs: Proc[] = []
  try {
    const limit = String(p.limit)
    let sn: SupernodeProc | undefined
    if (label === 'p2p') {
      // The seed is one node: its uplink gets the same cap as an agent's.
      sn = await startSupernode(join(dir, `${label}-supernode`), ['--upload-limit', limit])
      procs.push(sn)
    }
    const extra = sn !== undefined ? ['--supernode', sn.url, '--log-level', 'debug'] : ['--log-level', 'info']
    const agents: AgentProc[] = []
    // allSettled: an agent that fails to start must not leave the others starting unseen.
    const started = await Promise.allSettled(Array.from({ length: p.agents }, async (_, i) => {
      const a = await startAgent(join(dir, label), `agent${String(i).padStart(2, '0')}`, ['--download-limit', limit, '--upload-limit', limit, ...extra])
      procs.push(a)
      agents[i] = a
    }))
    const refused = started.find(s => s.status === 'rejected')
    if (refused !== undefined) throw refused.reason
    const traces = new Map<string, AgentTrace>()
    const peerIds = new Map<string, string>()
    const seedDone: number[] = []
    if (sn !== undefined) {
      peerIds.set(sn.peerId, 'seed')
      watchLines(sn, (line) => {
        if (line.includes('seed holds the whole blob')) try { seedDone.push((JSON.parse(line) as { time: number }).time) } catch {}
      })
      for (const a of agents) {
        traces.set(a.name, traceAgent(a))
        const id = peerIdOf(a)
        if (id !== undefined) peerIds.set(id, a.name)
      }
    }

    proxy.reset()
    const cpu0 = await sampleCpu()
    const start = Date.now()
    const t0 = performance.now()
    const durations: number[] = new Array<number>(agents.length).fill(NaN)
    const failures: string[] = []
    // A hung pull must not hang the bench: past the deadline it counts as failed, and
    // stopping the processes below ends the request.
    const deadlineMs = 10 * p.size / p.limit * 1000 + 60_000
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${(deadlineMs / 1000).toFixed(0)} s`)), deadlineMs) })
    deadline.catch(() => {})
    await Promise.all(agents.map(async (a, i) => {
      try {
        await Promise.race([a.pull(ref, 'v1'), deadline])
        durations[i] = performance.now() - t0
      } catch (err) {
        failures.push(`${a.name}: ${(err as Error).message.slice(0, 300)}`)
      }
    }))
    clearTimeout(timer)
    const pullWallMs = performance.now() - t0
    const cpu1 = await sampleCpu()
    const originBytes = proxy.stats.blobBytes

    const delta = (pid: number): number => (cpu1.byPid.get(pid) ?? 0) - (cpu0.byPid.get(pid) ?? 0)
    const agentPids = new Set(agents.map(a => a.pid))
    let agentsCpu = 0
    let registryCpu = 0
    for (const pid of cpu1.byPid.keys()) {
      if (agentPids.has(pid)) agentsCpu += delta(pid)
      else if (pid !== sn?.pid) registryCpu += delta(pid)
    }
    const rss: number[] = []
    for (const a of agents) rss.push(await peakRssBytes(a.pid).catch(() => 0))
    const result: PhaseResult = {
      label,
      originBytes,
      durations,
      failures,
      pullWallMs,
      phaseWallMs: 0,
      cpu: {
        agents: agentsCpu,
        supernode: sn !== undefined ? delta(sn.pid) : 0,
        registry: registryCpu,
        bench: (cpu1.selfMicros - cpu0.selfMicros) / 1e6,
        machine: cpu1.machineBusy - cpu0.machineBusy
      },
      rss,
      start
    }
    if (sn !== undefined) {
      result.supernodeRss = await peakRssBytes(sn.pid).catch(() => 0)
      result.seedBytesServed = (await supernodeMetrics(sn.url).catch(() => ({} as Record<string, number>))).joey_supernode_seed_bytes_served_total ?? 0
      result.traces = traces
      result.peerIds = peerIds
      result.seedDone = seedDone
    }
    await Promise.all(procs.map(async x => { await x.stop() }))
    result.phaseWallMs = performance.now() - phaseStart
    return result
  } finally {
    // Reached on failure too: nothing this phase started may outlive it.
    await Promise.all(procs.map(async x => { await x.kill() }))
  }
}

interface TreeStats {
  depthMean: number
  depthMax: number
  hopMedianMs: number
  seedPieces: number
  firstPieceMs: number[]
  /** Agents that went to the origin for the rest of a blob, with the first time and reason. */
  fellBack: Array<{ name: string, t: number, why: string }>
}

/** Relay-tree shape of the P2P phase from the agents' piece logs. */
function treeStats (r: PhaseResult): TreeStats | undefined {
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

function printTimeline (r: PhaseResult, names: string[], pieceCount: number): void {
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

export async function run (opts: BenchOptions): Promise<CaseResult> {
  const base = params(opts.quick)
  const dir = await mkdtemp(join(tmpdir(), 'joey-bench-cluster-'))
  let registry: TestRegistry | undefined
  let proxy: CountingProxy | undefined
  try {
    registry = await startRegistry()
    const image = await largeImage({ layerBytes: base.layerBytes, layers: base.layers })
    await registry.push('bench/cluster', 'v1', image)
    proxy = await startProxy(registry.url)
    const ref = `${proxy.host}/bench/cluster`
    const size = image.blobs().reduce((n, b) => n + b.size, 0)
    const p: Params = { ...base, size }
    const pieceCount = image.blobs().reduce((n, b) => n + pieceCountFor(b.size, pieceSizeFor(b.size)), 0)
    const ideal = size / p.limit * 1000

    const p2p = await runPhase('p2p', dir, ref, p, proxy)
    const direct = await runPhase('direct', dir, ref, p, proxy)

    const metrics: Metric[] = []
    const notes: string[] = []
    const tree = treeStats(p2p)
    for (const r of [p2p, direct]) {
      const ok = r.durations.filter(Number.isFinite)
      const p50 = ok.length > 0 ? median(ok) / ideal : NaN
      const max = ok.length === r.durations.length ? Math.max(...ok) / ideal : NaN
      const egress = r.originBytes / size
      const cpuTotal = r.cpu.agents + r.cpu.supernode + r.cpu.registry + r.cpu.bench
      const isP2P = r.label === 'p2p'
      const tag = isP2P ? 'P2P' : 'direct'
      metrics.push(
        { name: `${tag} origin egress ÷ S`, value: egress, unit: '×', ...(isP2P ? { target: `≤ ${TARGET_EGRESS}`, ok: egress <= TARGET_EGRESS } : {}) },
        { name: `${tag} p50 time ÷ (S÷B)`, value: p50, unit: '×', ...(isP2P ? { target: `≤ ${TARGET_P50.toFixed(2)}`, ok: p50 <= TARGET_P50 } : {}) },
        { name: `${tag} max time ÷ (S÷B)`, value: max, unit: '×', ...(isP2P ? { target: `≤ ${TARGET_MAX.toFixed(2)}`, ok: max <= TARGET_MAX } : {}) },
        { name: `${tag} pull wall time`, value: r.pullWallMs / 1000, unit: 's' },
        { name: `${tag} CPU time (all processes)`, value: cpuTotal, unit: 's' },
        { name: `${tag} CPU use during pull`, value: cpuTotal / (r.pullWallMs / 1000), unit: 'cores of 2' },
        { name: `${tag} joeyd peak RSS max`, value: Math.max(...r.rss) / MiB, unit: 'MiB' },
        { name: `${tag} joeyd peak RSS median`, value: median(r.rss) / MiB, unit: 'MiB' }
      )
      if (isP2P) {
        metrics.push({ name: 'P2P supernode peak RSS', value: (r.supernodeRss ?? 0) / MiB, unit: 'MiB' })
        metrics.push({ name: 'P2P seed upload ÷ S', value: (r.seedBytesServed ?? 0) / size, unit: '×' })
        if (egress > TARGET_EGRESS) notes.push(`MISSED: P2P origin egress is ${egress.toFixed(2)} × S (target ≤ ${TARGET_EGRESS})`)
        if (!(p50 <= TARGET_P50)) notes.push(`MISSED: P2P p50 completion is ${p50.toFixed(2)} × S÷B (target ≤ ${TARGET_P50.toFixed(2)})`)
        if (!(max <= TARGET_MAX)) notes.push(`MISSED: P2P slowest completion is ${max.toFixed(2)} × S÷B (target ≤ ${TARGET_MAX.toFixed(2)})`)
      }
      if (!isP2P && p50 > 1.15) notes.push(`direct p50 is ${p50.toFixed(2)} × S÷B: plain pulls of N × B = ${(p.agents * p.limit / MiB).toFixed(0)} MiB/s miss the S÷B bound here too (a fixed cost per pull, or the CPU: see CPU use), so read the P2P times against the direct ones as well`)
      const others = Math.max(0, r.cpu.machine - cpuTotal) / (r.pullWallMs / 1000)
      metrics.push({ name: `${tag} CPU use of other processes`, value: others, unit: 'cores' })
      if (others > 0.2) notes.push(`WARNING: other processes kept ${others.toFixed(2)} of ${cpus().length} cores busy during the ${tag} pull: its times are not clean`)
      notes.push(`${tag}: CPU s agents ${r.cpu.agents.toFixed(1)}, supernode ${r.cpu.supernode.toFixed(1)}, registry ${r.cpu.registry.toFixed(1)}, bench+proxy ${r.cpu.bench.toFixed(1)}; phase wall incl. start/stop ${(r.phaseWallMs / 1000).toFixed(1)} s`)
      notes.push(`${tag}: per-agent pull s ${r.durations.map(d => (d / 1000).toFixed(1)).join(' ')}`)
      for (const f of r.failures) notes.push(`${tag} FAILED pull ${f}`)
    }
    if (tree !== undefined) {
      notes.push(`P2P relay tree: depth (hops from the seed) mean ${tree.depthMean.toFixed(2)}, max ${tree.depthMax}; ${tree.seedPieces} piece copies from the seed for ${pieceCount} pieces; median relay delay (parent verified → child verified) ${(tree.hopMedianMs / 1000).toFixed(2)} s; first piece p50 ${(median(tree.firstPieceMs) / 1000).toFixed(2)} s, max ${(Math.max(...tree.firstPieceMs) / 1000).toFixed(2)} s`)
      if (tree.fellBack.length > 0) {
        const whys = [...new Set(tree.fellBack.map(f => f.why))].join('; ')
        notes.push(`P2P: ${tree.fellBack.length} of ${p.agents} agents went to the origin for the rest of a blob (first at ${(Math.min(...tree.fellBack.map(f => f.t)) / 1000).toFixed(1)} s: ${whys})`)
      }
    }
    if (process.env.JOEY_BENCH_TRACE !== undefined) {
      printTimeline(p2p, Array.from({ length: p.agents }, (_, i) => `agent${String(i).padStart(2, '0')}`), pieceCount)
    }
    return {
      name: 'cluster',
      description: `${p.agents} joeyd processes, each capped at B = ${(p.limit / MiB).toFixed(p.limit % MiB === 0 ? 0 : 1)} MiB/s down and up (the seed's upload too), pull a ${(size / MiB).toFixed(1)} MiB image (${p.layers} layers, ${pieceCount} pieces) at once: P2P through one joey-supernode vs each straight from the registry. S÷B = ${(ideal / 1000).toFixed(1)} s; times from the common start; origin egress counted at a proxy in front of docker-registry`,
      metrics,
      notes
    }
  } finally {
    await proxy?.stop()
    await registry?.stop()
    await rm(dir, { recursive: true, force: true })
  }
}
