/** The Engine API version joeyd speaks (the docker CLI negotiates down to it). */
export const API_VERSION = '1.43'
/** The oldest API version accepted in a /vX.Y/ prefix, as dockerd's default minimum. */
export const MIN_API_VERSION = '1.24'
/** Width of the "[==>   ]" bar in pull progress, as dockerd renders it for a non-terminal. */
export const PROGRESS_BAR_WIDTH = 50
/** Pull progress lines held back until the pull gets past its manifest, so early failures get a real status. */
export const PULL_HOLD_EVENTS = 1
/** Store usage is walked at most this often, however often /metrics is scraped. */
export const USAGE_CACHE_MS = 1_000
/** Largest X-Registry-Auth header accepted (docker's are a few hundred bytes). */
export const MAX_REGISTRY_AUTH_BYTES = 16 * 1024
/** Index server docker info reports. */
export const INDEX_SERVER_ADDRESS = 'https://index.docker.io/v1/'
