export { createContentStore } from './store.js'
export type { ContentStoreInit, ContentStoreComponents } from './store.js'
export { GC_REF_LABEL_PREFIX } from './types.js'
export type {
  BlobInfo, CommitOptions, ContentStore, ContentWriter, GcResult, ImageRecord, IngestStatus, Lease, ReadOptions, Usage, WriterOptions
} from './types.js'
export { INGEST_EXPIRY_MS, LOCK_TIMEOUT_MS, READ_BYTES_MAX } from './constants.js'
