// Shared set-up for image service tests: a real content store, registry client and direct
// transfer per test, and helpers to craft images the fixtures do not provide.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sha256, silentLogger } from '../../src/common/index.js'
import { createContentStore, type ContentStore } from '../../src/content/index.js'
import { createRegistryClient } from '../../src/distribution/index.js'
import type { RegistryClient } from '../../src/distribution/index.js'
import { createDirectTransfer, type DirectTransferInit } from '../../src/transfer/index.js'
import type { TransferManager } from '../../src/transfer/index.js'
import { createImageService, type ImageServiceInit } from '../../src/image/index.js'
import type { ImageService, PullEvent } from '../../src/image/index.js'
import { canonicalJson, OCI_CONFIG, OCI_MANIFEST, type FixtureBlob } from '../fixtures/images.js'
import type { TestRegistry } from '../fixtures/registry.js'

export const logger = silentLogger()

export interface Env {
  dir: string
  store: ContentStore
  client: RegistryClient
  transfer: TransferManager
  images: ImageService
}

/** Owns every Env it makes; call cleanup() in after(). */
export function envFactory (): { make: (opts?: { image?: ImageServiceInit, transfer?: DirectTransferInit }) => Promise<Env>, cleanup: () => Promise<void> } {
  const made: Env[] = []
  return {
    make: async (opts = {}) => {
      const dir = await mkdtemp(join(tmpdir(), 'joey-image-'))
      const store = createContentStore({ root: dir }, { logger })
      await store.start()
      const client = createRegistryClient({ retries: 0, retryBaseMs: 10, timeoutMs: 10_000 }, { logger })
      const transfer = createDirectTransfer({ retryBaseMs: 5, ...opts.transfer }, { logger, contentStore: store, registry: client })
      const images = createImageService(opts.image ?? {}, { logger, contentStore: store, registry: client, transfer })
      const env = { dir, store, client, transfer, images }
      made.push(env)
      return env
    },
    cleanup: async () => {
      for (const e of made) {
        await e.client.close().catch(() => {})
        await e.store.stop().catch(() => {})
        await rm(e.dir, { recursive: true, force: true })
      }
    }
  }
}

export function blob (mediaType: string, data: Buffer): FixtureBlob {
  return { mediaType, digest: sha256(data), size: data.byteLength, data }
}

export function descriptor (b: FixtureBlob): { mediaType: string, digest: string, size: number } {
  return { mediaType: b.mediaType, digest: b.digest, size: b.size }
}

/**
 * Pushes an image made of existing layers and a config built from `config`, returning the
 * manifest and config blobs. Layer blobs must already be in the repository or given.
 */
export async function pushCrafted (registry: TestRegistry, repo: string, tag: string, parts: {
  config: unknown
  configMediaType?: string
  layers: FixtureBlob[]
  layerMediaTypes?: string[]
}): Promise<{ manifest: FixtureBlob, config: FixtureBlob }> {
  const config = blob(parts.configMediaType ?? OCI_CONFIG, canonicalJson(parts.config))
  await registry.pushBlob(repo, config)
  for (const l of parts.layers) await registry.pushBlob(repo, l)
  const manifest = blob(OCI_MANIFEST, canonicalJson({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: descriptor(config),
    layers: parts.layers.map((l, i) => ({ ...descriptor(l), mediaType: parts.layerMediaTypes?.[i] ?? l.mediaType }))
  }))
  await registry.pushManifest(repo, tag, manifest.data!, OCI_MANIFEST)
  return { manifest, config }
}

const LAYER_ORDER = ['Pulling fs layer', 'Waiting', 'Downloading', 'Verifying Checksum', 'Download complete', 'Pull complete']

/** Checks a pull's events read like docker's: header, per-layer progress in order, digest, status. */
export function assertSaneEvents (events: PullEvent[], opts: { id: string, path: string, layers: string[], existing?: string[], upToDate?: boolean }): void {
  assert.deepEqual(events[0], { id: opts.id, status: `Pulling from ${opts.path}` })
  assert.match(events.at(-2)!.status, /^Digest: sha256:[a-f0-9]{64}$/)
  assert.match(events.at(-1)!.status, opts.upToDate === true ? /^Status: Image is up to date for / : /^Status: Downloaded newer image for /)
  const perLayer = new Map<string, PullEvent[]>()
  for (const e of events.slice(1, -2)) {
    assert.ok(e.id !== undefined && /^[a-f0-9]{12}$/.test(e.id), `layer event with a short id: ${JSON.stringify(e)}`)
    const list = perLayer.get(e.id) ?? []
    list.push(e)
    perLayer.set(e.id, list)
  }
  const short = (d: string): string => d.slice('sha256:'.length, 'sha256:'.length + 12)
  assert.deepEqual([...perLayer.keys()].sort(), [...new Set(opts.layers.map(short))].sort())
  for (const [id, list] of perLayer) {
    if (opts.existing?.map(short).includes(id) === true) {
      assert.deepEqual(list.map(e => e.status), ['Already exists'])
      continue
    }
    const statuses = list.map(e => e.status)
    assert.equal(statuses[0], 'Pulling fs layer')
    assert.equal(statuses.at(-1), 'Pull complete')
    assert.ok(statuses.includes('Download complete'))
    let rank = 0
    let current = -1
    for (const e of list) {
      const r = LAYER_ORDER.indexOf(e.status)
      assert.ok(r >= rank, `status ${e.status} of ${id} out of order: ${statuses.join(', ')}`)
      rank = r
      if (e.status === 'Downloading') {
        assert.ok(e.progressDetail !== undefined && e.progressDetail.current! >= current && e.progressDetail.current! <= e.progressDetail.total!)
        current = e.progressDetail.current!
      }
    }
  }
  // "Pull complete" follows layer order, as docker's sequential extraction does.
  const completes = events.filter(e => e.status === 'Pull complete').map(e => e.id)
  const order = [...new Set(opts.layers.map(short))].filter(id => completes.includes(id))
  assert.deepEqual(completes, order)
}
