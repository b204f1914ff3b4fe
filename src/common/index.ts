export * from './errors.js'
export * from './digest.js'
export * from './logger.js'
export * from './service.js'
