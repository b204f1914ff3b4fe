// One behavioural suite for every snapshotter (containerd's snapshotter test suite idea):
// unpack real fixture images, look at the result through a real mount, and throw hostile
// layers at it. Each test owns its directories and mounts and removes them in finally.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { lstat, mkdir, readdir, readFile, readlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { isJoeyError, silentLogger } from '../../src/common/index.js'
import { sha256 } from '../../src/common/digest.js'
import {
  chainIDs, createSnapshotter, mountAll, unmount, unpackImage, type Snapshotter, type SnapshotterKind, type UnpackLayer,
  type UnpackLimits
} from '../../src/unpack/index.js'
import { busyboxImage, multiLayerExpectations, multiLayerImage, type FixtureImage } from '../fixtures/images.js'
import { FIXTURE_EPOCH, hasZstd } from '../fixtures/tar.js'
import { climb, fixtureLayers, gzipBomb, makeSentinel, memLayer, rawTar, tempDir, type RawEntry } from './helpers.js'

const isRoot = process.getuid?.() === 0

export interface SuiteOptions {
  /** Reason to skip the whole suite (e.g. no overlay mounts here). */
  skip?: string | false
}

/** Mounts a view of `parent`, runs `fn` on the mounted tree, and cleans everything up. */
async function withView<T> (s: Snapshotter, parent: string, work: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const key = `view-${Math.random().toString(36).slice(2)}`
  const target = join(work, key)
  await mkdir(target)
  const mounts = await s.view(key, parent)
  let mounted = false
  try {
    if (isRoot) {
      await mountAll(mounts, target)
      mounted = true
      return await fn(target)
    }
    assert.equal(mounts[0]!.type, 'bind', 'without root only bind views can be read in place')
    return await fn(mounts[0]!.source)
  } finally {
    if (mounted) await unmount(target)
    await s.remove(key)
  }
}

async function expectCode (p: Promise<unknown>, code: string): Promise<Error> {
  try {
    await p
  } catch (err) {
    assert.ok(isJoeyError(err), `expected a JoeyError, got ${String(err)}`)
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`)
    return err
  }
  assert.fail(`expected ${code}, but it succeeded`)
}

export function snapshotterSuite (kind: SnapshotterKind, options: SuiteOptions = {}): void {
  describe(`${kind} snapshotter`, { skip: options.skip ?? false }, () => {
    let work: string
    let cleanup: () => Promise<void>
    let multi: FixtureImage
    let busybox: FixtureImage
    let zstd: boolean

    before(async () => {
      ({ dir: work, cleanup } = await tempDir(`snap-${kind}`))
      multi = await multiLayerImage()
      busybox = await busyboxImage()
      zstd = await hasZstd()
    })
    after(async () => { await cleanup() })

    let n = 0
    const fresh = (): Snapshotter => createSnapshotter(kind, { root: join(work, `root-${++n}`) }, { logger: silentLogger() })

    test('unpacks the multi-layer image: whiteout, opaque dir, hard link, symlink, long paths, modes, times', async () => {
      const s = fresh()
      const layers = fixtureLayers(multi)
      const { chainId, applied } = await unpackImage(layers, s)
      assert.equal(applied, layers.length)
      assert.equal(chainId, chainIDs(layers.map(l => l.diffId)).at(-1))
      const info = await s.stat(chainId)
      assert.equal(info.kind, 'committed')

      await withView(s, chainId, work, async dir => {
        const files = { ...multiLayerExpectations.files, ...(zstd ? multiLayerExpectations.zstdFiles : {}) }
        for (const [p, content] of Object.entries(files)) {
          assert.equal(await readFile(join(dir, p), 'utf8'), content, p)
          const st = await lstat(join(dir, p))
          assert.equal(st.mode & 0o7777, 0o644, `${p} mode`)
          assert.equal(st.mtimeMs, FIXTURE_EPOCH.getTime(), `${p} mtime`)
        }
        for (const [p, target] of Object.entries(multiLayerExpectations.hardlinks)) {
          const [a, b] = await Promise.all([lstat(join(dir, p)), lstat(join(dir, target))])
          assert.equal(a.ino, b.ino, `${p} shares the inode of ${target}`)
          assert.ok(a.nlink >= 2)
        }
        for (const [p, target] of Object.entries(multiLayerExpectations.symlinks)) {
          assert.ok((await lstat(join(dir, p))).isSymbolicLink(), `${p} is a symlink`)
          assert.equal(await readlink(join(dir, p)), target)
          assert.equal((await lstat(join(dir, p))).mtimeMs, FIXTURE_EPOCH.getTime(), `${p} mtime (lutimes)`)
        }
        for (const p of multiLayerExpectations.absent) {
          await assert.rejects(lstat(join(dir, p)), { code: 'ENOENT' }, `${p} must be gone`)
        }
        assert.deepEqual((await readdir(join(dir, 'opaque'))).sort(), ['c'])
        assert.deepEqual((await readdir(join(dir, 'data'))).sort(), ['hard', 'keep', 'link'])
        // Modes with special bits, and directory times set after their contents.
        assert.equal((await lstat(join(dir, 'tmp'))).mode & 0o7777, 0o1777)
        assert.equal((await lstat(join(dir, 'root'))).mode & 0o7777, 0o700)
        assert.equal((await lstat(join(dir, 'bin/busybox'))).mode & 0o7777, 0o755)
        for (const d of ['data', 'opaque', 'bin', 'long', 'extra']) {
          assert.equal((await lstat(join(dir, d))).mtimeMs, FIXTURE_EPOCH.getTime(), `${d}/ mtime`)
        }
        if (isRoot) assert.equal((await lstat(join(dir, 'etc/passwd'))).uid, 0)
      })
    })

    test('layers already unpacked are skipped without opening their blobs; a shared base is reused', async () => {
      const s = fresh()
      const base = fixtureLayers(busybox)
      assert.equal((await unpackImage(base, s)).applied, 1)
      const layers = fixtureLayers(multi)
      const first = await unpackImage(layers, s)
      assert.equal(first.applied, layers.length - 1, 'the busybox layer is shared')
      assert.equal(layers[0]!.opened(), 0)
      const again = fixtureLayers(multi)
      const second = await unpackImage(again, s)
      assert.equal(second.applied, 0)
      assert.equal(second.chainId, first.chainId)
      assert.deepEqual(again.map(l => l.opened()), again.map(() => 0))
      const committed = (await s.list()).filter(i => i.kind === 'committed')
      assert.equal(committed.length, layers.length)
    })

    test('two concurrent unpacks of one image end with one set of snapshots', async () => {
      const s = fresh()
      const [a, b] = await Promise.all([unpackImage(fixtureLayers(multi), s), unpackImage(fixtureLayers(multi), s)])
      assert.equal(a.chainId, b.chainId)
      const all = await s.list()
      assert.ok(all.every(i => i.kind === 'committed'))
      assert.equal(all.length, multi.layers.length)
      assert.equal((await readdir(join(s.root, 'snapshots'))).length, multi.layers.length)
    })

    test('an active snapshot on an image is writable and leaves the committed one untouched', async () => {
      const s = fresh()
      const { chainId } = await unpackImage(fixtureLayers(multi), s)
      const prepared = await s.prepare('container-1', chainId)
      assert.equal(prepared.parent, chainId)
      if (kind === 'copy') {
        // The copy keeps hard links as hard links.
        const [a, b] = await Promise.all([lstat(join(prepared.dir, 'data/hard')), lstat(join(prepared.dir, 'data/keep'))])
        assert.equal(a.ino, b.ino)
      }
      if (isRoot) {
        const target = join(work, `rw-${n}`)
        await mkdir(target)
        await mountAll(prepared.mounts, target)
        try {
          assert.equal(await readFile(join(target, 'data/keep'), 'utf8'), 'keep\n')
          await writeFile(join(target, 'data/new'), 'new\n')
          await writeFile(join(target, 'data/keep'), 'changed\n')
        } finally {
          await unmount(target)
        }
        await withView(s, chainId, work, async dir => {
          assert.equal(await readFile(join(dir, 'data/keep'), 'utf8'), 'keep\n')
          await assert.rejects(lstat(join(dir, 'data/new')), { code: 'ENOENT' })
        })
      }
      await expectCode(s.remove(chainId), 'ERR_FAILED_PRECONDITION')
      await s.remove('container-1')
    })

    test('remove refuses parents with children; prune keeps what is kept and its ancestors', async () => {
      const s = fresh()
      const multiLayers = fixtureLayers(multi)
      const { chainId: top } = await unpackImage(multiLayers, s)
      const chain = chainIDs(multiLayers.map(l => l.diffId))
      const other = memLayer(await rawTar([{ name: 'other.txt', content: 'other\n' }]))
      const { chainId: otherTop } = await unpackImage([fixtureLayers(busybox)[0]!, other], s)
      await expectCode(s.remove(chain[0]!), 'ERR_FAILED_PRECONDITION')
      await expectCode(s.remove('nope'), 'ERR_NOT_FOUND')
      const usage = await s.usage(top)
      assert.ok(usage.size > 0 && usage.inodes > 0)

      const removed = await s.prune(new Set([top]))
      assert.deepEqual(removed, [otherTop])
      const left = (await s.list()).map(i => i.name).sort()
      assert.deepEqual(left, [...chain].sort())
      assert.deepEqual(await s.prune(new Set()), [...chain].sort())
      assert.deepEqual(await s.list(), [])
      assert.deepEqual(await readdir(join(s.root, 'snapshots')), [])
    })

    test('leftovers of an interrupted unpack are removed when the snapshotter is opened again', async () => {
      const root = join(work, `crash-${++n}`)
      const s1 = createSnapshotter(kind, { root }, { logger: silentLogger() })
      await s1.prepare('unpack-crashed')
      await s1.prepare('keep-me')
      const s2 = createSnapshotter(kind, { root }, { logger: silentLogger() })
      assert.deepEqual((await s2.list()).map(i => i.name), ['keep-me'])
      assert.equal((await readdir(join(root, 'snapshots'))).length, 1)
    })

    describe('hostile layers are refused, write nothing outside and leave nothing behind', () => {
      let s: Snapshotter
      let sentinel: Awaited<ReturnType<typeof makeSentinel>>
      let sentinelBefore: string
      let hostPasswd: string

      before(async () => {
        s = fresh()
        await unpackImage(fixtureLayers(busybox), s)
        sentinel = await makeSentinel(join(work, 'outside'))
        sentinelBefore = await sentinel.snapshot()
        hostPasswd = await readFile('/etc/passwd', 'utf8')
      })

      const inside = (p: string): string => sentinel.dir.slice(1) + '/' + p

      async function refused (tars: Buffer[] | Array<UnpackLayer>, code: string, limits?: UnpackLimits): Promise<void> {
        const before = await s.list()
        const dirsBefore = (await readdir(join(s.root, 'snapshots'))).sort()
        const layers = [fixtureLayers(busybox)[0]!, ...tars.map(t => Buffer.isBuffer(t) ? memLayer(t) : t)]
        await expectCode(unpackImage(layers, s, limits !== undefined ? { limits } : {}), code)
        assert.equal(await sentinel.snapshot(), sentinelBefore, 'the sentinel outside the root is unchanged')
        assert.equal(await readFile('/etc/passwd', 'utf8'), hostPasswd)
        const after = await s.list()
        assert.ok(after.every(i => i.kind === 'committed'), 'no active snapshot is left')
        // Layers below the refused one may have been committed; nothing else may remain.
        const added = after.filter(i => !before.some(b => b.name === i.name))
        const dirsAfter = (await readdir(join(s.root, 'snapshots'))).sort()
        assert.equal(dirsAfter.length, dirsBefore.length + added.length, 'no leftover snapshot directory')
        for (const a of added) await s.remove(a.name)
        assert.deepEqual((await readdir(join(s.root, 'snapshots'))).sort(), dirsBefore)
        assert.deepEqual(await readdir(s.root).then(x => x.filter(f => f.endsWith('.tmp'))), [])
      }

      const cases: Array<[string, (inside: (p: string) => string) => RawEntry[][], string]> = [
        ['a ../ path', inside => [[{ name: climb() + inside('pwned'), content: 'x' }]], 'ERR_UNSAFE_PATH'],
        ['an /abs/../../ path', inside => [[{ name: '/abs/../../' + inside('pwned'), content: 'x' }]], 'ERR_UNSAFE_PATH'],
        ['a symlink to / and a file through it (same layer)',
          inside => [[{ name: 'evil', type: 'symlink', linkname: '/' }, { name: 'evil/' + inside('pwned'), content: 'x' }]], 'ERR_UNSAFE_PATH'],
        ['a symlink to / and a file through it (next layer)',
          inside => [[{ name: 'evil', type: 'symlink', linkname: '/' }], [{ name: 'evil/' + inside('pwned'), content: 'x' }]], 'ERR_UNSAFE_PATH'],
        ['a symlink to ../../.. and a file through it',
          inside => [[{ name: 'up', type: 'symlink', linkname: climb() }, { name: 'up/' + inside('pwned'), content: 'x' }]], 'ERR_UNSAFE_PATH'],
        ['a nested relative symlink that climbs out',
          inside => [[{ name: 'a/', type: 'directory' }, { name: 'a/b', type: 'symlink', linkname: '../..' }, { name: 'a/b/' + inside('pwned'), content: 'x' }]],
          'ERR_UNSAFE_PATH'],
        ['a directory through an escaping symlink (next layer)',
          inside => [[{ name: 'evil', type: 'symlink', linkname: '/' }], [{ name: 'evil/' + inside('newdir/'), type: 'directory' }]], 'ERR_UNSAFE_PATH'],
        ['a whiteout through an escaping symlink',
          inside => [[{ name: 'evil', type: 'symlink', linkname: '/' }], [{ name: 'evil/' + inside('.wh.keep'), content: '' }]], 'ERR_UNSAFE_PATH'],
        ['an opaque marker through an escaping symlink',
          inside => [[{ name: 'evil', type: 'symlink', linkname: '/' }], [{ name: 'evil/' + inside('.wh..wh..opq'), content: '' }]], 'ERR_UNSAFE_PATH'],
        ['a hard link to ../outside', inside => [[{ name: 'hl', type: 'link', linkname: climb() + inside('keep') }]], 'ERR_UNSAFE_PATH'],
        ['a hard link through an escaping symlink',
          inside => [[{ name: 'evil', type: 'symlink', linkname: '/' }, { name: 'hl', type: 'link', linkname: 'evil/' + inside('keep') }]], 'ERR_UNSAFE_PATH'],
        ['a hard link to /etc/shadow (not in the image)', _inside => [[{ name: 'hl', type: 'link', linkname: '/etc/shadow' }]], 'ERR_INVALID_ARGUMENT'],
        ['a symlink loop', _inside => [[{ name: 'l1', type: 'symlink', linkname: 'l2' }, { name: 'l2', type: 'symlink', linkname: 'l1' }, { name: 'l1/x', content: 'x' }]],
          'ERR_UNSAFE_PATH'],
        ['a character device', _inside => [[{ name: 'dev/', type: 'directory' }, { name: 'dev/mem2', type: 'character-device', devmajor: 1, devminor: 1 }]],
          'ERR_UNSAFE_PATH'],
        ['a block device', _inside => [[{ name: 'sda9', type: 'block-device', devmajor: 8, devminor: 0 }]], 'ERR_UNSAFE_PATH'],
        ['a fifo', _inside => [[{ name: 'fifo', type: 'fifo' }]], 'ERR_UNSAFE_PATH'],
        ['a whiteout of ..', _inside => [[{ name: 'bin/.wh...', content: '' }]], 'ERR_UNSAFE_PATH'],
        ['a file named like the root', _inside => [[{ name: '.', content: 'x' }]], 'ERR_UNSAFE_PATH']
      ]
      for (const [name, layerEntries, code] of cases) {
        test(name, async () => {
          await refused(await Promise.all(layerEntries(inside).map(rawTar)), code)
        })
      }

      test('a hard link to /etc/passwd links the image\'s own file, never the host\'s', async () => {
        const layer = memLayer(await rawTar([{ name: 'hl', type: 'link', linkname: '/etc/passwd' }]))
        const { chainId } = await unpackImage([fixtureLayers(busybox)[0]!, layer], s)
        const host = await lstat('/etc/passwd')
        await withView(s, chainId, work, async dir => {
          const [hl, own] = await Promise.all([lstat(join(dir, 'hl')), lstat(join(dir, 'etc/passwd'))])
          assert.notEqual(hl.ino, host.ino)
          assert.equal(await readFile(join(dir, 'hl'), 'utf8'), await readFile(join(dir, 'etc/passwd'), 'utf8'))
          if (kind === 'copy') assert.equal(hl.ino, own.ino)
        })
        assert.equal((await lstat('/etc/passwd')).nlink, host.nlink)
        await s.remove(chainId)
      })

      test('a gzip bomb (2 GiB of zeros in one entry) stops at maxBytes before anything is written', async () => {
        const bomb = gzipBomb(1, 2 * 1024 * 1024 * 1024)
        const layer: UnpackLayer = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: sha256('bomb'), stream: bomb.stream }
        await refused([layer], 'ERR_LIMIT_EXCEEDED', { maxBytes: 64 * 1024 * 1024 })
        assert.ok(bomb.compressedBytes() < 4 * 1024 * 1024, `read only ${bomb.compressedBytes()} compressed bytes`)
      })

      test('a gzip bomb of many 1 MiB files stops once the stream passes maxBytes', async () => {
        const bomb = gzipBomb(2048, 1024 * 1024)
        const layer: UnpackLayer = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: sha256('bomb'), stream: bomb.stream }
        await refused([layer], 'ERR_LIMIT_EXCEEDED', { maxBytes: 32 * 1024 * 1024 })
        assert.ok(bomb.compressedBytes() < 200 * 1024, `read only ${bomb.compressedBytes()} compressed bytes`)
      })

      test('a layer with more entries than maxEntries', async () => {
        const entries: RawEntry[] = [{ name: 'many/', type: 'directory' }]
        for (let i = 0; i < 3000; i++) entries.push({ name: `many/${i}`, content: '' })
        await refused([await rawTar(entries)], 'ERR_LIMIT_EXCEEDED', { maxEntries: 1000 })
      })

      test('a corrupt gzip stream', async () => {
        const good = memLayer(await rawTar([{ name: 'f', content: 'hello\n'.repeat(1000) }]))
        const bad = Buffer.from(good.blob)
        bad.fill(0x55, 20, 60)
        await refused([{ ...good, stream: async () => (await import('node:stream')).Readable.from([bad]) }], 'ERR_INVALID_ARGUMENT')
      })

      test('a truncated gzip stream', async () => {
        const good = memLayer(await rawTar([{ name: 'f', content: 'hello\n'.repeat(1000) }]))
        const cut = good.blob.subarray(0, good.blob.byteLength - 30)
        await refused([{ ...good, stream: async () => (await import('node:stream')).Readable.from([cut]) }], 'ERR_TRUNCATED')
      })

      test('a diff ID mismatch', async () => {
        const layer = memLayer(await rawTar([{ name: 'f', content: 'x' }]))
        await refused([{ ...layer, diffId: sha256('something else') }], 'ERR_DIGEST_MISMATCH')
      })
    })
  })
}
