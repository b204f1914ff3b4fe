// The supernode's state is soft: restarted on the same data root and port, it learns again
// from the agents' heartbeats who holds what, and a newcomer is fed by the old agents, not
// by the origin.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { type FixtureImage } from '../fixtures/images.js'
import { type CountingProxy } from '../fixtures/proxy.js'
import { startOrigin, type OriginEnv, startAgent, startSupernode, supernodeMetrics, type Proc } from './harness.js'

const MiB = 1024 * 1024
let dir: string
let proxy: CountingProxy
let image: FixtureImage
let procs: Proc[] = []

let origin: OriginEnv | undefined

before(async () => {
  origin = await startOrigin('restart', 'soft', { layerBytes: 16 * MiB, layers: 1 })
  ;({ dir, proxy, image } = origin)
  procs = origin.procs
})

after(async () => {
  await origin?.cleanup()
})

/** A loopback port free right now (the kernel picks it; we release it for the supernode). */
async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', resolve) })
  const { port } = server.address() as AddressInfo
  await new Promise<void>(resolve => { server.close(() => { resolve() }) })
  return port
}

interface TaskRow { digest: string, peers: number, complete: number }
interface HostRow { peerId: string, seed: boolean }

async function getJson<T> (url: string): Promise<T> {
  const res = await fetch(url)
  assert.equal(res.status, 200, url)
  return await res.json() as T
}

async function waitFor<T> (what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await probe()
      if (v !== undefined) return v
    } catch (err) { last = err }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last !== undefined ? `: ${String(last)}` : ''}`)
    await sleep(200)
  }
}

test('a restarted supernode relearns holders from heartbeats; a newcomer pulls from the old agents', async () => {
  const layer = image.layers[0]
  assert.ok(layer !== undefined)
  const snRoot = join(dir, 'sn')
  // Agents know the supernode by URL, so the new process must come back on the same port.
  // The probed port could be taken in between; one retry with a new one covers that.
  let port = await freePort()
  let sn1
  try {
    sn1 = await startSupernode(snRoot, ['--listen', `127.0.0.1:${port}`])
  } catch {
    port = await freePort()
    sn1 = await startSupernode(snRoot, ['--listen', `127.0.0.1:${port}`])
  }
  procs.push(sn1)
  const url = `http://127.0.0.1:${port}`
  assert.equal(sn1.url, url)

  // The newcomer starts with the others (start-up is the slow part) but pulls only later.
  const [old0, old1, newcomer] = await Promise.all(['old0', 'old1', 'new'].map(async (name) => {
    const a = await startAgent(dir, name, ['--supernode', url, '--supernode-heartbeat', '500'])
    procs.push(a)
    return a
  }))
  assert.ok(old0 !== undefined && old1 !== undefined && newcomer !== undefined)
  const old = [old0, old1]
  await Promise.all(old.map(async a => { await a.pull(`${proxy.host}/soft`, 'v1') }))
  const agentIds = (await getJson<HostRow[]>(`${url}/api/v1/hosts`)).filter(h => !h.seed).map(h => h.peerId).sort()
  assert.equal(agentIds.length, 3)

  await sn1.stop()
  const sn2 = await startSupernode(snRoot, ['--listen', `127.0.0.1:${port}`])
  procs.push(sn2)
  assert.equal(sn2.url, url)
  assert.equal(sn2.peerId, sn1.peerId, 'the seed keeps its identity across restarts (peer.key in the data root)')

  // Heartbeats bring the hosts back, and the supernode's "I do not know you" makes each
  // agent re-report the blobs it holds.
  const row = await waitFor('the old agents to re-report the layer', 15_000, async () => {
    const hosts = (await getJson<HostRow[]>(`${url}/api/v1/hosts`)).filter(h => !h.seed).map(h => h.peerId).sort()
    const task = (await getJson<TaskRow[]>(`${url}/api/v1/tasks`)).find(t => t.digest === layer.digest)
    return hosts.length === 3 && (task?.complete ?? 0) >= 2 ? { hosts, task } : undefined
  })
  assert.deepEqual(row.hosts, agentIds)
  assert.equal(row.task?.complete, 2)

  const before = await Promise.all(old.map(async a => (await a.metrics()).joeyd_peer_bytes_served_total ?? 0))
  await newcomer.pull(`${proxy.host}/soft`, 'v1')
  const inspect = await newcomer.request('GET', `/images/${proxy.host}/soft:v1/json`)
  assert.equal(inspect.status, 200, inspect.body)
  assert.equal((JSON.parse(inspect.body) as { Id: string }).Id, image.configs[0]?.digest)

  const m = await newcomer.metrics()
  assert.equal(m.joeyd_origin_bytes_total, 0, 'the newcomer fetched nothing from the origin')
  assert.ok((m.joeyd_peer_bytes_total ?? 0) >= layer.size, `peer bytes ${m.joeyd_peer_bytes_total}`)
  const after = await Promise.all(old.map(async a => (await a.metrics()).joeyd_peer_bytes_served_total ?? 0))
  const fromOld = after.reduce((n, v, i) => n + v - (before[i] ?? 0), 0)
  const snm = await supernodeMetrics(url)
  const fromSeed = snm.joey_supernode_seed_bytes_served_total ?? 0
  assert.ok(fromOld >= layer.size / 2 && fromOld > fromSeed, `old agents served ${fromOld} bytes, the seed ${fromSeed}`)
  // The seed re-published its piece digests from the copy kept in its data root.
  assert.equal(snm.joey_supernode_seed_origin_bytes_total ?? 0, 0)

  for (const a of [...old, newcomer]) await a.stop()
  await sn2.stop()
})
