/**
 * docker exec over the Engine API: create (POST /containers/{id}/exec), start (POST
 * /exec/{id}/start, hijacked like attach, output multiplexed, the connection closed once the
 * process exited) and inspect (GET /exec/{id}/json, where the CLI reads the exit code).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { JoeyError, errorKind, isJoeyError, type Logger } from '../../common/index.js'
import type { ContainerService, ExecOptions } from '../../runtime/index.js'
import { muxEntries, sendMultiplexed, upgradeBody } from './stream.js'

export interface ExecRoutesComponents {
  logger: Logger
  containers?: ContainerService
}

function bad (message: string): JoeyError {
  return new JoeyError('ERR_INVALID_ARGUMENT', message)
}

function isObject (v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

function strings (v: unknown, key: string): string[] | undefined {
  if (v === undefined || v === null) return undefined
  if (!Array.isArray(v) || !v.every(s => typeof s === 'string')) throw bad(`${key} must be a list of strings`)
  return v
}

function str (v: unknown, key: string): string | undefined {
  if (v === undefined || v === null || v === '') return undefined
  if (typeof v !== 'string') throw bad(`${key} must be a string`)
  return v
}

/** ExecOptions from docker's ExecConfig. */
export function execOptions (body: unknown): ExecOptions {
  if (!isObject(body)) throw bad('exec config cannot be empty')
  if (body.Tty === true) throw bad('TTYs are not supported by joeyd: run exec without -t')
  if (body.AttachStdin === true) throw bad('stdin is not supported by joeyd: run exec without -i')
  if (body.Privileged === true) throw bad('privileged exec is not supported by joeyd')
  const cmd = typeof body.Cmd === 'string' ? [body.Cmd] : strings(body.Cmd, 'Cmd')
  if (cmd === undefined || cmd.length === 0) throw bad('No exec command specified')
  const opts: ExecOptions = { cmd }
  const env = strings(body.Env, 'Env')
  if (env !== undefined && env.length > 0) opts.env = env
  const user = str(body.User, 'User')
  if (user !== undefined) opts.user = user
  const workdir = str(body.WorkingDir, 'WorkingDir')
  if (workdir !== undefined) opts.workdir = workdir
  return opts
}

function conflictOf (err: unknown): unknown {
  if (isJoeyError(err) && errorKind(err) === 'FailedPrecondition') {
    return new JoeyError('ERR_IN_USE', err.message, { cause: err, ...(err.detail !== undefined ? { detail: err.detail } : {}) })
  }
  return err
}

export function execRoutes (components: ExecRoutesComponents): (app: FastifyInstance) => Promise<void> {
  const log = components.logger.child({ component: 'api' })
  return async (app) => {
    const svc = components.containers
    // Without containers, /exec/* is answered by the container plugin's 501 routes.
    if (svc === undefined) return
    const id = (request: FastifyRequest): string => (request.params as { id: string }).id

    app.post('/containers/:id/exec', async (request, reply) => {
      const opts = execOptions(request.body)
      try {
        const { execId } = await svc.exec(id(request), opts)
        return await reply.status(201).send({ Id: execId })
      } catch (err) {
        throw conflictOf(err)
      }
    })

    app.post('/exec/:id/start', async (request, reply) => {
      const body = upgradeBody(request)
      if (body !== undefined && !isObject(body)) throw bad('exec start config must be an object')
      const cfg = body ?? {}
      if (cfg.Tty === true) throw bad('TTYs are not supported by joeyd: run exec without -t')
      let session
      try {
        session = await svc.execStart(id(request))
      } catch (err) {
        throw conflictOf(err)
      }
      if (cfg.Detach === true) {
        // Nobody reads the output; it is drained so the process never blocks on a full pipe.
        void (async () => {
          for await (const _ of session.output) { /* drained */ }
        })().catch((err: unknown) => { log.debug({ err }, 'detached exec output failed') })
        session.exitCode.catch(() => {})
        return await reply.status(200).send()
      }
      await sendMultiplexed(request, reply, () => muxEntries(session.output), async () => {
        await session.exitCode.catch((err: unknown) => { log.warn({ err }, 'exec failed') })
      })
    })

    app.get('/exec/:id/json', async (request) => {
      const info = await svc.execInspect(id(request))
      return { CanRemove: false, DetachKeys: '', ...info }
    })
  }
}
