// Layer builders and filesystem probes shared by the unpack tests.
import { createReadStream } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { gzipSync } from 'node:zlib'
import { pack as tarPack } from 'tar-stream'
import { sha256 } from '../../src/common/digest.js'
import type { UnpackLayer } from '../../src/unpack/index.js'
import type { FixtureBlob, FixtureImage } from '../fixtures/images.js'
import { OCI_LAYER_GZIP, OCI_LAYER_TAR, zstdCompress } from '../fixtures/tar.js'

export interface RawEntry {
  name: string
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo'
  content?: string | Buffer
  linkname?: string
  mode?: number
  uid?: number
  gid?: number
  mtime?: Date
  devmajor?: number
  devminor?: number
  pax?: Record<string, string>
}

export const EPOCH = new Date(Date.UTC(2024, 0, 1))

/** A tar with exactly these headers, in this order: hostile names are written as given. */
export async function rawTar (entries: RawEntry[]): Promise<Buffer> {
  const pack = tarPack()
  const chunks: Buffer[] = []
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: unknown) => { chunks.push(c as Buffer) })
    pack.on('end', resolve)
    pack.on('error', reject)
  })
  for (const e of entries) {
    const type = e.type ?? 'file'
    const content = e.content === undefined ? Buffer.alloc(0) : Buffer.from(e.content)
    const header = {
      name: e.name,
      type,
      mode: e.mode ?? (type === 'directory' ? 0o755 : type === 'symlink' ? 0o777 : 0o644),
      uid: e.uid ?? 0,
      gid: e.gid ?? 0,
      mtime: e.mtime ?? EPOCH,
      ...(e.linkname !== undefined ? { linkname: e.linkname } : {}),
      ...(e.devmajor !== undefined ? { devmajor: e.devmajor } : {}),
      ...(e.devminor !== undefined ? { devminor: e.devminor } : {}),
      ...(e.pax !== undefined ? { pax: e.pax } : {}),
      size: type === 'file' ? content.byteLength : 0
    }
    if (type === 'file') pack.entry(header, content)
    else pack.entry(header)
  }
  pack.finalize()
  await done
  return Buffer.concat(chunks)
}

/** An UnpackLayer over an in-memory tar, gzipped unless told otherwise. */
export function memLayer (tar: Buffer, compression: 'gzip' | 'none' = 'gzip'): UnpackLayer & { blob: Buffer, opened: () => number } {
  const blob = compression === 'gzip' ? gzipSync(tar) : tar
  let opened = 0
  return {
    blob,
    mediaType: compression === 'gzip' ? OCI_LAYER_GZIP : OCI_LAYER_TAR,
    diffId: sha256(tar),
    stream: async () => { opened++; return Readable.from([blob]) },
    opened: () => opened
  }
}

export async function zstdLayer (tar: Buffer): Promise<Buffer> {
  return await zstdCompress(tar)
}

function blobStream (blob: FixtureBlob): Readable {
  if (blob.data !== undefined) return Readable.from([blob.data])
  if (blob.path !== undefined) return createReadStream(blob.path)
  throw new Error(`fixture blob ${blob.digest} has neither data nor path`)
}

/** The image's layers with their diff IDs from its config, ready for unpackImage(). */
export function fixtureLayers (image: FixtureImage): Array<UnpackLayer & { opened: () => number }> {
  const config = JSON.parse(image.configs[0]!.data!.toString('utf8')) as { rootfs: { diff_ids: string[] } }
  return image.layers.map((blob, i) => {
    let opened = 0
    return {
      mediaType: blob.mediaType,
      diffId: config.rootfs.diff_ids[i]!,
      stream: async () => { opened++; return blobStream(blob) },
      opened: () => opened
    }
  })
}

export async function tempDir (prefix: string): Promise<{ dir: string, cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `joey-${prefix}-`))
  return { dir, cleanup: async () => await rm(dir, { recursive: true, force: true }) }
}

/** A directory outside every unpack root whose state must never change. */
export async function makeSentinel (dir: string): Promise<{ dir: string, snapshot: () => Promise<string> }> {
  await mkdir(join(dir, 'sub'), { recursive: true })
  await writeFile(join(dir, 'keep'), 'sentinel\n')
  const snapshot = async (): Promise<string> => JSON.stringify(await describeTree(dir))
  return { dir, snapshot }
}

/** Names, sizes and contents of a tree, for before/after comparisons. */
export async function describeTree (dir: string): Promise<Array<[string, number, string]>> {
  const out: Array<[string, number, string]> = []
  const walk = async (d: string, rel: string): Promise<void> => {
    for (const name of (await readdir(d)).sort()) {
      const p = join(d, name)
      const st = await stat(p).catch(() => undefined)
      if (st === undefined) { out.push([`${rel}${name}`, -1, 'dangling']); continue }
      if (st.isDirectory()) { out.push([`${rel}${name}/`, 0, '']); await walk(p, `${rel}${name}/`) } else out.push([`${rel}${name}`, st.size, (await readFile(p)).toString('hex')])
    }
  }
  await walk(dir, '')
  return out
}

/** `depth` times `../`: enough to climb from any unpack root to `/`. */
export function climb (depth = 40): string {
  return '../'.repeat(depth)
}

/** A minimal ustar header, so tests can announce sizes they never materialise. */
export function ustarHeader (name: string, size: number, type: '0' | '5' = '0'): Buffer {
  const b = Buffer.alloc(512)
  b.write(name, 0, 100)
  b.write('0000644\0', 100)
  b.write('0000000\0', 108)
  b.write('0000000\0', 116)
  b.write(size.toString(8).padStart(11, '0') + '\0', 124)
  b.write(Math.floor(EPOCH.getTime() / 1000).toString(8).padStart(11, '0') + '\0', 136)
  b.write('        ', 148)
  b.write(type, 156)
  b.write('ustar\0', 257)
  b.write('00', 263)
  let sum = 0
  for (const byte of b) sum += byte
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148)
  return b
}

const MiB = 1024 * 1024

/**
 * A gzip bomb streamed lazily: concatenated gzip members, each 1 MiB of zeros compressed to
 * about 1 KiB. `files` entries of `fileBytes` each; nothing large is ever held in memory.
 */
export function gzipBomb (files: number, fileBytes: number): { stream: () => Promise<Readable>, compressedBytes: () => number } {
  const zeros = gzipSync(Buffer.alloc(MiB), { level: 9 })
  let sent = 0
  async function * gen (): AsyncGenerator<Buffer> {
    for (let f = 0; f < files; f++) {
      const h = gzipSync(ustarHeader(`bomb/${f}`, fileBytes))
      sent += h.byteLength
      yield h
      let left = fileBytes
      while (left >= MiB) { sent += zeros.byteLength; yield zeros; left -= MiB }
      const tail = gzipSync(Buffer.alloc(left + ((512 - (fileBytes % 512)) % 512)))
      sent += tail.byteLength
      yield tail
    }
    yield gzipSync(Buffer.alloc(1024))
  }
  return { stream: async () => Readable.from(gen()), compressedBytes: () => sent }
}
