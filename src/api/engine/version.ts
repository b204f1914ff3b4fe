/**
 * Every Engine API route also answers under /vX.Y/, as dockerd's do. The prefix is cut
 * before routing (rewriteUrl) and checked against the versions joeyd speaks afterwards,
 * with dockerd's wording, so the docker CLI's negotiation and error messages line up.
 */
import type { IncomingMessage } from 'node:http'
import { JoeyError } from '../../common/index.js'
import { API_VERSION, MIN_API_VERSION } from '../constants.js'

const PREFIX_RE = /^\/v([0-9]+\.[0-9]+)(?=\/|\?|$)/

/** rewriteUrl for fastify: /v1.43/images/json?x → /images/json?x. */
export function stripVersionPrefix (req: IncomingMessage): string {
  const url = req.url ?? '/'
  const m = PREFIX_RE.exec(url)
  if (m === null) return url
  const rest = url.slice(m[0].length)
  return rest === '' || rest.startsWith('?') ? `/${rest}` : rest
}

/** The version a /vX.Y/ prefix asks for, if any. */
export function requestedVersion (url: string): string | undefined {
  return PREFIX_RE.exec(url)?.[1]
}

export function compareVersions (a: string, b: string): number {
  const [amaj, amin] = a.split('.').map(Number) as [number, number]
  const [bmaj, bmin] = b.split('.').map(Number) as [number, number]
  return amaj !== bmaj ? amaj - bmaj : amin - bmin
}

/** ERR_INVALID_ARGUMENT (400) for a version outside MIN_API_VERSION…API_VERSION. */
export function checkVersion (version: string | undefined): void {
  if (version === undefined) return
  if (compareVersions(version, MIN_API_VERSION) < 0) {
    throw new JoeyError('ERR_INVALID_ARGUMENT', `client version ${version} is too old. Minimum supported API version is ${MIN_API_VERSION}, please upgrade your client to a newer version`, { detail: { version } })
  }
  if (compareVersions(version, API_VERSION) > 0) {
    throw new JoeyError('ERR_INVALID_ARGUMENT', `client version ${version} is too new. Maximum supported API version is ${API_VERSION}`, { detail: { version } })
  }
}
