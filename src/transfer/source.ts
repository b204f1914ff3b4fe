/**
 * Piece sources for the piece server: what a node can hand to peers. Partial blobs serve
 * the pieces they hold (verified); whole blobs in the content store serve every piece,
 * with the digests recorded in the piece index when the blob was assembled.
 */
import { Bitfield, JoeyError } from '../common/index.js'
import type { ContentStore } from '../content/index.js'
import type { PartialStore } from './partial.js'
import type { PieceIndex } from './piece-index.js'
import type { PieceSource } from '../p2p/index.js'

export function partialPieceSource (partials: PartialStore, whole?: { index: PieceIndex, contentStore: ContentStore }): PieceSource {
  const fullSets = new Map<string, Bitfield>()
  function fullSet (n: number, digest: string): Bitfield {
    let b = fullSets.get(digest)
    if (b === undefined) {
      b = new Bitfield(n)
      b.fill()
      fullSets.set(digest, b)
    }
    return b
  }
  return {
    task (digest) {
      const p = partials.get(digest)
      if (p !== undefined && p.verified !== false) {
        return { size: p.size, pieceSize: p.pieceSize, pieceDigests: p.pieceDigests, have: p.have }
      }
      const e = whole?.index.get(digest)
      if (e !== undefined) {
        return { size: e.size, pieceSize: e.pieceSize, pieceDigests: e.pieceDigests, have: fullSet(e.pieceDigests.length, digest) }
      }
      return undefined
    },
    subscribe (digest, onPiece) {
      const p = partials.get(digest)
      if (p === undefined) return () => {}
      const listener = (i: number, d: string): void => { onPiece(i, d) }
      p.on('piece', listener)
      return () => { p.off('piece', listener) }
    },
    async readPiece (digest, index, options) {
      const p = partials.get(digest)
      if (p !== undefined && p.have.has(index)) return await p.readPiece(index)
      const e = whole?.index.get(digest)
      if (e === undefined || whole === undefined) throw new JoeyError('ERR_NOT_FOUND', `piece ${index} of ${digest} is not held here`)
      const start = index * e.pieceSize
      if (index < 0 || start >= e.size) throw new JoeyError('ERR_INVALID_ARGUMENT', `piece ${index} out of range for ${digest}`)
      const end = Math.min(e.size, start + e.pieceSize) - 1
      const buf = Buffer.allocUnsafe(end - start + 1)
      let pos = 0
      const stream = await whole.contentStore.read(digest, { start, end, ...(options?.signal !== undefined ? { signal: options.signal } : {}) })
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        chunk.copy(buf, pos)
        pos += chunk.length
      }
      if (pos !== buf.length) throw new JoeyError('ERR_TRUNCATED', `short read of piece ${index} of ${digest}`)
      return buf
    }
  }
}
