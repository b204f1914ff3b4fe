import type { Readable } from 'node:stream'
import type { AbortOptions, Logger } from '../common/index.js'

/** Caps that bound what one layer can cost; every breach is ERR_LIMIT_EXCEEDED. */
export interface UnpackLimits {
  /** Tar entries per layer. Default MAX_ENTRIES (500,000). */
  maxEntries?: number
  /** Bytes in an entry path or link target. Default 4096. */
  maxPathLength?: number
  /** Bytes in one path component. Default 255. */
  maxComponentLength?: number
  /** Uncompressed tar bytes per layer (decompression bombs). Default 16 GiB. */
  maxBytes?: number
  /** Size of one regular file. Default 8 GiB. */
  maxFileSize?: number
}

/**
 * How whiteouts land on disk. 'delete' (copy snapshotter): the target holds the lower layers'
 * files, so `.wh.NAME` removes NAME and an opaque marker empties the directory. 'overlay': the
 * target is an overlayfs upper dir, so `.wh.NAME` becomes a 0/0 character device and an opaque
 * marker sets `trusted.overlay.opaque=y`.
 */
export type WhiteoutMode = 'delete' | 'overlay'

export interface ApplyOptions extends AbortOptions {
  limits?: UnpackLimits
  /** sha256 of the uncompressed tar (the config's rootfs.diff_ids entry); ERR_DIGEST_MISMATCH otherwise. */
  expectedDiffId?: string
  /** Create char/block devices and fifos from the layer. Default false: ERR_UNSAFE_PATH. */
  allowDevices?: boolean
  /** Default 'delete'. */
  whiteouts?: WhiteoutMode
  /**
   * For 'overlay': the lower layers' directories, topmost first. Parent directories missing
   * from the upper dir are resolved through them (symlinks, metadata), and hard links to
   * files that only exist below are copied up.
   */
  lowerDirs?: string[]
  /** Apply tar uid/gid. Default: when running as root. */
  chown?: boolean
  logger?: Logger
}

export interface ApplyResult {
  /** sha256 of the uncompressed tar stream. */
  diffId: string
  /** Tar entries read (whiteouts and metadata entries included). */
  entries: number
  /** Uncompressed tar bytes read. */
  bytes: number
}

/** A mount in containerd's shape; add `destination` for an OCI runtime spec mount. */
export interface Mount {
  type: string
  source: string
  options: string[]
}

export type SnapshotterKind = 'overlay' | 'copy'
export type SnapshotKind = 'active' | 'view' | 'committed'

export interface SnapshotInfo {
  /** Key of an active or view snapshot, or the name (chain ID) of a committed one. */
  name: string
  kind: SnapshotKind
  parent?: string
  /** ISO 8601. */
  created: string
  labels: Record<string, string>
}

export interface SnapshotUsage {
  /** Bytes of regular files and symlinks, each inode counted once. */
  size: number
  inodes: number
}

export interface PreparedSnapshot {
  key: string
  parent?: string
  /** Where to apply a layer: the full tree (copy) or the overlay upper dir. */
  dir: string
  mounts: Mount[]
}

export interface SnapshotOptions {
  labels?: Record<string, string>
  signal?: AbortSignal
}

export interface Snapshotter {
  readonly kind: SnapshotterKind
  readonly root: string
  /** A writable snapshot on top of a committed `parent`. ERR_ALREADY_EXISTS if `key` is taken. */
  prepare: (key: string, parent?: string, options?: SnapshotOptions) => Promise<PreparedSnapshot>
  /** A read-only snapshot of a committed `parent`. */
  view: (key: string, parent?: string, options?: SnapshotOptions) => Promise<Mount[]>
  /** How to mount an active or view snapshot. */
  mounts: (key: string) => Promise<Mount[]>
  /** Applies a compressed layer into an active snapshot, with this snapshotter's whiteout mode. */
  apply: (key: string, stream: Readable, mediaType: string, options?: ApplyOptions) => Promise<ApplyResult>
  /** Turns active snapshot `key` into committed snapshot `name`; ERR_ALREADY_EXISTS if taken. */
  commit: (name: string, key: string, options?: { labels?: Record<string, string> }) => Promise<void>
  /** Removes a snapshot of any kind; ERR_FAILED_PRECONDITION while it has children. */
  remove: (name: string) => Promise<void>
  stat: (name: string) => Promise<SnapshotInfo>
  /** `undefined` when there is no such snapshot. */
  get: (name: string) => Promise<SnapshotInfo | undefined>
  list: () => Promise<SnapshotInfo[]>
  usage: (name: string) => Promise<SnapshotUsage>
  /**
   * GC hook: removes committed snapshots that are neither in `keep` nor an ancestor of one,
   * nor the parent of an active or view snapshot. Returns the names removed.
   */
  prune: (keep: Set<string>) => Promise<string[]>
}

export interface SnapshotterInit {
  /** Directory holding metadata.json and snapshots/. */
  root: string
}

export interface SnapshotterComponents {
  logger: Logger
}

export interface UnpackLayer {
  /** Opens the compressed layer; only called for layers not unpacked yet. */
  stream: () => Promise<Readable>
  mediaType: string
  /** The config's rootfs.diff_ids entry for this layer. */
  diffId: string
}

export interface UnpackOptions extends AbortOptions {
  limits?: UnpackLimits
  allowDevices?: boolean
  logger?: Logger
  /** Called after each layer is applied or found already unpacked. */
  onLayer?: (event: { index: number, chainId: string, diffId: string, applied: boolean, bytes?: number }) => void
}

export interface UnpackResult {
  /** Chain ID of the top layer: the committed snapshot holding the image's root filesystem. */
  chainId: string
  /** How many layers were applied (the rest were already there). */
  applied: number
}
