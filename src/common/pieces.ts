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
 * A blob has at least this many pieces where pieces can be as small as MIN_PIECE_SIZE: a
 * swarm pipelines a blob only as well as it has pieces to pass along (a 16 MiB layer in
 * 16 pieces: 1.85 × S÷B simulated at N = 16; in 64: 1.43).
 */
export const MIN_PIECES = 64
export const MIN_PIECE_SIZE = 256 * 1024

/**
 * Piece size of a blob: 1 MiB, halved (down to 256 KiB) while the blob has fewer than 64
 * pieces, doubled while it has more than 1,000, so small layers still pipeline and the
 * per-piece cost (a digest, a bit, a request) stays bounded on very large blobs.
 */
export function pieceSizeFor (size: number): number {
  let piece = PIECE_SIZE
  while (piece > MIN_PIECE_SIZE && size / piece < MIN_PIECES) piece /= 2
  while (Math.ceil(size / piece) > MAX_PIECES) piece *= 2
  return piece
}

export function pieceCountFor (size: number, pieceSize: number): number {
  return Math.max(1, Math.ceil(size / pieceSize))
}

/**
 * Digests of the pieces piece sessions handed out, keyed by the buffer itself. The buffer is
 * the session's own (nothing else holds it when it is handed out), so whoever stores the
 * piece can compare this digest with the one it trusts instead of hashing the bytes again.
 * It lives here rather than in the P2P layer so that partial blobs can ask without loading
 * libp2p on a node that never talks to peers.
 */
const receivedDigests = new WeakMap<Uint8Array, string>()

/** Records the sha256 a session computed for the piece it resolves with `bytes`. */
export function noteReceivedPieceDigest (bytes: Uint8Array, digest: string): void {
  receivedDigests.set(bytes, digest)
}

/**
 * The sha256 of a piece as a session received it, for the exact buffer `request` resolved
 * with; undefined for any other buffer. Callers must not change the buffer before asking.
 */
export function receivedPieceDigest (bytes: Uint8Array): string | undefined {
  return receivedDigests.get(bytes)
}
