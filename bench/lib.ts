/** Shared helpers for benchmarks: processes, sockets, timing, result shapes. */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { Client } from 'undici'

export interface Metric {
  name: string
  value: number
  unit: string
  /** Target as text, e.g. "≤ 1.20". */
  target?: string
  ok?: boolean
}

export interface CaseResult {
  name: string
  description: string
  metrics: Metric[]
  notes: string[]
  /** Case-specific raw results (series for charts, per-run samples), kept in latest.json. */
  data?: unknown
  /** Files the case wrote beside the results (charts), relative to the repository root. */
  files?: string[]
}

export interface BenchOptions {
  quick: boolean
}

export const MiB = 1024 * 1024

export function within (value: number, max: number): boolean { return value <= max }

export async function peakRssBytes (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const m = /VmHWM:\s+(\d+) kB/.exec(status)
  return m === null ? 0 : Number(m[1]) * 1024
}

export interface Daemon { proc: ChildProcess, pid: number, stop: () => Promise<void> }

/** Starts a joeyd and waits for its socket to answer /_ping. */
export async function startJoeyd (args: string[], socket: string): Promise<Daemon> {
  const proc = spawn(process.execPath, ['bin/joeyd.js', ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  proc.stderr?.on('data', (c: Buffer) => { stderr = (stderr + c.toString()).slice(-4000) })
  const deadline = Date.now() + 20_000
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`joeyd exited early: ${stderr}`)
    try {
      const c = new Client('http://localhost', { socketPath: socket })
      const res = await c.request({ path: '/_ping', method: 'GET' })
      await res.body.dump()
      await c.close()
      if (res.statusCode === 200) break
    } catch {}
    if (Date.now() > deadline) { proc.kill('SIGKILL'); throw new Error(`joeyd did not start: ${stderr}`) }
    await sleep(100)
  }
  return {
    proc,
    pid: proc.pid as number,
    stop: async () => {
      if (proc.exitCode !== null) return
      proc.kill('SIGTERM')
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000)
      await new Promise(resolve => proc.once('exit', resolve))
      clearTimeout(t)
    }
  }
}

/** Pulls through the Engine API and returns when the progress stream ends (throws on an error line). */
export async function enginePull (socket: string, image: string, tag: string): Promise<void> {
  const c = new Client('http://localhost', { socketPath: socket, bodyTimeout: 0, headersTimeout: 0 })
  try {
    const res = await c.request({ path: `/images/create?fromImage=${encodeURIComponent(image)}&tag=${encodeURIComponent(tag)}`, method: 'POST' })
    const text = await res.body.text()
    if (res.statusCode !== 200) throw new Error(`pull failed: ${res.statusCode} ${text}`)
    for (const line of text.split('\n')) {
      if (line.includes('"error"')) throw new Error(`pull failed: ${line}`)
    }
  } finally {
    await c.close()
  }
}

export async function runCommand (cmd: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] })
    let err = ''
    p.stderr?.on('data', (c: Buffer) => { err = (err + c.toString()).slice(-2000) })
    const t = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 600_000)
    p.on('exit', (code) => {
      clearTimeout(t)
      if (code === 0) resolve()
      else reject(new Error(`${cmd} exited ${code}: ${err}`))
    })
  })
}

export function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m] as number : ((s[m - 1] as number) + (s[m] as number)) / 2
}
