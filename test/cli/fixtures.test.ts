// `joey pull` of every fixture image from a real registry through a real joeyd; `joey images`
// lists their real ids; `joey rmi` of them all frees every blob.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { busyboxImage, dockerV2S2, largeImage, multiLayerImage, twoPlatformIndex, type FixtureImage } from '../fixtures/images.js'
import { startRegistry, type TestRegistry } from '../fixtures/registry.js'
import { startAgent, type AgentProc } from '../cluster/harness.js'

const ROOT = new URL('../..', import.meta.url).pathname
let dir: string
let registry: TestRegistry
let agent: AgentProc

async function joey (...args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise((resolve) => {
    execFile(process.execPath, [join(ROOT, 'bin/joey.js'), '-H', `unix://${agent.socket}`, ...args], { timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (err as { code?: number }).code ?? 1, stdout, stderr })
    })
  })
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'joey-cli-fixtures-'))
  registry = await startRegistry()
  agent = await startAgent(dir, 'agent')
})

after(async () => {
  await agent?.stop()
  await registry?.stop()
  await rm(dir, { recursive: true, force: true })
})

test('joey pulls every fixture image, lists real ids, and rmi frees every blob', async () => {
  const busybox = await busyboxImage()
  const index = await twoPlatformIndex()
  const fixtures: Array<{ repo: string, image: FixtureImage, platform?: string, id: string }> = [
    { repo: 'busybox', image: busybox, id: busybox.configs[0]!.digest },
    { repo: 'multi', image: await multiLayerImage(), id: '' },
    { repo: 'large', image: await largeImage({ layerBytes: 8 * 1024 * 1024 }), id: '' },
    { repo: 'v2s2', image: await dockerV2S2(busybox), id: '' },
    { repo: 'index', image: index, platform: 'linux/arm64', id: index.configs[1]!.digest }
  ]
  for (const f of fixtures) if (f.id === '') f.id = f.image.configs[0]!.digest
  for (const f of fixtures) {
    await registry.push(f.repo, 'v1', f.image)
    const r = await joey('pull', ...(f.platform !== undefined ? ['--platform', f.platform] : []), `${registry.host}/${f.repo}:v1`)
    assert.equal(r.code, 0, `${f.repo}: ${r.stderr}`)
    assert.match(r.stdout, new RegExp(`Digest: ${f.image.root.digest}`), r.stdout)
  }
  const listed = await joey('images', '--format', 'json')
  assert.equal(listed.code, 0, listed.stderr)
  const images = JSON.parse(listed.stdout) as Array<{ Id: string, RepoTags: string[] }>
  for (const f of fixtures) {
    const found = images.find(i => i.RepoTags.includes(`${registry.host}/${f.repo}:v1`))
    assert.equal(found?.Id, f.id, `${f.repo} listed as ${JSON.stringify(found)}`)
  }
  for (const f of fixtures) {
    const r = await joey('rmi', `${registry.host}/${f.repo}:v1`)
    assert.equal(r.code, 0, `${f.repo}: ${r.stderr}`)
  }
  assert.deepEqual(await readdir(join(agent.dataRoot, 'content', 'blobs', 'sha256')), [])
})
