import { randomUUID } from 'node:crypto'
import { open, readdir, readFile, rename, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { SnapshotterKind } from '../unpack/index.js'
import { FILES } from './constants.js'
import type { ContainerStatus, NetworkMode } from './types.js'

/** What the service persists per container, in `<root>/<id>/config.v2.json`. */
export interface ContainerRecord {
  version: 1
  id: string
  name: string
  created: string
  /** The image as the user named it. */
  image: string
  /** Config digest: docker's image ID. */
  imageId: string
  chainId: string
  snapshotKey: string
  snapshotter: SnapshotterKind
  /** The user's command, without the init in front. */
  path: string
  args: string[]
  config: {
    hostname: string
    user: string
    env: string[]
    cmd: string[] | null
    entrypoint: string[] | null
    workingDir: string
    labels: Record<string, string>
    stopSignal?: string
  }
  hostConfig: {
    binds: string[]
    network: NetworkMode
    readOnly: boolean
    memory: number
    cpus: number
    pidsLimit: number
    autoRemove: boolean
  }
  state: {
    status: ContainerStatus
    pid: number
    exitCode: number
    error: string
    startedAt: string
    finishedAt: string
    oomKilled: boolean
    shimPid?: number
    /** Field 22 of /proc/<pid>/stat when the shim started: tells our shim from a reused pid. */
    shimStartTime?: string
  }
  restartCount: number
}

/** Written to a temp file, synced and renamed: a crash leaves the old or the new record. */
export async function saveRecord (root: string, record: ContainerRecord): Promise<void> {
  const dir = join(root, record.id)
  const tmp = join(dir, `${FILES.record}.${randomUUID()}.tmp`)
  const fh = await open(tmp, 'w', 0o600)
  try {
    await fh.writeFile(JSON.stringify(record, null, 1))
    await fh.sync()
  } finally {
    await fh.close()
  }
  await rename(tmp, join(dir, FILES.record))
}

export interface LoadResult {
  records: ContainerRecord[]
  /** Directories without a readable record: a create that crashed half-way. */
  broken: string[]
}

export async function loadRecords (root: string): Promise<LoadResult> {
  const records: ContainerRecord[] = []
  const broken: string[] = []
  let entries: string[]
  try {
    entries = await readdir(root)
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return { records, broken }
    throw err
  }
  for (const id of entries) {
    if (!/^[a-f0-9]{64}$/.test(id)) continue
    try {
      const rec = JSON.parse(await readFile(join(root, id, FILES.record), 'utf8')) as ContainerRecord
      if (rec.version !== 1 || rec.id !== id) throw new Error('unknown record version')
      records.push(rec)
      for (const e of await readdir(join(root, id))) {
        if (e.startsWith(`${FILES.record}.`) && e.endsWith('.tmp')) await rm(join(root, id, e), { force: true })
      }
    } catch {
      broken.push(id)
    }
  }
  return { records, broken }
}
