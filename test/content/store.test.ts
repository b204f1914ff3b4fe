import { describe, test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomFillSync, createHash } from 'node:crypto'
import { chmod, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { sha256, silentLogger } from '../../src/common/index.js'
import { createContentStore, type ContentStore } from '../../src/content/index.js'
import { contentStoreSuite } from './suite.js'
import { collect, patternBytes, rejectsWith } from './helpers.js'

const logger = silentLogger()

contentStoreSuite('local filesystem + level', init => createContentStore(init, { logger }))

const here = fileURLToPath(new URL('.', import.meta.url))
const projectRoot = fileURLToPath(new URL('../..', import.meta.url))

describe('local content store: filesystem layout and crash safety', () => {
  const dirs: string[] = []
  const stores: ContentStore[] = []

  async function newRoot (): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'joey-content-'))
    dirs.push(dir)
    return dir
  }

  async function open (root: string, init: { ingestExpiryMs?: number } = {}): Promise<ContentStore> {
    const s = createContentStore({ root, ...init }, { logger })
    await s.start()
    stores.push(s)
    return s
  }

  after(async () => {
    for (const s of stores) await s.stop().catch(() => {})
    for (const d of dirs) await rm(d, { recursive: true, force: true })
  })

  /** Runs crash-writer.ts in a child and waits for it to die; resolves to its signal. */
  async function runCrashWriter (args: string[]): Promise<NodeJS.Signals | null> {
    const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'crash-writer.ts'), ...args], { cwd: projectRoot, stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString() })
    const timer = setTimeout(() => { if (child.pid !== undefined) child.kill('SIGKILL') }, 30_000)
    try {
      const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
        child.once('error', reject)
        child.once('exit', (c, s) => resolve([c, s]))
      })
      assert.equal(code, null, `crash writer exited with ${String(code)}: ${stderr}`)
      return signal
    } finally {
      clearTimeout(timer)
    }
  }

  test('committed blobs are read-only files at blobs/sha256/<hex>; ingests live elsewhere', async () => {
    const root = await newRoot()
    const store = await open(root)
    const data = patternBytes(4096)
    const digest = sha256(data)
    const w = await store.writer('layout')
    await w.write(data.subarray(0, 1000))
    assert.deepEqual(await readdir(join(root, 'blobs', 'sha256')), [], 'nothing under blobs/ before commit')
    await w.write(data.subarray(1000))
    await w.commit(data.byteLength, digest)
    const hex = digest.slice('sha256:'.length)
    assert.deepEqual(await readdir(join(root, 'blobs', 'sha256')), [hex])
    const st = await stat(join(root, 'blobs', 'sha256', hex))
    assert.equal(st.mode & 0o777, 0o444)
    assert.equal(st.size, data.byteLength)
    assert.deepEqual(await readdir(join(root, 'ingest')), [], 'ingest removed after commit')
  })

  test('a second store cannot open a root whose metadata is in use', async () => {
    const root = await newRoot()
    await open(root)
    const second = createContentStore({ root }, { logger })
    await rejectsWith(second.start(), 'ERR_LOCKED')
  })

  test('start() and info() rebuild metadata that a crash lost, and remove temp leftovers', async () => {
    const root = await newRoot()
    let store = await open(root)
    const labelled = patternBytes(300, 'labelled')
    await store.writeBytes(labelled, sha256(labelled), { labels: { keep: 'me' } })
    await store.stop()

    // As if the process died between rename() and the metadata write, and mid-ingest creation.
    const data = patternBytes(2222, 'orphan-file')
    const hex = sha256(data).slice('sha256:'.length)
    await writeFile(join(root, 'blobs', 'sha256', hex), data)
    await chmod(join(root, 'blobs', 'sha256', hex), 0o444)
    await mkdir(join(root, 'ingest', '.tmp-crashed'))
    await writeFile(join(root, 'ingest', '.tmp-crashed', 'ref'), 'half-made')
    await mkdir(join(root, 'ingest', 'f'.repeat(64)))
    await writeFile(join(root, 'ingest', 'f'.repeat(64), 'ref'), 'committed-before-crash')

    store = await open(root)
    const info = await store.info(sha256(data))
    assert.equal(info.size, 2222)
    assert.deepEqual(info.labels, {})
    assert.deepEqual((await store.info(sha256(labelled))).labels, { keep: 'me' })
    assert.deepEqual(await readdir(join(root, 'ingest')), [])
    assert.equal((await store.list()).length, 2)

    // While running, a file that appears without metadata is picked up by info() too.
    const late = patternBytes(99, 'late')
    await writeFile(join(root, 'blobs', 'sha256', sha256(late).slice('sha256:'.length)), late)
    assert.equal((await store.info(sha256(late))).size, 99)
  })

  test('a writer killed by SIGKILL mid-write leaves a resumable ingest and no blob', async () => {
    const root = await newRoot()
    const size = 3 * 1024 * 1024 + 17
    const signal = await runCrashWriter([root, 'layer-crash', String(size), 'crash', 'half'])
    assert.equal(signal, 'SIGKILL')
    const data = patternBytes(size, 'crash')
    const digest = sha256(data)

    const store = await open(root)
    assert.equal(await store.has(digest), false)
    assert.deepEqual(await readdir(join(root, 'blobs', 'sha256')), [])
    const status = await store.ingestStatus('layer-crash')
    assert.ok(status !== undefined)
    assert.equal(status.offset, Math.floor(size / 2))
    assert.equal(status.expectedDigest, digest)
    assert.equal(status.expectedSize, size)

    const w = await store.writer('layer-crash')
    assert.equal(w.offset, Math.floor(size / 2))
    await w.write(data.subarray(w.offset))
    await w.commit(size, digest)
    const back = createHash('sha256')
    for await (const chunk of await store.read(digest)) back.update(chunk as Buffer)
    assert.equal(`sha256:${back.digest('hex')}`, digest)
  })

  test('a kill at any moment of commit leaves either the ingest or the whole blob', async (t) => {
    const size = 2 * 1024 * 1024
    // Commit takes ~10 ms here: the short delays land inside it, the long one after it.
    for (const delay of [0, 4, 8, 12, 1000]) {
      const root = await newRoot()
      const seed = `commit-${delay}`
      await runCrashWriter([root, 'c', String(size), seed, 'commit', String(delay)])
      const data = patternBytes(size, seed)
      const digest = sha256(data)
      const store = await open(root)
      const blobs = await readdir(join(root, 'blobs', 'sha256'))
      const committed = await store.has(digest)
      t.diagnostic(`kill after ${delay} ms: ${committed ? 'blob committed' : 'ingest kept'}`)
      if (delay === 1000) assert.ok(committed, 'a commit that finished before the kill is kept')
      if (committed) {
        assert.deepEqual(blobs, [digest.slice('sha256:'.length)])
        assert.equal((await store.info(digest)).size, size)
        assert.deepEqual(await store.readBytes(digest, size), data)
        assert.equal(await store.ingestStatus('c'), undefined)
      } else {
        assert.deepEqual(blobs, [], `delay ${delay}: no half blob`)
        const w = await store.writer('c')
        assert.ok(w.offset <= size)
        await w.truncate(0)
        await w.write(data)
        await w.commit(size, digest)
        assert.deepEqual(await store.readBytes(digest, size), data)
      }
      await store.stop()
    }
  })

  test('a writer tells its GC pacer the size of every chunk it writes', async () => {
    const noted: number[] = []
    const store = createContentStore({ root: await newRoot() }, { logger, gcPacer: { note: (bytes) => { noted.push(bytes) } } })
    await store.start()
    stores.push(store)
    const data = patternBytes(300_000)
    const w = await store.writer('paced')
    await w.write(data.subarray(0, 100_000))
    await w.write(data.subarray(100_000))
    await w.commit(data.byteLength, sha256(data))
    assert.deepEqual(noted, [100_000, 200_000])
  })

  test('a 64 MiB blob streams through write, commit and read with flat memory', async (t) => {
    const root = await newRoot()
    const store = await open(root)
    const chunk = Buffer.allocUnsafe(1024 * 1024)
    // Warm up code paths and the heap so the baseline is fair.
    randomFillSync(chunk)
    await store.writeBytes(chunk, sha256(chunk))
    await collect(await store.read(sha256(chunk)))

    const baseline = process.memoryUsage().rss
    let peak = baseline
    const sample = (): void => { peak = Math.max(peak, process.memoryUsage().rss) }
    const total = 64 * 1024 * 1024
    const expected = createHash('sha256')
    const w = await store.writer('big', { expectedSize: total })
    for (let pos = 0; pos < total; pos += chunk.byteLength) {
      randomFillSync(chunk)
      expected.update(chunk)
      await w.write(chunk)
      sample()
    }
    const digest = `sha256:${expected.digest('hex')}`
    const info = await w.commit(total, digest)
    assert.equal(info.size, total)
    sample()
    const actual = createHash('sha256')
    let read = 0
    for await (const part of await store.read(digest)) {
      actual.update(part as Buffer)
      read += (part as Buffer).byteLength
      sample()
    }
    assert.equal(read, total)
    assert.equal(`sha256:${actual.digest('hex')}`, digest)
    const grew = (peak - baseline) / (1024 * 1024)
    t.diagnostic(`RSS grew by ${grew.toFixed(1)} MiB`)
    assert.ok(grew < 32, `RSS grew by ${grew.toFixed(1)} MiB`)
  })
})
