/**
 * Run as its own process (node --expose-gc): builds the scheduler state of a large pull
 * in progress and prints its memory as JSON, so the measuring process's own heap and the
 * bench harness never count.
 */
import '../../src/common/polyfill.js'
import { BLOB_SIZES, createWorkload } from './scheduler-workload.js'

const peers = Number(process.argv[2] ?? 5000)
const rounds = Number(process.argv[3] ?? 24)
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {})
gc()
const before = process.memoryUsage()
const w = createWorkload({ peers, blobSizes: BLOB_SIZES, seed: 7 })
w.joinAll()
// A pull in progress: every peer holds part of every layer and has parents.
for (let r = 0; r < rounds; r++) w.round()
gc()
const after = process.memoryUsage()
const peerTasks = [...w.scheduler.tasks.values()].reduce((n, t) => n + t.peers.size, 0)
console.log(JSON.stringify({ peers, peerTasks, heapBefore: before.heapUsed, heapAfter: after.heapUsed, rssBefore: before.rss, rssAfter: after.rss }))
