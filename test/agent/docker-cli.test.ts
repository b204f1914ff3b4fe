// joeyd end to end: a real docker-registry serving the busybox fixture, joeyd as a child process,
// and the real docker CLI talking to joeyd's socket for pull, images, inspect and rmi.
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { access, lstat, mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { busyboxImage, dockerV2S2, largeImage, multiLayerImage, twoPlatformIndex, type FixtureImage } from '../fixtures/images.js'
import { readdir } from 'node:fs/promises'
import { startRegistry, type TestRegistry } from '../fixtures/registry.js'
import { startJoeyd, type Joeyd } from './daemon.js'

const DOCKER_CANDIDATES = ['/usr/local/bin/docker', '/usr/bin/docker']

async function findDocker (): Promise<string | undefined> {
  for (const p of DOCKER_CANDIDATES) {
    try {
      await access(p)
      return p
    } catch {}
  }
  return undefined
}

const docker = await findDocker()

interface Run { code: number, stdout: string, stderr: string }

describe('the docker CLI against joeyd', { skip: docker === undefined ? `no docker CLI at ${DOCKER_CANDIDATES.join(' or ')}` : false }, () => {
  let dir: string
  let registry: TestRegistry
  let joeyd: Joeyd
  let image: FixtureImage
  let ref: string
  let configDigest: string
  let diffIds: string[]

  async function run (...args: string[]): Promise<Run> {
    return await new Promise<Run>((resolve) => {
      execFile(docker!, args, {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, DOCKER_HOST: `unix://${joeyd.socket}`, DOCKER_CONFIG: join(dir, 'docker-config') },
        timeout: 60_000
      }, (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1
        resolve({ code, stdout, stderr })
      })
    })
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'joey-docker-cli-'))
    await mkdir(join(dir, 'docker-config'))
    image = await busyboxImage()
    registry = await startRegistry()
    await registry.push('busybox', 'latest', image)
    ref = `${registry.host}/busybox:latest`
    configDigest = image.configs[0]!.digest
    diffIds = (JSON.parse(image.configs[0]!.data!.toString('utf8')) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids
    joeyd = await startJoeyd({ dataRoot: join(dir, 'data'), socket: join(dir, 'run', 'joeyd.sock') })
  })

  after(async () => {
    // Each step runs even when an earlier one fails, so nothing outlives the test.
    if (joeyd !== undefined) await joeyd.stop().catch(async () => { await joeyd.kill() })
    if (registry !== undefined) await registry.stop().catch(() => {})
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  test('docker version negotiates down to joeyd\'s API', async () => {
    const r = await run('version', '--format', '{{.Server.Version}} {{.Server.APIVersion}} {{.Client.APIVersion}}')
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.trim(), '0.1.0 1.43 1.43')
  })

  test('docker pull downloads the image and prints its digest', async () => {
    const r = await run('pull', ref)
    assert.equal(r.code, 0, `${r.stderr}\n${joeyd.output()}`)
    assert.match(r.stdout, new RegExp(`Digest: ${image.root.digest}`))
    assert.match(r.stdout, new RegExp(`Status: Downloaded newer image for ${ref.replace(/\./g, '\\.')}`))
    assert.equal(r.stdout.trim().split('\n').at(-1), ref)
  })

  test('docker images lists the real digest and id', async () => {
    const r = await run('images', '--digests', '--no-trunc', '--format', '{{.Repository}} {{.Tag}} {{.Digest}} {{.ID}}')
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(r.stdout.trim().split('\n'), [`${registry.host}/busybox latest ${image.root.digest} ${configDigest}`])
    const table = await run('images')
    assert.equal(table.code, 0, table.stderr)
    assert.match(table.stdout, new RegExp(`^${registry.host.replace(/\./g, '\\.')}/busybox\\s+latest\\s+${configDigest.slice(7, 19)}\\s`, 'm'))
  })

  test('docker image inspect shows the id, digests and layers', async () => {
    const r = await run('image', 'inspect', ref)
    assert.equal(r.code, 0, r.stderr)
    const [info] = JSON.parse(r.stdout) as Array<Record<string, any>>
    assert.equal(info!.Id, configDigest)
    assert.deepEqual(info!.RepoTags, [ref])
    assert.deepEqual(info!.RepoDigests, [`${registry.host}/busybox@${image.root.digest}`])
    assert.deepEqual(info!.RootFS, { Type: 'layers', Layers: diffIds })
    assert.deepEqual(info!.Config.Cmd, ['sh'])
    assert.equal(info!.Os, 'linux')
    const byId = await run('image', 'inspect', '--format', '{{.Id}}', configDigest.slice(7, 19))
    assert.equal(byId.stdout.trim(), configDigest)
  })

  test('a second pull is up to date and fetches no layer', async () => {
    const r = await run('pull', ref)
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /Already exists/)
    assert.match(r.stdout, new RegExp(`Status: Image is up to date for ${ref.replace(/\./g, '\\.')}`))
  })

  test('pulling a missing tag fails with the daemon\'s message', async () => {
    const r = await run('pull', `${registry.host}/busybox:nope`)
    assert.equal(r.code, 1)
    // A decoded error, not the raw JSON body.
    assert.equal(r.stderr.trim(), `Error response from daemon: manifest ${registry.host}/busybox:nope not found`)
  })

  test('metrics are served on the TCP listener', async () => {
    const res = await request(`${joeyd.tcpUrl}/metrics`)
    assert.equal(res.statusCode, 200)
    const text = await res.body.text()
    const value = (name: string): number => Number(text.split('\n').find(l => l.startsWith(`${name} `))?.split(' ')[1])
    assert.equal(value('joeyd_pulls_total'), 3)
    const layerBytes = image.layers.reduce((n, l) => n + l.size, 0)
    assert.equal(value('joeyd_origin_bytes_total'), layerBytes)
    assert.ok(value('joeyd_content_blobs') >= 3)
  })

  test('docker tag adds a name; docker rmi of it only untags', async () => {
    const t = await run('tag', ref, 'example.com/team/app:v1')
    assert.equal(t.code, 0, t.stderr)
    const inspect = await run('image', 'inspect', '--format', '{{.Id}}', 'example.com/team/app:v1')
    assert.equal(inspect.stdout.trim(), configDigest)
    const un = await run('rmi', 'example.com/team/app:v1')
    assert.equal(un.code, 0, un.stderr)
    assert.equal(un.stdout.trim(), 'Untagged: example.com/team/app:v1')
  })

  test('docker rmi untags and deletes', async () => {
    const r = await run('rmi', ref)
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, new RegExp(`^Untagged: ${ref.replace(/\./g, '\\.')}$`, 'm'))
    assert.match(r.stdout, new RegExp(`^Deleted: ${configDigest}$`, 'm'))
    const images = await run('images', '-q')
    assert.equal(images.stdout.trim(), '')
    const gone = await run('image', 'inspect', ref)
    assert.equal(gone.code, 1)
    assert.match(gone.stderr, /No such image/)
    const again = await run('rmi', ref)
    assert.equal(again.code, 1)
    assert.match(again.stderr, /No such image/)
  })

  test('docker pulls every fixture image; images lists real ids; rmi frees every blob', async () => {
    const fixtures: Array<{ repo: string, image: FixtureImage, platform?: string, id: string }> = []
    const multi = await multiLayerImage()
    const big = await largeImage({ layerBytes: 8 * 1024 * 1024 })
    const index = await twoPlatformIndex()
    const v2 = await dockerV2S2(image)
    for (const [repo, img] of [['multi', multi], ['large', big], ['v2s2', v2]] as const) {
      fixtures.push({ repo, image: img, id: img.configs[0]!.digest })
    }
    // The index's arm64 manifest is the second one; --platform picks it on any host.
    fixtures.push({ repo: 'index', image: index, platform: 'linux/arm64', id: index.configs[1]!.digest })
    for (const f of fixtures) {
      await registry.push(f.repo, 'v1', f.image)
      const r = await run('pull', ...(f.platform !== undefined ? ['--platform', f.platform] : []), `${registry.host}/${f.repo}:v1`)
      assert.equal(r.code, 0, `${f.repo}: ${r.stderr}`)
      assert.match(r.stdout, new RegExp(`Digest: ${f.image.root.digest}`))
    }
    const listed = await run('images', '--no-trunc', '--format', '{{.Repository}} {{.ID}}')
    assert.equal(listed.code, 0, listed.stderr)
    for (const f of fixtures) assert.match(listed.stdout, new RegExp(`^${registry.host}/${f.repo} ${f.id}$`, 'm'), listed.stdout)
    for (const f of fixtures) {
      const r = await run('rmi', `${registry.host}/${f.repo}:v1`)
      assert.equal(r.code, 0, `${f.repo}: ${r.stderr}`)
    }
    const blobs = await readdir(join(dir, 'data', 'content', 'blobs', 'sha256'))
    assert.deepEqual(blobs, [], 'rmi of the last image frees every blob')
  })

  test('SIGTERM stops joeyd cleanly and removes its socket', async () => {
    const code = await joeyd.stop()
    assert.equal(code, 0, joeyd.output())
    await assert.rejects(lstat(joeyd.socket), { code: 'ENOENT' })
    assert.equal(joeyd.stdout(), '', 'nothing on stdout')
  })
})
