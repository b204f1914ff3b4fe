// Shared by the bin launchers: runs the compiled build in dist/ when it is current (it
// starts faster and uses ~40 MB less memory than compiling on the fly), and otherwise the
// TypeScript sources through tsx, so a fresh clone or an edited tree never runs stale code.
import '../src/common/polyfill-js.js'
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { setFlagsFromString } from 'node:v8'

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

/**
 * V8 flags of the daemons (joeyd, joey-supernode), set in-process before their code loads:
 * a second node process to pass them on the command line would cost a start-up and its own
 * memory. --liftoff-only keeps WebAssembly on V8's baseline compiler: undici parses HTTP with
 * llhttp built to wasm, and optimizing that with TurboFan held ~30 MiB of compiler memory
 * for a moment after a daemon's first registry request (libp2p-noise's wasm ciphers are
 * compiled the same way); for header parsing the baseline code is fast enough.
 */
export const DAEMON_V8_FLAGS = ['--liftoff-only']

/**
 * Imports `entry` (a path like 'src/agent/main', without extension) from dist/ or the
 * sources, after setting `v8Flags` (flags that V8 reads when it compiles, not at start-up).
 */
export async function launch (entry, { v8Flags = [] } = {}) {
  for (const flag of v8Flags) setFlagsFromString(flag)
  if (distIsCurrent()) {
    await import(pathToFileURL(join(root, 'dist', `${entry}.js`)).href)
    return
  }
  const { register } = await import('tsx/esm/api')
  register()
  await import(pathToFileURL(join(root, `${entry}.ts`)).href)
}
