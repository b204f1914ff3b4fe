import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { EventEmitter, once } from 'node:events'
import { closeSync, openSync, watch, type FSWatcher } from 'node:fs'
import { access, chmod, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { cpus as osCpus, hostname as osHostname } from 'node:os'
import { join } from 'node:path'
import { createRequire } from 'node:module'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { JoeyError, isJoeyError, type Logger, type Service } from '../common/index.js'
import { chainIDs, mountAll, unmount, unpackImage, type Mount, type Snapshotter } from '../unpack/index.js'
import {
  CGROUP_PARENT, DEFAULT_PATH_ENV, DEFAULT_RUNTIME, DEFAULT_STATE_ROOT, FILES, INIT_CANDIDATES, INIT_PATH, KILL_WAIT_MS,
  LOST_EXIT_CODE, MAX_EARLY_OUTPUT, MAX_LOG_LINE, MAX_NOFILE, MIN_MEMORY, NOT_EXECUTABLE_EXIT_CODE, NOT_FOUND_EXIT_CODE,
  POLL_MS, START_TIMEOUT_MS, STOP_TIMEOUT_SEC, ZERO_TIME
} from './constants.js'
import { hasMountsUnder, hostFacts, isMountPoint, lxcfsMounts, type HostFacts } from './host.js'
import { createClock, LineSplitter } from './lines.js'
import { parseTime, readLog } from './logs.js'
import { generateName, newContainerId, normalizeName } from './names.js'
import { AsyncQueue } from './queue.js'
import { lookPath, resolveInRoot, resolveUser } from './rootfs.js'
import { Runc } from './runc.js'
import type { ShimConfig } from './shim.js'
import { defaultSeccompProfile } from './seccomp.js'
import { buildSpec, processSpec } from './spec.js'
import { loadRecords, saveRecord, type ContainerRecord } from './store.js'
import type {
  AttachOptions, ContainerInspect, ContainerService, ContainerServiceComponents, ContainerServiceInit, ContainerSummary,
  CreateOptions, CreateResult, ExecInspect, ExecOptions, ExecSession, ListOptions, LogEntry, LogsOptions, MountPoint,
  NetworkMode, RemoveOptions, SnapshotCollector, StopOptions, WaitOptions, WaitResult
} from './types.js'
import { checkEnv, hasEnv, humanDuration, mergeEnv, parseBind, parseSignal, processStartTime, quoteCommand } from './util.js'

interface Container {
  rec: ContainerRecord
  /** Bumped on every exit (and failed start): attach and wait watch it. */
  exitSeq: number
  execIds: Set<string>
  watcher?: FSWatcher
}

interface ExecRecord {
  id: string
  containerId: string
  opts: ExecOptions
  started: boolean
  running: boolean
  exitCode: number | null
  pid: number
  pidFile?: string
}

interface ExitInfo { exitCode: number, finishedAt: string, error?: string }

/**
 * Runs containers with runc, docker-style: create prepares a writable snapshot on the
 * image's layers; start hands the container to a detached shim (`runc run` under it) that
 * owns the output and records the exit; the service follows the shim's files, so it can be
 * restarted while containers keep running and picks them up again.
 */
export function createContainerService (init: ContainerServiceInit, components: ContainerServiceComponents): ContainerService & SnapshotCollector & Service {
  return new Containers(init, components)
}

function defaultShimCommand (): string[] {
  const here = fileURLToPath(import.meta.url)
  if (here.endsWith('.ts')) {
    // Running from sources: the shim needs tsx's loader, resolved from here so it works from any cwd.
    return [process.execPath, '--import', pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href, join(here, '..', 'shim.ts')]
  }
  return [process.execPath, join(here, '..', 'shim.js')]
}

function notFound (idOrName: string): JoeyError {
  return new JoeyError('ERR_NOT_FOUND', `No such container: ${idOrName}`, { detail: { container: idOrName } })
}

function notRunning (c: Container): JoeyError {
  return new JoeyError('ERR_FAILED_PRECONDITION', `Container ${c.rec.id} is not running`, { detail: { container: c.rec.id } })
}

class Containers implements ContainerService, SnapshotCollector {
  private readonly root: string
  private readonly runc: Runc
  private readonly stateRoot: string
  private readonly logger: Logger
  private readonly snapshotter: Snapshotter
  private readonly containers = new Map<string, Container>()
  private readonly names = new Map<string, string>()
  private readonly execs = new Map<string, ExecRecord>()
  private readonly locks = new Map<string, Promise<unknown>>()
  private readonly exiting = new Set<string>()
  private readonly events = new EventEmitter()
  private readonly shimCommand: string[]
  private readonly clock = createClock()
  private initPath: string | undefined
  private facts: HostFacts = { cgroupV2: false, swapAccounting: false, nofile: 1024 }
  private runtimeChecked: Promise<void> | undefined
  private poller: NodeJS.Timeout | undefined
  /** Creates between their unpack and their own snapshot: a collection waits for them. */
  private unpacking = 0
  private collecting: Promise<string[]> | undefined
  private started = false
  private stopped = false

  constructor (private readonly init: ContainerServiceInit, private readonly components: ContainerServiceComponents) {
    this.root = init.root
    this.stateRoot = init.stateRoot ?? DEFAULT_STATE_ROOT
    this.runc = new Runc(init.runtimePath ?? DEFAULT_RUNTIME, this.stateRoot)
    this.logger = components.logger.child({ component: 'runtime' })
    this.snapshotter = components.snapshotter
    this.shimCommand = init.shimCommand ?? defaultShimCommand()
    this.events.setMaxListeners(0)
  }

  // --- lifecycle ------------------------------------------------------------------------------

  private async startService (): Promise<void> {
    if (this.started) return
    await mkdir(this.root, { recursive: true, mode: 0o711 })
    await mkdir(this.stateRoot, { recursive: true, mode: 0o700 })
    this.facts = await hostFacts(MAX_NOFILE)
    this.initPath = await this.findInit()
    if (this.initPath === undefined) this.logger.warn('no static init binary found (install tini or catatonit): containers run without an init reaping zombies')

    const { records, broken } = await loadRecords(this.root)
    for (const id of broken) await this.removeBroken(id)
    this.containers.clear()
    this.names.clear()
    this.execs.clear()
    // Started before reconciling: an exit found now may auto-remove its container.
    this.started = true
    this.stopped = false
    for (const rec of records) {
      this.containers.set(rec.id, { rec, exitSeq: 0, execIds: new Set() })
      this.names.set(rec.name, rec.id)
    }
    for (const c of this.containers.values()) {
      try {
        await this.reconcile(c)
      } catch (err) {
        this.logger.error({ err, container: c.rec.id }, 'cannot reconcile container state')
      }
    }
    // Image removals and container removals interrupted by a crash left snapshots nobody uses.
    await this.collectSnapshots().catch(err => { this.logger.warn({ err }, 'snapshot collection at start failed') })
    this.poller = setInterval(() => { void this.pollRunning() }, POLL_MS)
    this.poller.unref()
    this.logger.info({ containers: this.containers.size, running: [...this.containers.values()].filter(c => c.rec.state.status === 'running').length }, 'container service started')
  }

  private async stopService (): Promise<void> {
    if (!this.started) return
    this.started = false
    this.stopped = true
    clearInterval(this.poller)
    for (const c of this.containers.values()) this.unwatch(c)
    this.events.emit('wake', '*')
    this.events.emit('stopped')
    await Promise.allSettled([...this.locks.values()])
  }

  private async findInit (): Promise<string | undefined> {
    const candidates = this.init.initPath !== undefined ? [this.init.initPath] : INIT_CANDIDATES
    for (const p of candidates) {
      try {
        await access(p)
        return p
      } catch {}
    }
    if (this.init.initPath !== undefined) {
      throw new JoeyError('ERR_INVALID_CONFIG', `init binary ${this.init.initPath} does not exist`, { detail: { initPath: this.init.initPath } })
    }
    return undefined
  }

  private async ensureRuntime (): Promise<void> {
    this.runtimeChecked ??= this.runc.version().then(v => { this.logger.debug({ runtime: v }, 'OCI runtime found') })
    try {
      await this.runtimeChecked
    } catch (err) {
      this.runtimeChecked = undefined
      throw err
    }
  }

  /** Brings a record loaded from disk in line with reality: the shim, its exit file, runc. */
  private async reconcile (c: Container): Promise<void> {
    const { rec } = c
    if (rec.state.status === 'removing') {
      await this.destroy(c)
      return
    }
    if (rec.state.status !== 'running') {
      // A crash between launching the shim and recording it leaves a container nobody tracks.
      if (await access(join(this.stateRoot, rec.id)).then(() => true, () => false)) {
        this.logger.warn({ container: rec.id }, 'killing a runc container the record does not know as running')
        await this.runc.kill(rec.id, 'SIGKILL').catch(() => false)
        await this.runc.delete(rec.id)
      }
      return
    }
    const exit = await this.readExit(c)
    if (exit !== undefined) {
      await this.applyExit(c, exit)
      return
    }
    if (await this.shimAlive(rec)) {
      const st = await this.runc.state(rec.id).catch(() => undefined)
      if (st !== undefined && st.pid > 0) rec.state.pid = st.pid
      this.watch(c)
      this.logger.info({ container: rec.id, pid: rec.state.pid }, 'container still running')
      return
    }
    await this.checkExit(c)
  }

  private async removeBroken (id: string): Promise<void> {
    const dir = join(this.root, id)
    this.logger.warn({ container: id }, 'removing the leftovers of an interrupted create')
    try {
      await this.runc.delete(id).catch(() => {})
      await unmount(join(dir, FILES.rootfs)).catch(() => {})
      await this.snapshotter.remove(`container-${id}`).catch(() => {})
      if (await hasMountsUnder(dir)) throw new Error('still mounted')
      await rm(dir, { recursive: true, force: true })
    } catch (err) {
      this.logger.error({ err, container: id }, 'cannot remove a broken container directory')
    }
  }

  // --- lookup and locking ---------------------------------------------------------------------

  async resolve (idOrName: string): Promise<string> {
    return this.lookup(idOrName).rec.id
  }

  private lookup (idOrName: string): Container {
    if (typeof idOrName !== 'string' || idOrName === '') throw notFound(String(idOrName))
    const byId = this.containers.get(idOrName)
    if (byId !== undefined) return byId
    const name = idOrName.startsWith('/') ? idOrName.slice(1) : idOrName
    const named = this.names.get(name)
    if (named !== undefined) {
      const c = this.containers.get(named)
      if (c !== undefined) return c
    }
    if (/^[a-f0-9]+$/.test(idOrName)) {
      const matches = [...this.containers.keys()].filter(id => id.startsWith(idOrName))
      if (matches.length === 1) return this.containers.get(matches[0]!)!
      if (matches.length > 1) {
        throw new JoeyError('ERR_INVALID_ARGUMENT', `multiple containers found with provided prefix: ${idOrName}`, { detail: { container: idOrName } })
      }
    }
    throw notFound(idOrName)
  }

  private async withLock<T> (id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve()
    const run = prev.then(fn, fn)
    const tail = run.catch(() => {})
    this.locks.set(id, tail)
    try {
      return await run
    } finally {
      if (this.locks.get(id) === tail) this.locks.delete(id)
    }
  }

  private dir (c: Container | string): string {
    return join(this.root, typeof c === 'string' ? c : c.rec.id)
  }

  private logPath (c: Container): string {
    return join(this.dir(c), `${c.rec.id}-json.log`)
  }

  private checkStarted (): void {
    if (!this.started) throw new JoeyError('ERR_UNAVAILABLE', 'the container service is not running')
  }

  // --- create ---------------------------------------------------------------------------------

  async create (opts: CreateOptions): Promise<CreateResult> {
    this.checkStarted()
    const v = this.validateCreate(opts)
    const detail = await this.components.images.inspect(opts.image)
    const imageConfig = (detail.config.config ?? {}) as Record<string, any>
    const warnings: string[] = []

    const imageEntrypoint = Array.isArray(imageConfig.Entrypoint) ? imageConfig.Entrypoint as string[] : null
    const imageCmd = Array.isArray(imageConfig.Cmd) ? imageConfig.Cmd as string[] : null
    // docker's merge rule: a non-empty --entrypoint drops the image's Cmd; an empty one keeps it.
    let entrypoint: string[] | null
    let cmd: string[] | null
    if (opts.entrypoint !== undefined && opts.entrypoint.length > 0) {
      entrypoint = opts.entrypoint
      cmd = opts.cmd ?? null
    } else {
      entrypoint = opts.entrypoint !== undefined ? [] : imageEntrypoint
      cmd = opts.cmd !== undefined && opts.cmd.length > 0 ? opts.cmd : imageCmd
    }
    const argv = [...(entrypoint ?? []), ...(cmd ?? [])]
    if (argv.length === 0) throw new JoeyError('ERR_INVALID_ARGUMENT', 'No command specified', { detail: { image: opts.image } })

    const imageEnv = Array.isArray(imageConfig.Env) ? (imageConfig.Env as unknown[]).filter((e): e is string => typeof e === 'string') : []
    const env = mergeEnv(imageEnv, v.env)
    const workingDir = opts.workdir ?? (typeof imageConfig.WorkingDir === 'string' && imageConfig.WorkingDir !== '' ? imageConfig.WorkingDir : '/')
    const user = opts.user ?? (typeof imageConfig.User === 'string' ? imageConfig.User : '')
    const network: NetworkMode = opts.network ?? this.init.defaultNetwork ?? 'none'
    const id = newContainerId()
    const hostname = opts.hostname ?? (network === 'host' ? osHostname() : id.slice(0, 12))

    if (v.memory > 0 && !this.facts.swapAccounting) {
      warnings.push('Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.')
    }
    if (this.initPath === undefined) warnings.push('No init binary found (install tini or catatonit): the container runs without an init process.')

    let name: string
    if (opts.name !== undefined) {
      name = normalizeName(opts.name)
      const owner = this.names.get(name)
      if (owner !== undefined) {
        throw new JoeyError('ERR_ALREADY_EXISTS', `Conflict. The container name "/${name}" is already in use by container "${owner}". You have to remove (or rename) that container to be able to reuse that name.`, { detail: { name, container: owner } })
      }
    } else {
      name = generateName(n => this.names.has(n))
    }
    // Reserved before the first await, so two creates cannot take the same name.
    this.names.set(name, id)

    const dir = this.dir(id)
    const snapshotKey = `container-${id}`
    let prepared = false
    try {
      const diffIds = detail.rootfs.diff_ids
      if (diffIds.length !== detail.layers.length) {
        throw new JoeyError('ERR_MANIFEST_INVALID', `image ${opts.image} has ${detail.layers.length} layers but ${diffIds.length} diff IDs`, { detail: { image: opts.image } })
      }
      const store = this.components.contentStore
      // A freshly committed chain is unreferenced until the container's snapshot sits on it.
      const chainId = await this.holdingSnapshots(async () => {
        const { chainId } = await unpackImage(detail.layers.map((l, i) => ({
          stream: async () => await store.read(l.digest, opts.signal !== undefined ? { signal: opts.signal } : {}),
          mediaType: l.mediaType,
          diffId: diffIds[i]!
        })), this.snapshotter, { logger: this.logger, ...(opts.signal !== undefined ? { signal: opts.signal } : {}) })
        await mkdir(dir, { mode: 0o710 })
        await this.snapshotter.prepare(snapshotKey, chainId === '' ? undefined : chainId, { labels: { 'joey.container': id } })
        prepared = true
        return chainId
      })

      const rec: ContainerRecord = {
        version: 1,
        id,
        name,
        created: this.clock(),
        image: opts.image,
        imageId: detail.id,
        chainId,
        snapshotKey,
        snapshotter: this.snapshotter.kind,
        path: argv[0]!,
        args: argv.slice(1),
        config: {
          hostname,
          user,
          env,
          cmd,
          entrypoint,
          workingDir,
          labels: { ...(imageConfig.Labels as Record<string, string> | undefined), ...opts.labels },
          ...(typeof imageConfig.StopSignal === 'string' ? { stopSignal: imageConfig.StopSignal } : {})
        },
        hostConfig: {
          binds: opts.binds ?? [],
          network,
          readOnly: opts.readOnly === true,
          memory: v.memory,
          cpus: v.cpus,
          pidsLimit: v.pidsLimit,
          autoRemove: opts.autoRemove === true
        },
        state: { status: 'created', pid: 0, exitCode: 0, error: '', startedAt: ZERO_TIME, finishedAt: ZERO_TIME, oomKilled: false },
        restartCount: 0
      }
      const c: Container = { rec, exitSeq: 0, execIds: new Set() }

      // Refuse an unknown user now rather than at start; the rootfs is mounted only for the check.
      const rootfs = await this.mountRootfs(c)
      try {
        await resolveUser(rootfs, user)
      } finally {
        await this.unmountRootfs(c.rec.id)
      }
      await this.writeEtcFiles(c)
      await writeFile(this.logPath(c), '', { mode: 0o640, flag: 'a' })
      await saveRecord(this.root, rec)
      this.containers.set(id, c)
      this.logger.info({ container: id, name, image: opts.image }, 'container created')
      return { id, name, warnings }
    } catch (err) {
      this.names.delete(name)
      await this.unmountRootfs(id).catch(() => {})
      if (prepared) await this.snapshotter.remove(snapshotKey).catch(() => {})
      if (!(await hasMountsUnder(dir))) await rm(dir, { recursive: true, force: true }).catch(() => {})
      throw err
    }
  }

  /** Runs `fn` with snapshot collection held off; a collection in progress finishes first. */
  private async holdingSnapshots<T> (fn: () => Promise<T>): Promise<T> {
    while (this.collecting !== undefined) await this.collecting.catch(() => {})
    this.unpacking++
    try {
      return await fn()
    } finally {
      if (--this.unpacking === 0) this.events.emit('unpacked')
    }
  }

  // --- snapshot collection --------------------------------------------------------------------

  /**
   * Removes the committed layer snapshots that no image and no container uses. What images
   * use is their top chain ID (its ancestors follow); a container's own active snapshot keeps
   * its whole chain. Runs one at a time, after the creates that are unpacking right now.
   */
  async collectSnapshots (): Promise<string[]> {
    while (this.collecting !== undefined) await this.collecting.catch(() => {})
    const run = this.collect()
    this.collecting = run
    try {
      return await run
    } finally {
      if (this.collecting === run) this.collecting = undefined
    }
  }

  private async collect (): Promise<string[]> {
    while (this.unpacking > 0) await once(this.events, 'unpacked')
    const keep = new Set<string>()
    // A failure to list images throws: without knowing what they use, nothing may go.
    for (const summary of await this.components.images.list()) {
      let diffIds: string[]
      try {
        diffIds = (await this.components.images.inspect(summary.id)).rootfs.diff_ids
      } catch (err) {
        if (isJoeyError(err, 'ERR_IMAGE_NOT_FOUND')) continue
        throw err
      }
      const chain = chainIDs(diffIds)
      if (chain.length > 0) keep.add(chain[chain.length - 1]!)
    }
    const removed = await this.snapshotter.prune(keep)
    if (removed.length > 0) this.logger.info({ snapshots: removed.length }, 'removed layer snapshots no image or container uses')
    return removed
  }

  private validateCreate (opts: CreateOptions): { env: string[], memory: number, cpus: number, pidsLimit: number } {
    if (opts === null || typeof opts !== 'object') throw new JoeyError('ERR_INVALID_ARGUMENT', 'create options must be an object')
    if (typeof opts.image !== 'string' || opts.image === '') throw new JoeyError('ERR_INVALID_ARGUMENT', 'an image is required')
    const strings = (v: unknown, field: string): void => {
      if (v !== undefined && (!Array.isArray(v) || !v.every(s => typeof s === 'string'))) {
        throw new JoeyError('ERR_INVALID_ARGUMENT', `${field} must be an array of strings`, { detail: { field } })
      }
    }
    strings(opts.cmd, 'cmd')
    strings(opts.entrypoint, 'entrypoint')
    strings(opts.binds, 'binds')
    const env = checkEnv(opts.env)
    for (const b of opts.binds ?? []) parseBind(b)
    if (opts.name !== undefined) normalizeName(opts.name)
    if (opts.workdir !== undefined && (typeof opts.workdir !== 'string' || !opts.workdir.startsWith('/'))) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `the working directory '${String(opts.workdir)}' is invalid, it needs to be an absolute path`, { detail: { workdir: opts.workdir } })
    }
    if (opts.user !== undefined && (typeof opts.user !== 'string' || opts.user.split(':').length > 2 || /[\s\0]/.test(opts.user))) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid user "${String(opts.user)}": expected user[:group]`, { detail: { user: opts.user } })
    }
    if (opts.hostname !== undefined && (typeof opts.hostname !== 'string' || !/^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,62})$/.test(opts.hostname))) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid hostname "${String(opts.hostname)}"`, { detail: { hostname: opts.hostname } })
    }
    if (opts.network !== undefined && opts.network !== 'none' && opts.network !== 'host') {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `network "${String(opts.network)}" is not supported: use none or host`, { detail: { network: opts.network } })
    }
    if (opts.tty !== undefined && opts.tty !== false) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', 'TTY containers are not supported: output goes to the json-file log', { detail: { tty: opts.tty } })
    }
    if (opts.labels !== undefined && (typeof opts.labels !== 'object' || opts.labels === null || !Object.values(opts.labels).every(x => typeof x === 'string'))) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', 'labels must map strings to strings')
    }
    const memory = opts.memory ?? 0
    if (!Number.isSafeInteger(memory) || memory < 0 || (memory > 0 && memory < MIN_MEMORY)) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `Minimum memory limit allowed is 6MB (got ${String(opts.memory)})`, { detail: { memory: opts.memory } })
    }
    const cpus = opts.cpus ?? 0
    const hostCpus = osCpus().length
    if (typeof cpus !== 'number' || !Number.isFinite(cpus) || cpus < 0 || (cpus > 0 && cpus < 0.01) || cpus > hostCpus) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `Range of CPUs is from 0.01 to ${hostCpus}.00, as there are only ${hostCpus} CPUs available (got ${String(opts.cpus)})`, { detail: { cpus: opts.cpus } })
    }
    const pidsLimit = opts.pidsLimit ?? 0
    if (!Number.isSafeInteger(pidsLimit) || pidsLimit < -1) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid pids limit ${String(opts.pidsLimit)}: a positive number, or 0 / -1 for unlimited`, { detail: { pidsLimit: opts.pidsLimit } })
    }
    return { env, memory, cpus, pidsLimit: Math.max(0, pidsLimit) }
  }

  /** /etc/hostname, /etc/hosts and /etc/resolv.conf the container gets bind-mounted, like docker's. */
  private async writeEtcFiles (c: Container): Promise<void> {
    const dir = this.dir(c)
    const { hostname } = c.rec.config
    await writeFile(join(dir, FILES.hostname), `${hostname}\n`)
    let hosts: string
    if (c.rec.hostConfig.network === 'host') {
      hosts = await readFile('/etc/hosts', 'utf8').catch(() => '127.0.0.1\tlocalhost\n')
    } else {
      hosts = `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.0.1\t${hostname}\n`
    }
    await writeFile(join(dir, FILES.hosts), hosts)
    const resolv = await readFile('/etc/resolv.conf', 'utf8').catch(() => '')
    await writeFile(join(dir, FILES.resolvConf), resolv)
    for (const f of [FILES.hostname, FILES.hosts, FILES.resolvConf]) await chmod(join(dir, f), 0o644)
  }

  // --- rootfs ---------------------------------------------------------------------------------

  private async snapshotMounts (c: Container): Promise<Mount[]> {
    return await this.snapshotter.mounts(c.rec.snapshotKey)
  }

  /** A single bind (copy snapshotter, or an image without layers) is used in place; overlays are mounted. */
  private async mountRootfs (c: Container): Promise<string> {
    const mounts = await this.snapshotMounts(c)
    if (mounts.length === 1 && mounts[0]!.type === 'bind') return mounts[0]!.source
    const target = join(this.dir(c), FILES.rootfs)
    await mkdir(target, { recursive: true, mode: 0o755 })
    if (!(await isMountPoint(target))) await mountAll(mounts, target)
    return target
  }

  private async unmountRootfs (id: string): Promise<void> {
    const target = join(this.dir(id), FILES.rootfs)
    for (let i = 0; i < 10 && await isMountPoint(target); i++) await unmount(target)
  }

  // --- start ----------------------------------------------------------------------------------

  /**
   * Service.start() when called without an id (the service lifecycle and ContainerService
   * share the name), otherwise starts a container.
   */
  async start (idOrName?: string): Promise<void> {
    if (idOrName === undefined) return await this.startService()
    this.checkStarted()
    const c = this.lookup(idOrName)
    await this.withLock(c.rec.id, async () => {
      if (!this.containers.has(c.rec.id)) throw notFound(idOrName)
      const { rec } = c
      if (rec.state.status === 'running') return
      if (rec.state.status === 'removing' || rec.state.status === 'dead') {
        throw new JoeyError('ERR_FAILED_PRECONDITION', `container ${rec.id} is marked for removal and cannot be started`, { detail: { container: rec.id } })
      }
      await this.ensureRuntime()
      const rootfs = await this.mountRootfs(c)
      try {
        await this.startLocked(c, rootfs)
      } catch (err) {
        if ((rec.state.status as string) !== 'running') {
          await this.unmountRootfs(rec.id).catch(e => this.logger.warn({ err: e, container: rec.id }, 'cannot unmount rootfs'))
        }
        throw err
      }
    })
  }

  private async startLocked (c: Container, rootfs: string): Promise<void> {
    const { rec } = c
    const dir = this.dir(c)
    const user = await resolveUser(rootfs, rec.config.user)
    let env = [...rec.config.env]
    if (!hasEnv(env, 'PATH')) env.unshift(DEFAULT_PATH_ENV)
    env = mergeEnv(env, [`HOSTNAME=${rec.config.hostname}`])
    if (!hasEnv(env, 'HOME')) env.push(`HOME=${user.home}`)

    // The image's filesystem is writable here even for a read-only container.
    const cwdHost = await resolveInRoot(rootfs, rec.config.workingDir)
    await mkdir(cwdHost, { recursive: true, mode: 0o755 }).catch(() => {})

    const pathEnv = env.find(e => e.startsWith('PATH='))?.slice(5) ?? ''
    const found = await lookPath(rootfs, rec.path, pathEnv, rec.config.workingDir)
    if (!found.ok) {
      const exitCode = found.reason === 'not-found' ? NOT_FOUND_EXIT_CODE : NOT_EXECUTABLE_EXIT_CODE
      rec.state.exitCode = exitCode
      rec.state.error = found.message
      await saveRecord(this.root, rec)
      this.bumpExit(c)
      throw new JoeyError('ERR_INVALID_ARGUMENT', `failed to start container ${rec.id}: ${found.message}`, { detail: { container: rec.id, exitCode } })
    }

    const binds = rec.hostConfig.binds.map(parseBind)
    for (const b of binds) {
      try {
        await stat(b.source)
      } catch {
        await mkdir(b.source, { recursive: true, mode: 0o755 })
      }
    }
    const argv = [rec.path, ...rec.args]
    const spec = buildSpec({
      rootfs,
      readOnly: rec.hostConfig.readOnly,
      args: this.initPath !== undefined ? [INIT_PATH, '--', ...argv] : argv,
      env,
      cwd: rec.config.workingDir,
      user,
      hostname: rec.config.hostname,
      network: rec.hostConfig.network,
      etc: { hostname: join(dir, FILES.hostname), hosts: join(dir, FILES.hosts), resolvConf: join(dir, FILES.resolvConf) },
      binds,
      ...(this.initPath !== undefined ? { init: { source: this.initPath, target: INIT_PATH } } : {}),
      ...(rec.hostConfig.memory > 0 ? { memory: rec.hostConfig.memory, limitSwap: this.facts.swapAccounting } : {}),
      ...(rec.hostConfig.cpus > 0 ? { cpus: rec.hostConfig.cpus } : {}),
      ...(rec.hostConfig.pidsLimit > 0 ? { pidsLimit: rec.hostConfig.pidsLimit } : {}),
      cgroupsPath: `/${this.init.cgroupParent ?? CGROUP_PARENT}/${rec.id}`,
      cgroupNamespace: this.facts.cgroupV2,
      nofile: this.facts.nofile,
      extraMounts: await lxcfsMounts(this.init.lxcfsRoot ?? '/var/lib/lxcfs'),
      ...(this.init.seccomp !== false ? { seccomp: defaultSeccompProfile() } : {})
    })
    await writeFile(join(dir, FILES.spec), JSON.stringify(spec, null, 1), { mode: 0o600 })

    // A runc container left by a crash under the same id would make `runc run` fail.
    if (await access(join(this.stateRoot, rec.id)).then(() => true, () => false)) await this.runc.delete(rec.id)
    await rm(join(dir, FILES.exit), { force: true })

    const started = await this.launchShim(c)
    rec.state = {
      status: 'running',
      pid: started.pid,
      exitCode: 0,
      error: '',
      startedAt: this.clock(),
      finishedAt: rec.state.finishedAt,
      oomKilled: false,
      shimPid: started.shimPid,
      ...(started.shimStartTime !== undefined ? { shimStartTime: started.shimStartTime } : {})
    }
    await saveRecord(this.root, rec)
    this.watch(c)
    this.logger.info({ container: rec.id, pid: started.pid }, 'container started')
    // A command that exits at once may have finished before the watch was set up.
    void this.checkExit(c)
  }

  private async launchShim (c: Container): Promise<{ pid: number, shimPid: number, shimStartTime?: string }> {
    const dir = this.dir(c)
    const config: ShimConfig = {
      id: c.rec.id,
      bundle: dir,
      runtime: this.runc.path,
      stateRoot: this.stateRoot,
      logPath: this.logPath(c),
      exitPath: join(dir, FILES.exit),
      pidFile: join(dir, FILES.pid),
      runtimeLog: join(dir, 'runc.log'),
      maxLine: MAX_LOG_LINE,
      maxEarly: MAX_EARLY_OUTPUT
    }
    const configPath = join(dir, FILES.shimConfig)
    await writeFile(configPath, JSON.stringify(config), { mode: 0o600 })
    const errFd = openSync(join(dir, FILES.shimLog), 'a', 0o600)
    let child: ChildProcess
    try {
      const [cmd, ...args] = this.shimCommand
      child = spawn(cmd!, [...args, configPath], { cwd: dir, detached: true, stdio: ['ignore', 'pipe', errFd] })
    } finally {
      closeSync(errFd)
    }

    const reply = await new Promise<Record<string, any>>((resolve, reject) => {
      let text = ''
      const timer = setTimeout(() => {
        fail(new JoeyError('ERR_UNAVAILABLE', `container ${c.rec.id} did not start within ${START_TIMEOUT_MS / 1000}s`, { detail: { container: c.rec.id } }))
      }, START_TIMEOUT_MS)
      const done = (): void => {
        clearTimeout(timer)
        child.stdout!.removeAllListeners('data')
        child.removeListener('exit', onExit)
      }
      const fail = (err: Error): void => {
        done()
        reject(err)
      }
      const onExit = (code: number | null, signal: string | null): void => {
        void readFile(join(dir, FILES.shimLog), 'utf8').catch(() => '').then(log => {
          fail(new JoeyError('ERR_INTERNAL', `the container shim exited (${code ?? signal}) before the container started: ${log.trim().split('\n').slice(-5).join(' | ')}`, { detail: { container: c.rec.id } }))
        })
      }
      child.on('error', err => fail(new JoeyError('ERR_UNAVAILABLE', `cannot run the container shim ${this.shimCommand[0]}: ${err.message}`, { cause: err })))
      child.on('exit', onExit)
      child.stdout!.on('data', (chunk: Buffer) => {
        text += chunk.toString('utf8')
        const nl = text.indexOf('\n')
        if (nl === -1) return
        done()
        try {
          resolve(JSON.parse(text.slice(0, nl)) as Record<string, any>)
        } catch (err) {
          reject(new JoeyError('ERR_INTERNAL', `the container shim sent a malformed status: ${text.slice(0, 200)}`, { cause: err }))
        }
      })
    }).catch(async err => {
      if (child.pid !== undefined) {
        try { process.kill(child.pid, 'SIGKILL') } catch {}
      }
      await this.runc.delete(c.rec.id).catch(() => {})
      throw err
    })
    child.stdout!.destroy()
    child.unref()

    if (reply.status !== 'running') {
      // The shim writes the exit file and leaves; it holds nothing after a failed start.
      const exitCode = typeof reply.exitCode === 'number' ? reply.exitCode : 1
      const error = typeof reply.error === 'string' ? reply.error : 'unknown error'
      c.rec.state.exitCode = exitCode
      c.rec.state.error = error
      await saveRecord(this.root, c.rec)
      await new Promise(resolve => { if (child.exitCode !== null || child.signalCode !== null) resolve(undefined); else child.once('exit', resolve) })
      await rm(join(dir, FILES.exit), { force: true })
      this.bumpExit(c)
      throw new JoeyError('ERR_FAILED_PRECONDITION', `OCI runtime failed to start container ${c.rec.id}: ${error}`, { detail: { container: c.rec.id, exitCode } })
    }
    const shimPid = child.pid!
    await writeFile(join(dir, FILES.shimPid), `${shimPid}\n`)
    child.once('exit', () => { void this.checkExit(c) })
    const shimStartTime = await processStartTime(shimPid)
    return { pid: reply.pid as number, shimPid, ...(shimStartTime !== undefined ? { shimStartTime } : {}) }
  }

  // --- exits ----------------------------------------------------------------------------------

  private watch (c: Container): void {
    if (c.watcher !== undefined) return
    try {
      c.watcher = watch(this.dir(c), { persistent: false }, (_event, file) => {
        if (file === FILES.exit) void this.checkExit(c)
      })
      c.watcher.on('error', () => this.unwatch(c))
    } catch (err) {
      this.logger.debug({ err, container: c.rec.id }, 'cannot watch the container directory; polling')
    }
  }

  private unwatch (c: Container): void {
    c.watcher?.close()
    c.watcher = undefined
  }

  private async pollRunning (): Promise<void> {
    for (const c of this.containers.values()) {
      if (c.rec.state.status === 'running') await this.checkExit(c).catch(err => this.logger.warn({ err, container: c.rec.id }, 'exit check failed'))
    }
  }

  private async readExit (c: Container): Promise<ExitInfo | undefined> {
    try {
      const v = JSON.parse(await readFile(join(this.dir(c), FILES.exit), 'utf8')) as Partial<ExitInfo>
      if (typeof v.exitCode !== 'number') return undefined
      return { exitCode: v.exitCode, finishedAt: typeof v.finishedAt === 'string' ? v.finishedAt : new Date().toISOString(), ...(typeof v.error === 'string' ? { error: v.error } : {}) }
    } catch {
      return undefined
    }
  }

  private async shimAlive (rec: ContainerRecord): Promise<boolean> {
    const pid = rec.state.shimPid
    if (pid === undefined) return false
    const st = await processStartTime(pid)
    return st !== undefined && (rec.state.shimStartTime === undefined || st === rec.state.shimStartTime)
  }

  /** Records the exit once the shim wrote it, or a lost exit when the shim died without writing it. */
  private async checkExit (c: Container): Promise<void> {
    const id = c.rec.id
    if (c.rec.state.status !== 'running' || this.exiting.has(id) || this.stopped) return
    this.exiting.add(id)
    try {
      let info = await this.readExit(c)
      if (info === undefined) {
        if (await this.shimAlive(c.rec)) return
        info = await this.readExit(c)
      }
      if (info === undefined) {
        this.logger.error({ container: id, shimPid: c.rec.state.shimPid }, 'the container shim died without recording an exit; killing the container')
        await this.runc.kill(id, 'SIGKILL').catch(() => false)
        await this.runc.delete(id).catch(() => {})
        info = { exitCode: LOST_EXIT_CODE, finishedAt: new Date().toISOString(), error: 'container shim exited unexpectedly' }
      }
      if (c.rec.state.status === 'running') await this.applyExit(c, info)
    } finally {
      this.exiting.delete(id)
    }
  }

  private async applyExit (c: Container, info: ExitInfo): Promise<void> {
    const { rec } = c
    rec.state = {
      status: 'exited',
      pid: 0,
      exitCode: info.exitCode,
      error: info.error ?? '',
      startedAt: rec.state.startedAt,
      // The shim stamps the exit, joeyd the start: a command quicker than joeyd's bookkeeping
      // must not look as if it finished before it started.
      finishedAt: Date.parse(info.finishedAt) < Date.parse(rec.state.startedAt) ? rec.state.startedAt : info.finishedAt,
      oomKilled: false
    }
    await saveRecord(this.root, rec)
    this.unwatch(c)
    await rm(join(this.dir(c), FILES.exit), { force: true })
    await this.runc.delete(rec.id).catch(err => this.logger.warn({ err, container: rec.id }, 'runc delete failed'))
    await this.unmountRootfs(c.rec.id).catch(err => this.logger.warn({ err, container: rec.id }, 'cannot unmount rootfs'))
    this.logger.info({ container: rec.id, exitCode: info.exitCode }, 'container exited')
    this.bumpExit(c)
    if (rec.hostConfig.autoRemove) {
      // Not awaited: the exit may be handled inside start()'s lock, which remove() takes too.
      void this.remove(rec.id, { force: true }).catch(err => {
        if (!isJoeyError(err, 'ERR_NOT_FOUND')) this.logger.error({ err, container: rec.id }, 'auto-remove failed')
      })
    }
  }

  private bumpExit (c: Container): void {
    c.exitSeq++
    this.events.emit('exit', c.rec.id)
    this.events.emit('wake', c.rec.id)
  }

  // --- stop, kill, wait, restart, remove ------------------------------------------------------

  async kill (idOrName: string, signal?: string | number): Promise<void> {
    this.checkStarted()
    const c = this.lookup(idOrName)
    const sig = parseSignal(signal, 'SIGKILL')
    if (c.rec.state.status !== 'running') throw notRunning(c)
    if (!(await this.runc.kill(c.rec.id, String(sig)))) {
      await this.checkExit(c)
      if (c.rec.state.status !== 'running') throw notRunning(c)
    }
  }

  /** Service.stop() without an id (containers keep running), otherwise stops a container. */
  async stop (idOrName?: string, opts: StopOptions = {}): Promise<void> {
    if (idOrName === undefined) {
      await this.stopService()
      return
    }
    this.checkStarted()
    const c = this.lookup(idOrName)
    if (c.rec.state.status !== 'running') return
    const timeoutSec = opts.timeoutSec ?? STOP_TIMEOUT_SEC
    if (typeof timeoutSec !== 'number' || !Number.isFinite(timeoutSec)) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid stop timeout ${String(opts.timeoutSec)}`)
    }
    const sig = parseSignal(opts.signal ?? c.rec.config.stopSignal, 'SIGTERM')
    const seq = c.exitSeq
    const exited = this.waitExit(c, seq)
    try {
      await this.runc.kill(c.rec.id, String(sig))
      if (timeoutSec < 0) {
        await exited.promise
        return
      }
      if (await exited.within(timeoutSec * 1000)) return
      this.logger.info({ container: c.rec.id, timeoutSec }, 'container did not stop in time; sending SIGKILL')
      await this.killAndWait(c, seq)
    } finally {
      exited.cancel()
    }
  }

  /** SIGKILL, then wait for the shim to record the exit; a wedged shim is killed and the exit recorded as lost. */
  private async killAndWait (c: Container, seq = c.exitSeq): Promise<void> {
    const exited = this.waitExit(c, seq)
    try {
      await this.runc.kill(c.rec.id, 'SIGKILL')
      if (await exited.within(KILL_WAIT_MS)) return
      this.logger.error({ container: c.rec.id }, 'container did not exit after SIGKILL; killing its shim')
      const pid = c.rec.state.shimPid
      if (pid !== undefined && await this.shimAlive(c.rec)) {
        try { process.kill(pid, 'SIGKILL') } catch {}
      }
      await new Promise(resolve => setTimeout(resolve, 100))
      await this.checkExit(c)
    } finally {
      exited.cancel()
    }
  }

  /** A promise for the exit after `seq`, resolved also if the container goes away. */
  private waitExit (c: Container, seq: number): { promise: Promise<void>, within: (ms: number) => Promise<boolean>, cancel: () => void } {
    let resolve!: () => void
    const promise = new Promise<void>(r => { resolve = r })
    const onEvent = (id: string): void => {
      if ((id === c.rec.id || id === '*') && (c.exitSeq > seq || !this.containers.has(c.rec.id) || this.stopped)) resolve()
    }
    this.events.on('wake', onEvent)
    if (c.exitSeq > seq) resolve()
    const cancel = (): void => { this.events.off('wake', onEvent) }
    void promise.then(cancel)
    return {
      promise,
      cancel,
      within: async ms => {
        let timer: NodeJS.Timeout | undefined
        const timedOut = await Promise.race([
          promise.then(() => false),
          new Promise<boolean>(r => { timer = setTimeout(() => r(true), ms) })
        ])
        clearTimeout(timer)
        return !timedOut
      }
    }
  }

  async wait (idOrName: string, opts: WaitOptions = {}): Promise<WaitResult> {
    this.checkStarted()
    const c = this.lookup(idOrName)
    const condition = opts.condition ?? 'not-running'
    if (condition !== 'not-running' && condition !== 'next-exit' && condition !== 'removed') {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid wait condition "${String(condition)}": not-running, next-exit or removed`)
    }
    const result = (): WaitResult => ({ exitCode: c.rec.state.exitCode, ...(c.rec.state.error !== '' ? { error: c.rec.state.error } : {}) })
    if (condition === 'not-running' && c.rec.state.status !== 'running') return result()
    const seq = c.exitSeq
    const id = c.rec.id
    return await new Promise<WaitResult>((resolve, reject) => {
      const cleanup = (): void => {
        this.events.off('exit', onExit)
        this.events.off('removed', onRemoved)
        this.events.off('stopped', onStopped)
        opts.signal?.removeEventListener('abort', onAbort)
      }
      const onExit = (eid: string): void => {
        if (eid !== id || condition === 'removed' || c.exitSeq <= seq) return
        cleanup()
        resolve(result())
      }
      const onRemoved = (eid: string): void => {
        if (eid !== id) return
        cleanup()
        resolve(result())
      }
      const onStopped = (): void => {
        cleanup()
        reject(new JoeyError('ERR_UNAVAILABLE', 'the container service stopped while waiting'))
      }
      const onAbort = (): void => {
        cleanup()
        reject(new JoeyError('ERR_ABORTED', 'wait aborted', { cause: opts.signal?.reason }))
      }
      if (opts.signal?.aborted === true) {
        onAbort()
        return
      }
      this.events.on('exit', onExit)
      this.events.on('removed', onRemoved)
      this.events.on('stopped', onStopped)
      opts.signal?.addEventListener('abort', onAbort)
    })
  }

  async restart (idOrName: string, opts: StopOptions = {}): Promise<void> {
    await this.stop(idOrName, opts)
    await this.start(idOrName)
  }

  async remove (idOrName: string, opts: RemoveOptions = {}): Promise<void> {
    this.checkStarted()
    const c = this.lookup(idOrName)
    await this.withLock(c.rec.id, async () => {
      if (!this.containers.has(c.rec.id)) return
      if (c.rec.state.status === 'running') {
        if (opts.force !== true) {
          throw new JoeyError('ERR_IN_USE', `cannot remove container "/${c.rec.name}": container is running: stop the container before removing or force remove`, { detail: { container: c.rec.id } })
        }
        await this.killAndWait(c)
      }
      c.rec.state.status = 'removing'
      await saveRecord(this.root, c.rec)
      await this.destroy(c)
    })
    // The image may be gone already (rmi --force); then its layers went with the container.
    await this.collectSnapshots().catch(err => { this.logger.warn({ err }, 'snapshot collection after container removal failed') })
  }

  private async destroy (c: Container): Promise<void> {
    const { rec } = c
    const dir = this.dir(c)
    this.unwatch(c)
    await this.runc.delete(rec.id).catch(err => this.logger.warn({ err, container: rec.id }, 'runc delete failed'))
    await this.unmountRootfs(c.rec.id)
    try {
      await this.snapshotter.remove(rec.snapshotKey)
    } catch (err) {
      if (!isJoeyError(err, 'ERR_NOT_FOUND')) throw err
    }
    // Never rm -rf through a mount: it would delete whatever is mounted there.
    if (await hasMountsUnder(dir)) {
      throw new JoeyError('ERR_FAILED_PRECONDITION', `cannot remove container ${rec.id}: something is still mounted under ${dir}`, { detail: { container: rec.id } })
    }
    await rm(dir, { recursive: true, force: true })
    this.containers.delete(rec.id)
    if (this.names.get(rec.name) === rec.id) this.names.delete(rec.name)
    for (const e of c.execIds) this.execs.delete(e)
    this.logger.info({ container: rec.id }, 'container removed')
    this.events.emit('removed', rec.id)
    this.events.emit('wake', rec.id)
  }

  // --- list and inspect -----------------------------------------------------------------------

  async list (opts: ListOptions = {}): Promise<ContainerSummary[]> {
    this.checkStarted()
    const now = Date.now()
    return [...this.containers.values()]
      .filter(c => opts.all === true || c.rec.state.status === 'running')
      .sort((a, b) => b.rec.created.localeCompare(a.rec.created))
      .map(({ rec }) => ({
        Id: rec.id,
        Names: [`/${rec.name}`],
        Image: rec.image,
        ImageID: rec.imageId,
        Command: quoteCommand([rec.path, ...rec.args]),
        Created: Math.floor(Date.parse(rec.created) / 1000),
        State: rec.state.status,
        Status: statusText(rec, now),
        Labels: { ...rec.config.labels },
        HostConfig: { NetworkMode: rec.hostConfig.network },
        Mounts: mountPoints(rec)
      }))
  }

  async inspect (idOrName: string): Promise<ContainerInspect> {
    this.checkStarted()
    const c = this.lookup(idOrName)
    const { rec } = c
    const dir = this.dir(c)
    const running = rec.state.status === 'running'
    const cpus = rec.hostConfig.cpus
    return {
      Id: rec.id,
      Created: rec.created,
      Path: rec.path,
      Args: [...rec.args],
      State: {
        Status: rec.state.status,
        Running: running,
        Paused: false,
        Restarting: false,
        OOMKilled: rec.state.oomKilled,
        Dead: rec.state.status === 'dead',
        Pid: running ? rec.state.pid : 0,
        ExitCode: rec.state.exitCode,
        Error: rec.state.error,
        StartedAt: rec.state.startedAt,
        FinishedAt: rec.state.finishedAt
      },
      Image: rec.imageId,
      ResolvConfPath: join(dir, FILES.resolvConf),
      HostnamePath: join(dir, FILES.hostname),
      HostsPath: join(dir, FILES.hosts),
      LogPath: this.logPath(c),
      Name: `/${rec.name}`,
      RestartCount: rec.restartCount,
      Driver: rec.snapshotter,
      Platform: 'linux',
      ExecIDs: c.execIds.size > 0 ? [...c.execIds] : null,
      HostConfig: {
        Binds: rec.hostConfig.binds.length > 0 ? [...rec.hostConfig.binds] : null,
        NetworkMode: rec.hostConfig.network,
        AutoRemove: rec.hostConfig.autoRemove,
        ReadonlyRootfs: rec.hostConfig.readOnly,
        Memory: rec.hostConfig.memory,
        NanoCpus: Math.round(cpus * 1e9),
        CpuPeriod: 0,
        CpuQuota: 0,
        PidsLimit: rec.hostConfig.pidsLimit > 0 ? rec.hostConfig.pidsLimit : null,
        Init: true,
        LogConfig: { Type: 'json-file', Config: {} }
      },
      GraphDriver: { Name: rec.snapshotter, Data: { SnapshotKey: rec.snapshotKey, ChainID: rec.chainId } },
      Mounts: mountPoints(rec),
      Config: {
        Hostname: rec.config.hostname,
        User: rec.config.user,
        Env: [...rec.config.env],
        Cmd: rec.config.cmd !== null ? [...rec.config.cmd] : null,
        Entrypoint: rec.config.entrypoint !== null ? [...rec.config.entrypoint] : null,
        Image: rec.image,
        WorkingDir: rec.config.workingDir,
        Labels: { ...rec.config.labels },
        ...(rec.config.stopSignal !== undefined ? { StopSignal: rec.config.stopSignal } : {}),
        Tty: false,
        OpenStdin: false,
        AttachStdin: false,
        AttachStdout: true,
        AttachStderr: true
      },
      NetworkSettings: { Networks: { [rec.hostConfig.network]: {} } }
    }
  }

  // --- logs and attach ------------------------------------------------------------------------

  private subscribe (id: string): (wake: () => void) => () => void {
    return wake => {
      const f = (eid: string): void => { if (eid === id || eid === '*') wake() }
      this.events.on('wake', f)
      return () => { this.events.off('wake', f) }
    }
  }

  async logs (idOrName: string, opts: LogsOptions = {}): Promise<AsyncIterable<LogEntry>> {
    this.checkStarted()
    const c = this.lookup(idOrName)
    const sinceMs = parseTime(opts.since, 'since')
    const untilMs = parseTime(opts.until, 'until')
    if (opts.tail !== undefined && (!Number.isSafeInteger(opts.tail) || opts.tail < 0)) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `tail must be a non-negative integer, got ${String(opts.tail)}`)
    }
    const id = c.rec.id
    const seq = c.exitSeq
    const follow = opts.follow === true && c.rec.state.status === 'running'
    return readLog({
      path: this.logPath(c),
      stdout: opts.stdout ?? true,
      stderr: opts.stderr ?? true,
      ...(sinceMs !== undefined ? { sinceMs } : {}),
      ...(untilMs !== undefined ? { untilMs } : {}),
      ...(opts.tail !== undefined ? { tail: opts.tail } : {}),
      follow,
      done: () => this.stopped || c.exitSeq > seq || !this.containers.has(id),
      subscribe: this.subscribe(id),
      ...(opts.signal !== undefined ? { signal: opts.signal } : {})
    })
  }

  async attach (idOrName: string, opts: AttachOptions = {}): Promise<AsyncIterable<LogEntry>> {
    this.checkStarted()
    const c = this.lookup(idOrName)
    const id = c.rec.id
    const seq = c.exitSeq
    const path = this.logPath(c)
    const offset = await stat(path).then(s => s.size, () => 0)
    return readLog({
      path,
      stdout: opts.stdout ?? true,
      stderr: opts.stderr ?? true,
      offset,
      follow: true,
      done: () => this.stopped || c.exitSeq > seq || !this.containers.has(id),
      subscribe: this.subscribe(id),
      ...(opts.signal !== undefined ? { signal: opts.signal } : {})
    })
  }

  // --- exec -----------------------------------------------------------------------------------

  async exec (idOrName: string, opts: ExecOptions): Promise<{ execId: string }> {
    this.checkStarted()
    const c = this.lookup(idOrName)
    if (opts === null || typeof opts !== 'object' || !Array.isArray(opts.cmd) || opts.cmd.length === 0 || !opts.cmd.every(s => typeof s === 'string')) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', 'exec needs a command: a non-empty array of strings')
    }
    checkEnv(opts.env)
    if (opts.workdir !== undefined && (typeof opts.workdir !== 'string' || !opts.workdir.startsWith('/'))) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `the working directory '${String(opts.workdir)}' is invalid, it needs to be an absolute path`)
    }
    if (opts.user !== undefined && (typeof opts.user !== 'string' || opts.user.split(':').length > 2)) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid user "${String(opts.user)}": expected user[:group]`)
    }
    if (c.rec.state.status !== 'running') throw notRunning(c)
    const execId = randomBytes(32).toString('hex')
    this.execs.set(execId, { id: execId, containerId: c.rec.id, opts: { ...opts, cmd: [...opts.cmd] }, started: false, running: false, exitCode: null, pid: 0 })
    c.execIds.add(execId)
    return { execId }
  }

  private lookupExec (execId: string): ExecRecord {
    const e = typeof execId === 'string' ? this.execs.get(execId) : undefined
    if (e === undefined) throw new JoeyError('ERR_NOT_FOUND', `No such exec instance: ${String(execId)}`, { detail: { exec: execId } })
    return e
  }

  async execStart (execId: string): Promise<ExecSession> {
    this.checkStarted()
    const e = this.lookupExec(execId)
    if (e.started) throw new JoeyError('ERR_FAILED_PRECONDITION', `exec ${execId} has already been started`, { detail: { exec: execId } })
    const c = this.containers.get(e.containerId)
    if (c === undefined) throw notFound(e.containerId)
    if (c.rec.state.status !== 'running') throw notRunning(c)
    e.started = true

    const rootfs = await this.mountRootfs(c)
    const user = await resolveUser(rootfs, e.opts.user ?? c.rec.config.user)
    let env = [...c.rec.config.env]
    if (!hasEnv(env, 'PATH')) env.unshift(DEFAULT_PATH_ENV)
    env = mergeEnv(env, [`HOSTNAME=${c.rec.config.hostname}`, ...(e.opts.env ?? [])])
    if (!hasEnv(env, 'HOME')) env.push(`HOME=${user.home}`)
    const cwd = e.opts.workdir ?? c.rec.config.workingDir
    const clock = createClock()
    const holder: { proc?: ChildProcess } = {}
    const out = new AsyncQueue<LogEntry>(256, paused => {
      for (const stream of [holder.proc?.stdout, holder.proc?.stderr]) {
        if (paused) stream?.pause()
        else stream?.resume()
      }
    })

    const pathEnv = env.find(x => x.startsWith('PATH='))?.slice(5) ?? ''
    const found = await lookPath(rootfs, e.opts.cmd[0]!, pathEnv, cwd)
    if (!found.ok) {
      // As the docker CLI shows it: the runtime's message, and 126/127 as the exit code.
      e.exitCode = found.reason === 'not-found' ? NOT_FOUND_EXIT_CODE : NOT_EXECUTABLE_EXIT_CODE
      out.push({ stream: 'stderr', line: Buffer.from(`OCI runtime exec failed: ${found.message}\n`), time: clock() })
      out.end()
      return { output: out, exitCode: Promise.resolve(e.exitCode) }
    }

    const dir = this.dir(c)
    const processFile = join(dir, `exec-${execId}.json`)
    const pidFile = join(dir, `exec-${execId}.pid`)
    await writeFile(processFile, JSON.stringify(processSpec(e.opts.cmd, env, cwd, user, this.facts.nofile)), { mode: 0o600 })
    const proc = spawn(this.runc.path, this.runc.execArgs(c.rec.id, processFile, pidFile), { stdio: ['ignore', 'pipe', 'pipe'] })
    holder.proc = proc
    e.running = true
    e.pidFile = pidFile
    const splitters = {
      stdout: new LineSplitter(MAX_LOG_LINE, line => out.push({ stream: 'stdout', line, time: clock() })),
      stderr: new LineSplitter(MAX_LOG_LINE, line => out.push({ stream: 'stderr', line, time: clock() }))
    }
    proc.stdout.on('data', (chunk: Buffer) => splitters.stdout.push(chunk))
    proc.stderr.on('data', (chunk: Buffer) => splitters.stderr.push(chunk))

    const exitCode = new Promise<number>(resolve => {
      proc.on('error', err => {
        out.push({ stream: 'stderr', line: Buffer.from(`cannot run ${this.runc.path}: ${err.message}\n`), time: clock() })
      })
      proc.on('close', (code, signal) => {
        splitters.stdout.end()
        splitters.stderr.end()
        e.running = false
        e.exitCode = code ?? (signal !== null ? 128 + parseSignal(signal, 'SIGKILL') : 255)
        out.end()
        void rm(processFile, { force: true })
        void rm(pidFile, { force: true })
        resolve(e.exitCode)
      })
    })
    return { output: out, exitCode }
  }

  async execInspect (execId: string): Promise<ExecInspect> {
    this.checkStarted()
    const e = this.lookupExec(execId)
    if (e.running && e.pid === 0 && e.pidFile !== undefined) {
      e.pid = await readFile(e.pidFile, 'utf8').then(p => Number(p.trim()) || 0, () => 0)
    }
    return {
      ID: e.id,
      ContainerID: e.containerId,
      Running: e.running,
      ExitCode: e.exitCode,
      Pid: e.pid,
      OpenStdin: false,
      OpenStdout: true,
      OpenStderr: true,
      ProcessConfig: { tty: false, entrypoint: e.opts.cmd[0]!, arguments: e.opts.cmd.slice(1), privileged: false, user: e.opts.user ?? '' }
    }
  }
}

function mountPoints (rec: ContainerRecord): MountPoint[] {
  return rec.hostConfig.binds.map(parseBind).map(b => ({
    Type: 'bind',
    Source: b.source,
    Destination: b.destination,
    Mode: b.readOnly ? 'ro' : '',
    RW: !b.readOnly,
    Propagation: 'rprivate'
  }))
}

function statusText (rec: ContainerRecord, now: number): string {
  switch (rec.state.status) {
    case 'running': return `Up ${humanDuration(now - Date.parse(rec.state.startedAt))}`
    case 'exited': return `Exited (${rec.state.exitCode}) ${humanDuration(now - Date.parse(rec.state.finishedAt))} ago`
    case 'removing': return 'Removal In Progress'
    case 'dead': return 'Dead'
    default: return 'Created'
  }
}

