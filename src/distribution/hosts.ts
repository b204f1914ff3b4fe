import { readFile } from 'node:fs/promises'
import type { Logger } from '../common/index.js'
import { JoeyError } from '../common/index.js'
import { DOCKER_HUB_ALIASES, DOCKER_HUB_DOMAIN, DOCKER_HUB_ENDPOINT } from './constants.js'
import type { RegistryHostConfig } from './types.js'

/** The hostname of "host[:port]" or "[v6]:port", lowercased. */
export function hostnameOf (authority: string): string {
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']')
    return authority.slice(0, end === -1 ? undefined : end + 1).toLowerCase()
  }
  const colon = authority.lastIndexOf(':')
  return (colon === -1 ? authority : authority.slice(0, colon)).toLowerCase()
}

export function isLoopback (authority: string): boolean {
  const host = hostnameOf(authority)
  return host === 'localhost' || host.endsWith('.localhost') || host === '[::1]' || host === '::1' ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}

/** Names a host can be configured under: docker.io has several. */
function aliases (authority: string): string[] {
  const a = authority.toLowerCase()
  if (a === DOCKER_HUB_DOMAIN || DOCKER_HUB_ALIASES.includes(a)) return [DOCKER_HUB_DOMAIN, ...DOCKER_HUB_ALIASES]
  return [a]
}

export interface HostSettings {
  /** URL origin of the registry API, e.g. https://registry-1.docker.io. */
  origin: string
  config: RegistryHostConfig
}

export class HostTable {
  private readonly hosts: Map<string, RegistryHostConfig>
  private readonly insecure: Set<string>

  constructor (hosts: Record<string, RegistryHostConfig> = {}, insecureRegistries: string[] = []) {
    this.hosts = new Map(Object.entries(hosts).map(([k, v]) => [k.toLowerCase(), v]))
    this.insecure = new Set(insecureRegistries.map(h => h.toLowerCase()))
  }

  config (authority: string): RegistryHostConfig {
    for (const name of aliases(authority)) {
      const c = this.hosts.get(name)
      if (c !== undefined) return c
    }
    return {}
  }

  /**
   * Plain HTTP only where asked for (as dockerd's --insecure-registry) and on loopback, where
   * TLS protects nothing; everything else is HTTPS. A loopback host configured with TLS
   * settings (ca, skipVerify, insecure: false) speaks HTTPS.
   */
  isInsecure (authority: string): boolean {
    const a = authority.toLowerCase()
    const c = this.config(a)
    if (c.insecure !== undefined) return c.insecure
    if (this.insecure.has(a) || this.insecure.has(hostnameOf(a))) return true
    return isLoopback(a) && c.ca === undefined && c.skipVerify !== true
  }

  settings (domain: string): HostSettings {
    const apiHost = domain === DOCKER_HUB_DOMAIN ? DOCKER_HUB_ENDPOINT : domain
    return { origin: `${this.isInsecure(domain) ? 'http' : 'https'}://${apiHost}`, config: this.config(domain) }
  }
}

export interface Credential {
  username?: string
  password?: string
  /** OAuth2 refresh token (docker's identitytoken), exchanged at the token realm. */
  identityToken?: string
  /** Pre-issued bearer token sent as is. */
  token?: string
}

interface DockerConfigEntry { auth?: string, username?: string, password?: string, identitytoken?: string }

/** Strips scheme and path from a config.json key: "https://index.docker.io/v1/" → "index.docker.io". */
function configKey (key: string): string {
  return key.toLowerCase().replace(/^[a-z]+:\/\//, '').replace(/\/.*$/, '')
}

/** Credentials from the host table first, then from a docker config.json. */
export class CredentialStore {
  private dockerConfig?: Promise<Map<string, Credential>>

  constructor (
    private readonly hosts: HostTable,
    private readonly dockerConfigPath: string | undefined,
    private readonly log: Logger
  ) {}

  async lookup (domain: string): Promise<Credential | undefined> {
    const c = this.hosts.config(domain)
    if (c.username !== undefined || c.token !== undefined) {
      const cred: Credential = {}
      if (c.username !== undefined) cred.username = c.username
      if (c.password !== undefined) cred.password = c.password
      if (c.token !== undefined) cred.token = c.token
      return cred
    }
    if (this.dockerConfigPath === undefined) return undefined
    this.dockerConfig ??= this.readDockerConfig(this.dockerConfigPath)
    const table = await this.dockerConfig
    for (const name of aliases(domain)) {
      const cred = table.get(configKey(name))
      if (cred !== undefined) return cred
    }
    return undefined
  }

  private async readDockerConfig (path: string): Promise<Map<string, Credential>> {
    const table = new Map<string, Credential>()
    let text: string
    try {
      text = await readFile(path, 'utf8')
    } catch (err) {
      // No config file is the normal anonymous case, as with the docker CLI.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        this.log.debug({ path }, 'docker config not found; pulling anonymously')
        return table
      }
      throw new JoeyError('ERR_INVALID_CONFIG', `cannot read docker config ${path}: ${(err as Error).message}`, { cause: err })
    }
    let doc: { auths?: Record<string, DockerConfigEntry>, credsStore?: string, credHelpers?: unknown }
    try {
      doc = JSON.parse(text)
    } catch (err) {
      throw new JoeyError('ERR_INVALID_CONFIG', `docker config ${path} is not valid JSON: ${(err as Error).message}`, { cause: err })
    }
    if (doc.credsStore !== undefined || doc.credHelpers !== undefined) {
      this.log.warn({ path }, 'docker config names credential helpers; joey only reads "auths" entries')
    }
    for (const [key, entry] of Object.entries(doc.auths ?? {})) {
      if (typeof entry !== 'object' || entry === null) continue
      const cred: Credential = {}
      if (typeof entry.auth === 'string' && entry.auth !== '') {
        const decoded = Buffer.from(entry.auth, 'base64').toString('utf8')
        const colon = decoded.indexOf(':')
        if (colon === -1) throw new JoeyError('ERR_INVALID_CONFIG', `docker config ${path}: auths["${key}"].auth is not base64 of user:password`)
        cred.username = decoded.slice(0, colon)
        cred.password = decoded.slice(colon + 1)
      } else if (typeof entry.username === 'string') {
        cred.username = entry.username
        if (typeof entry.password === 'string') cred.password = entry.password
      }
      if (typeof entry.identitytoken === 'string' && entry.identitytoken !== '') cred.identityToken = entry.identitytoken
      if (Object.keys(cred).length > 0) table.set(configKey(key), cred)
    }
    return table
  }
}
