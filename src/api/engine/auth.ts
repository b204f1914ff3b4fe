import { JoeyError } from '../../common/index.js'
import { MAX_REGISTRY_AUTH_BYTES } from '../constants.js'

/** docker's AuthConfig as clients put it, base64url-encoded JSON, in X-Registry-Auth. */
export interface RegistryAuthConfig {
  username?: string
  password?: string
  /** base64("username:password"), as in config.json. */
  auth?: string
  identitytoken?: string
  registrytoken?: string
  serveraddress?: string
}

function invalid (why: string): JoeyError {
  return new JoeyError('ERR_INVALID_ARGUMENT', `invalid X-Registry-Auth header: ${why}`, { detail: { header: 'X-Registry-Auth' } })
}

function basic (username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`
}

/** Decodes X-Registry-Auth; undefined when it is absent or carries no credentials ("{}"). */
export function decodeRegistryAuth (header: string | string[] | undefined): RegistryAuthConfig | undefined {
  const value = Array.isArray(header) ? header[0] : header
  if (value === undefined || value.trim() === '') return undefined
  if (value.length > MAX_REGISTRY_AUTH_BYTES) throw invalid(`longer than ${MAX_REGISTRY_AUTH_BYTES} bytes`)
  const text = value.trim()
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) throw invalid('not base64')
  let parsed: unknown
  try {
    parsed = JSON.parse(Buffer.from(text, 'base64').toString('utf8'))
  } catch {
    throw invalid('not base64-encoded JSON')
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw invalid('expected a JSON object')
  const out: RegistryAuthConfig = {}
  for (const key of ['username', 'password', 'auth', 'identitytoken', 'registrytoken', 'serveraddress'] as const) {
    const v = (parsed as Record<string, unknown>)[key]
    if (v === undefined || v === null || v === '') continue
    if (typeof v !== 'string') throw invalid(`"${key}" must be a string`)
    out[key] = v
  }
  if (out.username === undefined && out.auth === undefined && out.identitytoken === undefined && out.registrytoken === undefined) return undefined
  return out
}

/**
 * The Authorization header a pull sends with the client's credentials: a registry token as
 * Bearer, a username and password (or config.json's `auth`) as Basic, an identity token
 * as Bearer.
 */
export function registryAuthorization (config: RegistryAuthConfig | undefined): string | undefined {
  if (config === undefined) return undefined
  if (config.registrytoken !== undefined) return `Bearer ${config.registrytoken}`
  if (config.username !== undefined && config.password !== undefined) return basic(config.username, config.password)
  if (config.auth !== undefined) {
    const decoded = Buffer.from(config.auth, 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon <= 0) throw invalid('"auth" must be base64 of "username:password"')
    return basic(decoded.slice(0, colon), decoded.slice(colon + 1))
  }
  if (config.identitytoken !== undefined) return `Bearer ${config.identitytoken}`
  if (config.username !== undefined) return basic(config.username, '')
  return undefined
}
