/**
 * Private swarm keys in the format go-libp2p, kubo and js-libp2p share:
 *
 *     /key/swarm/psk/1.0.0/
 *     /base16/
 *     <64 hex characters>
 *
 * Peers with the same 32-byte key can talk; everyone else fails at the first bytes.
 */
import { randomBytes } from 'node:crypto'
import { JoeyError } from '../common/index.js'

const HEADER = '/key/swarm/psk/1.0.0/'
export const SWARM_KEY_BYTES = 32

/** A new random key, as the text of a swarm key file. */
export function generateSwarmKey (): string {
  return encodeSwarmKey(randomBytes(SWARM_KEY_BYTES))
}

/** The file text for a 32-byte key (base16, as kubo writes it). */
export function encodeSwarmKey (key: Uint8Array): string {
  if (key.byteLength !== SWARM_KEY_BYTES) throw new JoeyError('ERR_INVALID_CONFIG', `a swarm key has ${SWARM_KEY_BYTES} bytes, got ${key.byteLength}`)
  return `${HEADER}\n/base16/\n${Buffer.from(key).toString('hex')}\n`
}

/**
 * Parses a swarm key file into its 32 key bytes. Accepts /base16/ (any case) and /base64/,
 * CRLF line ends and a trailing newline; anything else is ERR_INVALID_CONFIG.
 */
export function parseSwarmKey (text: string | Uint8Array): Uint8Array {
  const s = typeof text === 'string' ? text : Buffer.from(text).toString('utf8')
  const lines = s.split(/\r?\n/)
  while (lines.length > 0 && lines[lines.length - 1]?.trim() === '') lines.pop()
  const [header, codec, value, ...rest] = lines.map(l => l.trim())
  if (header !== HEADER) {
    throw new JoeyError('ERR_INVALID_CONFIG', `swarm key file must start with "${HEADER}", got "${(header ?? '').slice(0, 40)}"`)
  }
  if (value === undefined || rest.length > 0) {
    throw new JoeyError('ERR_INVALID_CONFIG', 'swarm key file must have exactly three lines: header, encoding, key')
  }
  let key: Buffer
  if (codec === '/base16/') {
    if (!/^[0-9a-fA-F]*$/.test(value) || value.length !== SWARM_KEY_BYTES * 2) {
      throw new JoeyError('ERR_INVALID_CONFIG', `swarm key must be ${SWARM_KEY_BYTES * 2} hex characters`)
    }
    key = Buffer.from(value, 'hex')
  } else if (codec === '/base64/') {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(value)) throw new JoeyError('ERR_INVALID_CONFIG', 'swarm key is not valid base64')
    key = Buffer.from(value, 'base64')
  } else {
    throw new JoeyError('ERR_INVALID_CONFIG', `unsupported swarm key encoding "${(codec ?? '').slice(0, 20)}": use /base16/ or /base64/`)
  }
  if (key.byteLength !== SWARM_KEY_BYTES) {
    throw new JoeyError('ERR_INVALID_CONFIG', `swarm key must decode to ${SWARM_KEY_BYTES} bytes, got ${key.byteLength}`)
  }
  return new Uint8Array(key)
}
