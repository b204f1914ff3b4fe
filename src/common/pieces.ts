/**
 * Default piece size. Each relay hop holds a piece until it is verified, so a piece costs one
 * piece-time per hop: at 1 MiB a node a few hops from the seed starts within seconds even on
 * slow links, where 4 MiB pieces left deep nodes idle long enough to give up on their peers
 * (swarm simulator and the cluster benchmark at 1.5–3 MiB/s links).
 */
export const PIECE_SIZE = 1024 * 1024
/** A blob has at most about this many pieces; larger blobs get larger pieces. */
export const MAX_PIECES = 1000

/**
 * Piece size of a blob: 1 MiB, doubled until the blob has at most 1,000 pieces, so the
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
