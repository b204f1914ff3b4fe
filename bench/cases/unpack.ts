/**
 * Unpack throughput: a layer applied through src/unpack (a fresh active snapshot, the real
 * apply path, diff ID verified, committed) vs `tar -xzf` of the same blob into a fresh
 * directory, alternating in one run. Two layers: the large image's incompressible one
 * (one big file: decompression, hashing and write bandwidth) and a deterministic layer of
 * many small files (per-entry cost, which dominates real images).
 */
import { createReadStream } from 'node:fs'
import { mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { pipeline } from 'node:stream/promises'
import type { Readable, Writable } from 'node:stream'
import { createWriteStream } from 'node:fs'
import { createGzip } from 'node:zlib'
import { pack as tarPack } from 'tar-stream'
import { Digester } from '../../src/common/index.js'
import { silentLogger } from '../../src/common/index.js'
import { createSnapshotter, detectSnapshotter, unpackImage, type SnapshotterKind } from '../../src/unpack/index.js'
import { largeImage, OCI_LAYER_GZIP } from '../../test/fixtures/images.js'
import { MiB, median, runCommand, type BenchOptions, type CaseResult, type Metric } from '../lib.js'

const TARGET = 0.7
const FIXTURE_EPOCH = new Date(Date.UTC(2024, 0, 1))

interface Layer { name: string, path: string, digest: string, diffId: string, size: number, files: number, tarBytes: number }

/** A small deterministic generator: the same layer bytes on every run. */
function lcg (seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

/**
 * `files` regular files in 1/20 as many directories, sizes log-uniform from 16 B to 16 KiB
 * (mean ≈ 2.4 KiB), text-like content that gzip shrinks about 3×, and a symlink per 10
 * files: the shape of a distro or language-runtime layer. Cached under the temp dir.
 */
export async function smallFilesLayer (files: number): Promise<Layer> {
  const dir = join(tmpdir(), 'joey-fixtures', `small-files-v1-${files}`)
  const file = join(dir, 'layer.tar.gz')
  const metaFile = join(dir, 'layer.json')
  await mkdir(dir, { recursive: true })
  try {
    const meta = JSON.parse(await readFile(metaFile, 'utf8')) as Layer
    if ((await stat(file)).size === meta.size) return meta
  } catch {}
  const rand = lcg(files)
  const words = Array.from({ length: 512 }, (_, i) => `w${(i * 2654435761 >>> 0).toString(36)}`)
  const pack = tarPack()
  const diff = new Digester()
  const blob = new Digester()
  let tarBytes = 0
  const dirs = Math.max(1, Math.ceil(files / 20))
  const produce = async (): Promise<void> => {
    const header = (name: string): { name: string, mtime: Date, uid: number, gid: number, uname: string, gname: string } =>
      ({ name, mtime: FIXTURE_EPOCH, uid: 0, gid: 0, uname: 'root', gname: 'root' })
    pack.entry({ ...header('usr/'), type: 'directory', mode: 0o755 })
    for (let d = 0; d < dirs; d++) {
      const dname = `usr/d${String(d).padStart(4, '0')}/`
      pack.entry({ ...header(dname), type: 'directory', mode: 0o755 })
      const per = Math.min(20, files - d * 20)
      for (let f = 0; f < per; f++) {
        const size = Math.floor(Math.exp(Math.log(16) + rand() * (Math.log(16 * 1024) - Math.log(16))))
        let text = ''
        while (text.length < size) text += `${words[Math.floor(rand() * words.length)]!} `
        const content = Buffer.from(text.slice(0, size))
        const entry = pack.entry({ ...header(`${dname}f${f}.txt`), type: 'file', mode: f % 7 === 0 ? 0o755 : 0o644, size }) as unknown as Writable
        if (!entry.write(content)) await once(entry, 'drain')
        entry.end()
        if (f % 10 === 0) pack.entry({ ...header(`${dname}l${f}`), type: 'symlink', linkname: `f${f}.txt`, mode: 0o777 })
      }
    }
    pack.finalize()
  }
  const tap = (d: Digester, count: boolean) => async function * (source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      d.update(chunk)
      if (count) tarBytes += chunk.byteLength
      yield chunk
    }
  }
  const tmp = `${file}.${process.pid}.tmp`
  await Promise.all([produce(), pipeline(pack as unknown as Readable, tap(diff, true), createGzip({ level: 6 }), tap(blob, false), createWriteStream(tmp))])
  await rename(tmp, file)
  const meta: Layer = { name: `${files} small files`, path: file, digest: blob.digest(), diffId: diff.digest(), size: blob.size, files, tarBytes }
  await writeFile(metaFile, JSON.stringify(meta))
  return meta
}

async function largeLayer (layerBytes: number): Promise<Layer> {
  const image = await largeImage({ layerBytes })
  const config = JSON.parse(image.configs[0]!.data!.toString('utf8')) as { rootfs: { diff_ids: string[] } }
  const blob = image.layers[0]!
  return { name: `one ${(layerBytes / MiB).toFixed(0)} MiB file`, path: blob.path!, digest: blob.digest, diffId: config.rootfs.diff_ids[0]!, size: blob.size, files: 1, tarBytes: layerBytes }
}

interface Timing { joey: number[], tar: number[] }

/** Alternates unpackImage into a fresh snapshotter and tar -xzf into a fresh directory. */
async function measure (layer: Layer, kind: SnapshotterKind, rounds: number, dir: string): Promise<Timing> {
  const out: Timing = { joey: [], tar: [] }
  for (let r = 0; r < rounds; r++) {
    // Alternate which goes first so page-cache and writeback effects fall on both alike.
    const order = r % 2 === 0 ? ['joey', 'tar'] as const : ['tar', 'joey'] as const
    for (const who of order) {
      const target = join(dir, `${who}-${r}`)
      await mkdir(target)
      await runCommand('sync', [])
      const t = performance.now()
      if (who === 'tar') {
        await runCommand('tar', ['-xzf', layer.path, '-C', target])
      } else {
        const snapshotter = createSnapshotter(kind, { root: target }, { logger: silentLogger() })
        const result = await unpackImage([{ stream: async () => createReadStream(layer.path, { highWaterMark: MiB }), mediaType: OCI_LAYER_GZIP, diffId: layer.diffId }], snapshotter)
        if (result.applied !== 1) throw new Error('the layer was not applied')
      }
      out[who].push(performance.now() - t)
      await rm(target, { recursive: true, force: true })
    }
  }
  return out
}

export async function run (opts: BenchOptions): Promise<CaseResult> {
  const layerBytes = opts.quick ? 64 * MiB : 256 * MiB
  // Small-file layers are bound by filesystem metadata work; on a slow disk 20k files take tar
  // tens of seconds, so the full run uses 10k and the quick run 2k.
  const smallFiles = opts.quick ? 2_000 : 10_000
  const rounds = 3
  const dir = await mkdtemp(join(tmpdir(), 'joey-bench-unpack-'))
  try {
    const kind = await detectSnapshotter(join(dir, 'detect'))
    const layers = [await largeLayer(layerBytes), await smallFilesLayer(smallFiles)]
    const metrics: Metric[] = []
    const notes: string[] = []
    const data: Record<string, Timing & { layer: Layer }> = {}
    for (const layer of layers) {
      const t = await measure(layer, kind, rounds, dir)
      data[layer.name] = { ...t, layer }
      const joey = median(t.joey) / 1000
      const tar = median(t.tar) / 1000
      const ratio = tar / joey
      const label = layer.files > 1 ? 'small files' : 'large file'
      metrics.push(
        { name: `${label}: joey unpack`, value: joey, unit: 's' },
        { name: `${label}: tar -xzf`, value: tar, unit: 's' },
        { name: `${label}: joey throughput`, value: layer.tarBytes / MiB / joey, unit: 'MiB/s' },
        ...(layer.files > 1 ? [{ name: `${label}: joey files/s`, value: layer.files / joey, unit: '/s' }] : []),
        { name: `${label}: tar ÷ joey time`, value: ratio, unit: '×', target: `≥ ${TARGET}`, ok: ratio >= TARGET }
      )
      if (ratio < TARGET) {
        notes.push(`${label}: unpack is ${(1 / ratio).toFixed(2)}× tar's time (target at most ${(1 / TARGET).toFixed(2)}×); ` + (layer.files > 1
          ? 'both are bound by file creation in the kernel (on ext4 without a journal its cost swings with recent deletions); on top of it joey spends ~70 µs of CPU per entry (tar-stream headers and entry streams, path checks, gunzip and sha256) against ~30 µs for tar and gzip, which a loaded machine stretches further'
          : 'tar decompresses in a second process and hashes nothing; joey decompresses in the thread pool and also computes the diff ID (sha256)'))
      }
    }
    const sizes = layers.map(l => `${l.name} (${(l.size / MiB).toFixed(0)} MiB gzip, ${(l.tarBytes / MiB).toFixed(0)} MiB tar)`).join('; ')
    return {
      name: 'unpack',
      description: `unpackImage into a ${kind} snapshot (diff ID verified) vs tar -xzf of the same blob: ${sizes}; ${rounds} alternating rounds, medians`,
      metrics,
      notes,
      data
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
