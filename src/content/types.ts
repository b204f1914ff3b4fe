import type { Readable } from 'node:stream'
import type { AbortOptions, Service } from '../common/index.js'

/**
 * containerd's content model. Blobs live at blobs/sha256/<hex>, read-only, and only
 * ever appear there through commit(), which checks size and digest. Writes are keyed
 * by a ref, invisible until committed, and resumable.
 */
export interface BlobInfo {
  digest: string
  size: number
  createdAt: number
  updatedAt: number
  labels: Record<string, string>
}

export interface IngestStatus {
  ref: string
  /** Bytes written so far: where a resumed write continues. */
  offset: number
  expectedSize?: number
  expectedDigest?: string
  startedAt: number
  updatedAt: number
}

export interface WriterOptions {
  expectedDigest?: string
  expectedSize?: number
  /** Wait this long for a ref held by another writer, then fail with ERR_LOCKED. Default 0. */
  lockTimeoutMs?: number
}

export interface CommitOptions {
  labels?: Record<string, string>
}

export interface ContentWriter {
  readonly ref: string
  /** Bytes already in the ingest; the next write() appends here. */
  readonly offset: number
  write: (chunk: Uint8Array) => Promise<void>
  /** Drops data after `offset` (0 restarts the ingest). */
  truncate: (offset: number) => Promise<void>
  /**
   * Verifies size and digest, renames into place read-only and releases the ref.
   * If the blob already exists, the ingest is removed and the existing info returned
   * (AlreadyExists is success). Mismatch: ERR_SIZE_MISMATCH / ERR_DIGEST_MISMATCH and
   * the ingest is discarded.
   */
  commit: (size: number, digest: string, options?: CommitOptions) => Promise<BlobInfo>
  /** Releases the ref and keeps the partial data so a later writer resumes. */
  close: () => Promise<void>
  /** Releases the ref and deletes the partial data. */
  abort: () => Promise<void>
}

export interface ReadOptions extends AbortOptions {
  /** First byte, inclusive. */
  start?: number
  /** Last byte, inclusive (like HTTP Range). */
  end?: number
}

export interface Lease {
  id: string
  createdAt: number
  expiresAt?: number
  labels: Record<string, string>
}

export interface ImageRecord {
  /** Fully qualified name, e.g. docker.io/library/busybox:latest or host:5000/repo@sha256:… */
  name: string
  /** The manifest or index the name points at. */
  target: { mediaType: string, digest: string, size: number }
  createdAt: number
  updatedAt: number
  labels: Record<string, string>
}

export interface Usage {
  blobs: number
  blobBytes: number
  ingests: number
  ingestBytes: number
}

export interface GcResult {
  removedBlobs: string[]
  removedIngests: string[]
  freedBytes: number
}

export interface ContentStore extends Service {
  readonly root: string
  info: (digest: string) => Promise<BlobInfo>
  has: (digest: string) => Promise<boolean>
  list: () => Promise<BlobInfo[]>
  /** Streams a committed blob (whole or a byte range). ERR_NOT_FOUND if absent. */
  read: (digest: string, options?: ReadOptions) => Promise<Readable>
  /** Reads a small committed blob into memory; ERR_LIMIT_EXCEEDED above maxBytes. */
  readBytes: (digest: string, maxBytes?: number) => Promise<Buffer>
  /** Opens (or resumes) the ingest for ref; ERR_LOCKED if another writer holds it. */
  writer: (ref: string, options?: WriterOptions) => Promise<ContentWriter>
  /** Writes a small in-memory blob in one go (verifies digest). */
  writeBytes: (data: Uint8Array, digest: string, options?: CommitOptions) => Promise<BlobInfo>
  ingests: () => Promise<IngestStatus[]>
  ingestStatus: (ref: string) => Promise<IngestStatus | undefined>
  abortIngest: (ref: string) => Promise<void>
  delete: (digest: string) => Promise<void>
  /** Replaces labels; a label set to '' is removed. */
  updateLabels: (digest: string, labels: Record<string, string>) => Promise<BlobInfo>

  createLease: (options?: { id?: string, ttlMs?: number, labels?: Record<string, string> }) => Promise<Lease>
  addLeaseResource: (leaseId: string, digest: string) => Promise<void>
  deleteLease: (leaseId: string) => Promise<void>
  leases: () => Promise<Lease[]>

  putImage: (image: Omit<ImageRecord, 'createdAt' | 'updatedAt'> & { createdAt?: number }) => Promise<ImageRecord>
  getImage: (name: string) => Promise<ImageRecord>
  listImages: () => Promise<ImageRecord[]>
  deleteImage: (name: string) => Promise<void>

  /**
   * Marks from image targets and live leases, following the labels
   * `containerd.io/gc.ref.content.*` on blobs, and removes every unmarked blob and
   * every ingest older than the ingest expiry that no lease holds.
   */
  gc: () => Promise<GcResult>
  usage: () => Promise<Usage>
}

export const GC_REF_LABEL_PREFIX = 'containerd.io/gc.ref.content.'
