import type { Connection, Stream } from '@libp2p/interface'
import type { AbortOptions, Logger, Service } from '../common/index.js'
import type { RateLimiter } from '../common/index.js'
import type { Bitfield, PieceSet } from './pieces.js'

export type { Connection, Stream }

export interface P2PHostInit {
  /** Multiaddrs to listen on, e.g. `/ip4/0.0.0.0/tcp/65002`; port 0 picks a free port. */
  listen: string[]
  /** File holding the host's private key (libp2p protobuf form); created 0600 on first start, so the peer id survives restarts. Without it the id is new on every start. */
  identityPath?: string
  /** 32-byte private swarm key (see parseSwarmKey): only peers with the same key can connect. */
  swarmKey?: Uint8Array
  maxConnections?: number
  dialTimeoutMs?: number
}

export interface P2PHostComponents {
  logger: Logger
}

export interface HandleOptions {
  /** Streams of this protocol one connection may have open inbound at once. */
  maxInboundStreams?: number
  /** Streams of this protocol this host may open on one connection at once. */
  maxOutboundStreams?: number
}

/** Called with each inbound stream; `peer` is the remote peer id. */
export type StreamHandler = (stream: Stream, connection: Connection) => void | Promise<void>

/** A libp2p node: TCP, optional private swarm (pnet), Noise, yamux, identify. */
export interface P2PHost extends Service {
  /** The host's peer id; '' until started. */
  readonly peerId: string
  /** Listen addresses with `/p2p/<peerId>`, ready to hand to other peers; [] until started. */
  multiaddrs: () => string[]
  /** Opens a stream of `protocol` to the peer at `addr` (a multiaddr, usually with /p2p/<id>). */
  dialProtocol: (addr: string, protocol: string, options?: AbortOptions) => Promise<Stream>
  /** Registers a handler; handlers registered before start are installed by start. */
  handle: (protocol: string, handler: StreamHandler, options?: HandleOptions) => Promise<void>
  unhandle: (protocol: string) => Promise<void>
  /** Peer ids with an open connection. */
  peers: () => string[]
  /** Closes every connection to a peer (e.g. one caught sending corrupt pieces). */
  hangUp: (peerId: string) => Promise<void>
}

/** What the piece server knows of one task (a blob digest). */
export interface PieceTaskInfo {
  size: number
  pieceSize: number
  /** sha256 of each piece, where known (the seed publishes them as it cuts pieces). */
  pieceDigests: Array<string | undefined | null>
  /** Verified pieces the source can read now. */
  have: PieceSet
}

/** Where a piece server gets pieces: the partial store, the content store, the seed. */
export interface PieceSource {
  task: (digest: string) => PieceTaskInfo | undefined
  /** Calls back with each newly verified piece index of that task; returns an unsubscribe function. */
  subscribe: (digest: string, onPiece: (index: number, pieceDigest: string) => void) => () => void
  /**
   * Bytes of a piece already verified by the source. They go to the transport without a
   * copy, so the source must not reuse or change the buffer afterwards.
   */
  readPiece: (digest: string, index: number, options?: { signal?: AbortSignal }) => Promise<Uint8Array>
}

export interface PieceServerInit {
  /** Piece streams served at once across all peers. */
  maxStreams?: number
  /** Outstanding REQUESTs per stream (advertised to clients in META). */
  maxInflightPerStream?: number
  /** Streams quiet (no frame either way, nothing pending) this long are closed. */
  idleTimeoutMs?: number
  /** How long a client has to send HELLO. */
  helloTimeoutMs?: number
  /** Throttles uploads; shared by every stream of this server. Pieces are paced in small chunks. */
  uploadLimiter?: RateLimiter
  /** Called after each piece is handed to the transport. */
  onServed?: (bytes: number, peer: string) => void
  /**
   * First copies first (a seed's mode): while some piece of a task has never been sent to
   * anyone, a REQUEST for a piece this server sent (or is sending) to another peer is
   * answered with ERR_PIECE_DEFERRED; once all have gone out, one sent less than this many
   * ms ago is. The other peer relays it; the seed's upload goes to pieces the swarm lacks.
   */
  firstCopyHoldMs?: number
}

export interface PieceServerComponents {
  logger: Logger
  host: P2PHost
  source: PieceSource
}

export interface PieceServer extends Service {
  /** Streams being served now. */
  readonly activeStreams: number
}

export interface PieceMeta {
  size: number
  pieceSize: number
  pieceCount: number
  /** Known piece digests; grows as the peer announces pieces (HAVE). */
  pieceDigests: Array<string | undefined>
  /** Pieces the peer holds; kept current by HAVE. */
  bitfield: Bitfield
  /** Requests the peer lets this session have outstanding; more are queued locally. */
  maxRequests: number
}

export interface OpenSessionOptions extends AbortOptions {
  /** Largest piece accepted from the peer; META with a larger piece size fails with ERR_LIMIT_EXCEEDED. */
  maxFrameBytes?: number
  /** How long to wait for META after HELLO. */
  helloTimeoutMs?: number
  logger?: Logger
  /**
   * Throttles what this session receives (bytes/s), chunk by chunk as the bytes arrive: a
   * piece is handed out once its last byte is admitted. Share one limiter across sessions
   * for a node-wide download limit.
   */
  downloadLimiter?: RateLimiter
}

/** One stream to one peer for one task: announcements in, verified pieces out. */
export interface PieceSession {
  /** Remote peer id. */
  readonly peer: string
  readonly taskDigest: string
  readonly meta: PieceMeta
  readonly closed: boolean
  /** Whether the peer has announced the piece. */
  has: (index: number) => boolean
  /** Called for each piece the peer announces after META; returns an unsubscribe function. */
  onHave: (cb: (index: number, pieceDigest: string) => void) => () => void
  /** Called once when the session ends; `err` is set unless close() ended it. */
  onClose: (cb: (err?: Error) => void) => () => void
  /**
   * Fetches one piece, verified against its digest (ERR_DIGEST_MISMATCH with detail
   * `{ peer, index }` otherwise). Requests pipeline on the stream up to `meta.maxRequests`.
   */
  request: (index: number, options?: AbortOptions) => Promise<Uint8Array>
  close: () => Promise<void>
}
