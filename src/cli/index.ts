// The CLI's reusable parts: the Engine API client (also handy for tests and scripts that drive
// joeyd or dockerd) and runCli for running joey in-process.
export { EngineClient, createEngineClient, imagePath, statusErrorCode } from './client.js'
export type { EngineClientInit, ListImagesOptions, PullImageParams, PullImageOptions, RemoveImageOptions } from './client.js'
export { parseHost, type HostSpec } from './host.js'
export { runCli, createProgram, type CliIO, type CommandContext } from './cli.js'
export { ProgressRenderer, renderProgressBar, type ProgressSink } from './progress.js'
export { UsageError, EXIT_OK, EXIT_FAILURE, EXIT_USAGE } from './errors.js'
export type * from './types.js'
