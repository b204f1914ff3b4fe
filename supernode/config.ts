import { readFileSync } from 'node:fs'
import { Command, Option } from 'commander'
import { parse as parseYaml } from 'yaml'
import { JoeyError } from '../src/common/index.js'
import { parseByteRate } from '../src/common/index.js'

export interface SupernodeConfig {
  dataRoot: string
  /** HTTP API listen address, host:port (port 0 picks a free one). */
  listen: string
  /** libp2p listen multiaddr. */
  p2pListen: string
  insecureRegistries: string[]
  registryConfig?: string
  swarmKey?: Uint8Array
  swarmKeyFile?: string
  maxBackToSource: number
  seedUploadSlots: number
  /** Bytes/s the seed serves to agents (0: unlimited). */
  uploadLimit: number
  taskIdleMs: number
  /** Parents only among peers that joined earlier (acyclic trees) instead of a mesh. */
  rankedParents: boolean
  logLevel: string
  logFormat: 'json' | 'pretty' | 'auto'
}

const DEFAULTS: SupernodeConfig = {
  dataRoot: '/var/lib/joey-supernode',
  listen: '0.0.0.0:8002',
  p2pListen: '/ip4/0.0.0.0/tcp/8003',
  insecureRegistries: [],
  maxBackToSource: 2,
  seedUploadSlots: 16,
  uploadLimit: 0,
  taskIdleMs: 24 * 60 * 60 * 1000,
  rankedParents: false,
  logLevel: 'info',
  logFormat: 'json'
}

const FILE_KEYS = new Set(['dataRoot', 'listen', 'p2pListen', 'insecureRegistries', 'registryConfig', 'swarmKeyFile', 'maxBackToSource', 'seedUploadSlots', 'taskIdleMs', 'uploadLimit', 'rankedParents', 'logLevel', 'logFormat'])

function collect (value: string, previous: string[]): string[] { return [...previous, value] }

/** Parses flags over an optional YAML file over defaults; one clear error per bad value. */
export function parseSupernodeConfig (argv: string[], readSwarmKey: (path: string) => Uint8Array): SupernodeConfig {
  const program = new Command('joey-supernode')
    .description('Joey supernode: schedules blob pieces across agents and seeds them from the origin once')
    .option('--data-root <dir>', 'state directory')
    .option('--listen <host:port>', 'HTTP API listen address (default 0.0.0.0:8002)')
    .option('--p2p-listen <multiaddr>', 'libp2p listen address (default /ip4/0.0.0.0/tcp/8003)')
    .option('--insecure-registry <host:port>', 'registry reached over plain HTTP (repeatable)', collect, [])
    .option('--registry-config <file>', 'docker-style config.json with registry credentials')
    .option('--swarm-key <file>', 'private swarm key file (/key/swarm/psk/1.0.0/)')
    .option('--max-back-to-source <n>', 'agents of one task allowed to fetch from the origin at once')
    .option('--upload-limit <bytes/s>', 'cap on bytes/s the seed serves to agents (e.g. 100M; 0 = none)')
    .option('--ranked-parents', 'parents only among peers that joined a task earlier (trees) instead of a mesh')
    .option('--config <file>', 'YAML config file; flags override it')
    .option('--log-level <level>', 'trace, debug, info, warn, error')
    .addOption(new Option('--log-format <format>', 'json, pretty or auto').choices(['json', 'pretty', 'auto']))
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
  program.parse(argv, { from: 'user' })
  const o = program.opts<Record<string, unknown>>()
  let file: Record<string, unknown> = {}
  if (typeof o.config === 'string') {
    let text: string
    try { text = readFileSync(o.config, 'utf8') } catch (err) {
      throw new JoeyError('ERR_INVALID_CONFIG', `--config: cannot read ${o.config}: ${(err as Error).message}`)
    }
    const parsed = parseYaml(text) as unknown
    if (parsed !== null && (typeof parsed !== 'object' || Array.isArray(parsed))) throw new JoeyError('ERR_INVALID_CONFIG', `--config: ${o.config} must hold a YAML mapping`)
    file = (parsed ?? {}) as Record<string, unknown>
    for (const key of Object.keys(file)) {
      if (!FILE_KEYS.has(key)) throw new JoeyError('ERR_INVALID_CONFIG', `--config: unknown key "${key}" in ${o.config}`)
    }
  }
  const pick = <T>(flag: unknown, key: string, fallback: T): T => (flag ?? file[key] ?? fallback) as T
  const config: SupernodeConfig = {
    ...DEFAULTS,
    dataRoot: pick(o.dataRoot, 'dataRoot', DEFAULTS.dataRoot),
    listen: pick(o.listen, 'listen', DEFAULTS.listen),
    p2pListen: pick(o.p2pListen, 'p2pListen', DEFAULTS.p2pListen),
    insecureRegistries: [...((file.insecureRegistries as string[] | undefined) ?? []), ...(o.insecureRegistry as string[])],
    maxBackToSource: Number(pick(o.maxBackToSource, 'maxBackToSource', DEFAULTS.maxBackToSource)),
    seedUploadSlots: Number(pick(undefined, 'seedUploadSlots', DEFAULTS.seedUploadSlots)),
    taskIdleMs: Number(pick(undefined, 'taskIdleMs', DEFAULTS.taskIdleMs)),
    uploadLimit: parseByteRate(String(pick(o.uploadLimit, 'uploadLimit', DEFAULTS.uploadLimit))),
    rankedParents: pick(o.rankedParents, 'rankedParents', DEFAULTS.rankedParents),
    logLevel: pick(o.logLevel, 'logLevel', DEFAULTS.logLevel),
    logFormat: pick(o.logFormat, 'logFormat', DEFAULTS.logFormat)
  }
  const registryConfig = pick<string | undefined>(o.registryConfig, 'registryConfig', undefined)
  if (registryConfig !== undefined) config.registryConfig = registryConfig
  const swarmKeyFile = pick<string | undefined>(o.swarmKey, 'swarmKeyFile', undefined)
  if (swarmKeyFile !== undefined) {
    config.swarmKeyFile = swarmKeyFile
    config.swarmKey = readSwarmKey(swarmKeyFile)
  }
  if (!/^(\[[0-9a-fA-F:]+\]|[^:]*):\d{1,5}$/.test(config.listen) || Number(config.listen.slice(config.listen.lastIndexOf(':') + 1)) > 65535) {
    throw new JoeyError('ERR_INVALID_CONFIG', `--listen: "${config.listen}" is not host:port`)
  }
  if (!config.p2pListen.startsWith('/')) throw new JoeyError('ERR_INVALID_CONFIG', `--p2p-listen: "${config.p2pListen}" is not a multiaddr (e.g. /ip4/0.0.0.0/tcp/8003)`)
  if (!Number.isInteger(config.maxBackToSource) || config.maxBackToSource < 0) throw new JoeyError('ERR_INVALID_CONFIG', '--max-back-to-source: expected a whole number ≥ 0')
  if (typeof config.rankedParents !== 'boolean') throw new JoeyError('ERR_INVALID_CONFIG', 'rankedParents: expected true or false')
  if (!['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].includes(config.logLevel)) throw new JoeyError('ERR_INVALID_CONFIG', `--log-level: unknown level "${config.logLevel}"`)
  return config
}
