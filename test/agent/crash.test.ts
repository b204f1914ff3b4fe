// Crash safety of a pull through joeyd: stop the daemon (SIGTERM) a third into a large layer,
// SIGKILL it at two thirds of the resumed pull, check nothing unverified ever became a blob,
// restart it and check the pull resumes where it stopped (the origin sends the layer about
// once) and ends with the right digest.
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { access, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { largeImage, type FixtureImage } from '../fixtures/images.js'
import { startProxy, type CountingProxy } from '../fixtures/proxy.js'
import { startRegistry, type TestRegistry } from '../fixtures/registry.js'
import { startJoeyd, type Joeyd } from './daemon.js'

const MiB = 1024 * 1024
const LAYER_BYTES = 96 * MiB
const RATE = 24 * MiB

async function exists (path: string): Promise<boolean> {
  try {
    await access(path)
    return true
  } catch {
    return false
  }
}

async function fileDigest (path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return `sha256:${hash.digest('hex')}`
}

describe('a pull survives SIGTERM and SIGKILL of joeyd', () => {
  let dir: string
  let registry: TestRegistry | undefined
  let proxy: CountingProxy | undefined
  const daemons: Joeyd[] = []
  let image: FixtureImage

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'joey-crash-'))
    image = await largeImage({ layerBytes: LAYER_BYTES })
    registry = await startRegistry()
    await registry.push('large', 'latest', image)
    proxy = await startProxy(registry.url)
    proxy.setFaults([{ kind: 'throttle', bytesPerSecond: RATE }])
  })

  after(async () => {
    for (const d of daemons) await d.kill().catch(() => {})
    await proxy?.stop().catch(() => {})
    await registry?.stop().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  })

  /** Reads pull messages until one reports at least `bytes` of the layer, then runs `stop`. */
  async function pullUntil (d: Joeyd, bytes: number, stop: () => Promise<unknown>): Promise<{ at: number, messages: Array<Record<string, any>> }> {
    const res = await d.client.request({ method: 'POST', path: pullPath() })
    assert.equal(res.statusCode, 200)
    const messages: Array<Record<string, any>> = []
    let buffered = ''
    let at = 0
    let stopping: Promise<unknown> | undefined
    try {
      for await (const chunk of res.body) {
        buffered += String(chunk)
        const lines = buffered.split('\n')
        buffered = lines.pop()!
        for (const line of lines) {
          const m = JSON.parse(line) as Record<string, any>
          messages.push(m)
          if (stopping === undefined && m.status === 'Downloading' && (m.progressDetail?.current ?? 0) >= bytes) {
            at = m.progressDetail.current as number
            stopping = stop()
          }
        }
      }
    } catch {
      // The stream breaks when the daemon dies under it.
    }
    await stopping
    assert.ok(at > 0, `joeyd never reported ${bytes} bytes:\n${d.output()}`)
    return { at, messages }
  }

  const pullPath = (): string => `/images/create?fromImage=${encodeURIComponent(`${proxy!.host}/large`)}&tag=latest`
  const blobPath = (): string => join(dir, 'data', 'content', 'blobs', 'sha256', image.layers[0]!.digest.slice('sha256:'.length))
  const daemonOptions = (): { dataRoot: string, socket: string } => ({ dataRoot: join(dir, 'data'), socket: join(dir, 'joeyd.sock') })
  let stoppedAt = 0
  let killedAt = 0

  test('SIGTERM mid-pull: the stream ends with an error line and joeyd exits 0', async () => {
    const d = await startJoeyd(daemonOptions())
    daemons.push(d)
    let code: number | null = -1
    const { at, messages } = await pullUntil(d, LAYER_BYTES / 3, async () => { code = await d.stop() })
    stoppedAt = at
    assert.equal(code, 0, d.output())
    assert.deepEqual(messages.at(-1)!.errorDetail?.code, 499, JSON.stringify(messages.at(-1)))
    assert.equal(await exists(blobPath()), false)
    assert.ok(proxy!.stats.blobBytes < image.layers[0]!.size)
  })

  test('SIGKILL later in the resumed pull leaves no blob behind', async () => {
    const d = await startJoeyd(daemonOptions())
    daemons.push(d)
    const { at, messages } = await pullUntil(d, (2 * LAYER_BYTES) / 3, async () => { await d.kill() })
    killedAt = at
    // The resumed pull reports the bytes already on disk from its first line on.
    const first = messages.find(m => m.status === 'Downloading')!
    assert.ok(first.progressDetail.current >= stoppedAt / 2, JSON.stringify(first))
    assert.ok(killedAt < image.layers[0]!.size, 'killed before the layer was complete')
    assert.equal(await exists(blobPath()), false, 'no blob for a layer that was never verified')
  })

  test('after a restart the pull completes with the right digest, the layer sent about once', async () => {
    const layer = image.layers[0]!
    // The socket file the killed daemon left behind must not stop the restart.
    const d = await startJoeyd(daemonOptions())
    daemons.push(d)
    const again = await d.client.request({ method: 'POST', path: pullPath() })
    assert.equal(again.statusCode, 200)
    const messages = (await again.body.text()).split('\n').filter(l => l !== '').map(l => JSON.parse(l) as Record<string, any>)
    assert.equal(messages.find(m => m.errorDetail !== undefined), undefined, JSON.stringify(messages.at(-1)))
    assert.equal(messages.at(-2)!.status, `Digest: ${image.root.digest}`)
    assert.match(messages.at(-1)!.status, /^Status: Downloaded newer image for /)
    const firstDownload = messages.find(m => m.status === 'Downloading')
    assert.ok(firstDownload !== undefined && firstDownload.progressDetail.current >= killedAt / 2, JSON.stringify(firstDownload))

    assert.equal(await fileDigest(blobPath()), layer.digest)
    const inspect = await d.client.request({ method: 'GET', path: `/images/${proxy!.host}/large:latest/json` })
    assert.equal(inspect.statusCode, 200)
    assert.equal((await inspect.body.json() as { Id: string }).Id, image.configs[0]!.digest)

    const total = proxy!.stats.blobBytes
    assert.ok(total <= 1.2 * layer.size, `the origin sent ${total} bytes for a ${layer.size}-byte layer: the pull did not resume`)
    assert.equal(await d.stop(), 0, d.output())
  })
})
