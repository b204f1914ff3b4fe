/**
 * The supernode's scheduler at scale: the real Scheduler, in-process, under thousands of
 * simulated peers pulling one image of three layers (256, 128 and 64 pieces): registration
 * and joins, batched piece reports, parent requests and failed parents. Decisions per
 * second are counted against CPU time (process.cpuUsage), not wall time, so other work on
 * the machine slows them less. Memory is measured in a child process of its own.
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { BLOB_SIZES, createWorkload } from '../sim/scheduler-workload.js'
import { SCHEDULER_DEFAULTS } from '../../supernode/scheduler/index.js'
import { MiB, type BenchOptions, type CaseResult, type Metric } from '../lib.js'

const DECISIONS_TARGET = 20_000
const MEMORY_PEERS = 5000
const MEMORY_TARGET = 300 * MiB

function cpuSeconds (since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since)
  return (d.user + d.system) / 1e6
}

interface MemoryReport { peers: number, peerTasks: number, heapBefore: number, heapAfter: number, rssBefore: number, rssAfter: number }

async function measureMemory (peers: number, rounds: number): Promise<MemoryReport> {
  const script = fileURLToPath(new URL('../sim/scheduler-memory.ts', import.meta.url))
  return await new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', script, String(peers), String(rounds)], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    p.stdout.on('data', (c: Buffer) => { out += c.toString() })
    p.stderr.on('data', (c: Buffer) => { err = (err + c.toString()).slice(-2000) })
    const t = setTimeout(() => p.kill('SIGKILL'), 300_000)
    p.on('exit', (code) => {
      clearTimeout(t)
      if (code !== 0) { reject(new Error(`memory probe exited ${String(code)}: ${err}`)); return }
      try { resolve(JSON.parse(out.trim().split('\n').pop() as string) as MemoryReport) } catch (e) { reject(e) }
    })
  })
}

export async function run (opts: BenchOptions): Promise<CaseResult> {
  const peers = opts.quick ? 1000 : MEMORY_PEERS
  const rounds = opts.quick ? 4 : 10
  const decisions = opts.quick ? 20_000 : 60_000
  const w = createWorkload({ peers, blobSizes: BLOB_SIZES, seed: 11 })

  let c = process.cpuUsage()
  w.joinAll()
  const joinCpu = cpuSeconds(c)
  const joins = peers * BLOB_SIZES.length

  c = process.cpuUsage()
  let roundDecisions = 0
  for (let r = 0; r < rounds; r++) roundDecisions += w.round()
  const roundCpu = cpuSeconds(c)
  const reports = peers * BLOB_SIZES.length * rounds

  // Warm, mid-pull state: parent choices alone.
  w.decide(2000)
  c = process.cpuUsage()
  const wall = performance.now()
  w.decide(decisions)
  const decideCpu = cpuSeconds(c)
  const decideWall = (performance.now() - wall) / 1000
  const perSecond = decisions / decideCpu

  const mem = await measureMemory(MEMORY_PEERS, opts.quick ? 6 : 24)
  const metrics: Metric[] = [
    { name: `parent decisions/s of CPU, ${peers} peers`, value: perSecond, unit: '/s', target: `≥ ${DECISIONS_TARGET}`, ok: perSecond >= DECISIONS_TARGET },
    { name: 'µs per decision (CPU)', value: decideCpu / decisions * 1e6, unit: 'µs' },
    { name: 'joins (with a decision each)/s', value: joins / joinCpu, unit: '/s' },
    { name: 'pull rounds: reports+decisions/s', value: (reports + roundDecisions) / roundCpu, unit: '/s' },
    { name: `RSS after GC, ${MEMORY_PEERS} peers`, value: mem.rssAfter / MiB, unit: 'MiB', target: `≤ ${MEMORY_TARGET / MiB}`, ok: mem.rssAfter <= MEMORY_TARGET },
    { name: `heap used by the state, ${MEMORY_PEERS} peers`, value: (mem.heapAfter - mem.heapBefore) / MiB, unit: 'MiB' },
    { name: 'heap per peer and task', value: (mem.heapAfter - mem.heapBefore) / mem.peerTasks, unit: 'B' }
  ]
  const notes = [
    `${peers} peers × ${BLOB_SIZES.length} tasks (${BLOB_SIZES.map(s => `${s / MiB} MiB`).join(', ')}, 4 MiB pieces); ${rounds} rounds of reports (1–3 pieces each), parent requests from half the peers a round, 1% failed parents`,
    `decisions: ${decisions} in ${decideCpu.toFixed(2)} s CPU (${decideWall.toFixed(2)} s wall${decideWall > decideCpu * 1.3 ? '; other work on the machine took the CPU' : ''})`,
    `memory: a child process with --expose-gc holding ${mem.peerTasks} peer-task states (RSS ${(mem.rssBefore / MiB).toFixed(0)} MiB before building them)`
  ]
  if (perSecond < DECISIONS_TARGET) notes.push(`decisions/s below ${DECISIONS_TARGET}: a decision probes and scores up to ${SCHEDULER_DEFAULTS.sampleSize} random candidates, each a row of the task's peer table, its piece bits and its host's row (typed arrays); at thousands of peers these are cache misses, and a loaded machine (other processes evicting the caches) slows CPU-time rates too`)
  return {
    name: 'scheduler',
    description: 'The real supernode scheduler in-process under thousands of simulated peers: decisions per CPU second and memory',
    metrics,
    notes
  }
}
