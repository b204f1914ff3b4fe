import { describe, test, beforeEach, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sha256 } from '../../src/common/index.js'
import { GC_REF_LABEL_PREFIX, type ContentStore } from '../../src/content/index.js'
import { collect, patternBytes, rejectsWith, sleep } from './helpers.js'

export interface ContentStoreFactoryInit {
  root: string
  ingestExpiryMs?: number
  lockTimeoutMs?: number
}

/** Builds an unstarted store on root; called again with the same root to simulate a restart. */
export type ContentStoreFactory = (init: ContentStoreFactoryInit) => ContentStore

const BAD_DIGESTS = ['sha256:../../x', '../../etc/passwd', 'sha256:', 'sha256:ABC', `sha512:${'a'.repeat(128)}`, '', `sha256:${'a'.repeat(63)}/`]

/**
 * The behaviour every ContentStore must have, in the spirit of containerd's content test
 * suite: run it against each implementation with a factory.
 */
export function contentStoreSuite (name: string, factory: ContentStoreFactory): void {
  describe(`content store suite: ${name}`, () => {
    let dirs: string[] = []
    let stores: ContentStore[] = []
    let store: ContentStore
    let root: string

    async function newRoot (): Promise<string> {
      const dir = await mkdtemp(join(tmpdir(), 'joey-content-'))
      dirs.push(dir)
      return dir
    }

    async function open (init: ContentStoreFactoryInit): Promise<ContentStore> {
      const s = factory(init)
      await s.start()
      stores.push(s)
      return s
    }

    async function commitBytes (s: ContentStore, data: Buffer, ref = `ref-${sha256(data)}`, labels?: Record<string, string>): Promise<string> {
      const digest = sha256(data)
      const w = await s.writer(ref)
      await w.write(data)
      await w.commit(data.byteLength, digest, labels !== undefined ? { labels } : {})
      return digest
    }

    beforeEach(async () => {
      root = await newRoot()
      store = await open({ root })
    })

    afterEach(async () => {
      for (const s of stores) await s.stop().catch(() => {})
      for (const d of dirs) await rm(d, { recursive: true, force: true })
      stores = []
      dirs = []
    })

    test('write, commit and read back a blob', async () => {
      const data = patternBytes(300_000)
      const digest = sha256(data)
      const w = await store.writer('layer-x', { expectedSize: data.byteLength, expectedDigest: digest })
      assert.equal(w.ref, 'layer-x')
      assert.equal(w.offset, 0)
      await w.write(data.subarray(0, 100_000))
      await w.write(data.subarray(100_000))
      assert.equal(w.offset, data.byteLength)
      assert.equal(await store.has(digest), false, 'invisible before commit')
      await rejectsWith(store.info(digest), 'ERR_NOT_FOUND')
      const info = await w.commit(data.byteLength, digest, { labels: { a: '1' } })
      assert.equal(info.digest, digest)
      assert.equal(info.size, data.byteLength)
      assert.deepEqual(info.labels, { a: '1' })
      assert.equal(await store.has(digest), true)
      assert.deepEqual(await store.info(digest), info)
      assert.deepEqual(await collect(await store.read(digest)), data)
      assert.deepEqual(await store.readBytes(digest), data)
      assert.deepEqual((await store.list()).map(b => b.digest), [digest])
      assert.deepEqual(await store.ingests(), [])
      assert.equal(await store.ingestStatus('layer-x'), undefined)
      await rejectsWith(w.write(Buffer.from('x')), 'ERR_FAILED_PRECONDITION')
    })

    test('an empty blob commits and reads back', async () => {
      const digest = sha256(Buffer.alloc(0))
      const w = await store.writer('empty')
      const info = await w.commit(0, digest)
      assert.equal(info.size, 0)
      assert.equal((await collect(await store.read(digest))).byteLength, 0)
    })

    test('range reads are inclusive and reject unsatisfiable ranges', async () => {
      const data = patternBytes(1000)
      const digest = await commitBytes(store, data)
      assert.deepEqual(await collect(await store.read(digest, { start: 10, end: 19 })), data.subarray(10, 20))
      assert.deepEqual(await collect(await store.read(digest, { start: 990 })), data.subarray(990))
      assert.deepEqual(await collect(await store.read(digest, { end: 0 })), data.subarray(0, 1))
      assert.deepEqual(await collect(await store.read(digest, { start: 999, end: 999 })), data.subarray(999))
      assert.equal((await collect(await store.read(digest, { start: 1000 }))).byteLength, 0)
      for (const range of [{ start: 20, end: 10 }, { start: 0, end: 1000 }, { start: 1001 }, { start: -1 }, { start: 1.5 }, { start: 1000, end: 1000 }]) {
        await rejectsWith(store.read(digest, range), 'ERR_INVALID_ARGUMENT')
      }
      await rejectsWith(store.read(sha256('absent')), 'ERR_NOT_FOUND')
      const controller = new AbortController()
      controller.abort()
      await rejectsWith(store.read(digest, { signal: controller.signal }), 'ERR_ABORTED')
    })

    test('readBytes enforces its cap', async () => {
      const data = patternBytes(5000)
      const digest = await commitBytes(store, data)
      assert.deepEqual(await store.readBytes(digest, 5000), data)
      const detail = await rejectsWith(store.readBytes(digest, 4999), 'ERR_LIMIT_EXCEEDED')
      assert.equal(detail?.size, 5000)
      await rejectsWith(store.readBytes(sha256('absent')), 'ERR_NOT_FOUND')
    })

    test('a closed writer resumes where it stopped', async () => {
      const data = patternBytes(200_000)
      const digest = sha256(data)
      const w1 = await store.writer('resume-me', { expectedDigest: digest, expectedSize: data.byteLength })
      await w1.write(data.subarray(0, 70_000))
      await w1.close()
      const status = await store.ingestStatus('resume-me')
      assert.equal(status?.offset, 70_000)
      assert.equal(status?.expectedDigest, digest)
      assert.equal(status?.expectedSize, data.byteLength)
      assert.ok((status?.startedAt ?? 0) > 0 && (status?.updatedAt ?? 0) >= (status?.startedAt ?? 0) - 1000)
      const w2 = await store.writer('resume-me')
      assert.equal(w2.offset, 70_000)
      await w2.write(data.subarray(70_000))
      const info = await w2.commit(data.byteLength, digest)
      assert.equal(info.size, data.byteLength)
      assert.deepEqual(await store.readBytes(digest), data)
    })

    test('an ingest resumes in a new store instance on the same root (restart)', async () => {
      const data = patternBytes(150_000)
      const digest = sha256(data)
      const w1 = await store.writer('restart-me', { expectedSize: data.byteLength })
      await w1.write(data.subarray(0, 50_000))
      // stop() without close(): the writer is released and its bytes stay.
      await store.stop()
      const again = await open({ root })
      const [status] = await again.ingests()
      assert.equal(status?.ref, 'restart-me')
      assert.equal(status?.offset, 50_000)
      assert.equal(status?.expectedSize, data.byteLength)
      const w2 = await again.writer('restart-me')
      assert.equal(w2.offset, 50_000)
      await w2.write(data.subarray(50_000))
      await w2.commit(data.byteLength, digest)
      assert.deepEqual(await again.readBytes(digest), data)
      await again.stop()
      const third = await open({ root })
      assert.equal(await third.has(digest), true, 'committed blobs survive a restart')
    })

    test('truncate rewinds a writer and the digest still verifies', async () => {
      const data = patternBytes(10_000)
      const digest = sha256(data)
      const w = await store.writer('trunc')
      await w.write(patternBytes(6000, 'garbage'))
      await rejectsWith(w.truncate(7000), 'ERR_INVALID_ARGUMENT')
      await w.truncate(0)
      assert.equal(w.offset, 0)
      await w.write(data.subarray(0, 6000))
      await w.write(Buffer.from('wrong tail'))
      await w.truncate(6000)
      await w.write(data.subarray(6000))
      await w.commit(data.byteLength, digest)
      assert.deepEqual(await store.readBytes(digest), data)
    })

    test('a second writer on the same ref gets ERR_LOCKED, or waits for lockTimeoutMs', async () => {
      const w1 = await store.writer('busy')
      await w1.write(Buffer.from('hello'))
      const detail = await rejectsWith(store.writer('busy'), 'ERR_LOCKED')
      assert.equal(detail?.ref, 'busy')
      const t0 = Date.now()
      await rejectsWith(store.writer('busy', { lockTimeoutMs: 80 }), 'ERR_LOCKED')
      assert.ok(Date.now() - t0 >= 70, 'waited for the lock timeout')
      await rejectsWith(store.abortIngest('busy'), 'ERR_LOCKED')
      const waiting = store.writer('busy', { lockTimeoutMs: 5000 })
      await sleep(30)
      await w1.close()
      const w2 = await waiting
      assert.equal(w2.offset, 5)
      await w2.abort()
      assert.equal(await store.ingestStatus('busy'), undefined)
      // Other refs are independent.
      const a = await store.writer('ref-a')
      const b = await store.writer('ref-b')
      await a.close()
      await b.close()
    })

    test('a commit with the wrong size or digest is rejected and nothing becomes visible', async () => {
      const data = patternBytes(4096)
      const digest = sha256(data)
      const w1 = await store.writer('bad-size')
      await w1.write(data)
      const d1 = await rejectsWith(w1.commit(4095, digest), 'ERR_SIZE_MISMATCH')
      assert.deepEqual([d1?.expected, d1?.actual], [4095, 4096])
      assert.equal(await store.has(digest), false)
      assert.equal(await store.ingestStatus('bad-size'), undefined, 'ingest discarded')

      const w2 = await store.writer('bad-digest')
      await w2.write(data)
      const wrong = sha256('something else')
      const d2 = await rejectsWith(w2.commit(4096, wrong), 'ERR_DIGEST_MISMATCH')
      assert.deepEqual([d2?.expected, d2?.actual], [wrong, digest])
      assert.equal(await store.has(wrong), false)
      assert.equal(await store.has(digest), false)
      assert.equal(await store.ingestStatus('bad-digest'), undefined)

      // The writer's own expectation counts as well.
      const w3 = await store.writer('bad-expected', { expectedDigest: wrong })
      await w3.write(data)
      await rejectsWith(w3.commit(4096, digest), 'ERR_DIGEST_MISMATCH')
      assert.equal(await store.has(digest), false)

      // After a mismatch the ref is free again.
      const w4 = await store.writer('bad-digest')
      assert.equal(w4.offset, 0)
      await w4.close()
      assert.deepEqual(await store.list(), [])
      await rejectsWith(store.writeBytes(data, wrong), 'ERR_DIGEST_MISMATCH')
      assert.equal(await store.has(wrong), false)
      assert.deepEqual((await store.usage()).blobs, 0)
    })

    test('committing content that already exists succeeds with the existing blob', async () => {
      const data = patternBytes(2048)
      const digest = sha256(data)
      const first = await store.writeBytes(data, digest, { labels: { first: 'yes' } })
      await sleep(5)
      const w = await store.writer('dup')
      await w.write(data)
      const second = await w.commit(data.byteLength, digest, { labels: { second: 'yes' } })
      assert.equal(second.createdAt, first.createdAt)
      assert.deepEqual(second.labels, { first: 'yes', second: 'yes' })
      assert.equal(await store.ingestStatus('dup'), undefined)
      const third = await store.writeBytes(data, digest)
      assert.equal(third.createdAt, first.createdAt)
      assert.equal((await store.list()).length, 1)
      assert.deepEqual(await store.ingests(), [])
    })

    test('writing past expectedSize fails and keeps what was written', async () => {
      const data = patternBytes(1000)
      const w = await store.writer('bounded', { expectedSize: 1000 })
      await w.write(data.subarray(0, 600))
      const detail = await rejectsWith(w.write(data.subarray(0, 401)), 'ERR_SIZE_MISMATCH')
      assert.deepEqual([detail?.expected, detail?.actual], [1000, 1001])
      assert.equal(w.offset, 600)
      await w.write(data.subarray(600))
      await rejectsWith(w.write(Buffer.from('x')), 'ERR_SIZE_MISMATCH')
      await w.commit(1000, sha256(data))
      assert.deepEqual(await store.readBytes(sha256(data)), data)
    })

    test('invalid digests are rejected before touching the filesystem', async () => {
      const data = Buffer.from('hello')
      const w = await store.writer('digests')
      await w.write(data)
      for (const bad of BAD_DIGESTS) {
        await rejectsWith(store.info(bad), 'ERR_INVALID_DIGEST')
        await rejectsWith(store.has(bad), 'ERR_INVALID_DIGEST')
        await rejectsWith(store.read(bad), 'ERR_INVALID_DIGEST')
        await rejectsWith(store.readBytes(bad), 'ERR_INVALID_DIGEST')
        await rejectsWith(store.delete(bad), 'ERR_INVALID_DIGEST')
        await rejectsWith(store.updateLabels(bad, {}), 'ERR_INVALID_DIGEST')
        await rejectsWith(store.writeBytes(data, bad), 'ERR_INVALID_DIGEST')
        await rejectsWith(store.writer('other', { expectedDigest: bad }), 'ERR_INVALID_DIGEST')
        await rejectsWith(w.commit(data.byteLength, bad), 'ERR_INVALID_DIGEST')
      }
      // The writer survived every bad call.
      await w.commit(data.byteLength, sha256(data))
      assert.equal(await store.has(sha256(data)), true)
      await rejectsWith(store.writer(''), 'ERR_INVALID_ARGUMENT')
      await rejectsWith(store.writer('neg', { expectedSize: -1 }), 'ERR_INVALID_ARGUMENT')
    })

    test('refs are names, not paths', async () => {
      const data = Buffer.from('path-like ref')
      const w = await store.writer('../../../../tmp/escape')
      await w.write(data)
      await w.close()
      assert.equal((await store.ingestStatus('../../../../tmp/escape'))?.offset, data.byteLength)
      const w2 = await store.writer('../../../../tmp/escape')
      await w2.commit(data.byteLength, sha256(data))
      assert.equal(await store.has(sha256(data)), true)
    })

    test('labels are set on commit, merged by updateLabels and removed with ""', async () => {
      const digest = await commitBytes(store, Buffer.from('labelled'), 'lab', { keep: 'a', drop: 'b' })
      const updated = await store.updateLabels(digest, { drop: '', added: 'c', keep: 'A' })
      assert.deepEqual(updated.labels, { keep: 'A', added: 'c' })
      assert.deepEqual((await store.info(digest)).labels, { keep: 'A', added: 'c' })
      await rejectsWith(store.updateLabels(sha256('absent'), { a: 'b' }), 'ERR_NOT_FOUND')
      await rejectsWith(store.updateLabels(digest, { [`${GC_REF_LABEL_PREFIX}l.0`]: 'not-a-digest' }), 'ERR_INVALID_DIGEST')
      await rejectsWith(store.updateLabels(digest, { a: 5 as unknown as string }), 'ERR_INVALID_ARGUMENT')
      await rejectsWith(store.updateLabels(digest, null as unknown as Record<string, string>), 'ERR_INVALID_ARGUMENT')
      assert.deepEqual((await store.info(digest)).labels, { keep: 'A', added: 'c' }, 'rejected updates change nothing')
    })

    test('delete removes a blob; deleting it again is ERR_NOT_FOUND', async () => {
      const digest = await commitBytes(store, Buffer.from('to delete'))
      await store.delete(digest)
      assert.equal(await store.has(digest), false)
      await rejectsWith(store.info(digest), 'ERR_NOT_FOUND')
      await rejectsWith(store.delete(digest), 'ERR_NOT_FOUND')
      // It can be written again afterwards.
      await commitBytes(store, Buffer.from('to delete'), 'again')
      assert.equal(await store.has(digest), true)
    })

    test('abortIngest and writer.abort drop partial data', async () => {
      const w = await store.writer('drop-me')
      await w.write(Buffer.from('partial'))
      await w.close()
      await store.abortIngest('drop-me')
      assert.equal(await store.ingestStatus('drop-me'), undefined)
      await rejectsWith(store.abortIngest('drop-me'), 'ERR_NOT_FOUND')
      const w2 = await store.writer('drop-me')
      assert.equal(w2.offset, 0)
      await w2.write(Buffer.from('more'))
      await w2.abort()
      assert.deepEqual(await store.ingests(), [])
      await w2.abort()
      await w2.close()
    })

    test('image records: put, get, list, delete', async () => {
      const target = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256('m'), size: 1 }
      const a = await store.putImage({ name: 'docker.io/library/busybox:latest', target, labels: { x: 'y' } })
      assert.equal(a.name, 'docker.io/library/busybox:latest')
      assert.deepEqual(a.target, target)
      assert.deepEqual(await store.getImage(a.name), a)
      await sleep(5)
      const a2 = await store.putImage({ name: a.name, target: { ...target, digest: sha256('m2') }, labels: {} })
      assert.equal(a2.createdAt, a.createdAt, 'createdAt survives an update')
      assert.ok(a2.updatedAt >= a.updatedAt)
      await store.putImage({ name: 'localhost:5000/app@' + sha256('m'), target, labels: {}, createdAt: 42 })
      const names = (await store.listImages()).map(i => i.name).sort()
      assert.deepEqual(names, ['docker.io/library/busybox:latest', 'localhost:5000/app@' + sha256('m')])
      assert.equal((await store.getImage('localhost:5000/app@' + sha256('m'))).createdAt, 42)
      await store.deleteImage(a.name)
      await rejectsWith(store.getImage(a.name), 'ERR_IMAGE_NOT_FOUND')
      await rejectsWith(store.deleteImage(a.name), 'ERR_IMAGE_NOT_FOUND')
      await rejectsWith(store.putImage({ name: 'bad', target: { ...target, digest: 'sha256:../../x' }, labels: {} }), 'ERR_INVALID_DIGEST')
      await rejectsWith(store.putImage({ name: '', target, labels: {} }), 'ERR_INVALID_ARGUMENT')
      await rejectsWith(store.putImage({ name: 'neg', target: { ...target, size: -1 }, labels: {} }), 'ERR_INVALID_ARGUMENT')
    })

    test('gc removes unreferenced blobs and reports the bytes freed', async () => {
      const a = await commitBytes(store, patternBytes(1000, 'a'))
      const b = await commitBytes(store, patternBytes(3000, 'b'))
      const result = await store.gc()
      assert.deepEqual(result.removedBlobs.sort(), [a, b].sort())
      assert.equal(result.freedBytes, 4000)
      assert.deepEqual(result.removedIngests, [])
      assert.equal(await store.has(a), false)
      assert.deepEqual(await store.list(), [])
      await rejectsWith(store.info(b), 'ERR_NOT_FOUND')
    })

    test('gc follows gc.ref labels from image records', async () => {
      const layer0 = await commitBytes(store, patternBytes(5000, 'layer0'))
      const layer1 = await commitBytes(store, patternBytes(7000, 'layer1'))
      const config = await commitBytes(store, Buffer.from('{"config":true}'))
      const manifest = await commitBytes(store, Buffer.from('{"manifest":true}'), 'manifest', {
        [`${GC_REF_LABEL_PREFIX}config`]: config,
        [`${GC_REF_LABEL_PREFIX}l.0`]: layer0,
        [`${GC_REF_LABEL_PREFIX}l.1`]: layer1,
        'unrelated.label': sha256('not followed')
      })
      const index = await commitBytes(store, Buffer.from('{"index":true}'), 'index', { [`${GC_REF_LABEL_PREFIX}m.0`]: manifest })
      const orphan = await commitBytes(store, patternBytes(100, 'orphan'))
      // A label pointing at content we do not have must not break the walk.
      const shared = await commitBytes(store, Buffer.from('shared'), 'shared', { [`${GC_REF_LABEL_PREFIX}x`]: sha256('missing') })
      await store.updateLabels(layer1, { [`${GC_REF_LABEL_PREFIX}shared`]: shared })
      await store.putImage({ name: 'example.com/app:1', target: { mediaType: 'application/vnd.oci.image.index.v1+json', digest: index, size: 14 }, labels: {} })

      const first = await store.gc()
      assert.deepEqual(first.removedBlobs, [orphan])
      assert.equal(first.freedBytes, 100)
      for (const d of [index, manifest, config, layer0, layer1, shared]) assert.equal(await store.has(d), true, d)

      await store.deleteImage('example.com/app:1')
      const second = await store.gc()
      assert.deepEqual(second.removedBlobs.sort(), [index, manifest, config, layer0, layer1, shared].sort())
      assert.deepEqual(await store.list(), [])
    })

    test('leases protect blobs from gc until deleted or expired', async () => {
      const lease = await store.createLease({ id: 'pull-1', labels: { who: 'test' } })
      assert.equal(lease.id, 'pull-1')
      assert.deepEqual(lease.labels, { who: 'test' })
      const kept = patternBytes(800, 'kept')
      await store.addLeaseResource('pull-1', sha256(kept))
      await commitBytes(store, kept)
      const loose = await commitBytes(store, patternBytes(900, 'loose'))
      const r1 = await store.gc()
      assert.deepEqual(r1.removedBlobs, [loose])
      assert.equal(await store.has(sha256(kept)), true)
      await store.addLeaseResource('pull-1', sha256(kept))
      assert.deepEqual((await store.leases()).map(l => l.id), ['pull-1'])

      await rejectsWith(store.createLease({ id: 'pull-1' }), 'ERR_ALREADY_EXISTS')
      await rejectsWith(store.addLeaseResource('nope', sha256(kept)), 'ERR_NOT_FOUND')
      await rejectsWith(store.addLeaseResource('pull-1', 'sha256:../../x'), 'ERR_INVALID_DIGEST')
      await rejectsWith(store.deleteLease('nope'), 'ERR_NOT_FOUND')
      await rejectsWith(store.createLease({ id: '../bad' }), 'ERR_INVALID_ARGUMENT')
      await rejectsWith(store.createLease({ ttlMs: -5 }), 'ERR_INVALID_ARGUMENT')

      await store.deleteLease('pull-1')
      const r2 = await store.gc()
      assert.deepEqual(r2.removedBlobs, [sha256(kept)])

      // A lease with a TTL stops protecting once it expires, and gc drops it.
      // Long enough that a loaded machine cannot expire it before the first gc.
      const short = await store.createLease({ ttlMs: 1500 })
      assert.ok(short.expiresAt !== undefined && short.expiresAt > short.createdAt)
      const brief = patternBytes(500, 'brief')
      await store.addLeaseResource(short.id, sha256(brief))
      await commitBytes(store, brief)
      assert.deepEqual((await store.gc()).removedBlobs, [])
      await sleep(1600)
      assert.deepEqual(await store.leases(), [])
      await rejectsWith(store.addLeaseResource(short.id, sha256(brief)), 'ERR_NOT_FOUND')
      assert.deepEqual((await store.gc()).removedBlobs, [sha256(brief)])
      // The expired lease's id is free again.
      await store.createLease({ id: short.id })
    })

    test('gc removes expired ingests and keeps fresh, open and leased ones', async () => {
      const s = await open({ root: await newRoot(), ingestExpiryMs: 150 })
      const old = await s.writer('old')
      await old.write(patternBytes(1234, 'old'))
      await old.close()
      const leasedData = patternBytes(100, 'leased')
      const lease = await s.createLease()
      await s.addLeaseResource(lease.id, sha256(leasedData))
      const leased = await s.writer('leased', { expectedDigest: sha256(leasedData) })
      await leased.write(leasedData.subarray(0, 50))
      await leased.close()
      const open1 = await s.writer('open')
      await open1.write(Buffer.from('still writing'))
      await sleep(250)
      const fresh = await s.writer('fresh')
      await fresh.write(Buffer.from('new'))
      await fresh.close()
      const result = await s.gc()
      assert.deepEqual(result.removedIngests, ['old'])
      assert.equal(result.freedBytes, 1234)
      const refs = (await s.ingests()).map(i => i.ref).sort()
      assert.deepEqual(refs, ['fresh', 'leased', 'open'])
      await open1.close()
    })

    test('gc running alongside commits never sweeps leased or committed-under-lease blobs', async () => {
      const lease = await store.createLease()
      const blobs = Array.from({ length: 12 }, (_, i) => patternBytes(20_000 + i, `c${i}`))
      const work = blobs.map(async (data, i) => {
        await store.addLeaseResource(lease.id, sha256(data))
        const w = await store.writer(`c-${i}`)
        for (let pos = 0; pos < data.byteLength; pos += 4096) await w.write(data.subarray(pos, pos + 4096))
        await w.commit(data.byteLength, sha256(data))
      })
      const gcs = [store.gc(), sleep(2).then(async () => await store.gc()), sleep(5).then(async () => await store.gc())]
      await Promise.all([...work, ...gcs])
      await store.gc()
      for (const data of blobs) assert.deepEqual(await store.readBytes(sha256(data)), data)
    })

    test('usage counts blobs and ingests', async () => {
      assert.deepEqual(await store.usage(), { blobs: 0, blobBytes: 0, ingests: 0, ingestBytes: 0 })
      await commitBytes(store, patternBytes(1000, 'u1'))
      await commitBytes(store, patternBytes(2500, 'u2'))
      const w = await store.writer('partial')
      await w.write(patternBytes(777))
      const w2 = await store.writer('partial-2')
      await w2.close()
      assert.deepEqual(await store.usage(), { blobs: 2, blobBytes: 3500, ingests: 2, ingestBytes: 777 })
      await w.close()
    })

    test('operations on a stopped store fail with ERR_FAILED_PRECONDITION', async () => {
      const data = Buffer.from('x')
      const w = await store.writer('stopped')
      await store.stop()
      await rejectsWith(store.has(sha256(data)), 'ERR_FAILED_PRECONDITION')
      await rejectsWith(store.writer('other'), 'ERR_FAILED_PRECONDITION')
      await rejectsWith(w.write(data), 'ERR_FAILED_PRECONDITION')
      await rejectsWith(store.gc(), 'ERR_FAILED_PRECONDITION')
      await store.stop()
    })
  })
}
