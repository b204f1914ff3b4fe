// Child process for the crash tests: writes part of a blob (or all of it and starts the
// commit), then dies by SIGKILL with no chance to clean up.
// Usage: node --import tsx crash-writer.ts <root> <ref> <size> <seed> <mode> [delayMs]
//   mode 'half':   write the first half, then die
//   mode 'commit': write everything, call commit() and die after delayMs
import { createContentStore } from '../../src/content/index.js'
import { sha256, silentLogger } from '../../src/common/index.js'
import { patternBytes } from './helpers.js'

const [root, ref, sizeArg, seed, mode, delayArg] = process.argv.slice(2)
if (root === undefined || ref === undefined || sizeArg === undefined || seed === undefined || mode === undefined) {
  process.exit(2)
}
const data = patternBytes(Number(sizeArg), seed)
const store = createContentStore({ root }, { logger: silentLogger() })
await store.start()
const w = await store.writer(ref, { expectedSize: data.byteLength, expectedDigest: sha256(data) })
const upTo = mode === 'half' ? Math.floor(data.byteLength / 2) : data.byteLength
for (let pos = 0; pos < upTo; pos += 65536) await w.write(data.subarray(pos, Math.min(upTo, pos + 65536)))
if (mode === 'commit') {
  setTimeout(() => process.kill(process.pid, 'SIGKILL'), Number(delayArg ?? '0'))
  await w.commit(data.byteLength, sha256(data))
  // Committed before the timer fired: still die without cleaning up.
}
process.kill(process.pid, 'SIGKILL')
