/** Ingests not written to for this long are removed by gc() (unless a lease holds their digest). */
export const INGEST_EXPIRY_MS = 24 * 60 * 60 * 1000
/** How long writer() waits for a ref held by another writer before ERR_LOCKED; 0 fails at once. */
export const LOCK_TIMEOUT_MS = 0
/** Default cap of readBytes(): manifests and configs are small, layers must be streamed. */
export const READ_BYTES_MAX = 16 * 1024 * 1024
/** Chunk size used when a resumed partial is re-hashed from disk. */
export const REHASH_CHUNK_BYTES = 1024 * 1024
/** Longest ref accepted by writer(); refs name ingests, they are not data. */
export const MAX_REF_LENGTH = 4096
/** Longest label key and value (containerd caps a label at 4 KiB as well). */
export const MAX_LABEL_LENGTH = 4096
/** Prefix of temporary entries that start() may remove after a crash. */
export const TMP_PREFIX = '.tmp-'
/**
 * Read size of blob streams. Node's default 64 KiB costs ~3× the CPU per byte when a blob is
 * served (mirror, peers); beyond 256 KiB the gain is small and every reader holds more memory.
 */
export const READ_STREAM_CHUNK_BYTES = 256 * 1024
