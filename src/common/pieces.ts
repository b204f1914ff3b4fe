/** Default piece size: small enough to spread a blob over many parents early. */
export const PIECE_SIZE = 4 * 1024 * 1024
/** A blob has at most about this many pieces; larger blobs get larger pieces. */
export const MAX_PIECES = 1000

/**
 * Piece size of a blob: 4 MiB, doubled until the blob has at most 1,000 pieces, so the
 * per-piece cost (a digest, a bit, a request) stays bounded on very large blobs.
 */
export function pieceSizeFor (size: number): number {
  let piece = PIECE_SIZE
  while (Math.ceil(size / piece) > MAX_PIECES) piece *= 2
  return piece
}

export function pieceCountFor (size: number, pieceSize: number): number {
  return Math.max(1, Math.ceil(size / pieceSize))
}
