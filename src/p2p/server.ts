/**
 * The serving side of /joey/piece/1.0.0: answers HELLO with META, pushes HAVE as the
 * source verifies pieces, serves REQUESTs in order with at most `maxInflight` outstanding
 * per stream, and meets anything malformed with an ERROR frame and the end of the stream.
 *
 * Memory per stream stays at about two pieces: the next piece is read while the previous
 * one drains, and nothing more is read until the transport takes it.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { JoeyError, errorMessage, isDigest, toJoeyError, type ErrorCode, type Logger, type RateLimiter } from '../common/index.js'
import { encodeMessage, encodePieceHead, FrameDecoder, type Message } from './codec.js'
import {
  CLOSE_GRACE_MS, HELLO_TIMEOUT_MS, MAX_CLIENT_FRAME_BYTES, MAX_INFLIGHT_PER_STREAM, MAX_SERVER_STREAMS,
  MAX_STREAMS_PER_CONNECTION, PACE_CHUNK_BYTES, PIECE_PROTOCOL, STREAM_IDLE_TIMEOUT_MS
} from './constants.js'
import { Bitfield, pieceCount, pieceLength } from './pieces.js'
import type { PieceServer, PieceServerComponents, PieceServerInit, Stream } from './types.js'

/** A task's copies in flight and sent, across the streams of one server (first-copies mode). */
interface Copies {
  /** Piece → the stream it is queued or being sent on (the first to ask). */
  pending: Map<number, string>
  /** Piece → when its last copy went out, and to which stream. */
  sent: Map<number, { at: number, to: string }>
  streams: number
}

interface Served {
  digest: string
  size: number
  pieceSize: number
  count: number
  /** Pieces this stream has told the client about (META bits + HAVEs). */
  announced: Bitfield
}

function positive (value: number | undefined, fallback: number, name: string): number {
  const v = value ?? fallback
  if (!Number.isFinite(v) || v <= 0) throw new JoeyError('ERR_INVALID_CONFIG', `piece server ${name} must be positive, got ${String(v)}`)
  return v
}

export function createPieceServer (init: PieceServerInit, components: PieceServerComponents): PieceServer {
  const { logger, host, source } = components
  const maxStreams = positive(init.maxStreams, MAX_SERVER_STREAMS, 'maxStreams')
  const maxInflight = Math.min(1024, positive(init.maxInflightPerStream, MAX_INFLIGHT_PER_STREAM, 'maxInflightPerStream'))
  const idleTimeoutMs = positive(init.idleTimeoutMs, STREAM_IDLE_TIMEOUT_MS, 'idleTimeoutMs')
  const helloTimeoutMs = positive(init.helloTimeoutMs, HELLO_TIMEOUT_MS, 'helloTimeoutMs')
  const active = new Set<{ abort: (reason: string) => void }>()
  const firstCopyHoldMs = init.firstCopyHoldMs
  const copies = new Map<string, Copies>()
  let running = false

  /**
   * Whether a request for `index` from stream `id` should wait for another peer's copy:
   * while some piece of the task has gone to nobody yet (held, or still on its way from
   * the origin: the upload is for it when it lands), every second copy waits; after that,
   * a copy sent less than firstCopyHoldMs ago does.
   */
  function deferred (t: Served, index: number, id: string): boolean {
    if (firstCopyHoldMs === undefined) return false
    const c = copies.get(t.digest)
    if (c === undefined) return false
    const owner = c.pending.get(index)
    const last = c.sent.get(index)
    if (owner === id || (owner === undefined && (last === undefined || last.to === id))) return false
    for (let i = 0; i < t.count; i++) {
      if (i !== index && !c.sent.has(i) && !c.pending.has(i)) return true
    }
    return owner !== undefined || performance.now() - (last?.at ?? -Infinity) < firstCopyHoldMs
  }
  /** Ends a stream after a last ERROR: close our side, reset it if the peer does not close theirs. */
  function endWithError (stream: Stream, code: ErrorCode, message: string, index?: number): void {
    try {
      if (stream.writeStatus === 'writable') stream.send(encodeMessage({ type: 'ERROR', code, message, ...(index !== undefined ? { index } : {}) }))
    } catch {}
    const reset = (): void => { stream.abort(new JoeyError(code, message)) }
    const grace = setTimeout(reset, CLOSE_GRACE_MS)
    grace.unref()
    stream.addEventListener('close', () => { clearTimeout(grace) }, { once: true })
    stream.close({ signal: AbortSignal.timeout(CLOSE_GRACE_MS) }).catch(reset)
  }

  function serve (stream: Stream, peer: string): void {
    const log: Logger = logger.child({ peer, stream: stream.id })
    const streamId = `${peer}/${stream.id}`
    const decoder = new FrameDecoder({ maxHeaderBytes: MAX_CLIENT_FRAME_BYTES, maxPayloadBytes: {} })
    const inflight = new Map<number, AbortController>()
    const queue: number[] = []
    const early: Array<[number, string]> = []
    let state: 'hello' | 'open' | 'ended' = 'hello'
    let task: Served | undefined
    let pieceDigests: Array<string | undefined> = []
    let unsubscribe: (() => void) | undefined
    let working = false
    const opened = Date.now()
    let lastActivity = opened
    const tick = setInterval(onTick, Math.max(10, Math.min(1000, Math.floor(Math.min(idleTimeoutMs, helloTimeoutMs) / 4))))
    tick.unref()
    const handle = { abort: (reason: string) => { end('ERR_UNAVAILABLE', reason) } }
    /** Aborted when the stream is over: ends limiter waits. */
    const closed = new AbortController()
    active.add(handle)

    function isEnded (): boolean { return state === 'ended' }

    function cleanup (): void {
      if (state === 'ended') return
      state = 'ended'
      closed.abort()
      clearInterval(tick)
      active.delete(handle)
      unsubscribe?.()
      unsubscribe = undefined
      for (const c of inflight.values()) c.abort()
      for (const index of inflight.keys()) release(index)
      inflight.clear()
      queue.length = 0
      const c = task !== undefined ? copies.get(task.digest) : undefined
      if (c !== undefined && --c.streams === 0) copies.delete((task as Served).digest)
    }

    /** This stream no longer holds `index` as pending (sent, cancelled or failed). */
    function release (index: number, sent = false): void {
      const c = task !== undefined ? copies.get(task.digest) : undefined
      if (c === undefined) return
      if (c.pending.get(index) === streamId) c.pending.delete(index)
      if (sent) c.sent.set(index, { at: performance.now(), to: streamId })
    }

    function end (code: ErrorCode, message: string): void {
      if (state === 'ended') return
      log.debug({ code, message }, 'ending piece stream')
      cleanup()
      endWithError(stream, code, message)
    }

    function send (msg: Message): boolean {
      if (state === 'ended') return false
      lastActivity = Date.now()
      try {
        return stream.send(encodeMessage(msg))
      } catch (err) {
        log.debug({ err: errorMessage(err) }, 'piece stream closed under a send')
        cleanup()
        stream.abort(err as Error)
        return false
      }
    }

    function onTick (): void {
      const now = Date.now()
      if (state === 'hello' && now - opened > helloTimeoutMs) end('ERR_PROTOCOL', `no HELLO within ${helloTimeoutMs} ms`)
      else if (state === 'open' && inflight.size === 0 && now - lastActivity > idleTimeoutMs) end('ERR_UNAVAILABLE', `stream idle for ${idleTimeoutMs} ms`)
    }

    function announce (index: number, digest: string): void {
      if (task === undefined || state !== 'open') {
        if (state === 'hello') early.push([index, digest])
        return
      }
      if (!Number.isSafeInteger(index) || index < 0 || index >= task.count || !isDigest(digest)) {
        log.warn({ index, digest, task: task.digest }, 'piece source announced an invalid piece; ignored')
        return
      }
      if (!task.announced.set(index)) return
      pieceDigests[index] = digest
      send({ type: 'HAVE', index, digest })
    }

    function onHello (digest: string): void {
      if (!isDigest(digest)) { end('ERR_INVALID_DIGEST', 'HELLO taskDigest is not a sha256 digest'); return }
      // Subscribe before the snapshot so no piece verified in between goes unannounced.
      try {
        unsubscribe = source.subscribe(digest, announce)
      } catch (err) {
        end('ERR_UNAVAILABLE', `cannot follow task: ${errorMessage(err)}`)
        return
      }
      const info = source.task(digest)
      if (info === undefined) { end('ERR_NOT_FOUND', `no task ${digest} here`); return }
      let count: number
      try {
        count = pieceCount(info.size, info.pieceSize)
        if (info.pieceDigests.length !== count) throw new Error(`${info.pieceDigests.length} piece digests for ${count} pieces`)
      } catch (err) {
        log.error({ err: errorMessage(err), digest }, 'piece source returned an inconsistent task')
        end('ERR_INTERNAL', 'task state is inconsistent')
        return
      }
      pieceDigests = info.pieceDigests.map(d => isDigest(d) ? d : undefined)
      const announced = new Bitfield(count)
      for (let i = 0; i < count; i++) if (pieceDigests[i] !== undefined && info.have.has(i)) announced.set(i)
      task = { digest, size: info.size, pieceSize: info.pieceSize, count, announced }
      if (firstCopyHoldMs !== undefined) {
        const c = copies.get(digest) ?? { pending: new Map(), sent: new Map(), streams: 0 }
        c.streams++
        copies.set(digest, c)
      }
      send({ type: 'META', size: info.size, pieceSize: info.pieceSize, pieceDigests, bitfield: announced, maxRequests: maxInflight })
      state = 'open'
      for (const [i, d] of early.splice(0)) announce(i, d)
    }

    function onRequest (index: number): void {
      const t = task as Served
      if (index >= t.count) { end('ERR_PROTOCOL', `piece index ${index} is out of range (0..${t.count - 1})`); return }
      if (inflight.has(index)) { end('ERR_PROTOCOL', `piece ${index} is already requested on this stream`); return }
      if (inflight.size >= maxInflight) { end('ERR_LIMIT_EXCEEDED', `more than ${maxInflight} requests outstanding`); return }
      if (!t.announced.has(index)) {
        // A piece may be verified with its HAVE still on the way; serve it if so.
        const now = source.task(t.digest)
        const d = now?.pieceDigests[index]
        if (isDigest(d) && now?.have.has(index) === true) {
          announce(index, d)
        } else {
          send({ type: 'ERROR', code: 'ERR_NOT_FOUND', message: `piece ${index} is not held here`, index })
          return
        }
      }
      if (deferred(t, index, streamId)) {
        send({ type: 'ERROR', code: 'ERR_PIECE_DEFERRED', message: `piece ${index} is on its way to another peer; ask for another`, index })
        return
      }
      inflight.set(index, new AbortController())
      const c = copies.get(t.digest)
      if (c !== undefined && !c.pending.has(index)) c.pending.set(index, streamId)
      queue.push(index)
      void pump()
    }

    function onMessage (msg: Message): void {
      if (msg.type === 'HELLO') {
        if (state !== 'hello') end('ERR_PROTOCOL', 'HELLO sent twice')
        else onHello(msg.taskDigest)
        return
      }
      if (msg.type === 'ERROR') {
        log.debug({ code: msg.code, message: msg.message }, 'client sent ERROR; closing')
        cleanup()
        stream.close().catch(() => stream.abort(new Error('close failed')))
        return
      }
      if (state !== 'open') { end('ERR_PROTOCOL', `${msg.type} before HELLO`); return }
      switch (msg.type) {
        case 'REQUEST': onRequest(msg.index); break
        case 'CANCEL': {
          // Freed at once so the client may reuse the slot; a piece already on its way is dropped by the client.
          const c = inflight.get(msg.index)
          c?.abort()
          if (c !== undefined) release(msg.index)
          inflight.delete(msg.index)
          break
        }
        default: end('ERR_PROTOCOL', `unexpected ${msg.type} from a client`)
      }
    }

    function next (): [number, AbortController] | undefined {
      while (queue.length > 0) {
        const index = queue.shift() as number
        const c = inflight.get(index)
        if (c !== undefined) return [index, c]
      }
      return undefined
    }

    /**
     * Waits for the transport to take what was sent. A peer that stops reading would
     * hold the stream forever, so the wait is bounded; false when the stream is over.
     */
    async function drained (): Promise<boolean> {
      if (!stream.writableNeedsDrain) return state === 'open'
      try {
        await stream.onDrain({ signal: AbortSignal.timeout(idleTimeoutMs) })
      } catch (err) {
        if (stream.status === 'open') end('ERR_UNAVAILABLE', `peer took no data for ${idleTimeoutMs} ms`)
        else log.debug({ err: errorMessage(err) }, 'piece stream ended while sending')
        cleanup()
        return false
      }
      return state === 'open'
    }

    function sendBytes (bytes: Uint8Array): boolean {
      if (state === 'ended') return false
      lastActivity = Date.now()
      try {
        stream.send(bytes)
        return true
      } catch (err) {
        log.debug({ err: errorMessage(err) }, 'piece stream closed under a send')
        cleanup()
        stream.abort(err as Error)
        return false
      }
    }

    /**
     * A PIECE under the upload limit: the head, then the payload in small chunks, each
     * once the limiter's slot for the piece has paid for it, so the receiver's own limit
     * paces the same bytes at the same time. The slot was reserved whole, in request
     * order across all streams: pieces keep going out one after another (a peer can relay
     * a piece only once it has all of it), and a slow reader delays only itself. Once the
     * head is out the frame is finished whatever happens to the request: a cut frame
     * would break the stream.
     */
    async function sendPaced (limiter: RateLimiter, slotEnd: number, index: number, data: Uint8Array): Promise<boolean> {
      const msPerByte = 1000 / limiter.bytesPerSecond
      const slotStart = slotEnd - data.byteLength * msPerByte
      if (!sendBytes(encodePieceHead(index, data.byteLength))) { limiter.refund(data.byteLength); return false }
      for (let off = 0; off < data.byteLength; off += PACE_CHUNK_BYTES) {
        const end = Math.min(data.byteLength, off + PACE_CHUNK_BYTES)
        const wait = slotStart + end * msPerByte - performance.now()
        try {
          if (wait > 1) await sleep(wait, undefined, { signal: closed.signal })
        } catch {
          limiter.refund(data.byteLength - off)
          return false
        }
        if (!await drained() || !sendBytes(data.subarray(off, end))) return false
      }
      return true
    }

    /** Waits until a slot reserved for `bytes` and ending at `slotEnd` begins; false if `signal` aborts first. */
    async function slotOpens (limiter: RateLimiter, slotEnd: number, bytes: number, signal: AbortSignal): Promise<boolean> {
      const wait = slotEnd - bytes * 1000 / limiter.bytesPerSecond - performance.now()
      try {
        if (wait > 1) await sleep(wait, undefined, { signal })
      } catch {
        return false
      }
      return !signal.aborted && state === 'open'
    }

    async function pump (): Promise<void> {
      if (working) return
      working = true
      try {
        for (let item = next(); item !== undefined && state === 'open'; item = next()) {
          const [index, ctl] = item
          const t = task as Served
          const bytes = pieceLength(t.size, t.pieceSize, index)
          const limiter = init.uploadLimiter
          // The piece's slot under the upload limit is reserved before it is read, in
          // request order; a piece that is not sent after all gives it back.
          const slotEnd = limiter !== undefined ? performance.now() + limiter.reserve(bytes) : 0
          let data: Uint8Array
          try {
            data = await source.readPiece(t.digest, index, { signal: ctl.signal })
            if (data.byteLength !== bytes) throw new JoeyError('ERR_INTERNAL', `piece source returned ${data.byteLength} bytes for a ${bytes}-byte piece`)
          } catch (err) {
            limiter?.refund(bytes)
            if (inflight.get(index) !== ctl) continue
            inflight.delete(index)
            release(index)
            const e = toJoeyError(err, 'ERR_UNAVAILABLE')
            log.warn({ err: e.message, code: e.code, index, task: t.digest }, 'cannot read piece for a peer')
            send({ type: 'ERROR', code: e.code === 'ERR_NOT_FOUND' ? 'ERR_NOT_FOUND' : 'ERR_UNAVAILABLE', message: `cannot read piece ${index}`, index })
            continue
          }
          // This piece was read while the transport still had the previous one. Under the
          // limit it then waits for its slot as a request a CANCEL can still withdraw.
          if (!await drained() || inflight.get(index) !== ctl || (limiter !== undefined && !await slotOpens(limiter, slotEnd, bytes, ctl.signal))) {
            limiter?.refund(bytes)
            if (state !== 'open') return
            continue
          }
          inflight.delete(index)
          if (limiter === undefined) send({ type: 'PIECE', index, payload: data })
          else if (!await sendPaced(limiter, slotEnd, index, data)) { release(index); return }
          release(index, true)
          init.onServed?.(bytes, peer)
        }
      } finally {
        working = false
      }
    }

    stream.addEventListener('message', (evt) => {
      if (state === 'ended') return
      lastActivity = Date.now()
      let msgs: Message[]
      try {
        msgs = decoder.push(evt.data)
      } catch (err) {
        const e = toJoeyError(err, 'ERR_PROTOCOL')
        log.debug({ code: e.code, err: e.message }, 'bad frame from peer')
        end(e.code, e.message)
        return
      }
      for (const m of msgs) {
        onMessage(m)
        // onMessage may have ended the stream; the rest of the chunk is moot.
        if (isEnded()) break
      }
    })
    stream.addEventListener('remoteCloseWrite', () => {
      // The client is done with the task: drop what it still had outstanding.
      if (state === 'ended') return
      cleanup()
      stream.close().catch(() => stream.abort(new Error('close failed')))
    })
    stream.addEventListener('close', () => { cleanup() })
  }

  return {
    get activeStreams () { return active.size },

    async start () {
      if (running) return
      await host.handle(PIECE_PROTOCOL, (stream, connection) => {
        const peer = connection.remotePeer.toString()
        if (!running || active.size >= maxStreams) {
          logger.debug({ peer, active: active.size }, 'piece server busy; refusing stream')
          endWithError(stream, 'ERR_UNAVAILABLE', running ? `server busy: ${active.size} streams` : 'server stopping')
          return
        }
        serve(stream, peer)
      }, { maxInboundStreams: MAX_STREAMS_PER_CONNECTION })
      running = true
    },

    async stop () {
      if (!running) return
      running = false
      await host.unhandle(PIECE_PROTOCOL).catch(() => {})
      for (const s of [...active]) s.abort('server stopping')
    }
  }
}
