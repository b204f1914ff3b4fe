import { JoeyError, isDigest, parseDigest } from '../common/index.js'
import { DOCKER_HUB_DOMAIN } from './constants.js'
import type { Reference } from './types.js'

// The grammar of github.com/distribution/reference, checked piece by piece so that the
// error can say which piece is wrong instead of "invalid reference format".
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])'
const DOMAIN_RE = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`)
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const TAG_RE = /^\w[\w.-]{0,127}$/
const HEX64_RE = /^[a-f0-9]{64}$/
const NAME_MAX = 255

const LIBRARY = 'library/'

class ImageReference implements Reference {
  readonly domain: string
  readonly path: string
  readonly tag?: string
  readonly digest?: string

  constructor (domain: string, path: string, tag?: string, digest?: string) {
    this.domain = domain
    this.path = path
    if (tag !== undefined) this.tag = tag
    if (digest !== undefined) this.digest = digest
  }

  get name (): string {
    return `${this.domain}/${this.path}`
  }

  get familiar (): string {
    let name = this.name
    if (this.domain === DOCKER_HUB_DOMAIN) {
      name = this.path.startsWith(LIBRARY) && !this.path.slice(LIBRARY.length).includes('/')
        ? this.path.slice(LIBRARY.length)
        : this.path
    }
    return name + suffix(this.tag, this.digest)
  }

  toString (): string {
    return this.name + suffix(this.tag, this.digest)
  }

  toJSON (): string {
    return this.toString()
  }
}

function suffix (tag?: string, digest?: string): string {
  return (tag !== undefined ? `:${tag}` : '') + (digest !== undefined ? `@${digest}` : '')
}

function invalid (input: string, why: string): JoeyError {
  return new JoeyError('ERR_INVALID_REFERENCE', `invalid reference "${input}": ${why}`, { detail: { reference: input } })
}

function digestOf (input: string, raw: string): string {
  // parseDigest calls any well-formed "algo:hex" an unsupported algorithm; for sha256 that
  // would mislead, so a bad sha256 value gets its own message.
  if (raw.startsWith('sha256:') && !isDigest(raw)) {
    throw invalid(input, `invalid digest "${raw}": expected sha256: followed by 64 lowercase hex characters`)
  }
  try {
    return parseDigest(raw)
  } catch (err) {
    throw new JoeyError('ERR_INVALID_REFERENCE', `invalid reference "${input}": ${(err as Error).message}`, { cause: err, detail: { reference: input } })
  }
}

export interface ParseReferenceOptions {
  /** Tag added when the reference names neither a tag nor a digest; default "latest". */
  defaultTag?: string
}

/**
 * Parses and normalises an image reference the way the docker CLI does:
 * `busybox` → `docker.io/library/busybox:latest`, `host:5000/repo@sha256:…` keeps its domain.
 */
export function parseReference (input: string, opts: ParseReferenceOptions = {}): Reference {
  if (typeof input !== 'string' || input.length === 0) throw invalid(String(input), 'reference is empty')
  if (/\s/.test(input)) throw invalid(input, 'reference must not contain whitespace')
  if (input.includes('://')) throw invalid(input, 'reference must not contain a URL scheme')
  if (HEX64_RE.test(input)) {
    throw invalid(input, 'a 64-character hexadecimal string is an image ID, not a repository name')
  }

  let rest = input
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at !== -1) {
    const rawDigest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    digest = digestOf(input, rawDigest)
  }

  let tag: string | undefined
  const colon = rest.lastIndexOf(':')
  if (colon !== -1 && colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (tag.length === 0) throw invalid(input, 'tag is empty')
    if (!TAG_RE.test(tag)) {
      throw invalid(input, `tag "${tag}" must be 1–128 characters of letters, digits, "_", "." and "-", not starting with "." or "-"`)
    }
  }
  if (rest.length === 0) throw invalid(input, 'repository name is empty')

  let domain = DOCKER_HUB_DOMAIN
  let path = rest
  const slash = rest.indexOf('/')
  if (slash !== -1) {
    const first = rest.slice(0, slash)
    if (first.includes('.') || first.includes(':') || first === 'localhost') {
      domain = first
      path = rest.slice(slash + 1)
    }
  }
  if (!DOMAIN_RE.test(domain)) throw invalid(input, `"${domain}" is not a valid registry host[:port]`)
  if (domain === 'index.docker.io') domain = DOCKER_HUB_DOMAIN
  if (domain === DOCKER_HUB_DOMAIN && !path.includes('/')) path = LIBRARY + path

  for (const component of path.split('/')) {
    if (component.length === 0) throw invalid(input, 'repository name has an empty path component')
    if (component.toLowerCase() !== component) throw invalid(input, `repository name "${path}" must be lowercase`)
    if (!PATH_COMPONENT_RE.test(component)) {
      throw invalid(input, `path component "${component}" must be lowercase letters and digits separated by ".", "_", "__" or "-"`)
    }
  }
  const name = `${domain}/${path}`
  if (name.length > NAME_MAX) throw invalid(input, `repository name is ${name.length} characters long; the limit is ${NAME_MAX}`)

  if (tag === undefined && digest === undefined) tag = opts.defaultTag ?? 'latest'
  return new ImageReference(domain, path, tag, digest)
}

/** The same repository with another tag (and no digest). */
export function withTag (ref: Reference, tag: string): Reference {
  if (!TAG_RE.test(tag)) throw invalid(`${ref.name}:${tag}`, `tag "${tag}" is not valid`)
  return new ImageReference(ref.domain, ref.path, tag)
}

/** The same repository pinned to a digest; the tag is kept for display. */
export function withDigest (ref: Reference, digest: string, opts: { keepTag?: boolean } = {}): Reference {
  const valid = digestOf(`${ref.name}@${digest}`, digest)
  return new ImageReference(ref.domain, ref.path, opts.keepTag === true ? ref.tag : undefined, valid)
}

/** Only the repository, e.g. to address blobs. */
export function repositoryOf (ref: Reference): Reference {
  return new ImageReference(ref.domain, ref.path)
}
