import { constants as fsConstants } from 'node:fs'
import { lstat, open, readlink, stat } from 'node:fs/promises'
import { join, posix } from 'node:path'
import { JoeyError } from '../common/index.js'

const MAX_SYMLINK_HOPS = 40
const MAX_ID = 2 ** 31 - 1
/** passwd/group files larger than this are not read (a hostile image could make them huge). */
const MAX_DB_BYTES = 4 * 1024 * 1024

/**
 * Maps `path` inside a container root to a host path, following symlinks as the container
 * would see them: absolute targets and `..` stop at `root`, so a link like
 * `/etc/passwd -> /etc/shadow` or `../../../../etc/passwd` never leaves the rootfs.
 * Missing components are kept as they are.
 */
export async function resolveInRoot (root: string, path: string): Promise<string> {
  const pending = path.split('/').filter(c => c !== '' && c !== '.')
  const done: string[] = []
  let hops = 0
  while (pending.length > 0) {
    const part = pending.shift()!
    if (part === '..') {
      done.pop()
      continue
    }
    const host = join(root, ...done, part)
    let st
    try {
      st = await lstat(host)
    } catch {
      // Nothing below a missing component exists to follow; `..` is applied lexically and an
      // absolute path never climbs above '/'.
      return join(root, posix.normalize('/' + [...done, part, ...pending].join('/')))
    }
    if (!st.isSymbolicLink()) {
      done.push(part)
      continue
    }
    if (++hops > MAX_SYMLINK_HOPS) throw new JoeyError('ERR_UNSAFE_PATH', `too many levels of symbolic links resolving ${path} in the container`, { detail: { path } })
    const target = await readlink(host)
    if (target.startsWith('/')) done.length = 0
    pending.unshift(...target.split('/').filter(c => c !== '' && c !== '.'))
  }
  return join(root, ...done)
}

/**
 * Reads a small file of the container's filesystem. The last component is opened with
 * O_NOFOLLOW and the opened file's real path is checked to lie under root, so a running
 * container swapping in a symlink between resolve and open cannot make us read host files.
 * `undefined` when the file does not exist.
 */
export async function readFileInRoot (root: string, path: string, maxBytes = MAX_DB_BYTES): Promise<Buffer | undefined> {
  const host = await resolveInRoot(root, path)
  let fh
  try {
    fh = await open(host, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK)
  } catch (err) {
    const code = (err as { code?: string }).code
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return undefined
    throw err
  }
  try {
    const real = await readlink(`/proc/self/fd/${fh.fd}`)
    const rootReal = await realRoot(root)
    if (real !== rootReal && !real.startsWith(rootReal.endsWith('/') ? rootReal : rootReal + '/')) {
      throw new JoeyError('ERR_UNSAFE_PATH', `${path} in the container resolves outside its root filesystem`, { detail: { path } })
    }
    const st = await fh.stat()
    if (!st.isFile()) return undefined
    if (st.size > maxBytes) throw new JoeyError('ERR_LIMIT_EXCEEDED', `${path} in the container is larger than ${maxBytes} bytes`, { detail: { path, size: st.size } })
    return await fh.readFile()
  } finally {
    await fh.close()
  }
}

async function realRoot (root: string): Promise<string> {
  const fh = await open(root, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY)
  try {
    return await readlink(`/proc/self/fd/${fh.fd}`)
  } finally {
    await fh.close()
  }
}

export interface PasswdEntry { name: string, uid: number, gid: number, home: string, shell: string }
export interface GroupEntry { name: string, gid: number, members: string[] }

export function parsePasswd (text: string): PasswdEntry[] {
  const out: PasswdEntry[] = []
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue
    const f = line.split(':')
    if (f.length < 4) continue
    const uid = parseId(f[2]!)
    const gid = parseId(f[3]!)
    if (uid === undefined || gid === undefined) continue
    out.push({ name: f[0]!, uid, gid, home: f[5] ?? '', shell: f[6] ?? '' })
  }
  return out
}

export function parseGroup (text: string): GroupEntry[] {
  const out: GroupEntry[] = []
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue
    const f = line.split(':')
    if (f.length < 3) continue
    const gid = parseId(f[2]!)
    if (gid === undefined) continue
    out.push({ name: f[0]!, gid, members: (f[3] ?? '').split(',').map(m => m.trim()).filter(m => m !== '') })
  }
  return out
}

function parseId (s: string): number | undefined {
  if (!/^[0-9]{1,10}$/.test(s)) return undefined
  const n = Number(s)
  return n <= MAX_ID ? n : undefined
}

export interface ExecUser {
  uid: number
  gid: number
  additionalGids: number[]
  /** From passwd; '/' when the user has no entry. */
  home: string
}

/**
 * Resolves docker's `--user` forms (name, uid, name:group, uid:gid, …) against the
 * container's /etc/passwd and /etc/group, as runc's libcontainer/user does: numeric ids
 * need no entry (gid 0 when the uid has none), names must exist. Supplementary groups are
 * the groups that list the user as a member.
 */
export async function resolveUser (root: string, user: string | undefined): Promise<ExecUser> {
  const spec = user ?? ''
  const [userPart = '', groupPart, extra] = spec.split(':')
  if (extra !== undefined) throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid user "${spec}": expected user[:group]`, { detail: { user: spec } })
  const passwd = parsePasswd((await readFileInRoot(root, '/etc/passwd'))?.toString('utf8') ?? '')
  const groups = parseGroup((await readFileInRoot(root, '/etc/group'))?.toString('utf8') ?? '')

  let entry: PasswdEntry | undefined
  let uid: number
  const wantUser = userPart === '' ? '0' : userPart
  const numericUid = parseId(wantUser)
  if (numericUid !== undefined) {
    uid = numericUid
    entry = passwd.find(p => p.uid === uid)
  } else {
    if (/^[0-9-]+$/.test(wantUser)) throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid user "${spec}": uid out of range`, { detail: { user: spec } })
    entry = passwd.find(p => p.name === wantUser)
    if (entry === undefined) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `unable to find user ${wantUser}: no matching entries in passwd file`, { detail: { user: spec } })
    }
    uid = entry.uid
  }

  let gid = entry?.gid ?? 0
  if (groupPart !== undefined && groupPart !== '') {
    const numericGid = parseId(groupPart)
    if (numericGid !== undefined) {
      gid = numericGid
    } else {
      const g = groups.find(x => x.name === groupPart)
      if (g === undefined) {
        throw new JoeyError('ERR_INVALID_ARGUMENT', `unable to find group ${groupPart}: no matching entries in group file`, { detail: { user: spec } })
      }
      gid = g.gid
    }
  } else if (groupPart === '') {
    throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid user "${spec}": empty group`, { detail: { user: spec } })
  }

  const additionalGids = entry === undefined
    ? []
    : [...new Set(groups.filter(g => g.members.includes(entry.name) && g.gid !== gid).map(g => g.gid))]
  return { uid, gid, additionalGids, home: entry !== undefined && entry.home !== '' ? entry.home : '/' }
}

export type LookupResult = { ok: true, path: string } | { ok: false, reason: 'not-found' | 'not-executable', message: string }

/**
 * Finds `cmd` the way execvp in the container will: a name with a slash is taken as a path
 * (relative to cwd), others are searched in PATH. Used to fail `start` with docker's
 * message instead of a bare exit status from the init.
 */
export async function lookPath (root: string, cmd: string, pathEnv: string, cwd: string): Promise<LookupResult> {
  const candidates = cmd.includes('/')
    ? [posix.resolve(cwd, cmd)]
    : pathEnv.split(':').filter(d => d !== '').map(d => posix.join(posix.resolve(cwd, d), cmd))
  let sawNonExec = false
  for (const c of candidates) {
    const host = await resolveInRoot(root, c)
    try {
      const st = await stat(host)
      if (!st.isFile()) {
        if (cmd.includes('/')) sawNonExec = true
        continue
      }
      if ((st.mode & 0o111) === 0) {
        sawNonExec = true
        continue
      }
      return { ok: true, path: c }
    } catch {}
  }
  if (sawNonExec) return { ok: false, reason: 'not-executable', message: `exec: "${cmd}": permission denied` }
  return {
    ok: false,
    reason: 'not-found',
    message: cmd.includes('/') ? `exec: "${cmd}": stat ${cmd}: no such file or directory` : `exec: "${cmd}": executable file not found in $PATH`
  }
}
