/**
 * Fetches the missing tail of a partial blob from the origin and cuts it into pieces as
 * the bytes land, so each piece can be served to peers the moment it is written. Used by
 * the supernode's seed and by an agent the scheduler sends back to source.
 */
import { JoeyError } from '../common/index.js'
import type { Reference, RegistryClient } from '../distribution/index.js'
import type { PartialBlob } from './partial.js'

export interface OriginPiecesOptions {
  signal?: AbortSignal
  authorization?: string
  /** Called with every chunk's size as it arrives from the origin. */
  onBytes?: (n: number) => void
  /** The node's download cap, applied to origin bytes as to peer bytes. */
  limiter?: { take: (bytes: number, signal?: AbortSignal) => Promise<void> }
}

export async function fetchPiecesFromOrigin (registry: RegistryClient, ref: Reference, blob: PartialBlob, options: OriginPiecesOptions = {}): Promise<void> {
  let first = 0
  while (first < blob.pieceCount && blob.have.has(first)) first++
  if (first >= blob.pieceCount) return
  const res = await registry.getBlob(ref, blob.digest, {
    offset: first * blob.pieceSize,
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
    ...(options.authorization !== undefined ? { authorization: options.authorization } : {})
  })
  let index = Math.floor(res.offset / blob.pieceSize)
  if (res.offset !== index * blob.pieceSize) {
    res.stream.destroy()
    throw new JoeyError('ERR_PROTOCOL', `origin resumed ${blob.digest} at ${res.offset}, not at a piece boundary`)
  }
  let buf = Buffer.allocUnsafe(blob.pieceRange(index).length)
  let filled = 0
  for await (const chunk of res.stream as AsyncIterable<Buffer>) {
    options.onBytes?.(chunk.length)
    if (options.limiter !== undefined) await options.limiter.take(chunk.length, options.signal)
    let pos = 0
    while (pos < chunk.length) {
      if (index >= blob.pieceCount) {
        res.stream.destroy()
        throw new JoeyError('ERR_SIZE_MISMATCH', `origin sent more than ${blob.size} bytes for ${blob.digest}`, { detail: { expected: blob.size } })
      }
      const n = Math.min(buf.length - filled, chunk.length - pos)
      chunk.copy(buf, filled, pos, pos + n)
      filled += n
      pos += n
      if (filled === buf.length) {
        // Pieces another parent delivered meanwhile are skipped, not rewritten.
        if (!blob.have.has(index)) await blob.writePiece(index, buf, { trust: 'self' })
        index++
        filled = 0
        if (index < blob.pieceCount) buf = Buffer.allocUnsafe(blob.pieceRange(index).length)
      }
    }
  }
  if (index < blob.pieceCount) {
    throw new JoeyError('ERR_TRUNCATED', `origin closed ${blob.digest} at piece ${index} of ${blob.pieceCount}`)
  }
}
