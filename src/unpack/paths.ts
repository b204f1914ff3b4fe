import { JoeyError } from '../common/index.js'

export interface NameLimits {
  maxPathLength: number
  maxComponentLength: number
}

/**
 * Turns a tar name into path components relative to the layer root, the way docker reads
 * them: a leading `/` is dropped, `.` and empty components vanish and `..` goes up one, but
 * never above the root. The result names a path inside the root lexically; symlinks are
 * dealt with when the parents are resolved on disk.
 */
export function splitEntryPath (name: string, limits: NameLimits, what = 'entry'): string[] {
  if (name.includes('\0')) {
    throw new JoeyError('ERR_UNSAFE_PATH', `${what} "${printable(name)}" contains a NUL byte`, { detail: { entry: name } })
  }
  if (Buffer.byteLength(name) > limits.maxPathLength) {
    throw new JoeyError('ERR_LIMIT_EXCEEDED',
      `${what} path "${printable(name).slice(0, 80)}…" is ${Buffer.byteLength(name)} bytes, over the limit of ${limits.maxPathLength}`,
      { detail: { entry: name, limit: limits.maxPathLength } })
  }
  const out: string[] = []
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue
    if (part === '..') {
      if (out.length === 0) {
        throw new JoeyError('ERR_UNSAFE_PATH', `${what} "${printable(name)}" climbs above the layer root`, { detail: { entry: name } })
      }
      out.pop()
      continue
    }
    if (Buffer.byteLength(part) > limits.maxComponentLength) {
      throw new JoeyError('ERR_LIMIT_EXCEEDED',
        `${what} "${printable(name)}" has a component of ${Buffer.byteLength(part)} bytes, over the limit of ${limits.maxComponentLength}`,
        { detail: { entry: name, limit: limits.maxComponentLength } })
    }
    out.push(part)
  }
  return out
}

/** Names in messages: control characters escaped so a hostile name cannot forge log lines. */
export function printable (name: string): string {
  // eslint-disable-next-line no-control-regex
  return name.replace(/[\x00-\x1f\x7f]/g, c => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
}
