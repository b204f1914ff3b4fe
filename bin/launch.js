// Shared by the bin launchers: runs the compiled build in dist/ when it is current (it
// starts faster and uses ~40 MB less memory than compiling on the fly), and otherwise the
// TypeScript sources through tsx, so a fresh clone or an edited tree never runs stale code.
import '../src/common/polyfill-js.js'
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))

function newestMtime (dir) {
  let newest = 0
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    newest = Math.max(newest, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs)
  }
  return newest
}

/** True when `dir`/dist was built after the last change to any source file under `dir`. */
export function distIsCurrent (dir = root) {
  if (process.env.JOEY_FROM_SOURCE === '1') return false
  let stamp
  try { stamp = statSync(join(dir, 'dist', 'BUILD')).mtimeMs } catch { return false }
  return newestMtime(join(dir, 'src')) <= stamp && newestMtime(join(dir, 'supernode')) <= stamp
}

/** Imports `entry` (a path like 'src/agent/main', without extension) from dist/ or the sources. */
export async function launch (entry) {
  if (distIsCurrent()) {
    await import(pathToFileURL(join(root, 'dist', `${entry}.js`)).href)
    return
  }
  const { register } = await import('tsx/esm/api')
  register()
  await import(pathToFileURL(join(root, `${entry}.ts`)).href)
}
