/**
 * The image routes of the Engine API: pull (POST /images/create, streamed progress), list,
 * inspect and remove, in dockerd's shapes. Names in paths keep their slashes and colons
 * (/images/127.0.0.1:5000/busybox:latest/json), so those routes are wildcards parsed here.
 */
import { PassThrough } from 'node:stream'
import { Type, type Static } from '@sinclair/typebox'
import type { FastifyInstance, FastifyReply } from 'fastify'
import { JoeyError, toJoeyError, type Logger } from '../../common/index.js'
import { parsePlatform, parseReference } from '../../distribution/index.js'
import type { ImageDetail, ImageService, ImageSummary, PullEvent } from '../../image/index.js'
import { PULL_HOLD_EVENTS } from '../constants.js'
import { toEngineError } from '../errors.js'
import type { AgentMetrics } from '../metrics.js'
import { decodeRegistryAuth, registryAuthorization } from './auth.js'
import { errorMessageLine, toJsonMessage } from './progress.js'

export interface ImageRoutesComponents {
  logger: Logger
  images: ImageService
  metrics: AgentMetrics
  /** Storage driver name for GraphDriver in inspect. */
  driver: string
  /** Aborted on shutdown: in-flight pulls stop and keep their partial data. */
  signal?: AbortSignal
}

// Every parameter arrives as a string; dockerd's boolean parsing is applied in the handler.
const QueryFlag = Type.Optional(Type.String({ maxLength: 16 }))

const PullQuery = Type.Object({
  fromImage: Type.Optional(Type.String({ maxLength: 1024 })),
  tag: Type.Optional(Type.String({ maxLength: 256 })),
  platform: Type.Optional(Type.String({ maxLength: 256 })),
  fromSrc: Type.Optional(Type.String({ maxLength: 4096 })),
  repo: Type.Optional(Type.String({ maxLength: 1024 })),
  message: Type.Optional(Type.String({ maxLength: 4096 }))
})
type PullQuery = Static<typeof PullQuery>

const ListQuery = Type.Object({
  all: QueryFlag,
  digests: QueryFlag,
  'shared-size': QueryFlag,
  manifests: QueryFlag,
  filters: Type.Optional(Type.String({ maxLength: 8192 }))
})
type ListQuery = Static<typeof ListQuery>

const NameParams = Type.Object({ '*': Type.String({ maxLength: 2048 }) })
type NameParams = Static<typeof NameParams>

const DeleteQuery = Type.Object({ force: QueryFlag, noprune: QueryFlag })
type DeleteQuery = Static<typeof DeleteQuery>
const TagQuery = Type.Object({ repo: Type.Optional(Type.String()), tag: Type.Optional(Type.String()) })
type TagQuery = Static<typeof TagQuery>

/** dockerd's httputils.BoolValue: anything but "", 0, no, false and none is true. */
export function boolValue (value: string | undefined): boolean {
  if (value === undefined) return false
  return !['', '0', 'no', 'false', 'none'].includes(value.trim().toLowerCase())
}

function badParameter (message: string, detail?: Record<string, unknown>): JoeyError {
  return new JoeyError('ERR_INVALID_ARGUMENT', message, detail !== undefined ? { detail } : {})
}

/**
 * The reference a pull of fromImage + tag names. A digest in `tag` pins the pull to it; a
 * tag replaces one in fromImage, as dockerd's WithTag does. No tag at all asks dockerd for
 * every tag of the repository, which joeyd does not do.
 */
export function pullReference (fromImage: string | undefined, tag: string | undefined): string {
  const image = fromImage?.trim() ?? ''
  if (image === '') throw badParameter('fromImage is required: the repository to pull, e.g. busybox or registry:5000/app')
  const at = image.indexOf('@')
  const colon = image.lastIndexOf(':')
  const hasDigest = at !== -1
  const hasTag = !hasDigest && colon > image.lastIndexOf('/')
  let name = image
  if (tag !== undefined && tag !== '') {
    if (hasDigest) throw badParameter(`fromImage "${image}" already names a digest; do not also give tag "${tag}"`)
    const repo = hasTag ? image.slice(0, colon) : image
    name = tag.includes(':') ? `${repo}@${tag}` : `${repo}:${tag}`
  } else if (!hasDigest && !hasTag) {
    throw badParameter(`pulling every tag of ${image} is not supported: give a tag or a digest (tag=latest)`)
  }
  // Rejects bad names with ERR_INVALID_REFERENCE (400) before anything is streamed.
  parseReference(name)
  return name
}

/** Shell-style pattern (docker's path.Match subset: * and ?) as an anchored regex. */
function globRegex (pattern: string): RegExp {
  const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')
  return new RegExp(`^${body}$`)
}

function repoOf (ref: string): string {
  const at = ref.indexOf('@')
  if (at !== -1) return ref.slice(0, at)
  const colon = ref.lastIndexOf(':')
  return colon > ref.lastIndexOf('/') ? ref.slice(0, colon) : ref
}

interface ImageFilters {
  reference: RegExp[]
  dangling?: boolean
  label: Array<{ key: string, value?: string }>
}

/** Parses docker's filters JSON: {"reference":{"busybox":true}} or the older {"reference":["busybox"]}. */
export function parseImageFilters (raw: string | undefined): ImageFilters {
  const out: ImageFilters = { reference: [], label: [] }
  if (raw === undefined || raw.trim() === '') return out
  let parsed: unknown
  try {
    parsed = JSON.parse(raw)
  } catch {
    throw badParameter(`invalid filters: ${JSON.stringify(raw.slice(0, 100))} is not JSON`)
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw badParameter('invalid filters: expected a JSON object')
  for (const [key, value] of Object.entries(parsed as Record<string, unknown>)) {
    let values: string[]
    if (Array.isArray(value) && value.every(v => typeof v === 'string')) values = value
    else if (value !== null && typeof value === 'object' && !Array.isArray(value)) values = Object.entries(value).filter(([, on]) => on === true).map(([k]) => k)
    else throw badParameter(`invalid filter '${key}': expected a list or a map of values`)
    switch (key) {
      case 'reference':
        out.reference.push(...values.map(globRegex))
        break
      case 'dangling':
        for (const v of values) {
          if (!['true', 'false', '1', '0'].includes(v.toLowerCase())) throw badParameter(`invalid filter 'dangling=${v}'`)
          out.dangling = v === 'true' || v === '1'
        }
        break
      case 'label':
        for (const v of values) {
          const eq = v.indexOf('=')
          out.label.push(eq === -1 ? { key: v } : { key: v.slice(0, eq), value: v.slice(eq + 1) })
        }
        break
      case 'before':
      case 'since':
      case 'until':
        throw badParameter(`filter '${key}' is not supported by joeyd`)
      default:
        throw badParameter(`invalid filter '${key}'`)
    }
  }
  return out
}

function matchesFilters (summary: ImageSummary, labels: Record<string, string>, f: ImageFilters): boolean {
  if (f.dangling !== undefined && (summary.repoTags.length === 0) !== f.dangling) return false
  if (f.reference.length > 0) {
    const refs = [...summary.repoTags, ...summary.repoDigests]
    if (!f.reference.some(re => refs.some(r => re.test(r) || re.test(repoOf(r))))) return false
  }
  for (const l of f.label) {
    if (!(l.key in labels)) return false
    if (l.value !== undefined && labels[l.key] !== l.value) return false
  }
  return true
}

function labelsOf (config: Record<string, any> | undefined): Record<string, string> {
  const labels = config?.config?.Labels
  return labels !== null && typeof labels === 'object' ? labels as Record<string, string> : {}
}

/** docker's ImageSummary. */
function summaryView (s: ImageSummary, labels: Record<string, string>): Record<string, unknown> {
  return {
    Id: s.id,
    ParentId: '',
    RepoTags: s.repoTags,
    RepoDigests: s.repoDigests,
    Created: s.created,
    Size: s.size,
    SharedSize: -1,
    VirtualSize: s.size,
    Labels: labels,
    Containers: -1
  }
}

/** docker's container.Config from an OCI image config's "config". */
function containerConfig (c: Record<string, any> | undefined): Record<string, unknown> {
  const cfg = c ?? {}
  const out: Record<string, unknown> = {
    Hostname: '',
    Domainname: '',
    User: cfg.User ?? '',
    AttachStdin: false,
    AttachStdout: false,
    AttachStderr: false
  }
  if (cfg.ExposedPorts !== undefined) out.ExposedPorts = cfg.ExposedPorts
  Object.assign(out, {
    Tty: false,
    OpenStdin: false,
    StdinOnce: false,
    Env: cfg.Env ?? null,
    Cmd: cfg.Cmd ?? null,
    Image: '',
    Volumes: cfg.Volumes ?? null,
    WorkingDir: cfg.WorkingDir ?? '',
    Entrypoint: cfg.Entrypoint ?? null,
    OnBuild: null,
    Labels: cfg.Labels ?? null
  })
  if (cfg.StopSignal !== undefined) out.StopSignal = cfg.StopSignal
  return out
}

/** docker's ImageInspect (API 1.43). */
function inspectView (d: ImageDetail, driver: string): Record<string, unknown> {
  const c = d.config
  const out: Record<string, unknown> = {
    Id: d.id,
    RepoTags: d.repoTags,
    RepoDigests: d.repoDigests,
    Parent: '',
    Comment: typeof c.comment === 'string' ? c.comment : '',
    Created: typeof c.created === 'string' ? c.created : '',
    DockerVersion: typeof c.docker_version === 'string' ? c.docker_version : '',
    Author: typeof c.author === 'string' ? c.author : '',
    Config: containerConfig(c.config),
    Architecture: d.platform.architecture,
    Os: d.platform.os,
    Size: d.size,
    VirtualSize: d.size,
    GraphDriver: { Data: null, Name: driver },
    RootFS: { Type: d.rootfs.type, Layers: d.rootfs.diff_ids },
    Metadata: { LastTagTime: '0001-01-01T00:00:00Z' }
  }
  if (d.platform.variant !== undefined) out.Variant = d.platform.variant
  return out
}

function imageName (params: NameParams, suffix: string): string | undefined {
  const path = params['*']
  if (suffix !== '') {
    if (!path.endsWith(suffix)) return undefined
    return path.slice(0, -suffix.length)
  }
  return path
}

function notFoundRoute (reply: FastifyReply): FastifyReply {
  return reply.status(404).type('application/json').send({ message: 'page not found' })
}

export function imageRoutes (components: ImageRoutesComponents): (app: FastifyInstance) => Promise<void> {
  const { images, metrics, driver } = components
  const log = components.logger.child({ component: 'api' })

  return async (app) => {
    app.post('/images/create', { schema: { querystring: PullQuery } }, async (request, reply) => {
      const q = request.query as PullQuery
      if (q.fromSrc !== undefined && q.fromSrc !== '') throw badParameter('importing images (fromSrc) is not supported by joeyd')
      const name = pullReference(q.fromImage, q.tag)
      const platform = q.platform !== undefined && q.platform.trim() !== '' ? q.platform.trim() : undefined
      if (platform !== undefined) parsePlatform(platform)
      const authorization = registryAuthorization(decodeRegistryAuth(request.headers['x-registry-auth']))

      // The pull stops when the client goes away or the daemon shuts down.
      const gone = new AbortController()
      reply.raw.on('close', () => { if (!reply.raw.writableFinished) gone.abort(new JoeyError('ERR_ABORTED', 'client disconnected')) })
      const signal = components.signal !== undefined ? AbortSignal.any([gone.signal, components.signal]) : gone.signal

      const out = new PassThrough()
      const held: string[] = []
      let streaming = false
      let release!: () => void
      const released = new Promise<void>((resolve) => { release = resolve })
      const send = (line: string): void => {
        if (!out.destroyed && !out.writableEnded) out.write(line)
      }
      const onEvent = (event: PullEvent): void => {
        const line = `${JSON.stringify(toJsonMessage(event))}\n`
        if (streaming) return send(line)
        held.push(line)
        // Past the first line the manifest has resolved: from here on, failures go in the stream.
        if (held.length > PULL_HOLD_EVENTS) release()
      }

      metrics.pulls.inc()
      const plog = log.child({ ref: name })
      const pulling = images.pull(name, {
        signal,
        onEvent,
        ...(platform !== undefined ? { platform } : {}),
        ...(authorization !== undefined ? { authorization } : {})
      })
      const failed = (err: unknown): JoeyError => {
        const e = toJoeyError(err)
        metrics.pullFailures.inc({ code: e.code })
        if (e.code === 'ERR_ABORTED') plog.info({ err: e }, 'pull aborted')
        else plog.warn({ err: e }, 'pull failed')
        return e
      }
      const first = await Promise.race([
        released.then(() => 'stream' as const),
        pulling.then(() => 'stream' as const, () => 'failed' as const)
      ])
      if (first === 'failed') {
        // Nothing was sent yet: the client gets a real status code.
        try { await pulling } catch (err) { throw failed(err) }
      }

      streaming = true
      for (const line of held) send(line)
      pulling.then(() => { out.end() }, (err: unknown) => {
        const e = failed(err)
        if (!out.destroyed && !out.writableEnded) out.end(`${JSON.stringify(errorMessageLine(e.message, toEngineError(e).status))}\n`)
      })
      return reply.type('application/json').send(out)
    })

    app.get('/images/json', { schema: { querystring: ListQuery } }, async (request) => {
      const q = request.query as ListQuery
      const filters = parseImageFilters(q.filters)
      const summaries = await images.list()
      const out: Array<Record<string, unknown>> = []
      for (const s of summaries) {
        // Labels live in the image config, which list() does not return.
        const detail = await images.inspect(s.id).catch(() => undefined)
        const labels = labelsOf(detail?.config)
        if (!matchesFilters(s, labels, filters)) continue
        out.push(summaryView(s, labels))
      }
      return out
    })

    app.get('/images/*', { schema: { params: NameParams } }, async (request, reply) => {
      const name = imageName(request.params as NameParams, '/json')
      if (name === undefined || name === '') return notFoundRoute(reply)
      return inspectView(await images.inspect(name), driver)
    })

    // docker tag: POST /images/{name}/tag?repo=&tag= answers 201 without a body.
    app.post('/images/*', { schema: { params: NameParams, querystring: TagQuery } }, async (request, reply) => {
      const name = imageName(request.params as NameParams, '/tag')
      if (name === undefined || name === '') return notFoundRoute(reply)
      const q = request.query as TagQuery
      if (q.repo === undefined || q.repo === '') throw new JoeyError('ERR_INVALID_ARGUMENT', 'repository name (repo) is required to tag an image')
      await images.tag(name, q.tag !== undefined && q.tag !== '' ? `${q.repo}:${q.tag}` : q.repo)
      return reply.status(201).send()
    })

    app.delete('/images/*', { schema: { params: NameParams, querystring: DeleteQuery } }, async (request, reply) => {
      const name = imageName(request.params as NameParams, '')
      if (name === undefined || name === '') return notFoundRoute(reply)
      const q = request.query as DeleteQuery
      const result = await images.remove(name, { force: boolValue(q.force) })
      return [
        ...result.untagged.map(u => ({ Untagged: u })),
        ...result.deleted.map(d => ({ Deleted: d }))
      ]
    })
  }
}
