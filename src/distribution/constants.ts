/** Tunables of the registry client; every one can be overridden through RegistryClientInit. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024
export const MAX_CONFIG_BYTES = 8 * 1024 * 1024
export const RETRIES = 4
export const RETRY_BASE_MS = 200
/** Backoff never grows past this, whatever the attempt count. */
export const RETRY_MAX_DELAY_MS = 10_000
/** Retry-After is honoured up to this long, so one registry cannot park a pull for hours. */
export const RETRY_AFTER_MAX_MS = 30_000
export const TIMEOUT_MS = 30_000
export const MAX_REDIRECTS = 5
/** Error bodies and token responses are small; anything bigger is not worth reading. */
export const MAX_ERROR_BODY_BYTES = 64 * 1024
export const MAX_TOKEN_BYTES = 1024 * 1024
/** The distribution token spec: a missing or shorter expires_in means 60 seconds. */
export const TOKEN_MIN_EXPIRY_S = 60
/** Tokens are dropped this long before they expire so a request never races the expiry. */
export const TOKEN_EXPIRY_MARGIN_MS = 10_000
/** How long close() lets in-flight requests finish before tearing sockets down. */
export const CLOSE_GRACE_MS = 1000
export const USER_AGENT = 'joey/0.1'

export const DOCKER_HUB_DOMAIN = 'docker.io'
export const DOCKER_HUB_ENDPOINT = 'registry-1.docker.io'
/** Keys docker's config.json uses for Docker Hub credentials, besides docker.io itself. */
export const DOCKER_HUB_ALIASES = ['index.docker.io', 'registry-1.docker.io', 'https://index.docker.io/v1/']
