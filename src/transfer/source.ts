/**
 * Piece sources for the piece server: what a node can hand to peers. Partial blobs serve
 * the pieces they hold (verified); whole blobs in the content store serve every piece,
 * with the digests recorded in the piece index when the blob was assembled.
 */
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { Bitfield, JoeyError, digestHex } from '../common/index.js'
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
    async readPiece (digest, index) {
      const p = partials.get(digest)
      if (p !== undefined && p.have.has(index)) return await p.readPiece(index)
      const e = whole?.index.get(digest)
      if (e === undefined || whole === undefined) throw new JoeyError('ERR_NOT_FOUND', `piece ${index} of ${digest} is not held here`)
      const start = index * e.pieceSize
      if (index < 0 || start >= e.size) throw new JoeyError('ERR_INVALID_ARGUMENT', `piece ${index} out of range for ${digest}`)
      const length = Math.min(e.size, start + e.pieceSize) - start
      return await readWhole(whole.contentStore, digest, start, length, index)
    }
  }
}

/**
 * One positioned read of a committed blob straight into the piece's buffer. The content
 * store's stream would hand the piece over in 64 KiB chunks, each a new buffer copied into
 * this one; committed blobs are read-only files at blobs/sha256/<hex> (the store's layout).
 */
async function readWhole (contentStore: ContentStore, digest: string, start: number, length: number, index: number): Promise<Uint8Array> {
  let fh
  try {
    fh = await open(join(contentStore.root, 'blobs', 'sha256', digestHex(digest)), 'r')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new JoeyError('ERR_NOT_FOUND', `blob ${digest} is not in the content store`)
    throw err
  }
  try {
    const buf = Buffer.allocUnsafeSlow(length)
    let pos = 0
    while (pos < length) {
      const { bytesRead } = await fh.read(buf, pos, length - pos, start + pos)
      if (bytesRead === 0) break
      pos += bytesRead
    }
    if (pos !== length) throw new JoeyError('ERR_TRUNCATED', `short read of piece ${index} of ${digest}`)
    return buf
  } finally {
    await fh.close()
  }
}
