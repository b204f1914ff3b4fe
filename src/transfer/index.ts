/**
 * Per-blob transfers: the node's transfer manager (pieces from peers, scheduled by a
 * supernode, with the origin as fallback), the origin-only transfer, partial blobs and
 * the piece sources a piece server serves from.
 */
export type { BlobProgress, FetchBlobOptions, TransferManager, TransferStats } from './types.js'
export { createDirectTransfer, blobIngestRef, type DirectTransferInit, type DirectTransferComponents } from './direct.js'
export { createP2PTransfer, choosePiece, type ChoiceParent, type ChoiceState, type P2PTransfer, type P2PTransferInit, type P2PTransferComponents, type PieceSessionLike, type SessionOpener, type OpenBlobOptions } from './p2p.js'
export { PartialStore, PartialBlob, type PartialBlobInit } from './partial.js'
export { PieceIndex, type PieceIndexEntry } from './piece-index.js'
export { partialPieceSource } from './source.js'
export { createSupernodeClient, rendezvousOrder, type SupernodeClient, type SupernodeClientInit, type TaskView, type ParentInfo, type HostAnnouncement, type FailureReason } from './supernode-client.js'
export { fetchPiecesFromOrigin, type OriginPiecesOptions } from './origin-pieces.js'
