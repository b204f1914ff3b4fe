// A piece server in its own process, for the cross-process tests:
//   node --import tsx --import ./test/setup.ts test/p2p/peer-process.ts --size <bytes> --piece-size <bytes> --seed <text>
//        [--trickle-ms <ms>] [--corrupt <i,j>] [--swarm-key-file <path>]
// Serves a deterministic blob (helpers.makeBlob) and prints one JSON line on stdout:
// { "peerId", "addrs", "digest" }. With --trickle-ms it starts with no piece and gains one
// every <ms>, in order, so clients see HAVE pushes. It exits when stdin closes or on SIGTERM.
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { createLogger } from '../../src/common/index.js'
import { createP2PHost, createPieceServer, parseSwarmKey } from '../../src/p2p/index.js'
import { MemorySource, makeBlob } from './helpers.js'

const { values } = parseArgs({
  options: {
    size: { type: 'string' },
    'piece-size': { type: 'string' },
    seed: { type: 'string', default: 'peer' },
    'trickle-ms': { type: 'string' },
    corrupt: { type: 'string' },
    'swarm-key-file': { type: 'string' }
  }
})
const size = Number(values.size)
const pieceSize = Number(values['piece-size'])
const trickleMs = values['trickle-ms'] !== undefined ? Number(values['trickle-ms']) : undefined
const logger = createLogger({ level: 'warn', format: 'json' })

const source = new MemorySource()
const task = source.add(makeBlob(size, values.seed), pieceSize, { held: trickleMs !== undefined ? 'none' : 'all' })
for (const i of (values.corrupt ?? '').split(',').filter(Boolean)) source.corrupt.add(Number(i))

const host = createP2PHost({
  listen: ['/ip4/127.0.0.1/tcp/0'],
  ...(values['swarm-key-file'] !== undefined ? { swarmKey: parseSwarmKey(readFileSync(values['swarm-key-file'], 'utf8')) } : {})
}, { logger })
const server = createPieceServer({}, { logger, host, source })
await host.start()
await server.start()
process.stdout.write(JSON.stringify({ peerId: host.peerId, addrs: host.multiaddrs(), digest: task.digest }) + '\n')

let timer: NodeJS.Timeout | undefined
if (trickleMs !== undefined) {
  let next = 0
  timer = setInterval(() => {
    source.gain(task.digest, next++)
    if (next >= task.count) clearInterval(timer)
  }, trickleMs)
}

let stopping = false
async function shutdown (): Promise<void> {
  if (stopping) return
  stopping = true
  clearInterval(timer)
  await server.stop()
  await host.stop()
  process.exit(0)
}
process.on('SIGTERM', () => { void shutdown() })
process.stdin.on('end', () => { void shutdown() })
process.stdin.resume()
