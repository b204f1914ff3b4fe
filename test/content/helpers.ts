import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import type { Readable } from 'node:stream'
import { isJoeyError, type ErrorCode } from '../../src/common/index.js'

/** Deterministic pseudo-random bytes, so a child process and the test agree on content. */
export function patternBytes (length: number, seed = 'joey'): Buffer {
  const out = Buffer.allocUnsafe(length)
  let block = 0
  for (let pos = 0; pos < length; pos += 32) {
    const h = createHash('sha256').update(`${seed}:${block++}`).digest()
    h.copy(out, pos, 0, Math.min(32, length - pos))
  }
  return out
}

export async function collect (stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

export async function rejectsWith (promise: Promise<unknown> | (() => Promise<unknown>), code: ErrorCode): Promise<Record<string, unknown> | undefined> {
  let detail: Record<string, unknown> | undefined
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isJoeyError(err), `expected a JoeyError ${code}, got ${String(err)}`)
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`)
    detail = err.detail
    return true
  })
  return detail
}

export const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
