// A hostile peer for the cluster tests, in its own process:
//   node --import tsx --import ./test/setup.ts test/cluster/hostile-peer.ts --supernode <url>
//        --blob <digest>=<file> [--blob …] [--swarm-key-file <path>] [--listen <multiaddr>]
//
// It claims to hold every piece of each blob and serves each one with a byte flipped. Its
// META and HAVE frames announce the digests of those corrupt bytes, so the piece session's
// own check passes: only the agent's check against the digests the seed published catches
// them. It registers with the supernode as an ordinary host and reports itself complete on
// each task, so the scheduler offers it as a parent (a complete, unloaded, non-seed holder
// scores best).
//
// stdout, one JSON object a line: first { event: 'ready', peerId, addrs }, then
// { event: 'served', digest, index } for every corrupt piece read for a peer.
// It exits on SIGTERM or when stdin closes.
import { open, readFile, stat } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { parseArgs } from 'node:util'
import { createLogger, pieceSizeFor } from '../../src/common/index.js'
import { createP2PHost, createPieceServer, parseSwarmKey, type PieceSet, type PieceSource } from '../../src/p2p/index.js'

const { values } = parseArgs({
  options: {
    supernode: { type: 'string' },
    blob: { type: 'string', multiple: true, default: [] },
    'swarm-key-file': { type: 'string' },
    listen: { type: 'string', default: '/ip4/127.0.0.1/tcp/0' },
    'heartbeat-ms': { type: 'string', default: '2000' }
  }
})
if (values.supernode === undefined || values.blob.length === 0) {
  process.stderr.write('usage: hostile-peer.ts --supernode <url> --blob <digest>=<file> [--blob …]\n')
  process.exit(2)
}
const supernode = values.supernode.replace(/\/+$/, '')
const logger = createLogger({ level: 'warn', format: 'json' })

interface Blob { digest: string, file: string, size: number, pieceSize: number, count: number, digests: string[], have: PieceSet }

/** The bytes served for a piece: the real ones with the first byte inverted. */
async function corruptPiece (blob: Blob, index: number): Promise<Buffer> {
  const start = index * blob.pieceSize
  const length = Math.min(blob.pieceSize, blob.size - start)
  const buf = Buffer.alloc(length)
  const fh = await open(blob.file, 'r')
  try {
    let pos = 0
    while (pos < length) {
      const { bytesRead } = await fh.read(buf, pos, length - pos, start + pos)
      if (bytesRead === 0) throw new Error(`${blob.file} is shorter than ${blob.size} bytes`)
      pos += bytesRead
    }
  } finally {
    await fh.close()
  }
  buf[0] = (buf[0] as number) ^ 0xff
  return buf
}

const blobs = new Map<string, Blob>()
for (const spec of values.blob) {
  const eq = spec.indexOf('=')
  const digest = spec.slice(0, eq)
  const file = spec.slice(eq + 1)
  const size = (await stat(file)).size
  const pieceSize = pieceSizeFor(size)
  const count = Math.max(1, Math.ceil(size / pieceSize))
  const have: PieceSet = { has: (i) => i >= 0 && i < count }
  const blob: Blob = { digest, file, size, pieceSize, count, digests: [], have }
  for (let i = 0; i < count; i++) blob.digests.push('sha256:' + createHash('sha256').update(await corruptPiece(blob, i)).digest('hex'))
  blobs.set(digest, blob)
}

const source: PieceSource = {
  task: (digest) => {
    const b = blobs.get(digest)
    return b === undefined ? undefined : { size: b.size, pieceSize: b.pieceSize, pieceDigests: b.digests, have: b.have }
  },
  subscribe: () => () => {},
  readPiece: async (digest, index) => {
    const data = await corruptPiece(blobs.get(digest) as Blob, index)
    // Read only to be sent at once: the server asks for a piece when it is its turn to go out.
    process.stdout.write(JSON.stringify({ event: 'served', digest, index }) + '\n')
    return data
  }
}

const swarmKeyFile = values['swarm-key-file']
const host = createP2PHost({
  listen: [values.listen],
  ...(swarmKeyFile !== undefined ? { swarmKey: parseSwarmKey(await readFile(swarmKeyFile, 'utf8')) } : {})
}, { logger })
await host.start()
const server = createPieceServer({}, { logger, host, source })
await server.start()

async function post (path: string, body: unknown): Promise<unknown> {
  const res = await fetch(supernode + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const text = await res.text()
  if (res.status >= 300) throw new Error(`POST ${path}: ${res.status} ${text}`)
  return text === '' ? undefined : JSON.parse(text)
}

const announce = async (): Promise<void> => { await post('/api/v1/hosts', { peerId: host.peerId, addrs: host.multiaddrs(), uploadSlots: 64 }) }
await announce()
for (const b of blobs.values()) {
  await post('/api/v1/tasks', { digest: b.digest, size: b.size, peerId: host.peerId })
  await post(`/api/v1/tasks/${b.digest}/pieces`, { peerId: host.peerId, complete: true })
}
const heartbeat = setInterval(() => { announce().catch(() => {}) }, Number(values['heartbeat-ms']))
process.stdout.write(JSON.stringify({ event: 'ready', peerId: host.peerId, addrs: host.multiaddrs() }) + '\n')

let stopping = false
async function shutdown (): Promise<void> {
  if (stopping) return
  stopping = true
  clearInterval(heartbeat)
  await server.stop()
  await host.stop()
  process.exit(0)
}
process.on('SIGTERM', () => { void shutdown() })
process.stdin.on('end', () => { void shutdown() })
process.stdin.resume()
