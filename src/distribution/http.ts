import type { Dispatcher } from 'undici'
import { JoeyError, isAbortError, type ErrorCode } from '../common/index.js'

export type Headers = Record<string, string | string[] | undefined>

/**
 * A failure worth another attempt. `code` is what the caller sees once the attempts run out.
 */
export class RetryableError extends Error {
  constructor (readonly code: ErrorCode, message: string, readonly retryAfterMs?: number, options?: { cause?: unknown, detail?: Record<string, unknown> }) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined)
    this.name = 'RetryableError'
    if (options?.detail !== undefined) this.detail = options.detail
  }

  detail?: Record<string, unknown>
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT'])
const NETWORK_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'EAI_AGAIN',
  'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH'
])

export function errorCode (err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : undefined
}

export function isTimeout (err: unknown): boolean {
  return TIMEOUT_CODES.has(errorCode(err) ?? '')
}

export function isNetworkError (err: unknown): boolean {
  return NETWORK_CODES.has(errorCode(err) ?? '')
}

function isTlsError (err: unknown): boolean {
  const code = errorCode(err) ?? ''
  return code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || code.includes('CERT') ||
    code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' || code === 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY'
}

/**
 * Turns whatever one attempt threw into either a RetryableError or a final JoeyError.
 * `host` and `what` only shape the message.
 */
export function classify (err: unknown, host: string, what: string, signal?: AbortSignal): RetryableError | JoeyError {
  if (signal?.aborted === true || (isAbortError(err) && !isTimeout(err))) {
    return new JoeyError('ERR_ABORTED', `${what}: aborted`, { cause: err })
  }
  if (err instanceof RetryableError || err instanceof JoeyError) return err
  const code = errorCode(err)
  const msg = err instanceof Error ? err.message : String(err)
  if (isTimeout(err)) return new RetryableError('ERR_REGISTRY_TIMEOUT', `${host} did not answer in time (${code})`, undefined, { cause: err })
  if (isNetworkError(err)) return new RetryableError('ERR_REGISTRY_UNAVAILABLE', `connection to ${host} failed: ${msg} (${code})`, undefined, { cause: err })
  if (isTlsError(err)) {
    return new JoeyError('ERR_REGISTRY_UNAVAILABLE',
      `${what}: TLS connection to ${host} failed: ${msg} (${code}); trust its CA with hosts["${host}"].ca, or use plain HTTP with insecureRegistries`,
      { cause: err, detail: { host, code } })
  }
  if (code === 'ENOTFOUND') return new JoeyError('ERR_REGISTRY_UNAVAILABLE', `${what}: cannot resolve registry host ${host}`, { cause: err, detail: { host } })
  if (code?.startsWith('UND_ERR') === true || (err as { syscall?: unknown })?.syscall !== undefined) {
    return new JoeyError('ERR_REGISTRY_UNAVAILABLE', `${what}: request to ${host} failed: ${msg}`, { cause: err, detail: { host, code } })
  }
  return new JoeyError('ERR_INTERNAL', `${what}: ${msg}`, { cause: err })
}

export function header (headers: Headers, name: string): string | undefined {
  const v = headers[name]
  return Array.isArray(v) ? v[0] : v
}

export function headerList (headers: Headers, name: string): string[] {
  const v = headers[name]
  return v === undefined ? [] : Array.isArray(v) ? v : [v]
}

export function contentLength (headers: Headers): number | undefined {
  const v = header(headers, 'content-length')
  if (v === undefined || !/^\d+$/.test(v.trim())) return undefined
  return Number(v)
}

/** Retry-After as milliseconds: delta-seconds or an HTTP date. */
export function retryAfterMs (headers: Headers, now = Date.now()): number | undefined {
  const v = header(headers, 'retry-after')?.trim()
  if (v === undefined || v === '') return undefined
  if (/^\d+$/.test(v)) return Number(v) * 1000
  const t = Date.parse(v)
  return Number.isNaN(t) ? undefined : Math.max(0, t - now)
}

/**
 * Drops a body we will not read. undici reports a destroyed body as an 'error' event, which
 * would be unhandled once nobody iterates it.
 */
export function discard (body: Dispatcher.ResponseData['body']): void {
  if (body.destroyed) return
  body.on('error', () => {})
  body.destroy()
}

/** Lets undici reuse the connection without buffering an error body we do not need. */
export async function drain (res: Dispatcher.ResponseData): Promise<void> {
  try {
    await res.body.dump({ limit: 64 * 1024 })
  } catch {}
}

export interface ReadCappedOptions {
  cap: number
  /** Error when the body is over `cap`, checked from Content-Length first. */
  tooLarge: () => JoeyError
  host: string
}

/**
 * Reads a whole body into memory with a cap enforced before and during the read. Connection
 * loss mid-body becomes a RetryableError (ERR_TRUNCATED or ERR_REGISTRY_TIMEOUT).
 */
export async function readCapped (res: Dispatcher.ResponseData, opts: ReadCappedOptions): Promise<Buffer> {
  const declared = contentLength(res.headers)
  if (declared !== undefined && declared > opts.cap) {
    discard(res.body)
    throw opts.tooLarge()
  }
  const chunks: Buffer[] = []
  let total = 0
  try {
    for await (const chunk of res.body) {
      total += (chunk as Buffer).byteLength
      if (total > opts.cap) {
        discard(res.body)
        throw opts.tooLarge()
      }
      chunks.push(chunk as Buffer)
    }
  } catch (err) {
    if (err instanceof JoeyError || isAbortError(err)) throw err
    if (isTimeout(err)) throw new RetryableError('ERR_REGISTRY_TIMEOUT', `${opts.host} stopped sending after ${total} bytes`, undefined, { cause: err })
    throw new RetryableError('ERR_TRUNCATED', `connection to ${opts.host} lost after ${total}${declared !== undefined ? ` of ${declared}` : ''} bytes: ${(err as Error).message}`, undefined, { cause: err })
  }
  if (declared !== undefined && total < declared) {
    throw new RetryableError('ERR_TRUNCATED', `${opts.host} sent ${total} of ${declared} bytes`)
  }
  return Buffer.concat(chunks, total)
}

/** Reads a small body for error messages, never failing. */
export async function readErrorBody (res: Dispatcher.ResponseData, cap: number): Promise<string> {
  try {
    const chunks: Buffer[] = []
    let total = 0
    for await (const chunk of res.body) {
      total += (chunk as Buffer).byteLength
      if (total > cap) {
        discard(res.body)
        break
      }
      chunks.push(chunk as Buffer)
    }
    return Buffer.concat(chunks).toString('utf8')
  } catch {
    return ''
  }
}

export interface OciError { code: string, message: string }

/** The distribution spec's error body: {"errors":[{"code":"MANIFEST_UNKNOWN","message":…}]}. */
export function parseOciErrors (text: string): OciError[] {
  try {
    const doc = JSON.parse(text) as { errors?: unknown }
    if (!Array.isArray(doc.errors)) return []
    return doc.errors
      .filter((e): e is { code: string, message?: unknown } => typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'string')
      .map(e => ({ code: e.code, message: typeof e.message === 'string' ? e.message : '' }))
  } catch {
    return []
  }
}
