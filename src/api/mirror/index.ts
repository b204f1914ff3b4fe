/**
 * The registry mirror: the read side of the OCI distribution API, for containerd, podman,
 * skopeo and dockerd configured with joeyd as a mirror.
 *
 * - Which upstream: containerd adds `?ns=<registry>`; without it, a first path component
 *   that names a registry (`/v2/registry.example.com/app/…`, podman's mirror-with-path
 *   form) selects it; otherwise the configured default upstream (docker.io). That upstream
 *   also stands in for Docker Hub when a request names it (`?ns=docker.io`).
 * - Tags are always resolved at the upstream. Only if it is unreachable and the operator
 *   allowed stale tags is a tag answered from a local image record.
 * - Blobs come from the content store, or stream through the transfer manager as pieces
 *   are verified; a blob that fails verification is cut off, never finished.
 * - A client's Authorization header is used for that request's upstream calls only.
 * - Errors use the distribution spec's JSON; statuses are chosen so that containerd moves
 *   on to its next host when Joey cannot serve (see docs/mirror.md).
 */
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { pipeline } from 'node:stream/promises'
import { JoeyError, errorMessage, httpStatus, isDigest, isJoeyError, toJoeyError, type Logger } from '../../common/index.js'
import type { ContentStore } from '../../content/index.js'
import { parseManifest, parseReference, type Reference, type RegistryClient } from '../../distribution/index.js'
import type { P2PTransfer } from '../../transfer/index.js'

export interface MirrorInit {
  /** Upstream used when a request names none (containerd's ?ns= or a registry path prefix). */
  defaultUpstream?: string
  /** Answer tags from local image records when the upstream is unreachable. */
  allowStaleTags?: boolean
}

export interface MirrorComponents {
  logger: Logger
  contentStore: ContentStore
  registry: RegistryClient
  transfer: P2PTransfer
  metrics?: MirrorMetrics
}

export interface MirrorMetrics {
  request: (kind: 'manifest' | 'blob' | 'base', status: number) => void
  bytesServed: (n: number) => void
}

const NAME_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/
const TAG_RE = /^\w[\w.-]{0,127}$/
/** Names containerd and podman may give Docker Hub; all of them mean the configured upstream. */
const DOCKER_HUB_NAMES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io'])
const HOST_RE = /^(?:localhost|[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+|\[[0-9a-fA-F:]+\])(?::\d+)?$|^[a-zA-Z0-9-]+:\d+$/

/** OCI distribution error codes by Joey error code. */
function ociCode (err: JoeyError): string {
  switch (err.code) {
    case 'ERR_MANIFEST_UNKNOWN': return 'MANIFEST_UNKNOWN'
    case 'ERR_BLOB_UNKNOWN': return 'BLOB_UNKNOWN'
    case 'ERR_NAME_UNKNOWN': return 'NAME_UNKNOWN'
    case 'ERR_INVALID_REFERENCE': return 'NAME_INVALID'
    case 'ERR_INVALID_DIGEST': return 'DIGEST_INVALID'
    case 'ERR_DIGEST_MISMATCH': return 'DIGEST_INVALID'
    case 'ERR_MANIFEST_INVALID': return 'MANIFEST_INVALID'
    case 'ERR_UNSUPPORTED_MEDIA_TYPE': return 'MANIFEST_INVALID'
    case 'ERR_UNAUTHORIZED':
    case 'ERR_AUTH_CHALLENGE': return 'UNAUTHORIZED'
    case 'ERR_INVALID_ARGUMENT': return 'UNSUPPORTED'
    case 'ERR_REGISTRY_UNAVAILABLE':
    case 'ERR_REGISTRY_TIMEOUT':
    case 'ERR_UNAVAILABLE': return 'UNAVAILABLE'
    case 'ERR_LIMIT_EXCEEDED':
    case 'ERR_MANIFEST_TOO_LARGE': return 'SIZE_INVALID'
    default: return 'UNKNOWN'
  }
}

/** Status for the mirror: upstream data errors become 502 so the client tries its next host. */
function mirrorStatus (err: JoeyError): number {
  if (err.code === 'ERR_INVALID_REFERENCE' || err.code === 'ERR_INVALID_DIGEST') return 400
  if (err.kind === 'DataLoss') return 502
  if (err.kind === 'Aborted') return 503
  return httpStatus(err)
}

function sendError (reply: FastifyReply, err: unknown, head: boolean): FastifyReply {
  const e = toJoeyError(err)
  const status = mirrorStatus(e)
  reply.status(status).header('content-type', 'application/json')
  const challenge = e.detail?.challenge
  if (status === 401 && typeof challenge === 'string') reply.header('www-authenticate', challenge)
  if (head) return reply.send()
  return reply.send({ errors: [{ code: ociCode(e), message: e.message, detail: { code: e.code } }] })
}

interface Target { ref: Reference, name: string }

/** Parses `/v2/<name>/<kind>/<reference>` and picks the upstream. */
function target (name: string, reference: string, ns: string | undefined, init: MirrorInit, kind: 'manifests' | 'blobs'): Target {
  let upstream = ns
  let repo = name
  const first = name.split('/')[0] as string
  if (upstream === undefined && name.includes('/') && HOST_RE.test(first)) {
    upstream = first
    repo = name.slice(first.length + 1)
  }
  // A request naming no registry is a Docker Hub request (dockerd mirrors only Docker Hub), so
  // the configured upstream stands in for Docker Hub: a request that names Docker Hub
  // (containerd's ?ns=docker.io) must go to the same place, or the operator's choice of
  // upstream (a pull-through cache, an air-gapped copy) would hold for dockerd only.
  if (upstream === undefined || DOCKER_HUB_NAMES.has(upstream)) upstream = init.defaultUpstream ?? 'docker.io'
  if (!HOST_RE.test(upstream) && upstream !== 'docker.io') throw new JoeyError('ERR_INVALID_REFERENCE', `invalid upstream registry "${upstream}"`)
  if (!NAME_RE.test(repo) || repo.length > 255) throw new JoeyError('ERR_INVALID_REFERENCE', `invalid repository name "${repo}"`)
  if (kind === 'blobs' || reference.includes(':')) {
    if (!isDigest(reference)) throw new JoeyError('ERR_INVALID_DIGEST', `invalid digest "${reference}"`)
    return { ref: parseReference(`${upstream}/${repo}@${reference}`), name: repo }
  }
  if (!TAG_RE.test(reference)) throw new JoeyError('ERR_INVALID_REFERENCE', `invalid tag "${reference}"`)
  return { ref: parseReference(`${upstream}/${repo}:${reference}`), name: repo }
}

function parseRange (header: string | undefined, size: number): { start: number, end: number } | undefined | 'invalid' {
  if (header === undefined) return undefined
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (m === null) return 'invalid'
  const [, a, b] = m as unknown as [string, string, string]
  if (a === '' && b === '') return 'invalid'
  let start: number
  let end: number
  if (a === '') {
    const suffix = Number(b)
    start = Math.max(0, size - suffix)
    end = size - 1
  } else {
    start = Number(a)
    end = b === '' ? size - 1 : Math.min(Number(b), size - 1)
  }
  if (start > end || start >= size) return 'invalid'
  return { start, end }
}

export function mirrorApi (init: MirrorInit, components: MirrorComponents): FastifyPluginAsync {
  const { logger, contentStore, registry, transfer, metrics } = components
  const log = logger.child({ component: 'mirror' })

  async function manifest (req: FastifyRequest<{ Params: { '*': string }, Querystring: { ns?: string } }>, reply: FastifyReply, head: boolean, name: string, reference: string): Promise<FastifyReply> {
    const { ref } = target(name, reference, req.query.ns, init, 'manifests')
    const authorization = req.headers.authorization
    const auth = authorization !== undefined ? { authorization } : {}
    if (ref.digest !== undefined && await contentStore.has(ref.digest)) {
      const bytes = await contentStore.readBytes(ref.digest, 4 * 1024 * 1024)
      const mediaType = (JSON.parse(bytes.toString('utf8')) as { mediaType?: string }).mediaType
      const parsed = parseManifest(bytes, mediaType)
      const type = mediaType ?? (parsed.kind === 'index' ? 'application/vnd.oci.image.index.v1+json' : 'application/vnd.oci.image.manifest.v1+json')
      reply.header('content-type', type).header('docker-content-digest', ref.digest).header('content-length', bytes.length)
      metrics?.request('manifest', 200)
      return head ? reply.send() : reply.send(bytes)
    }
    try {
      if (head) {
        const desc = await registry.headManifest(ref, auth)
        reply.header('content-type', desc.mediaType).header('docker-content-digest', desc.digest).header('content-length', desc.size)
        metrics?.request('manifest', 200)
        return reply.send()
      }
      const { descriptor, bytes } = await registry.getManifest(ref, auth)
      reply.header('content-type', descriptor.mediaType).header('docker-content-digest', descriptor.digest).header('content-length', bytes.length)
      metrics?.request('manifest', 200)
      return reply.send(bytes)
    } catch (err) {
      if (init.allowStaleTags === true && ref.tag !== undefined && isJoeyError(err) && err.kind === 'Unavailable') {
        const image = await contentStore.getImage(ref.toString()).catch(() => undefined)
        if (image !== undefined) {
          log.warn({ ref: ref.toString(), err: errorMessage(err) }, 'upstream unreachable; answering a tag from the local image record')
          const bytes = await contentStore.readBytes(image.target.digest)
          reply.header('content-type', image.target.mediaType).header('docker-content-digest', image.target.digest).header('content-length', bytes.length).header('warning', '110 joey "stale: upstream unreachable"')
          return head ? reply.send() : reply.send(bytes)
        }
      }
      throw err
    }
  }

  async function blob (req: FastifyRequest<{ Params: { '*': string }, Querystring: { ns?: string } }>, reply: FastifyReply, head: boolean, name: string, digest: string): Promise<FastifyReply> {
    const { ref } = target(name, digest, req.query.ns, init, 'blobs')
    const authorization = req.headers.authorization
    const auth = authorization !== undefined ? { authorization } : {}
    let size: number
    if (await contentStore.has(digest)) {
      size = (await contentStore.info(digest)).size
    } else {
      size = (await registry.headBlob(ref, digest, auth)).size
    }
    reply.header('docker-content-digest', digest).header('accept-ranges', 'bytes').header('content-type', 'application/octet-stream')
    const range = parseRange(req.headers.range, size)
    if (range === 'invalid') {
      reply.header('content-range', `bytes */${size}`)
      throw new JoeyError('ERR_INVALID_ARGUMENT', `unsatisfiable range ${req.headers.range ?? ''} for a blob of ${size} bytes`, { detail: { status: 416 } })
    }
    const length = range !== undefined ? range.end - range.start + 1 : size
    reply.header('content-length', length)
    if (range !== undefined) reply.status(206).header('content-range', `bytes ${range.start}-${range.end}/${size}`)
    if (head) {
      metrics?.request('blob', range !== undefined ? 206 : 200)
      return reply.send()
    }
    const controller = new AbortController()
    req.raw.once('close', () => { if (!reply.raw.writableFinished) controller.abort() })
    const stream = await transfer.openBlob(ref, { mediaType: 'application/octet-stream', digest, size }, {
      ...(range !== undefined ? { start: range.start, end: range.end } : {}),
      signal: controller.signal,
      ...auth
    })
    metrics?.request('blob', range !== undefined ? 206 : 200)
    reply.hijack()
    const res = reply.raw
    res.writeHead(reply.statusCode, reply.getHeaders() as Record<string, string>)
    let sent = 0
    stream.on('data', (c: Buffer) => { sent += c.length })
    try {
      await pipeline(stream, res)
      metrics?.bytesServed(sent)
    } catch (err) {
      // Cut the connection: a short body tells the client the transfer failed, so it
      // never sees a complete blob that was not verified.
      log.warn({ digest, sent, err: errorMessage(err) }, 'blob stream to client aborted')
      res.destroy()
    }
    return reply
  }

  return async (app: FastifyInstance) => {
    app.setErrorHandler((err, req, reply) => {
      const e = err as { validation?: unknown, statusCode?: number }
      const head = req.method === 'HEAD'
      if (isJoeyError(err) && err.detail?.status === 416) {
        reply.status(416).header('content-type', 'application/json')
        return head ? reply.send() : reply.send({ errors: [{ code: 'RANGE_INVALID', message: err.message }] })
      }
      const status = isJoeyError(err) ? mirrorStatus(err) : (e.statusCode ?? 500)
      metrics?.request(req.url.includes('/blobs/') ? 'blob' : 'manifest', status)
      if (!isJoeyError(err) && status >= 500) log.error({ err, url: req.url }, 'mirror request failed')
      return sendError(reply, err, head)
    })
    app.setNotFoundHandler((req, reply) => sendError(reply, new JoeyError('ERR_NOT_FOUND', `${req.method} ${req.url.split('?')[0] ?? ''} is not part of the registry API Joey mirrors`), req.method === 'HEAD'))
    app.addHook('onSend', async (_req, reply) => { reply.header('docker-distribution-api-version', 'registry/2.0') })

    const base = async (_req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
      metrics?.request('base', 200)
      return reply.header('content-type', 'application/json').send('{}')
    }
    app.get('/v2/', { exposeHeadRoute: false }, base)
    app.head('/v2/', base)
    app.get('/v2', { exposeHeadRoute: false }, base)

    const route = (head: boolean) => async (req: FastifyRequest<{ Params: { '*': string }, Querystring: { ns?: string } }>, reply: FastifyReply): Promise<FastifyReply> => {
      const path = req.params['*']
      const m = /^(.+)\/(manifests|blobs)\/([^/]+)$/.exec(path)
      if (m === null) throw new JoeyError('ERR_NOT_FOUND', `${req.method} /v2/${path} is not part of the registry API Joey mirrors`)
      const [, name, kind, reference] = m as unknown as [string, string, string, string]
      return kind === 'manifests'
        ? await manifest(req, reply, head, name, reference)
        : await blob(req, reply, head, name, reference)
    }
    app.get('/v2/*', { exposeHeadRoute: false }, route(false))
    app.head('/v2/*', route(true))
    app.route({ method: ['POST', 'PUT', 'PATCH', 'DELETE'], url: '/v2/*', handler: async (req, reply) => {
      reply.status(405).header('content-type', 'application/json')
      return reply.send({ errors: [{ code: 'UNSUPPORTED', message: `${req.method}: the Joey mirror is read-only; push to the registry itself` }] })
    } })
  }
}
