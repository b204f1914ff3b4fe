import { readFile } from 'node:fs/promises'
import { constants as osConstants } from 'node:os'
import { posix } from 'node:path'
import { JoeyError } from '../common/index.js'
import type { Bind } from './spec.js'

/** host:container[:ro|rw], docker's -v form for bind mounts. */
export function parseBind (spec: string): Bind {
  if (typeof spec !== 'string') throw new JoeyError('ERR_INVALID_ARGUMENT', 'a bind must be a string "host:container[:ro]"')
  const parts = spec.split(':')
  if (parts.length < 2 || parts.length > 3) {
    throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid bind "${spec}": expected host-path:container-path[:ro|rw]`, { detail: { bind: spec } })
  }
  const [source = '', destination = '', mode] = parts
  if (!source.startsWith('/')) {
    throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid bind "${spec}": the host path must be absolute (named volumes are not supported)`, { detail: { bind: spec } })
  }
  if (!destination.startsWith('/')) {
    throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid bind "${spec}": the container path must be absolute`, { detail: { bind: spec } })
  }
  const dest = posix.normalize(destination)
  if (dest === '/') throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid bind "${spec}": cannot mount over the container's /`, { detail: { bind: spec } })
  if (mode !== undefined && mode !== 'ro' && mode !== 'rw') {
    throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid bind "${spec}": mode must be ro or rw, got "${mode}"`, { detail: { bind: spec } })
  }
  return { source: posix.normalize(source), destination: dest, readOnly: mode === 'ro' }
}

function envKey (entry: string): string {
  const i = entry.indexOf('=')
  return i === -1 ? entry : entry.slice(0, i)
}

export function checkEnv (env: unknown, field = 'env'): string[] {
  if (env === undefined) return []
  if (!Array.isArray(env) || !env.every(e => typeof e === 'string')) {
    throw new JoeyError('ERR_INVALID_ARGUMENT', `${field} must be an array of KEY=VALUE strings`)
  }
  for (const e of env as string[]) {
    if (envKey(e) === '' || e.includes('\0')) throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid environment variable "${e}": expected KEY=VALUE`, { detail: { env: e } })
  }
  return env as string[]
}

/** Overlays `over` on `base` by key, keeping first-seen order; a bare KEY removes it, as docker does. */
export function mergeEnv (base: readonly string[], over: readonly string[]): string[] {
  const map = new Map<string, string>()
  for (const e of base) map.set(envKey(e), e)
  for (const e of over) {
    if (e.includes('=')) map.set(envKey(e), e)
    else map.delete(e)
  }
  return [...map.values()]
}

export function hasEnv (env: readonly string[], key: string): boolean {
  return env.some(e => envKey(e) === key)
}

/** A signal name (SIGTERM, TERM, term) or number, as runc's kill accepts it: the number. */
export function parseSignal (signal: string | number | undefined, fallback: string): number {
  const s = signal ?? fallback
  const signals = osConstants.signals as Record<string, number>
  if (typeof s === 'number' || /^\d+$/.test(String(s))) {
    const n = Number(s)
    if (Number.isInteger(n) && n >= 1 && n <= 64) return n
  } else {
    const name = String(s).toUpperCase()
    const n = signals[name.startsWith('SIG') ? name : `SIG${name}`]
    if (n !== undefined) return n
  }
  throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid signal: ${String(s)}`, { detail: { signal: s } })
}

/** docker's units.HumanDuration: "Less than a second", "5 seconds", "About a minute", … */
export function humanDuration (ms: number): string {
  const s = Math.round(ms / 1000)
  if (s < 1) return 'Less than a second'
  if (s === 1) return '1 second'
  if (s < 60) return `${s} seconds`
  const m = Math.round(s / 60)
  if (m === 1) return 'About a minute'
  if (m < 60) return `${m} minutes`
  const h = Math.round(s / 3600)
  if (h === 1) return 'About an hour'
  if (h < 48) return `${h} hours`
  if (h < 24 * 7 * 2) return `${Math.round(h / 24)} days`
  if (h < 24 * 30 * 2) return `${Math.round(h / 24 / 7)} weeks`
  if (h < 24 * 365 * 2) return `${Math.round(h / 24 / 30)} months`
  return `${Math.round(h / 24 / 365)} years`
}

/**
 * Identity of a live process: field 22 of /proc/<pid>/stat (start time in clock ticks since
 * boot), or undefined when the process is gone or a zombie. A pid reused by another process
 * has another start time.
 */
export async function processStartTime (pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (fields[0] === 'Z' || fields[0] === 'X') return undefined
    return fields[19]
  } catch {
    return undefined
  }
}

export function quoteCommand (args: readonly string[]): string {
  return args.map(a => /^[A-Za-z0-9_./:=@%+-]+$/.test(a) ? a : JSON.stringify(a)).join(' ')
}
