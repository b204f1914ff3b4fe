import type { AbortOptions } from '../common/index.js'
import type { Descriptor, Reference } from '../distribution/types.js'

export interface BlobProgress {
  digest: string
  /** Bytes of the blob present so far (including bytes resumed from an earlier ingest). */
  current: number
  total: number
  phase: 'waiting' | 'downloading' | 'verifying' | 'done' | 'exists'
}

export interface FetchBlobOptions extends AbortOptions {
  onProgress?: (p: BlobProgress) => void
  /** Authorization to use toward the origin for this request only (mirror passthrough). */
  authorization?: string
}

export interface TransferStats {
  /** Blob bytes received from the origin registry. */
  originBytes: number
  /** Blob bytes received from peers. */
  peerBytes: number
  /** Number of times a blob was fetched from the origin. */
  originFetches: number
  /** Piece bytes this node served to peers. */
  uploadedBytes?: number
}

/**
 * Makes sure a blob is committed to the local content store. One task per digest per
 * node: concurrent callers for the same digest share one download.
 */
export interface TransferManager {
  fetchBlob: (ref: Reference, desc: Descriptor, options?: FetchBlobOptions) => Promise<void>
  stats: () => TransferStats
}
