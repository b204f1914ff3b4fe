/**
 * containerd pulling the large image through joeyd's registry mirror vs straight from the
 * registry, in one run.
 *
 * - Warm: joeyd already holds the blobs. containerd (its own root, state and socket, CRI off)
 *   pulls with `ctr images pull` — fetch and unpack — and with `ctr content fetch` (the
 *   transfer alone), alternating a hosts.toml whose host is joeyd's mirror with one that
 *   goes straight to the registry. Between pulls the image and its content are removed, so
 *   every pull moves every byte (checked). CPU of joeyd, containerd and ctr beside it.
 * - Cold: a joeyd with an empty content store; time to the first body byte and to the last
 *   of the layer blob, GET through the mirror vs GET from the registry.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Client, request } from 'undici'
import { pieceSizeFor } from '../../src/common/index.js'
import { freePort } from '../../test/agent/daemon.js'
import { startContainerd, type TestContainerd } from '../../test/fixtures/containerd.js'
import { largeImage, type FixtureBlob, type FixtureImage } from '../../test/fixtures/images.js'
import { startRegistry, type TestRegistry } from '../../test/fixtures/registry.js'
import { MiB, enginePull, median, peakRssBytes, startJoeyd, type BenchOptions, type CaseResult, type Daemon, type Metric } from '../lib.js'

const TARGET_WARM = 1.10
const MIRROR_READY_MS = 20_000
/** USER_HZ of /proc/<pid>/stat: 100 on x86 and arm Linux. */
const TICKS_PER_SECOND = 100

type Way = 'joey' | 'direct'
type Mode = 'pull' | 'fetch'

interface Sample { way: Way, mode: Mode, ms: number, joeydCpu: number, containerdCpu: number, ctrCpu: number }

/** CPU seconds (user + system) a process has used; with `children`, those of its reaped children. */
async function cpuOf (pid: number | 'self', children = false): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  // Fields after the command name, which may hold spaces: utime is the 12th, cutime the 14th.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number)
  const at = children ? 13 : 11
  return ((f[at] ?? 0) + (f[at + 1] ?? 0)) / TICKS_PER_SECOND
}

/** Resets a process's peak RSS (VmHWM) to its current RSS, so the next peak is one phase's. */
async function resetPeakRss (pid: number): Promise<void> {
  await writeFile(`/proc/${pid}/clear_refs`, '5')
}

/** joeyd's counters: blob bytes its mirror sent, and blob bytes it fetched from origin registries. */
async function joeydBytes (socket: string): Promise<{ served: number, origin: number }> {
  const c = new Client('http://localhost', { socketPath: socket })
  let text: string
  try {
    text = await (await c.request({ path: '/metrics', method: 'GET' })).body.text()
  } finally {
    await c.close()
  }
  const counter = (name: string): number => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)?.[1] ?? 0)
  return { served: counter('joeyd_mirror_blob_bytes_total'), origin: counter('joeyd_origin_bytes_total') }
}

/** hosts.toml for `host`: straight to it over plain HTTP, or through a mirror first. */
async function writeHosts (hostsDir: string, host: string, mirror?: string): Promise<void> {
  await mkdir(join(hostsDir, host), { recursive: true })
  const lines = [`server = "http://${host}"`]
  if (mirror !== undefined) lines.push('', `[host."http://${mirror}"]`, '  capabilities = ["pull", "resolve"]')
  await writeFile(join(hostsDir, host, 'hosts.toml'), lines.join('\n') + '\n')
}

/** Removes the image and waits for GC; throws unless containerd holds no content and no snapshot. */
async function clear (c: TestContainerd, ref: string): Promise<void> {
  await c.ctr(['images', 'rm', '--sync', ref]).catch(() => {})
  const content = (await c.ctr(['content', 'ls', '-q'])).stdout.trim()
  const snapshots = (await c.ctr(['snapshots', 'ls'])).stdout.trim().split('\n').slice(1).filter(Boolean)
  if (content !== '' || snapshots.length > 0) throw new Error(`containerd still holds content or snapshots: ${content} ${snapshots.join(', ')}`)
}

/** Bytes of content containerd holds, from `ctr content ls` (digest, size, age, labels). */
async function contentBytes (c: TestContainerd): Promise<number> {
  const rows = (await c.ctr(['content', 'ls'])).stdout.trim().split('\n').slice(1)
  return rows.reduce((n, row) => n + parseSize(row.split(/\s+/)[1] ?? '0'), 0)
}

/** ctr prints sizes in IEC units with one decimal ("64.0MiB", "1.2kB"). */
function parseSize (s: string): number {
  const m = /^([\d.]+)\s*([kKMG]i?B|B)?$/.exec(s)
  if (m === null) return 0
  const unit = m[2] ?? 'B'
  const mult = unit.startsWith('G') ? 1024 ** 3 : unit.startsWith('M') ? MiB : unit.toLowerCase().startsWith('k') ? 1024 : 1
  return Number(m[1]) * mult
}

/** The image's largest blob: its layer. */
function layer (image: FixtureImage): FixtureBlob {
  return image.blobs().reduce((a, b) => (b.size > a.size ? b : a))
}

interface ColdSample { way: Way, ttfbMs: number, totalMs: number }

/** GETs `url` and times the first body byte and the last; checks the length. */
async function timedGet (url: string, size: number, way: Way): Promise<ColdSample> {
  const t0 = performance.now()
  const res = await request(url, { headersTimeout: 0, bodyTimeout: 0 })
  if (res.statusCode !== 200) throw new Error(`GET ${url}: ${res.statusCode} ${await res.body.text()}`)
  let first = 0
  let n = 0
  for await (const chunk of res.body) {
    if (n === 0) first = performance.now()
    n += (chunk as Buffer).length
  }
  const end = performance.now()
  if (n !== size) throw new Error(`GET ${url}: ${n} bytes, want ${size}`)
  return { way, ttfbMs: first - t0, totalMs: end - t0 }
}

async function startMirror (root: string): Promise<{ daemon: Daemon, socket: string, mirror: string }> {
  const socket = join(root, 'joeyd.sock')
  const mirror = `127.0.0.1:${await freePort()}`
  const daemon = await startJoeyd(['--data-root', root, '-H', `unix://${socket}`, '--mirror', mirror, '--log-level', 'warn'], socket)
  // joeyd opens the Engine API before the mirror's listener.
  const deadline = Date.now() + MIRROR_READY_MS
  for (;;) {
    try {
      const res = await request(`http://${mirror}/v2/`)
      await res.body.dump()
      if (res.statusCode === 200) break
    } catch {}
    if (Date.now() > deadline) { await daemon.stop(); throw new Error(`joeyd's mirror did not answer on ${mirror}`) }
    await sleep(50)
  }
  return { daemon, socket, mirror }
}

interface WarmResult {
  samples: Sample[]
  /** containerd's first pull through joeyd, which fetched every blob from the registry as it served it. */
  coldPullMs: number
  /** joeyd's peak RSS during the cold pull, and during the warm pulls. */
  coldPullRss: number
  rss: number
}

async function warmCase (dir: string, registry: TestRegistry, image: FixtureImage, rounds: number, repo: string): Promise<WarmResult> {
  const ref = `${registry.host}/${repo}:v1`
  const containerd = await startContainerd(join(dir, 'containerd'))
  const joey = await startMirror(join(dir, 'joeyd-warm'))
  try {
    const hosts: Record<Way, string> = { joey: join(dir, 'hosts-joey'), direct: join(dir, 'hosts-direct') }
    await writeHosts(hosts.joey, registry.host, joey.mirror)
    await writeHosts(hosts.direct, registry.host)
    const blobBytes = image.blobs().reduce((n, b) => n + b.size, 0)

    /** One pull from empty, checked: containerd ends up with every byte, and the mirror sent all of it or none. */
    const pull = async (way: Way, mode: Mode): Promise<Sample> => {
      await clear(containerd, ref)
      const bytes = await joeydBytes(joey.socket)
      const before = await Promise.all([cpuOf(joey.daemon.pid), cpuOf(containerd.pid), cpuOf('self', true)])
      const t = performance.now()
      await containerd.ctr([...(mode === 'pull' ? ['images', 'pull'] : ['content', 'fetch']), '--hosts-dir', hosts[way], ref], { timeoutMs: 300_000 })
      const ms = performance.now() - t
      const after = await Promise.all([cpuOf(joey.daemon.pid), cpuOf(containerd.pid), cpuOf('self', true)])
      const held = await contentBytes(containerd)
      // ctr rounds sizes to one decimal.
      if (held < blobBytes * 0.99) throw new Error(`${way} ${mode}: containerd holds ${held} bytes, want ${blobBytes}`)
      const sent = (await joeydBytes(joey.socket)).served - bytes.served
      if (way === 'joey' && sent < blobBytes) throw new Error(`${way} ${mode}: the mirror served ${sent} bytes, want ${blobBytes}`)
      if (way === 'direct' && sent !== 0) throw new Error(`direct ${mode}: the mirror served ${sent} bytes`)
      return { way, mode, ms, joeydCpu: after[0] - before[0], containerdCpu: after[1] - before[1], ctrCpu: after[2] - before[2] }
    }

    // containerd's first pull is slower (its snapshotter and metadata warm up): a direct
    // pull that is not counted goes first. Then containerd pulls through joeyd with joeyd's
    // store empty, which warms joeyd.
    await pull('direct', 'pull')
    await resetPeakRss(joey.daemon.pid)
    const coldPullMs = (await pull('joey', 'pull')).ms
    const coldPullRss = await peakRssBytes(joey.daemon.pid)
    // joeyd still commits what it served after the client has its last byte; an Engine API
    // pull of the image joins that transfer and returns once every blob is in the store, so
    // no warm pull meets the commit still running.
    await enginePull(joey.socket, `${registry.host}/${repo}`, 'v1')
    await resetPeakRss(joey.daemon.pid)
    const origin = (await joeydBytes(joey.socket)).origin
    if (origin < blobBytes) throw new Error(`joeyd fetched ${origin} bytes from the registry, want ${blobBytes}`)

    const samples: Sample[] = []
    for (let r = 0; r < rounds; r++) {
      const order: Way[] = r % 2 === 0 ? ['joey', 'direct'] : ['direct', 'joey']
      for (const mode of ['pull', 'fetch'] as Mode[]) {
        for (const way of order) samples.push(await pull(way, mode))
      }
    }
    const refetched = (await joeydBytes(joey.socket)).origin - origin
    if (refetched !== 0) throw new Error(`joeyd was not warm: it fetched ${refetched} bytes from the registry during the warm pulls`)
    await clear(containerd, ref)
    return { samples, coldPullMs, coldPullRss, rss: await peakRssBytes(joey.daemon.pid) }
  } finally {
    await joey.daemon.stop()
    await containerd.stop()
  }
}

async function coldCase (dir: string, registry: TestRegistry, image: FixtureImage, rounds: number, repo: string): Promise<{ samples: ColdSample[], rss: number }> {
  const blob = layer(image)
  const samples: ColdSample[] = []
  let rss = 0
  for (let r = 0; r < rounds; r++) {
    // A fresh data root: joeyd has nothing, so the blob comes from the registry through it.
    const root = join(dir, `joeyd-cold-${r}`)
    const joey = await startMirror(root)
    try {
      // As a client would, resolve the manifest first: joeyd's connection to the registry is
      // then open, and what is timed is the blob.
      const res = await request(`http://${joey.mirror}/v2/${repo}/manifests/v1?ns=${encodeURIComponent(registry.host)}`, { headers: { accept: image.root.mediaType } })
      await res.body.dump()
      if (res.statusCode !== 200) throw new Error(`manifest through joeyd: ${res.statusCode}`)
      await resetPeakRss(joey.daemon.pid)
      const order: Way[] = r % 2 === 0 ? ['joey', 'direct'] : ['direct', 'joey']
      for (const way of order) {
        const url = way === 'joey'
          ? `http://${joey.mirror}/v2/${repo}/blobs/${blob.digest}?ns=${encodeURIComponent(registry.host)}`
          : `${registry.url}/v2/${repo}/blobs/${blob.digest}`
        samples.push(await timedGet(url, blob.size, way))
      }
      rss = Math.max(rss, await peakRssBytes(joey.daemon.pid))
    } finally {
      await joey.daemon.stop()
      await rm(root, { recursive: true, force: true })
    }
  }
  return { samples, rss }
}

export async function run (opts: BenchOptions): Promise<CaseResult> {
  const layerBytes = opts.quick ? 64 * MiB : 256 * MiB
  const rounds = opts.quick ? 2 : 3
  const repo = 'bench/large'
  // Timings on a shared machine mean little without what else ran: the 1-minute load goes beside them.
  const loadBefore = loadavg()[0] as number
  const dir = await mkdtemp(join(tmpdir(), 'joey-bench-mirror-'))
  let registry: TestRegistry | undefined
  try {
    registry = await startRegistry()
    const image = await largeImage({ layerBytes })
    await registry.push(repo, 'v1', image)
    const size = image.blobs().reduce((n, b) => n + b.size, 0)
    const warm = await warmCase(dir, registry, image, rounds, repo)
    const cold = await coldCase(dir, registry, image, rounds, repo)

    const pick = (way: Way, mode: Mode): Sample[] => warm.samples.filter(s => s.way === way && s.mode === mode)
    const med = (xs: Sample[], f: (s: Sample) => number): number => median(xs.map(f))
    const metrics: Metric[] = []
    const notes: string[] = []
    const perMiB = (cpu: number): number => cpu * 1000 / (size / MiB)
    for (const mode of ['pull', 'fetch'] as Mode[]) {
      const j = pick('joey', mode)
      const d = pick('direct', mode)
      const ratio = med(j, s => s.ms) / med(d, s => s.ms)
      const label = mode === 'pull' ? 'ctr images pull' : 'ctr content fetch'
      metrics.push(
        { name: `warm ${label} via joeyd`, value: med(j, s => s.ms) / 1000, unit: 's' },
        { name: `warm ${label} direct`, value: med(d, s => s.ms) / 1000, unit: 's' },
        { name: `warm ${mode}: joeyd ÷ direct`, value: ratio, unit: '×', target: `≤ ${TARGET_WARM.toFixed(2)}`, ok: ratio <= TARGET_WARM },
        { name: `warm ${mode} throughput via joeyd`, value: size / MiB / (med(j, s => s.ms) / 1000), unit: 'MiB/s' },
        { name: `warm ${mode} throughput direct`, value: size / MiB / (med(d, s => s.ms) / 1000), unit: 'MiB/s' }
      )
      if (ratio <= TARGET_WARM) continue
      // What the gap is made of: the CPU joeyd adds on two shared cores, beside what containerd and ctr spend either way.
      const cpu = (f: (s: Sample) => number): string => `${med(j, f).toFixed(2)} s`
      notes.push(`warm ${mode} via joeyd took ${((med(j, s => s.ms) - med(d, s => s.ms)) / 1000).toFixed(2)} s longer than direct; joeyd used ${cpu(s => s.joeydCpu)} of CPU serving it ` +
        `(${perMiB(med(j, s => s.joeydCpu)).toFixed(1)} ms/MiB), containerd ${cpu(s => s.containerdCpu)} vs ${med(d, s => s.containerdCpu).toFixed(2)} s direct, ctr ${cpu(s => s.ctrCpu)} vs ${med(d, s => s.ctrCpu).toFixed(2)} s`)
    }
    const fetchJ = pick('joey', 'fetch')
    const fetchD = pick('direct', 'fetch')
    const pullJ = pick('joey', 'pull')
    const pullD = pick('direct', 'pull')
    metrics.push(
      { name: 'joeyd CPU per warm pull', value: med(pullJ, s => s.joeydCpu), unit: 's' },
      { name: 'containerd CPU per warm pull via joeyd', value: med(pullJ, s => s.containerdCpu), unit: 's' },
      { name: 'containerd CPU per warm pull direct', value: med(pullD, s => s.containerdCpu), unit: 's' },
      { name: 'joeyd CPU per warm fetch', value: med(fetchJ, s => s.joeydCpu), unit: 's' },
      { name: 'joeyd CPU per MiB served (warm)', value: perMiB(med(fetchJ, s => s.joeydCpu)), unit: 'ms' },
      { name: 'containerd CPU per warm fetch via joeyd', value: med(fetchJ, s => s.containerdCpu), unit: 's' },
      { name: 'containerd CPU per warm fetch direct', value: med(fetchD, s => s.containerdCpu), unit: 's' },
      { name: 'ctr CPU per warm fetch via joeyd', value: med(fetchJ, s => s.ctrCpu), unit: 's' },
      { name: 'ctr CPU per warm fetch direct', value: med(fetchD, s => s.ctrCpu), unit: 's' },
      { name: 'joeyd peak RSS (warm pulls)', value: warm.rss / MiB, unit: 'MiB' },
      { name: 'cold ctr images pull via joeyd', value: warm.coldPullMs / 1000, unit: 's' },
      { name: 'joeyd peak RSS (cold pull)', value: warm.coldPullRss / MiB, unit: 'MiB' }
    )
    const cj = cold.samples.filter(s => s.way === 'joey')
    const cd = cold.samples.filter(s => s.way === 'direct')
    const ttfbJ = median(cj.map(s => s.ttfbMs))
    const ttfbD = median(cd.map(s => s.ttfbMs))
    const totJ = median(cj.map(s => s.totalMs))
    const totD = median(cd.map(s => s.totalMs))
    metrics.push(
      { name: 'cold blob first byte via joeyd', value: ttfbJ, unit: 'ms' },
      { name: 'cold blob first byte direct', value: ttfbD, unit: 'ms' },
      { name: 'cold blob total via joeyd', value: totJ / 1000, unit: 's' },
      { name: 'cold blob total direct', value: totD / 1000, unit: 's' },
      { name: 'cold blob total: joeyd ÷ direct', value: totJ / totD, unit: '×' },
      { name: 'joeyd peak RSS (cold blob GET)', value: cold.rss / MiB, unit: 'MiB' }
    )
    // No target for the cold case: joeyd has to fetch, verify and store what it serves. What a
    // client should be able to expect is stated beside the numbers.
    const piece = pieceSizeFor(layer(image).size)
    notes.push(`cold blob (no target): first byte ${ttfbJ.toFixed(0)} ms vs ${ttfbD.toFixed(0)} ms direct, total ${(totJ / totD).toFixed(2)}× direct; ` +
      `a reasonable aim is the first byte within one ${(piece / MiB).toFixed(0)} MiB piece of the direct fetch and a total ≤ 1.25× direct`)
    notes.push(`1-minute load average ${loadBefore.toFixed(1)} at the start, ${(loadavg()[0] as number).toFixed(1)} at the end`)
    return {
      name: 'mirror',
      description: `containerd ${rounds} alternating round(s) through joeyd's mirror vs straight from one local registry, ${(size / MiB).toFixed(0)} MiB image, medians; cold: GET of the ${(size / MiB).toFixed(0)} MiB layer with joeyd's store empty`,
      metrics,
      notes,
      data: { warm: warm.samples, cold: cold.samples }
    }
  } finally {
    await registry?.stop()
    await rm(dir, { recursive: true, force: true })
  }
}
