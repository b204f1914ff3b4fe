/**
 * The container and exec half of the Engine API client: EngineClient's transport and
 * error mapping, with docker's container and exec routes.
 */
import type { Dispatcher } from 'undici'
import { JoeyError, type AbortOptions } from '../common/index.js'
import { EngineClient, type EngineClientInit } from './client.js'

export type ContainerClientInit = EngineClientInit

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


export function containerPath (idOrName: string, suffix = ''): string {
  return `/containers/${encodeURIComponent(idOrName)}${suffix}`
}

export class ContainerClient extends EngineClient {
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

  private async * bodyOf (res: Dispatcher.ResponseData, method: string, path: string): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of res.body) yield chunk as Buffer
    } catch (err) {
      throw this.mapError(err, method, path, true)
    } finally {
      if (!res.body.destroyed) res.body.destroy()
    }
  }
}

