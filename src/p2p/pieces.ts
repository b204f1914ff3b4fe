/**
 * The piece model shared by the piece server, the piece client and the transfer manager:
 * a blob of `size` bytes is cut into pieces of `pieceSize` bytes (the last one shorter).
 */
import { JoeyError } from '../common/index.js'
import { MAX_PIECES, PIECE_SIZE, pieceSizeFor } from '../common/index.js'

export { MAX_PIECES, PIECE_SIZE, pieceSizeFor }

function checkLayout (size: number, pieceSize: number): void {
  if (!Number.isSafeInteger(size) || size < 0) throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid blob size ${String(size)}`)
  if (!Number.isSafeInteger(pieceSize) || pieceSize <= 0) throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid piece size ${String(pieceSize)}`)
}

/**
 * Number of pieces of a blob. An empty blob still has one (empty) piece, so every task has
 * at least one piece digest and one bit to announce, as the rest of Joey assumes.
 */
export function pieceCount (size: number, pieceSize: number): number {
  checkLayout(size, pieceSize)
  return Math.max(1, Math.ceil(size / pieceSize))
}

export interface PieceRange {
  /** First byte of the piece. */
  start: number
  /** One past the last byte. */
  end: number
}

/** Byte range of piece `index`; ERR_INVALID_ARGUMENT when the index is out of range. */
export function pieceRange (size: number, pieceSize: number, index: number): PieceRange {
  const count = pieceCount(size, pieceSize)
  if (!Number.isSafeInteger(index) || index < 0 || index >= count) {
    throw new JoeyError('ERR_INVALID_ARGUMENT', `piece index ${String(index)} is out of range (0..${count - 1})`, { detail: { index, count } })
  }
  const start = index * pieceSize
  return { start, end: Math.min(size, start + pieceSize) }
}

/** Length of piece `index` in bytes. */
export function pieceLength (size: number, pieceSize: number, index: number): number {
  const r = pieceRange(size, pieceSize, index)
  return r.end - r.start
}

export { Bitfield, type PieceSet } from '../common/index.js'
