/**
 * Cluster pull: N joeyd agents, each on a link of B bytes/s, all pull one image of size S at
 * once, three ways side by side: Joey P2P (a joey-supernode seeds and schedules), every node
 * straight from the origin registry, and every node through a pull-through cache
 * (docker-registry in proxy mode, the usual alternative). The ideal is to send S from the
 * origin once and finish every node in S ÷ B, like a node alone on its link.
 *
 * Network: where the machine allows (root, iproute2), every host runs in its own network
 * namespace on a veth link to a bridge, shaped by tc htb on both ends, so the kernel bounds
 * each link (mode "netns"). Elsewhere the agents' own rate limiters do (mode "limiter").
 *
 * Environment, for exploration (the documented results use the defaults):
 * JOEY_BENCH_CLUSTER_MODE=netns|limiter, _NS=2,4,8 (the sweep's N), _METHODS=p2p,direct,cache,
 * _AGG_MIB (N × B budget, MiB/s), _MAX_MIB (B cap), _LARGE=0 (skip the large image);
 * JOEY_BENCH_TRACE=1 prints a per-agent timeline of each P2P run; JOEY_BENCH_LOGS=<dir> saves
 * the end of every process's log there (JOEY_LOG_TAIL_BYTES: how much; 20,000 by default);
 * JOEY_HARNESS_NODE_ARGS passes node flags to every bin (e.g. "--cpu-prof --cpu-prof-dir=<dir>").
 */
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { pieceCountFor, pieceSizeFor } from '../../src/common/index.js'
import { largeImage } from '../../test/fixtures/images.js'
import { startRegistry } from '../../test/fixtures/registry.js'
import { startAgent, startSupernode, parseMetrics, type AgentProc, type Placement, type Proc, type SupernodeProc } from '../../test/cluster/harness.js'
import { MiB, median, peakRssBytes, type BenchOptions, type CaseResult, type Metric } from '../lib.js'
import { createTopology, leftoverNamespaces, netnsAvailable, WIRE_PER_PAYLOAD, type HostSpec, type LinkBytes, type Topology } from '../netns.js'
import { getText, sampleCpu, startRegistryHost, type CpuSample, type RegistryHost } from '../cluster-hosts.js'
import { peerIdOf, printTimeline, traceAgent, treeStats, watchLines, type AgentTrace } from '../cluster-trace.js'
import { lineChart } from '../chart.js'

const TARGET_EGRESS = 1.02
const TARGET_P50 = 1.10
const TARGET_MAX = 1.30
/** Origin and cache links: fast enough never to be the bound (they serve N × B at most). */
const FAST_LINK = 1024 * MiB
const CHART = 'bench/results/cluster.svg'
const REPO = 'bench/cluster'
const START_BATCH = 8

type Method = 'p2p' | 'direct' | 'cache'
type Mode = 'netns' | 'limiter'
const METHOD_NAME: Record<Method, string> = { p2p: 'Joey P2P', direct: 'direct', cache: 'pull-through cache' }

interface ImageSpec { label: string, layers: number, layerBytes: number }
interface Plan {
  /** The sweep image (charted) first, then others at a few N (with their own methods, if set). */
  images: Array<{ spec: ImageSpec, ns: number[], methods?: Method[] }>
  methods: Method[]
  /** N × B budget, bytes/s: what two cores carry at ≤ 70 % (see params). */
  aggregate: number
  maxB: number
}

function params (quick: boolean): Plan {
  // Measured here: a joeyd spends ~20–25 ms of CPU per MiB pulled from a registry and
  // ~70–90 ms per MiB in the swarm (it also serves what it gets, in 256 KiB–1 MiB pieces).
  // At N × B = 24 MiB/s the P2P runs at N ≥ 8 kept 1.6–1.85 of the two cores busy, so
  // N × B stays at 16 MiB/s (P2P ≈ 1.1 cores) and B shrinks as N grows.
  const env = (name: string): string | undefined => {
    const v = process.env[`JOEY_BENCH_CLUSTER_${name}`]
    return v !== undefined && v !== '' ? v : undefined
  }
  const list = (v: string | undefined): number[] | undefined => v?.split(',').map(Number).filter(n => Number.isInteger(n) && n > 0)
  const sweep: ImageSpec = quick
    ? { label: '24 MiB, 2 layers', layers: 2, layerBytes: 12 * MiB }
    : { label: '64 MiB, 4 layers', layers: 4, layerBytes: 16 * MiB }
  const large: ImageSpec = { label: '192 MiB, 1 layer', layers: 1, layerBytes: 192 * MiB }
  const images: Plan['images'] = [{ spec: sweep, ns: list(env('NS')) ?? (quick ? [2, 4] : [2, 4, 8, 16]) }]
  // The large image shows P2P against the direct pull; the cache's behaviour is the sweep's.
  if (!quick && env('LARGE') !== '0') images.push({ spec: large, ns: [4], methods: ['p2p', 'direct'] })
  const methods = (env('METHODS')?.split(',') ?? ['p2p', 'direct', 'cache']).filter((m): m is Method => m in METHOD_NAME)
  return {
    images,
    methods,
    aggregate: Number(env('AGG_MIB') ?? 16) * MiB,
    maxB: Number(env('MAX_MIB') ?? 8) * MiB
  }
}

/** B for N agents: the budget split evenly, capped, rounded down to 1/4 MiB/s. */
function linkRate (plan: Plan, n: number): number {
  return Math.max(MiB / 4, Math.floor(Math.min(plan.maxB, plan.aggregate / n) / (MiB / 4)) * (MiB / 4))
}

export interface RunRow {
  mode: Mode
  method: Method
  n: number
  image: string
  sizeBytes: number
  /** B, MiB/s of payload per agent link. */
  bMiB: number
  /** S ÷ B, s. */
  idealS: number
  /** Blob bytes the origin registry sent ÷ S. */
  egress: number
  /** Bytes on the origin's link (tc, whole frames) ÷ S; netns mode only. */
  egressWire?: number
  p50: number
  max: number
  p50S: number
  maxS: number
  durationsS: number[]
  /** Cores busy with our processes during the pulls (of the machine's). */
  cpuCores: number
  cpuS: { agents: number, supernode: number, registries: number, bench: number }
  /** Cores other processes on the machine kept busy meanwhile. */
  otherCores: number
  rssMiB: { agentsMedian: number, agentsMax: number, supernode?: number, origin: number, cache?: number }
  /** Per agent: frames its link delivered ÷ (S × frame overhead); ≈ 1 when nothing is fetched twice. */
  agentDownWire?: { median: number, max: number }
  seedUpload?: number
  /** Agents that went to the origin for the rest of a blob (P2P). */
  fellBack?: number
  failures: string[]
  notes: string[]
  /** Wall time of the run's parts, s: starting the processes, the pulls, stopping them. */
  phaseS: { setup: number, pull: number, stop: number }
}

interface Point {
  mode: Mode
  dir: string
  n: number
  b: number
  spec: ImageSpec
  size: number
  pieceCount: number
  storage: string
  topo?: Topology
}

function place (pt: Point, host: string): Placement {
  if (pt.topo === undefined) return {}
  const h = pt.topo.host(host)
  return { wrap: h.wrap, host: h.addr }
}

function agentName (i: number): string { return `a${String(i).padStart(2, '0')}` }

async function rss (pid: number): Promise<number> { return await peakRssBytes(pid).catch(() => 0) / MiB }

async function runMethod (pt: Point, method: Method): Promise<RunRow> {
  const procs: Proc[] = []
  const track = <T extends Proc>(p: T): T => { procs.push(p); pt.topo?.track(p.pid); return p }
  const sub = join(pt.dir, `n${pt.n}-${method}`)
  const limited = pt.mode === 'limiter'
  const tSetup = performance.now()
  try {
    const originAt = place(pt, 'origin')
    const origin = track(await startRegistryHost({ dir: join(sub, 'origin'), storage: pt.storage, addr: originAt.host ?? '127.0.0.1', wrap: originAt.wrap ?? [] }))
    let cache: RegistryHost | undefined
    if (method === 'cache') {
      const at = place(pt, 'cache')
      cache = track(await startRegistryHost({ dir: join(sub, 'cache'), storage: join(sub, 'cache', 'data'), addr: at.host ?? '127.0.0.1', wrap: at.wrap ?? [], remote: `http://${origin.host}` }))
    }
    const insecure = ['--insecure-registry', origin.host, ...(cache !== undefined ? ['--insecure-registry', cache.host] : [])]
    let sn: SupernodeProc | undefined
    if (method === 'p2p') {
      // In limiter mode the seed is one node with an agent's upload cap; in netns mode its
      // host has a link of B up (and a fast one down, beside the origin).
      sn = track(await startSupernode(join(sub, 'supernode'), [...insecure, ...(limited ? ['--upload-limit', String(pt.b)] : [])], place(pt, 'sn')))
    }
    const agentArgs = [
      ...insecure,
      ...(limited ? ['--download-limit', String(pt.b), '--upload-limit', String(pt.b)] : []),
      ...(sn !== undefined ? ['--supernode', sn.url, '--log-level', 'debug'] : ['--log-level', 'info'])
    ]
    const agents: AgentProc[] = []
    // A few at a time: sixteen starting at once on two cores missed their start deadline
    // when agents ran through tsx; from dist/ eight at once start in about a second.
    for (let first = 0; first < pt.n; first += START_BATCH) {
      // allSettled: an agent that fails to start must not leave the others starting unseen.
      const started = await Promise.allSettled(Array.from({ length: Math.min(START_BATCH, pt.n - first) }, async (_, k) => {
        const i = first + k
        agents[i] = track(await startAgent(join(sub, 'agents'), agentName(i), agentArgs, place(pt, agentName(i))))
      }))
      const refused = started.find(s => s.status === 'rejected')
      if (refused !== undefined) throw refused.reason
    }
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
    const ref = `${(cache ?? origin).host}/${REPO}`
    const setupS = (performance.now() - tSetup) / 1000
    const links0 = await pt.topo?.counters()
    const egress0 = await origin.blobBytes()
    const cpu0 = await sampleCpu()
    const start = Date.now()
    const t0 = performance.now()
    const durations = new Array<number>(pt.n).fill(NaN)
    const failures: string[] = []
    const ideal = pt.size / pt.b
    // A hung pull must not hang the bench: past the deadline it counts as failed.
    const deadlineMs = (4 * ideal + 60) * 1000
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${(deadlineMs / 1000).toFixed(0)} s`)), deadlineMs) })
    deadline.catch(() => {})
    await Promise.all(agents.map(async (a, i) => {
      try {
        await Promise.race([a.pull(ref, 'v1'), deadline])
        durations[i] = (performance.now() - t0) / 1000
      } catch (err) {
        failures.push(`${a.name}: ${(err as Error).message.slice(0, 300)}`)
      }
    }))
    clearTimeout(timer)
    const wall = (performance.now() - t0) / 1000
    const cpu1 = await sampleCpu()
    const egress = await origin.blobBytes() - egress0
    const links1 = await pt.topo?.counters()
    const row = await summarize(pt, method, { durations, failures, wall, cpu0, cpu1, egress, agents, sn, origin, cache, links0, links1 })
    if (sn !== undefined) {
      const text = await getText(place(pt, 'sn').wrap ?? [], `${sn.url}/metrics`)
      row.seedUpload = (parseMetrics(text ?? '').joey_supernode_seed_bytes_served_total ?? NaN) / pt.size
      const traced = { label: method, start, traces, peerIds, seedDone }
      const tree = treeStats(traced)
      if (tree !== undefined) {
        row.fellBack = tree.fellBack.length
        row.notes.push(`relay tree: hops from the seed mean ${tree.depthMean.toFixed(2)}, max ${tree.depthMax}; ${tree.seedPieces} piece copies from the seed for ${pt.pieceCount} pieces; relay delay median ${(tree.hopMedianMs / 1000).toFixed(2)} s; first piece p50 ${(median(tree.firstPieceMs) / 1000).toFixed(2)} s, max ${(Math.max(...tree.firstPieceMs) / 1000).toFixed(2)} s`)
        if (tree.fellBack.length > 0) {
          const whys = [...new Set(tree.fellBack.map(f => f.why))].join('; ')
          row.notes.push(`${tree.fellBack.length} of ${pt.n} agents went to the origin for the rest of a blob (first at ${(Math.min(...tree.fellBack.map(f => f.t)) / 1000).toFixed(1)} s: ${whys})`)
        }
      }
      if (process.env.JOEY_BENCH_TRACE !== undefined) printTimeline(traced, agents.map(a => a.name), pt.pieceCount)
    }
    const keep = process.env.JOEY_BENCH_LOGS
    if (keep !== undefined && keep !== '') {
      const to = join(keep, `n${pt.n}-${method}`)
      await mkdir(to, { recursive: true })
      await Promise.all([...(sn !== undefined ? [writeFile(join(to, 'supernode.log'), sn.logs())] : []), ...agents.map(async a => { await writeFile(join(to, `${a.name}.log`), a.logs()) })])
    }
    const tStop = performance.now()
    await Promise.all(procs.map(async x => { await x.stop() }))
    row.phaseS = { setup: setupS, pull: wall, stop: (performance.now() - tStop) / 1000 }
    return row
  } finally {
    // Reached on failure too: nothing this run started may outlive it.
    await Promise.all(procs.map(async x => { await x.kill() }))
    await rm(sub, { recursive: true, force: true })
  }
}

interface Measured {
  durations: number[]
  failures: string[]
  wall: number
  cpu0: CpuSample
  cpu1: CpuSample
  egress: number
  agents: AgentProc[]
  sn?: SupernodeProc
  origin: RegistryHost
  cache?: RegistryHost
  links0?: Map<string, LinkBytes>
  links1?: Map<string, LinkBytes>
}

async function summarize (pt: Point, method: Method, m: Measured): Promise<RunRow> {
  const ideal = pt.size / pt.b
  const ok = m.durations.filter(Number.isFinite)
  const p50S = ok.length > 0 ? median(ok) : NaN
  const maxS = ok.length === m.durations.length ? Math.max(...ok) : NaN
  const delta = (pid: number): number => (m.cpu1.byPid.get(pid) ?? 0) - (m.cpu0.byPid.get(pid) ?? 0)
  const cpuS = {
    agents: m.agents.reduce((s, a) => s + delta(a.pid), 0),
    supernode: m.sn !== undefined ? delta(m.sn.pid) : 0,
    registries: delta(m.origin.pid) + (m.cache !== undefined ? delta(m.cache.pid) : 0),
    bench: (m.cpu1.selfMicros - m.cpu0.selfMicros) / 1e6
  }
  const ours = cpuS.agents + cpuS.supernode + cpuS.registries + cpuS.bench
  const agentRss = await Promise.all(m.agents.map(async a => await rss(a.pid)))
  const row: RunRow = {
    mode: pt.mode,
    method,
    n: pt.n,
    image: pt.spec.label,
    sizeBytes: pt.size,
    bMiB: pt.b / MiB,
    idealS: ideal,
    egress: m.egress / pt.size,
    p50: p50S / ideal,
    max: maxS / ideal,
    p50S,
    maxS,
    durationsS: m.durations.map(d => Math.round(d * 100) / 100),
    cpuCores: ours / m.wall,
    cpuS,
    otherCores: Math.max(0, (m.cpu1.machineBusy - m.cpu0.machineBusy) - ours) / m.wall,
    rssMiB: {
      agentsMedian: median(agentRss),
      agentsMax: Math.max(...agentRss),
      ...(m.sn !== undefined ? { supernode: await rss(m.sn.pid) } : {}),
      origin: await rss(m.origin.pid),
      ...(m.cache !== undefined ? { cache: await rss(m.cache.pid) } : {})
    },
    failures: m.failures,
    notes: [],
    phaseS: { setup: NaN, pull: m.wall, stop: NaN }
  }
  if (m.links0 !== undefined && m.links1 !== undefined) {
    const l0 = m.links0
    const l1 = m.links1
    const diff = (name: string, dir: keyof LinkBytes): number => (l1.get(name)?.[dir] ?? 0) - (l0.get(name)?.[dir] ?? 0)
    row.egressWire = diff('origin', 'up') / pt.size
    const down = m.agents.map(a => diff(a.name, 'down') / (pt.size * WIRE_PER_PAYLOAD))
    row.agentDownWire = { median: median(down), max: Math.max(...down) }
  }
  return row
}

async function runPoint (plan: Plan, mode: Mode, dir: string, spec: ImageSpec, n: number, storage: string, size: number, pieceCount: number, errors: string[]): Promise<RunRow[]> {
  const b = linkRate(plan, n)
  const pt: Point = { mode, dir, n, b, spec, size, pieceCount, storage }
  if (mode === 'netns') {
    const hosts: HostSpec[] = [
      { name: 'origin', up: FAST_LINK, down: FAST_LINK },
      { name: 'cache', up: FAST_LINK, down: FAST_LINK },
      { name: 'sn', up: b, down: FAST_LINK },
      ...Array.from({ length: n }, (_, i) => ({ name: agentName(i), up: b, down: b }))
    ]
    pt.topo = await createTopology(hosts)
  }
  const rows: RunRow[] = []
  try {
    for (const method of plan.methods) {
      const t = performance.now()
      let row: RunRow
      try {
        row = await runMethod(pt, method)
      } catch (err) {
        // One failed run (an agent that would not start on a busy machine) costs its row, not the sweep.
        errors.push(`${METHOD_NAME[method]} N=${n} ${spec.label} FAILED: ${(err as Error).message.slice(0, 400)}`)
        console.log(`  ${errors[errors.length - 1] ?? ''}`)
        continue
      }
      rows.push(row)
      console.log(`  ${mode} N=${n} ${spec.label} B=${(b / MiB).toFixed(2)} MiB/s ${METHOD_NAME[method]}: egress ${row.egress.toFixed(2)}×S, p50 ${row.p50.toFixed(2)} max ${row.max.toFixed(2)} ×S÷B (S÷B ${row.idealS.toFixed(1)} s), CPU ${row.cpuCores.toFixed(2)} cores + ${row.otherCores.toFixed(2)} others; ${((performance.now() - t) / 1000).toFixed(0)} s (start ${row.phaseS.setup.toFixed(1)}, pull ${row.phaseS.pull.toFixed(1)}, stop ${row.phaseS.stop.toFixed(1)})`)
    }
  } finally {
    await pt.topo?.destroy()
  }
  return rows
}

function f2 (v: number | undefined): string { return v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(2) }

function sweepTable (rows: RunRow[]): string {
  const out = [
    '| image | N | B MiB/s | S÷B s | method | egress ÷ S | p50 ÷ S÷B | max ÷ S÷B | CPU cores (others) | RSS MiB agent max / sn / origin / cache |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |'
  ]
  for (const r of rows) {
    const rs = r.rssMiB
    out.push(`| ${r.image} | ${r.n} | ${f2(r.bMiB)} | ${r.idealS.toFixed(1)} | ${METHOD_NAME[r.method]} | ${f2(r.egress)} | ${f2(r.p50)} | ${f2(r.max)} | ${f2(r.cpuCores)} (${f2(r.otherCores)}) | ${rs.agentsMax.toFixed(0)} / ${rs.supernode?.toFixed(0) ?? '—'} / ${rs.origin.toFixed(0)} / ${rs.cache?.toFixed(0) ?? '—'} |`)
  }
  return out.join('\n')
}

async function writeChart (plan: Plan, rows: RunRow[], spec: ImageSpec, mode: Mode): Promise<void> {
  const sweep = rows.filter(r => r.image === spec.label)
  const colors: Record<Method, string> = { p2p: '#1f6fb4', direct: '#d62728', cache: '#2a9d3a' }
  const methods = [...new Set(sweep.map(r => r.method))]
  const bound = [...new Map(sweep.map(r => [r.n, r.idealS])).entries()]
  const svg = lineChart({
    title: `Cluster pull of ${spec.label}: completion time vs N`,
    subtitle: `${mode === 'netns' ? 'kernel-shaped links (netns + tc htb)' : "agents' own rate limits"}; B = ${plan.aggregate / MiB} MiB/s ÷ N (max ${plan.maxB / MiB}); solid p50, dashed slowest`,
    xLabel: 'N (agents pulling at once)',
    yLabel: 'completion time, s',
    series: [
      { name: 'S ÷ B (bound)', points: bound, color: '#000', reference: true },
      ...methods.flatMap(m => [
        { name: `${METHOD_NAME[m]} p50`, points: sweep.filter(r => r.method === m).map(r => [r.n, r.p50S] as [number, number]), color: colors[m] },
        { name: `${METHOD_NAME[m]} max`, points: sweep.filter(r => r.method === m).map(r => [r.n, r.maxS] as [number, number]), color: colors[m], dashed: true }
      ])
    ]
  })
  await mkdir('bench/results', { recursive: true })
  await writeFile(CHART, svg)
}

export async function run (opts: BenchOptions): Promise<CaseResult> {
  const plan = params(opts.quick)
  const forced = process.env.JOEY_BENCH_CLUSTER_MODE
  const check = forced === 'limiter' ? { ok: false, why: 'JOEY_BENCH_CLUSTER_MODE=limiter' } : await netnsAvailable()
  if (forced === 'netns' && !check.ok) throw new Error(`netns mode is not available here: ${check.why}`)
  const mode: Mode = check.ok ? 'netns' : 'limiter'
  console.log(`  mode ${mode}: ${check.why}`)
  const dir = await mkdtemp(join(tmpdir(), 'joey-bench-cluster-'))
  const rows: RunRow[] = []
  const errors: string[] = []
  try {
    for (const { spec, ns, methods: only } of plan.images) {
      const image = await largeImage({ layerBytes: spec.layerBytes, layers: spec.layers })
      const size = image.blobs().reduce((s, b) => s + b.size, 0)
      const pieceCount = image.blobs().reduce((s, b) => s + pieceCountFor(b.size, pieceSizeFor(b.size)), 0)
      // Pushed once on loopback; each run's origin serves a hard-linked copy of the storage,
      // since the origin's host has no route from here.
      const storage = join(dir, `storage-${spec.layers}x${spec.layerBytes}`)
      const pusher = await startRegistry()
      try {
        await pusher.push(REPO, 'v1', image)
        await promisify(execFile)('cp', ['-al', join(pusher.dir, 'data'), storage])
      } finally {
        await pusher.stop()
      }
      const methods = plan.methods.filter(m => only === undefined || only.includes(m))
      for (const n of ns) rows.push(...await runPoint({ ...plan, methods }, mode, dir, spec, n, storage, size, pieceCount, errors))
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
  const left = await leftoverNamespaces()
  const sweepSpec = plan.images[0]?.spec as ImageSpec
  await writeChart(plan, rows, sweepSpec, mode)
  return summarizeCase(plan, mode, rows, sweepSpec, [...errors, ...left.map(ns => `WARNING: network namespace left behind: ${ns}`)])
}

function summarizeCase (plan: Plan, mode: Mode, rows: RunRow[], sweepSpec: ImageSpec, problems: string[]): CaseResult {
  const metrics: Metric[] = []
  const notes: string[] = [...problems]
  const sweep = rows.filter(r => r.image === sweepSpec.label)
  const nMax = Math.max(...sweep.map(r => r.n))
  const at = (m: Method): RunRow | undefined => sweep.find(r => r.n === nMax && r.method === m)
  const p2p = at('p2p')
  if (p2p !== undefined) {
    metrics.push(
      { name: `P2P N=${nMax} origin egress ÷ S`, value: p2p.egress, unit: '×', target: `≤ ${TARGET_EGRESS}`, ok: p2p.egress <= TARGET_EGRESS },
      { name: `P2P N=${nMax} p50 time ÷ (S÷B)`, value: p2p.p50, unit: '×', target: `≤ ${TARGET_P50.toFixed(2)}`, ok: p2p.p50 <= TARGET_P50 },
      { name: `P2P N=${nMax} max time ÷ (S÷B)`, value: p2p.max, unit: '×', target: `≤ ${TARGET_MAX.toFixed(2)}`, ok: p2p.max <= TARGET_MAX }
    )
    if (!(p2p.egress <= TARGET_EGRESS)) notes.push(`MISSED: P2P origin egress at N = ${nMax} is ${f2(p2p.egress)} × S (target ≤ ${TARGET_EGRESS})`)
    if (!(p2p.p50 <= TARGET_P50)) notes.push(`MISSED: P2P p50 completion at N = ${nMax} is ${f2(p2p.p50)} × S÷B (target ≤ ${TARGET_P50.toFixed(2)})`)
    if (!(p2p.max <= TARGET_MAX)) notes.push(`MISSED: P2P slowest completion at N = ${nMax} is ${f2(p2p.max)} × S÷B (target ≤ ${TARGET_MAX.toFixed(2)})`)
  } else if (plan.methods.includes('p2p')) {
    metrics.push({ name: `P2P N=${nMax} p50 time ÷ (S÷B)`, value: NaN, unit: '×', target: `≤ ${TARGET_P50.toFixed(2)}`, ok: false })
    notes.push(`MISSED: no P2P result at N = ${nMax} (see the failures above)`)
  }
  for (const m of plan.methods) {
    const r = at(m)
    if (r === undefined) continue
    const tag = `${METHOD_NAME[m]} N=${nMax}`
    if (m !== 'p2p') {
      metrics.push(
        { name: `${tag} origin egress ÷ S`, value: r.egress, unit: '×' },
        { name: `${tag} p50 time ÷ (S÷B)`, value: r.p50, unit: '×' },
        { name: `${tag} max time ÷ (S÷B)`, value: r.max, unit: '×' }
      )
    }
    metrics.push(
      { name: `${tag} CPU use during pull`, value: r.cpuCores, unit: `cores of ${cpus().length}` },
      { name: `${tag} joeyd peak RSS max`, value: r.rssMiB.agentsMax, unit: 'MiB' }
    )
  }
  for (const r of rows) {
    const tag = `${METHOD_NAME[r.method]} N=${r.n} ${r.image}`
    if (r.cpuCores > 0.7 * cpus().length) notes.push(`WARNING: ${tag} used ${f2(r.cpuCores)} of ${cpus().length} cores: its times may measure the CPU, not the network`)
    if (r.otherCores > 0.2) notes.push(`WARNING: other processes kept ${f2(r.otherCores)} cores busy during ${tag}: its times are not clean`)
    if (r.p50 < 0.95) notes.push(`WARNING: ${tag} finished faster than S÷B (p50 ${f2(r.p50)}): the link bound did not apply to it${r.mode === 'limiter' ? ' (the agents\' own limit does not cover this path)' : ''}`)
    for (const f of r.failures) notes.push(`${tag} FAILED pull ${f}`)
    for (const n of r.notes) notes.push(`${tag}: ${n}`)
    notes.push(`${tag}: per-agent pull s ${r.durationsS.map(d => d.toFixed(1)).join(' ')}; CPU s agents ${r.cpuS.agents.toFixed(1)}, supernode ${r.cpuS.supernode.toFixed(1)}, registries ${r.cpuS.registries.toFixed(1)}, bench ${r.cpuS.bench.toFixed(1)}${r.egressWire !== undefined ? `; origin link ${f2(r.egressWire)} × S, agent downlinks median ${f2(r.agentDownWire?.median)} max ${f2(r.agentDownWire?.max)} × S (frames)` : ''}${r.seedUpload !== undefined ? `; seed upload ${f2(r.seedUpload)} × S` : ''}`)
  }
  const modeText = mode === 'netns'
    ? 'each host in its own network namespace, links shaped by tc htb on both ends (agents B up and down, the supernode\'s host B up, origin and cache hosts 1 GiB/s); no rate limit inside Joey'
    : 'all on loopback, links emulated by the agents\' own limits (--download-limit/--upload-limit B; the seed --upload-limit B)'
  return {
    name: 'cluster',
    description: `Mode ${mode}: ${modeText}. N agents pull one image at once via Joey P2P (a joey-supernode seeds and schedules), straight from the origin, and through a pull-through cache (docker-registry proxy); B = min(${plan.maxB / MiB}, ${plan.aggregate / MiB} ÷ N) MiB/s of payload per agent link. Origin egress from the origin registry's own blob byte count; times from the common start. Chart: ${CHART}.\n\n${sweepTable(rows)}`,
    metrics,
    notes,
    data: { mode, plan, rows },
    files: [CHART]
  }
}
