/**
 * The fetching side of /joey/piece/1.0.0: one stream to one peer for one task. Requests
 * pipeline on the stream up to the window the server advertises; each piece is checked
 * against the digest from META or HAVE before anyone sees it.
 */
import { createHash } from 'node:crypto'
import { multiaddr } from '@multiformats/multiaddr'
import type { Uint8ArrayList } from 'uint8arraylist'
import { JoeyError, errorMessage, noteReceivedPieceDigest, parseDigest, silentLogger, toJoeyError, type AbortOptions, type Logger, type RateLimiter } from '../common/index.js'
import { encodeMessage, FrameDecoder, localCode, type Message } from './codec.js'
import { CLOSE_GRACE_MS, HELLO_TIMEOUT_MS, MAX_CONTROL_BYTES, MAX_PIECE_BYTES, PAUSED_READ_BUFFER_BYTES, PIECE_PROTOCOL } from './constants.js'
import { pieceCount, pieceLength } from './pieces.js'
import type { OpenSessionOptions, P2PHost, PieceMeta, PieceSession, Stream } from './types.js'

interface Pending {
  index: number
  resolve: (data: Uint8Array) => void
  reject: (err: Error) => void
  detach: () => void
}

/** The peer id in a multiaddr's /p2p/ part, or '' when it has none. */
export function peerIdOf (addr: string): string {
  try {
    const parts = multiaddr(addr).getComponents().filter(c => c.name === 'p2p')
    return parts[parts.length - 1]?.value ?? ''
  } catch {
    return ''
  }
}

// A function, so the compiler does not keep the narrowing from before an await.
function isAborted (signal: AbortSignal): boolean {
  return signal.aborted
}

/** A caller's deadline passing means the peer was too slow (ERR_UNAVAILABLE); any other abort is ERR_ABORTED. */
function abortError (signal: AbortSignal, what: string): JoeyError {
  const reason: unknown = signal.reason
  if ((reason as { name?: string } | undefined)?.name === 'TimeoutError') return new JoeyError('ERR_UNAVAILABLE', `${what} timed out`, { cause: reason })
  return new JoeyError('ERR_ABORTED', `${what} aborted`, { cause: reason })
}

function sha256Hex (data: Uint8Array): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex')
}

export async function openPieceSession (host: P2PHost, peerAddr: string, taskDigest: string, options: OpenSessionOptions = {}): Promise<PieceSession> {
  parseDigest(taskDigest)
  const maxFrameBytes = options.maxFrameBytes ?? MAX_PIECE_BYTES
  const helloTimeoutMs = options.helloTimeoutMs ?? HELLO_TIMEOUT_MS
  const logger = (options.logger ?? silentLogger()).child({ peer: peerIdOf(peerAddr) || peerAddr, task: taskDigest })
  if (options.signal?.aborted === true) throw abortError(options.signal, `opening a piece session to ${peerAddr}`)
  const stream = await host.dialProtocol(peerAddr, PIECE_PROTOCOL, options)
  const session = new Session(stream, peerIdOf(peerAddr) || peerAddr, taskDigest, maxFrameBytes, logger, options.downloadLimiter)
  const timeout = AbortSignal.timeout(helloTimeoutMs)
  const signal = options.signal !== undefined ? AbortSignal.any([options.signal, timeout]) : timeout
  try {
    await session.ready(signal)
  } catch (err) {
    session.terminate(toJoeyError(err))
    if (options.signal !== undefined && isAborted(options.signal)) throw abortError(options.signal, `waiting for META from ${session.peer}`)
    if (timeout.aborted) throw new JoeyError('ERR_UNAVAILABLE', `peer ${session.peer} sent no META within ${helloTimeoutMs} ms`, { detail: { peer: session.peer } })
    throw err
  }
  return session
}

class Session implements PieceSession {
  readonly peer: string
  readonly taskDigest: string
  closed = false
  private metaValue?: PieceMeta
  private readonly stream: Stream
  private readonly decoder: FrameDecoder
  private readonly maxFrameBytes: number
  private readonly log: Logger
  private readonly pending = new Map<number, Pending>()
  private readonly waiting: Pending[] = []
  /** Indexes cancelled after their REQUEST went out: a PIECE or ERROR for them may still come. */
  private readonly cancelled = new Set<number>()
  private readonly haveListeners = new Set<(index: number, digest: string) => void>()
  private readonly closeListeners = new Set<(err?: Error) => void>()
  private endError?: JoeyError
  private readonly metaWaiter = Promise.withResolvers<void>()
  private readonly limiter?: RateLimiter
  /** Chunks received but not yet admitted by the download limiter, and the admission chain. */
  private unpaced = 0
  private paced: Promise<void> = Promise.resolve()

  constructor (stream: Stream, peer: string, taskDigest: string, maxFrameBytes: number, log: Logger, limiter?: RateLimiter) {
    this.stream = stream
    this.peer = peer
    this.taskDigest = taskDigest
    this.maxFrameBytes = maxFrameBytes
    this.log = log
    if (limiter !== undefined) {
      this.limiter = limiter
      // While paced the stream is paused and the peer may still fill its yamux window.
      stream.maxReadBufferLength = Math.max(stream.maxReadBufferLength, PAUSED_READ_BUFFER_BYTES)
    }
    // PIECE frames are refused until META says how large a piece is.
    this.decoder = new FrameDecoder({ maxHeaderBytes: MAX_CONTROL_BYTES, maxPayloadBytes: { META: MAX_CONTROL_BYTES } })
    this.metaWaiter.promise.catch(() => {})
    stream.addEventListener('message', (evt) => { this.onData(evt.data) })
    stream.addEventListener('remoteCloseWrite', () => {
      this.terminate(new JoeyError('ERR_UNAVAILABLE', `peer ${this.peer} closed the piece stream`, { detail: { peer: this.peer } }))
    })
    stream.addEventListener('close', (evt) => {
      const reason = evt.error !== undefined ? `was reset: ${errorMessage(evt.error)}` : 'closed'
      this.terminate(new JoeyError('ERR_UNAVAILABLE', `piece stream to ${this.peer} ${reason}`, { detail: { peer: this.peer } }))
    })
    this.send({ type: 'HELLO', taskDigest })
  }

  get meta (): PieceMeta {
    if (this.metaValue === undefined) throw new JoeyError('ERR_FAILED_PRECONDITION', 'piece session has no META yet')
    return this.metaValue
  }

  async ready (signal: AbortSignal): Promise<void> {
    const onAbort = (): void => { this.metaWaiter.reject(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      await this.metaWaiter.promise
    } finally {
      signal.removeEventListener('abort', onAbort)
    }
  }

  has (index: number): boolean {
    return this.metaValue?.bitfield.has(index) ?? false
  }

  onHave (cb: (index: number, digest: string) => void): () => void {
    this.haveListeners.add(cb)
    return () => { this.haveListeners.delete(cb) }
  }

  onClose (cb: (err?: Error) => void): () => void {
    this.closeListeners.add(cb)
    return () => { this.closeListeners.delete(cb) }
  }

  async request (index: number, options: AbortOptions = {}): Promise<Uint8Array> {
    if (this.closed) throw this.endError ?? new JoeyError('ERR_UNAVAILABLE', `piece session to ${this.peer} is closed`, { detail: { peer: this.peer } })
    const meta = this.meta
    if (!Number.isSafeInteger(index) || index < 0 || index >= meta.pieceCount) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `piece index ${String(index)} is out of range (0..${meta.pieceCount - 1})`, { detail: { index } })
    }
    if (meta.pieceDigests[index] === undefined) {
      throw new JoeyError('ERR_FAILED_PRECONDITION', `digest of piece ${index} is not known yet: wait for the peer to announce it`, { detail: { peer: this.peer, index } })
    }
    if (this.pending.has(index) || this.waiting.some(w => w.index === index)) {
      throw new JoeyError('ERR_INVALID_ARGUMENT', `piece ${index} is already requested on this session`, { detail: { index } })
    }
    const signal = options.signal
    if (signal?.aborted === true) throw new JoeyError('ERR_ABORTED', `request for piece ${index} aborted`, { cause: signal.reason })
    return await new Promise<Uint8Array>((resolve, reject) => {
      const onAbort = (): void => {
        if (this.pending.get(index) === entry) {
          this.pending.delete(index)
          this.cancelled.add(index)
          this.send({ type: 'CANCEL', index })
          this.pump()
        } else {
          const i = this.waiting.indexOf(entry)
          if (i >= 0) this.waiting.splice(i, 1)
        }
        reject(new JoeyError('ERR_ABORTED', `request for piece ${index} aborted`, { cause: signal?.reason }))
      }
      const entry: Pending = {
        index,
        resolve,
        reject,
        detach: () => { signal?.removeEventListener('abort', onAbort) }
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      if (this.pending.size < meta.maxRequests) this.dispatch(entry)
      else this.waiting.push(entry)
    })
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.terminate(new JoeyError('ERR_ABORTED', `piece session to ${this.peer} closed`, { detail: { peer: this.peer } }), true)
  }

  /** Ends the session once: fails everything outstanding, closes the stream (reset after a grace period). */
  terminate (err: JoeyError, byUser = false): void {
    if (this.closed) return
    this.closed = true
    this.endError = err
    this.metaWaiter.reject(err)
    for (const p of [...this.pending.values(), ...this.waiting]) {
      p.detach()
      p.reject(err)
    }
    this.pending.clear()
    this.waiting.length = 0
    const stream = this.stream
    if (stream.status === 'open') {
      const reset = (): void => { stream.abort(err) }
      const grace = setTimeout(reset, CLOSE_GRACE_MS)
      grace.unref()
      stream.addEventListener('close', () => { clearTimeout(grace) }, { once: true })
      stream.close({ signal: AbortSignal.timeout(CLOSE_GRACE_MS) }).catch(reset)
    }
    for (const cb of this.closeListeners) {
      try { cb(byUser ? undefined : err) } catch (e) { this.log.error({ err: e }, 'session close listener threw') }
    }
    this.closeListeners.clear()
    this.haveListeners.clear()
  }

  /** A violation by the peer: tell it why (best effort), then end. */
  private fail (err: JoeyError): void {
    if (this.closed) return
    this.log.debug({ code: err.code, err: err.message }, 'peer broke the piece protocol')
    this.send({ type: 'ERROR', code: err.code, message: err.message })
    this.terminate(err)
  }

  private send (msg: Message): void {
    try {
      if (this.stream.writeStatus === 'writable') this.stream.send(encodeMessage(msg))
    } catch (err) {
      this.terminate(new JoeyError('ERR_UNAVAILABLE', `piece stream to ${this.peer} failed: ${errorMessage(err)}`, { cause: err, detail: { peer: this.peer } }))
    }
  }

  private dispatch (entry: Pending): void {
    this.pending.set(entry.index, entry)
    this.cancelled.delete(entry.index)
    this.send({ type: 'REQUEST', index: entry.index })
  }

  private pump (): void {
    const max = this.metaValue?.maxRequests ?? 0
    while (!this.closed && this.waiting.length > 0 && this.pending.size < max) this.dispatch(this.waiting.shift() as Pending)
  }

  private onData (data: Uint8Array | Uint8ArrayList): void {
    if (this.closed) return
    let msgs: Message[]
    try {
      msgs = this.decoder.push(data)
    } catch (err) {
      this.fail(this.tag(toJoeyError(err, 'ERR_PROTOCOL')))
      return
    }
    if (this.limiter === undefined) { this.deliver(msgs); return }
    this.pace(data.byteLength, msgs)
  }

  /**
   * Download limit, chunk by chunk as the bytes arrive, so a piece passes this limit while
   * it passes the sender's upload limit rather than after it. While the limiter holds
   * bytes back the stream is paused: yamux stops granting window and the sender waits.
   * Admissions are chained, so messages keep their order.
   */
  private pace (bytes: number, msgs: Message[]): void {
    const limiter = this.limiter as RateLimiter
    if (this.unpaced++ === 0) this.setPaused(true)
    const admitted = limiter.take(bytes)
    this.paced = Promise.all([this.paced, admitted]).then(() => {
      if (--this.unpaced === 0) this.setPaused(false)
      this.deliver(msgs)
    }, (err: unknown) => { this.terminate(toJoeyError(err, 'ERR_INTERNAL')) })
  }

  private setPaused (paused: boolean): void {
    if (this.closed || this.stream.status !== 'open') return
    try {
      if (paused) this.stream.pause()
      else this.stream.resume()
    } catch {}
  }

  private deliver (msgs: Message[]): void {
    for (const msg of msgs) {
      if (this.closed) return
      this.onMessage(msg)
    }
  }

  private tag (err: JoeyError, extra: Record<string, unknown> = {}): JoeyError {
    return new JoeyError(err.code, `peer ${this.peer}: ${err.message}`, { cause: err, detail: { ...err.detail, ...extra, peer: this.peer } })
  }

  private protocol (message: string, extra: Record<string, unknown> = {}): void {
    this.fail(new JoeyError('ERR_PROTOCOL', `peer ${this.peer}: ${message}`, { detail: { ...extra, peer: this.peer } }))
  }

  private onMessage (msg: Message): void {
    if (msg.type === 'ERROR') { this.onError(msg); return }
    if (msg.type === 'META') { this.onMeta(msg); return }
    const meta = this.metaValue
    if (meta === undefined) { this.protocol(`${msg.type} before META`); return }
    switch (msg.type) {
      case 'HAVE': {
        if (msg.index >= meta.pieceCount) { this.protocol(`HAVE for piece ${msg.index} is out of range`, { index: msg.index }); return }
        const known = meta.pieceDigests[msg.index]
        if (known !== undefined && known !== msg.digest) { this.protocol(`HAVE changes the digest of piece ${msg.index}`, { index: msg.index }); return }
        meta.pieceDigests[msg.index] = msg.digest
        if (!meta.bitfield.set(msg.index)) return
        for (const cb of this.haveListeners) {
          try { cb(msg.index, msg.digest) } catch (err) { this.log.error({ err }, 'HAVE listener threw') }
        }
        return
      }
      case 'PIECE': this.onPiece(meta, msg.index, msg.payload, msg.digest); return
      default: this.protocol(`unexpected ${msg.type} from a server`)
    }
  }

  private onMeta (msg: Extract<Message, { type: 'META' }>): void {
    if (this.metaValue !== undefined) { this.protocol('META sent twice'); return }
    if (msg.pieceSize > this.maxFrameBytes) {
      this.fail(new JoeyError('ERR_LIMIT_EXCEEDED', `peer ${this.peer}: piece size ${msg.pieceSize} is over the limit of ${this.maxFrameBytes}`, { detail: { peer: this.peer, pieceSize: msg.pieceSize } }))
      return
    }
    this.metaValue = {
      size: msg.size,
      pieceSize: msg.pieceSize,
      pieceCount: pieceCount(msg.size, msg.pieceSize),
      pieceDigests: msg.pieceDigests,
      bitfield: msg.bitfield,
      maxRequests: msg.maxRequests
    }
    this.decoder.limits.maxPayloadBytes.PIECE = msg.pieceSize
    this.metaWaiter.resolve()
  }

  private onError (msg: Extract<Message, { type: 'ERROR' }>): void {
    const code = localCode(msg.code)
    const detail = { peer: this.peer, remoteCode: msg.code, ...(msg.index !== undefined ? { index: msg.index } : {}) }
    const err = new JoeyError(code, `peer ${this.peer}: ${msg.message || msg.code}`, { detail })
    if (msg.index === undefined) { this.terminate(err); return }
    const p = this.pending.get(msg.index)
    if (p === undefined) {
      if (!this.cancelled.delete(msg.index)) this.protocol(`ERROR for piece ${msg.index}, which was not requested`, { index: msg.index })
      return
    }
    this.pending.delete(msg.index)
    p.detach()
    p.reject(err)
    this.pump()
  }

  private onPiece (meta: PieceMeta, index: number, payload: Uint8Array, digest: string | undefined): void {
    const p = this.pending.get(index)
    if (p === undefined) {
      if (!this.cancelled.delete(index)) this.protocol(`PIECE ${index} was not requested`, { index })
      return
    }
    this.pending.delete(index)
    p.detach()
    this.pump()
    const expected = meta.pieceDigests[index] as string
    const expectedSize = index < meta.pieceCount ? pieceLength(meta.size, meta.pieceSize, index) : -1
    const actual = payload.byteLength === expectedSize ? digest ?? sha256Hex(payload) : undefined
    if (actual !== expected) {
      p.reject(new JoeyError('ERR_DIGEST_MISMATCH', `peer ${this.peer} sent piece ${index} of ${this.taskDigest} that does not match its digest`, {
        detail: { peer: this.peer, index, expected, ...(actual !== undefined ? { actual } : { expectedSize, actualSize: payload.byteLength }) }
      }))
      return
    }
    noteReceivedPieceDigest(payload, actual)
    p.resolve(payload)
  }
}
