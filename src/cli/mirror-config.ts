/**
 * `joey mirror configure`: writes the configuration that makes containerd, podman or dockerd
 * pull through joeyd's registry mirror, and takes it back out again.
 *
 * The writers are pure (text in, text out) so they can be tested without touching /etc; the
 * file layer keeps `<file>.joey-backup` with the original bytes of every file it changes and
 * `<file>.joey-created` next to every file it creates, and `--undo` goes by those alone.
 */
import { constants as fsConstants } from 'node:fs'
import { copyFile, mkdir, readFile, readdir, realpath, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import { JoeyError } from '../common/index.js'
import { UsageError } from './errors.js'

export type MirrorClient = 'containerd' | 'podman' | 'docker'
export const MIRROR_CLIENTS: readonly MirrorClient[] = ['containerd', 'podman', 'docker']

export const DEFAULT_MIRROR_URL = 'http://127.0.0.1:65001'
export const DEFAULT_CONFIG_PATHS: Readonly<Record<MirrorClient, string>> = {
  // The hosts directory (one `<registry>/hosts.toml` each) that nerdctl and containerd 2.x
  // read by default, and containerd 1.x's CRI plugin once config_path names it.
  containerd: '/etc/containerd/certs.d',
  // A drop-in rather than registries.conf itself: the distribution's file stays untouched.
  podman: '/etc/containers/registries.conf.d/50-joey-mirror.conf',
  docker: '/etc/docker/daemon.json'
}
export const DEFAULT_CONTAINERD_CONFIG = '/etc/containerd/config.toml'
export const DOCKER_HUB = 'docker.io'
export const DOCKER_HUB_ENDPOINT = 'https://registry-1.docker.io'
export const BACKUP_SUFFIX = '.joey-backup'
export const CREATED_SUFFIX = '.joey-created'
const HOSTS_TOML = 'hosts.toml'
const DOCKER_HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io'])
const LABEL = '[a-z0-9](?:[a-z0-9-]*[a-z0-9])?'
const HOST_RE = new RegExp(`^(?:${LABEL}(?:\\.${LABEL})*|\\[[0-9a-f:]+\\])(?::(\\d{1,5}))?$`)

/** The mirror as clients are told to reach it. */
export interface MirrorEndpoint {
  scheme: 'http' | 'https'
  /** host[:port] as it appears in a URL. */
  host: string
  /** scheme://host[:port], no trailing slash. */
  url: string
}

/** A registry whose pulls go through the mirror. */
export interface RegistrySpec {
  /** host[:port]; Docker Hub's aliases are all `docker.io`. */
  host: string
  /** How the registry itself is reached when the mirror cannot serve. */
  scheme: 'http' | 'https'
}

function validPort (port: string | undefined): boolean {
  if (port === undefined) return true
  const n = Number(port)
  return n >= 1 && n <= 65535
}

/** `--mirror`: http(s)://host[:port], nothing else (clients append /v2/ themselves). */
export function parseMirrorUrl (raw: string): MirrorEndpoint {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new UsageError('ERR_INVALID_ARGUMENT', `--mirror: expected a URL such as ${DEFAULT_MIRROR_URL}, got "${raw}"`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError('ERR_INVALID_ARGUMENT', `--mirror: expected an http:// or https:// URL, got "${raw}"`)
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new UsageError('ERR_INVALID_ARGUMENT', `--mirror: expected scheme://host[:port] without path, query or credentials, got "${raw}"`)
  }
  const scheme = url.protocol === 'http:' ? 'http' : 'https'
  return { scheme, host: url.host, url: `${scheme}://${url.host}` }
}

/** `--registry`: host[:port], optionally with http:// (a registry reached over plain HTTP) or https://. */
export function parseRegistry (raw: string): RegistrySpec {
  let rest = raw.trim().toLowerCase()
  let scheme: 'http' | 'https' = 'https'
  const m = /^(https?):\/\/(.*)$/.exec(rest)
  if (m !== null) {
    scheme = m[1] as 'http' | 'https'
    rest = (m[2] as string).replace(/\/$/, '')
  }
  const host = HOST_RE.exec(rest)
  if (rest === '' || host === null || !validPort(host[1])) {
    throw new UsageError('ERR_INVALID_ARGUMENT', `--registry: expected a registry host[:port] such as docker.io or registry.example.com:5000, got "${raw}"`)
  }
  if (DOCKER_HUB_ALIASES.has(rest)) return { host: DOCKER_HUB, scheme: 'https' }
  return { host: rest, scheme }
}

/** Where the registry itself answers, for containerd's `server`. */
export function registryServer (registry: RegistrySpec): string {
  return registry.host === DOCKER_HUB ? DOCKER_HUB_ENDPOINT : `${registry.scheme}://${registry.host}`
}

function tomlString (s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`
}

function header (client: MirrorClient, what: string): string {
  return `# Joey registry mirror (docs/mirror-${client}.md): ${what}\n`
}

/**
 * containerd's hosts.toml for one registry: the mirror first, for resolving tags too (joeyd
 * always resolves them at the registry, so `resolve` is safe), the registry as `server`,
 * which containerd tries when the mirror fails.
 */
export function containerdHostsToml (registry: RegistrySpec, mirror: MirrorEndpoint): string {
  return header('containerd', `pulls from ${registry.host} go through\n# joeyd first and fall back to the registry itself when joeyd cannot serve.`) +
    `server = ${tomlString(registryServer(registry))}\n` +
    '\n' +
    `[host.${tomlString(mirror.url)}]\n` +
    '  capabilities = ["pull", "resolve"]\n'
}

/**
 * The mirror location podman is given for a registry. Podman sends no registry name with a
 * mirror request, so joeyd learns it from a path prefix (`mirror/quay.io/app`); a `:port`
 * cannot appear in a repository path, and Docker Hub is joeyd's default upstream anyway.
 */
export function podmanMirrorLocation (registry: RegistrySpec, mirror: MirrorEndpoint): string {
  if (registry.host === DOCKER_HUB || registry.host.includes(':')) return mirror.host
  return `${mirror.host}/${registry.host}`
}

/** A registries.conf drop-in with one [[registry]] (plus its mirror) per registry. */
export function podmanRegistriesConf (registries: RegistrySpec[], mirror: MirrorEndpoint): string {
  let out = header('podman', 'pulls from the registries below go\n# through joeyd first and fall back to the registry itself when joeyd cannot serve the\n# manifest. Entries here replace those with the same prefix in registries.conf.')
  for (const r of registries) {
    out += '\n[[registry]]\n'
    out += `prefix = ${tomlString(r.host)}\n`
    out += `location = ${tomlString(r.host)}\n`
    if (r.scheme === 'http') out += 'insecure = true\n'
    out += '\n[[registry.mirror]]\n'
    out += `location = ${tomlString(podmanMirrorLocation(r, mirror))}\n`
    // Without it podman insists on HTTPS and the mirror is never used.
    if (mirror.scheme === 'http') out += 'insecure = true\n'
  }
  return out
}

/** Warnings about what the podman drop-in cannot express. */
export function podmanWarnings (registries: RegistrySpec[], mirror: MirrorEndpoint): string[] {
  const warnings: string[] = []
  if (mirror.scheme === 'http') warnings.push(`the mirror ${mirror.url} is plain HTTP: its [[registry.mirror]] entries say insecure = true, without which podman would only try HTTPS and skip it`)
  for (const r of registries) {
    if (r.host !== DOCKER_HUB && r.host.includes(':')) {
      warnings.push(`podman cannot name ${r.host} in a mirror path (a port is not allowed there), so joeyd sends these requests to its --mirror-upstream: run joeyd with --mirror-upstream ${r.host}, or pull ${r.host} directly`)
    }
  }
  return warnings
}

/**
 * dockerd's daemon.json with the mirror first in `registry-mirrors`; every other key and
 * mirror is kept. Returns the input unchanged when the mirror is already first.
 */
export function dockerDaemonJson (existing: string | undefined, mirror: MirrorEndpoint, file = DEFAULT_CONFIG_PATHS.docker): string {
  let config: Record<string, unknown> = {}
  if (existing !== undefined && existing.trim() !== '') {
    let parsed: unknown
    try {
      parsed = JSON.parse(existing)
    } catch (err) {
      throw new JoeyError('ERR_INVALID_CONFIG', `${file}: not valid JSON (${(err as Error).message}); fix it first, nothing was changed`, { detail: { file } })
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new JoeyError('ERR_INVALID_CONFIG', `${file}: expected a JSON object; fix it first, nothing was changed`, { detail: { file } })
    config = parsed as Record<string, unknown>
  }
  const current = config['registry-mirrors']
  if (current !== undefined && (!Array.isArray(current) || current.some(m => typeof m !== 'string'))) {
    throw new JoeyError('ERR_INVALID_CONFIG', `${file}: registry-mirrors: expected a list of URLs; fix it first, nothing was changed`, { detail: { file } })
  }
  const same = (m: string): boolean => m.replace(/\/+$/, '').toLowerCase() === mirror.url.toLowerCase()
  const mirrors = (current ?? []) as string[]
  if (existing !== undefined && mirrors.length > 0 && same(mirrors[0] as string)) return existing
  config['registry-mirrors'] = [mirror.url, ...mirrors.filter(m => !same(m))]
  return `${JSON.stringify(config, null, 2)}\n`
}

/** What every dockerd user must know about registry-mirrors. */
export function dockerWarnings (configFile: string): string[] {
  return [
    'dockerd sends only Docker Hub (docker.io) pulls to registry-mirrors; pulls from any other registry bypass joeyd',
    `dockerd reads ${configFile} only when it starts or reloads: run \`systemctl reload docker\` (SIGHUP) or \`systemctl restart docker\``
  ]
}

// ---- containerd's config.toml -------------------------------------------------------------

interface TomlScan {
  version: number
  /** Dotted key paths (unquoted parts joined with '.') of every table header and key. */
  keys: Map<string, string | undefined>
}

/** Splits `a."b.c".d` into ['a', 'b.c', 'd']. */
function splitKey (key: string): string[] {
  const parts: string[] = []
  const re = /\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*(\.|$)/y
  let m: RegExpExecArray | null
  while (re.lastIndex < key.length && (m = re.exec(key)) !== null) {
    parts.push(m[1] ?? m[2] ?? m[3] ?? '')
    if (m[4] === '') break
  }
  return parts
}

function stringValue (raw: string): string | undefined {
  const m = /^\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)')/.exec(raw)
  if (m === null) return undefined
  return m[2] ?? (m[1] as string).replace(/\\(.)/g, '$1')
}

/**
 * Just enough TOML to find table headers and `key = "string"` lines: containerd's own
 * config files are written that way. Multi-line values are skipped, not understood.
 */
function scanToml (text: string): TomlScan {
  const keys = new Map<string, string | undefined>()
  let table: string[] = []
  let version = 1
  for (const rawLine of text.split('\n')) {
    const line = rawLine.replace(/^\s+/, '')
    if (line === '' || line.startsWith('#')) continue
    const head = /^\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$/.exec(line)
    if (head !== null) {
      table = splitKey(head[1] as string)
      keys.set(table.join('.'), undefined)
      continue
    }
    const kv = /^((?:"(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_.\s-])+?)\s*=(.*)$/.exec(line)
    if (kv === null) continue
    const path = [...table, ...splitKey(kv[1] as string)]
    const value = stringValue(kv[2] as string)
    const full = path.join('.')
    keys.set(full, value)
    // A dotted key also defines the tables above it.
    for (let i = table.length + 1; i < path.length; i++) keys.set(path.slice(0, i).join('.'), undefined)
    if (full === 'version') version = Number((kv[2] as string).trim().split(/\s/)[0])
  }
  return { version, keys }
}

/** The CRI registry table of each config version, as containerd names it. */
function criRegistryTable (version: number): { dotted: string, header: string } {
  if (version >= 3) return { dotted: 'plugins.io.containerd.cri.v1.images.registry', header: '[plugins."io.containerd.cri.v1.images".registry]' }
  if (version === 2) return { dotted: 'plugins.io.containerd.grpc.v1.cri.registry', header: '[plugins."io.containerd.grpc.v1.cri".registry]' }
  return { dotted: 'plugins.cri.registry', header: '[plugins.cri.registry]' }
}

/**
 * The traps of containerd's config.toml for a hosts directory: the CRI plugin (what kubelet
 * pulls through) reads hosts.toml only from its `config_path`, which containerd 1.x leaves
 * empty, and refuses `config_path` next to the older `registry.mirrors` tables.
 */
export function containerdConfigWarnings (configToml: string | undefined, configFile: string, hostsDir: string): string[] {
  const warnings: string[] = []
  const lines = (version: number): string => `${criRegistryTable(version).header}\n  config_path = ${tomlString(hostsDir)}`
  if (configToml === undefined) {
    warnings.push(`${configFile} does not exist: containerd 2.x reads /etc/containerd/certs.d by default, but containerd 1.x's CRI plugin (kubelet's pulls) reads no hosts.toml unless ${configFile} has\n  version = 2\n${lines(2)}\nthen restart containerd`)
    return warnings
  }
  const scan = scanToml(configToml)
  const table = criRegistryTable(scan.version)
  const configPath = scan.keys.get(`${table.dotted}.config_path`)
  const hasMirrors = [...scan.keys.keys()].some(k => k === `${table.dotted}.mirrors` || k.startsWith(`${table.dotted}.mirrors.`))
  if (configPath === undefined || configPath === '') {
    warnings.push(`${configFile} does not set config_path for the CRI registry, so kubelet's pulls ignore ${hostsDir}: add\n${lines(scan.version)}\nthen restart containerd`)
  } else if (!configPath.split(':').map(p => p.replace(/\/+$/, '')).includes(hostsDir.replace(/\/+$/, ''))) {
    warnings.push(`${configFile} sets the CRI registry's config_path to "${configPath}", not ${hostsDir}: kubelet's pulls will not read the hosts.toml written here; pass --config-path ${configPath.split(':')[0] ?? configPath} or change config_path and restart containerd`)
  }
  if (hasMirrors) {
    warnings.push(`${configFile} has ${table.header.slice(0, -1)}.mirrors] tables: containerd refuses them together with config_path; move those mirrors into hosts.toml files and delete the tables`)
  }
  return warnings
}

export function containerdNotes (hostsDir: string): string[] {
  return [`ctr reads hosts.toml only when told: \`ctr images pull --hosts-dir ${hostsDir} …\`; nerdctl and the CRI plugin read it on every pull, no restart needed`]
}

// ---- files ----------------------------------------------------------------------------------

export type FileAction = 'created' | 'updated' | 'unchanged'
export interface FileChange { path: string, action: FileAction, backup?: string }
export type UndoAction = 'restored' | 'removed'
export interface FileUndo { path: string, action: UndoAction, backup?: string }

export interface ConfigureOptions {
  client: MirrorClient
  mirror: MirrorEndpoint
  /** Empty means Docker Hub alone. */
  registries: RegistrySpec[]
  /** Hosts directory (containerd) or file (podman, docker); a directory for podman/docker gets the default file name. */
  configPath?: string
  /** containerd's config.toml, read (never written) to warn about config_path. */
  containerdConfig?: string
}

export interface ConfigureResult { changes: FileChange[], warnings: string[] }

export interface UndoOptions {
  client: MirrorClient
  configPath?: string
  /** containerd: only these registries' hosts.toml; all that joey wrote when empty. */
  registries?: RegistrySpec[]
}

export interface UndoResult { undone: FileUndo[] }

function errno (err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code
}

async function readIfExists (path: string): Promise<Buffer | undefined> {
  try {
    return await readFile(path)
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined
    throw fileError(err, path, 'read')
  }
}

async function exists (path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch (err) {
    if (errno(err) === 'ENOENT') return false
    throw fileError(err, path, 'read')
  }
}

function fileError (err: unknown, path: string, what: 'read' | 'write'): JoeyError {
  const code = errno(err)
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new JoeyError('ERR_FAILED_PRECONDITION', `cannot ${what} ${path}: permission denied (run as root, or choose another file with --config-path)`, { cause: err, detail: { path } })
  }
  if (code === 'ENOTDIR' || code === 'EISDIR') {
    return new JoeyError('ERR_FAILED_PRECONDITION', `cannot ${what} ${path}: ${code === 'EISDIR' ? 'it is a directory' : 'a parent is not a directory'}`, { cause: err, detail: { path } })
  }
  return new JoeyError('ERR_INTERNAL', `cannot ${what} ${path}: ${(err as Error).message}`, { cause: err, detail: { path } })
}

/** Writes beside the target and renames over it, so a reader never sees half a file. */
async function atomicWrite (path: string, data: string | Buffer, mode: number): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.joey-tmp-${process.pid}`)
  try {
    await writeFile(tmp, data, { mode })
    await rename(tmp, path)
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {})
    throw fileError(err, path, 'write')
  }
}

/**
 * A symlinked config file (config management often does that) is changed where it points,
 * so the link survives both the change and the undo.
 */
async function followLink (path: string): Promise<string> {
  try {
    return await realpath(path)
  } catch (err) {
    if (errno(err) === 'ENOENT') return path
    throw fileError(err, path, 'read')
  }
}

/**
 * Puts `content` at `path`, remembering the state before joey first touched it: the original
 * bytes in `.joey-backup`, or a `.joey-created` marker when there was no file. A second run
 * keeps that first record, so --undo always goes back to the operator's own file.
 */
export async function applyFile (given: string, content: string): Promise<FileChange> {
  const path = await followLink(given)
  const current = await readIfExists(path)
  if (current !== undefined && current.equals(Buffer.from(content))) return { path, action: 'unchanged' }
  const backup = path + BACKUP_SUFFIX
  const created = path + CREATED_SUFFIX
  try {
    await mkdir(dirname(path), { recursive: true, mode: 0o755 })
  } catch (err) {
    throw fileError(err, dirname(path), 'write')
  }
  const recorded = await exists(backup) || await exists(created)
  let mode = 0o644
  if (current !== undefined) {
    mode = (await stat(path)).mode & 0o7777
    if (!recorded) {
      try {
        await copyFile(path, backup, fsConstants.COPYFILE_EXCL)
      } catch (err) {
        throw fileError(err, backup, 'write')
      }
    }
  } else if (!recorded) {
    await atomicWrite(created, `joey mirror configure created ${path}; --undo removes it\n`, 0o644)
  }
  await atomicWrite(path, content, mode)
  return current === undefined
    ? { path, action: 'created' }
    : { path, action: 'updated', backup }
}

/** Takes one file back to what it was before joey touched it; undefined when joey never did. */
export async function undoFile (given: string): Promise<FileUndo | undefined> {
  const path = await followLink(given)
  const backup = path + BACKUP_SUFFIX
  const created = path + CREATED_SUFFIX
  if (await exists(backup)) {
    try {
      await rename(backup, path)
      await rm(created, { force: true })
    } catch (err) {
      throw fileError(err, path, 'write')
    }
    return { path, action: 'restored', backup }
  }
  if (await exists(created)) {
    try {
      await rm(path, { force: true })
      await rm(created, { force: true })
    } catch (err) {
      throw fileError(err, path, 'write')
    }
    return { path, action: 'removed' }
  }
  return undefined
}

/** --config-path, or the default; a directory given for a file-based client gets the default name. */
export async function resolveConfigPath (client: MirrorClient, configPath: string | undefined): Promise<string> {
  const path = resolve(configPath ?? DEFAULT_CONFIG_PATHS[client])
  if (client === 'containerd') return path
  let isDir = configPath?.endsWith('/') === true
  if (!isDir) {
    try {
      isDir = (await stat(path)).isDirectory()
    } catch (err) {
      if (errno(err) !== 'ENOENT') throw fileError(err, path, 'read')
    }
  }
  return isDir ? join(path, basename(DEFAULT_CONFIG_PATHS[client])) : path
}

export async function configureMirror (opts: ConfigureOptions): Promise<ConfigureResult> {
  const path = await resolveConfigPath(opts.client, opts.configPath)
  const registries = opts.registries.length > 0 ? opts.registries : [{ host: DOCKER_HUB, scheme: 'https' as const }]
  switch (opts.client) {
    case 'containerd': {
      const configFile = opts.containerdConfig ?? DEFAULT_CONTAINERD_CONFIG
      const configToml = (await readIfExists(configFile))?.toString('utf8')
      const warnings = [...containerdConfigWarnings(configToml, configFile, path), ...containerdNotes(path)]
      const changes: FileChange[] = []
      for (const r of registries) changes.push(await applyFile(join(path, r.host, HOSTS_TOML), containerdHostsToml(r, opts.mirror)))
      return { changes, warnings }
    }
    case 'podman': {
      const change = await applyFile(path, podmanRegistriesConf(registries, opts.mirror))
      return { changes: [change], warnings: podmanWarnings(registries, opts.mirror) }
    }
    case 'docker': {
      const other = registries.find(r => r.host !== DOCKER_HUB)
      if (other !== undefined) throw new UsageError('ERR_INVALID_ARGUMENT', `--registry ${other.host}: dockerd mirrors Docker Hub (docker.io) only; use containerd or podman for other registries`)
      const existing = (await readIfExists(path))?.toString('utf8')
      const change = await applyFile(path, dockerDaemonJson(existing, opts.mirror, path))
      return { changes: [change], warnings: change.action === 'unchanged' ? [dockerWarnings(path)[0] as string] : dockerWarnings(path) }
    }
  }
}

export async function undoMirror (opts: UndoOptions): Promise<UndoResult> {
  const path = await resolveConfigPath(opts.client, opts.configPath)
  if (opts.client !== 'containerd') {
    const done = await undoFile(path)
    return { undone: done !== undefined ? [done] : [] }
  }
  let hosts = (opts.registries ?? []).map(r => r.host)
  if (hosts.length === 0) {
    try {
      hosts = (await readdir(path, { withFileTypes: true })).filter(d => d.isDirectory()).map(d => d.name).sort()
    } catch (err) {
      if (errno(err) !== 'ENOENT') throw fileError(err, path, 'read')
    }
  }
  const undone: FileUndo[] = []
  for (const host of hosts) {
    const done = await undoFile(join(path, host, HOSTS_TOML))
    if (done === undefined) continue
    undone.push(done)
    // The per-registry directory was made for the file; leave it if anything else lives there.
    if (done.action === 'removed') await rmdir(join(path, host)).catch(() => {})
  }
  return { undone }
}
