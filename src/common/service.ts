/** The lifecycle every long-lived component shares; roots start and stop them in order. */
export interface Service {
  start: () => Promise<void>
  stop: () => Promise<void>
}

export interface AbortOptions {
  signal?: AbortSignal
}
