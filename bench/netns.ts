/**
 * Emulated cluster network for benchmarks: one network namespace per host, joined by veth
 * pairs to a bridge that lives in a namespace of its own, with each link shaped by tc htb on
 * both ends (the host's end shapes its upload, the bridge's end its download). Nothing is
 * changed in the root namespace: links are created inside the namespaces, and processes run
 * in a host with `ip netns exec`.
 *
 * Measured on the 2-core machine this was built on: htb held its caps within 1 %; a burst
 * under 64 KiB made the kernel segment GSO packets in software and burned CPU; without a
 * class of their own, ACKs queued behind a host's upload and throttled its downloads. There
 * is no netem here, so links have no added latency.
 */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'

/** Every namespace a run creates starts with this and the creating process's pid. */
const NS_PREFIX = 'joeyb'
/** Per-link burst: at least 64 KiB so GSO packets pass whole (see above). */
const BURST = '128k'
/** IPv4 + TCP headers up to 127 bytes: pure ACKs and other small packets go first. */
const SMALL_PACKET_MATCH = ['match', 'ip', 'protocol', '6', '0xff', 'match', 'u16', '0x0000', '0xff80', 'at', '2']
/**
 * Ethernet frame bytes per TCP payload byte for full-sized segments (1514 for 1448 with
 * timestamps): a link shaped to `rate × WIRE_PER_PAYLOAD` carries `rate` of payload.
 */
export const WIRE_PER_PAYLOAD = 1514 / 1448

export interface HostSpec {
  name: string
  /** Upload cap of the host's link, bytes/s of TCP payload (0: unshaped). */
  up: number
  /** Download cap, bytes/s of TCP payload (0: unshaped). */
  down: number
}

export interface NetHost extends HostSpec {
  ns: string
  addr: string
  /** The host's link end in the bridge namespace. */
  port: string
  /** Command prefix that runs a program inside this host. */
  wrap: string[]
}

export interface LinkBytes {
  /** Bytes the host sent (tc counter of its eth0, whole frames). */
  up: number
  /** Bytes sent to the host (tc counter of its bridge port). */
  down: number
}

export interface Topology {
  prefix: string
  hosts: Map<string, NetHost>
  host: (name: string) => NetHost
  /** tc byte counters of every host's link. */
  counters: () => Promise<Map<string, LinkBytes>>
  /** Records a process to SIGKILL should the bench be interrupted before teardown. */
  track: (pid: number) => void
  /** Removes every namespace of this topology; safe to call more than once. */
  destroy: () => Promise<void>
}

interface Result { code: number | null, stdout: string, stderr: string }

async function run (cmd: string, args: string[], input?: string): Promise<Result> {
  return await new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    p.stdout?.setEncoding('utf8').on('data', (s: string) => { stdout += s })
    p.stderr?.setEncoding('utf8').on('data', (s: string) => { stderr += s })
    p.on('error', (err) => resolve({ code: -1, stdout, stderr: String(err) }))
    p.on('close', (code) => resolve({ code, stdout, stderr }))
    if (input !== undefined) p.stdin?.end(input)
  })
}

async function must (cmd: string, args: string[], input?: string): Promise<string> {
  const r = await run(cmd, args, input)
  if (r.code !== 0) throw new Error(`${cmd} ${args.slice(0, 4).join(' ')} … exited ${String(r.code)}: ${r.stderr.trim().slice(0, 800)}`)
  return r.stdout
}

/** Namespaces of runs whose process is gone (an interrupted or killed run). */
async function staleNamespaces (): Promise<string[]> {
  const out = (await run('ip', ['netns', 'list'])).stdout
  const stale: string[] = []
  for (const line of out.split('\n')) {
    const name = line.split(' ')[0] ?? ''
    const m = new RegExp(`^${NS_PREFIX}(\\d+)[a-z]`).exec(name)
    if (m !== null && !existsSync(`/proc/${m[1] ?? ''}`)) stale.push(name)
  }
  return stale
}

/** Names of this process's namespaces that still exist, for checks after a run. */
export async function leftoverNamespaces (): Promise<string[]> {
  const out = (await run('ip', ['netns', 'list'])).stdout
  return out.split('\n').map(l => l.split(' ')[0] ?? '').filter(n => n.startsWith(`${NS_PREFIX}${process.pid}`))
}

let availability: Promise<{ ok: boolean, why: string }> | undefined

/**
 * Whether this machine can build the topology: root, iproute2, namespaces, veth, bridge, htb.
 * Builds and removes a two-host topology once; the answer is cached.
 */
export async function netnsAvailable (): Promise<{ ok: boolean, why: string }> {
  availability ??= (async () => {
    if (process.getuid?.() !== 0) return { ok: false, why: 'not root' }
    for (const bin of ['ip', 'tc']) {
      if ((await run(bin, ['-V'])).code !== 0) return { ok: false, why: `${bin} (iproute2) is missing` }
    }
    let topo: Topology | undefined
    try {
      topo = await createTopology([{ name: 'a', up: 1024 * 1024, down: 1024 * 1024 }, { name: 'b', up: 1024 * 1024, down: 1024 * 1024 }])
      await topo.counters()
      return { ok: true, why: 'network namespaces, veth, bridge and tc htb work' }
    } catch (err) {
      return { ok: false, why: (err as Error).message }
    } finally {
      await topo?.destroy()
    }
  })()
  return await availability
}

/** htb on `dev`: one capped class, small packets first, a fair queue per class where the kernel has sfq. */
function htbBatch (dev: string, rate: number, sfq: boolean): string {
  const wire = Math.round(rate * WIRE_PER_PAYLOAD * 8)
  // The small-packet class is guaranteed a sliver and may borrow up to the whole link;
  // prio 0 hands it spare tokens before bulk, so ACKs never wait behind a full upload.
  const small = Math.max(64_000, Math.round(wire / 50))
  const lines = [
    `qdisc add dev ${dev} root handle 1: htb default 20`,
    `class add dev ${dev} parent 1: classid 1:1 htb rate ${wire}bit ceil ${wire}bit burst ${BURST} cburst ${BURST}`,
    `class add dev ${dev} parent 1:1 classid 1:10 htb rate ${small}bit ceil ${wire}bit prio 0 burst ${BURST} cburst ${BURST} quantum 65536`,
    `class add dev ${dev} parent 1:1 classid 1:20 htb rate ${wire - small}bit ceil ${wire}bit prio 1 burst ${BURST} cburst ${BURST} quantum 65536`,
    `filter add dev ${dev} parent 1: protocol ip prio 1 u32 ${SMALL_PACKET_MATCH.join(' ')} flowid 1:10`
  ]
  // Many flows share a bulk class (a seed's children): sfq keeps one from starving the rest.
  if (sfq) lines.push(`qdisc add dev ${dev} parent 1:20 handle 20: sfq perturb 10`)
  return lines.join('\n') + '\n'
}

let sfqKnown: boolean | undefined

async function hasSfq (ns: string): Promise<boolean> {
  if (sfqKnown !== undefined) return sfqKnown
  const r = await run('tc', ['-n', ns, 'qdisc', 'add', 'dev', 'lo', 'root', 'sfq'])
  sfqKnown = r.code === 0
  if (sfqKnown) await run('tc', ['-n', ns, 'qdisc', 'del', 'dev', 'lo', 'root'])
  return sfqKnown
}

const live = new Map<string, { namespaces: string[], pids: Set<number> }>()
let handlersInstalled = false

/**
 * Teardown for exit and signals: tracked processes are killed at once, and the namespaces
 * are deleted by a detached shell, which finishes even if this process is killed right after
 * (a wrapper such as tsx may follow the signal with SIGKILL).
 */
function teardownAll (): void {
  const names: string[] = []
  for (const [prefix, t] of live) {
    for (const pid of t.pids) { try { process.kill(pid, 'SIGKILL') } catch {} }
    names.push(...t.namespaces)
    live.delete(prefix)
  }
  if (names.length === 0) return
  // Whatever still runs inside goes too: a host process started but not yet tracked (it is
  // tracked once it answers) would outlive its deleted namespace.
  const script = 'for n in "$@"; do for p in $(ip netns pids "$n"); do kill -9 "$p"; done; ip netns del "$n"; done'
  const child = spawn('sh', ['-c', script, 'sh', ...names], { detached: true, stdio: 'ignore' })
  child.unref()
}

function installHandlers (): void {
  if (handlersInstalled) return
  handlersInstalled = true
  process.on('exit', teardownAll)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      teardownAll()
      // Re-raised with our listener gone, the signal ends the process as it would have.
      process.kill(process.pid, sig)
    })
  }
}

/** Kills every process running in namespace `ns` (ip netns del does not stop them). */
async function killInside (ns: string): Promise<void> {
  for (const pid of (await run('ip', ['netns', 'pids', ns])).stdout.split('\n').filter(l => /^\d+$/.test(l))) {
    try { process.kill(Number(pid), 'SIGKILL') } catch {}
  }
}

let seq = 0

/**
 * Builds the topology: a bridge namespace and one namespace per host, addresses 10.213.x.y/16.
 * On failure, whatever was created is removed before the error is thrown.
 */
export async function createTopology (specs: HostSpec[]): Promise<Topology> {
  for (const ns of await staleNamespaces()) {
    // A run killed outright leaves its hosts' processes running inside: they go first.
    await killInside(ns)
    await run('ip', ['netns', 'del', ns])
  }
  if (specs.length > 250 * 200) throw new Error('too many hosts')
  installHandlers()
  // The letter after the pid keeps stale-namespace detection from reading a sequence number as part of the pid.
  const prefix = `${NS_PREFIX}${process.pid}x${seq++}`
  const state = { namespaces: [] as string[], pids: new Set<number>() }
  live.set(prefix, state)
  const bridgeNs = `${prefix}-br`
  const hosts = new Map<string, NetHost>()
  specs.forEach((s, i) => {
    const ns = `${prefix}-${s.name}`
    hosts.set(s.name, { ...s, ns, addr: `10.213.${Math.floor(i / 250)}.${(i % 250) + 1}`, port: `p${i}`, wrap: ['ip', 'netns', 'exec', ns] })
  })
  const destroy = async (): Promise<void> => {
    for (const pid of state.pids) { try { process.kill(pid, 'SIGKILL') } catch {} }
    state.pids.clear()
    for (const ns of state.namespaces) await killInside(ns)
    // The bridge namespace goes last: deleting it takes the bridge ends of the veth pairs along.
    await Promise.all(state.namespaces.filter(n => n !== bridgeNs).map(async ns => await run('ip', ['netns', 'del', ns])))
    if (state.namespaces.includes(bridgeNs)) await run('ip', ['netns', 'del', bridgeNs])
    state.namespaces = []
    live.delete(prefix)
  }
  try {
    for (const ns of [bridgeNs, ...[...hosts.values()].map(h => h.ns)]) {
      await must('ip', ['netns', 'add', ns])
      state.namespaces.push(ns)
    }
    const br = ['link add br0 type bridge', 'link set br0 up', 'link set lo up']
    for (const h of hosts.values()) {
      br.push(`link add ${h.port} type veth peer name eth0 netns ${h.ns}`, `link set ${h.port} master br0`, `link set ${h.port} up`)
    }
    await must('ip', ['-n', bridgeNs, '-batch', '-'], br.join('\n') + '\n')
    const sfq = await hasSfq(bridgeNs)
    await Promise.all([...hosts.values()].map(async (h) => {
      await must('ip', ['-n', h.ns, '-batch', '-'], `link set lo up\naddr add ${h.addr}/16 dev eth0\nlink set eth0 up\n`)
      if (h.up > 0) await must('tc', ['-n', h.ns, '-batch', '-'], htbBatch('eth0', h.up, sfq))
    }))
    const down = [...hosts.values()].filter(h => h.down > 0).map(h => htbBatch(h.port, h.down, sfq)).join('')
    if (down !== '') await must('tc', ['-n', bridgeNs, '-batch', '-'], down)
  } catch (err) {
    await destroy()
    throw err
  }
  const rootBytes = async (ns: string, dev: string): Promise<number> => {
    const out = await must('tc', ['-n', ns, '-s', '-j', 'qdisc', 'show', 'dev', dev])
    const list = JSON.parse(out) as Array<{ root?: boolean, bytes?: number }>
    return list.find(q => q.root === true)?.bytes ?? 0
  }
  return {
    prefix,
    hosts,
    host: (name) => {
      const h = hosts.get(name)
      if (h === undefined) throw new Error(`no host ${name} in ${prefix}`)
      return h
    },
    counters: async () => {
      const out = new Map<string, LinkBytes>()
      await Promise.all([...hosts.values()].map(async (h) => {
        out.set(h.name, { up: await rootBytes(h.ns, 'eth0'), down: await rootBytes(bridgeNs, h.port) })
      }))
      return out
    },
    track: (pid) => { state.pids.add(pid) },
    destroy
  }
}
