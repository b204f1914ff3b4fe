/**
 * The agent's side of the supernode API. Several supernodes may be configured: each
 * digest is owned by one of them, chosen by rendezvous hashing so every agent picks the
 * same one without talking to the others, and a failing supernode hands its digests to
 * the next in that digest's order. The supernode is advisory: every call here fails
 * fast (short timeouts) and callers fall back to peers they know, then to the origin.
 */
import { createHash } from 'node:crypto'
import { request } from 'undici'
import { ERROR_CODES, JoeyError, errorMessage, type ErrorCode, type Logger } from '../common/index.js'

export interface SupernodeClientInit {
  urls: string[]
  timeoutMs?: number
  /** How long a supernode that failed is skipped. */
  penaltyMs?: number
}

export interface HostAnnouncement {
  peerId: string
  addrs: string[]
  labels?: Record<string, string>
  uploadSlots?: number
}

export interface ParentInfo { peerId: string, addrs: string[], seed: boolean }

export interface TaskView {
  digest: string
  size: number | null
  pieceSize: number | null
  pieceCount: number | null
  pieceDigests: Array<string | null>
  /** Index of pieceDigests[0] (a parents call may ask only for digests from there on); 0 when absent. */
  pieceDigestsFrom?: number
  parents: ParentInfo[]
  backToSource: boolean
}

export type FailureReason = 'corrupt' | 'timeout' | 'refused' | 'slow' | 'error'

export interface SupernodeClient {
  /** Registers (or refreshes) this host with every supernode; returns the ones that answered. */
  heartbeat: () => Promise<string[]>
  registerTask: (task: { digest: string, size: number, reference?: string, authorization?: string }) => Promise<TaskView>
  /**
   * New parents for a task. `digestsFrom`: this node knows the piece digests before that
   * index, so only later ones are sent (a refresh every second or two would otherwise carry
   * every digest again, up to ~70 KB for a 1,000-piece blob).
   */
  parents: (digest: string, exclude?: string[], options?: { digestsFrom?: number }) => Promise<TaskView>
  reportPieces: (digest: string, report: { pieces?: number[], pieceDigests?: Record<number, string>, complete?: boolean }) => Promise<void>
  reportFailure: (digest: string, parent: string, reason: FailureReason) => Promise<void>
  leave: (digest: string) => Promise<void>
  /** Supernodes in the order this digest tries them. */
  order: (digest: string) => string[]
  /** Called when a supernode seems to have restarted (it forgot us): re-report what we hold. */
  onRestart: (cb: (url: string) => void) => void
  close: () => Promise<void>
}

/** A code the supernode sent, if it is one of ours; the fallback otherwise. */
function remoteCode (code: string | undefined, fallback: ErrorCode): ErrorCode {
  return code !== undefined && Object.hasOwn(ERROR_CODES, code) ? code as ErrorCode : fallback
}

export function rendezvousOrder (urls: string[], key: string): string[] {
  const score = (url: string): bigint => createHash('sha256').update(url).update('\0').update(key).digest().readBigUInt64BE(0)
  return [...urls].map(u => ({ u, s: score(u) })).sort((a, b) => (a.s < b.s ? 1 : a.s > b.s ? -1 : 0)).map(x => x.u)
}

export function createSupernodeClient (init: SupernodeClientInit, components: { logger: Logger, host: () => HostAnnouncement }): SupernodeClient {
  const { logger } = components
  const urls = init.urls.map(u => u.replace(/\/+$/, ''))
  const timeoutMs = init.timeoutMs ?? 10_000
  const penaltyMs = init.penaltyMs ?? 5_000
  const downUntil = new Map<string, number>()
  /** The supernode that owns each digest's task, once registered. */
  const owner = new Map<string, string>()
  const restartListeners: Array<(url: string) => void> = []
  const known = new Set<string>()

  async function call<T> (url: string, method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
    let res
    try {
      res = await request(url + path, {
        method,
        headers: body !== undefined ? { 'content-type': 'application/json' } : {},
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal: AbortSignal.timeout(timeoutMs)
      })
    } catch (err) {
      downUntil.set(url, Date.now() + penaltyMs)
      throw new JoeyError('ERR_UNAVAILABLE', `supernode ${url} unreachable: ${errorMessage(err)}`, { cause: err })
    }
    const text = await res.body.text()
    // A 5xx that carries a request-specific code (a size mismatch is 502) says nothing about
    // the supernode's health; only those without one, or 503, mark it down.
    let early: { code?: string, message?: string } = {}
    if (res.statusCode >= 500) { try { early = JSON.parse(text) } catch {} }
    if (res.statusCode >= 500 && res.statusCode !== 503 && early.code !== undefined && early.code !== 'ERR_INTERNAL') {
      throw new JoeyError(remoteCode(early.code, 'ERR_INTERNAL'), `supernode ${url}: ${early.message ?? text.slice(0, 200)}`, { detail: { status: res.statusCode, url } })
    }
    if (res.statusCode >= 500) {
      downUntil.set(url, Date.now() + penaltyMs)
      throw new JoeyError('ERR_UNAVAILABLE', `supernode ${url} answered ${res.statusCode}: ${text.slice(0, 200)}`)
    }
    if (res.statusCode >= 400) {
      let parsed: { code?: string, message?: string } = {}
      try { parsed = JSON.parse(text) } catch {}
      const code = remoteCode(parsed.code, 'ERR_INVALID_ARGUMENT')
      throw new JoeyError(code, `supernode ${url}: ${parsed.message ?? text.slice(0, 200)}`, { detail: { status: res.statusCode, url } })
    }
    downUntil.delete(url)
    return (text === '' ? undefined : JSON.parse(text)) as T
  }

  function candidates (digest: string): string[] {
    const now = Date.now()
    const ordered = rendezvousOrder(urls, digest)
    const up = ordered.filter(u => (downUntil.get(u) ?? 0) <= now)
    // When all look down, still try them in order rather than giving up without asking.
    return up.length > 0 ? up : ordered
  }

  async function announce (url: string): Promise<void> {
    const res = await call<{ known?: boolean } | undefined>(url, 'POST', '/api/v1/hosts', components.host())
    // A supernode we registered with before that no longer knows us restarted (or expired
    // us): an idle agent learns it only here, and must re-report what it holds.
    const forgot = res?.known === false && known.has(url)
    known.add(url)
    if (forgot) for (const cb of restartListeners) cb(url)
  }

  /** Runs fn against the digest's supernodes in order until one answers. */
  async function withOwner<T> (digest: string, fn: (url: string) => Promise<T>): Promise<T> {
    let lastErr: unknown
    const first = owner.get(digest)
    const list = first !== undefined ? [first, ...candidates(digest).filter(u => u !== first)] : candidates(digest)
    for (const url of list) {
      try {
        return await fn(url)
      } catch (err) {
        lastErr = err
        if ((err as JoeyError).kind !== 'Unavailable') throw err
        logger.debug({ url, digest, err: errorMessage(err) }, 'supernode failed, trying the next')
        if (owner.get(digest) === url) owner.delete(digest)
      }
    }
    throw lastErr ?? new JoeyError('ERR_UNAVAILABLE', 'no supernode configured')
  }

  return {
    order: (digest) => rendezvousOrder(urls, digest),
    onRestart: (cb) => { restartListeners.push(cb) },
    async heartbeat () {
      const ok: string[] = []
      await Promise.all(urls.map(async (url) => {
        try {
          await announce(url)
          ok.push(url)
        } catch (err) {
          logger.debug({ url, err: errorMessage(err) }, 'supernode heartbeat failed')
        }
      }))
      return ok
    },
    async registerTask (task) {
      return await withOwner(task.digest, async (url) => {
        const body = { ...task, peerId: components.host().peerId }
        let view: TaskView
        try {
          view = await call<TaskView>(url, 'POST', '/api/v1/tasks', body)
        } catch (err) {
          // A supernode that restarted forgot our host: register again and retry once.
          if ((err as JoeyError).code !== 'ERR_NOT_FOUND') throw err
          await announce(url)
          view = await call<TaskView>(url, 'POST', '/api/v1/tasks', body)
        }
        owner.set(task.digest, url)
        return view
      })
    },
    async parents (digest, exclude = [], options = {}) {
      const url = owner.get(digest)
      if (url === undefined) throw new JoeyError('ERR_FAILED_PRECONDITION', `task ${digest} is not registered with a supernode`)
      const from = options.digestsFrom !== undefined && options.digestsFrom > 0 ? { digestsFrom: options.digestsFrom } : {}
      try {
        return await call<TaskView>(url, 'POST', `/api/v1/tasks/${digest}/parents`, { peerId: components.host().peerId, exclude, ...from })
      } catch (err) {
        if ((err as JoeyError).code === 'ERR_NOT_FOUND') {
          owner.delete(digest)
          for (const cb of restartListeners) cb(url)
        }
        throw err
      }
    },
    async reportPieces (digest, report) {
      const url = owner.get(digest)
      if (url === undefined) return
      const pieceDigests = report.pieceDigests !== undefined
        ? Object.fromEntries(Object.entries(report.pieceDigests).map(([k, v]) => [String(k), v]))
        : undefined
      try {
        await call(url, 'POST', `/api/v1/tasks/${digest}/pieces`, {
          peerId: components.host().peerId,
          ...(report.pieces !== undefined ? { pieces: report.pieces } : {}),
          ...(pieceDigests !== undefined ? { pieceDigests } : {}),
          ...(report.complete !== undefined ? { complete: report.complete } : {})
        })
      } catch (err) {
        if ((err as JoeyError).code === 'ERR_NOT_FOUND') {
          owner.delete(digest)
          for (const cb of restartListeners) cb(url)
        }
        throw err
      }
    },
    async reportFailure (digest, parent, reason) {
      const url = owner.get(digest)
      if (url === undefined) return
      await call(url, 'POST', `/api/v1/tasks/${digest}/failures`, { peerId: components.host().peerId, parent, reason })
    },
    async leave (digest) {
      const url = owner.get(digest)
      owner.delete(digest)
      if (url === undefined) return
      await call(url, 'DELETE', `/api/v1/tasks/${digest}/peers/${encodeURIComponent(components.host().peerId)}`).catch(() => {})
    },
    async close () {
      owner.clear()
    }
  }
}
