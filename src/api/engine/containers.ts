/**
 * The container routes of the Engine API in dockerd's shapes, so the docker CLI's run, ps,
 * logs, stop, rm, wait and attach work unchanged. Without a ContainerService (no runc on the
 * host) every route answers 501.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { JoeyError, errorKind, isJoeyError, type Logger } from '../../common/index.js'
import type { ContainerService, CreateOptions, NetworkMode, WaitCondition } from '../../runtime/index.js'
import { boolValue } from './images.js'
import { muxEntries, sendMultiplexed } from './stream.js'

export interface ContainerRoutesComponents {
  logger: Logger
  containers?: ContainerService
}

export const CONTAINERS_DISABLED = 'containers are not enabled'

type Query = Record<string, string | undefined>
type Body = Record<string, unknown>

function bad (message: string): JoeyError {
  return new JoeyError('ERR_INVALID_ARGUMENT', message)
}

function isObject (v: unknown): v is Body {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

function optString (body: Body, key: string, where = ''): string | undefined {
  const v = body[key]
  if (v === undefined || v === null || v === '') return undefined
  if (typeof v !== 'string') throw bad(`${where}${key} must be a string`)
  return v
}

function optStrings (body: Body, key: string, where = ''): string[] | undefined {
  const v = body[key]
  if (v === undefined || v === null) return undefined
  if (!Array.isArray(v) || !v.every(s => typeof s === 'string')) throw bad(`${where}${key} must be a list of strings`)
  return v
}

/** docker's strslice: a string or a list of strings. */
function optStrSlice (body: Body, key: string): string[] | undefined {
  const v = body[key]
  if (typeof v === 'string') return [v]
  return optStrings(body, key)
}

function optNumber (body: Body, key: string, where = ''): number | undefined {
  const v = body[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'number' || !Number.isFinite(v)) throw bad(`${where}${key} must be a number`)
  return v
}

function optBool (body: Body, key: string, where = ''): boolean | undefined {
  const v = body[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'boolean') throw bad(`${where}${key} must be true or false`)
  return v
}

function intQuery (q: Query, key: string): number | undefined {
  const v = q[key]
  if (v === undefined || v === '') return undefined
  if (!/^-?\d+$/.test(v)) throw bad(`invalid ${key} "${v}": expected an integer`)
  return Number(v)
}

/** CreateOptions from docker's container create body (container.Config + HostConfig). */
export function createOptions (body: unknown, name: string | undefined): CreateOptions {
  if (!isObject(body)) throw bad('config cannot be empty in order to create a container')
  const image = optString(body, 'Image')
  if (image === undefined) throw bad('Image is required: the image to create the container from')
  if (body.Tty === true) throw bad('TTYs are not supported by joeyd: run without -t (output goes to the json-file log)')
  if (body.OpenStdin === true || body.AttachStdin === true) throw bad('stdin is not supported by joeyd: run without -i')
  const opts: CreateOptions = { image }
  if (name !== undefined && name !== '') opts.name = name
  const cmd = optStrSlice(body, 'Cmd')
  if (cmd !== undefined) opts.cmd = cmd
  const entrypoint = optStrSlice(body, 'Entrypoint')
  if (entrypoint !== undefined) opts.entrypoint = entrypoint
  const env = optStrings(body, 'Env')
  if (env !== undefined && env.length > 0) opts.env = env
  const workdir = optString(body, 'WorkingDir')
  if (workdir !== undefined) opts.workdir = workdir
  const user = optString(body, 'User')
  if (user !== undefined) opts.user = user
  const hostname = optString(body, 'Hostname')
  if (hostname !== undefined) opts.hostname = hostname
  const labels = body.Labels
  if (labels !== undefined && labels !== null) {
    if (!isObject(labels) || !Object.values(labels).every(v => typeof v === 'string')) throw bad('Labels must be a map of strings')
    if (Object.keys(labels).length > 0) opts.labels = labels as Record<string, string>
  }

  const hc = body.HostConfig
  if (hc === undefined || hc === null) return opts
  if (!isObject(hc)) throw bad('HostConfig must be an object')
  const where = 'HostConfig.'
  const binds = optStrings(hc, 'Binds', where)
  if (binds !== undefined && binds.length > 0) opts.binds = binds
  const memory = optNumber(hc, 'Memory', where)
  if (memory !== undefined && memory !== 0) opts.memory = memory
  const nanoCpus = optNumber(hc, 'NanoCpus', where)
  const quota = optNumber(hc, 'CpuQuota', where)
  const period = optNumber(hc, 'CpuPeriod', where)
  if (nanoCpus !== undefined && nanoCpus !== 0) {
    if (quota !== undefined && quota !== 0) throw bad('Conflicting options: Nano CPUs and CPU Quota cannot both be set')
    opts.cpus = nanoCpus / 1e9
  } else if (quota !== undefined && quota > 0) {
    opts.cpus = quota / (period !== undefined && period > 0 ? period : 100_000)
  }
  const pids = optNumber(hc, 'PidsLimit', where)
  if (pids !== undefined && pids !== 0) opts.pidsLimit = pids
  const network = optString(hc, 'NetworkMode', where)
  if (network !== undefined && network !== 'default') {
    if (network !== 'none' && network !== 'host') throw bad(`network mode "${network}" is not supported by joeyd: use none or host`)
    opts.network = network as NetworkMode
  }
  const readOnly = optBool(hc, 'ReadonlyRootfs', where)
  if (readOnly === true) opts.readOnly = true
  const autoRemove = optBool(hc, 'AutoRemove', where)
  if (autoRemove === true) opts.autoRemove = true
  return opts
}

/** docker answers 409 where the runtime says "not in the right state". */
function conflictOf (err: unknown): unknown {
  if (isJoeyError(err) && errorKind(err) === 'FailedPrecondition') {
    return new JoeyError('ERR_IN_USE', err.message, { cause: err, ...(err.detail !== undefined ? { detail: err.detail } : {}) })
  }
  return err
}

async function mapped<T> (fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    throw conflictOf(err)
  }
}

const WAIT_CONDITIONS = new Set<string>(['not-running', 'next-exit', 'removed'])

export function containerRoutes (components: ContainerRoutesComponents): (app: FastifyInstance) => Promise<void> {
  const log = components.logger.child({ component: 'api' })
  return async (app) => {
    const svc = components.containers
    if (svc === undefined) {
      const disabled = async (_request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
        return await reply.status(501).type('application/json').send({ message: CONTAINERS_DISABLED })
      }
      for (const url of ['/containers/*', '/exec/*']) {
        app.route({ method: ['GET', 'POST', 'DELETE', 'HEAD'], url, handler: disabled })
      }
      return
    }
    const id = (request: FastifyRequest): string => (request.params as { id: string }).id
    const query = (request: FastifyRequest): Query => request.query as Query

    app.post('/containers/create', async (request, reply) => {
      const opts = createOptions(request.body, query(request).name)
      try {
        const r = await svc.create(opts)
        return await reply.status(201).send({ Id: r.id, Warnings: r.warnings })
      } catch (err) {
        // The docker CLI pulls and retries on exactly this 404.
        if (isJoeyError(err, 'ERR_IMAGE_NOT_FOUND')) {
          throw new JoeyError('ERR_IMAGE_NOT_FOUND', `No such image: ${opts.image}`, { cause: err, detail: { image: opts.image } })
        }
        throw conflictOf(err)
      }
    })

    app.get('/containers/json', async (request) => {
      const list = await svc.list({ all: boolValue(query(request).all) })
      return list.map(c => ({ Ports: [], NetworkSettings: { Networks: {} }, ...c }))
    })

    app.get('/containers/:id/json', async (request) => await svc.inspect(id(request)))

    app.post('/containers/:id/start', async (request, reply) => {
      const info = await svc.inspect(id(request))
      if (info.State.Running) return await reply.status(304).send()
      await mapped(async () => { await svc.start(info.Id) })
      return await reply.status(204).send()
    })

    const stopOpts = (q: Query): { timeoutSec?: number, signal?: string } => {
      const t = intQuery(q, 't')
      return { ...(t !== undefined ? { timeoutSec: t } : {}), ...(q.signal !== undefined && q.signal !== '' ? { signal: q.signal } : {}) }
    }

    app.post('/containers/:id/stop', async (request, reply) => {
      const opts = stopOpts(query(request))
      const info = await svc.inspect(id(request))
      if (!info.State.Running) return await reply.status(304).send()
      await mapped(async () => { await svc.stop(info.Id, opts) })
      return await reply.status(204).send()
    })

    app.post('/containers/:id/restart', async (request, reply) => {
      const opts = stopOpts(query(request))
      await mapped(async () => { await svc.restart(id(request), opts) })
      return await reply.status(204).send()
    })

    app.post('/containers/:id/kill', async (request, reply) => {
      const signal = query(request).signal
      await mapped(async () => { await svc.kill(id(request), signal !== undefined && signal !== '' ? signal : undefined) })
      return await reply.status(204).send()
    })

    app.delete('/containers/:id', async (request, reply) => {
      const q = query(request)
      if (boolValue(q.link)) throw bad('links are not supported by joeyd')
      await mapped(async () => { await svc.remove(id(request), { force: boolValue(q.force) }) })
      return await reply.status(204).send()
    })

    app.post('/containers/:id/wait', async (request, reply) => {
      const condition = query(request).condition ?? ''
      if (condition !== '' && !WAIT_CONDITIONS.has(condition)) throw bad(`invalid condition: "${condition}"`)
      const target = await svc.resolve(id(request))
      const gone = new AbortController()
      // wait() registers for the next exit before returning; the docker CLI starts the
      // container only once it has these headers, so they go out at once.
      const waiting = svc.wait(target, { condition: (condition === '' ? 'not-running' : condition) as WaitCondition, signal: gone.signal })
      waiting.catch(() => {})
      reply.hijack()
      const res = reply.raw
      res.on('close', () => { if (!res.writableFinished) gone.abort() })
      res.writeHead(200, { 'content-type': 'application/json' })
      if (typeof res.flushHeaders === 'function') res.flushHeaders()
      try {
        const r = await waiting
        res.end(JSON.stringify({ StatusCode: r.exitCode, Error: r.error !== undefined ? { Message: r.error } : null }) + '\n')
      } catch (err) {
        if (!gone.signal.aborted) log.warn({ err, container: target }, 'wait failed')
        res.end(JSON.stringify({ StatusCode: -1, Error: { Message: err instanceof Error ? err.message : String(err) } }) + '\n')
      }
    })

    app.get('/containers/:id/logs', async (request, reply) => {
      const q = query(request)
      const stdout = boolValue(q.stdout)
      const stderr = boolValue(q.stderr)
      if (!stdout && !stderr) throw bad('Bad parameters: you must choose at least one stream')
      const tailRaw = q.tail
      const tail = tailRaw === undefined || tailRaw === '' || tailRaw === 'all' ? undefined : intQuery(q, 'tail')
      const timestamps = boolValue(q.timestamps)
      const target = await svc.resolve(id(request))
      const gone = new AbortController()
      const entries = await svc.logs(target, {
        stdout,
        stderr,
        follow: boolValue(q.follow),
        ...(tail !== undefined && tail >= 0 ? { tail } : {}),
        ...(q.since !== undefined && q.since !== '' && q.since !== '0' ? { since: q.since } : {}),
        ...(q.until !== undefined && q.until !== '' && q.until !== '0' ? { until: q.until } : {}),
        signal: gone.signal
      })
      await sendMultiplexed(request, reply, (signal) => {
        signal.addEventListener('abort', () => { gone.abort() })
        return muxEntries(entries, timestamps)
      })
    })

    app.post('/containers/:id/attach', async (request, reply) => {
      const q = query(request)
      if (boolValue(q.stdin)) throw bad('attaching stdin is not supported by joeyd')
      const stdout = q.stdout === undefined ? true : boolValue(q.stdout)
      const stderr = q.stderr === undefined ? true : boolValue(q.stderr)
      const target = await svc.resolve(id(request))
      const gone = new AbortController()
      const entries = await svc.attach(target, { stdout, stderr, signal: gone.signal })
      await sendMultiplexed(request, reply, (signal) => {
        signal.addEventListener('abort', () => { gone.abort() })
        return muxEntries(entries)
      })
    })
  }
}
