/**
 * docker's multiplexed stream (stdcopy) and hijacked connections. Attach and exec start are
 * HTTP Upgrade requests (`Upgrade: tcp`): dockerd answers `101 UPGRADED` and the socket then
 * carries frames with an 8-byte header (stream 1 = stdout, 2 = stderr, three zero bytes, a
 * big-endian uint32 length). Node hands upgrade requests to the server's 'upgrade' event
 * with the parser already detached, which is what a hijack needs: `engineUpgradeHandler`
 * routes them through fastify with a response bound to the raw socket.
 */
import { once } from 'node:events'
import { ServerResponse, type IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { JoeyError } from '../../common/index.js'
import type { LogEntry } from '../../runtime/index.js'

export const MULTIPLEXED_STREAM = 'application/vnd.docker.multiplexed-stream'
/** Largest body accepted on an upgrade request (exec start's is a few dozen bytes). */
const MAX_UPGRADE_BODY = 64 * 1024
const MAX_FRAME = 0xffffffff

export type StreamType = 'stdout' | 'stderr'

/** One stdcopy frame: header and payload. */
export function muxFrame (stream: StreamType, data: Buffer): Buffer {
  if (data.length > MAX_FRAME) throw new JoeyError('ERR_LIMIT_EXCEEDED', `frame of ${data.length} bytes is too large for a multiplexed stream`)
  const header = Buffer.alloc(8)
  header[0] = stream === 'stdout' ? 1 : 2
  header.writeUInt32BE(data.length, 4)
  return Buffer.concat([header, data])
}

/** Splits a multiplexed byte stream back into frames (tests and the CLI). */
export function demuxFrames (buf: Buffer): { frames: Array<{ stream: StreamType | 'stdin', data: Buffer }>, rest: Buffer } {
  const frames: Array<{ stream: StreamType | 'stdin', data: Buffer }> = []
  let off = 0
  while (buf.length - off >= 8) {
    const type = buf[off]!
    if (type > 2 || buf[off + 1] !== 0 || buf[off + 2] !== 0 || buf[off + 3] !== 0) {
      throw new JoeyError('ERR_PROTOCOL', `invalid multiplexed stream header at byte ${off}`)
    }
    const len = buf.readUInt32BE(off + 4)
    if (buf.length - off - 8 < len) break
    frames.push({ stream: type === 1 ? 'stdout' : type === 2 ? 'stderr' : 'stdin', data: buf.subarray(off + 8, off + 8 + len) })
    off += 8 + len
  }
  return { frames, rest: buf.subarray(off) }
}

/** Frames for log entries, with docker's `--timestamps` prefix when asked. */
export async function * muxEntries (entries: AsyncIterable<LogEntry>, timestamps = false): AsyncGenerator<Buffer> {
  for await (const e of entries) {
    const data = timestamps ? Buffer.concat([Buffer.from(`${e.time} `), e.line]) : e.line
    if (data.length > 0) yield muxFrame(e.stream, data)
  }
}

const upgraded = new WeakMap<IncomingMessage, { body: unknown }>()

/** Whether this request arrived through the 'upgrade' event, so its socket is ours to hijack. */
export function isUpgraded (request: FastifyRequest): boolean {
  return upgraded.has(request.raw)
}

/** The JSON body of an upgrade request, read by engineUpgradeHandler (fastify never sees it). */
export function upgradeBody (request: FastifyRequest): unknown {
  return upgraded.get(request.raw)?.body ?? request.body
}

async function readUpgradeBody (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<unknown> {
  if (req.headers['transfer-encoding'] !== undefined) {
    throw new JoeyError('ERR_INVALID_ARGUMENT', 'chunked bodies are not supported on upgraded requests')
  }
  const length = Number(req.headers['content-length'] ?? '0')
  if (!Number.isSafeInteger(length) || length < 0 || length > MAX_UPGRADE_BODY) {
    throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid content-length on an upgraded request: ${String(req.headers['content-length'])}`)
  }
  let buf = head
  while (buf.length < length) {
    const chunk = socket.read() as Buffer | null
    if (chunk !== null) {
      buf = Buffer.concat([buf, chunk])
      continue
    }
    if (socket.readableEnded || socket.destroyed) throw new JoeyError('ERR_TRUNCATED', 'connection closed before the request body was read')
    await Promise.race([once(socket, 'readable'), once(socket, 'end'), once(socket, 'close')])
  }
  if (buf.length > length) socket.unshift(buf.subarray(length))
  const text = buf.subarray(0, length).toString('utf8').trim()
  if (text === '') return undefined
  try {
    return JSON.parse(text, (key, value: unknown) => key === '__proto__' ? undefined : value)
  } catch {
    throw new JoeyError('ERR_INVALID_ARGUMENT', 'request body is not valid JSON')
  }
}

/**
 * The server 'upgrade' listener for the Engine API: the request is routed by fastify as
 * usual; a route that hijacks owns the socket, any other answer closes the connection.
 */
export function engineUpgradeHandler (routing: FastifyInstance['routing'], signal?: AbortSignal): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  // Upgraded sockets are invisible to server.closeAllConnections(): a shutdown ends them here.
  const open = new Set<Duplex>()
  signal?.addEventListener('abort', () => { for (const s of open) s.destroy() }, { once: true })
  return (req, socket, head) => {
    socket.on('error', () => {})
    if (signal?.aborted === true) {
      socket.destroy()
      return
    }
    open.add(socket)
    socket.on('close', () => { open.delete(socket) })
    const res = new ServerResponse(req)
    res.shouldKeepAlive = false
    res.assignSocket(socket as Socket)
    res.on('finish', () => { socket.end() })
    readUpgradeBody(req, socket, head).then((body) => {
      upgraded.set(req, { body })
      // fastify must not wait for a body the parser will never deliver.
      delete req.headers['content-length']
      delete req.headers['content-type']
      routing(req, res)
    }, (err: unknown) => {
      const message = err instanceof Error ? err.message : String(err)
      res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ message }))
    })
  }
}

/** Writes with backpressure; false once the socket is gone. */
async function writeTo (socket: Duplex, chunk: Buffer): Promise<boolean> {
  if (socket.destroyed || socket.writableEnded) return false
  if (socket.write(chunk)) return true
  await Promise.race([once(socket, 'drain'), once(socket, 'close')])
  return !socket.destroyed
}

/**
 * Sends multiplexed frames: on a hijacked upgrade as `101 UPGRADED` then raw frames, else as
 * an ordinary 200 body. `finish` runs after the last frame, before the connection closes.
 * `gone` is aborted when the client goes away.
 */
export async function sendMultiplexed (
  request: FastifyRequest,
  reply: FastifyReply,
  frames: (gone: AbortSignal) => AsyncIterable<Buffer>,
  finish?: () => Promise<void>
): Promise<void> {
  const gone = new AbortController()
  reply.hijack()
  if (isUpgraded(request)) {
    const socket = request.raw.socket
    socket.on('close', () => { gone.abort() })
    socket.write(`HTTP/1.1 101 UPGRADED\r\nContent-Type: ${MULTIPLEXED_STREAM}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n`)
    try {
      for await (const f of frames(gone.signal)) {
        if (!await writeTo(socket, f)) break
      }
      await finish?.()
    } finally {
      socket.end()
    }
    return
  }
  const res = reply.raw
  res.on('close', () => { if (!res.writableFinished) gone.abort() })
  res.writeHead(200, { 'content-type': MULTIPLEXED_STREAM })
  try {
    for await (const f of frames(gone.signal)) {
      if (res.destroyed) break
      if (!res.write(f)) await Promise.race([once(res, 'drain'), once(res, 'close')])
    }
    await finish?.()
  } finally {
    res.end()
  }
}
