/** The piece protocol; the version changes with any incompatible change to a frame. */
export const PIECE_PROTOCOL = '/joey/piece/1.0.0'

// Host
/** Open connections (inbound + outbound) a host keeps at most. */
export const MAX_CONNECTIONS = 300
/** A dial (TCP + pnet + Noise + yamux) that takes longer than this fails. */
export const DIAL_TIMEOUT_MS = 10_000
/** An inbound connection must finish its handshakes within this. */
export const INBOUND_UPGRADE_TIMEOUT_MS = 10_000
/** Inbound connections still in their handshake at once; more are refused. */
export const MAX_PENDING_INBOUND_CONNECTIONS = 32
/** A TCP socket with no traffic for this long is closed (yamux keepalives keep live ones busy). */
export const SOCKET_INACTIVITY_TIMEOUT_MS = 5 * 60_000
/** The nonce exchange of a private swarm (pnet) must finish within this. */
export const PNET_TIMEOUT_MS = 5_000

// Piece protocol
/** Bytes of the frame head: u32 length, u8 type, u32 header length. */
export const FRAME_HEAD_BYTES = 9
/**
 * Largest header + control payload a frame may carry (META's JSON and bitfield). 1,000
 * pieces need ~75 KiB; 1 MiB leaves room for blobs cut by someone else into ~13,000 pieces.
 */
export const MAX_CONTROL_BYTES = 1024 * 1024
/** Largest frame a server accepts from a client: it only ever sends small control frames. */
export const MAX_CLIENT_FRAME_BYTES = 4096
/** Largest piece a client accepts by default (a 16 TiB blob cut into 1,000 pieces has 16 GiB pieces; no Joey blob comes near). */
export const MAX_PIECE_BYTES = 64 * 1024 * 1024
/** REQUESTs a server lets one stream have outstanding (advertised in META). */
export const MAX_INFLIGHT_PER_STREAM = 8
/** Piece streams a server serves at once across all peers; more get ERROR ERR_UNAVAILABLE. */
export const MAX_SERVER_STREAMS = 128
/** Piece streams one connection may open to a server at once. */
export const MAX_STREAMS_PER_CONNECTION = 32
/** A server closes a stream with no frame in either direction and no request pending for this long. */
export const STREAM_IDLE_TIMEOUT_MS = 60_000
/** Both sides give the other this long for HELLO / META. */
export const HELLO_TIMEOUT_MS = 10_000
/** After a fatal ERROR, the remote gets this long to close its end before the stream is reset. */
export const CLOSE_GRACE_MS = 1_000
/**
 * Bytes a rate-limited server sends per limiter take. Small against a piece, so a piece
 * crosses the sender's upload limit and the receiver's download limit at the same time
 * (one piece-time per relay hop, not two); large enough that the limiter is no cost.
 */
export const PACE_CHUNK_BYTES = 64 * 1024
/**
 * Bytes a paused stream may buffer before libp2p resets it. A receiver pausing for its
 * download limit can still get the peer's whole yamux window (at most 16 MiB).
 */
export const PAUSED_READ_BUFFER_BYTES = 32 * 1024 * 1024
/** Longest ERROR message kept; longer ones are cut. */
export const MAX_ERROR_MESSAGE_CHARS = 1024
/**
 * How long after sending a piece a seed defers other peers' requests for it while it has
 * pieces nobody has yet (the server's firstCopyHoldMs): a few piece times at the links
 * agents run on, enough for the first copy to be relayed.
 */
export const SEED_FIRST_COPY_HOLD_MS = 2000
