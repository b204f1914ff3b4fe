import { Pool, type Dispatcher } from 'undici'
import { JoeyError, isAbortError, type AbortOptions, type ErrorCode, type Logger } from '../common/index.js'
import { CONNECT_TIMEOUT_MS, REQUEST_TIMEOUT_MS } from './constants.js'
import { parseHost, type HostSpec } from './host.js'
import { parseJsonStream } from './json-stream.js'
import { CLIENT_NAME, CLIENT_VERSION } from './meta.js'
import type { ImageDeleteResponseItem, ImageInspect, ImageSummary, JSONMessage, PingResult, ServerVersion } from './types.js'

export interface EngineClientInit {
  /** unix:///path or tcp://host:port, or an already parsed address. */
  host: string | HostSpec
  logger?: Logger
  connectTimeoutMs?: number
  /** Limit for plain request/response calls; streaming calls are not limited. */
  requestTimeoutMs?: number
}

export interface ListImagesOptions extends AbortOptions {
  /** Include intermediate images (docker's -a). */
  all?: boolean
  /** Ask for RepoDigests (older daemons leave them out unless asked). */
  digests?: boolean
}

export interface PullImageParams {
  /** Repository as docker's client sends it: the familiar name, e.g. busybox or host:5000/app. */
  fromImage: string
  /** A tag or a digest. */
  tag?: string
  /** os/arch[/variant]. */
  platform?: string
}

export interface PullImageOptions extends AbortOptions {
  /** Base64url JSON auth config, sent as X-Registry-Auth. */
  registryAuth?: string
}

export interface RemoveImageOptions extends AbortOptions {
  force?: boolean
  noPrune?: boolean
}

export interface RequestInit extends AbortOptions {
  query?: Record<string, string | undefined>
  headers?: Record<string, string>
  /** Sent as JSON. */
  body?: unknown
  /** Streaming responses (pulls) may stay quiet for long stretches while layers download. */
  streaming?: boolean
}

/** Path for an image name: slashes and colons stay literal, as docker's client sends them. */
export function imagePath (name: string, suffix = ''): string {
  const escaped = encodeURIComponent(name).replace(/%2F/gi, '/').replace(/%3A/gi, ':').replace(/%40/g, '@')
  return `/images/${escaped}${suffix}`
}

/** Maps an Engine API status to the error code the CLI reports, following docker's errdefs. */
export function statusErrorCode (status: number): ErrorCode {
  switch (status) {
    case 400: return 'ERR_INVALID_ARGUMENT'
    case 401:
    case 403: return 'ERR_UNAUTHORIZED'
    case 404: return 'ERR_NOT_FOUND'
    case 409: return 'ERR_IN_USE'
    case 412: return 'ERR_FAILED_PRECONDITION'
    case 502:
    case 503:
    case 504: return 'ERR_UNAVAILABLE'
    default: return 'ERR_INTERNAL'
  }
}

const CONNECT_ERRORS = new Set(['ENOENT', 'ECONNREFUSED', 'ENOTSOCK', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT'])
const DROP_ERRORS = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE', 'UND_ERR_CLOSED'])
const TIMEOUT_ERRORS = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])

/** A small typed client of joeyd's (and dockerd's) Engine API. */
export class EngineClient {
  readonly host: HostSpec
  // A pool, not one connection: a foreground `run` keeps a wait and a log stream open
  // while it starts the container.
  private readonly dispatcher: Pool
  protected readonly logger?: Logger
  private readonly requestTimeoutMs: number

  constructor (init: EngineClientInit) {
    this.host = typeof init.host === 'string' ? parseHost(init.host) : init.host
    this.logger = init.logger
    this.requestTimeoutMs = init.requestTimeoutMs ?? REQUEST_TIMEOUT_MS
    const connectTimeout = init.connectTimeoutMs ?? CONNECT_TIMEOUT_MS
    this.dispatcher = this.host.kind === 'unix'
      ? new Pool('http://localhost', { socketPath: this.host.socketPath, connect: { timeout: connectTimeout } })
      : new Pool(`http://${this.host.host}:${this.host.port}`, { connect: { timeout: connectTimeout } })
  }

  /** The daemon address as the user gave it, for messages. */
  get address (): string {
    return this.host.address
  }

  async ping (options: AbortOptions = {}): Promise<PingResult> {
    const res = await this.request('GET', '/_ping', options)
    await res.body.dump()
    const header = (name: string): string | undefined => {
      const v = res.headers[name]
      return Array.isArray(v) ? v[0] : v
    }
    const out: PingResult = {}
    const apiVersion = header('api-version')
    const osType = header('ostype')
    const builderVersion = header('builder-version')
    if (apiVersion !== undefined) out.apiVersion = apiVersion
    if (osType !== undefined) out.osType = osType
    if (builderVersion !== undefined) out.builderVersion = builderVersion
    return out
  }

  async version (options: AbortOptions = {}): Promise<ServerVersion> {
    return await this.json<ServerVersion>('GET', '/version', options)
  }

  async listImages (options: ListImagesOptions = {}): Promise<ImageSummary[]> {
    const query: Record<string, string | undefined> = {}
    if (options.all === true) query.all = '1'
    if (options.digests === true) query.digests = '1'
    const images = await this.json<ImageSummary[]>('GET', '/images/json', { ...options, query })
    if (!Array.isArray(images)) throw new JoeyError('ERR_PROTOCOL', `joeyd at ${this.address} sent an image list that is not an array`)
    return images
  }

  async inspectImage (name: string, options: AbortOptions = {}): Promise<ImageInspect> {
    return await this.json<ImageInspect>('GET', imagePath(name, '/json'), options)
  }

  async removeImage (name: string, options: RemoveImageOptions = {}): Promise<ImageDeleteResponseItem[]> {
    const query: Record<string, string | undefined> = {}
    if (options.force === true) query.force = '1'
    if (options.noPrune === true) query.noprune = '1'
    const items = await this.json<ImageDeleteResponseItem[]>('DELETE', imagePath(name), { ...options, query })
    return Array.isArray(items) ? items : []
  }

  /** POST /images/{name}/tag: `target` is repo[:tag]. */
  async tagImage (source: string, target: string, options: AbortOptions = {}): Promise<void> {
    const { repo, tag } = splitRepoTag(target)
    await this.empty('POST', imagePath(source, '/tag'), { ...options, query: { repo, ...(tag !== undefined ? { tag } : {}) } })
  }

  /**
   * POST /images/create: yields the daemon's progress messages as they arrive. A failure the
   * daemon reports mid-stream (errorDetail) is thrown, so a finished iteration means success.
   */
  async * pullImage (params: PullImageParams, options: PullImageOptions = {}): AsyncGenerator<JSONMessage> {
    const headers: Record<string, string> = {}
    if (options.registryAuth !== undefined) headers['x-registry-auth'] = options.registryAuth
    const res = await this.request('POST', '/images/create', {
      query: { fromImage: params.fromImage, tag: params.tag, platform: params.platform },
      headers,
      streaming: true,
      ...(options.signal !== undefined ? { signal: options.signal } : {})
    })
    try {
      for await (const value of parseJsonStream(res.body)) {
        if (value === null || typeof value !== 'object' || Array.isArray(value)) continue
        const msg = value as JSONMessage
        if (msg.errorDetail !== undefined || msg.error !== undefined) {
          const message = msg.errorDetail?.message ?? msg.error ?? 'pull failed'
          const status = msg.errorDetail?.code
          throw new JoeyError(status !== undefined && status >= 400 ? statusErrorCode(status) : 'ERR_INTERNAL', message, { detail: { address: this.address, fromDaemon: true } })
        }
        yield msg
      }
    } catch (err) {
      throw this.mapError(err, 'POST', '/images/create', true)
    } finally {
      if (!res.body.destroyed) res.body.destroy()
    }
  }

  async close (): Promise<void> {
    await this.dispatcher.close()
  }

  protected async empty (method: Dispatcher.HttpMethod, path: string, init: RequestInit): Promise<void> {
    const res = await this.request(method, path, init)
    await res.body.dump().catch(() => {})
  }

  protected async json<T> (method: Dispatcher.HttpMethod, path: string, init: RequestInit): Promise<T> {
    const res = await this.request(method, path, init)
    let text: string
    try {
      text = await res.body.text()
    } catch (err) {
      throw this.mapError(err, method, path, true)
    }
    try {
      return JSON.parse(text) as T
    } catch (err) {
      throw new JoeyError('ERR_PROTOCOL', `joeyd at ${this.address} sent malformed JSON for ${method} ${path}`, { cause: err, detail: { body: text.slice(0, 200) } })
    }
  }

  protected async request (method: Dispatcher.HttpMethod, path: string, init: RequestInit): Promise<Dispatcher.ResponseData> {
    const search = new URLSearchParams()
    for (const [k, v] of Object.entries(init.query ?? {})) if (v !== undefined && v !== '') search.set(k, v)
    const fullPath = search.size > 0 ? `${path}?${search.toString()}` : path
    const timeout = init.streaming === true ? 0 : this.requestTimeoutMs
    const started = Date.now()
    let res: Dispatcher.ResponseData
    try {
      res = await this.dispatcher.request({
        method,
        path: fullPath,
        headers: { 'user-agent': `${CLIENT_NAME}/${CLIENT_VERSION}`, ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}), ...init.headers },
        ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
        headersTimeout: timeout,
        bodyTimeout: timeout,
        ...(init.signal !== undefined ? { signal: init.signal } : {})
      })
    } catch (err) {
      throw this.mapError(err, method, fullPath, false)
    }
    this.logger?.debug({ method, path: fullPath, status: res.statusCode, ms: Date.now() - started }, 'engine api request')
    if (res.statusCode >= 400) throw await this.statusError(res, method, fullPath)
    return res
  }

  private async statusError (res: Dispatcher.ResponseData, method: string, path: string): Promise<JoeyError> {
    let text = ''
    try {
      text = await res.body.text()
    } catch {}
    let message = text.trim()
    try {
      const body = JSON.parse(text) as { message?: unknown }
      if (typeof body.message === 'string' && body.message !== '') message = body.message
    } catch {}
    if (message === '') message = `joeyd answered ${method} ${path} with HTTP ${res.statusCode}`
    return new JoeyError(statusErrorCode(res.statusCode), message, { detail: { status: res.statusCode, method, path, fromDaemon: true } })
  }

  protected mapError (err: unknown, method: string, path: string, responding: boolean): JoeyError {
    if (err instanceof JoeyError) return err
    if (isAbortError(err) || (err as { code?: string }).code === 'UND_ERR_ABORTED') {
      return new JoeyError('ERR_ABORTED', 'operation aborted', { cause: err })
    }
    const code = (err as { code?: string }).code ?? ''
    const detail = { address: this.address, method, path, cause: code }
    if (code === 'EACCES' || code === 'EPERM') {
      return new JoeyError('ERR_UNAUTHORIZED', `permission denied while connecting to joeyd at ${this.address}`, { cause: err, detail })
    }
    if (!responding && CONNECT_ERRORS.has(code)) {
      return new JoeyError('ERR_UNAVAILABLE', `cannot connect to joeyd at ${this.address}: is joeyd running?`, { cause: err, detail })
    }
    if (DROP_ERRORS.has(code)) {
      return new JoeyError('ERR_UNAVAILABLE', `joeyd at ${this.address} closed the connection during ${method} ${path.split('?')[0] ?? path}`, { cause: err, detail })
    }
    if (TIMEOUT_ERRORS.has(code)) {
      return new JoeyError('ERR_UNAVAILABLE', `joeyd at ${this.address} did not answer ${method} ${path.split('?')[0] ?? path} in time`, { cause: err, detail })
    }
    const message = err instanceof Error ? err.message : String(err)
    return new JoeyError('ERR_INTERNAL', `request to joeyd at ${this.address} failed: ${message}`, { cause: err, detail })
  }
}

export function createEngineClient (init: EngineClientInit): EngineClient {
  return new EngineClient(init)
}

/** Splits repo[:tag] at the last colon that comes after the last slash (host:port/repo has none). */
export function splitRepoTag (ref: string): { repo: string, tag?: string } {
  const at = ref.lastIndexOf(':')
  if (at <= ref.lastIndexOf('/')) return { repo: ref }
  return { repo: ref.slice(0, at), tag: ref.slice(at + 1) }
}
