const GiB = 1024 * 1024 * 1024

/** Most tar entries one layer may hold; real layers stay far below (a full distro is ~30k). */
export const MAX_ENTRIES = 500_000
/** Longest entry path or link target, in bytes (Linux PATH_MAX). */
export const MAX_PATH_LENGTH = 4096
/** Longest single path component, in bytes (Linux NAME_MAX). */
export const MAX_COMPONENT_LENGTH = 255
/** Most uncompressed tar bytes one layer may expand to: the decompression-bomb cap. */
export const MAX_LAYER_BYTES = 16 * GiB
/** Largest single regular file in a layer. */
export const MAX_FILE_SIZE = 8 * GiB
/** Symlinks followed while resolving one parent path, like the kernel's ELOOP limit. */
export const MAX_SYMLINK_HOPS = 40

/** Files up to this size are read whole, then written with synchronous calls (no thread-pool hops). */
export const SMALL_FILE_BYTES = 256 * 1024
/** Larger files are written in vectored writes of about this many bytes. */
export const WRITE_BATCH_BYTES = 1024 * 1024
/** Output buffer of the gzip decoder: each one filled is a thread-pool round trip. */
export const GUNZIP_CHUNK_BYTES = 1024 * 1024

/** Prefix of the active snapshots unpackImage() creates; leftovers of a crash are removed at start. */
export const UNPACK_KEY_PREFIX = 'unpack-'

/** A tar entry whose base name starts with this deletes NAME from the layers below. */
export const WHITEOUT_PREFIX = '.wh.'
/** Prefix of aufs metadata entries (`.wh..wh.plnk`, `.wh..wh.aufs`): never content. */
export const WHITEOUT_META_PREFIX = '.wh..wh.'
/** Marks its directory opaque: nothing below it from lower layers shows through. */
export const WHITEOUT_OPAQUE = '.wh..wh..opq'
/** The xattr overlayfs reads to treat an upper directory as opaque. */
export const OVERLAY_OPAQUE_XATTR = 'trusted.overlay.opaque'

/** External tools from Debian's coreutils, util-linux, attr and zstd packages. */
export const TOOLS = {
  zstd: 'zstd',
  mknod: 'mknod',
  setfattr: 'setfattr',
  cp: 'cp',
  mount: 'mount',
  umount: 'umount'
} as const
