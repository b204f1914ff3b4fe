import { randomUUID } from 'node:crypto'
import { mkdir, open, readdir, readFile, rename, rm, lstat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { JoeyError, type Logger } from '../common/index.js'
import { applyLayer } from './apply.js'
import { TOOLS, UNPACK_KEY_PREFIX } from './constants.js'
import { run } from './exec.js'
import type {
  ApplyOptions, ApplyResult, Mount, PreparedSnapshot, SnapshotInfo, SnapshotKind, SnapshotOptions, Snapshotter,
  SnapshotterComponents, SnapshotterInit, SnapshotterKind, SnapshotUsage
} from './types.js'

interface SnapshotRecord {
  id: number
  kind: SnapshotKind
  parent?: string
  created: string
  labels: Record<string, string>
  /** False while prepare() is still filling the directory; such records do not survive a restart. */
  ready: boolean
}

interface MetadataFile {
  version: 1
  nextId: number
  snapshots: Record<string, SnapshotRecord>
}

const METADATA = 'metadata.json'
const SNAPSHOTS = 'snapshots'
const MAX_KEY_LENGTH = 512

/**
 * Creates a snapshotter in containerd's model: committed snapshots are immutable layer
 * stacks named by chain ID; active snapshots are writable (a layer being applied, or a
 * container's rootfs); views are read-only. 'overlay' stores one layer per snapshot and
 * stacks them with overlayfs; 'copy' stores full trees and works on any filesystem.
 */
export function createSnapshotter (kind: SnapshotterKind, init: SnapshotterInit, components: SnapshotterComponents): Snapshotter {
  if (kind !== 'overlay' && kind !== 'copy') {
    throw new JoeyError('ERR_INVALID_ARGUMENT', `unknown snapshotter "${String(kind)}": expected overlay or copy`)
  }
  return new FsSnapshotter(kind, init.root, components.logger.child({ component: 'snapshotter', snapshotter: kind }))
}

class FsSnapshotter implements Snapshotter {
  private meta: MetadataFile | undefined
  private opening: Promise<MetadataFile> | undefined
  private queue: Promise<unknown> = Promise.resolve()

  constructor (readonly kind: SnapshotterKind, readonly root: string, private readonly logger: Logger) {}

  // --- metadata -----------------------------------------------------------------------------

  private dirOf (id: number): string {
    return join(this.root, SNAPSHOTS, String(id))
  }

  private fsOf (id: number): string {
    return join(this.dirOf(id), 'fs')
  }

  /** Loads metadata once and clears what a crash left: half-prepared and unpack snapshots, orphan dirs. */
  private async open (): Promise<MetadataFile> {
    if (this.meta !== undefined) return this.meta
    this.opening ??= (async () => {
      await mkdir(join(this.root, SNAPSHOTS), { recursive: true, mode: 0o700 })
      let meta: MetadataFile
      try {
        meta = JSON.parse(await readFile(join(this.root, METADATA), 'utf8')) as MetadataFile
        if (meta.version !== 1 || typeof meta.snapshots !== 'object') throw new Error('unknown metadata version')
      } catch (err) {
        if ((err as { code?: string }).code !== 'ENOENT') {
          throw new JoeyError('ERR_FAILED_PRECONDITION', `snapshot metadata ${join(this.root, METADATA)} is unreadable: ${(err as Error).message}`, { cause: err })
        }
        meta = { version: 1, nextId: 1, snapshots: {} }
      }
      let dirty = false
      for (const [name, rec] of Object.entries(meta.snapshots)) {
        if (!rec.ready || (rec.kind === 'active' && name.startsWith(UNPACK_KEY_PREFIX))) {
          this.logger.info({ snapshot: name }, 'removing snapshot left by an interrupted operation')
          delete meta.snapshots[name]
          dirty = true
        }
      }
      const ids = new Set(Object.values(meta.snapshots).map(r => String(r.id)))
      for (const entry of await readdir(join(this.root, SNAPSHOTS))) {
        if (!ids.has(entry)) await rm(join(this.root, SNAPSHOTS, entry), { recursive: true, force: true })
      }
      if (dirty) await this.save(meta)
      this.meta = meta
      return meta
    })()
    try {
      return await this.opening
    } finally {
      this.opening = undefined
    }
  }

  /** Written to a temp file, synced and renamed: a crash leaves the old or the new state. */
  private async save (meta: MetadataFile): Promise<void> {
    const tmp = join(this.root, `${METADATA}.${randomUUID()}.tmp`)
    const fh = await open(tmp, 'w', 0o600)
    try {
      await fh.writeFile(JSON.stringify(meta))
      await fh.sync()
    } finally {
      await fh.close()
    }
    await rename(tmp, join(this.root, METADATA))
  }

  /** Serializes metadata changes; `fn` mutates and the result is saved before release. */
  private async locked<T> (fn: (meta: MetadataFile) => Promise<T> | T): Promise<T> {
    const run = this.queue.then(async () => {
      const meta = await this.open()
      const before = JSON.stringify(meta)
      try {
        return await fn(meta)
      } finally {
        if (JSON.stringify(meta) !== before) await this.save(meta)
      }
    })
    this.queue = run.catch(() => {})
    return await run
  }

  private record (meta: MetadataFile, name: string): SnapshotRecord {
    const rec = meta.snapshots[name]
    if (rec === undefined || !rec.ready) throw new JoeyError('ERR_NOT_FOUND', `snapshot "${name}" does not exist`, { detail: { snapshot: name } })
    return rec
  }

  private committedParent (meta: MetadataFile, parent: string | undefined): void {
    if (parent === undefined) return
    const rec = meta.snapshots[parent]
    if (rec === undefined || !rec.ready) throw new JoeyError('ERR_NOT_FOUND', `parent snapshot "${parent}" does not exist`, { detail: { snapshot: parent } })
    if (rec.kind !== 'committed') {
      throw new JoeyError('ERR_FAILED_PRECONDITION', `parent snapshot "${parent}" is ${rec.kind}, not committed`, { detail: { snapshot: parent } })
    }
  }

  /** The fs dirs of `name` and its ancestors, topmost first. */
  private chain (meta: MetadataFile, name: string | undefined): string[] {
    const out: string[] = []
    const seen = new Set<string>()
    while (name !== undefined) {
      if (seen.has(name)) throw new JoeyError('ERR_INTERNAL', `snapshot metadata has a parent cycle at "${name}"`)
      seen.add(name)
      const rec = this.record(meta, name)
      out.push(this.fsOf(rec.id))
      name = rec.parent
    }
    return out
  }

  private info (name: string, rec: SnapshotRecord): SnapshotInfo {
    return { name, kind: rec.kind, ...(rec.parent !== undefined ? { parent: rec.parent } : {}), created: rec.created, labels: { ...rec.labels } }
  }

  private checkKey (key: string): void {
    if (typeof key !== 'string' || key === '' || key.length > MAX_KEY_LENGTH) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `snapshot key must be 1 to ${MAX_KEY_LENGTH} characters`)
    }
  }

  // --- snapshots ----------------------------------------------------------------------------

  async prepare (key: string, parent?: string, options: SnapshotOptions = {}): Promise<PreparedSnapshot> {
    const rec = await this.create(key, parent, 'active', options)
    return { key, ...(parent !== undefined ? { parent } : {}), dir: this.fsOf(rec.id), mounts: await this.mounts(key) }
  }

  async view (key: string, parent?: string, options: SnapshotOptions = {}): Promise<Mount[]> {
    await this.create(key, parent, 'view', options)
    return await this.mounts(key)
  }

  private async create (key: string, parent: string | undefined, kind: 'active' | 'view', options: SnapshotOptions): Promise<SnapshotRecord> {
    this.checkKey(key)
    const rec = await this.locked(meta => {
      if (meta.snapshots[key] !== undefined) {
        throw new JoeyError('ERR_ALREADY_EXISTS', `snapshot "${key}" already exists`, { detail: { snapshot: key } })
      }
      this.committedParent(meta, parent)
      const rec: SnapshotRecord = {
        id: meta.nextId++,
        kind,
        ...(parent !== undefined ? { parent } : {}),
        created: new Date().toISOString(),
        labels: { ...options.labels },
        ready: false
      }
      meta.snapshots[key] = rec
      return { ...rec, parentFs: parent !== undefined ? this.fsOf(this.record(meta, parent).id) : undefined }
    })
    const dir = this.dirOf(rec.id)
    try {
      await mkdir(dir, { mode: 0o700 })
      if (this.kind === 'copy' && kind === 'active' && rec.parentFs !== undefined) {
        // cp -a keeps hard links, owners, modes, times, xattrs and device nodes; reflinks
        // make it nearly free on filesystems that have them.
        await mkdir(this.fsOf(rec.id), { mode: 0o755 })
        await run(TOOLS.cp, ['-a', '--reflink=auto', '--', `${rec.parentFs}/.`, this.fsOf(rec.id)], options.signal !== undefined ? { signal: options.signal } : {})
      } else {
        await mkdir(this.fsOf(rec.id), { mode: 0o755 })
      }
      if (this.kind === 'overlay') await mkdir(join(dir, 'work'), { mode: 0o700 })
      await this.locked(meta => {
        const r = meta.snapshots[key]
        if (r !== undefined && r.id === rec.id) r.ready = true
      })
    } catch (err) {
      await this.locked(meta => {
        if (meta.snapshots[key]?.id === rec.id) delete meta.snapshots[key]
      }).catch(() => {})
      await rm(dir, { recursive: true, force: true }).catch(() => {})
      throw err
    }
    return rec
  }

  async mounts (key: string): Promise<Mount[]> {
    return await this.locked(meta => {
      const rec = this.record(meta, key)
      if (rec.kind === 'committed') {
        throw new JoeyError('ERR_FAILED_PRECONDITION', `snapshot "${key}" is committed: create a view or an active snapshot on it to mount it`)
      }
      const own = this.fsOf(rec.id)
      const lowers = this.chain(meta, rec.parent)
      const ro = rec.kind === 'view'
      if (this.kind === 'copy') {
        return [bind(ro && lowers[0] !== undefined ? lowers[0] : own, ro)]
      }
      if (ro) {
        if (lowers.length === 0) return [bind(own, true)]
        if (lowers.length === 1) return [bind(lowers[0]!, true)]
        return [{ type: 'overlay', source: 'overlay', options: [`lowerdir=${lowers.join(':')}`] }]
      }
      if (lowers.length === 0) return [bind(own, false)]
      return [{
        type: 'overlay',
        source: 'overlay',
        options: [`workdir=${join(this.dirOf(rec.id), 'work')}`, `upperdir=${own}`, `lowerdir=${lowers.join(':')}`]
      }]
    })
  }

  async apply (key: string, stream: Readable, mediaType: string, options: ApplyOptions = {}): Promise<ApplyResult> {
    let target: { dir: string, lowers: string[] }
    try {
      target = await this.locked(meta => {
        const rec = this.record(meta, key)
        if (rec.kind !== 'active') {
          throw new JoeyError('ERR_FAILED_PRECONDITION', `snapshot "${key}" is ${rec.kind}: layers are applied to active snapshots`)
        }
        return { dir: this.fsOf(rec.id), lowers: this.chain(meta, rec.parent) }
      })
    } catch (err) {
      stream.destroy()
      throw err
    }
    return await applyLayer(stream, mediaType, target.dir, this.kind === 'overlay'
      ? { logger: this.logger, ...options, whiteouts: 'overlay', lowerDirs: target.lowers }
      : { logger: this.logger, ...options, whiteouts: 'delete' })
  }

  async commit (name: string, key: string, options: { labels?: Record<string, string> } = {}): Promise<void> {
    this.checkKey(name)
    await this.locked(meta => {
      const rec = this.record(meta, key)
      if (rec.kind !== 'active') throw new JoeyError('ERR_FAILED_PRECONDITION', `snapshot "${key}" is ${rec.kind}, not active`)
      if (meta.snapshots[name] !== undefined) {
        throw new JoeyError('ERR_ALREADY_EXISTS', `snapshot "${name}" already exists`, { detail: { snapshot: name } })
      }
      delete meta.snapshots[key]
      meta.snapshots[name] = { ...rec, kind: 'committed', labels: { ...rec.labels, ...options.labels } }
    })
  }

  async remove (name: string): Promise<void> {
    const id = await this.locked(meta => {
      const rec = meta.snapshots[name]
      if (rec === undefined) throw new JoeyError('ERR_NOT_FOUND', `snapshot "${name}" does not exist`, { detail: { snapshot: name } })
      const children = Object.entries(meta.snapshots).filter(([, r]) => r.parent === name).map(([n]) => n)
      if (children.length > 0) {
        throw new JoeyError('ERR_FAILED_PRECONDITION', `snapshot "${name}" has ${children.length} child snapshot(s); remove them first`,
          { detail: { snapshot: name, children } })
      }
      delete meta.snapshots[name]
      return rec.id
    })
    // The record goes first: a crash in between leaves an orphan directory, removed at start.
    await rm(this.dirOf(id), { recursive: true, force: true })
  }

  async stat (name: string): Promise<SnapshotInfo> {
    return await this.locked(meta => this.info(name, this.record(meta, name)))
  }

  async get (name: string): Promise<SnapshotInfo | undefined> {
    return await this.locked(meta => {
      const rec = meta.snapshots[name]
      return rec !== undefined && rec.ready ? this.info(name, rec) : undefined
    })
  }

  async list (): Promise<SnapshotInfo[]> {
    return await this.locked(meta => Object.entries(meta.snapshots)
      .filter(([, r]) => r.ready)
      .map(([n, r]) => this.info(n, r))
      .sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  }

  async usage (name: string): Promise<SnapshotUsage> {
    const id = await this.locked(meta => this.record(meta, name).id)
    const seen = new Set<number>()
    let size = 0
    const walk = async (dir: string): Promise<void> => {
      for (const entry of await readdir(dir)) {
        const p = join(dir, entry)
        const st = await lstat(p)
        if (seen.has(st.ino)) continue
        seen.add(st.ino)
        if (st.isFile() || st.isSymbolicLink()) size += st.size
        if (st.isDirectory()) await walk(p)
      }
    }
    await walk(this.fsOf(id))
    return { size, inodes: seen.size }
  }

  async prune (keep: Set<string>): Promise<string[]> {
    const doomed = await this.locked(meta => {
      const protectedNames = new Set<string>()
      const protect = (name: string | undefined): void => {
        while (name !== undefined && !protectedNames.has(name)) {
          protectedNames.add(name)
          name = meta.snapshots[name]?.parent
        }
      }
      for (const name of keep) protect(name)
      for (const [name, rec] of Object.entries(meta.snapshots)) {
        if (rec.kind !== 'committed') protect(name)
      }
      const out: Array<{ name: string, id: number }> = []
      for (const [name, rec] of Object.entries(meta.snapshots)) {
        if (!protectedNames.has(name)) out.push({ name, id: rec.id })
      }
      for (const { name } of out) delete meta.snapshots[name]
      return out
    })
    for (const { name, id } of doomed) {
      await rm(this.dirOf(id), { recursive: true, force: true })
      this.logger.debug({ snapshot: name }, 'pruned snapshot')
    }
    return doomed.map(d => d.name).sort()
  }
}

function bind (source: string, ro: boolean): Mount {
  return { type: 'bind', source, options: ['rbind', ro ? 'ro' : 'rw'] }
}
