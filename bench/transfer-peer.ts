// One side of the transfer benchmark (bench/cases/transfer.ts), in its own process:
//
//   node --import tsx bench/transfer-peer.ts --role parent --dir <d> --bytes <n> [--swarm-key-file <f>]
//   node --import tsx bench/transfer-peer.ts --role child  --dir <d> [--swarm-key-file <f>]
//
// parent  writes a deterministic blob into a content store under <d>, records its piece
//         digests in a piece index and serves it the way an agent serves a blob it holds
//         whole (piece server over partialPieceSource); it also serves a raw stream that
//         sends a requested number of bytes from memory. Prints one JSON line with its
//         address and the blob, then runs until stdin closes.
// child   a host with the agent's receive path: createP2PTransfer with the parent as its
//         only parent (a stand-in supernode names it), pieces verified, written into a
//         partial, verified whole and committed to a content store. Reads one JSON command
//         per stdin line ({ op: 'raw' | 'pull', ... }) and answers each with one JSON line.
import '../src/common/polyfill.js'
import { setFlagsFromString } from 'node:v8'
import { createCipheriv, createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { PerformanceObserver, constants as perfConstants } from 'node:perf_hooks'
import { createGcPacer, createLogger, pieceSizeFor, type Logger } from '../src/common/index.js'
import { DAEMON_V8_FLAGS } from '../bin/launch.js'
import { createContentStore } from '../src/content/index.js'
import { parseReference, type RegistryClient } from '../src/distribution/index.js'
import { createP2PHost, createPieceServer, openPieceSession, parseSwarmKey, type P2PHost } from '../src/p2p/index.js'
import {
  PartialStore, PieceIndex, createP2PTransfer, partialPieceSource,
  type SupernodeClient
} from '../src/transfer/index.js'
import { fixedSupernode } from '../test/fixtures/fixed-supernode.js'

export const RAW_PROTOCOL = '/joey-bench/raw/1.0.0'
const CHUNK = 4 * 1024 * 1024
// As joeyd runs: the daemons' V8 flags, and a young-generation collection every few MiB
// received (src/agent wires the same pacer into its content store and piece sessions).
for (const flag of DAEMON_V8_FLAGS) setFlagsFromString(flag)
const gcPacer = createGcPacer()

const { values } = parseArgs({
  options: {
    role: { type: 'string' },
    dir: { type: 'string' },
    bytes: { type: 'string', default: '0' },
    'swarm-key-file': { type: 'string' }
  }
})
const dir = values.dir as string
const logger = createLogger({ level: 'warn', format: 'json' })
const swarmKey = values['swarm-key-file'] !== undefined ? parseSwarmKey(readFileSync(values['swarm-key-file'], 'utf8')) : undefined

function newHost (listen: string[]): P2PHost {
  return createP2PHost({ listen, ...(swarmKey !== undefined ? { swarmKey } : {}) }, { logger })
}

function reply (msg: unknown): void {
  process.stdout.write(JSON.stringify(msg) + '\n')
}

/** Deterministic pseudo-random bytes, generated a chunk at a time so no process holds the blob. */
function * blobChunks (size: number): Generator<Buffer> {
  const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, 7), Buffer.alloc(16))
  const zeros = Buffer.alloc(CHUNK)
  for (let off = 0; off < size; off += CHUNK) yield cipher.update(zeros.subarray(0, Math.min(CHUNK, size - off)))
}

async function parent (): Promise<void> {
  const size = Number(values.bytes)
  const pieceSize = pieceSizeFor(size)
  const contentStore = createContentStore({ root: join(dir, 'content') }, { logger })
  await contentStore.start()
  const whole = createHash('sha256')
  const pieceDigests: string[] = []
  let piece = createHash('sha256')
  let inPiece = 0
  const writer = await contentStore.writer('bench-blob')
  for (const chunk of blobChunks(size)) {
    whole.update(chunk)
    for (let pos = 0; pos < chunk.length;) {
      const n = Math.min(pieceSize - inPiece, chunk.length - pos)
      piece.update(chunk.subarray(pos, pos + n))
      inPiece += n
      pos += n
      if (inPiece === pieceSize) { pieceDigests.push('sha256:' + piece.digest('hex')); piece = createHash('sha256'); inPiece = 0 }
    }
    await writer.write(chunk)
  }
  if (inPiece > 0) pieceDigests.push('sha256:' + piece.digest('hex'))
  const digest = 'sha256:' + whole.digest('hex')
  await writer.commit(size, digest)
  const pieceIndex = new PieceIndex(join(dir, 'pieces'), logger)
  await pieceIndex.save({ digest, size, pieceSize, pieceDigests })
  const partials = new PartialStore(join(dir, 'partials'), logger)

  const host = newHost(['/ip4/127.0.0.1/tcp/0'])
  await host.start()
  const server = createPieceServer({}, { logger, host, source: partialPieceSource(partials, { index: pieceIndex, contentStore }) })
  await server.start()
  const rawChunk = blobChunks(CHUNK).next().value as Buffer
  await host.handle(RAW_PROTOCOL, (stream) => {
    stream.addEventListener('message', (evt) => {
      const head = evt.data.subarray()
      const n = Number(new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0))
      void (async () => {
        for (let off = 0; off < n; off += CHUNK) {
          // The transport takes the buffer as is; a fresh view per send, as a server would send fresh data.
          if (!stream.send(rawChunk.subarray(0, Math.min(CHUNK, n - off)))) await stream.onDrain()
        }
        await stream.close()
      })().catch((err) => { stream.abort(err as Error) })
    }, { once: true })
  })
  reply({ addr: host.multiaddrs()[0], peerId: host.peerId, digest, size, pieceSize, pieceDigests })
  await waitForStdinEnd()
  await server.stop()
  await host.stop()
  await contentStore.stop()
}

async function waitForStdinEnd (): Promise<void> {
  process.stdin.resume()
  await new Promise(resolve => process.stdin.once('end', resolve))
}

async function rawPull (host: P2PHost, addr: string, bytes: number): Promise<number> {
  const stream = await host.dialProtocol(addr, RAW_PROTOCOL)
  let got = 0
  const done = new Promise<void>((resolve, reject) => {
    stream.addEventListener('message', (evt) => { got += evt.data.byteLength })
    stream.addEventListener('remoteCloseWrite', () => { resolve() })
    stream.addEventListener('close', (evt) => { if (evt.error !== undefined) reject(evt.error) })
  })
  const head = new Uint8Array(8)
  new DataView(head.buffer).setBigUint64(0, BigInt(bytes))
  stream.send(head)
  await done
  await stream.close()
  if (got !== bytes) throw new Error(`raw stream: got ${got} of ${bytes} bytes`)
  return got
}

interface PullCommand { op: 'pull', addr: string, peerId: string, digest: string, size: number, pieceSize: number, pieceDigests: string[] }

/** A supernode that names one parent: the pull is between two hosts alone. */
function standInSupernode (cmd: PullCommand): SupernodeClient {
  return fixedSupernode({
    digest: cmd.digest,
    size: cmd.size,
    pieceSize: cmd.pieceSize,
    pieceCount: cmd.pieceDigests.length,
    pieceDigests: cmd.pieceDigests,
    parents: [{ peerId: cmd.peerId, addrs: [cmd.addr], seed: false }],
    backToSource: false
  })
}

/** The agent's pull of one blob: the same transfer manager and session opener joeyd composes. */
async function pull (host: P2PHost, cmd: PullCommand, root: string, log: Logger, gc: () => GcTotals): Promise<{ piecesMs: number, piecesCpuMs: number, totalMs: number, piecesGc: GcTotals }> {
  const contentStore = createContentStore({ root: join(root, 'content') }, { logger: log, gcPacer })
  await contentStore.start()
  const partials = new PartialStore(join(root, 'partials'), log)
  const registry = { getBlob: async () => { throw new Error('the origin is not part of this benchmark') } } as unknown as RegistryClient
  const transfer = createP2PTransfer({}, {
    logger: log,
    contentStore,
    registry,
    partials,
    supernodes: standInSupernode(cmd),
    pieceIndex: new PieceIndex(join(root, 'pieces'), log),
    openSession: async (parent, digest, signal) => {
      const session = await openPieceSession(host, parent.addrs[0] as string, digest, { signal })
      return {
        has: (i) => session.has(i),
        onHave: (cb) => { session.onHave((i) => { cb(i) }) },
        request: async (i, o) => {
          const piece = await session.request(i, o)
          gcPacer.note(piece.byteLength)
          return piece
        },
        close: () => { void session.close() }
      }
    }
  })
  const t = performance.now()
  const cpu = process.cpuUsage()
  let piecesMs = 0
  let piecesCpuMs = 0
  let piecesGc: GcTotals = { gcMs: 0, majorGcMs: 0, majorGcs: 0 }
  await transfer.fetchBlob(parseReference('bench.invalid/transfer/blob:1'), { mediaType: 'application/octet-stream', digest: cmd.digest, size: cmd.size }, {
    onProgress: (p) => {
      if (p.phase !== 'verifying' || piecesMs !== 0) return
      piecesMs = performance.now() - t
      const used = process.cpuUsage(cpu)
      piecesCpuMs = (used.user + used.system) / 1000
      piecesGc = gc()
    }
  })
  const totalMs = performance.now() - t
  await transfer.stop()
  await partials.close()
  await contentStore.stop()
  return { piecesMs, piecesCpuMs, totalMs, piecesGc }
}

interface GcTotals { gcMs: number, majorGcMs: number, majorGcs: number }

/** Time in garbage collection since the last call, and how much of it was full (mark-compact) collections. */
function gcMeter (): () => GcTotals {
  let gcMs = 0
  let majorGcMs = 0
  let majorGcs = 0
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gcMs += e.duration
      if ((e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) { majorGcMs += e.duration; majorGcs++ }
    }
  })
  obs.observe({ entryTypes: ['gc'] })
  return () => {
    const r = { gcMs, majorGcMs, majorGcs }
    gcMs = 0; majorGcMs = 0; majorGcs = 0
    return r
  }
}

async function child (): Promise<void> {
  const host = newHost([])
  await host.start()
  const gc = gcMeter()
  let round = 0
  for await (const line of createInterface({ input: process.stdin })) {
    const cmd = JSON.parse(line) as { op: 'raw', addr: string, bytes: number } | PullCommand
    gc()
    try {
      if (cmd.op === 'raw') {
        const t = performance.now()
        await rawPull(host, cmd.addr, cmd.bytes)
        reply({ ms: performance.now() - t, ...gc() })
      } else {
        const root = join(dir, `pull-${round++}`)
        await mkdir(root, { recursive: true })
        try {
          reply({ ...await pull(host, cmd, root, logger, gc), ...gc() })
        } finally {
          await rm(root, { recursive: true, force: true })
        }
      }
    } catch (err) {
      reply({ error: (err as Error).stack ?? String(err) })
    }
  }
  await host.stop()
}

if (values.role === 'parent') await parent()
else if (values.role === 'child') await child()
else throw new Error('--role parent|child')
