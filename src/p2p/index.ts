/**
 * Peer-to-peer layer: the libp2p host, the piece model and the /joey/piece/1.0.0 protocol
 * (server and client). The wire format is documented in docs/protocol.md.
 */
export type {
  P2PHost, P2PHostInit, P2PHostComponents, HandleOptions, StreamHandler, Stream, Connection,
  PieceSource, PieceTaskInfo, PieceServer, PieceServerInit, PieceServerComponents,
  PieceSession, PieceMeta, OpenSessionOptions
} from './types.js'
export { createP2PHost, loadOrCreateIdentity } from './host.js'
export { generateSwarmKey, parseSwarmKey, encodeSwarmKey, SWARM_KEY_BYTES } from './swarm-key.js'
export { Bitfield, pieceSizeFor, pieceCount, pieceRange, pieceLength, PIECE_SIZE, MAX_PIECES, type PieceRange, type PieceSet } from './pieces.js'
export { createPieceServer } from './server.js'
export { openPieceSession, peerIdOf } from './session.js'
export { receivedPieceDigest } from '../common/index.js'
export { FrameDecoder, FrameType, encodeMessage, encodePieceHead, type Message, type DecoderLimits } from './codec.js'

export { PIECE_PROTOCOL, SEED_FIRST_COPY_HOLD_MS } from './constants.js'
