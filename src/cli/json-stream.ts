import { StringDecoder } from 'node:string_decoder'
import { JoeyError } from '../common/index.js'

/** A single progress message larger than this means the peer is not speaking the protocol. */
const MAX_MESSAGE_BYTES = 1024 * 1024

/**
 * Splits a stream of concatenated JSON values into parsed values. dockerd separates messages
 * with \r\n, but its own client uses a streaming decoder that needs no separator at all, so
 * this scans for value boundaries instead of splitting on newlines.
 */
export async function * parseJsonStream (source: AsyncIterable<Uint8Array | string>): AsyncGenerator<unknown> {
  const decoder = new StringDecoder('utf8')
  let buf = ''
  let pos = 0 // next character to scan
  let start = -1 // start of the value being scanned, -1 between values
  let depth = 0
  let inString = false
  let escaped = false

  for await (const chunk of source) {
    buf += typeof chunk === 'string' ? chunk : decoder.write(chunk as Buffer)
    for (; pos < buf.length; pos++) {
      const ch = buf[pos]
      if (start === -1) {
        if (ch === ' ' || ch === '\n' || ch === '\r' || ch === '\t') continue
        if (ch !== '{' && ch !== '[') {
          throw new JoeyError('ERR_PROTOCOL', `unexpected data in the response stream: ${JSON.stringify(buf.slice(pos, pos + 40))}`)
        }
        start = pos
        depth = 1
        continue
      }
      if (inString) {
        if (escaped) escaped = false
        else if (ch === '\\') escaped = true
        else if (ch === '"') inString = false
        continue
      }
      if (ch === '"') inString = true
      else if (ch === '{' || ch === '[') depth++
      else if (ch === '}' || ch === ']') {
        depth--
        if (depth === 0) {
          const text = buf.slice(start, pos + 1)
          let value: unknown
          try {
            value = JSON.parse(text)
          } catch (err) {
            throw new JoeyError('ERR_PROTOCOL', `malformed JSON in the response stream: ${JSON.stringify(text.slice(0, 80))}`, { cause: err })
          }
          yield value
          start = -1
        }
      }
    }
    // Drop what has been consumed so the buffer only ever holds one partial value.
    const keep = start === -1 ? pos : start
    buf = buf.slice(keep)
    pos -= keep
    if (start !== -1) start = 0
    if (buf.length > MAX_MESSAGE_BYTES) {
      throw new JoeyError('ERR_LIMIT_EXCEEDED', `a message in the response stream exceeds ${MAX_MESSAGE_BYTES} bytes`)
    }
  }
  buf += decoder.end()
  if (start !== -1 || buf.trim() !== '') {
    throw new JoeyError('ERR_TRUNCATED', 'the response stream ended in the middle of a message')
  }
}
