/**
 * Hosts of the cluster benchmark that the test harness does not start: docker-registry as the
 * origin and as a pull-through cache, each in a host of the emulated network (or on loopback),
 * plus what the bench reads from its processes: HTTP inside a host, CPU time, children.
 */
import { spawn } from 'node:child_process'
import { openSync, closeSync } from 'node:fs'
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { REGISTRY_BIN } from '../test/fixtures/registry.js'
import { manage, parseMetrics, type Proc } from '../test/cluster/harness.js'
import { freePort } from '../test/agent/daemon.js'

/** Clock ticks per second of /proc/<pid>/stat on Linux (USER_HZ, fixed at 100 on x86 and arm). */
const CLK_TCK = 100
const READY_MS = 20_000

/** GET of `url` from inside the host `wrap` runs in (through curl there); undefined on failure. */
export async function getText (wrap: string[], url: string): Promise<string | undefined> {
  if (wrap.length === 0) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(5000) })
      return res.ok ? await res.text() : undefined
    } catch {
      return undefined
    }
  }
  return await new Promise((resolve) => {
    const p = spawn(wrap[0] as string, [...wrap.slice(1), 'curl', '-sf', '--max-time', '5', url], { stdio: ['ignore', 'pipe', 'ignore'] })
    let out = ''
    p.stdout?.setEncoding('utf8').on('data', (s: string) => { out += s })
    p.on('error', () => resolve(undefined))
    p.on('close', (code) => resolve(code === 0 ? out : undefined))
  })
}

export interface RegistryHost extends Proc {
  /** host:port agents pull from. */
  host: string
  /** Blob body bytes the registry has sent (its Prometheus response-size sum for blob GETs). */
  blobBytes: () => Promise<number>
}

export interface RegistryHostOptions {
  dir: string
  /** Storage root (filesystem driver); an origin gets a copy of a pushed registry's. */
  storage: string
  /** Listen address; in a namespace the ports are the host's own. */
  addr: string
  wrap: string[]
  /** Pull-through cache of this registry URL (distribution's `proxy.remoteurl`). */
  remote?: string
}

/**
 * docker-registry serving `storage`, or caching `remote`. Origin egress is read from the
 * registry's own metrics, so nothing sits between it and its clients.
 */
export async function startRegistryHost (o: RegistryHostOptions): Promise<RegistryHost> {
  await mkdir(o.dir, { recursive: true })
  const inNs = o.wrap.length > 0
  const port = inNs ? 5000 : await freePort()
  const debugPort = inNs ? 5001 : await freePort()
  const config: Record<string, unknown> = {
    version: 0.1,
    log: { level: 'warn', accesslog: { disabled: true } },
    storage: { filesystem: { rootdirectory: o.storage }, maintenance: { uploadpurging: { enabled: false } } },
    http: { addr: `${o.addr}:${port}`, secret: 'joey-bench', debug: { addr: `127.0.0.1:${debugPort}`, prometheus: { enabled: true, path: '/metrics' } } },
    ...(o.remote !== undefined ? { proxy: { remoteurl: o.remote } } : {})
  }
  const configPath = join(o.dir, 'config.yml')
  // JSON is YAML.
  await writeFile(configPath, JSON.stringify(config, null, 2))
  const logFd = openSync(join(o.dir, 'registry.log'), 'a')
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('REGISTRY_')) env[k] = v
  const argv = [REGISTRY_BIN, 'serve', configPath]
  let proc
  try {
    proc = spawn(o.wrap[0] ?? REGISTRY_BIN, [...o.wrap.slice(1), ...(inNs ? argv : argv.slice(1))], { stdio: ['ignore', logFd, logFd], env })
  } finally {
    closeSync(logFd)
  }
  const tail = { text: '' }
  const m = manage(proc, tail)
  const logs = async (): Promise<string> => (await readFile(join(o.dir, 'registry.log'), 'utf8').catch(() => '')).slice(-2000)
  const deadline = Date.now() + READY_MS
  while ((await getText(o.wrap, `http://${o.addr}:${port}/v2/`)) === undefined) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      await m.kill()
      throw new Error(`docker-registry on ${o.addr}:${port} did not start: ${await logs()}`)
    }
    await sleep(100)
  }
  return {
    ...m,
    logs: () => tail.text,
    host: `${o.addr}:${port}`,
    blobBytes: async () => {
      const text = await getText(o.wrap, `http://127.0.0.1:${debugPort}/metrics`)
      if (text === undefined) throw new Error(`no metrics from docker-registry ${o.addr}:${port}`)
      return parseMetrics(text)['registry_http_response_size_bytes_sum{handler="blob"}'] ?? 0
    }
  }
}

/** utime + stime in seconds, or undefined once the process is gone. */
export async function cpuSeconds (pid: number): Promise<number | undefined> {
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

/** Direct children of this process (agents, the supernode, registries: `ip netns exec` execs in place). */
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

export interface CpuSample { byPid: Map<number, number>, selfMicros: number, machineBusy: number }

export async function sampleCpu (): Promise<CpuSample> {
  const byPid = new Map<number, number>()
  for (const pid of await childPids()) {
    const s = await cpuSeconds(pid)
    if (s !== undefined) byPid.set(pid, s)
  }
  const u = process.cpuUsage()
  return { byPid, selfMicros: u.user + u.system, machineBusy: await machineBusySeconds() }
}
