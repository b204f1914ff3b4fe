/** Attempts per blob toward the origin before a download gives up (the partial is kept). */
export const MAX_ATTEMPTS = 5
/** Base backoff between attempts, doubled per attempt with jitter. */
export const RETRY_BASE_MS = 250
/** Longest single backoff. */
export const RETRY_MAX_MS = 5_000
/** How long to wait for an ingest ref that another writer (another process) holds. */
export const LOCK_WAIT_MS = 10_000
/** While another writer holds a ref, look this often whether it let go or committed the blob. */
export const LOCK_POLL_MS = 100
/** Progress callbacks are rate limited to one per interval per blob (plus the final one). */
export const PROGRESS_INTERVAL_MS = 100
