import { spawn, type ChildProcess } from 'node:child_process'
import { Duplex, Readable } from 'node:stream'
import { createGunzip } from 'node:zlib'
import { JoeyError } from '../common/index.js'
import { GUNZIP_CHUNK_BYTES, TOOLS } from './constants.js'

export type Compression = 'none' | 'gzip' | 'zstd'

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b])
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd])

/**
 * The compression a layer media type declares. OCI and Docker layer types (including the
 * non-distributable/foreign ones) are accepted; anything that is not a layer is refused.
 */
export function compressionOf (mediaType: string): Compression {
  const mt = mediaType.trim().toLowerCase()
  const isLayer = /^application\/vnd\.oci\.image\.layer\.(nondistributable\.)?v1\.tar(\+(gzip|zstd))?$/.test(mt) ||
    /^application\/vnd\.docker\.image\.rootfs\.(foreign\.)?diff\.tar(\.gzip|\.zstd)?$/.test(mt) ||
    mt === 'application/x-tar' || mt === 'application/tar' || mt === 'application/gzip' || mt === 'application/x-gzip' ||
    mt === 'application/zstd'
  if (!isLayer) {
    throw new JoeyError('ERR_UNSUPPORTED_MEDIA_TYPE', `media type "${mediaType}" is not a layer (expected a tar, tar+gzip or tar+zstd layer)`,
      { detail: { mediaType } })
  }
  if (mt.endsWith('gzip')) return 'gzip'
  if (mt.endsWith('zstd')) return 'zstd'
  return 'none'
}

/** What the first bytes say; media types lie (e.g. gzip blobs labelled as plain tar). */
export function sniffCompression (head: Buffer): Compression | undefined {
  if (head.length >= 2 && head.subarray(0, 2).equals(GZIP_MAGIC)) return 'gzip'
  if (head.length >= 4 && head.subarray(0, 4).equals(ZSTD_MAGIC)) return 'zstd'
  return undefined
}

/**
 * Reads the first bytes of `source` and returns them with a stream that replays them
 * followed by the rest. Destroying the returned stream destroys `source`.
 */
export async function peek (source: Readable, bytes: number): Promise<{ head: Buffer, stream: Readable }> {
  const it = source[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>
  const chunks: Buffer[] = []
  let length = 0
  let ended = false
  while (length < bytes) {
    const r = await it.next()
    if (r.done === true) { ended = true; break }
    const chunk = typeof r.value === 'string' ? Buffer.from(r.value) : r.value
    chunks.push(chunk)
    length += chunk.byteLength
  }
  const head = Buffer.concat(chunks)
  const rest = async function * (): AsyncGenerator<Buffer> {
    try {
      if (head.byteLength > 0) yield head
      if (ended) return
      for (;;) {
        const r = await it.next()
        if (r.done === true) return
        yield typeof r.value === 'string' ? Buffer.from(r.value) : r.value
      }
    } finally {
      if (!source.destroyed) source.destroy()
    }
  }
  const stream = Readable.from(rest(), { objectMode: false })
  stream.once('close', () => { if (!source.destroyed) source.destroy() })
  return { head: head.subarray(0, bytes), stream }
}

/** A decompressing stage for `pipeline`, or undefined for plain tar. */
export function decompressor (compression: Compression): Duplex | undefined {
  switch (compression) {
    case 'none': return undefined
    case 'gzip': return createGunzip({ chunkSize: GUNZIP_CHUNK_BYTES })
    case 'zstd': return new ChildFilter(TOOLS.zstd, ['-d', '-c', '-q', '--no-progress'])
  }
}

/**
 * Streams through a child process (node 20's zlib has no zstd). Back-pressure flows both
 * ways; a non-zero exit fails the stream with the tool's own message, and destroying the
 * stream kills the child.
 */
class ChildFilter extends Duplex {
  private readonly child: ChildProcess
  private readonly stderr: Buffer[] = []
  private pendingWrite: (() => void) | undefined
  private exited = false

  constructor (private readonly cmd: string, args: string[]) {
    super()
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] })
    this.child = child
    const stdin = child.stdin!
    const stdout = child.stdout!
    child.stderr!.on('data', (c: Buffer) => { if (this.stderr.length < 64) this.stderr.push(c) })
    stdout.on('data', (c: Buffer) => { if (!this.push(c)) stdout.pause() })
    // A tool that dies early breaks its stdin pipe; its exit status says why, so the pipe's
    // EPIPE is not the error reported.
    const release = (): void => { const cb = this.pendingWrite; this.pendingWrite = undefined; cb?.() }
    stdin.on('error', release)
    stdin.on('close', release)
    stdin.on('drain', release)
    child.on('error', (err: NodeJS.ErrnoException) => {
      this.exited = true
      this.destroy(err.code === 'ENOENT'
        ? new JoeyError('ERR_FAILED_PRECONDITION', `${cmd} is not installed: it is needed to decompress zstd layers (Debian package zstd)`, { cause: err })
        : err)
    })
    child.on('close', (code, signal) => {
      this.exited = true
      if (code === 0) {
        this.push(null)
        return
      }
      const msg = Buffer.concat(this.stderr).toString().trim()
      const truncated = /premature end|truncated|unexpected end/i.test(msg)
      this.destroy(new JoeyError(truncated ? 'ERR_TRUNCATED' : 'ERR_INVALID_ARGUMENT',
        `layer is not a valid ${cmd} stream: ${msg !== '' ? msg : `${cmd} exited with ${String(code ?? signal)}`}`,
        { detail: { code, signal, stderr: msg } }))
    })
  }

  override _read (): void {
    this.child.stdout?.resume()
  }

  override _write (chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const stdin = this.child.stdin!
    if (stdin.destroyed || this.exited) { cb(); return }
    if (stdin.write(chunk)) cb()
    else this.pendingWrite = () => cb()
  }

  override _final (cb: (err?: Error | null) => void): void {
    this.child.stdin?.end()
    cb()
  }

  override _destroy (err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.exited) this.child.kill('SIGKILL')
    this.child.stdin?.destroy()
    this.child.stdout?.destroy()
    const pending = this.pendingWrite
    this.pendingWrite = undefined
    pending?.()
    cb(err)
  }
}
