import type { Readable } from 'node:stream'
import type { AbortOptions } from '../common/index.js'

export const MEDIA_TYPES = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerForeignLayerGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip'
} as const

export interface Platform {
  os: string
  architecture: string
  variant?: string
  'os.version'?: string
  'os.features'?: string[]
}

export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  platform?: Platform
  annotations?: Record<string, string>
  urls?: string[]
}

export interface Manifest {
  schemaVersion: 2
  mediaType?: string
  config: Descriptor
  layers: Descriptor[]
  annotations?: Record<string, string>
}

export interface Index {
  schemaVersion: 2
  mediaType?: string
  manifests: Descriptor[]
  annotations?: Record<string, string>
}

/** A parsed, normalised image reference (docker's rules). */
export interface Reference {
  /** Registry host, e.g. docker.io, localhost:5000. */
  domain: string
  /** Repository path, e.g. library/busybox. */
  path: string
  tag?: string
  digest?: string
  /** domain/path[:tag][@digest] */
  toString: () => string
  /** domain/path */
  readonly name: string
  /** What docker shows: busybox:latest rather than docker.io/library/busybox:latest. */
  readonly familiar: string
}

export interface RegistryHostConfig {
  /** Plain HTTP allowed (dockerd's --insecure-registry). */
  insecure?: boolean
  /** Extra CA (PEM) trusted besides the system CAs. */
  ca?: string
  /** TLS verification off (insecure TLS). */
  skipVerify?: boolean
  username?: string
  password?: string
  /** A pre-issued bearer or identity token. */
  token?: string
}

export interface RegistryClientInit {
  /** Per-host settings keyed by host[:port]. */
  hosts?: Record<string, RegistryHostConfig>
  /** Hosts named insecure (plain HTTP). Loopback hosts are insecure by default. */
  insecureRegistries?: string[]
  /** A docker-style config.json to read credentials from (auths, base64 auth). */
  dockerConfigPath?: string
  maxManifestBytes?: number
  maxConfigBytes?: number
  retries?: number
  /** Base backoff in ms, doubled per attempt with jitter. */
  retryBaseMs?: number
  /** Per-request timeout for headers and idle body. */
  timeoutMs?: number
  userAgent?: string
}

export interface FetchedManifest {
  descriptor: Descriptor
  bytes: Buffer
}

export interface BlobRequestOptions extends AbortOptions {
  /** Resume from this byte (Range: bytes=offset-). */
  offset?: number
  /** Last byte, inclusive. */
  end?: number
  /** Authorization header to pass through for this request (mirror passthrough). */
  authorization?: string
}

export interface BlobResponse {
  stream: Readable
  /** Byte offset of the first byte in `stream`. */
  offset: number
  /** Total size of the blob when known. */
  size?: number
}

export interface RegistryRequestOptions extends AbortOptions {
  authorization?: string
}

export interface RegistryClient {
  /** Resolves a tag or digest to the manifest/index bytes at the registry, verified against the digest. */
  getManifest: (ref: Reference, options?: RegistryRequestOptions) => Promise<FetchedManifest>
  headManifest: (ref: Reference, options?: RegistryRequestOptions) => Promise<Descriptor>
  /** Streams a blob (following redirects), from options.offset with Range. Caller verifies. */
  getBlob: (ref: Reference, digest: string, options?: BlobRequestOptions) => Promise<BlobResponse>
  headBlob: (ref: Reference, digest: string, options?: RegistryRequestOptions) => Promise<{ size: number }>
  /** Fetches a small blob (config) into memory, size-capped and verified. */
  getBlobBytes: (ref: Reference, desc: Descriptor, options?: RegistryRequestOptions) => Promise<Buffer>
  close: () => Promise<void>
}
