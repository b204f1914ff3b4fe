// Piece protocol throughput against the raw libp2p stream it runs on.
//
//   npx tsx bench/p2p-throughput.ts [--mib 256] [--piece-mib 4] [--rounds 3]
//
// Spawns itself as a server process (--serve) and fetches the same bytes three ways over
// one TCP + Noise + yamux connection on loopback:
//   raw    a plain stream: the server writes N MiB, the client counts bytes
//   lp     length-prefixed pieces through @libp2p/utils lpStream, copied out and sha256'd
//          (what the piece protocol would cost on lpStream framing)
//   piece  /joey/piece/1.0.0: META, pipelined REQUESTs, every piece verified
// and prints MiB/s of each and the piece/raw ratio.
import '../src/common/polyfill.js'
import { spawn } from 'node:child_process'
import { createCipheriv, createHash } from 'node:crypto'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { lpStream } from '@libp2p/utils'
import { silentLogger } from '../src/common/index.js'
import {
  Bitfield, createP2PHost, createPieceServer, openPieceSession, pieceCount, pieceRange,
  type P2PHost, type PieceSource, type Stream
} from '../src/p2p/index.js'

const RAW = '/joey-bench/raw/1.0.0'
const LP = '/joey-bench/lp/1.0.0'
const MiB = 1024 * 1024

const { values } = parseArgs({
  options: {
    serve: { type: 'boolean', default: false },
    mib: { type: 'string', default: '256' },
    'piece-mib': { type: 'string', default: '4' },
    rounds: { type: 'string', default: '3' }
  }
})
const size = Number(values.mib) * MiB
const pieceSize = Number(values['piece-mib']) * MiB
const rounds = Number(values.rounds)

function makeBlob (n: number): Uint8Array {
  const cipher = createCipheriv('aes-128-ctr', Buffer.alloc(16, 7), Buffer.alloc(16))
  const out = cipher.update(Buffer.alloc(n))
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength)
}

const sha256 = (d: Uint8Array): string => 'sha256:' + createHash('sha256').update(d).digest('hex')

function readU64 (data: Uint8Array): number {
  return Number(new DataView(data.buffer, data.byteOffset, 8).getBigUint64(0))
}

function u64 (n: number): Uint8Array {
  const b = new Uint8Array(8)
  new DataView(b.buffer).setBigUint64(0, BigInt(n))
  return b
}

async function writeAll (stream: Stream, blob: Uint8Array, chunk: number): Promise<void> {
  for (let off = 0; off < blob.byteLength; off += chunk) {
    if (!stream.send(blob.subarray(off, Math.min(blob.byteLength, off + chunk)))) await stream.onDrain()
  }
}

async function serve (): Promise<void> {
  const blob = makeBlob(size)
  const count = pieceCount(size, pieceSize)
  const digests = Array.from({ length: count }, (_, i) => { const r = pieceRange(size, pieceSize, i); return sha256(blob.subarray(r.start, r.end)) })
  const have = new Bitfield(count)
  for (let i = 0; i < count; i++) have.set(i)
  const digest = sha256(blob)
  const source: PieceSource = {
    task: (d) => d === digest ? { size, pieceSize, pieceDigests: digests, have } : undefined,
    subscribe: () => () => {},
    readPiece: async (_d, i) => { const r = pieceRange(size, pieceSize, i); return blob.subarray(r.start, r.end) }
  }
  const logger = silentLogger()
  const host = createP2PHost({ listen: ['/ip4/127.0.0.1/tcp/0'] }, { logger })
  await host.start()
  await host.handle(RAW, (stream) => {
    stream.addEventListener('message', (evt) => {
      const n = readU64(evt.data instanceof Uint8Array ? evt.data : evt.data.subarray())
      writeAll(stream, blob.subarray(0, n), 256 * 1024).then(async () => { await stream.close() }).catch((err) => { stream.abort(err) })
    }, { once: true })
  })
  await host.handle(LP, (stream) => {
    stream.addEventListener('message', (evt) => {
      const n = readU64(evt.data instanceof Uint8Array ? evt.data : evt.data.subarray())
      const lp = lpStream(stream)
      void (async () => {
        for (let off = 0; off < n; off += pieceSize) await lp.write(blob.subarray(off, Math.min(n, off + pieceSize)))
        await stream.close()
      })().catch((err) => { stream.abort(err) })
    }, { once: true })
  })
  const server = createPieceServer({}, { logger, host, source })
  await server.start()
  process.stdout.write(JSON.stringify({ addr: host.multiaddrs()[0], digest }) + '\n')
  process.stdin.resume()
  process.stdin.on('end', () => { void server.stop().then(async () => { await host.stop() }).then(() => process.exit(0)) })
}

async function raw (host: P2PHost, addr: string): Promise<number> {
  const stream = await host.dialProtocol(addr, RAW)
  let got = 0
  const done = new Promise<void>((resolve, reject) => {
    stream.addEventListener('message', (evt) => { got += evt.data.byteLength })
    stream.addEventListener('remoteCloseWrite', () => { resolve() })
    stream.addEventListener('close', (evt) => { if (evt.error !== undefined) reject(evt.error) })
  })
  stream.send(u64(size))
  await done
  await stream.close()
  if (got !== size) throw new Error(`raw: got ${got} of ${size} bytes`)
  return got
}

async function lp (host: P2PHost, addr: string): Promise<number> {
  const stream = await host.dialProtocol(addr, LP)
  // lpStream has no backpressure: it aborts when more than maxBufferSize is unread, so give
  // it room for a whole yamux window (16 MiB) plus a piece.
  const reader = lpStream(stream, { maxDataLength: pieceSize, maxBufferSize: 16 * MiB + 2 * pieceSize })
  stream.send(u64(size))
  let got = 0
  while (got < size) {
    const piece = (await reader.read()).subarray()
    sha256(piece)
    got += piece.byteLength
  }
  await stream.close()
  return got
}

async function piece (host: P2PHost, addr: string, digest: string): Promise<number> {
  const session = await openPieceSession(host, addr, digest)
  const count = session.meta.pieceCount
  let got = 0
  await Promise.all(Array.from({ length: count }, async (_, i) => {
    const data = await session.request(i)
    got += data.byteLength
  }))
  await session.close()
  return got
}

async function main (): Promise<void> {
  if (values.serve) { await serve(); return }
  const child = spawn(process.execPath, ['--import', 'tsx', new URL(import.meta.url).pathname, '--serve', '--mib', String(values.mib), '--piece-mib', String(values['piece-mib'])], { stdio: ['pipe', 'pipe', 'inherit'] })
  try {
    const [line] = await once(createInterface({ input: child.stdout }), 'line') as [string]
    const { addr, digest } = JSON.parse(line) as { addr: string, digest: string }
    const host = createP2PHost({ listen: [] }, { logger: silentLogger() })
    await host.start()
    const modes: Record<string, () => Promise<number>> = {
      raw: async () => await raw(host, addr),
      lp: async () => await lp(host, addr),
      piece: async () => await piece(host, addr, digest)
    }
    const best: Record<string, number> = {}
    const cpu: Record<string, number> = {}
    console.log(`${size / MiB} MiB per round, ${pieceSize / MiB} MiB pieces, ${rounds} rounds (+1 warm-up), loopback, one connection`)
    for (let round = 0; round <= rounds; round++) {
      for (const [name, run] of Object.entries(modes)) {
        const t = performance.now()
        const c = process.cpuUsage()
        const bytes = await run()
        const seconds = (performance.now() - t) / 1000
        const used = process.cpuUsage(c)
        const rate = bytes / MiB / seconds
        if (round > 0 && rate > (best[name] ?? 0)) {
          best[name] = rate
          cpu[name] = (used.user + used.system) / 1e6 / seconds
        }
      }
    }
    // Client CPU is the share of one core this process used; the server is the other process.
    for (const [name, rate] of Object.entries(best)) console.log(`${name.padEnd(6)} ${rate.toFixed(0).padStart(6)} MiB/s   client CPU ${((cpu[name] as number) * 100).toFixed(0)}%`)
    console.log(`piece/raw ${((best.piece as number) / (best.raw as number)).toFixed(2)}   piece/lp ${((best.piece as number) / (best.lp as number)).toFixed(2)}`)
    await host.stop()
  } finally {
    child.stdin?.end()
    const t = setTimeout(() => child.kill('SIGKILL'), 5000)
    if (child.exitCode === null) await once(child, 'exit')
    clearTimeout(t)
  }
}

await main()
