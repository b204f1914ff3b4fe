import type { Logger } from '../common/index.js'
import { JoeyError } from '../common/index.js'
import { TOKEN_EXPIRY_MARGIN_MS, TOKEN_MIN_EXPIRY_S } from './constants.js'
import type { Credential, CredentialStore } from './hosts.js'
import { RetryableError } from './http.js'

export interface Challenge {
  /** Lowercased auth scheme: "bearer", "basic", … */
  scheme: string
  /** Parameters with lowercased names: realm, service, scope, error, … */
  params: Record<string, string>
}

const TOKEN_CHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/

/**
 * Parses WWW-Authenticate (RFC 7235): one or more challenges, each a scheme followed by
 * comma-separated name=value or name="quoted value" parameters.
 */
export function parseWwwAuthenticate (value: string | string[] | undefined): Challenge[] {
  if (value === undefined) return []
  if (Array.isArray(value)) return value.flatMap(v => parseWwwAuthenticate(v))
  const out: Challenge[] = []
  const s = value
  let i = 0
  let current: Challenge | undefined
  const skip = (re: RegExp): void => { while (i < s.length && re.test(s[i]!)) i++ }
  while (i < s.length) {
    skip(/[\s,]/)
    const start = i
    skip(TOKEN_CHAR)
    if (i === start) {
      i++ // a stray character; skip it rather than loop forever
      continue
    }
    const token = s.slice(start, i)
    skip(/[ \t]/)
    if (s[i] === '=' && current !== undefined) {
      i++
      skip(/[ \t]/)
      let v = ''
      if (s[i] === '"') {
        i++
        while (i < s.length && s[i] !== '"') {
          if (s[i] === '\\' && i + 1 < s.length) i++
          v += s[i]
          i++
        }
        i++
      } else {
        const vs = i
        while (i < s.length && s[i] !== ',' && !/\s/.test(s[i]!)) i++
        v = s.slice(vs, i)
      }
      current.params[token.toLowerCase()] = v
    } else if (s[i] === '=') {
      i++ // a parameter before any scheme: malformed, ignore it
    } else {
      current = { scheme: token.toLowerCase(), params: {} }
      out.push(current)
    }
  }
  return out
}

export function basicAuthorization (username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`
}

/** One HTTP exchange with a token server, done by the client so it shares agents and timeouts. */
export type TokenTransport = (url: URL, init: { method: 'GET' | 'POST', headers: Record<string, string>, body?: string, signal?: AbortSignal }) =>
Promise<{ status: number, text: string }>

interface CachedToken { authorization: string, expiresAt: number }

export interface AuthorizeOptions { signal?: AbortSignal }

/**
 * Per registry: remembers the last challenge, caches bearer tokens per scope until they
 * expire, and hands out the Authorization header a request should carry.
 */
export class AuthManager {
  private readonly tokens = new Map<string, CachedToken>()
  private readonly inflight = new Map<string, Promise<string>>()
  private readonly challenges = new Map<string, Challenge>()

  constructor (
    private readonly credentials: CredentialStore,
    private readonly transport: TokenTransport,
    private readonly log: Logger,
    private readonly now: () => number = Date.now
  ) {}

  /** What to send before any challenge: a cached token, or what the last challenge asked for. */
  async preemptive (registry: string, scope: string, opts: AuthorizeOptions = {}): Promise<string | undefined> {
    const cached = this.cached(registry, scope)
    if (cached !== undefined) return cached
    const challenge = this.challenges.get(registry)
    if (challenge !== undefined) return await this.answer(registry, challenge, scope, opts)
    const cred = await this.credentials.lookup(registry)
    return cred?.token !== undefined ? `Bearer ${cred.token}` : undefined
  }

  /**
   * Answers a 401's challenge. `rejected` is the Authorization the 401 came back for; it is
   * dropped from the cache so the retry gets a fresh token. Undefined means there is nothing
   * to answer with (Basic without credentials).
   */
  async respond (registry: string, challenge: Challenge, scope: string, rejected: string | undefined, opts: AuthorizeOptions = {}): Promise<string | undefined> {
    this.challenges.set(registry, challenge)
    const cached = this.tokens.get(tokenKey(registry, scope))
    if (cached !== undefined && (rejected === undefined || cached.authorization === rejected)) this.tokens.delete(tokenKey(registry, scope))
    return await this.answer(registry, challenge, scope, opts)
  }

  /** Whether any credentials are configured for the registry, to word error messages. */
  async hasCredentials (registry: string): Promise<boolean> {
    return (await this.credentials.lookup(registry)) !== undefined
  }

  private cached (registry: string, scope: string): string | undefined {
    const key = tokenKey(registry, scope)
    const t = this.tokens.get(key)
    if (t === undefined) return undefined
    if (t.expiresAt <= this.now()) {
      this.tokens.delete(key)
      return undefined
    }
    return t.authorization
  }

  private async answer (registry: string, challenge: Challenge, scope: string, opts: AuthorizeOptions): Promise<string | undefined> {
    if (challenge.scheme === 'basic') {
      const cred = await this.credentials.lookup(registry)
      if (cred?.username === undefined) return undefined
      return basicAuthorization(cred.username, cred.password ?? '')
    }
    const cached = this.cached(registry, scope)
    if (cached !== undefined) return cached
    const key = tokenKey(registry, scope)
    let pending = this.inflight.get(key)
    if (pending === undefined) {
      // Concurrent pulls of one repository share one token request.
      pending = this.fetchToken(registry, challenge, scope, opts).finally(() => this.inflight.delete(key))
      this.inflight.set(key, pending)
    }
    return await pending
  }

  private async fetchToken (registry: string, challenge: Challenge, scope: string, opts: AuthorizeOptions): Promise<string> {
    const realmText = challenge.params.realm
    let realm: URL
    try {
      realm = new URL(realmText ?? '')
      if (realm.protocol !== 'https:' && realm.protocol !== 'http:') throw new Error('not http(s)')
    } catch {
      throw new JoeyError('ERR_AUTH_CHALLENGE', `registry ${registry} sent a Bearer challenge with an unusable realm ${JSON.stringify(realmText)}`, { detail: { registry, challenge } })
    }
    const scopes = [scope]
    const asked = challenge.params.scope
    if (asked !== undefined && asked !== '' && !scopes.includes(asked)) scopes.push(asked)
    const service = challenge.params.service
    const cred = await this.credentials.lookup(registry)
    const identity = cred?.identityToken ?? cred?.token

    let res: { status: number, text: string }
    if (identity !== undefined) {
      // OAuth2 refresh-token grant, as docker does with an identitytoken from `docker login`.
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: identity, client_id: 'joey', scope: scopes.join(' ') })
      if (service !== undefined) form.set('service', service)
      res = await this.transport(realm, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString(), ...signalOf(opts) })
    } else {
      const url = new URL(realm)
      if (service !== undefined) url.searchParams.set('service', service)
      for (const s of scopes) url.searchParams.append('scope', s)
      const headers: Record<string, string> = {}
      if (cred?.username !== undefined) headers.authorization = basicAuthorization(cred.username, cred.password ?? '')
      res = await this.transport(url, { method: 'GET', headers, ...signalOf(opts) })
    }

    if (res.status === 401 || res.status === 403) {
      throw new JoeyError('ERR_UNAUTHORIZED', `token server ${realm.host} refused ${describe(cred)} for ${scopes.join(' ')}${hint(cred, registry)}`,
        { detail: { registry, realm: realm.href, status: res.status } })
    }
    if (res.status === 429 || res.status >= 500) {
      throw new RetryableError('ERR_REGISTRY_UNAVAILABLE', `token server ${realm.host} answered ${res.status}`)
    }
    if (res.status !== 200) {
      throw new JoeyError('ERR_AUTH_CHALLENGE', `token server ${realm.host} answered ${res.status}: ${res.text.slice(0, 200)}`, { detail: { registry, realm: realm.href, status: res.status } })
    }
    let body: { token?: unknown, access_token?: unknown, expires_in?: unknown, issued_at?: unknown }
    try {
      body = JSON.parse(res.text)
    } catch {
      throw new JoeyError('ERR_AUTH_CHALLENGE', `token server ${realm.host} sent a response that is not JSON`, { detail: { registry, realm: realm.href } })
    }
    const token = typeof body.token === 'string' && body.token !== '' ? body.token : body.access_token
    if (typeof token !== 'string' || token === '') {
      throw new JoeyError('ERR_AUTH_CHALLENGE', `token server ${realm.host} sent no "token" or "access_token"`, { detail: { registry, realm: realm.href } })
    }
    const expiresIn = typeof body.expires_in === 'number' && body.expires_in >= TOKEN_MIN_EXPIRY_S ? body.expires_in : TOKEN_MIN_EXPIRY_S
    const issued = typeof body.issued_at === 'string' ? Date.parse(body.issued_at) : NaN
    // Trust issued_at only when the clocks roughly agree; otherwise count from now.
    const start = !Number.isNaN(issued) && Math.abs(issued - this.now()) < 60_000 ? issued : this.now()
    const authorization = `Bearer ${token}`
    this.tokens.set(tokenKey(registry, scope), { authorization, expiresAt: start + expiresIn * 1000 - TOKEN_EXPIRY_MARGIN_MS })
    this.log.debug({ registry, scope, expiresIn }, 'got registry token')
    return authorization
  }
}

function signalOf (opts: AuthorizeOptions): { signal?: AbortSignal } {
  return opts.signal !== undefined ? { signal: opts.signal } : {}
}

function tokenKey (registry: string, scope: string): string {
  return `${registry} ${scope}`
}

function describe (cred: Credential | undefined): string {
  if (cred === undefined) return 'anonymous access'
  if (cred.username !== undefined) return `the credentials of user "${cred.username}"`
  return 'the configured token'
}

function hint (cred: Credential | undefined, registry: string): string {
  return cred === undefined
    ? `; log in to ${registry} (docker login, then point dockerConfigPath at its config.json) or set hosts["${registry}"].username/password`
    : `; check the credentials for ${registry}`
}
