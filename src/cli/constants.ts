/** Where joeyd listens unless -H or JOEY_HOST say otherwise. */
export const DEFAULT_HOST = 'unix:///run/joey/joeyd.sock'
/** Environment variable naming the daemon address, like docker's DOCKER_HOST. */
export const HOST_ENV = 'JOEY_HOST'
/** docker's default for tcp:// addresses without a port. */
export const DEFAULT_TCP_PORT = 2375
export const CONNECT_TIMEOUT_MS = 10_000
/** Plain requests (list, inspect, remove) should answer quickly; pulls stream without limit. */
export const REQUEST_TIMEOUT_MS = 120_000
/** Width of the progress bar between the brackets, as docker draws it. */
export const PROGRESS_BAR_WIDTH = 50
/** Narrowest bar worth drawing before it is dropped on small terminals. */
export const PROGRESS_BAR_MIN_WIDTH = 10
