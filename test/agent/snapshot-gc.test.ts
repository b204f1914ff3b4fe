// Layer snapshots through joeyd's Engine API: DELETE /images frees the layer snapshots no
// other image and no container uses, DELETE /containers frees what only that container
// held; snapshots shared with another image stay.
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chainIDs } from '../../src/unpack/index.js'
import { busyboxImage, multiLayerImage, type FixtureImage } from '../fixtures/images.js'
import { startRegistry, type TestRegistry } from '../fixtures/registry.js'
import { skipReason } from '../runtime/helpers.js'
import { startJoeyd, type Joeyd } from './daemon.js'

const skip = skipReason() ?? false

function diffIds (image: FixtureImage): string[] {
  const config = JSON.parse(image.configs[0]!.data!.toString('utf8')) as { rootfs: { diff_ids: string[] } }
  return config.rootfs.diff_ids
}

describe('snapshot GC through joeyd', { skip, timeout: 120_000 }, () => {
  let dir: string
  let registry: TestRegistry
  let joeyd: Joeyd
  let busyboxChain: string[]
  let multiChain: string[]

  async function api (method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<{ status: number, json: any }> {
    const res = await joeyd.client.request({
      method,
      path,
      ...(body !== undefined ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {})
    })
    const text = await res.body.text()
    let json: unknown
    try { json = JSON.parse(text) } catch { json = text }
    return { status: res.statusCode, json }
  }

  const committed = async (): Promise<string[]> => {
    const meta = JSON.parse(await readFile(join(dir, 'data', 'snapshots', 'metadata.json'), 'utf8')) as { snapshots: Record<string, { kind: string }> }
    return Object.entries(meta.snapshots).filter(([, s]) => s.kind === 'committed').map(([n]) => n).sort()
  }
  const sorted = (names: string[]): string[] => [...new Set(names)].sort()

  async function pull (repo: string): Promise<void> {
    const r = await api('POST', `/images/create?fromImage=${encodeURIComponent(`${registry.host}/${repo}`)}&tag=latest`)
    assert.equal(r.status, 200, JSON.stringify(r.json))
  }

  /** Pulls busybox; its reference and image ID. */
  async function pullBusybox (): Promise<{ ref: string, id: string }> {
    await pull('busybox')
    const ref = `${registry.host}/busybox:latest`
    const id = ((await api('GET', `/images/${encodeURIComponent(ref)}/json`)).json as { Id: string }).Id
    return { ref, id }
  }

  async function create (repo: string): Promise<string> {
    const r = await api('POST', '/containers/create', { Image: `${registry.host}/${repo}:latest`, Cmd: ['true'] })
    assert.equal(r.status, 201, JSON.stringify(r.json))
    return (r.json as { Id: string }).Id
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'joey-snapshot-gc-'))
    registry = await startRegistry()
    const busybox = await busyboxImage()
    const multi = await multiLayerImage()
    busyboxChain = chainIDs(diffIds(busybox))
    multiChain = chainIDs(diffIds(multi))
    await registry.push('busybox', 'latest', busybox)
    await registry.push('multi', 'latest', multi)
    joeyd = await startJoeyd({ dataRoot: join(dir, 'data'), socket: join(dir, 'run', 'joeyd.sock') })
  })

  after(async () => {
    if (joeyd !== undefined) {
      const list = await api('GET', '/containers/json?all=1').catch(() => ({ json: [] }))
      for (const c of (Array.isArray(list.json) ? list.json : []) as Array<{ Id: string }>) await api('DELETE', `/containers/${c.Id}?force=1`).catch(() => {})
      await joeyd.stop().catch(async () => { await joeyd.kill() })
    }
    if (registry !== undefined) await registry.stop().catch(() => {})
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  test('rmi frees unshared layer snapshots; a container holds its image\'s until it is removed', async () => {
    assert.equal(multiChain[0], busyboxChain[0], 'the fixtures share their base layer')
    await pull('busybox')
    await pull('multi')
    const onMulti = await create('multi')
    const onBusybox = await create('busybox')
    assert.deepEqual(await committed(), sorted([...busyboxChain, ...multiChain]))

    // Forced past the container that uses it, as docker rmi -f: the container keeps its layers.
    const rmi = await api('DELETE', `/images/${registry.host}/multi:latest?force=1`)
    assert.equal(rmi.status, 200, JSON.stringify(rmi.json))
    assert.deepEqual(await committed(), sorted([...busyboxChain, ...multiChain]))

    assert.equal((await api('DELETE', `/containers/${onMulti}`)).status, 204)
    assert.deepEqual(await committed(), sorted(busyboxChain), 'the shared base stays for busybox')

    // busybox's container holds the base after busybox is untagged; removing it frees the rest.
    assert.equal((await api('DELETE', `/images/${registry.host}/busybox:latest?force=1`)).status, 200)
    assert.deepEqual(await committed(), sorted(busyboxChain))
    assert.equal((await api('DELETE', `/containers/${onBusybox}`)).status, 204)
    assert.deepEqual(await committed(), [])
  })

  test('rmi of one of two images sharing a base keeps the base; rmi of the other frees it', async () => {
    await pull('busybox')
    await pull('multi')
    for (const repo of ['busybox', 'multi']) assert.equal((await api('DELETE', `/containers/${await create(repo)}`)).status, 204)
    assert.deepEqual(await committed(), sorted([...busyboxChain, ...multiChain]))
    assert.equal((await api('DELETE', `/images/${registry.host}/multi:latest`)).status, 200)
    assert.deepEqual(await committed(), sorted(busyboxChain))
    assert.equal((await api('DELETE', `/images/${registry.host}/busybox:latest`)).status, 200)
    assert.deepEqual(await committed(), [])
  })

  test('rmi of an image a container uses is refused without force, as docker does; a second tag may go', async () => {
    const { ref, id } = await pullBusybox()
    const c = await create('busybox')

    const byName = await api('DELETE', `/images/${ref}`)
    assert.equal(byName.status, 409, JSON.stringify(byName.json))
    assert.match((byName.json as { message: string }).message, /unable to remove repository reference .* \(must force\) - container [0-9a-f]{12} is using its referenced image/)
    const byId = await api('DELETE', `/images/${id.replace('sha256:', '').slice(0, 12)}`)
    assert.equal(byId.status, 409, JSON.stringify(byId.json))
    assert.match((byId.json as { message: string }).message, /unable to delete [0-9a-f]{12} \(must be forced\) - image is being used by stopped container/)
    assert.equal((await api('GET', `/images/${encodeURIComponent(ref)}/json`)).status, 200, 'the image is still there')
    assert.deepEqual(await committed(), sorted(busyboxChain), 'and so are its layers')

    // With a second name, removing one name only untags.
    assert.equal((await api('POST', `/images/${encodeURIComponent(ref)}/tag?repo=${encodeURIComponent(`${registry.host}/other`)}&tag=v1`)).status, 201)
    assert.equal((await api('DELETE', `/images/${registry.host}/other:v1`)).status, 200)

    assert.equal((await api('DELETE', `/containers/${c}`)).status, 204)
    assert.equal((await api('DELETE', `/images/${ref}`)).status, 200)
    assert.deepEqual(await committed(), [])
  })

  test('rmi -f by id of an image a running container uses is refused (cannot be forced); stopped ones do not stop it', async () => {
    const { ref, id } = await pullBusybox()
    const short = id.replace('sha256:', '').slice(0, 12)
    const r = await api('POST', '/containers/create', { Image: ref, Cmd: ['sleep', '300'] })
    assert.equal(r.status, 201, JSON.stringify(r.json))
    const c = (r.json as { Id: string }).Id
    assert.equal((await api('POST', `/containers/${c}/start`)).status, 204)

    const refused = await api('DELETE', `/images/${short}?force=1`)
    assert.equal(refused.status, 409, JSON.stringify(refused.json))
    assert.match((refused.json as { message: string }).message, new RegExp(`unable to delete ${short} \\(cannot be forced\\) - image is being used by running container ${c.slice(0, 12)}`))
    assert.equal((await api('GET', `/images/${encodeURIComponent(ref)}/json`)).status, 200, 'the image is still there')

    assert.equal((await api('POST', `/containers/${c}/kill`)).status, 204)
    assert.equal((await api('POST', `/containers/${c}/wait`)).status, 200)
    const forced = await api('DELETE', `/images/${short}?force=1`)
    assert.equal(forced.status, 200, JSON.stringify(forced.json))
    assert.equal((await api('DELETE', `/containers/${c}`)).status, 204)
    assert.deepEqual(await committed(), [])
  })

  test('rmi of a name whose content is gone still removes it (no container can use it)', async () => {
    const { ref, id } = await pullBusybox()
    await rm(join(dir, 'data', 'content', 'blobs', 'sha256', id.replace('sha256:', '')))
    assert.equal((await api('GET', `/images/${encodeURIComponent(ref)}/json`)).status, 404, 'the config is gone')
    const r = await api('DELETE', `/images/${ref}`)
    assert.equal(r.status, 200, JSON.stringify(r.json))
    assert.deepEqual((r.json as Array<{ Untagged?: string }>)[0], { Untagged: ref })
    assert.deepEqual(await committed(), [])
  })
})
