// A real runtime stack for container tests: Debian's docker-registry with the fixture images
// pushed, a content store, the image service pulling from it, a snapshotter and the
// container service with real runc. Everything started here is torn down by cleanup().
import { execFile, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { silentLogger } from '../../src/common/index.js'
import { createContentStore, type ContentStore } from '../../src/content/index.js'
import { createRegistryClient, type RegistryClient } from '../../src/distribution/index.js'
import { createDirectTransfer } from '../../src/transfer/index.js'
import { createImageService, type ImageService } from '../../src/image/index.js'
import { createSnapshotter, detectSnapshotter, unmount, type Snapshotter, type SnapshotterKind } from '../../src/unpack/index.js'
import { createContainerService, type ContainerService, type ContainerServiceInit, type LogEntry, type SnapshotCollector } from '../../src/runtime/index.js'
import type { Service } from '../../src/common/index.js'
import { busyboxImage, multiLayerImage } from '../fixtures/images.js'
import { startRegistry, type TestRegistry } from '../fixtures/registry.js'

const run = promisify(execFile)
export const logger = silentLogger()

export function findRunc (): string | undefined {
  for (const p of ['/usr/sbin/runc', '/usr/bin/runc', '/usr/local/sbin/runc', '/usr/local/bin/runc']) if (existsSync(p)) return p
  const r = spawnSync('sh', ['-c', 'command -v runc'], { encoding: 'utf8' })
  return r.status === 0 && r.stdout.trim() !== '' ? r.stdout.trim() : undefined
}

/** Why container tests cannot run here, or undefined when they can. */
export function skipReason (): string | undefined {
  if (process.getuid?.() !== 0) return 'container tests need root (runc, mounts, cgroups)'
  if (findRunc() === undefined) return 'runc is not installed (apt-get install runc)'
  if (!existsSync('/bin/busybox')) return 'busybox-static is not installed (apt-get install busybox-static)'
  return undefined
}

export type Containers = ContainerService & SnapshotCollector & Service

export interface RuntimeEnv {
  dir: string
  registry: TestRegistry
  store: ContentStore
  client: RegistryClient
  images: ImageService
  snapshotter: Snapshotter
  runcPath: string
  stateRoot: string
  containersRoot: string
  busybox: string
  multi: string
  /** A fresh service on the same root (what a joeyd restart does). */
  newService: (init?: Partial<ContainerServiceInit>) => Promise<Containers>
  cleanup: () => Promise<void>
}

export async function makeEnv (opts: { snapshotter?: SnapshotterKind } = {}): Promise<RuntimeEnv> {
  const dir = await mkdtemp(join(tmpdir(), 'joey-runtime-'))
  const services: Containers[] = []
  const runcPath = findRunc()!
  const stateRoot = join(dir, 'runc')
  const containersRoot = join(dir, 'containers')
  let registry: TestRegistry | undefined
  let store: ContentStore | undefined
  let client: RegistryClient | undefined

  const cleanup = async (): Promise<void> => {
    for (const s of services) await s.stop().catch(() => {})
    await killEverything(containersRoot, runcPath, stateRoot)
    await client?.close().catch(() => {})
    await store?.stop().catch(() => {})
    await registry?.stop().catch(() => {})
    // Only remove the tree when nothing is mounted under it: rm through a mount deletes its contents.
    const mounts = await readFile('/proc/self/mountinfo', 'utf8')
    if (!mounts.includes(dir)) await rm(dir, { recursive: true, force: true })
  }

  try {
    registry = await startRegistry()
    const busybox = await busyboxImage()
    const multi = await multiLayerImage()
    await registry.push('busybox', 'latest', busybox)
    await registry.push('multi', 'latest', multi)
    store = createContentStore({ root: join(dir, 'content') }, { logger })
    await store.start()
    client = createRegistryClient({ retries: 0, timeoutMs: 10_000 }, { logger })
    const transfer = createDirectTransfer({}, { logger, contentStore: store, registry: client })
    const images = createImageService({}, { logger, contentStore: store, registry: client, transfer })
    const busyboxRef = `${registry.host}/busybox:latest`
    const multiRef = `${registry.host}/multi:latest`
    await images.pull(busyboxRef)
    await images.pull(multiRef)
    const snapRoot = join(dir, 'snapshots')
    const kind = opts.snapshotter ?? await detectSnapshotter(snapRoot)
    const snapshotter = createSnapshotter(kind, { root: snapRoot }, { logger })
    const contentStore = store
    const newService = async (init: Partial<ContainerServiceInit> = {}): Promise<Containers> => {
      const s = createContainerService({ root: containersRoot, runtimePath: runcPath, stateRoot, ...init }, { logger, contentStore, images, snapshotter })
      await s.start()
      services.push(s)
      return s
    }
    return { dir, registry, store, client, images, snapshotter, runcPath, stateRoot, containersRoot, busybox: busyboxRef, multi: multiRef, newService, cleanup }
  } catch (err) {
    await cleanup()
    throw err
  }
}

/** Kills every shim and runc container under root and unmounts every rootfs, whatever state they are in. */
async function killEverything (containersRoot: string, runcPath: string, stateRoot: string): Promise<void> {
  let ids: string[] = []
  try {
    ids = (await readdir(containersRoot)).filter(x => /^[a-f0-9]{64}$/.test(x))
  } catch {}
  for (const id of ids) {
    try {
      const pid = Number((await readFile(join(containersRoot, id, 'shim.pid'), 'utf8')).trim())
      if (pid > 0) process.kill(pid, 'SIGKILL')
    } catch {}
    await run(runcPath, ['--root', stateRoot, 'kill', id, 'KILL']).catch(() => {})
    await run(runcPath, ['--root', stateRoot, 'delete', '--force', id]).catch(() => {})
    await unmount(join(containersRoot, id, 'rootfs')).catch(() => {})
  }
}

/** Everything an iterable of log entries yields, as text per stream. */
export async function collect (entries: AsyncIterable<LogEntry>): Promise<{ stdout: string, stderr: string, all: LogEntry[] }> {
  const all: LogEntry[] = []
  for await (const e of entries) all.push(e)
  return {
    stdout: Buffer.concat(all.filter(e => e.stream === 'stdout').map(e => e.line)).toString('utf8'),
    stderr: Buffer.concat(all.filter(e => e.stream === 'stderr').map(e => e.line)).toString('utf8'),
    all
  }
}

/** create + start + wait for exit; returns the exit code and the output. */
export async function runToExit (svc: ContainerService, opts: Parameters<ContainerService['create']>[0]): Promise<{ id: string, exitCode: number, stdout: string, stderr: string }> {
  const { id } = await svc.create(opts)
  const attached = await svc.attach(id)
  const output = collect(attached)
  // Waiting before starting, as docker run does: a short command may exit before start returns.
  const exited = svc.wait(id, { condition: 'next-exit' })
  await svc.start(id)
  const { exitCode } = await exited
  const out = await output
  return { id, exitCode, stdout: out.stdout, stderr: out.stderr }
}

/** Whether a process exists (and is not a zombie). */
export async function alive (pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]
    return state !== 'Z' && state !== 'X'
  } catch {
    return false
  }
}
