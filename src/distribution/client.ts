import { Readable } from 'node:stream'
import { rootCertificates } from 'node:tls'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, type Dispatcher } from 'undici'
import type { Logger } from '../common/index.js'
import { JoeyError, isAbortError, isDigest, parseDigest, sha256, type ErrorCode } from '../common/index.js'
import { AuthManager, parseWwwAuthenticate, type Challenge, type TokenTransport } from './auth.js'
import {
  CLOSE_GRACE_MS, MAX_CONFIG_BYTES, MAX_ERROR_BODY_BYTES, MAX_MANIFEST_BYTES, MAX_REDIRECTS, MAX_TOKEN_BYTES,
  RETRIES, RETRY_AFTER_MAX_MS, RETRY_BASE_MS, RETRY_MAX_DELAY_MS, TIMEOUT_MS, USER_AGENT
} from './constants.js'
import { CredentialStore, HostTable } from './hosts.js'
import {
  RetryableError, classify, contentLength, discard, drain, header, isTimeout, parseOciErrors, readCapped, readErrorBody, retryAfterMs
} from './http.js'
import { MANIFEST_ACCEPT, parseManifest, stripMediaTypeParams } from './manifest.js'
import type {
  BlobRequestOptions, BlobResponse, Descriptor, FetchedManifest, Reference, RegistryClient, RegistryClientInit,
  RegistryHostConfig, RegistryRequestOptions
} from './types.js'

export interface RegistryClientComponents {
  logger: Logger
}

type Kind = 'manifest' | 'blob'

/** One logical request against a repository; retries and redirects happen beneath it. */
interface Call {
  ref: Reference
  kind: Kind
  method: 'GET' | 'HEAD'
  /** Path under the registry origin, e.g. /v2/library/busybox/manifests/latest. */
  path: string
  headers: Record<string, string>
  options: RegistryRequestOptions
  /** Names the request in messages: 'manifest docker.io/library/busybox:latest'. */
  what: string
  /** What a 404 without an OCI error code means. */
  notFound: ErrorCode
}

const REDIRECTS = new Set([301, 302, 303, 307, 308])

export function createRegistryClient (init: RegistryClientInit = {}, components: RegistryClientComponents): RegistryClient {
  return new UndiciRegistryClient(init, components)
}

class UndiciRegistryClient implements RegistryClient {
  private readonly log: Logger
  private readonly hosts: HostTable
  private readonly auth: AuthManager
  private readonly agents = new Map<string, Agent>()
  private readonly maxManifestBytes: number
  private readonly maxConfigBytes: number
  private readonly retries: number
  private readonly retryBaseMs: number
  private readonly timeoutMs: number
  private readonly userAgent: string
  private closed = false

  constructor (init: RegistryClientInit, components: RegistryClientComponents) {
    this.log = components.logger.child({ component: 'distribution' })
    this.hosts = new HostTable(init.hosts, init.insecureRegistries)
    this.maxManifestBytes = positive(init.maxManifestBytes, MAX_MANIFEST_BYTES, 'maxManifestBytes')
    this.maxConfigBytes = positive(init.maxConfigBytes, MAX_CONFIG_BYTES, 'maxConfigBytes')
    this.retries = nonNegative(init.retries, RETRIES, 'retries')
    this.retryBaseMs = nonNegative(init.retryBaseMs, RETRY_BASE_MS, 'retryBaseMs')
    this.timeoutMs = positive(init.timeoutMs, TIMEOUT_MS, 'timeoutMs')
    this.userAgent = init.userAgent ?? USER_AGENT
    const credentials = new CredentialStore(this.hosts, init.dockerConfigPath, this.log)
    this.auth = new AuthManager(credentials, this.tokenTransport, this.log)
  }

  async getManifest (ref: Reference, options: RegistryRequestOptions = {}): Promise<FetchedManifest> {
    const call = this.manifestCall(ref, 'GET', options)
    const { bytes, contentType, claimed } = await this.run(call, async (res, host) => {
      const bytes = await readCapped(res, { cap: this.maxManifestBytes, host, tooLarge: () => this.manifestTooLarge(ref, contentLength(res.headers)) })
      return { bytes, contentType: header(res.headers, 'content-type'), claimed: header(res.headers, 'docker-content-digest') }
    })
    const actual = sha256(bytes)
    // A digest reference is verified against itself; a tag only against what the registry claims.
    const expected = ref.digest ?? (isDigest(claimed) ? claimed : undefined)
    if (expected !== undefined && expected !== actual) {
      throw new JoeyError('ERR_DIGEST_MISMATCH',
        `${call.what}: the registry sent bytes with digest ${actual}, expected ${expected}${ref.digest === undefined ? ' (Docker-Content-Digest)' : ''}`,
        { detail: { ref: ref.toString(), expected, actual } })
    }
    const parsed = parseManifest(bytes, contentType)
    const mediaType = (parsed.kind === 'manifest' ? parsed.manifest.mediaType : parsed.index.mediaType) ?? stripMediaTypeParams(contentType)
    return { descriptor: { mediaType, digest: actual, size: bytes.byteLength }, bytes }
  }

  async headManifest (ref: Reference, options: RegistryRequestOptions = {}): Promise<Descriptor> {
    const call = this.manifestCall(ref, 'HEAD', options)
    const found = await this.run(call, async res => {
      await drain(res)
      return {
        contentType: stripMediaTypeParams(header(res.headers, 'content-type')),
        claimed: header(res.headers, 'docker-content-digest'),
        size: contentLength(res.headers)
      }
    })
    if (found.size !== undefined && found.size > this.maxManifestBytes) throw this.manifestTooLarge(ref, found.size)
    if (ref.digest !== undefined && isDigest(found.claimed) && found.claimed !== ref.digest) {
      throw new JoeyError('ERR_DIGEST_MISMATCH', `${call.what}: the registry answered for digest ${found.claimed}`,
        { detail: { ref: ref.toString(), expected: ref.digest, actual: found.claimed } })
    }
    const digest = isDigest(found.claimed) ? found.claimed : ref.digest
    const known = found.contentType !== '' && found.contentType !== 'application/json' && found.contentType !== 'application/octet-stream'
    if (digest === undefined || found.size === undefined || !known) {
      // Some registries leave these headers off HEAD; the body settles them (containerd does the same).
      this.log.debug({ ref: ref.toString() }, 'HEAD manifest lacked digest, size or type; falling back to GET')
      return (await this.getManifest(ref, options)).descriptor
    }
    return { mediaType: found.contentType, digest, size: found.size }
  }

  /**
   * Streams a blob from `options.offset`. A registry (or storage it redirects to) that ignores
   * Range and answers 200 still yields a stream starting at `offset`: the leading bytes are
   * read and dropped here, so callers can append to a partial ingest either way.
   */
  async getBlob (ref: Reference, digest: string, options: BlobRequestOptions = {}): Promise<BlobResponse> {
    const valid = parseDigest(digest)
    const offset = options.offset ?? 0
    const end = options.end
    if (!Number.isSafeInteger(offset) || offset < 0) throw new JoeyError('ERR_INVALID_ARGUMENT', `blob offset must be a non-negative integer, got ${offset}`)
    if (end !== undefined && (!Number.isSafeInteger(end) || end < offset)) throw new JoeyError('ERR_INVALID_ARGUMENT', `blob range end ${end} must be an integer ≥ offset ${offset}`)
    const headers: Record<string, string> = {}
    if (offset > 0 || end !== undefined) headers.range = `bytes=${offset}-${end ?? ''}`
    const call = this.blobCall(ref, valid, 'GET', headers, options)
    return await this.run(call, async (res, host) => {
      let skip: number
      let size: number | undefined
      let expected: number | undefined
      const length = contentLength(res.headers)
      if (res.statusCode === 206) {
        const range = parseContentRange(header(res.headers, 'content-range'))
        if (range === undefined || range.start > offset) {
          discard(res.body)
          throw new JoeyError('ERR_PROTOCOL', `${call.what}: asked for bytes from ${offset}, got Content-Range ${JSON.stringify(header(res.headers, 'content-range'))}`,
            { detail: { ref: ref.toString(), digest: valid, offset } })
        }
        skip = offset - range.start
        size = range.size
        expected = range.end - offset + 1
      } else {
        size = length
        skip = offset
        if (length !== undefined) expected = Math.min(end ?? length - 1, length - 1) - offset + 1
        if (expected !== undefined && expected < 0) {
          discard(res.body)
          throw new JoeyError('ERR_INVALID_ARGUMENT', `${call.what}: offset ${offset} is past the end of the ${length}-byte blob`, { detail: { offset, size: length } })
        }
        if (skip > 0) this.log.debug({ digest: valid, offset }, 'registry ignored Range; skipping leading bytes')
      }
      const limit = end !== undefined ? end - offset + 1 : undefined
      const stream = sliceBody(res.body, { skip, limit, expected, what: call.what, host, timeoutMs: this.timeoutMs })
      const out: BlobResponse = { stream, offset }
      if (size !== undefined) out.size = size
      return out
    })
  }

  async headBlob (ref: Reference, digest: string, options: RegistryRequestOptions = {}): Promise<{ size: number }> {
    const valid = parseDigest(digest)
    const call = this.blobCall(ref, valid, 'HEAD', {}, options)
    const { size, claimed } = await this.run(call, async res => {
      await drain(res)
      return { size: contentLength(res.headers), claimed: header(res.headers, 'docker-content-digest') }
    })
    if (isDigest(claimed) && claimed !== valid) {
      throw new JoeyError('ERR_DIGEST_MISMATCH', `${call.what}: the registry answered for digest ${claimed}`, { detail: { expected: valid, actual: claimed } })
    }
    if (size === undefined) throw new JoeyError('ERR_PROTOCOL', `${call.what}: HEAD answer has no Content-Length`, { detail: { ref: ref.toString(), digest: valid } })
    return { size }
  }

  async getBlobBytes (ref: Reference, desc: Descriptor, options: RegistryRequestOptions = {}): Promise<Buffer> {
    const valid = parseDigest(desc.digest)
    if (!Number.isSafeInteger(desc.size) || desc.size < 0) throw new JoeyError('ERR_INVALID_ARGUMENT', `descriptor size ${desc.size} is not a non-negative integer`)
    if (desc.size > this.maxConfigBytes) {
      throw new JoeyError('ERR_LIMIT_EXCEEDED', `blob ${valid} of ${ref.name} is ${desc.size} bytes; in-memory blobs are capped at ${this.maxConfigBytes} (maxConfigBytes)`,
        { detail: { digest: valid, size: desc.size, limit: this.maxConfigBytes } })
    }
    const call = this.blobCall(ref, valid, 'GET', {}, options)
    const sizeMismatch = (actual: number | string): JoeyError => new JoeyError('ERR_SIZE_MISMATCH',
      `${call.what}: the registry sent ${actual} bytes, the descriptor says ${desc.size}`, { detail: { digest: valid, expected: desc.size, actual } })
    const bytes = await this.run(call, async (res, host) => {
      const declared = contentLength(res.headers)
      if (declared !== undefined && declared !== desc.size) {
        discard(res.body)
        throw sizeMismatch(declared)
      }
      const buf = await readCapped(res, { cap: desc.size, host, tooLarge: () => sizeMismatch(`more than ${desc.size}`) })
      if (buf.byteLength < desc.size) throw new RetryableError('ERR_TRUNCATED', `${host} sent ${buf.byteLength} of ${desc.size} bytes`)
      return buf
    })
    const actual = sha256(bytes)
    if (actual !== valid) {
      throw new JoeyError('ERR_DIGEST_MISMATCH', `${call.what}: content has digest ${actual}`, { detail: { ref: ref.toString(), expected: valid, actual } })
    }
    return bytes
  }

  async close (): Promise<void> {
    this.closed = true
    const agents = [...this.agents.values()]
    this.agents.clear()
    await Promise.all(agents.map(async agent => {
      // close() waits for in-flight requests; a blob stream nobody reads would hold it forever.
      const timer = setTimeout(() => { agent.destroy().catch(() => {}) }, CLOSE_GRACE_MS)
      try {
        await agent.close()
      } catch {} finally {
        clearTimeout(timer)
      }
    }))
  }

  private manifestCall (ref: Reference, method: 'GET' | 'HEAD', options: RegistryRequestOptions): Call {
    const target = ref.digest ?? ref.tag ?? 'latest'
    return {
      ref,
      kind: 'manifest',
      method,
      path: `/v2/${ref.path}/manifests/${target}`,
      headers: { accept: MANIFEST_ACCEPT },
      options,
      what: `manifest ${ref.toString()}`,
      notFound: 'ERR_MANIFEST_UNKNOWN'
    }
  }

  private blobCall (ref: Reference, digest: string, method: 'GET' | 'HEAD', headers: Record<string, string>, options: RegistryRequestOptions): Call {
    return {
      ref,
      kind: 'blob',
      method,
      path: `/v2/${ref.path}/blobs/${digest}`,
      headers,
      options,
      what: `blob ${digest} of ${ref.name}`,
      notFound: 'ERR_BLOB_UNKNOWN'
    }
  }

  private manifestTooLarge (ref: Reference, size: number | undefined): JoeyError {
    return new JoeyError('ERR_MANIFEST_TOO_LARGE',
      `manifest ${ref.toString()} is ${size !== undefined ? `${size} bytes` : 'larger than the limit'}; manifests are capped at ${this.maxManifestBytes} bytes (maxManifestBytes)`,
      { detail: { ref: ref.toString(), size, limit: this.maxManifestBytes } })
  }

  /** Runs one call with retries: each attempt authenticates, follows redirects, checks status, consumes. */
  private async run<T> (call: Call, consume: (res: Dispatcher.ResponseData, host: string) => Promise<T>): Promise<T> {
    if (this.closed) throw new JoeyError('ERR_UNAVAILABLE', 'the registry client is closed')
    const { signal } = call.options
    const host = call.ref.domain
    for (let attempt = 0; ; attempt++) {
      try {
        signal?.throwIfAborted()
        const res = await this.request(call)
        if (res.statusCode < 200 || res.statusCode >= 300) throw await this.statusError(call, res)
        return await consume(res, host)
      } catch (err) {
        const failure = classify(err, host, call.what, signal)
        if (failure instanceof JoeyError) throw failure
        if (attempt >= this.retries) {
          throw new JoeyError(failure.code, `${call.what}: ${failure.message}; gave up after ${attempt + 1} attempt${attempt === 0 ? '' : 's'}`,
            { cause: failure.cause ?? failure, detail: { ref: call.ref.toString(), host, attempts: attempt + 1, ...failure.detail } })
        }
        const delay = this.backoff(attempt, failure.retryAfterMs)
        this.log.warn({ host, what: call.what, attempt: attempt + 1, delayMs: delay, reason: failure.message }, 'registry request failed; retrying')
        try {
          await sleep(delay, undefined, signal !== undefined ? { signal } : {})
        } catch (e) {
          throw new JoeyError('ERR_ABORTED', `${call.what}: aborted`, { cause: e })
        }
      }
    }
  }

  /** Exponential backoff with full jitter on the upper half; a Retry-After raises the floor. */
  private backoff (attempt: number, retryAfter: number | undefined): number {
    const exp = Math.min(RETRY_MAX_DELAY_MS, this.retryBaseMs * 2 ** attempt)
    const jittered = exp / 2 + Math.random() * exp / 2
    return retryAfter !== undefined ? Math.max(jittered, Math.min(retryAfter, RETRY_AFTER_MAX_MS)) : jittered
  }

  /** One attempt: credentials, the 401 dance, then redirects (which keep Authorization only on the registry's origin). */
  private async request (call: Call): Promise<Dispatcher.ResponseData> {
    const { ref, options } = call
    const settings = this.hosts.settings(ref.domain)
    const registryUrl = new URL(call.path, settings.origin)
    const scope = `repository:${ref.path}:pull`
    const passthrough = options.authorization
    let authorization = passthrough ?? await this.auth.preemptive(ref.domain, scope, signalOpt(options.signal))
    let res = await this.send(registryUrl, call.method, withAuth(call.headers, authorization), options.signal)

    if (res.statusCode === 401) {
      const raw = res.headers['www-authenticate']
      await drain(res)
      const challengeHeader = Array.isArray(raw) ? raw.join(', ') : raw
      if (passthrough !== undefined) {
        // The caller's own credentials: its client must answer the challenge, not us.
        throw unauthorized(`${call.what}: the registry rejected the authorization passed with the request`, ref, challengeHeader)
      }
      const challenge = pickChallenge(parseWwwAuthenticate(raw))
      if (challenge === undefined) {
        throw unauthorized(`${call.what}: ${ref.domain} requires authentication but sent no usable challenge${challengeHeader !== undefined ? ` (${JSON.stringify(challengeHeader)})` : ''}; ` +
          `log in or configure credentials for ${ref.domain} (hosts["${ref.domain}"] or a docker config.json)`, ref, challengeHeader)
      }
      const answer = await this.auth.respond(ref.domain, challenge, scope, authorization, signalOpt(options.signal))
      if (answer === undefined) {
        throw unauthorized(`${call.what}: ${ref.domain} asks for ${challenge.scheme} credentials and none are configured; ` +
          `log in or set hosts["${ref.domain}"].username/password`, ref, challengeHeader)
      }
      authorization = answer
      res = await this.send(registryUrl, call.method, withAuth(call.headers, authorization), options.signal)
      if (res.statusCode === 401) {
        await drain(res)
        const hasCreds = await this.auth.hasCredentials(ref.domain)
        throw unauthorized(`${call.what}: access denied by ${ref.domain} ${hasCreds ? 'with the configured credentials' : 'to anonymous users'}` +
          `${hasCreds ? '' : `; log in or configure credentials for ${ref.domain}`} (or the repository does not exist)`, ref, challengeHeader)
      }
    }

    let url = registryUrl
    for (let hops = 0; REDIRECTS.has(res.statusCode); hops++) {
      const location = header(res.headers, 'location')
      await drain(res)
      if (location === undefined) throw new JoeyError('ERR_PROTOCOL', `${call.what}: redirect ${res.statusCode} without a Location`)
      if (hops >= MAX_REDIRECTS) throw new JoeyError('ERR_PROTOCOL', `${call.what}: more than ${MAX_REDIRECTS} redirects`)
      const next = new URL(location, url)
      if (next.protocol !== 'http:' && next.protocol !== 'https:') throw new JoeyError('ERR_PROTOCOL', `${call.what}: redirect to unsupported URL ${next.protocol}`)
      // Signed storage URLs carry their own credentials; the registry's token must not leak there.
      const headers = next.origin === registryUrl.origin ? withAuth(call.headers, authorization) : { ...call.headers }
      this.log.debug({ what: call.what, to: next.host }, 'following redirect')
      res = await this.send(next, call.method, headers, options.signal)
      url = next
    }
    return res
  }

  private async send (url: URL, method: 'GET' | 'HEAD' | 'POST', headers: Record<string, string>, signal?: AbortSignal, body?: string): Promise<Dispatcher.ResponseData> {
    const opts: Dispatcher.RequestOptions = {
      origin: url.origin,
      path: url.pathname + url.search,
      method,
      headers: { 'user-agent': this.userAgent, ...headers },
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs
    }
    if (signal !== undefined) opts.signal = signal
    if (body !== undefined) opts.body = body
    return await this.dispatcher(url.host).request(opts)
  }

  private dispatcher (authority: string): Agent {
    const config: RegistryHostConfig = this.hosts.config(authority)
    const key = `${config.ca ?? ''}\0${config.skipVerify === true ? 'noverify' : ''}`
    let agent = this.agents.get(key)
    if (agent === undefined) {
      const connect: Record<string, unknown> = { timeout: this.timeoutMs }
      // An explicit ca replaces Node's trust store, so the public roots are passed along with it.
      if (config.ca !== undefined) connect.ca = [...rootCertificates, config.ca]
      if (config.skipVerify === true) connect.rejectUnauthorized = false
      agent = new Agent({ connect, headersTimeout: this.timeoutMs, bodyTimeout: this.timeoutMs })
      this.agents.set(key, agent)
    }
    return agent
  }

  private async statusError (call: Call, res: Dispatcher.ResponseData): Promise<Error> {
    const status = res.statusCode
    const host = call.ref.domain
    const text = call.method === 'HEAD' ? '' : await readErrorBody(res, MAX_ERROR_BODY_BYTES)
    if (call.method === 'HEAD') await drain(res)
    const first = parseOciErrors(text)[0]
    const said = first !== undefined ? `: ${first.code}${first.message !== '' ? ` ${first.message}` : ''}` : ''
    const detail = { ref: call.ref.toString(), status, ...(first !== undefined ? { registryCode: first.code, registryMessage: first.message } : {}) }
    if (status === 429 || status >= 500) {
      return new RetryableError('ERR_REGISTRY_UNAVAILABLE', `${host} answered ${status}${said}`, retryAfterMs(res.headers), { detail })
    }
    if (status === 404) {
      switch (first?.code) {
        case 'NAME_UNKNOWN': return new JoeyError('ERR_NAME_UNKNOWN', `repository ${call.ref.name} not found at ${host} (${call.what})`, { detail })
        case 'MANIFEST_UNKNOWN': return new JoeyError('ERR_MANIFEST_UNKNOWN', `manifest ${call.ref.toString()} not found`, { detail })
        case 'BLOB_UNKNOWN': return new JoeyError('ERR_BLOB_UNKNOWN', `${call.what} not found`, { detail })
        default: return new JoeyError(call.notFound, `${call.what} not found`, { detail })
      }
    }
    if (status === 401 || status === 403) {
      return new JoeyError('ERR_UNAUTHORIZED', `${call.what}: access denied (${status}${said}); check the credentials for ${host}`, { detail })
    }
    if (status === 416) return new JoeyError('ERR_INVALID_ARGUMENT', `${call.what}: range not satisfiable (${status})`, { detail })
    return new JoeyError('ERR_PROTOCOL', `${call.what}: unexpected status ${status} from ${host}${said}`, { detail })
  }

  private readonly tokenTransport: TokenTransport = async (url, init) => {
    const res = await this.send(url, init.method, init.headers, init.signal, init.body)
    const text = await readCapped(res, {
      cap: MAX_TOKEN_BYTES,
      host: url.host,
      tooLarge: () => new JoeyError('ERR_AUTH_CHALLENGE', `token server ${url.host} sent more than ${MAX_TOKEN_BYTES} bytes`)
    })
    return { status: res.statusCode, text: text.toString('utf8') }
  }
}

function signalOpt (signal: AbortSignal | undefined): { signal?: AbortSignal } {
  return signal !== undefined ? { signal } : {}
}

function withAuth (headers: Record<string, string>, authorization: string | undefined): Record<string, string> {
  return authorization !== undefined ? { ...headers, authorization } : { ...headers }
}

function unauthorized (message: string, ref: Reference, challenge: string | undefined): JoeyError {
  return new JoeyError('ERR_UNAUTHORIZED', message, { detail: { ref: ref.toString(), ...(challenge !== undefined ? { challenge } : {}) } })
}

/** Bearer beats Basic (as in docker); a Bearer without realm is not usable. */
function pickChallenge (challenges: Challenge[]): Challenge | undefined {
  return challenges.find(c => c.scheme === 'bearer' && c.params.realm !== undefined) ?? challenges.find(c => c.scheme === 'basic')
}

function parseContentRange (value: string | undefined): { start: number, end: number, size?: number } | undefined {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(value?.trim() ?? '')
  if (m === null) return undefined
  const out: { start: number, end: number, size?: number } = { start: Number(m[1]), end: Number(m[2]) }
  if (m[3] !== '*') out.size = Number(m[3])
  return out.end < out.start ? undefined : out
}

interface SliceOptions {
  skip: number
  limit?: number
  /** Bytes the stream must deliver; fewer means the connection was cut. */
  expected?: number
  what: string
  host: string
  timeoutMs: number
}

/**
 * The body as the caller sees it: leading bytes skipped, capped at `limit`, and undici's
 * errors turned into JoeyErrors (ERR_TRUNCATED, ERR_REGISTRY_TIMEOUT, ERR_ABORTED).
 */
function sliceBody (body: Dispatcher.ResponseData['body'], o: SliceOptions): Readable {
  let sent = 0
  let toSkip = o.skip
  async function * chunks (): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of body) {
        let buf = chunk as Buffer
        if (toSkip > 0) {
          if (buf.byteLength <= toSkip) {
            toSkip -= buf.byteLength
            continue
          }
          buf = buf.subarray(toSkip)
          toSkip = 0
        }
        if (o.limit !== undefined && sent + buf.byteLength > o.limit) buf = buf.subarray(0, o.limit - sent)
        if (buf.byteLength > 0) {
          sent += buf.byteLength
          yield buf
        }
        if (o.limit !== undefined && sent >= o.limit) return
      }
    } catch (err) {
      if (isAbortError(err) && !isTimeout(err)) throw new JoeyError('ERR_ABORTED', `${o.what}: aborted`, { cause: err })
      if (isTimeout(err)) throw new JoeyError('ERR_REGISTRY_TIMEOUT', `${o.what}: ${o.host} sent nothing for ${o.timeoutMs} ms after ${sent} bytes`, { cause: err, detail: { received: sent } })
      throw new JoeyError('ERR_TRUNCATED', `${o.what}: connection lost after ${sent} bytes: ${(err as Error).message}`, { cause: err, detail: { received: sent } })
    }
    if (toSkip > 0 || (o.expected !== undefined && sent < o.expected)) {
      throw new JoeyError('ERR_TRUNCATED', `${o.what}: stream ended after ${sent}${o.expected !== undefined ? ` of ${o.expected}` : ''} bytes`, { detail: { received: sent, expected: o.expected } })
    }
  }
  const out = Readable.from(chunks(), { objectMode: false })
  // A consumer that gives up must free the socket even while the generator waits for data.
  out.once('close', () => { discard(body) })
  return out
}

function positive (v: number | undefined, fallback: number, name: string): number {
  if (v === undefined) return fallback
  if (!Number.isFinite(v) || v <= 0) throw new JoeyError('ERR_INVALID_CONFIG', `${name} must be a positive number, got ${v}`)
  return v
}

function nonNegative (v: number | undefined, fallback: number, name: string): number {
  if (v === undefined) return fallback
  if (!Number.isFinite(v) || v < 0) throw new JoeyError('ERR_INVALID_CONFIG', `${name} must be zero or more, got ${v}`)
  return v
}

