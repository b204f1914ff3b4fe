/**
 * The container and exec half of the Engine API client. It has its own connection pool:
 * a foreground run holds a wait and a log stream open while it starts the container, and
 * EngineClient's single connection would queue the start behind them.
 */
import { Pool, type Dispatcher } from 'undici'
import { JoeyError, isAbortError, type AbortOptions, type Logger } from '../common/index.js'
import { statusErrorCode } from './client.js'
import { CONNECT_TIMEOUT_MS, REQUEST_TIMEOUT_MS } from './constants.js'
import { parseHost, type HostSpec } from './host.js'
import { CLIENT_NAME, CLIENT_VERSION } from './meta.js'

export interface ContainerClientInit {
  host: string | HostSpec
  logger?: Logger
  connectTimeoutMs?: number
  requestTimeoutMs?: number
}

/** docker's container create body (container.Config with HostConfig inlined). */
export interface ContainerCreateBody {
  Image: string
  Cmd?: string[]
  Entrypoint?: string[]
  Env?: string[]
  WorkingDir?: string
  User?: string
  Labels?: Record<string, string>
  AttachStdout?: boolean
  AttachStderr?: boolean
  HostConfig?: {
    Binds?: string[]
    Memory?: number
    NanoCpus?: number
    PidsLimit?: number
    NetworkMode?: string
    ReadonlyRootfs?: boolean
    AutoRemove?: boolean
  }
}

/** GET /containers/json */
export interface ContainerSummary {
  Id: string
  Names?: string[]
  Image?: string
  ImageID?: string
  Command?: string
  Created?: number
  State?: string
  Status?: string
  Ports?: Array<{ IP?: string, PrivatePort?: number, PublicPort?: number, Type?: string }>
  Labels?: Record<string, string>
  [key: string]: unknown
}

/** GET /containers/{id}/json, the fields joey reads; the rest passes through. */
export interface ContainerInspect {
  Id: string
  Name?: string
  State?: { Status?: string, Running?: boolean, ExitCode?: number }
  [key: string]: unknown
}

export interface WaitResult {
  StatusCode: number
  Error?: { Message?: string } | null
}

export interface LogsQuery extends AbortOptions {
  follow?: boolean
  /** A count or "all". */
  tail?: string
  timestamps?: boolean
}

export interface ExecCreateBody {
  Cmd: string[]
  Env?: string[]
  User?: string
  WorkingDir?: string
  AttachStdout?: boolean
  AttachStderr?: boolean
}

export interface ExecInspect {
  ID?: string
  Running?: boolean
  ExitCode?: number | null
  [key: string]: unknown
}

interface Req extends AbortOptions {
  query?: Record<string, string | undefined>
  body?: unknown
  streaming?: boolean
}

const CONNECT_ERRORS = new Set(['ENOENT', 'ECONNREFUSED', 'ENOTSOCK', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT'])

export function containerPath (idOrName: string, suffix = ''): string {
  return `/containers/${encodeURIComponent(idOrName)}${suffix}`
}

export class ContainerClient {
  readonly host: HostSpec
  private readonly pool: Pool
  private readonly logger?: Logger
  private readonly requestTimeoutMs: number

  constructor (init: ContainerClientInit) {
    this.host = typeof init.host === 'string' ? parseHost(init.host) : init.host
    this.logger = init.logger
    this.requestTimeoutMs = init.requestTimeoutMs ?? REQUEST_TIMEOUT_MS
    const connect = { timeout: init.connectTimeoutMs ?? CONNECT_TIMEOUT_MS }
    this.pool = this.host.kind === 'unix'
      ? new Pool('http://localhost', { socketPath: this.host.socketPath, connect })
      : new Pool(`http://${this.host.host}:${this.host.port}`, { connect })
  }

  get address (): string {
    return this.host.address
  }

  async create (body: ContainerCreateBody, name?: string, options: AbortOptions = {}): Promise<{ Id: string, Warnings?: string[] | null }> {
    const r = await this.json<{ Id?: unknown, Warnings?: string[] | null }>('POST', '/containers/create', { ...options, body, query: { name } })
    if (typeof r.Id !== 'string' || r.Id === '') throw new JoeyError('ERR_PROTOCOL', `joeyd at ${this.address} answered container create without an Id`)
    return { Id: r.Id, Warnings: r.Warnings ?? null }
  }

  async start (id: string, options: AbortOptions = {}): Promise<void> {
    await this.empty('POST', containerPath(id, '/start'), options)
  }

  async stop (id: string, timeoutSec?: number, options: AbortOptions = {}): Promise<void> {
    // The daemon's stop may take the whole grace period: no client deadline.
    await this.empty('POST', containerPath(id, '/stop'), { ...options, query: { t: timeoutSec?.toString() }, streaming: true })
  }

  async remove (id: string, force = false, options: AbortOptions = {}): Promise<void> {
    await this.empty('DELETE', containerPath(id), { ...options, query: { force: force ? '1' : undefined }, streaming: true })
  }

  async list (all = false, options: AbortOptions = {}): Promise<ContainerSummary[]> {
    const list = await this.json<ContainerSummary[]>('GET', '/containers/json', { ...options, query: { all: all ? '1' : undefined } })
    if (!Array.isArray(list)) throw new JoeyError('ERR_PROTOCOL', `joeyd at ${this.address} sent a container list that is not an array`)
    return list
  }

  async inspect (id: string, options: AbortOptions = {}): Promise<ContainerInspect> {
    return await this.json<ContainerInspect>('GET', containerPath(id, '/json'), options)
  }

  /**
   * Registers a wait and resolves once the daemon has answered with headers, so the caller
   * may start the container without missing its exit; `result` settles when it is met.
   */
  async wait (id: string, condition: 'next-exit' | 'not-running' | 'removed', options: AbortOptions = {}): Promise<{ result: Promise<WaitResult> }> {
    const path = containerPath(id, '/wait')
    const res = await this.request('POST', path, { ...options, query: { condition }, streaming: true })
    const result = (async () => {
      let text: string
      try {
        text = await res.body.text()
      } catch (err) {
        throw this.mapError(err, 'POST', path, true)
      }
      let r: WaitResult
      try {
        r = JSON.parse(text) as WaitResult
      } catch (err) {
        throw new JoeyError('ERR_PROTOCOL', `joeyd at ${this.address} sent malformed JSON for POST ${path}`, { cause: err, detail: { body: text.slice(0, 200) } })
      }
      if (typeof r.StatusCode !== 'number') throw new JoeyError('ERR_PROTOCOL', `joeyd at ${this.address} answered a wait without a StatusCode`)
      return r
    })()
    // Callers may bail out before reading it; the rejection is theirs to see, not unhandled.
    result.catch(() => {})
    return { result }
  }

  /** The multiplexed log stream (see demultiplex in commands/containers.ts). */
  async logs (id: string, query: LogsQuery = {}): Promise<AsyncIterable<Buffer>> {
    const res = await this.request('GET', containerPath(id, '/logs'), {
      query: {
        stdout: '1',
        stderr: '1',
        follow: query.follow === true ? '1' : undefined,
        tail: query.tail,
        timestamps: query.timestamps === true ? '1' : undefined
      },
      streaming: true,
      ...(query.signal !== undefined ? { signal: query.signal } : {})
    })
    return this.bodyOf(res, 'GET', containerPath(id, '/logs'))
  }

  async execCreate (id: string, body: ExecCreateBody, options: AbortOptions = {}): Promise<string> {
    const r = await this.json<{ Id?: unknown }>('POST', containerPath(id, '/exec'), { ...options, body })
    if (typeof r.Id !== 'string' || r.Id === '') throw new JoeyError('ERR_PROTOCOL', `joeyd at ${this.address} answered exec create without an Id`)
    return r.Id
  }

  /** Exec start without an upgrade: the output comes as a 200 body that ends when the process exits. */
  async execStart (execId: string, options: AbortOptions = {}): Promise<AsyncIterable<Buffer>> {
    const path = `/exec/${encodeURIComponent(execId)}/start`
    const res = await this.request('POST', path, { ...options, body: { Detach: false, Tty: false }, streaming: true })
    return this.bodyOf(res, 'POST', path)
  }

  async execStartDetached (execId: string, options: AbortOptions = {}): Promise<void> {
    await this.empty('POST', `/exec/${encodeURIComponent(execId)}/start`, { ...options, body: { Detach: true, Tty: false } })
  }

  async execInspect (execId: string, options: AbortOptions = {}): Promise<ExecInspect> {
    return await this.json<ExecInspect>('GET', `/exec/${encodeURIComponent(execId)}/json`, options)
  }

  async close (): Promise<void> {
    await this.pool.close()
  }

  private async * bodyOf (res: Dispatcher.ResponseData, method: string, path: string): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of res.body) yield chunk as Buffer
    } catch (err) {
      throw this.mapError(err, method, path, true)
    } finally {
      if (!res.body.destroyed) res.body.destroy()
    }
  }

  private async empty (method: Dispatcher.HttpMethod, path: string, init: Req): Promise<void> {
    const res = await this.request(method, path, init)
    await res.body.dump().catch(() => {})
  }

  private async json<T> (method: Dispatcher.HttpMethod, path: string, init: Req): Promise<T> {
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

  private async request (method: Dispatcher.HttpMethod, path: string, init: Req): Promise<Dispatcher.ResponseData> {
    const search = new URLSearchParams()
    for (const [k, v] of Object.entries(init.query ?? {})) if (v !== undefined && v !== '') search.set(k, v)
    const fullPath = search.size > 0 ? `${path}?${search.toString()}` : path
    const timeout = init.streaming === true ? 0 : this.requestTimeoutMs
    const headers: Record<string, string> = { 'user-agent': `${CLIENT_NAME}/${CLIENT_VERSION}` }
    if (init.body !== undefined) headers['content-type'] = 'application/json'
    const started = Date.now()
    let res: Dispatcher.ResponseData
    try {
      res = await this.pool.request({
        method,
        path: fullPath,
        headers,
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

  private mapError (err: unknown, method: string, path: string, responding: boolean): JoeyError {
    if (err instanceof JoeyError) return err
    if (isAbortError(err) || (err as { code?: string }).code === 'UND_ERR_ABORTED') {
      return new JoeyError('ERR_ABORTED', 'operation aborted', { cause: err })
    }
    const code = (err as { code?: string }).code ?? ''
    const detail = { address: this.address, method, path, cause: code }
    const bare = path.split('?')[0] ?? path
    if (code === 'EACCES' || code === 'EPERM') {
      return new JoeyError('ERR_UNAUTHORIZED', `permission denied while connecting to joeyd at ${this.address}`, { cause: err, detail })
    }
    if (!responding && CONNECT_ERRORS.has(code)) {
      return new JoeyError('ERR_UNAVAILABLE', `cannot connect to joeyd at ${this.address}: is joeyd running?`, { cause: err, detail })
    }
    if (responding) {
      return new JoeyError('ERR_UNAVAILABLE', `joeyd at ${this.address} closed the connection during ${method} ${bare}`, { cause: err, detail })
    }
    const message = err instanceof Error ? err.message : String(err)
    return new JoeyError('ERR_INTERNAL', `request to joeyd at ${this.address} failed: ${message}`, { cause: err, detail })
  }
}
