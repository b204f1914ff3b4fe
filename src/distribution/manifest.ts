import { JoeyError, isDigest } from '../common/index.js'
import { MEDIA_TYPES, type Descriptor, type Index, type Manifest, type Platform } from './types.js'

export const MANIFEST_MEDIA_TYPES = [MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest] as const
export const INDEX_MEDIA_TYPES = [MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifestList] as const
/** What we send as Accept: every type parseManifest understands, OCI first. */
export const MANIFEST_ACCEPT = [MEDIA_TYPES.ociManifest, MEDIA_TYPES.ociIndex, MEDIA_TYPES.dockerManifest, MEDIA_TYPES.dockerManifestList].join(', ')

const SCHEMA1_TYPES = new Set([
  'application/vnd.docker.distribution.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v1+prettyjws'
])
// Content types that say nothing about what the manifest is; the body has to tell.
const GENERIC_TYPES = new Set(['', 'application/json', 'application/octet-stream', 'text/plain'])

export type ParsedManifest =
  | { kind: 'manifest', manifest: Manifest }
  | { kind: 'index', index: Index }

export function isManifestMediaType (mediaType: string): boolean {
  return (MANIFEST_MEDIA_TYPES as readonly string[]).includes(mediaType)
}

export function isIndexMediaType (mediaType: string): boolean {
  return (INDEX_MEDIA_TYPES as readonly string[]).includes(mediaType)
}

/** "application/json; charset=utf-8" → "application/json". */
export function stripMediaTypeParams (contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase()
}

function invalid (why: string, detail?: Record<string, unknown>): JoeyError {
  return new JoeyError('ERR_MANIFEST_INVALID', `invalid manifest: ${why}`, detail !== undefined ? { detail } : {})
}

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function stringMap (v: unknown, where: string): Record<string, string> | undefined {
  if (v === undefined) return undefined
  if (!isObject(v) || !Object.values(v).every(x => typeof x === 'string')) throw invalid(`${where}.annotations must map strings to strings`)
  return v as Record<string, string>
}

function parsePlatformField (v: unknown, where: string): Platform | undefined {
  if (v === undefined) return undefined
  if (!isObject(v) || typeof v.os !== 'string' || typeof v.architecture !== 'string' || v.os === '' || v.architecture === '') {
    throw invalid(`${where}.platform needs non-empty "os" and "architecture" strings`)
  }
  const p: Platform = { os: v.os, architecture: v.architecture }
  if (v.variant !== undefined) {
    if (typeof v.variant !== 'string') throw invalid(`${where}.platform.variant must be a string`)
    if (v.variant !== '') p.variant = v.variant
  }
  if (v['os.version'] !== undefined) {
    if (typeof v['os.version'] !== 'string') throw invalid(`${where}.platform["os.version"] must be a string`)
    p['os.version'] = v['os.version']
  }
  if (v['os.features'] !== undefined) {
    if (!Array.isArray(v['os.features']) || !v['os.features'].every(x => typeof x === 'string')) throw invalid(`${where}.platform["os.features"] must be an array of strings`)
    p['os.features'] = v['os.features'] as string[]
  }
  return p
}

/** Checks one descriptor and returns a clean copy holding only the fields we know. */
export function parseDescriptor (v: unknown, where: string): Descriptor {
  if (!isObject(v)) throw invalid(`${where} must be an object`)
  if (typeof v.mediaType !== 'string' || v.mediaType === '') throw invalid(`${where}.mediaType must be a non-empty string`)
  if (typeof v.digest !== 'string' || !isDigest(v.digest)) {
    throw invalid(`${where}.digest ${JSON.stringify(v.digest)} is not a sha256 digest (sha256:<64 lowercase hex>)`, { digest: v.digest })
  }
  if (typeof v.size !== 'number' || !Number.isSafeInteger(v.size) || v.size < 0) {
    throw invalid(`${where}.size ${JSON.stringify(v.size)} must be a non-negative integer`, { size: v.size })
  }
  const d: Descriptor = { mediaType: v.mediaType, digest: v.digest, size: v.size }
  const platform = parsePlatformField(v.platform, where)
  if (platform !== undefined) d.platform = platform
  const annotations = stringMap(v.annotations, where)
  if (annotations !== undefined) d.annotations = annotations
  if (v.urls !== undefined) {
    if (!Array.isArray(v.urls) || !v.urls.every(u => typeof u === 'string')) throw invalid(`${where}.urls must be an array of strings`)
    d.urls = v.urls as string[]
  }
  return d
}

/**
 * Parses a manifest or index and validates it: JSON, schemaVersion 2, a media type we support
 * (from the body, else the Content-Type header, else inferred from the shape), and
 * well-formed descriptors.
 */
export function parseManifest (bytes: Uint8Array | string, mediaTypeHeader?: string): ParsedManifest {
  let doc: unknown
  try {
    doc = JSON.parse(typeof bytes === 'string' ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'))
  } catch (err) {
    throw new JoeyError('ERR_MANIFEST_INVALID', `invalid manifest: not valid JSON (${(err as Error).message})`, { cause: err })
  }
  if (!isObject(doc)) throw invalid('the document is not a JSON object')

  const header = stripMediaTypeParams(mediaTypeHeader)
  if (doc.schemaVersion === 1 || SCHEMA1_TYPES.has(header) || (typeof doc.mediaType === 'string' && SCHEMA1_TYPES.has(doc.mediaType))) {
    throw new JoeyError('ERR_UNSUPPORTED_MEDIA_TYPE',
      'Docker image manifest schema 1 is not supported (deprecated since 2017); push the image again with a current client to get schema 2 or OCI',
      { detail: { mediaType: doc.mediaType ?? header } })
  }
  if (doc.schemaVersion !== 2) throw invalid(`schemaVersion is ${JSON.stringify(doc.schemaVersion)}, expected 2`)
  if (doc.mediaType !== undefined && typeof doc.mediaType !== 'string') throw invalid('mediaType must be a string')

  let mediaType = (doc.mediaType as string | undefined) ?? ''
  if (mediaType === '' && !GENERIC_TYPES.has(header)) mediaType = header
  if (mediaType === '') {
    // OCI lets mediaType be omitted; the shape is then the only guide, as in containerd.
    if (Array.isArray(doc.manifests)) mediaType = MEDIA_TYPES.ociIndex
    else if (doc.config !== undefined) mediaType = MEDIA_TYPES.ociManifest
    else throw invalid('no mediaType and neither "config" nor "manifests" present')
  }

  if (isIndexMediaType(mediaType)) {
    if (!Array.isArray(doc.manifests)) throw invalid(`${mediaType} needs a "manifests" array`)
    if (doc.config !== undefined || doc.layers !== undefined) throw invalid(`${mediaType} must not have "config" or "layers"`)
    const index: Index = {
      schemaVersion: 2,
      mediaType,
      manifests: doc.manifests.map((m, i) => parseDescriptor(m, `manifests[${i}]`))
    }
    const annotations = stringMap(doc.annotations, 'index')
    if (annotations !== undefined) index.annotations = annotations
    return { kind: 'index', index }
  }
  if (isManifestMediaType(mediaType)) {
    if (doc.manifests !== undefined) throw invalid(`${mediaType} must not have "manifests"`)
    if (doc.config === undefined) throw invalid(`${mediaType} needs a "config" descriptor`)
    if (!Array.isArray(doc.layers)) throw invalid(`${mediaType} needs a "layers" array`)
    const manifest: Manifest = {
      schemaVersion: 2,
      mediaType,
      config: parseDescriptor(doc.config, 'config'),
      layers: doc.layers.map((l, i) => parseDescriptor(l, `layers[${i}]`))
    }
    const annotations = stringMap(doc.annotations, 'manifest')
    if (annotations !== undefined) manifest.annotations = annotations
    return { kind: 'manifest', manifest }
  }
  throw new JoeyError('ERR_UNSUPPORTED_MEDIA_TYPE',
    `unsupported manifest media type "${mediaType}"; supported: ${[...MANIFEST_MEDIA_TYPES, ...INDEX_MEDIA_TYPES].join(', ')}`,
    { detail: { mediaType } })
}
