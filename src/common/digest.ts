import { createHash, type Hash } from 'node:crypto'
import { JoeyError } from './errors.js'

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/
const ANY_DIGEST_RE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/

export type Digest = `sha256:${string}`

export function isDigest (value: unknown): value is Digest {
  return typeof value === 'string' && DIGEST_RE.test(value)
}

/** Validates a digest; only sha256 is accepted for content (as containerd does by default). */
export function parseDigest (value: string): Digest {
  if (DIGEST_RE.test(value)) return value as Digest
  if (!value.startsWith('sha256:') && ANY_DIGEST_RE.test(value)) {
    throw new JoeyError('ERR_INVALID_DIGEST', `unsupported digest algorithm in "${value}": only sha256 is supported`)
  }
  throw new JoeyError('ERR_INVALID_DIGEST', `invalid digest "${value}": expected sha256:<64 hex characters>`)
}

export function digestHex (digest: string): string {
  return parseDigest(digest).slice('sha256:'.length)
}

export function sha256 (data: Uint8Array | string): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`
}

/** An incremental sha256 that also counts bytes. */
export class Digester {
  private readonly hash: Hash = createHash('sha256')
  size = 0

  update (chunk: Uint8Array): void {
    this.hash.update(chunk)
    this.size += chunk.byteLength
  }

  digest (): Digest {
    return `sha256:${this.hash.digest('hex')}`
  }
}

/** Short form used in docker's UI: the first 12 hex characters. */
export function shortId (digest: string): string {
  const hex = digest.includes(':') ? digest.slice(digest.indexOf(':') + 1) : digest
  return hex.slice(0, 12)
}
