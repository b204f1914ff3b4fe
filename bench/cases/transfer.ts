/**
 * One agent pulling a large blob from one parent over P2P vs a raw libp2p stream of the
 * same number of bytes, between the same two processes on the same connection (TCP +
 * Noise + yamux on loopback), alternating in one run. The raw stream is the ceiling.
 *
 * Both sides are separate processes running bench/transfer-peer.ts: the parent serves the
 * blob from its content store the way an agent serves a blob it holds whole; the child
 * runs the agent's receive path (createP2PTransfer: pieces verified, written into a
 * partial, the whole blob verified and committed). They are not whole joeyd processes
 * (no Engine API, mirror or supernode client), so their RSS is the transfer's share.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface, type Interface } from 'node:readline'
import { MiB, median, peakRssBytes, type BenchOptions, type CaseResult } from '../lib.js'

const RATIO_TARGET = 0.85
const RSS_TARGET_MIB = 150
/** Linux reports CPU time in clock ticks of 1/100 s (USER_HZ). */
const TICKS_PER_SECOND = 100

interface Peer {
  proc: ChildProcess
  pid: number
  lines: AsyncIterator<string>
  rl: Interface
  stderr: () => string
}

function startPeer (args: string[], extraNodeArgs: string[]): Peer {
  const proc = spawn(process.execPath, [...extraNodeArgs, '--import', 'tsx', 'bench/transfer-peer.ts', ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
  let err = ''
  proc.stderr?.on('data', (c: Buffer) => { err = (err + c.toString()).slice(-4000) })
  const rl = createInterface({ input: proc.stdout as NodeJS.ReadableStream })
  return { proc, pid: proc.pid as number, lines: rl[Symbol.asyncIterator](), rl, stderr: () => err }
}

async function nextLine<T> (peer: Peer, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`peer gave no answer within ${timeoutMs} ms: ${peer.stderr()}`)) }, timeoutMs) })
  try {
    const r = await Promise.race([peer.lines.next(), timeout])
    if (r.done === true) throw new Error(`peer exited: ${peer.stderr()}`)
    const msg = JSON.parse(r.value) as T & { error?: string }
    if (msg.error !== undefined) throw new Error(msg.error)
    return msg
  } finally {
    clearTimeout(timer)
  }
}

async function stopPeer (peer: Peer): Promise<void> {
  peer.proc.stdin?.end()
  if (peer.proc.exitCode !== null) return
  const kill = setTimeout(() => peer.proc.kill('SIGKILL'), 10_000)
  await new Promise(resolve => peer.proc.once('exit', resolve))
  clearTimeout(kill)
}

/** User + system CPU seconds a process has used so far. */
async function cpuSeconds (pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND
}

/** Resets a process's peak RSS (VmHWM), so the next reading is the peak of one phase. */
async function resetPeakRss (pid: number): Promise<void> {
  await writeFile(`/proc/${pid}/clear_refs`, '5').catch(() => {})
}

interface Sample { ms: number, parentCpu: number, childCpu: number, parentRss: number, childRss: number }

async function measure<T extends { ms?: number, piecesMs?: number }> (parent: Peer, child: Peer, cmd: unknown, timeoutMs: number): Promise<Sample & { reply: T }> {
  await Promise.all([resetPeakRss(parent.pid), resetPeakRss(child.pid)])
  const [p0, c0] = [await cpuSeconds(parent.pid), await cpuSeconds(child.pid)]
  child.proc.stdin?.write(JSON.stringify(cmd) + '\n')
  const reply = await nextLine<T>(child, timeoutMs)
  const [p1, c1] = [await cpuSeconds(parent.pid), await cpuSeconds(child.pid)]
  const [parentRss, childRss] = [await peakRssBytes(parent.pid), await peakRssBytes(child.pid)]
  return { ms: reply.ms ?? 0, parentCpu: p1 - p0, childCpu: c1 - c0, parentRss, childRss, reply }
}

export async function run (opts: BenchOptions): Promise<CaseResult> {
  const bytes = opts.quick ? 256 * MiB : 1024 * MiB
  const rounds = 2
  // Profiles of both processes land in this directory when set (node --cpu-prof).
  const profDir = process.env.JOEY_BENCH_CPU_PROF
  const nodeArgs = (name: string): string[] => profDir !== undefined ? ['--cpu-prof', '--cpu-prof-dir', profDir, '--cpu-prof-name', `${name}.cpuprofile`] : []
  const dir = await mkdtemp(join(tmpdir(), 'joey-bench-transfer-'))
  const parent = startPeer(['--role', 'parent', '--dir', join(dir, 'parent'), '--bytes', String(bytes)], nodeArgs('parent'))
  const child = startPeer(['--role', 'child', '--dir', join(dir, 'child')], nodeArgs('child'))
  try {
    const blob = await nextLine<{ addr: string, peerId: string, digest: string, size: number, pieceSize: number, pieceDigests: string[] }>(parent, 120_000)
    const timeoutMs = 600_000
    // Warm-up: the connection, the JIT and the page cache of the parent's blob.
    await measure(parent, child, { op: 'raw', addr: blob.addr, bytes: 64 * MiB }, timeoutMs)
    await measure(parent, child, { op: 'pull', ...blob }, timeoutMs)
    const raw: Sample[] = []
    const pieces: Sample[] = []
    const whole: number[] = []
    const piecesCpu: number[] = []
    const gc = { raw: [] as number[], pieces: [] as number[], majors: [] as number[] }
    for (let r = 0; r < rounds; r++) {
      const rw = await measure<{ ms: number, gcMs: number }>(parent, child, { op: 'raw', addr: blob.addr, bytes }, timeoutMs)
      raw.push(rw)
      gc.raw.push(rw.reply.gcMs)
      const p = await measure<{ piecesMs: number, piecesCpuMs: number, totalMs: number, piecesGc: { gcMs: number, majorGcs: number } }>(parent, child, { op: 'pull', ...blob }, timeoutMs)
      gc.pieces.push(p.reply.piecesGc.gcMs)
      gc.majors.push(p.reply.piecesGc.majorGcs)
      pieces.push({ ...p, ms: p.reply.piecesMs })
      piecesCpu.push(p.reply.piecesCpuMs / 1000)
      whole.push(p.reply.totalMs)
    }
    // Peaks of the pulls alone (each phase starts from a reset peak); the raw rounds apart.
    const childRss = Math.max(...pieces.map(s => s.childRss))
    const parentRss = Math.max(...pieces.map(s => s.parentRss))
    const rawChildRss = Math.max(...raw.map(s => s.childRss))
    const rate = (ms: number): number => bytes / MiB / (ms / 1000)
    const rawRate = median(raw.map(s => rate(s.ms)))
    const pieceRate = median(pieces.map(s => rate(s.ms)))
    const ratio = pieceRate / rawRate
    const gib = bytes / (1024 * MiB)
    const cpuPerGiB = (xs: Sample[], side: 'parentCpu' | 'childCpu'): number => median(xs.map(s => s[side])) / gib
    const rssOk = childRss / MiB <= RSS_TARGET_MIB
    const notes = [
      'Both sides are transfer processes (p2p host, piece server or transfer manager, content store), not whole joeyd processes; the RSS is that share of an agent.',
      'Pull rate counts until the last piece is verified and written; the whole fetch adds the whole-blob verify and the commit into the content store (each a full read of the partial).',
      'CPU is core-seconds per GiB moved (all threads of the process). "pull: receiver CPU, pieces" is the pulling process until its last piece is written, comparable with the raw stream; "whole pull" adds the whole-blob verify and the commit.',
      'Peak RSS is per phase: each process\'s peak is reset before each raw stream and each pull.'
    ]
    if (ratio < RATIO_TARGET) {
      notes.push(`Pull rate is ${ratio.toFixed(2)}× the raw stream (target ≥ ${RATIO_TARGET}): beyond the raw stream, the receiver hashes every piece (sha256 ≈ 0.8 ms/MiB) and writes it to the partial, and the sender reads each piece from its content store; both processes share the machine's cores, so work on either side slows the stream.`)
    }
    if (!rssOk) notes.push(`Pulling side peaked at ${(childRss / MiB).toFixed(0)} MiB (target ≤ ${RSS_TARGET_MIB}).`)
    return {
      name: 'transfer',
      description: `One ${(bytes / MiB).toFixed(0)} MiB blob pulled over P2P from one parent vs a raw libp2p stream of the same bytes, two processes, TCP + Noise + yamux on loopback (${rounds} alternating round(s), medians)`,
      metrics: [
        { name: 'raw stream', value: rawRate, unit: 'MiB/s' },
        { name: 'piece pull', value: pieceRate, unit: 'MiB/s' },
        { name: 'piece pull ÷ raw stream', value: ratio, unit: '×', target: `≥ ${RATIO_TARGET}`, ok: ratio >= RATIO_TARGET },
        { name: 'whole fetch (incl. verify + commit)', value: median(whole.map(rate)), unit: 'MiB/s' },
        { name: 'raw: receiver CPU', value: cpuPerGiB(raw, 'childCpu'), unit: 'core-s/GiB' },
        { name: 'raw: sender CPU', value: cpuPerGiB(raw, 'parentCpu'), unit: 'core-s/GiB' },
        { name: 'pull: receiver CPU, pieces', value: median(piecesCpu) / gib, unit: 'core-s/GiB' },
        { name: 'raw: receiver GC', value: median(gc.raw) / 1000 / gib, unit: 's/GiB' },
        { name: 'pull: receiver GC, pieces', value: median(gc.pieces) / 1000 / gib, unit: 's/GiB' },
        { name: 'pull: receiver full GCs, pieces', value: median(gc.majors) / gib, unit: 'per GiB' },
        { name: 'pull: receiver CPU, whole pull', value: cpuPerGiB(pieces, 'childCpu'), unit: 'core-s/GiB' },
        { name: 'pull: parent CPU', value: cpuPerGiB(pieces, 'parentCpu'), unit: 'core-s/GiB' },
        { name: 'pulling side peak RSS (pull)', value: childRss / MiB, unit: 'MiB', target: `≤ ${RSS_TARGET_MIB}`, ok: rssOk },
        { name: 'pulling side peak RSS (raw)', value: rawChildRss / MiB, unit: 'MiB' },
        { name: 'parent peak RSS (pull)', value: parentRss / MiB, unit: 'MiB' }
      ],
      notes,
      data: { bytes, pieceSize: blob.pieceSize, raw, pieces, piecesCpu, gc, wholeMs: whole }
    }
  } finally {
    await Promise.all([stopPeer(child), stopPeer(parent)])
    await rm(dir, { recursive: true, force: true })
  }
}
