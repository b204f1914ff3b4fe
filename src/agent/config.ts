/**
 * joeyd's configuration: flags over an optional YAML file over defaults, plus registry
 * credentials from the environment. Parsed and validated once, here; everything past this
 * file gets typed, checked values. docs/configuration.md documents every option.
 */
import { readFileSync, statSync } from 'node:fs'
import { dirname, isAbsolute, resolve } from 'node:path'
import { Command, CommanderError, Option } from 'commander'
import { parse as parseYaml } from 'yaml'
import { JoeyError, errorMessage, parseByteRate } from '../common/index.js'
import { parsePlatform, type RegistryHostConfig } from '../distribution/index.js'
import {
  DEFAULT_DATA_ROOT, DEFAULT_HOST, DEFAULT_LOG_FORMAT, DEFAULT_LOG_LEVEL, DEFAULT_MAX_CONCURRENT_DOWNLOADS, DEFAULT_P2P_MAX_CONCURRENT_DOWNLOADS, DEFAULT_SOCKET_PATH,
  DEFAULT_TCP_PORT, MAX_CONCURRENT_DOWNLOADS_LIMIT, REGISTRY_AUTH_ENV_PREFIX,
  DEFAULT_MIRROR, DEFAULT_MIRROR_UPSTREAM, DEFAULT_P2P_LISTEN
} from './constants.js'
import { AGENT_VERSION } from './version.js'

export type ListenAddress =
  | { kind: 'unix', path: string, address: string }
  | { kind: 'tcp', host: string, port: number, address: string }

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent'
export type LogFormat = 'json' | 'pretty' | 'auto'

export interface AgentConfig {
  /** Engine API listeners, in the order given. */
  hosts: ListenAddress[]
  dataRoot: string
  /** The YAML file read, if any (absolute). */
  configFile?: string
  /** host[:port] reached over plain HTTP. */
  insecureRegistries: string[]
  /** docker-style config.json with registry credentials. */
  registryConfig?: string
  /** Per-registry settings: TLS from the file, credentials from JOEY_REGISTRY_AUTH_<HOST>. */
  registries: Record<string, RegistryHostConfig>
  /** os/arch[/variant] pulled from an index when a pull names none; the host's by default. */
  platform?: string
  maxConcurrentDownloads: number
  logLevel: LogLevel
  logFormat: LogFormat
  /** Registry mirror listener (host, port), or undefined when turned off. */
  mirror?: { host: string, port: number }
  /** Upstream for mirror requests that name none. */
  mirrorUpstream: string
  /** Answer tags from local image records when the upstream is unreachable. */
  mirrorAllowStaleTags: boolean
  /** Supernode base URLs; empty means no P2P: blobs come straight from the origin. */
  supernodes: string[]
  /** libp2p listen multiaddr (used when supernodes are configured). */
  p2pListen: string
  /** Private swarm key (the file's bytes, parsed by the p2p module). */
  swarmKeyFile?: string
  /** Bytes per second; 0 means unlimited. */
  uploadLimit: number
  downloadLimit: number
  /** Host labels sent to the supernode, e.g. zone and rack. */
  labels: Record<string, string>
  /** How often the agent re-registers with its supernodes (ms); HEARTBEAT_MS when unset. */
  supernodeHeartbeatMs?: number
}

export interface ConfigOutput {
  /** Where --help and --version go. */
  writeOut: (text: string) => void
}

const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']
const LOG_FORMATS: readonly LogFormat[] = ['json', 'pretty', 'auto']

/** Keys of the YAML file: each flag's long name, lists in the plural as dockerd's daemon.json has them. */
const FILE_KEYS = new Set([
  'hosts', 'data-root', 'insecure-registries', 'registry-config', 'registries', 'platform',
  'max-concurrent-downloads', 'log-level', 'log-format',
  'mirror', 'mirror-upstream', 'mirror-allow-stale-tags', 'supernodes', 'p2p-listen', 'swarm-key',
  'upload-limit', 'download-limit', 'labels'
])
const REGISTRY_KEYS = new Set(['insecure', 'ca-file', 'skip-verify'])

// host[:port] as image references spell registries: DNS name, IPv4 or [IPv6], optional port.
const REGISTRY_HOST_RE = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])(?::[0-9]{1,5})?$/

function bad (where: string, why: string): JoeyError {
  return new JoeyError('ERR_INVALID_CONFIG', `${where}: ${why}`, { detail: { option: where } })
}

function collect (value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value]
}

/** Parses one -H value: unix:///abs/path or tcp://host[:port]. */
export function parseListenAddress (value: string, where = '--host'): ListenAddress {
  if (value.startsWith('unix://')) {
    const path = value.slice('unix://'.length) || DEFAULT_SOCKET_PATH
    if (!isAbsolute(path)) throw bad(where, `socket path must be absolute, got "${value}" (unix:///path/joeyd.sock)`)
    return { kind: 'unix', path, address: `unix://${path}` }
  }
  if (value.startsWith('tcp://')) {
    const rest = value.slice('tcp://'.length).replace(/\/$/, '')
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:/[\]]+)(?::([0-9]*))?$/.exec(rest)
    if (m === null) throw bad(where, `expected tcp://host:port, got "${value}"`)
    const host = m[1]!
    const portText = m[2]
    const port = portText === undefined || portText === '' ? DEFAULT_TCP_PORT : Number(portText)
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw bad(where, `port must be 0–65535, got "${portText}" in "${value}"`)
    const bare = host.startsWith('[') ? host.slice(1, -1) : host
    return { kind: 'tcp', host: bare, port, address: `tcp://${host}:${port}` }
  }
  throw bad(where, `expected unix:///path or tcp://host:port, got "${value}"`)
}

function validRegistryHost (value: string, where: string): string {
  if (value.includes('://') || value.includes('/')) throw bad(where, `expected a registry host[:port] without scheme or path, got "${value}"`)
  if (!REGISTRY_HOST_RE.test(value)) throw bad(where, `"${value}" is not a valid registry host[:port]`)
  const port = /:([0-9]+)$/.exec(value)?.[1]
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) throw bad(where, `port of "${value}" must be 1–65535`)
  return value.toLowerCase()
}

/**
 * JOEY_REGISTRY_AUTH_<HOST>: environment variable names cannot hold ".", "-" or ":", so a
 * run of one "_" stands for ".", two for "-" and three for ":"
 * (JOEY_REGISTRY_AUTH_REGISTRY__1_EXAMPLE_COM___5000 → registry-1.example.com:5000).
 */
export function registryHostFromEnvName (name: string): string {
  const encoded = name.slice(REGISTRY_AUTH_ENV_PREFIX.length)
  if (encoded === '' || encoded.startsWith('_') || encoded.endsWith('_')) throw bad(name, 'the name must end in an encoded registry host, e.g. JOEY_REGISTRY_AUTH_REGISTRY_EXAMPLE_COM___5000')
  const host = encoded.replace(/_+/g, (run) => {
    switch (run.length) {
      case 1: return '.'
      case 2: return '-'
      case 3: return ':'
      default: throw bad(name, `a run of ${run.length} underscores encodes nothing ("_" is ".", "__" is "-", "___" is ":")`)
    }
  }).toLowerCase()
  return validRegistryHost(host, name)
}

function envCredentials (env: Record<string, string | undefined>): Record<string, RegistryHostConfig> {
  const out: Record<string, RegistryHostConfig> = {}
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(REGISTRY_AUTH_ENV_PREFIX) || value === undefined) continue
    const host = registryHostFromEnvName(name)
    const colon = value.indexOf(':')
    if (colon <= 0) throw bad(name, 'expected "username:password"')
    out[host] = { username: value.slice(0, colon), password: value.slice(colon + 1) }
  }
  return out
}

interface FileConfig {
  path: string
  values: Record<string, unknown>
}

function readConfigFile (path: string): FileConfig {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw bad('--config', `cannot read ${path}: ${errorMessage(err)}`)
  }
  let parsed: unknown
  try {
    parsed = parseYaml(text)
  } catch (err) {
    throw bad('--config', `${path} is not valid YAML: ${errorMessage(err).split('\n')[0]!}`)
  }
  if (parsed === null || parsed === undefined) return { path, values: {} }
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw bad('--config', `${path} must hold a YAML mapping of option names to values`)
  const values = parsed as Record<string, unknown>
  for (const key of Object.keys(values)) {
    if (!FILE_KEYS.has(key)) throw bad('--config', `unknown key "${key}" in ${path} (known: ${[...FILE_KEYS].join(', ')})`)
  }
  return { path, values }
}

/** Reads one typed value from the file; the error names the file and key. */
function fileValue (file: FileConfig | undefined, key: string, type: 'string' | 'strings' | 'integer' | 'boolean'): unknown {
  if (file === undefined || !(key in file.values)) return undefined
  const v = file.values[key]
  const where = `${file.path}: ${key}`
  switch (type) {
    case 'string':
      if (typeof v !== 'string' || v === '') throw bad(where, 'expected a non-empty string')
      return v
    case 'strings':
      if (!Array.isArray(v) || v.some(x => typeof x !== 'string' || x === '')) throw bad(where, 'expected a list of non-empty strings')
      return v
    case 'integer':
      if (typeof v !== 'number' || !Number.isInteger(v)) throw bad(where, 'expected an integer')
      return v
    case 'boolean':
      if (typeof v !== 'boolean') throw bad(where, 'expected true or false')
      return v
  }
}

function fileRegistries (file: FileConfig | undefined): Record<string, RegistryHostConfig> {
  if (file === undefined || !('registries' in file.values)) return {}
  const raw = file.values.registries
  const where = `${file.path}: registries`
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw bad(where, 'expected a mapping of registry host[:port] to settings')
  const out: Record<string, RegistryHostConfig> = {}
  for (const [hostKey, settings] of Object.entries(raw as Record<string, unknown>)) {
    const entryWhere = `${where}."${hostKey}"`
    const host = validRegistryHost(hostKey, entryWhere)
    if (settings === null || typeof settings !== 'object' || Array.isArray(settings)) throw bad(entryWhere, 'expected a mapping')
    const s = settings as Record<string, unknown>
    const config: RegistryHostConfig = {}
    for (const key of Object.keys(s)) {
      if (!REGISTRY_KEYS.has(key)) {
        const hint = key === 'username' || key === 'password' ? '; credentials come from JOEY_REGISTRY_AUTH_<HOST> or --registry-config, never from this file' : ''
        throw bad(`${entryWhere}.${key}`, `unknown setting (known: ${[...REGISTRY_KEYS].join(', ')})${hint}`)
      }
    }
    if (s.insecure !== undefined) {
      if (typeof s.insecure !== 'boolean') throw bad(`${entryWhere}.insecure`, 'expected true or false')
      config.insecure = s.insecure
    }
    if (s['skip-verify'] !== undefined) {
      if (typeof s['skip-verify'] !== 'boolean') throw bad(`${entryWhere}.skip-verify`, 'expected true or false')
      config.skipVerify = s['skip-verify']
    }
    if (s['ca-file'] !== undefined) {
      if (typeof s['ca-file'] !== 'string' || s['ca-file'] === '') throw bad(`${entryWhere}.ca-file`, 'expected a file path')
      const caPath = resolve(dirname(file.path), s['ca-file'])
      try {
        config.ca = readFileSync(caPath, 'utf8')
      } catch (err) {
        throw bad(`${entryWhere}.ca-file`, `cannot read ${caPath}: ${errorMessage(err)}`)
      }
      if (!config.ca.includes('-----BEGIN CERTIFICATE-----')) throw bad(`${entryWhere}.ca-file`, `${caPath} holds no PEM certificate`)
    }
    out[host] = config
  }
  return out
}

function buildProgram (output: ConfigOutput): Command {
  return new Command('joeyd')
    .description('Joey node agent: serves the Docker Engine API for pulling and managing images')
    .version(AGENT_VERSION, '-v, --version', 'print the version and exit')
    .option('-H, --host <address>', `Engine API listener, unix:///path or tcp://host:port (repeatable; default ${DEFAULT_HOST})`, collect)
    .option('--data-root <dir>', `state directory (default ${DEFAULT_DATA_ROOT})`)
    .option('--config <file>', 'YAML configuration file; flags override its values')
    .option('--insecure-registry <host:port>', 'registry reached over plain HTTP (repeatable)', collect)
    .option('--registry-config <file>', 'docker-style config.json to read registry credentials from')
    .option('--platform <os/arch[/variant]>', "platform pulled from multi-platform images (default: this host's)")
    .option('--max-concurrent-downloads <n>', `layers downloaded at once per pull (default ${DEFAULT_MAX_CONCURRENT_DOWNLOADS}; ${DEFAULT_P2P_MAX_CONCURRENT_DOWNLOADS} with a supernode)`)
    .option('--log-level <level>', `${LOG_LEVELS.join(', ')} (default ${DEFAULT_LOG_LEVEL})`)
    .addOption(new Option('--log-format <format>', `json, pretty, or auto: pretty when stderr is a terminal (default ${DEFAULT_LOG_FORMAT})`))
    .option('--mirror <host:port|off>', `registry mirror listener (default ${DEFAULT_MIRROR})`)
    .option('--mirror-upstream <host>', `upstream for mirror requests that name none (default ${DEFAULT_MIRROR_UPSTREAM})`)
    .option('--mirror-allow-stale-tags', 'answer tags from local images when the upstream is unreachable')
    .option('--supernode <url[,url…]>', 'supernode(s) to schedule P2P transfers (repeatable)', collect)
    .option('--p2p-listen <multiaddr>', `libp2p listen address (default ${DEFAULT_P2P_LISTEN})`)
    .option('--swarm-key <file>', 'private swarm key file: only peers with the same key connect')
    .option('--upload-limit <bytes/s>', 'cap on bytes/s served to peers (e.g. 50M; 0 = none)')
    .option('--download-limit <bytes/s>', 'cap on bytes/s downloaded from peers and the origin (e.g. 50M; 0 = none)')
    .option('--label <key=value>', 'host label sent to the supernode, e.g. zone=eu-1 (repeatable)', collect)
    // Advanced: only worth changing with a supernode host TTL other than the default (tests use it too).
    .addOption(new Option('--supernode-heartbeat <ms>', 'how often to re-register with the supernodes').hideHelp())
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({ writeOut: output.writeOut, writeErr: () => {}, outputError: () => {} })
}

function resolvePath (value: string, base: string): string {
  return isAbsolute(value) ? value : resolve(base, value)
}

/**
 * Parses joeyd's argv (without node and script) and environment. Throws JoeyError
 * ERR_INVALID_CONFIG naming the flag, key or variable at fault; --help and --version
 * write to `output` and throw commander's CommanderError with exitCode 0.
 */
export function parseAgentConfig (argv: string[], env: Record<string, string | undefined> = {}, output: ConfigOutput = { writeOut: (s) => process.stdout.write(s) }): AgentConfig {
  const program = buildProgram(output)
  try {
    program.parse(argv, { from: 'user' })
  } catch (err) {
    if (err instanceof CommanderError && err.exitCode === 0) throw err
    const message = err instanceof Error ? err.message.replace(/^error: /, '') : String(err)
    throw new JoeyError('ERR_INVALID_CONFIG', message, { cause: err })
  }
  const o = program.opts<{
    host?: string[], dataRoot?: string, config?: string, insecureRegistry?: string[], registryConfig?: string,
    platform?: string, maxConcurrentDownloads?: string, logLevel?: string, logFormat?: string,
    mirror?: string, mirrorUpstream?: string, mirrorAllowStaleTags?: boolean, supernode?: string[], p2pListen?: string,
    swarmKey?: string, uploadLimit?: string, downloadLimit?: string, label?: string[], supernodeHeartbeat?: string
  }>()
  const cwd = process.cwd()
  const file = o.config !== undefined ? readConfigFile(resolvePath(o.config, cwd)) : undefined
  const fileDir = file !== undefined ? dirname(file.path) : cwd

  // Lists from a flag replace the file's list: the command line is what the operator sees.
  const hostSpecs = o.host ?? (fileValue(file, 'hosts', 'strings') as string[] | undefined) ?? [DEFAULT_HOST]
  const hostWhere = o.host !== undefined ? '--host' : `${file?.path ?? ''}: hosts`
  const seen = new Set<string>()
  const hosts: ListenAddress[] = []
  for (const spec of hostSpecs) {
    const addr = parseListenAddress(spec, hostWhere)
    if (seen.has(addr.address)) continue
    seen.add(addr.address)
    hosts.push(addr)
  }

  const dataRootRaw = o.dataRoot ?? (fileValue(file, 'data-root', 'string') as string | undefined)
  if (o.dataRoot === '') throw bad('--data-root', 'must not be empty')
  const dataRoot = dataRootRaw === undefined ? DEFAULT_DATA_ROOT : resolvePath(dataRootRaw, o.dataRoot !== undefined ? cwd : fileDir)

  const insecureWhere = o.insecureRegistry !== undefined ? '--insecure-registry' : `${file?.path ?? ''}: insecure-registries`
  const insecureRegistries = [...new Set((o.insecureRegistry ?? (fileValue(file, 'insecure-registries', 'strings') as string[] | undefined) ?? [])
    .map(h => validRegistryHost(h, insecureWhere)))]

  let registryConfig: string | undefined
  const registryConfigRaw = o.registryConfig ?? (fileValue(file, 'registry-config', 'string') as string | undefined)
  if (registryConfigRaw !== undefined) {
    const where = o.registryConfig !== undefined ? '--registry-config' : `${file?.path ?? ''}: registry-config`
    registryConfig = resolvePath(registryConfigRaw, o.registryConfig !== undefined ? cwd : fileDir)
    let isFile: boolean
    try {
      isFile = statSync(registryConfig).isFile()
    } catch (err) {
      throw bad(where, `cannot read ${registryConfig}: ${errorMessage(err)}`)
    }
    if (!isFile) throw bad(where, `${registryConfig} is not a file`)
  }

  const platform = o.platform ?? (fileValue(file, 'platform', 'string') as string | undefined)
  if (platform !== undefined) {
    try { parsePlatform(platform) } catch (err) {
      throw bad(o.platform !== undefined ? '--platform' : `${file?.path ?? ''}: platform`, errorMessage(err))
    }
  }

  let maxConcurrentDownloads: number | undefined
  if (o.maxConcurrentDownloads !== undefined) {
    if (!/^[0-9]+$/.test(o.maxConcurrentDownloads)) throw bad('--max-concurrent-downloads', `expected a whole number, got "${o.maxConcurrentDownloads}"`)
    maxConcurrentDownloads = Number(o.maxConcurrentDownloads)
  } else {
    maxConcurrentDownloads = fileValue(file, 'max-concurrent-downloads', 'integer') as number | undefined
  }
  if (maxConcurrentDownloads !== undefined && (maxConcurrentDownloads < 1 || maxConcurrentDownloads > MAX_CONCURRENT_DOWNLOADS_LIMIT)) {
    throw bad(o.maxConcurrentDownloads !== undefined ? '--max-concurrent-downloads' : `${file?.path ?? ''}: max-concurrent-downloads`, `must be 1–${MAX_CONCURRENT_DOWNLOADS_LIMIT}, got ${maxConcurrentDownloads}`)
  }

  const logLevel = o.logLevel ?? (fileValue(file, 'log-level', 'string') as string | undefined) ?? DEFAULT_LOG_LEVEL
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw bad(o.logLevel !== undefined ? '--log-level' : `${file?.path ?? ''}: log-level`, `expected one of ${LOG_LEVELS.join(', ')}, got "${logLevel}"`)
  }
  const logFormat = o.logFormat ?? (fileValue(file, 'log-format', 'string') as string | undefined) ?? DEFAULT_LOG_FORMAT
  if (!(LOG_FORMATS as readonly string[]).includes(logFormat)) {
    throw bad(o.logFormat !== undefined ? '--log-format' : `${file?.path ?? ''}: log-format`, `expected one of ${LOG_FORMATS.join(', ')}, got "${logFormat}"`)
  }

  const mirrorRaw = o.mirror ?? (fileValue(file, 'mirror', 'string') as string | undefined) ?? DEFAULT_MIRROR
  const mirrorWhere = o.mirror !== undefined ? '--mirror' : `${file?.path ?? ''}: mirror`
  let mirror: { host: string, port: number } | undefined
  if (mirrorRaw !== 'off') {
    const addr = parseListenAddress(`tcp://${mirrorRaw}`, mirrorWhere)
    if (addr.kind !== 'tcp') throw bad(mirrorWhere, 'expected host:port or off')
    mirror = { host: addr.host, port: addr.port }
  }
  const mirrorUpstream = validRegistryHost(o.mirrorUpstream ?? (fileValue(file, 'mirror-upstream', 'string') as string | undefined) ?? DEFAULT_MIRROR_UPSTREAM,
    o.mirrorUpstream !== undefined ? '--mirror-upstream' : `${file?.path ?? ''}: mirror-upstream`)
  const mirrorAllowStaleTags = o.mirrorAllowStaleTags ?? (fileValue(file, 'mirror-allow-stale-tags', 'boolean') as boolean | undefined) ?? false

  const supernodeWhere = o.supernode !== undefined ? '--supernode' : `${file?.path ?? ''}: supernodes`
  const supernodes = [...new Set((o.supernode ?? (fileValue(file, 'supernodes', 'strings') as string[] | undefined) ?? [])
    .flatMap(v => v.split(',')).map(v => v.trim()).filter(v => v !== '')
    .map((u) => {
      let url: URL
      try { url = new URL(u) } catch { throw bad(supernodeWhere, `"${u}" is not a URL (http://host:8002)`) }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw bad(supernodeWhere, `"${u}" must be http:// or https://`)
      return url.origin
    }))]
  const p2pListen = o.p2pListen ?? (fileValue(file, 'p2p-listen', 'string') as string | undefined) ?? DEFAULT_P2P_LISTEN
  if (!/^\/(ip4|ip6|dns|dns4|dns6)\/[^/]+\/tcp\/\d{1,5}$/.test(p2pListen)) throw bad(o.p2pListen !== undefined ? '--p2p-listen' : `${file?.path ?? ''}: p2p-listen`, `expected a TCP multiaddr like /ip4/0.0.0.0/tcp/65002, got "${p2pListen}"`)
  const swarmKeyRaw = o.swarmKey ?? (fileValue(file, 'swarm-key', 'string') as string | undefined)
  const swarmKeyFile = swarmKeyRaw !== undefined ? resolvePath(swarmKeyRaw, o.swarmKey !== undefined ? cwd : fileDir) : undefined
  if (swarmKeyFile !== undefined) {
    try { statSync(swarmKeyFile) } catch (err) { throw bad(o.swarmKey !== undefined ? '--swarm-key' : `${file?.path ?? ''}: swarm-key`, `cannot read ${swarmKeyFile}: ${errorMessage(err)}`) }
  }
  const rate = (flag: string | undefined, key: string): number => {
    const raw = flag ?? (() => { const v = file?.values[key]; return v === undefined ? undefined : String(v) })()
    if (raw === undefined) return 0
    try { return parseByteRate(raw) } catch (err) { throw bad(flag !== undefined ? `--${key}` : `${file?.path ?? ''}: ${key}`, errorMessage(err)) }
  }
  const uploadLimit = rate(o.uploadLimit, 'upload-limit')
  const downloadLimit = rate(o.downloadLimit, 'download-limit')
  const labels: Record<string, string> = {}
  const fileLabels = file?.values.labels
  if (fileLabels !== undefined) {
    if (fileLabels === null || typeof fileLabels !== 'object' || Array.isArray(fileLabels)) throw bad(`${file?.path ?? ''}: labels`, 'expected a mapping of label names to values')
    for (const [k, v] of Object.entries(fileLabels as Record<string, unknown>)) labels[k] = String(v)
  }
  for (const l of o.label ?? []) {
    const eq = l.indexOf('=')
    if (eq <= 0) throw bad('--label', `expected key=value, got "${l}"`)
    labels[l.slice(0, eq)] = l.slice(eq + 1)
  }
  for (const [k, v] of Object.entries(labels)) {
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(k) || v.length > 256) throw bad('--label', `invalid label ${k}=${v}`)
  }

  let supernodeHeartbeatMs: number | undefined
  if (o.supernodeHeartbeat !== undefined) {
    if (!/^[0-9]+$/.test(o.supernodeHeartbeat) || Number(o.supernodeHeartbeat) < 100 || Number(o.supernodeHeartbeat) > 3_600_000) {
      throw bad('--supernode-heartbeat', `expected milliseconds from 100 to 3600000, got "${o.supernodeHeartbeat}"`)
    }
    supernodeHeartbeatMs = Number(o.supernodeHeartbeat)
  }

  const registries = fileRegistries(file)
  for (const [host, cred] of Object.entries(envCredentials(env))) registries[host] = { ...registries[host], ...cred }

  const config: AgentConfig = {
    hosts,
    dataRoot,
    insecureRegistries,
    registries,
    // With a supernode every layer of a pull starts at once: its seed fetches them all from
    // the origin at the start, and no layer's swarm starts late behind the others.
    maxConcurrentDownloads: maxConcurrentDownloads ?? (supernodes.length > 0 ? DEFAULT_P2P_MAX_CONCURRENT_DOWNLOADS : DEFAULT_MAX_CONCURRENT_DOWNLOADS),
    logLevel: logLevel as LogLevel,
    logFormat: logFormat as LogFormat,
    mirrorUpstream,
    mirrorAllowStaleTags,
    supernodes,
    p2pListen,
    uploadLimit,
    downloadLimit,
    labels
  }
  if (mirror !== undefined) config.mirror = mirror
  if (swarmKeyFile !== undefined) config.swarmKeyFile = swarmKeyFile
  if (file !== undefined) config.configFile = file.path
  if (registryConfig !== undefined) config.registryConfig = registryConfig
  if (platform !== undefined) config.platform = platform
  if (supernodeHeartbeatMs !== undefined) config.supernodeHeartbeatMs = supernodeHeartbeatMs
  return config
}
