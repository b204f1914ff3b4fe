// Real container clients pulling through joeyd's registry mirror: a containerd of the test's
// own (root, state, socket, config.toml) driven by ctr, and podman with its own storage.
// Their configuration is what `joey mirror configure` writes. joeyd runs as a separate
// process (test/cluster/harness.ts) in front of a real registry behind the counting proxy,
// which stands in for Docker Hub too (--mirror-upstream).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { request } from 'undici'
import { runCli } from '../../src/cli/cli.js'
import { startAgent, type AgentProc } from '../cluster/harness.js'
import { busyboxImage, largeImage, type FixtureImage } from '../fixtures/images.js'
import { startProxy, type CountingProxy } from '../fixtures/proxy.js'
import { startRegistry, type TestRegistry } from '../fixtures/registry.js'
import { startContainerd, unmountBelow, type TestContainerd } from '../fixtures/containerd.js'

const exec = promisify(execFile)

let dir: string
let registry: TestRegistry
let proxy: CountingProxy
let agent: AgentProc
let mirrorHost: string
let busybox: FixtureImage
let containerd: TestContainerd | undefined
let hostsDir: string
let configToml: string

const blobBytes = (image: FixtureImage): number => image.blobs().reduce((n, b) => n + b.size, 0)

async function joey (...argv: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  let stdout = ''
  let stderr = ''
  const code = await runCli(argv, { stdout: { write: (s: string) => { stdout += s }, isTTY: false }, stderr: { write: (s: string) => { stderr += s } }, env: {} })
  return { code, stdout, stderr }
}

async function ctr (...args: string[]): Promise<{ stdout: string, stderr: string }> {
  return await (containerd as TestContainerd).ctr(args)
}

/** Requests in ctr's --http-dump: each request line is followed by its Host header. */
function dumpedRequests (stderr: string): Array<{ method: string, path: string, host: string }> {
  const out: Array<{ method: string, path: string, host: string }> = []
  for (const m of stderr.matchAll(/(GET|HEAD) (\/v2\/[^\s"]*) HTTP\/1\.1"\n[^\n]*msg="Host: ([^"]+)"/g)) {
    out.push({ method: m[1] as string, path: m[2] as string, host: m[3] as string })
  }
  return out
}

async function originBytes (): Promise<number> {
  return (await agent.metrics()).joeyd_origin_bytes_total ?? 0
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'joey-clients-'))
  registry = await startRegistry()
  busybox = await busyboxImage()
  await registry.push('busybox', 'latest', busybox)
  await registry.push('library/busybox', 'latest', busybox)
  proxy = await startProxy(registry.url)
  // The proxied registry stands in for Docker Hub.
  agent = await startAgent(dir, 'agent', ['--mirror-upstream', proxy.host])
  mirrorHost = new URL(agent.mirror).host
  containerd = await startContainerd(join(dir, 'containerd'))
  hostsDir = containerd.hostsDir
  configToml = containerd.configToml
})

after(async () => {
  if (containerd !== undefined) {
    // A container left by a failed test would hold its shim and mounts.
    await ctr('tasks', 'kill', '-s', 'SIGKILL', 't1').catch(() => {})
    await ctr('tasks', 'rm', '-f', 't1').catch(() => {})
    await ctr('containers', 'rm', 't1').catch(() => {})
    await containerd.stop()
  }
  await agent?.stop()
  await proxy?.stop()
  await registry?.stop()
  if (dir !== undefined) {
    await unmountBelow(dir)
    await rm(dir, { recursive: true, force: true })
  }
})

test('joey mirror configure containerd writes hosts.toml that containerd uses', async () => {
  const r = await joey('mirror', 'configure', 'containerd', '--config-path', hostsDir, '--containerd-config', configToml,
    '--mirror', agent.mirror, '--registry', `http://${proxy.host}`, '--registry', 'docker.io')
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stdout, `created ${join(hostsDir, proxy.host, 'hosts.toml')}\ncreated ${join(hostsDir, 'docker.io', 'hosts.toml')}\n`)
  // This config.toml names the hosts directory: only the note about ctr remains.
  assert.doesNotMatch(r.stderr, /config_path/)
})

test('ctr pulls a registry image: every request goes to joeyd, the origin sends each blob once', async () => {
  proxy.reset()
  const before = await originBytes()
  const { stderr } = await ctr('images', 'pull', '--http-dump', '--plain-http', '--hosts-dir', hostsDir, `${proxy.host}/busybox:latest`)
  const requests = dumpedRequests(stderr)
  const ns = `ns=${encodeURIComponent(proxy.host)}`
  assert.ok(requests.length >= 4, JSON.stringify(requests))
  for (const q of requests) {
    assert.equal(q.host, mirrorHost, `ctr asked ${q.host} directly: ${q.method} ${q.path}`)
    assert.ok(q.path.endsWith(`?${ns}`), q.path)
  }
  assert.ok(requests.some(q => q.path.startsWith('/v2/busybox/manifests/latest?')), 'the tag was resolved through joeyd')
  const blobGets = new Set(requests.filter(q => q.method === 'GET' && q.path.includes('/blobs/')).map(q => q.path.split('/blobs/')[1]?.split('?')[0]))
  assert.deepEqual([...blobGets].sort(), busybox.blobs().map(b => b.digest).sort())
  // The origin sent every blob exactly once, and all of it to joeyd.
  assert.equal(proxy.stats.blobBytes, blobBytes(busybox))
  assert.equal(await originBytes() - before, blobBytes(busybox))
  assert.equal(proxy.stats.requests.filter(q => q.method === 'GET' && q.path.includes('/blobs/')).length, busybox.blobs().length)

  const images = (await ctr('images', 'ls')).stdout
  assert.match(images, new RegExp(`${proxy.host}/busybox:latest\\s+\\S+\\s+${busybox.root.digest}`))
  const content = (await ctr('content', 'ls', '-q')).stdout.split('\n').filter(Boolean).sort()
  assert.deepEqual(content, [busybox.root.digest, ...busybox.blobs().map(b => b.digest)].sort())
})

test('ctr pulls docker.io/library/busybox through joeyd, which takes Docker Hub to --mirror-upstream', async () => {
  // Drop the first image so containerd has to fetch every blob again.
  await ctr('images', 'rm', '--sync', `${proxy.host}/busybox:latest`)
  assert.equal((await ctr('content', 'ls', '-q')).stdout.trim(), '')
  proxy.reset()
  const before = await originBytes()
  const { stderr } = await ctr('images', 'pull', '--http-dump', '--hosts-dir', hostsDir, 'docker.io/library/busybox:latest')
  const requests = dumpedRequests(stderr)
  assert.ok(requests.length >= 4, JSON.stringify(requests))
  for (const q of requests) {
    assert.equal(q.host, mirrorHost, `ctr asked ${q.host} directly: ${q.method} ${q.path}`)
    assert.ok(q.path.startsWith('/v2/library/busybox/') && q.path.endsWith('?ns=docker.io'), q.path)
  }
  // joeyd resolved the tag at the stand-in for Docker Hub, and had the blobs already.
  assert.ok(proxy.stats.requests.some(q => q.path === '/v2/library/busybox/manifests/latest'), JSON.stringify(proxy.stats.requests))
  assert.equal(proxy.stats.blobBytes, 0)
  assert.equal(await originBytes(), before)
  assert.match((await ctr('images', 'ls')).stdout, new RegExp(`docker\\.io/library/busybox:latest\\s+\\S+\\s+${busybox.root.digest}`))
})

test('every name of Docker Hub reaches --mirror-upstream', async () => {
  for (const path of ['/v2/library/busybox/manifests/latest', '/v2/library/busybox/manifests/latest?ns=docker.io',
    '/v2/library/busybox/manifests/latest?ns=index.docker.io', '/v2/docker.io/library/busybox/manifests/latest']) {
    const res = await request(`${agent.mirror}${path}`, { headers: { accept: busybox.root.mediaType } })
    await res.body.dump()
    assert.equal(res.statusCode, 200, path)
    assert.equal(res.headers['docker-content-digest'], busybox.root.digest, path)
  }
})

test('ctr run --rm of the image pulled through joeyd prints hi', async () => {
  const { stdout } = await ctr('run', '--rm', 'docker.io/library/busybox:latest', 't1', 'echo', 'hi')
  assert.equal(stdout, 'hi\n')
})

test('podman pulls through joeyd with the drop-in joey mirror configure writes', async () => {
  const image = await largeImage({ layerBytes: 3 * 1024 * 1024 + 17 })
  await registry.push('podman/large', 'v1', image)
  const conf = join(dir, 'podman', 'registries.conf')
  const r = await joey('mirror', 'configure', 'podman', '--config-path', conf, '--mirror', agent.mirror, '--registry', `http://${proxy.host}`, '--registry', 'docker.io')
  assert.equal(r.code, 0, r.stderr)
  // The proxied registry has a port, so podman's mirror requests cannot name it: joeyd's
  // --mirror-upstream must be that registry, which it is here.
  assert.match(r.stderr, new RegExp(`--mirror-upstream ${proxy.host}`))

  const storage = ['--root', join(dir, 'podman', 'root'), '--runroot', join(dir, 'podman', 'run'), '--tmpdir', join(dir, 'podman', 'tmp'),
    '--cgroup-manager', 'cgroupfs', '--storage-driver', 'vfs', '--events-backend', 'none']
  const env = { ...process.env, CONTAINERS_REGISTRIES_CONF: conf }
  const podman = async (...args: string[]): Promise<{ stdout: string, stderr: string }> => {
    try {
      return await exec('podman', [...storage, ...args], { env, maxBuffer: 64 * 1024 * 1024, timeout: 60_000 })
    } catch (err) {
      throw new Error(`podman ${args.join(' ')} failed: ${(err as Error).message.slice(0, 3000)}`, { cause: err })
    }
  }
  /** URLs podman fetched, from its debug log. */
  const fetched = (stderr: string): URL[] => [...stderr.matchAll(/msg="(?:GET|HEAD) (https?:\/\/[^\s"]+)"/g)].map(m => new URL(m[1] as string))
  try {
    proxy.reset()
    const before = await originBytes()
    const pulled = await podman('--log-level', 'debug', 'pull', `${proxy.host}/podman/large:v1`)
    const urls = fetched(pulled.stderr)
    assert.ok(urls.length >= 3, pulled.stderr.slice(-3000))
    for (const u of urls) assert.equal(u.host, mirrorHost, `podman asked ${u.host} directly: ${u.href}`)
    for (const b of image.blobs()) assert.ok(urls.some(u => u.pathname === `/v2/podman/large/blobs/${b.digest}`), `podman fetched ${b.digest} from joeyd`)
    assert.equal(proxy.stats.blobBytes, blobBytes(image))
    assert.equal(await originBytes() - before, blobBytes(image))

    const hub = await podman('--log-level', 'debug', 'pull', 'docker.io/library/busybox:latest')
    for (const u of fetched(hub.stderr)) assert.equal(u.host, mirrorHost, `podman asked ${u.host} directly: ${u.href}`)
    const images = (await podman('images', '--digests', '--format', '{{.Repository}}:{{.Tag}} {{.Digest}}')).stdout
    assert.ok(images.includes(`${proxy.host}/podman/large:v1 ${image.root.digest}`), images)
    assert.ok(images.includes(`docker.io/library/busybox:latest ${busybox.root.digest}`), images)
  } finally {
    await exec('podman', [...storage, 'system', 'reset', '-f'], { env, timeout: 60_000 }).catch(() => {})
    await unmountBelow(dir)
    await rm(join(dir, 'podman'), { recursive: true, force: true })
  }
})
