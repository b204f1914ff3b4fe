import { JoeyError, isAbortError, isDigest, isJoeyError, parseDigest, shortId, toJoeyError, type Logger } from '../common/index.js'
import { GC_REF_LABEL_PREFIX, type ContentStore, type ImageRecord } from '../content/index.js'
import {
  MEDIA_TYPES, defaultPlatform, parseManifest, parsePlatform, parseReference, selectManifest,
  type Descriptor, type Manifest, type Platform, type Reference, type RegistryClient
} from '../distribution/index.js'
import type { TransferManager } from '../transfer/index.js'
import type { ImageDetail, ImageService, ImageSummary, PullEvent, PullOptions, PullResult, RemoveResult } from './types.js'
import { MANIFEST_LABEL, TAGGED_LABEL, MAX_CONCURRENT_DOWNLOADS, MIN_ID_PREFIX, PROGRESS_INTERVAL_MS, PULL_LEASE_TTL_MS } from './constants.js'

export type { ImageDetail, ImageService, ImageSummary, PullEvent, PullOptions, PullResult, RemoveResult } from './types.js'
export { MANIFEST_LABEL } from './constants.js'

export interface ImageServiceInit {
  /** os/arch[/variant] chosen under an index when a pull names none; defaults to the host. */
  platform?: string
  /** Layers downloaded at once per pull (docker's default is 3). */
  maxConcurrentDownloads?: number
  /** Lease lifetime that protects an in-flight pull from GC if this process dies. */
  leaseTtlMs?: number
}

export interface ImageServiceComponents {
  logger: Logger
  contentStore: ContentStore
  registry: RegistryClient
  transfer: TransferManager
}

const MANIFEST_TYPES: ReadonlySet<string> = new Set([MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerManifest])
const CONFIG_TYPES: ReadonlySet<string> = new Set([MEDIA_TYPES.ociConfig, MEDIA_TYPES.dockerConfig])
const LAYER_TYPES: ReadonlySet<string> = new Set([
  MEDIA_TYPES.ociLayer,
  MEDIA_TYPES.ociLayerGzip,
  MEDIA_TYPES.ociLayerZstd,
  MEDIA_TYPES.dockerLayerGzip,
  MEDIA_TYPES.dockerForeignLayerGzip,
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd'
])

/** An image record with everything read from the store that list/inspect/remove need. */
interface Resolved {
  record: ImageRecord
  ref: Reference
  manifestDigest: string
  manifest: Manifest
  configDigest: string
  config: Record<string, any>
}

type Lookup = { kind: 'name' | 'id', matches: Resolved[] }

/** The name an image record is stored under: digest references win over tags, like docker. */
export function recordName (ref: Reference): string {
  if (ref.digest !== undefined) return `${ref.name}@${ref.digest}`
  return `${ref.name}:${ref.tag ?? 'latest'}`
}

/** docker's short repository form: busybox for docker.io/library/busybox, host:port/x otherwise. */
export function familiarRepository (ref: Pick<Reference, 'domain' | 'path'>): string {
  if (ref.domain !== 'docker.io') return `${ref.domain}/${ref.path}`
  const parts = ref.path.split('/')
  return parts.length === 2 && parts[0] === 'library' ? parts[1]! : ref.path
}

function familiarRef (ref: Reference): string {
  const repo = familiarRepository(ref)
  if (ref.digest !== undefined) return `${repo}@${ref.digest}`
  return `${repo}:${ref.tag ?? 'latest'}`
}

function invalid (message: string, detail?: Record<string, unknown>): JoeyError {
  return new JoeyError('ERR_MANIFEST_INVALID', message, detail !== undefined ? { detail } : {})
}

function notFound (nameOrId: string): JoeyError {
  return new JoeyError('ERR_IMAGE_NOT_FOUND', `No such image: ${nameOrId}`, { detail: { image: nameOrId } })
}

function checkDescriptor (d: unknown, what: string): asserts d is Descriptor {
  if (typeof d !== 'object' || d === null) throw invalid(`${what} is not a descriptor`)
  const desc = d as Partial<Descriptor>
  if (typeof desc.mediaType !== 'string') throw invalid(`${what} has no mediaType`)
  if (typeof desc.digest !== 'string' || !isDigest(desc.digest)) throw invalid(`${what} has an invalid digest ${JSON.stringify(desc.digest)}`)
  if (typeof desc.size !== 'number' || !Number.isSafeInteger(desc.size) || desc.size < 0) throw invalid(`${what} has an invalid size ${JSON.stringify(desc.size)}`)
}

/** Everything a pull relies on before it downloads a single layer. */
function validateManifest (manifest: Manifest, digest: string): void {
  checkDescriptor(manifest.config, `config of manifest ${digest}`)
  if (!CONFIG_TYPES.has(manifest.config.mediaType)) {
    throw new JoeyError('ERR_UNSUPPORTED_MEDIA_TYPE', `manifest ${digest} has config media type ${manifest.config.mediaType}, which is not a container image`, { detail: { digest, mediaType: manifest.config.mediaType } })
  }
  if (!Array.isArray(manifest.layers)) throw invalid(`manifest ${digest} has no layers array`)
  manifest.layers.forEach((layer, i) => {
    checkDescriptor(layer, `layer ${i} of manifest ${digest}`)
    if (!LAYER_TYPES.has(layer.mediaType)) {
      throw new JoeyError('ERR_UNSUPPORTED_MEDIA_TYPE', `layer ${i} of manifest ${digest} has unsupported media type ${layer.mediaType}`, { detail: { digest: layer.digest, mediaType: layer.mediaType } })
    }
  })
}

function parseConfig (bytes: Buffer, digest: string, layerCount: number): Record<string, any> {
  let config: unknown
  try {
    config = JSON.parse(bytes.toString('utf8'))
  } catch (err) {
    throw new JoeyError('ERR_MANIFEST_INVALID', `image config ${digest} is not valid JSON`, { cause: err, detail: { digest } })
  }
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw invalid(`image config ${digest} is not a JSON object`, { digest })
  const rootfs = (config as { rootfs?: unknown }).rootfs as { diff_ids?: unknown } | undefined
  if (typeof rootfs !== 'object' || rootfs === null || !Array.isArray(rootfs.diff_ids)) {
    throw invalid(`image config ${digest} has no rootfs.diff_ids`, { digest })
  }
  if (rootfs.diff_ids.length !== layerCount) {
    throw invalid(`image config ${digest} lists ${rootfs.diff_ids.length} diff_ids for ${layerCount} layers`, { digest })
  }
  for (const id of rootfs.diff_ids) {
    if (typeof id !== 'string' || !isDigest(id)) throw invalid(`image config ${digest} has an invalid diff_id ${JSON.stringify(id)}`, { digest })
  }
  return config as Record<string, any>
}

function platformOf (config: Record<string, any>): Platform {
  const p: Platform = { os: String(config.os ?? ''), architecture: String(config.architecture ?? '') }
  if (typeof config.variant === 'string' && config.variant !== '') p.variant = config.variant
  return p
}

function createdOf (config: Record<string, any>): number {
  const t = typeof config.created === 'string' ? Date.parse(config.created) : NaN
  return Number.isFinite(t) ? Math.floor(t / 1000) : 0
}

function aborted (signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true
}

function uniq<T> (items: T[]): T[] {
  return [...new Set(items)]
}

export function createImageService (init: ImageServiceInit, components: ImageServiceComponents): ImageService {
  const log = components.logger.child({ component: 'image' })
  const store = components.contentStore
  const registry = components.registry
  const transfer = components.transfer
  const maxConcurrent = Math.max(1, init.maxConcurrentDownloads ?? MAX_CONCURRENT_DOWNLOADS)
  const leaseTtlMs = init.leaseTtlMs ?? PULL_LEASE_TTL_MS
  // Fail at wiring time, not on the first pull.
  const configuredPlatform = init.platform !== undefined ? parsePlatform(init.platform) : undefined

  function wantedPlatform (requested?: string): Platform {
    if (requested !== undefined && requested !== '') return parsePlatform(requested)
    return configuredPlatform ?? defaultPlatform()
  }

  /** Writes a small blob if missing and makes sure it carries the given GC labels. */
  async function storeWithLabels (bytes: Buffer, digest: string, labels: Record<string, string>): Promise<void> {
    const info = await store.has(digest) ? await store.info(digest) : await store.writeBytes(bytes, digest, { labels })
    if (Object.entries(labels).some(([k, v]) => info.labels[k] !== v)) {
      await store.updateLabels(digest, { ...info.labels, ...labels })
    }
  }

  // Concurrent pulls of one image share the config download, as layers share theirs. The
  // shared work runs through validation and the commit, so a second pull never sees the
  // download finished but the blob not yet in the store (and fetches it again).
  const configFetches = new Map<string, Promise<Buffer>>()
  async function fetchConfig (ref: Reference, desc: Descriptor, layerCount: number, request: { signal?: AbortSignal, authorization?: string }): Promise<Buffer> {
    const fetchAndStore = async (req: typeof request): Promise<Buffer> => {
      if (await store.has(desc.digest)) return await store.readBytes(desc.digest)
      const bytes = await registry.getBlobBytes(ref, desc, req)
      parseConfig(bytes, desc.digest, layerCount)
      await store.writeBytes(bytes, desc.digest)
      return bytes
    }
    const key = `${desc.digest}/${layerCount}`
    let p = configFetches.get(key)
    if (p === undefined) {
      p = fetchAndStore(request)
      configFetches.set(key, p)
      const forget = (): void => { configFetches.delete(key) }
      p.then(forget, forget)
    }
    try {
      return await p
    } catch (err) {
      // The pull that started the shared fetch was cancelled; this one was not.
      if (isJoeyError(err, 'ERR_ABORTED') || isAbortError(err)) {
        if (request.signal?.aborted === true) throw err
        return await fetchAndStore(request)
      }
      throw err
    }
  }

  async function pull (refString: string, options: PullOptions = {}): Promise<PullResult> {
    const ref = parseReference(refString)
    const name = recordName(ref)
    const plog = log.child({ ref: name })
    const emit = (event: PullEvent): void => {
      try { options.onEvent?.(event) } catch (err) { plog.warn({ err }, 'pull event listener threw') }
    }
    const { signal, authorization } = options
    const request = { ...(signal !== undefined ? { signal } : {}), ...(authorization !== undefined ? { authorization } : {}) }
    if (signal?.aborted === true) throw new JoeyError('ERR_ABORTED', `pull of ${name} aborted`, { cause: signal.reason })

    emit({ id: ref.digest ?? ref.tag ?? 'latest', status: `Pulling from ${ref.path}` })
    const lease = await store.createLease({ ttlMs: leaseTtlMs, labels: { 'io.joey.pull': name } })
    try {
      const root = await registry.getManifest(ref, request)
      const rootParsed = parseManifest(root.bytes, root.descriptor.mediaType)
      // The body's media type, not a generic Content-Type, is what the record must carry.
      const rootType = (rootParsed.kind === 'index' ? rootParsed.index.mediaType : rootParsed.manifest.mediaType) ?? root.descriptor.mediaType
      const rootDesc: Descriptor = { mediaType: rootType, digest: parseDigest(root.descriptor.digest), size: root.bytes.byteLength }
      await store.addLeaseResource(lease.id, rootDesc.digest)

      let manifestDesc = rootDesc
      let manifestBytes = root.bytes
      let manifest: Manifest
      let childIndex: number | undefined
      if (rootParsed.kind === 'index') {
        const platform = wantedPlatform(options.platform)
        const selected = selectManifest(rootParsed.index, platform)
        childIndex = rootParsed.index.manifests.findIndex(d => d.digest === selected.digest)
        if (!MANIFEST_TYPES.has(selected.mediaType)) {
          throw new JoeyError('ERR_UNSUPPORTED_MEDIA_TYPE', `index ${rootDesc.digest} points at ${selected.mediaType} for this platform, not an image manifest`, { detail: { digest: selected.digest, mediaType: selected.mediaType } })
        }
        // Content addressed: a child manifest already in the store is the one the registry has.
        await store.addLeaseResource(lease.id, selected.digest)
        const childBytes = await store.has(selected.digest)
          ? await store.readBytes(selected.digest)
          : (await registry.getManifest(parseReference(`${ref.name}@${selected.digest}`), request)).bytes
        const parsed = parseManifest(childBytes, selected.mediaType)
        if (parsed.kind !== 'manifest') throw invalid(`index ${rootDesc.digest} entry ${selected.digest} is not an image manifest`)
        manifestDesc = { ...selected, mediaType: parsed.manifest.mediaType ?? selected.mediaType, size: childBytes.byteLength }
        manifestBytes = childBytes
        manifest = parsed.manifest
      } else {
        manifest = rootParsed.manifest
      }
      validateManifest(manifest, manifestDesc.digest)
      const layers = manifest.layers.map(l => ({ ...l }))
      const configDesc = manifest.config

      // Leased before we look at what exists, so a concurrent GC cannot take what we count on.
      const digests = uniq([rootDesc.digest, manifestDesc.digest, configDesc.digest, ...layers.map(l => l.digest)])
      for (const d of digests) await store.addLeaseResource(lease.id, d)
      const existed = new Set<string>()
      for (const d of digests) if (await store.has(d)) existed.add(d)

      const configBytes = existed.has(configDesc.digest)
        ? await store.readBytes(configDesc.digest)
        : await fetchConfig(ref, configDesc, layers.length, request)
      parseConfig(configBytes, configDesc.digest, layers.length)

      const manifestLabels: Record<string, string> = { [`${GC_REF_LABEL_PREFIX}config`]: configDesc.digest }
      layers.forEach((l, i) => { manifestLabels[`${GC_REF_LABEL_PREFIX}l.${i}`] = l.digest })
      await storeWithLabels(manifestBytes, manifestDesc.digest, manifestLabels)
      if (childIndex !== undefined) {
        await storeWithLabels(root.bytes, rootDesc.digest, { [`${GC_REF_LABEL_PREFIX}m.${childIndex}`]: manifestDesc.digest })
      }

      await fetchLayers(ref, layers, existed, emit, options)

      const prior = await store.getImage(name).catch((err: unknown) => {
        if (isJoeyError(err) && err.kind === 'NotFound') return undefined
        throw err
      })
      const recordLabels: Record<string, string> = childIndex !== undefined ? { [MANIFEST_LABEL]: manifestDesc.digest } : {}
      await store.putImage({ name, target: { mediaType: rootDesc.mediaType, digest: rootDesc.digest, size: rootDesc.size }, labels: recordLabels })

      const downloaded = digests.some(d => !existed.has(d))
      const upToDate = !downloaded && prior !== undefined && prior.target.digest === rootDesc.digest &&
        prior.labels[MANIFEST_LABEL] === recordLabels[MANIFEST_LABEL]
      emit({ status: `Digest: ${rootDesc.digest}` })
      const familiar = familiarRef(ref)
      emit({ status: upToDate ? `Status: Image is up to date for ${familiar}` : `Status: Downloaded newer image for ${familiar}` })
      plog.info({ digest: rootDesc.digest, id: configDesc.digest, downloaded }, 'pulled image')
      return { name, digest: rootDesc.digest, id: configDesc.digest, manifest: manifestDesc, layers, downloaded }
    } catch (err) {
      // Read through a function: TypeScript narrowed `aborted` at the check before the try.
      if (aborted(signal) && !isJoeyError(err, 'ERR_ABORTED')) throw new JoeyError('ERR_ABORTED', `pull of ${name} aborted`, { cause: err })
      throw toJoeyError(err)
    } finally {
      await store.deleteLease(lease.id).catch((err: unknown) => { plog.warn({ err, lease: lease.id }, 'could not delete pull lease') })
    }
  }

  async function fetchLayers (ref: Reference, layers: Descriptor[], existed: Set<string>, emit: (e: PullEvent) => void, options: PullOptions): Promise<void> {
    // A manifest may list one blob twice (empty layers): it is one line and one download.
    const unique = [...new Map(layers.map(l => [l.digest, l])).values()]
    const queue = unique.filter(l => !existed.has(l.digest))
    for (const l of unique) emit({ id: shortId(l.digest), status: existed.has(l.digest) ? 'Already exists' : 'Pulling fs layer' })
    queue.forEach((l, i) => { if (i >= maxConcurrent) emit({ id: shortId(l.digest), status: 'Waiting' }) })
    if (queue.length === 0) return

    // One failed layer stops the others; their partial ingests stay for the next pull.
    const controller = new AbortController()
    const signal = options.signal !== undefined ? AbortSignal.any([options.signal, controller.signal]) : controller.signal
    const completed = queue.map(() => false)
    let flushed = 0
    let next = 0
    let failure: { err: unknown } | undefined

    const fetchOne = async (layer: Descriptor, i: number): Promise<void> => {
      const id = shortId(layer.digest)
      let lastProgress = 0
      let complete = false
      await transfer.fetchBlob(ref, layer, {
        signal,
        ...(options.authorization !== undefined ? { authorization: options.authorization } : {}),
        onProgress: (p) => {
          if (complete) return
          if (p.phase === 'downloading') {
            const now = Date.now()
            if (now - lastProgress < PROGRESS_INTERVAL_MS && p.current < p.total) return
            lastProgress = now
            emit({ id, status: 'Downloading', progressDetail: { current: p.current, total: p.total } })
          } else if (p.phase === 'verifying') {
            emit({ id, status: 'Verifying Checksum' })
          } else if (p.phase === 'done' || p.phase === 'exists') {
            complete = true
            emit({ id, status: 'Download complete' })
          }
        }
      })
      if (!complete) emit({ id, status: 'Download complete' })
      completed[i] = true
      // docker reports "Pull complete" in layer order, as its extraction is sequential.
      while (flushed < queue.length && completed[flushed] === true) {
        emit({ id: shortId(queue[flushed]!.digest), status: 'Pull complete' })
        flushed++
      }
    }

    const worker = async (): Promise<void> => {
      while (failure === undefined && next < queue.length) {
        const i = next++
        try {
          await fetchOne(queue[i]!, i)
        } catch (err) {
          if (failure === undefined) {
            failure = { err }
            controller.abort()
          }
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(maxConcurrent, queue.length) }, worker))
    if (failure !== undefined) throw failure.err
  }

  async function resolve (record: ImageRecord): Promise<Resolved> {
    const ref = parseReference(record.name)
    const target = record.target
    const parsed = parseManifest(await store.readBytes(target.digest), target.mediaType)
    let manifestDigest = target.digest
    let manifest: Manifest
    if (parsed.kind === 'index') {
      const entries = parsed.index.manifests
      let desc = entries.find(d => d.digest === record.labels[MANIFEST_LABEL])
      if (desc === undefined) {
        const present: Descriptor[] = []
        for (const d of entries) if (MANIFEST_TYPES.has(d.mediaType) && await store.has(d.digest)) present.push(d)
        if (present.length === 0) throw new JoeyError('ERR_NOT_FOUND', `no manifest of index ${target.digest} is in the store`)
        try {
          desc = selectManifest({ ...parsed.index, manifests: present }, configuredPlatform ?? defaultPlatform())
        } catch {
          desc = present[0]!
        }
      }
      manifestDigest = desc.digest
      const child = parseManifest(await store.readBytes(desc.digest), desc.mediaType)
      if (child.kind !== 'manifest') throw invalid(`index ${target.digest} entry ${desc.digest} is not an image manifest`)
      manifest = child.manifest
    } else {
      manifest = parsed.manifest
    }
    const configDigest = manifest.config.digest
    const config = parseConfig(await store.readBytes(configDigest), configDigest, manifest.layers.length)
    return { record, ref, manifestDigest, manifest, configDigest, config }
  }

  async function loadAll (): Promise<Resolved[]> {
    const out: Resolved[] = []
    for (const record of await store.listImages()) {
      try {
        out.push(await resolve(record))
      } catch (err) {
        log.warn({ err, image: record.name }, 'skipping image whose content is incomplete')
      }
    }
    return out
  }

  function summarize (group: Resolved[]): ImageSummary {
    const first = group[0]!
    const repoTags = uniq(group.filter(r => r.ref.digest === undefined).map(r => familiarRef(r.ref)))
    const repoDigests = uniq(group.filter(r => r.record.labels[TAGGED_LABEL] === undefined).map(r => `${familiarRepository(r.ref)}@${r.record.target.digest}`))
    const size = first.manifest.config.size + first.manifest.layers.reduce((n, l) => n + l.size, 0)
    return { id: first.configDigest, repoTags, repoDigests, created: createdOf(first.config), size, platform: platformOf(first.config) }
  }

  function lookupIn (all: Resolved[], nameOrId: string): Lookup {
    const s = nameOrId.trim()
    if (/^sha256:[a-f0-9]{64}$/.test(s)) {
      const matches = all.filter(r => r.configDigest === s)
      if (matches.length > 0) return { kind: 'id', matches }
    }
    let ref: Reference | undefined
    try { ref = parseReference(s) } catch {}
    if (ref !== undefined) {
      const key = recordName(ref)
      let matches = all.filter(r => r.record.name === key)
      // repo@digest also finds an image pulled by tag whose RepoDigests list that digest.
      if (matches.length === 0 && ref.digest !== undefined) {
        const d = ref.digest
        matches = all.filter(r => r.ref.name === ref.name && (r.record.target.digest === d || r.manifestDigest === d))
      }
      if (matches.length > 0) return { kind: 'name', matches }
    }
    const hex = s.startsWith('sha256:') ? s.slice('sha256:'.length) : s
    if (hex.length >= MIN_ID_PREFIX && /^[a-f0-9]+$/.test(hex)) {
      const ids = uniq(all.filter(r => r.configDigest.slice('sha256:'.length).startsWith(hex)).map(r => r.configDigest))
      if (ids.length > 1) {
        throw new JoeyError('ERR_INVALID_ARGUMENT', `ambiguous image id prefix "${s}": it matches ${ids.length} images`, { detail: { image: s } })
      }
      if (ids.length === 1) return { kind: 'id', matches: all.filter(r => r.configDigest === ids[0]) }
    }
    throw notFound(nameOrId)
  }

  async function list (): Promise<ImageSummary[]> {
    const groups = new Map<string, Resolved[]>()
    for (const r of await loadAll()) {
      const g = groups.get(r.configDigest)
      if (g === undefined) groups.set(r.configDigest, [r])
      else g.push(r)
    }
    return [...groups.values()].map(summarize).sort((a, b) => b.created - a.created || a.id.localeCompare(b.id))
  }

  async function inspect (nameOrId: string): Promise<ImageDetail> {
    const all = await loadAll()
    const found = lookupIn(all, nameOrId)
    const chosen = found.matches[0]!
    const summary = summarize(all.filter(r => r.configDigest === chosen.configDigest))
    const rootfs = chosen.config.rootfs as { type?: unknown, diff_ids: string[] }
    return {
      ...summary,
      manifestDigest: chosen.manifestDigest,
      config: chosen.config,
      layers: chosen.manifest.layers,
      rootfs: { type: typeof rootfs.type === 'string' ? rootfs.type : 'layers', diff_ids: [...rootfs.diff_ids] }
    }
  }

  async function remove (nameOrId: string, options: { force?: boolean } = {}): Promise<RemoveResult> {
    const all = await loadAll()
    let found: Lookup
    try {
      found = lookupIn(all, nameOrId)
    } catch (err) {
      // A record whose blobs are gone cannot be resolved, but its name can still be removed.
      if (!isJoeyError(err, 'ERR_IMAGE_NOT_FOUND')) throw err
      const stale = await staleRecord(nameOrId)
      if (stale === undefined) throw err
      await store.deleteImage(stale.name)
      const gc = await store.gc()
      return { untagged: [familiarRef(parseReference(stale.name))], deleted: gc.removedBlobs }
    }
    const id = found.matches[0]!.configDigest
    if (found.kind === 'id' && options.force !== true && uniq(found.matches.map(r => r.ref.name)).length > 1) {
      throw new JoeyError('ERR_IN_USE', `conflict: unable to delete ${shortId(id)} (must be forced) - image is referenced in multiple repositories`, { detail: { id } })
    }
    const untagged: string[] = []
    for (const r of found.matches) {
      await store.deleteImage(r.record.name)
      untagged.push(familiarRef(r.ref))
    }
    // docker also reports the repo digest once no name of that repository points at it.
    const gone = new Set(found.matches.map(r => r.record.name))
    const remaining = all.filter(r => !gone.has(r.record.name))
    for (const r of found.matches) {
      if (r.ref.digest !== undefined || r.record.labels[TAGGED_LABEL] !== undefined) continue
      const repoDigest = `${familiarRepository(r.ref)}@${r.record.target.digest}`
      const stillNamed = remaining.some(o => o.ref.name === r.ref.name && o.record.target.digest === r.record.target.digest)
      if (!stillNamed && !untagged.includes(repoDigest)) untagged.push(repoDigest)
    }
    const gc = await store.gc()
    const deleted = [...gc.removedBlobs].sort((a, b) => (a === id ? -1 : b === id ? 1 : 0))
    log.info({ image: nameOrId, untagged, deleted: deleted.length }, 'removed image')
    return { untagged, deleted }
  }

  async function tag (source: string, target: string): Promise<void> {
    const ref = parseReference(target)
    if (ref.digest !== undefined) {
      throw new JoeyError('ERR_INVALID_REFERENCE', `refusing to create a tag with a digest reference: ${target}`, { detail: { reference: target } })
    }
    const chosen = lookupIn(await loadAll(), source).matches[0]!
    // The record keeps the source's target and platform choice, so both names are one image.
    await store.putImage({ name: recordName(ref), target: chosen.record.target, labels: { ...chosen.record.labels, [TAGGED_LABEL]: 'true' } })
    log.info({ image: source, name: familiarRef(ref), id: chosen.configDigest }, 'tagged image')
  }

  async function staleRecord (nameOrId: string): Promise<ImageRecord | undefined> {
    let ref: Reference
    try { ref = parseReference(nameOrId) } catch { return undefined }
    try {
      return await store.getImage(recordName(ref))
    } catch (err) {
      if (isJoeyError(err) && err.kind === 'NotFound') return undefined
      throw err
    }
  }

  return { pull, list, inspect, remove, tag }
}
