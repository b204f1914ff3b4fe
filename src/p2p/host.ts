/**
 * The libp2p host: TCP, an optional private swarm (pnet), Noise, yamux and identify.
 * Nothing else (no DHT, no discovery): who to talk to comes from the supernode.
 */
import { link, mkdir, readFile, stat, unlink, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { randomBytes } from 'node:crypto'
import { createLibp2p, type Libp2p, type Libp2pOptions } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { preSharedKey } from '@libp2p/pnet'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { PrivateKey } from '@libp2p/interface'
import { JoeyError, errorMessage, isAbortError, type AbortOptions, type Logger } from '../common/index.js'
import {
  DIAL_TIMEOUT_MS, INBOUND_UPGRADE_TIMEOUT_MS, MAX_CONNECTIONS, MAX_PENDING_INBOUND_CONNECTIONS,
  PNET_TIMEOUT_MS, SOCKET_INACTIVITY_TIMEOUT_MS
} from './constants.js'
import { encodeSwarmKey, SWARM_KEY_BYTES } from './swarm-key.js'
import type { HandleOptions, P2PHost, P2PHostComponents, P2PHostInit, Stream, StreamHandler } from './types.js'

function parseAddr (addr: string, what: string): Multiaddr {
  try {
    return multiaddr(addr)
  } catch (err) {
    throw new JoeyError(what === 'listen' ? 'ERR_INVALID_CONFIG' : 'ERR_INVALID_ARGUMENT', `invalid ${what} multiaddr "${addr}": ${errorMessage(err)}`, { cause: err })
  }
}

/**
 * Loads the host key, or creates it. The new key is written to a temporary file and
 * hard-linked into place, so a crash never leaves a half-written key and two processes
 * starting at once end up with the same one.
 */
export async function loadOrCreateIdentity (path: string, logger?: Logger): Promise<PrivateKey> {
  try {
    const bytes = await readFile(path)
    const mode = (await stat(path)).mode
    if ((mode & 0o077) !== 0) logger?.warn({ path, mode: (mode & 0o777).toString(8) }, 'peer key file is readable by others; chmod 600 it')
    try {
      return privateKeyFromProtobuf(bytes)
    } catch (err) {
      throw new JoeyError('ERR_INVALID_CONFIG', `peer key file ${path} is not a libp2p private key: ${errorMessage(err)}`, { cause: err, detail: { path } })
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      if (err instanceof JoeyError) throw err
      throw new JoeyError('ERR_INVALID_CONFIG', `cannot read peer key file ${path}: ${errorMessage(err)}`, { cause: err, detail: { path } })
    }
  }
  const key = await generateKeyPair('Ed25519')
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  // 'wx' on a random name: a hard link shares the inode, so no other writer may ever touch this file.
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
  await writeFile(tmp, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx', flush: true })
  try {
    await link(tmp, path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new JoeyError('ERR_INVALID_CONFIG', `cannot write peer key file ${path}: ${errorMessage(err)}`, { cause: err })
    await unlink(tmp).catch(() => {})
    return await loadOrCreateIdentity(path, logger)
  } finally {
    await unlink(tmp).catch(() => {})
  }
  logger?.info({ path }, 'created a new peer key')
  return key
}

export function createP2PHost (init: P2PHostInit, components: P2PHostComponents): P2PHost {
  const { logger } = components
  if (!Array.isArray(init.listen)) throw new JoeyError('ERR_INVALID_CONFIG', 'p2p listen must be a list of multiaddrs')
  for (const a of init.listen) parseAddr(a, 'listen')
  if (init.swarmKey !== undefined && init.swarmKey.byteLength !== SWARM_KEY_BYTES) {
    throw new JoeyError('ERR_INVALID_CONFIG', `a swarm key has ${SWARM_KEY_BYTES} bytes, got ${init.swarmKey.byteLength}; parse key files with parseSwarmKey`)
  }
  const maxConnections = init.maxConnections ?? MAX_CONNECTIONS
  const dialTimeoutMs = init.dialTimeoutMs ?? DIAL_TIMEOUT_MS
  if (!Number.isSafeInteger(maxConnections) || maxConnections < 1) throw new JoeyError('ERR_INVALID_CONFIG', `maxConnections must be a positive integer, got ${String(maxConnections)}`)
  if (!Number.isFinite(dialTimeoutMs) || dialTimeoutMs <= 0) throw new JoeyError('ERR_INVALID_CONFIG', `dialTimeoutMs must be positive, got ${String(dialTimeoutMs)}`)

  const handlers = new Map<string, { handler: StreamHandler, options: HandleOptions }>()
  let node: Libp2p | undefined
  let starting: Promise<void> | undefined

  async function install (protocol: string, handler: StreamHandler, options: HandleOptions): Promise<void> {
    await node?.handle(protocol, async (stream, connection) => {
      try {
        await handler(stream, connection)
      } catch (err) {
        // A handler bug must cost one stream, not the process.
        logger.error({ err, protocol, peer: connection.remotePeer.toString() }, 'stream handler failed')
        stream.abort(err instanceof Error ? err : new Error(String(err)))
      }
    }, {
      ...(options.maxInboundStreams !== undefined ? { maxInboundStreams: options.maxInboundStreams } : {}),
      ...(options.maxOutboundStreams !== undefined ? { maxOutboundStreams: options.maxOutboundStreams } : {})
    })
  }

  async function doStart (): Promise<void> {
    const privateKey = init.identityPath !== undefined
      ? await loadOrCreateIdentity(init.identityPath, logger)
      : await generateKeyPair('Ed25519')
    const options: Libp2pOptions = {
      privateKey,
      addresses: { listen: init.listen },
      transports: [tcp({
        inboundSocketInactivityTimeout: SOCKET_INACTIVITY_TIMEOUT_MS,
        outboundSocketInactivityTimeout: SOCKET_INACTIVITY_TIMEOUT_MS,
        maxConnections
      })],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionManager: {
        maxConnections,
        dialTimeout: dialTimeoutMs,
        addressDialTimeout: dialTimeoutMs,
        inboundUpgradeTimeout: INBOUND_UPGRADE_TIMEOUT_MS,
        maxIncomingPendingConnections: MAX_PENDING_INBOUND_CONNECTIONS
      },
      // No ping protocol is mounted; the monitor would only log failed pings.
      connectionMonitor: { enabled: false },
      services: { identify: identify() }
    }
    if (init.swarmKey !== undefined) {
      options.connectionProtector = preSharedKey({ psk: new TextEncoder().encode(encodeSwarmKey(init.swarmKey)), timeout: Math.min(PNET_TIMEOUT_MS, dialTimeoutMs) })
    }
    let created: Libp2p
    try {
      created = await createLibp2p(options)
    } catch (err) {
      throw new JoeyError('ERR_INVALID_CONFIG', `cannot start the p2p host on ${init.listen.join(', ')}: ${errorMessage(err)}`, { cause: err })
    }
    node = created
    for (const [protocol, h] of handlers) await install(protocol, h.handler, h.options)
    logger.info({ peerId: created.peerId.toString(), addrs: created.getMultiaddrs().map(String), privateSwarm: init.swarmKey !== undefined }, 'p2p host started')
  }

  return {
    get peerId () { return node?.peerId.toString() ?? '' },

    multiaddrs () {
      return node?.getMultiaddrs().map(String) ?? []
    },

    async start () {
      if (node !== undefined) return
      starting ??= doStart().finally(() => { starting = undefined })
      await starting
    },

    async stop () {
      await starting?.catch(() => {})
      const n = node
      node = undefined
      await n?.stop()
    },

    async dialProtocol (addr: string, protocol: string, options: AbortOptions = {}): Promise<Stream> {
      const ma = parseAddr(addr, 'peer')
      if (node === undefined) throw new JoeyError('ERR_FAILED_PRECONDITION', 'p2p host is not started')
      try {
        return await node.dialProtocol(ma, protocol, options.signal !== undefined ? { signal: options.signal } : {})
      } catch (err) {
        // A deadline the caller set is the peer being too slow; any other abort is the caller's choice.
        const reason: unknown = options.signal?.reason
        if (options.signal?.aborted === true && (reason as { name?: string } | undefined)?.name !== 'TimeoutError') {
          throw new JoeyError('ERR_ABORTED', `dial to ${addr} aborted`, { cause: err, detail: { addr } })
        }
        const timeout = isAbortError(err) || /timeout|timed out/i.test(errorMessage(err))
        throw new JoeyError('ERR_UNAVAILABLE', `cannot open ${protocol} to ${addr}: ${timeout ? 'timed out' : errorMessage(err)}`, { cause: err, detail: { addr, protocol } })
      }
    },

    async handle (protocol, handler, options = {}) {
      handlers.set(protocol, { handler, options })
      if (node !== undefined) await install(protocol, handler, options)
    },

    async unhandle (protocol) {
      handlers.delete(protocol)
      await node?.unhandle(protocol)
    },

    peers () {
      return node?.getPeers().map(String) ?? []
    },

    async hangUp (peerId) {
      let id
      try {
        id = peerIdFromString(peerId)
      } catch (err) {
        throw new JoeyError('ERR_INVALID_ARGUMENT', `invalid peer id "${peerId}"`, { cause: err })
      }
      await node?.hangUp(id)
    }
  }
}
