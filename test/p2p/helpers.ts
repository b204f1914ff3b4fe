import { createCipheriv, createHash } from 'node:crypto'
import { silentLogger } from '../../src/common/index.js'
import { Bitfield, createP2PHost, createPieceServer, pieceCount, pieceRange, type P2PHost, type P2PHostInit, type PieceServer, type PieceServerInit, type PieceSource, type PieceTaskInfo } from '../../src/p2p/index.js'

export const MiB = 1024 * 1024

/** Deterministic pseudo-random bytes (AES-CTR keystream): two processes agree on a blob without sending it. */
export function makeBlob (size: number, seed: string): Uint8Array {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16)
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16))
  const out = cipher.update(Buffer.alloc(size))
  cipher.final()
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength)
}

export function sha256 (data: Uint8Array): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex')
}

export interface MemoryTask {
  digest: string
  blob: Uint8Array
  pieceSize: number
  count: number
  digests: string[]
  have: Bitfield
  /** Whether digests of pieces not yet held are published in META (as a seed does). */
  publishAll: boolean
  listeners: Set<(index: number, digest: string) => void>
}

/** A PieceSource over blobs in memory; tests make it gain pieces, corrupt or fail them. */
export class MemorySource implements PieceSource {
  readonly tasks = new Map<string, MemoryTask>()
  readonly corrupt = new Set<number>()
  readonly failing = new Set<number>()
  reads = 0
  readDelayMs = 0

  add (blob: Uint8Array, pieceSize: number, options: { held?: 'all' | 'none', publishAll?: boolean } = {}): MemoryTask {
    const count = pieceCount(blob.byteLength, pieceSize)
    const digests: string[] = []
    for (let i = 0; i < count; i++) {
      const r = pieceRange(blob.byteLength, pieceSize, i)
      digests.push(sha256(blob.subarray(r.start, r.end)))
    }
    const have = new Bitfield(count)
    if ((options.held ?? 'all') === 'all') for (let i = 0; i < count; i++) have.set(i)
    const task: MemoryTask = { digest: sha256(blob), blob, pieceSize, count, digests, have, publishAll: options.publishAll ?? false, listeners: new Set() }
    this.tasks.set(task.digest, task)
    return task
  }

  gain (digest: string, index: number): void {
    const t = this.tasks.get(digest)
    if (t === undefined || !t.have.set(index)) return
    for (const l of t.listeners) l(index, t.digests[index] as string)
  }

  task (digest: string): PieceTaskInfo | undefined {
    const t = this.tasks.get(digest)
    if (t === undefined) return undefined
    return {
      size: t.blob.byteLength,
      pieceSize: t.pieceSize,
      pieceDigests: t.digests.map((d, i) => t.publishAll || t.have.has(i) ? d : undefined),
      have: t.have
    }
  }

  subscribe (digest: string, onPiece: (index: number, pieceDigest: string) => void): () => void {
    const t = this.tasks.get(digest)
    if (t === undefined) return () => {}
    t.listeners.add(onPiece)
    return () => { t.listeners.delete(onPiece) }
  }

  async readPiece (digest: string, index: number, options: { signal?: AbortSignal } = {}): Promise<Uint8Array> {
    this.reads++
    if (this.readDelayMs > 0) await new Promise(resolve => setTimeout(resolve, this.readDelayMs))
    options.signal?.throwIfAborted()
    const t = this.tasks.get(digest)
    if (t === undefined || !t.have.has(index)) throw new Error(`no piece ${index}`)
    if (this.failing.has(index)) throw new Error('disk on fire')
    const r = pieceRange(t.blob.byteLength, t.pieceSize, index)
    const data = t.blob.subarray(r.start, r.end)
    if (!this.corrupt.has(index)) return data
    const bad = data.slice()
    bad[0] = (bad[0] as number) ^ 0xff
    return bad
  }
}

export async function startHost (init: Partial<P2PHostInit> = {}): Promise<P2PHost> {
  const host = createP2PHost({ listen: ['/ip4/127.0.0.1/tcp/0'], dialTimeoutMs: 3000, ...init }, { logger: silentLogger() })
  await host.start()
  return host
}

export interface ServedPair { server: P2PHost, client: P2PHost, pieces: PieceServer, stop: () => Promise<void> }

/** Two hosts in this process, the server's pieces from `source`; stop() undoes it all. */
export async function startServedPair (init: PieceServerInit, source: PieceSource): Promise<ServedPair> {
  const server = await startHost()
  const client = await startHost()
  const pieces = createPieceServer(init, { logger: silentLogger(), host: server, source })
  await pieces.start()
  return {
    server,
    client,
    pieces,
    stop: async () => {
      await pieces.stop()
      await client.stop()
      await server.stop()
    }
  }
}
