import { mkdir, mkdtemp, readdir, rm, writeFile, access } from 'node:fs/promises'
import { join } from 'node:path'
import { OVERLAY_OPAQUE_XATTR, TOOLS } from './constants.js'
import { run } from './exec.js'
import { mountAll, unmount } from './mount.js'
import type { SnapshotterKind } from './types.js'

/**
 * 'overlay' when a real overlay mount works under `root` with everything the overlay
 * snapshotter relies on (a whiteout device hides a lower file, an opaque xattr hides a
 * lower directory's contents); 'copy' otherwise: not root, no overlayfs in the kernel,
 * a root filesystem overlayfs cannot use as upper (overlay on overlay), no mknod/setfattr.
 */
export async function detectSnapshotter (root: string): Promise<SnapshotterKind> {
  if (process.getuid?.() !== 0) return 'copy'
  await mkdir(root, { recursive: true })
  const dir = await mkdtemp(join(root, '.detect-'))
  const merged = join(dir, 'merged')
  let mounted = false
  try {
    for (const d of ['lower/gone', 'lower/opaque', 'upper/opaque', 'work', 'merged']) await mkdir(join(dir, d), { recursive: true })
    await writeFile(join(dir, 'lower/gone/file'), 'x')
    await writeFile(join(dir, 'lower/opaque/hidden'), 'x')
    await writeFile(join(dir, 'lower/kept'), 'x')
    await run(TOOLS.mknod, ['-m', '0000', '--', join(dir, 'upper/gone'), 'c', '0', '0'])
    await run(TOOLS.setfattr, ['-h', '-n', OVERLAY_OPAQUE_XATTR, '-v', 'y', '--', join(dir, 'upper/opaque')])
    await mountAll([{
      type: 'overlay',
      source: 'overlay',
      options: [`lowerdir=${join(dir, 'lower')}`, `upperdir=${join(dir, 'upper')}`, `workdir=${join(dir, 'work')}`]
    }], merged)
    mounted = true
    await access(join(merged, 'kept'))
    const names = (await readdir(merged)).sort()
    const opaque = await readdir(join(merged, 'opaque'))
    return names.join(',') === 'kept,opaque' && opaque.length === 0 ? 'overlay' : 'copy'
  } catch {
    return 'copy'
  } finally {
    if (mounted) await unmount(merged).catch(() => {})
    await rm(dir, { recursive: true, force: true }).catch(() => {})
  }
}
