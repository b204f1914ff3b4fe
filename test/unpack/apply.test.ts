import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { lstat, mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { gzipSync } from 'node:zlib'
import { isJoeyError } from '../../src/common/index.js'
import { sha256 } from '../../src/common/digest.js'
import { applyLayer, chainID, chainIDs, type ApplyOptions } from '../../src/unpack/index.js'
import { SMALL_FILE_BYTES } from '../../src/unpack/constants.js'
import { OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD, hasZstd, zstdCompress } from '../fixtures/tar.js'
import { EPOCH, makeSentinel, rawTar, tempDir, type RawEntry } from './helpers.js'

const isRoot = process.getuid?.() === 0

function hasTool (cmd: string): boolean {
  try {
    execFileSync(cmd, ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}
const hasAttr = hasTool('getfattr')
const zstdOk = await hasZstd()

function getXattr (path: string, name: string): string | undefined {
  try {
    return execFileSync('getfattr', ['-h', '--only-values', '-n', name, path]).toString()
  } catch {
    return undefined
  }
}

async function expectCode (p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isJoeyError(err), `expected a JoeyError, got ${String(err)}`)
    assert.equal(err.code, code, err.message)
    return true
  })
}

describe('applyLayer', () => {
  let work: string
  let cleanup: () => Promise<void>
  let n = 0
  before(async () => { ({ dir: work, cleanup } = await tempDir('apply')) })
  after(async () => { await cleanup() })

  const target = async (): Promise<string> => {
    const dir = join(work, `t${++n}`)
    await mkdir(dir)
    return dir
  }
  const apply = async (blob: Buffer, mediaType: string, dir: string, options: ApplyOptions = {}): ReturnType<typeof applyLayer> =>
    await applyLayer(Readable.from([blob]), mediaType, dir, options)

  test('reports the diff ID, entry count and uncompressed bytes; plain, gzip and zstd', async () => {
    const tar = await rawTar([{ name: 'a/', type: 'directory' }, { name: 'a/f', content: 'hello\n' }])
    const blobs: Array<[string, Buffer]> = [[OCI_LAYER_TAR, tar], [OCI_LAYER_GZIP, gzipSync(tar)]]
    if (await hasZstd()) blobs.push([OCI_LAYER_ZSTD, await zstdCompress(tar)])
    for (const [mediaType, blob] of blobs) {
      const dir = await target()
      const r = await apply(blob, mediaType, dir, { expectedDiffId: sha256(tar) })
      assert.deepEqual(r, { diffId: sha256(tar), entries: 2, bytes: tar.byteLength }, mediaType)
      assert.equal(await readFile(join(dir, 'a/f'), 'utf8'), 'hello\n')
    }
  })

  test('trusts the magic bytes over a lying media type', async () => {
    const tar = await rawTar([{ name: 'f', content: 'x' }])
    await apply(gzipSync(tar), OCI_LAYER_TAR, await target(), { expectedDiffId: sha256(tar) })
    await apply(tar, OCI_LAYER_GZIP, await target(), { expectedDiffId: sha256(tar) })
    if (await hasZstd()) await apply(await zstdCompress(tar), 'application/vnd.docker.image.rootfs.diff.tar.gzip', await target(), { expectedDiffId: sha256(tar) })
  })

  test('refuses a media type that is not a layer, and destroys the stream', async () => {
    const stream = Readable.from([Buffer.from('{}')])
    await expectCode(applyLayer(stream, 'application/vnd.oci.image.config.v1+json', await target()), 'ERR_UNSUPPORTED_MEDIA_TYPE')
    assert.ok(stream.destroyed)
  })

  test('corrupt and truncated zstd streams', { skip: !zstdOk && 'zstd CLI missing' }, async () => {
    const tar = await rawTar([{ name: 'f', content: 'y'.repeat(100_000) }])
    const z = await zstdCompress(tar)
    const bad = Buffer.from(z)
    bad.fill(0xaa, 8, 40)
    await expectCode(apply(bad, OCI_LAYER_ZSTD, await target()), 'ERR_INVALID_ARGUMENT')
    await expectCode(apply(z.subarray(0, z.byteLength - 10), OCI_LAYER_ZSTD, await target()), 'ERR_TRUNCATED')
  })

  test('the byte cap also stops zeros streamed after the end of the archive', async () => {
    const tar = await rawTar([{ name: 'f', content: 'x' }])
    const zeros = gzipSync(Buffer.alloc(1024 * 1024), { level: 9 })
    let members = 0
    async function * bomb (): AsyncGenerator<Buffer> {
      yield gzipSync(tar)
      for (; members < 2048; members++) yield zeros
    }
    const dir = await target()
    await expectCode(applyLayer(Readable.from(bomb()), OCI_LAYER_GZIP, dir, { limits: { maxBytes: 16 * 1024 * 1024 } }), 'ERR_LIMIT_EXCEEDED')
    assert.ok(members < 64, `stopped after ${members} MiB of zeros`)
  })

  test('a target that is not a directory', async () => {
    const file = join(work, 'plain-file')
    await writeFile(file, '')
    await expectCode(apply(await rawTar([]), OCI_LAYER_TAR, file), 'ERR_NOT_FOUND')
  })

  test('PAX long names, PAX times, owners, special modes', async () => {
    const longName = `deep/${'n'.repeat(200)}`
    const tar = await rawTar([
      { name: 'deep/', type: 'directory' },
      { name: longName, content: 'long\n' },
      { name: 'suid', content: '#!/bin/sh\n', mode: 0o4755, uid: 1234, gid: 5678 },
      { name: 'sgid-dir/', type: 'directory', mode: 0o2775, uid: 1234, gid: 5678 },
      { name: 'sticky/', type: 'directory', mode: 0o1777 },
      { name: 'precise', content: 'p', pax: { mtime: '1700000000.25' } },
      { name: 'link', type: 'symlink', linkname: 'suid', uid: 1234, gid: 5678 }
    ])
    const dir = await target()
    await apply(tar, OCI_LAYER_TAR, dir)
    assert.equal(await readFile(join(dir, longName), 'utf8'), 'long\n')
    assert.equal((await lstat(join(dir, 'sticky'))).mode & 0o7777, 0o1777)
    assert.equal((await lstat(join(dir, 'precise'))).mtimeMs, 1700000000250)
    assert.equal((await lstat(join(dir, 'deep'))).mtimeMs, EPOCH.getTime())
    if (isRoot) {
      const suid = await lstat(join(dir, 'suid'))
      assert.equal(suid.mode & 0o7777, 0o4755, 'setuid survives the chown')
      assert.deepEqual([suid.uid, suid.gid], [1234, 5678])
      const sgid = await lstat(join(dir, 'sgid-dir'))
      assert.equal(sgid.mode & 0o7777, 0o2775)
      assert.deepEqual([sgid.uid, sgid.gid], [1234, 5678])
      const link = await lstat(join(dir, 'link'))
      assert.deepEqual([link.uid, link.gid], [1234, 5678])
    }
  })

  test('xattrs from PAX records; overlayfs\' own attributes are never taken from a layer', { skip: !hasAttr && 'getfattr missing (Debian package attr)' }, async () => {
    const tar = await rawTar([
      { name: 'x', content: 'x', pax: { 'SCHILY.xattr.user.joey': 'hello', 'LIBARCHIVE.xattr.user.b64': Buffer.from('bin\x01ary').toString('base64') } },
      { name: 'd/', type: 'directory', pax: { 'SCHILY.xattr.trusted.overlay.opaque': 'y', 'SCHILY.xattr.trusted.overlay.redirect': '/etc' } }
    ])
    const dir = await target()
    await apply(tar, OCI_LAYER_TAR, dir)
    assert.equal(getXattr(join(dir, 'x'), 'user.joey'), 'hello')
    assert.equal(getXattr(join(dir, 'x'), 'user.b64'), 'bin\x01ary')
    assert.equal(getXattr(join(dir, 'd'), 'trusted.overlay.opaque'), undefined)
    assert.equal(getXattr(join(dir, 'd'), 'trusted.overlay.redirect'), undefined)
  })

  test('device nodes and fifos only with allowDevices', { skip: !isRoot && 'mknod needs root' }, async () => {
    const tar = await rawTar([
      { name: 'null2', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
      { name: 'pipe', type: 'fifo', mode: 0o600 }
    ])
    await expectCode(apply(tar, OCI_LAYER_TAR, await target()), 'ERR_UNSAFE_PATH')
    const dir = await target()
    await apply(tar, OCI_LAYER_TAR, dir, { allowDevices: true })
    const dev = await lstat(join(dir, 'null2'))
    assert.ok(dev.isCharacterDevice())
    assert.equal(dev.rdev, (1 << 8) | 3)
    assert.equal(dev.mode & 0o7777, 0o666)
    assert.ok((await lstat(join(dir, 'pipe'))).isFIFO())
  })

  test('name limits: path length, component length, file size', async () => {
    await expectCode(apply(await rawTar([{ name: `a/${'b'.repeat(300)}`, content: '' }]), OCI_LAYER_TAR, await target()), 'ERR_LIMIT_EXCEEDED')
    await expectCode(apply(await rawTar([{ name: 'c/'.repeat(60) + 'f', content: '' }]), OCI_LAYER_TAR, await target(), { limits: { maxPathLength: 100 } }),
      'ERR_LIMIT_EXCEEDED')
    await expectCode(apply(await rawTar([{ name: 'big', content: Buffer.alloc(4096) }]), OCI_LAYER_TAR, await target(), { limits: { maxFileSize: 1024 } }),
      'ERR_LIMIT_EXCEEDED')
    await expectCode(apply(await rawTar([{ name: 'l', type: 'symlink', linkname: 'x'.repeat(200) }]), OCI_LAYER_TAR, await target(), { limits: { maxPathLength: 100 } }),
      'ERR_LIMIT_EXCEEDED')
  })

  test('an abort stops a stalled stream with ERR_ABORTED', async () => {
    const tar = await rawTar([{ name: 'f', content: 'x'.repeat(10_000) }])
    const stream = new Readable({ read () {} })
    stream.push(tar.subarray(0, 600))
    const ac = new AbortController()
    setTimeout(() => ac.abort(), 50)
    await expectCode(applyLayer(stream, OCI_LAYER_TAR, await target(), { signal: ac.signal }), 'ERR_ABORTED')
    assert.ok(stream.destroyed)
  })

  test('never writes through a symlink already at the entry\'s name', async () => {
    const sentinel = await makeSentinel(join(work, 'sentinel'))
    const before = await sentinel.snapshot()
    const dir = await target()
    await symlink(join(sentinel.dir, 'keep'), join(dir, 'file'))
    await symlink(join(sentinel.dir, 'sub'), join(dir, 'dir'))
    await symlink(join(sentinel.dir, 'keep'), join(dir, 'hard-target'))
    const tar = await rawTar([
      { name: 'file', content: 'replaced\n', mode: 0o600 },
      { name: 'dir/', type: 'directory', mode: 0o777 },
      { name: 'dir/inner', content: 'inner\n' },
      { name: 'hl', type: 'link', linkname: 'hard-target' }
    ])
    await apply(tar, OCI_LAYER_TAR, dir)
    assert.equal(await sentinel.snapshot(), before)
    assert.ok((await lstat(join(dir, 'file'))).isFile())
    assert.equal(await readFile(join(dir, 'file'), 'utf8'), 'replaced\n')
    assert.ok((await lstat(join(dir, 'dir'))).isDirectory())
    // A hard link to a symlink is a second name for the symlink, not for what it points at.
    assert.ok((await lstat(join(dir, 'hl'))).isSymbolicLink())
    assert.equal((await lstat(join(sentinel.dir, 'keep'))).nlink, 1)
    assert.equal((await lstat(join(sentinel.dir, 'sub'))).mode & 0o777, 0o755)
  })

  test('small files written in one go: contents across chunk boundaries, empty, at and past the size threshold, exact modes', async () => {
    const bytes = (n: number, seed: string): Buffer => {
      const out = Buffer.alloc(n)
      for (let i = 0, block = createHash('sha256').update(seed).digest(); i < n; i += 32, block = createHash('sha256').update(block).digest()) block.copy(out, i)
      return out
    }
    const atThreshold = bytes(SMALL_FILE_BYTES, 'at')
    const overThreshold = bytes(SMALL_FILE_BYTES + 1, 'over')
    const files: Array<{ name: string, content: Buffer, mode: number }> = [
      { name: 'empty', content: Buffer.alloc(0), mode: 0o644 },
      { name: 'one', content: Buffer.from('1'), mode: 0o600 },
      { name: 'block', content: bytes(512, 'block'), mode: 0o755 },
      { name: 'odd', content: bytes(3001, 'odd'), mode: 0o640 },
      // Created with its final mode, then written through the descriptor open(2) returned.
      { name: 'read-only', content: bytes(10, 'ro'), mode: 0o400 },
      // Bits the usual umask (022) takes away, and bits open(2) never sets: both need an fchmod.
      { name: 'group-writable', content: bytes(100, 'gw'), mode: 0o666 },
      { name: 'setgid', content: bytes(10, 'sg'), mode: 0o2755 },
      { name: 'at-threshold', content: atThreshold, mode: 0o644 },
      { name: 'over-threshold', content: overThreshold, mode: 0o644 }
    ]
    const tar = await rawTar(files.map(f => ({ name: `d/${f.name}`, content: f.content, mode: f.mode, mtime: new Date(Date.UTC(2021, 5, 6, 7, 8, 9)) })))
    // Fed in pieces of 1000 bytes: headers and bodies straddle the chunks the parser gets.
    const pieces: Buffer[] = []
    for (let i = 0; i < tar.byteLength; i += 1000) pieces.push(tar.subarray(i, i + 1000))
    for (const source of [[tar], pieces]) {
      const dir = await target()
      const r = await applyLayer(Readable.from(source), OCI_LAYER_TAR, dir, { expectedDiffId: sha256(tar) })
      assert.equal(r.entries, files.length)
      for (const f of files) {
        const st = await lstat(join(dir, 'd', f.name))
        assert.ok(st.isFile(), f.name)
        assert.equal(st.mode & 0o7777, f.mode, `${f.name} mode`)
        assert.equal(st.mtimeMs, Date.UTC(2021, 5, 6, 7, 8, 9), `${f.name} mtime`)
        assert.ok((await readFile(join(dir, 'd', f.name))).equals(f.content), `${f.name} content`)
      }
    }
  })

  test('small and large files, symlinks and dirs replace whatever the layer below left at their names', async () => {
    const dir = await target()
    // Large enough for several batched writes, odd-sized so the last batch is partial.
    const big = createHash('sha256').update('seed').digest()
    const large = Buffer.concat(Array.from({ length: 100_000 }, (_, i) => createHash('sha256').update(big).update(String(i)).digest())).subarray(0, 3 * 1024 * 1024 + 123)
    const medium = large.subarray(0, 256 * 1024)
    await apply(await rawTar([
      { name: 'small/', type: 'directory' },
      { name: 'small/x', content: 'below\n' },
      { name: 'large', type: 'symlink', linkname: 'small' },
      { name: 'medium', content: 'below\n' },
      { name: 'link', content: 'a file below\n' },
      { name: 'tree', content: 'a file below\n' }
    ]), OCI_LAYER_TAR, dir)
    await apply(gzipSync(await rawTar([
      { name: 'small', content: 'small\n', mode: 0o4755 },
      { name: 'large', content: large, mode: 0o640, mtime: new Date(Date.UTC(2020, 1, 2)) },
      { name: 'medium', content: medium },
      { name: 'link', type: 'symlink', linkname: 'medium' },
      { name: 'tree/', type: 'directory', mode: 0o750 }
    ])), OCI_LAYER_GZIP, dir)
    assert.equal(await readFile(join(dir, 'small'), 'utf8'), 'small\n')
    assert.equal((await lstat(join(dir, 'small'))).mode & 0o7777, 0o4755)
    const st = await lstat(join(dir, 'large'))
    assert.ok(st.isFile())
    assert.equal(st.size, large.byteLength)
    assert.equal(st.mode & 0o7777, 0o640)
    assert.equal(st.mtimeMs, Date.UTC(2020, 1, 2))
    assert.ok((await readFile(join(dir, 'large'))).equals(large))
    assert.ok((await readFile(join(dir, 'medium'))).equals(medium))
    assert.equal((await lstat(join(dir, 'link'))).isSymbolicLink(), true)
    assert.equal((await lstat(join(dir, 'tree'))).mode & 0o7777, 0o750)
    assert.ok((await lstat(join(dir, 'tree'))).isDirectory())
  })

  test('follows relative symlinks that stay inside the root, like the merged /usr layout', async () => {
    const dir = await target()
    await apply(await rawTar([
      { name: 'usr/', type: 'directory' },
      { name: 'usr/lib/', type: 'directory' },
      { name: 'lib', type: 'symlink', linkname: 'usr/lib' },
      { name: 'lib/libx.so', content: 'elf' }
    ]), OCI_LAYER_TAR, dir)
    assert.equal(await readFile(join(dir, 'usr/lib/libx.so'), 'utf8'), 'elf')
    assert.ok((await lstat(join(dir, 'lib'))).isSymbolicLink())
  })

  test('copy mode: whiteouts delete, an opaque marker hides lower content but keeps this layer\'s', async () => {
    const dir = await target()
    await apply(await rawTar([
      { name: 'd/', type: 'directory' },
      { name: 'd/lower', content: 'l' },
      { name: 'd/sub/', type: 'directory' },
      { name: 'd/sub/lower', content: 'l' },
      { name: 'gone/', type: 'directory' },
      { name: 'gone/x', content: 'x' },
      { name: 'file-then-dir', content: 'f' }
    ]), OCI_LAYER_TAR, dir)
    const upper: RawEntry[] = [
      { name: 'd/', type: 'directory' },
      // '-' sorts before '.', so these come ahead of the marker in a sorted tar.
      { name: 'd/-new', content: 'n' },
      { name: 'd/sub/', type: 'directory' },
      { name: 'd/sub/-new', content: 'n' },
      { name: 'd/.wh..wh..opq', content: '' },
      { name: 'd/after', content: 'a' },
      { name: '.wh.gone', content: '' },
      { name: '.wh.never-existed', content: '' },
      { name: 'file-then-dir/', type: 'directory' },
      { name: 'file-then-dir/in', content: 'i' }
    ]
    await apply(await rawTar(upper), OCI_LAYER_TAR, dir)
    assert.deepEqual((await readdir(join(dir, 'd'))).sort(), ['-new', 'after', 'sub'])
    assert.deepEqual(await readdir(join(dir, 'd/sub')), ['-new'])
    await assert.rejects(lstat(join(dir, 'gone')), { code: 'ENOENT' })
    assert.equal(await readFile(join(dir, 'file-then-dir/in'), 'utf8'), 'i')
  })

  describe('overlay mode', { skip: !(isRoot && hasAttr) && 'needs root and setfattr/getfattr' }, () => {
    test('whiteouts become 0/0 devices, opaque markers an xattr, nothing is deleted below', async () => {
      const lower = await target()
      await apply(await rawTar([{ name: 'd/', type: 'directory' }, { name: 'd/a', content: 'a' }, { name: 'f', content: 'f' }]), OCI_LAYER_TAR, lower)
      const upper = await target()
      await apply(await rawTar([
        { name: 'd/', type: 'directory' },
        { name: 'd/.wh..wh..opq', content: '' },
        { name: 'd/b', content: 'b' },
        { name: '.wh.f', content: '' }
      ]), OCI_LAYER_TAR, upper, { whiteouts: 'overlay', lowerDirs: [lower] })
      const wh = await lstat(join(upper, 'f'))
      assert.ok(wh.isCharacterDevice() && wh.rdev === 0)
      assert.equal(getXattr(join(upper, 'd'), 'trusted.overlay.opaque'), 'y')
      assert.deepEqual(await readdir(join(upper, 'd')), ['b'])
      assert.equal(await readFile(join(lower, 'd/a'), 'utf8'), 'a')
    })

    test('parents come from the lower layers: symlinks followed inside the root, directory metadata copied up', async () => {
      const lower = await target()
      await apply(await rawTar([
        { name: 'usr/', type: 'directory', mode: 0o750, uid: 7, gid: 8 },
        { name: 'usr/lib/', type: 'directory', mode: 0o700 },
        { name: 'lib', type: 'symlink', linkname: 'usr/lib' },
        { name: 'evil', type: 'symlink', linkname: '/' }
      ]), OCI_LAYER_TAR, lower)
      const upper = await target()
      await apply(await rawTar([{ name: 'lib/new.so', content: 'n' }]), OCI_LAYER_TAR, upper, { whiteouts: 'overlay', lowerDirs: [lower] })
      assert.equal(await readFile(join(upper, 'usr/lib/new.so'), 'utf8'), 'n')
      const usr = await lstat(join(upper, 'usr'))
      assert.equal(usr.mode & 0o7777, 0o750)
      assert.deepEqual([usr.uid, usr.gid], [7, 8])
      assert.equal((await lstat(join(upper, 'usr/lib'))).mode & 0o7777, 0o700)
      await assert.rejects(lstat(join(upper, 'lib')), { code: 'ENOENT' }, 'the lower symlink is not shadowed by a directory')
      await expectCode(apply(await rawTar([{ name: 'evil/tmp/x', content: 'x' }]), OCI_LAYER_TAR, await target(), { whiteouts: 'overlay', lowerDirs: [lower] }),
        'ERR_UNSAFE_PATH')
    })

    test('a hard link to a lower file is copied up; a directory replacing a whiteout is opaque', async () => {
      const lower2 = await target()
      await apply(await rawTar([{ name: 'x/', type: 'directory' }, { name: 'x/old', content: 'o' }, { name: 'bin/', type: 'directory' }, { name: 'bin/tool', content: 'tool', mode: 0o755 }]), OCI_LAYER_TAR, lower2)
      const lower1 = await target()
      await apply(await rawTar([{ name: '.wh.x', content: '' }]), OCI_LAYER_TAR, lower1, { whiteouts: 'overlay', lowerDirs: [lower2] })
      const upper = await target()
      await apply(await rawTar([
        { name: 'bin/alias', type: 'link', linkname: 'bin/tool' },
        { name: 'x/', type: 'directory' },
        { name: 'x/new', content: 'n' }
      ]), OCI_LAYER_TAR, upper, { whiteouts: 'overlay', lowerDirs: [lower1, lower2] })
      const [a, t] = await Promise.all([lstat(join(upper, 'bin/alias')), lstat(join(upper, 'bin/tool'))])
      assert.equal(a.ino, t.ino)
      assert.equal(t.mode & 0o7777, 0o755)
      assert.equal(await readFile(join(upper, 'bin/alias'), 'utf8'), 'tool')
      // x was whited out in lower1; the new x must not show lower2's x/old through it.
      await apply(await rawTar([{ name: 'x/', type: 'directory' }, { name: '.wh.x', content: '' }, { name: 'x/', type: 'directory' }]), OCI_LAYER_TAR,
        upper, { whiteouts: 'overlay', lowerDirs: [lower1, lower2] })
      assert.equal(getXattr(join(upper, 'x'), 'trusted.overlay.opaque'), 'y')
      assert.deepEqual(await readdir(join(upper, 'x')), [])
    })
  })
})

describe('chain IDs', () => {
  const d = (s: string): string => sha256(s)
  test('follow the OCI definition', () => {
    const [a, b, c] = [d('a'), d('b'), d('c')]
    const ab = `sha256:${createHash('sha256').update(`${a} ${b}`).digest('hex')}`
    const abc = `sha256:${createHash('sha256').update(`${ab} ${c}`).digest('hex')}`
    assert.deepEqual(chainIDs([a, b, c]), [a, ab, abc])
    assert.equal(chainID([a, b, c]), abc)
    assert.equal(chainID([]), undefined)
  })
  test('refuse malformed diff IDs', () => {
    assert.throws(() => chainIDs(['sha256:nothex']), (err: unknown) => isJoeyError(err, 'ERR_INVALID_DIGEST'))
  })
})
