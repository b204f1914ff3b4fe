/** Layers downloaded at once per pull (docker's max-concurrent-downloads default). */
export const MAX_CONCURRENT_DOWNLOADS = 3
/** A pull's lease outlives a crashed process by this long, then GC may reclaim its blobs. */
export const PULL_LEASE_TTL_MS = 60 * 60 * 1000
/** Image-record label naming the platform manifest chosen under an index. */
export const MANIFEST_LABEL = 'io.joey.image.manifest'
/**
 * Marks a name given by `tag` rather than by a pull: like docker, such a name has no repo
 * digest, since its repository never served the manifest.
 */
export const TAGGED_LABEL = 'io.joey.image.tagged'
/** Downloading events per layer are rate limited to one per interval. */
export const PROGRESS_INTERVAL_MS = 200
/** Shortest id prefix accepted when looking an image up by id. */
export const MIN_ID_PREFIX = 4
