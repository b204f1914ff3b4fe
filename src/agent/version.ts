import pkg from '../../package.json' with { type: 'json' }

export const AGENT_NAME = 'joeyd'
export const AGENT_VERSION: string = pkg.version

/** Filled in by release builds; a source checkout does not know its commit. */
export const GIT_COMMIT = 'unknown'
export const BUILD_TIME = ''
/** What docker info shows as the storage driver: images live as blobs in the content store. */
export const STORAGE_DRIVER = 'content-store'
