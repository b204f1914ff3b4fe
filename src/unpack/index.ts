export { applyLayer } from './apply.js'
export { chainID, chainIDs } from './chain.js'
export { compressionOf, sniffCompression, type Compression } from './decompress.js'
export { detectSnapshotter } from './detect.js'
export { mountAll, unmount } from './mount.js'
export { createSnapshotter } from './snapshotter.js'
export { unpackImage } from './unpack.js'
export type {
  ApplyOptions, ApplyResult, Mount, PreparedSnapshot, SnapshotInfo, SnapshotKind, SnapshotOptions, Snapshotter,
  SnapshotterComponents, SnapshotterInit, SnapshotterKind, SnapshotUsage, UnpackLayer, UnpackLimits, UnpackOptions,
  UnpackResult, WhiteoutMode
} from './types.js'
export {
  MAX_COMPONENT_LENGTH, MAX_ENTRIES, MAX_FILE_SIZE, MAX_LAYER_BYTES, MAX_PATH_LENGTH, MAX_SYMLINK_HOPS, UNPACK_KEY_PREFIX
} from './constants.js'
