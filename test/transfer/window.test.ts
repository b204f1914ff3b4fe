// Requests kept in flight per parent by the P2P transfer manager: one per parent in a
// swarm (a queued request pins a piece another parent could give), several when a peer
// parent is the only one. The supernode here is a stand-in that names fixed parents;
// the scheduler's choice is tested in test/supernode.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { silentLogger } from '../../src/common/index.js'
import { createContentStore } from '../../src/content/index.js'
import { parseReference, type RegistryClient } from '../../src/distribution/index.js'
import { PartialStore, createP2PTransfer, type ParentInfo } from '../../src/transfer/index.js'
import { fixedSupernode } from '../fixtures/fixed-supernode.js'

const logger = silentLogger()
const PIECE = 64 * 1024
const PIECES = 24
const blob = Buffer.alloc(PIECE * PIECES)
for (let i = 0; i < blob.length; i++) blob[i] = (i * 7 + (i >> 11)) & 0xff
const sha = (b: Uint8Array): string => 'sha256:' + createHash('sha256').update(b).digest('hex')
const digest = sha(blob)
const pieceDigests = Array.from({ length: PIECES }, (_, i) => sha(blob.subarray(i * PIECE, (i + 1) * PIECE)))
let dir: string

before(async () => { dir = await mkdtemp(join(tmpdir(), 'joey-window-')) })
after(async () => { await rm(dir, { recursive: true, force: true }) })

/** Pulls the blob from in-memory parents that answer after a delay; returns the most requests each had at once. */
async function pullFrom (name: string, parents: ParentInfo[]): Promise<Map<string, number>> {
  const most = new Map<string, number>()
  const contentStore = createContentStore({ root: join(dir, name, 'content') }, { logger })
  await contentStore.start()
  const transfer = createP2PTransfer({}, {
    logger,
    contentStore,
    registry: {} as unknown as RegistryClient,
    partials: new PartialStore(join(dir, name, 'partials'), logger),
    supernodes: fixedSupernode({ digest, size: blob.length, pieceSize: PIECE, pieceCount: PIECES, pieceDigests, parents, backToSource: false }),
    openSession: async (parent) => {
      let now = 0
      return {
        has: () => true,
        onHave: () => {},
        request: async (i) => {
          now++
          most.set(parent.peerId, Math.max(most.get(parent.peerId) ?? 0, now))
          await new Promise(resolve => setTimeout(resolve, 5))
          now--
          return blob.subarray(i * PIECE, (i + 1) * PIECE)
        },
        close: () => {}
      }
    }
  })
  await transfer.fetchBlob(parseReference('registry.invalid/window/blob:1'), { mediaType: 'application/octet-stream', digest, size: blob.length })
  assert.ok(await contentStore.has(digest))
  await transfer.stop()
  return most
}

test('a sole peer parent gets several requests at once', async () => {
  const most = await pullFrom('sole', [{ peerId: 'p1', addrs: ['/memory/p1'], seed: false }])
  assert.equal(most.get('p1'), 4)
})

test('with several parents each gets one request at a time, a sole seed too', async () => {
  const most = await pullFrom('several', [{ peerId: 'p1', addrs: ['/memory/p1'], seed: false }, { peerId: 'p2', addrs: ['/memory/p2'], seed: false }])
  assert.equal(most.get('p1'), 1)
  assert.equal(most.get('p2'), 1)
  const seedOnly = await pullFrom('seed', [{ peerId: 's', addrs: ['/memory/s'], seed: true }])
  assert.equal(seedOnly.get('s'), 1)
})
