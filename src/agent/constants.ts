/** Defaults of joeyd's options; docs/configuration.md lists them too. */
export const DEFAULT_SOCKET_PATH = '/run/joey/joeyd.sock'
export const DEFAULT_HOST = `unix://${DEFAULT_SOCKET_PATH}`
export const DEFAULT_DATA_ROOT = '/var/lib/joey'
/** dockerd's port for a tcp:// host given without one. */
export const DEFAULT_TCP_PORT = 2375
export const DEFAULT_LOG_LEVEL = 'info'
export const DEFAULT_LOG_FORMAT = 'json'
/** docker's max-concurrent-downloads default. */
export const DEFAULT_MAX_CONCURRENT_DOWNLOADS = 3
/** The default with a supernode: every layer of a usual image at once. */
export const DEFAULT_P2P_MAX_CONCURRENT_DOWNLOADS = 16
export const MAX_CONCURRENT_DOWNLOADS_LIMIT = 64

/** Environment variables named JOEY_REGISTRY_AUTH_<HOST> carry `username:password` for HOST. */
export const REGISTRY_AUTH_ENV_PREFIX = 'JOEY_REGISTRY_AUTH_'

/** Socket files are for root and the joey group only, like docker.sock. */
export const SOCKET_MODE = 0o660
/** In-flight requests get this long to finish after SIGTERM before their connections are cut. */
export const SHUTDOWN_GRACE_MS = 2_000
/** While stopping, connections that fall idle are closed this often. */
export const IDLE_SWEEP_MS = 50
/** Where joeyd keeps its persistent engine ID (docker info's ID), under the data root. */
export const ENGINE_ID_FILE = 'engine-id'

/** The registry mirror listens on loopback by default. */
export const DEFAULT_MIRROR = '127.0.0.1:65001'
export const DEFAULT_MIRROR_UPSTREAM = 'docker.io'
export const DEFAULT_P2P_LISTEN = '/ip4/0.0.0.0/tcp/65002'
/** How often the agent re-registers with its supernodes (well inside their host TTL). */
export const HEARTBEAT_MS = 10_000
