import { randomUUID } from 'node:crypto'
import type { Readable } from 'node:stream'
import { isJoeyError, silentLogger } from '../common/index.js'
import { chainIDs } from './chain.js'
import { UNPACK_KEY_PREFIX } from './constants.js'
import type { Snapshotter, UnpackLayer, UnpackOptions, UnpackResult } from './types.js'

/**
 * Unpacks an image's layers (bottom first) into committed snapshots named by chain ID and
 * returns the top one. Layers whose snapshot exists are skipped without opening their blob.
 * Each layer is applied into a fresh active snapshot that is committed only after the diff
 * ID matched; on any failure that snapshot is removed, so nothing partial stays behind.
 */
export async function unpackImage (layers: UnpackLayer[], snapshotter: Snapshotter, options: UnpackOptions = {}): Promise<UnpackResult> {
  const logger = options.logger ?? silentLogger()
  const chain = chainIDs(layers.map(l => l.diffId))
  if (chain.length === 0) return { chainId: '', applied: 0 }

  // Snapshots are stacked, so the highest one present implies all below it.
  let start = chain.length
  while (start > 0 && (await snapshotter.get(chain[start - 1]!))?.kind !== 'committed') start--
  for (let i = 0; i < start; i++) options.onLayer?.({ index: i, chainId: chain[i]!, diffId: layers[i]!.diffId, applied: false })

  let applied = 0
  for (let i = start; i < layers.length; i++) {
    options.signal?.throwIfAborted()
    const layer = layers[i]!
    const chainId = chain[i]!
    const parent = i > 0 ? chain[i - 1] : undefined
    const key = `${UNPACK_KEY_PREFIX}${randomUUID()}`
    await snapshotter.prepare(key, parent, { labels: { 'joey.unpack/chain-id': chainId }, ...(options.signal !== undefined ? { signal: options.signal } : {}) })
    let stream: Readable | undefined
    try {
      stream = await layer.stream()
      const result = await snapshotter.apply(key, stream, layer.mediaType, {
        expectedDiffId: layer.diffId,
        ...(options.logger !== undefined ? { logger: options.logger } : {}),
        ...(options.limits !== undefined ? { limits: options.limits } : {}),
        ...(options.allowDevices !== undefined ? { allowDevices: options.allowDevices } : {}),
        ...(options.signal !== undefined ? { signal: options.signal } : {})
      })
      try {
        await snapshotter.commit(chainId, key)
        applied++
      } catch (err) {
        // Someone else unpacked the same layer stack meanwhile: theirs is as good as ours.
        if (!isJoeyError(err, 'ERR_ALREADY_EXISTS')) throw err
        await snapshotter.remove(key)
      }
      logger.debug({ chainId, diffId: layer.diffId, bytes: result.bytes, entries: result.entries }, 'layer unpacked')
      options.onLayer?.({ index: i, chainId, diffId: layer.diffId, applied: true, bytes: result.bytes })
    } catch (err) {
      stream?.destroy()
      await snapshotter.remove(key).catch(e => {
        if (!isJoeyError(e, 'ERR_NOT_FOUND')) logger.warn({ err: e, key }, 'could not remove the active snapshot of a failed unpack')
      })
      throw err
    }
  }
  return { chainId: chain[chain.length - 1]!, applied }
}
