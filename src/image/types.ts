import type { AbortOptions } from '../common/index.js'
import type { Descriptor, Platform } from '../distribution/types.js'

/** One line of pull progress, shaped like the Docker Engine's JSON progress messages. */
export interface PullEvent {
  /** Layer short id (12 hex) or the tag for top-level lines. */
  id?: string
  status: string
  progressDetail?: { current?: number, total?: number }
}

export interface PullOptions extends AbortOptions {
  /** os/arch[/variant]; defaults to the host platform. */
  platform?: string
  onEvent?: (event: PullEvent) => void
  /** Authorization header from the client (never stored). */
  authorization?: string
}

export interface PullResult {
  name: string
  /** Digest of the manifest or index the name resolved to (docker's "Digest:"). */
  digest: string
  /** Config digest of the selected platform's image (docker's image ID). */
  id: string
  manifest: Descriptor
  layers: Descriptor[]
  /** Whether anything new was downloaded. */
  downloaded: boolean
}

export interface ImageSummary {
  /** Config digest: docker's image ID. */
  id: string
  repoTags: string[]
  repoDigests: string[]
  created: number
  /** Sum of compressed layer sizes plus config. */
  size: number
  platform: Platform
}

export interface ImageDetail extends ImageSummary {
  manifestDigest: string
  config: Record<string, any>
  layers: Descriptor[]
  rootfs: { type: string, diff_ids: string[] }
}

export interface RemoveResult {
  untagged: string[]
  deleted: string[]
}

export interface ImageService {
  pull: (ref: string, options?: PullOptions) => Promise<PullResult>
  list: () => Promise<ImageSummary[]>
  /** By name (any form docker accepts), full or short id, or name@digest. */
  inspect: (nameOrId: string) => Promise<ImageDetail>
  /** Untags; when the last name goes, runs GC so unshared blobs are freed. */
  remove: (nameOrId: string, options?: { force?: boolean }) => Promise<RemoveResult>
  /** Gives the image `source` names another name (`repo[:tag]`, tag `latest` when absent), like docker tag. */
  tag: (source: string, target: string) => Promise<void>
}

export type { Descriptor, Platform }
