// Separate-process cluster for tests and the demo: a joey-supernode and joeyd agents on
// loopback, each with its own data root, ports picked by the kernel, stopped by PID.
import { spawn, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { Client } from 'undici'
import { largeImage, type FixtureImage } from '../fixtures/images.js'
import { startRegistry, type TestRegistry } from '../fixtures/registry.js'
import { startProxy, type CountingProxy } from '../fixtures/proxy.js'

const ROOT = new URL('../..', import.meta.url).pathname

export interface Proc {
  proc: ChildProcess
  pid: number
  /** SIGTERM, then SIGKILL after a grace period. */
  stop: () => Promise<void>
  /** SIGKILL now. */
  kill: () => Promise<void>
  logs: () => string
}

/** Stop and kill by PID for a spawned process; `tail` holds the end of its output. */
export function manage (proc: ChildProcess, tail: { text: string }): Proc {
  const exited = new Promise<void>(resolve => { if (proc.exitCode !== null || proc.signalCode !== null) resolve(); else proc.once('exit', () => resolve()) })
  const signal = async (sig: NodeJS.Signals, graceMs: number): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return
    try { process.kill(proc.pid as number, sig) } catch {}
    const t = setTimeout(() => { try { process.kill(proc.pid as number, 'SIGKILL') } catch {} }, graceMs)
    await exited
    clearTimeout(t)
  }
  return {
    proc,
    pid: proc.pid as number,
    stop: async () => { await signal('SIGTERM', 5000) },
    kill: async () => { await signal('SIGKILL', 0) },
    logs: () => tail.text
  }
}

/**
 * Where a process runs. Benchmarks start hosts in network namespaces: `wrap` is a command
 * prefix that execs the program in place (e.g. `ip netns exec <ns>`, so the pid stays the
 * program's), `host` the address it listens on. Defaults: no prefix, 127.0.0.1.
 */
export interface Placement { wrap?: string[], host?: string }

/** How much of a process's log is kept (the cluster bench keeps more when asked to save logs). */
const TAIL_BYTES = Number(process.env.JOEY_LOG_TAIL_BYTES ?? 20_000)

function spawnNode (script: string, args: string[], wrap: string[] = []): { proc: ChildProcess, tail: { text: string }, lines: (cb: (obj: Record<string, unknown>) => void) => void } {
  // JOEY_HARNESS_NODE_ARGS: extra node flags for every spawned bin (e.g. --cpu-prof --cpu-prof-dir=…).
  const nodeArgs = (process.env.JOEY_HARNESS_NODE_ARGS ?? '').split(' ').filter(a => a !== '')
  const argv = [process.execPath, ...nodeArgs, join(ROOT, script), ...args]
  const proc = spawn(wrap[0] ?? argv[0] as string, [...wrap.slice(1), ...(wrap.length > 0 ? argv : argv.slice(1))], { stdio: ['ignore', 'ignore', 'pipe'] })
  const tail = { text: '' }
  const listeners: Array<(obj: Record<string, unknown>) => void> = []
  let buf = ''
  proc.stderr?.setEncoding('utf8').on('data', (s: string) => {
    tail.text = (tail.text + s).slice(-TAIL_BYTES)
    buf += s
    let nl
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl)
      buf = buf.slice(nl + 1)
      try {
        const obj = JSON.parse(line) as Record<string, unknown>
        for (const l of listeners) l(obj)
      } catch {}
    }
  })
  return { proc, tail, lines: (cb) => { listeners.push(cb) } }
}

export interface SupernodeProc extends Proc { url: string, peerId: string }

export async function startSupernode (dataRoot: string, args: string[] = [], at: Placement = {}): Promise<SupernodeProc> {
  const host = at.host ?? '127.0.0.1'
  const { proc, tail, lines } = spawnNode('bin/joey-supernode.js', ['--data-root', dataRoot, '--listen', `${host}:0`, '--p2p-listen', `/ip4/${host}/tcp/0`, '--log-level', 'info', ...args], at.wrap)
  const started = new Promise<{ url: string, peerId: string }>((resolve, reject) => {
    lines((o) => { if (o.msg === 'joey-supernode started') resolve({ url: o.url as string, peerId: o.peerId as string }) })
    proc.once('exit', (code) => reject(new Error(`joey-supernode exited with ${String(code)}: ${tail.text}`)))
  })
  const timeout = sleep(20_000).then(() => { throw new Error(`joey-supernode did not start: ${tail.text}`) })
  const m = manage(proc, tail)
  try {
    const info = await Promise.race([started, timeout])
    return { ...m, ...info }
  } catch (err) {
    await m.kill()
    throw err
  }
}

export interface AgentProc extends Proc {
  name: string
  socket: string
  dataRoot: string
  mirror: string
  /** Engine API request over the agent's socket. */
  request: (method: string, path: string) => Promise<{ status: number, body: string }>
  metrics: () => Promise<Record<string, number>>
  pull: (image: string, tag: string) => Promise<void>
}

export async function startAgent (dir: string, name: string, args: string[] = [], at: Placement = {}): Promise<AgentProc> {
  const dataRoot = join(dir, name)
  const socket = join(dataRoot, 'joeyd.sock')
  // The Engine API is a unix socket, reachable from any network namespace.
  const { proc, tail, lines } = spawnNode('bin/joeyd.js', ['--data-root', dataRoot, '-H', `unix://${socket}`, '--mirror', '127.0.0.1:0', '--p2p-listen', `/ip4/${at.host ?? '127.0.0.1'}/tcp/0`, '--log-level', 'info', ...args], at.wrap)
  let mirror = ''
  lines((o) => { if (o.msg === 'registry mirror listening') mirror = o.address as string })
  const m = manage(proc, tail)
  const client = (): Client => new Client('http://localhost', { socketPath: socket, headersTimeout: 0, bodyTimeout: 0 })
  const request = async (method: string, path: string): Promise<{ status: number, body: string }> => {
    const c = client()
    try {
      const res = await c.request({ method: method as 'GET', path })
      return { status: res.statusCode, body: await res.body.text() }
    } finally {
      await c.close()
    }
  }
  const deadline = Date.now() + 60_000
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`joeyd ${name} exited: ${tail.text}`)
    try {
      const r = await request('GET', '/_ping')
      if (r.status === 200 && mirror !== '') break
    } catch {}
    if (Date.now() > deadline) { await m.kill(); throw new Error(`joeyd ${name} did not start: ${tail.text}`) }
    await sleep(100)
  }
  return {
    ...m,
    name,
    socket,
    dataRoot,
    mirror,
    request,
    metrics: async () => parseMetrics((await request('GET', '/metrics')).body),
    pull: async (image: string, tag: string) => {
      const r = await request('POST', `/images/create?fromImage=${encodeURIComponent(image)}&tag=${encodeURIComponent(tag)}`)
      if (r.status !== 200) throw new Error(`pull on ${name} failed: ${r.status} ${r.body}`)
      const err = r.body.split('\n').find(l => l.includes('"errorDetail"'))
      if (err !== undefined) throw new Error(`pull on ${name} failed: ${err}`)
    }
  }
}

/** Prometheus text → { 'name{labels}': value }. */
export function parseMetrics (text: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue
    const i = line.lastIndexOf(' ')
    out[line.slice(0, i)] = Number(line.slice(i + 1))
  }
  return out
}

export async function supernodeMetrics (url: string): Promise<Record<string, number>> {
  const res = await fetch(`${url}/metrics`)
  return parseMetrics(await res.text())
}

export interface OriginEnv {
  dir: string
  registry: TestRegistry
  /** Counting proxy in front of the registry: the origin as agents see it. */
  proxy: CountingProxy
  image: FixtureImage
  /** Sum of the image's blob sizes. */
  imageBytes: number
  /** Processes to kill on cleanup. */
  procs: Proc[]
  /** Kills every tracked process, stops the origin, removes the temp dir. */
  cleanup: () => Promise<void>
}

/**
 * What every cluster test starts from: a temp dir, a real registry holding a large
 * image at `<repo>:v1`, and a counting proxy in front of it.
 */
export async function startOrigin (name: string, repo: string, imageOptions: { layerBytes: number, layers?: number }): Promise<OriginEnv> {
  const dir = await mkdtemp(join(tmpdir(), `joey-${name}-`))
  const registry = await startRegistry()
  const image = await largeImage(imageOptions)
  await registry.push(repo, 'v1', image)
  const proxy = await startProxy(registry.url)
  const procs: Proc[] = []
  return {
    dir,
    registry,
    proxy,
    image,
    imageBytes: image.blobs().reduce((n, b) => n + b.size, 0),
    procs,
    cleanup: async () => {
      await Promise.all(procs.map(async p => { await p.kill() }))
      await proxy.stop()
      await registry.stop()
      await rm(dir, { recursive: true, force: true })
    }
  }
}
