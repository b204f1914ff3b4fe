// A real cluster on loopback: joey-supernode and joeyd agents as separate processes,
// libp2p (Noise) between them, a real registry behind a counting proxy as the origin.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { type FixtureImage } from '../fixtures/images.js'
import { type TestRegistry } from '../fixtures/registry.js'
import { type CountingProxy } from '../fixtures/proxy.js'
import { startOrigin, type OriginEnv, startAgent, startSupernode, supernodeMetrics, type AgentProc, type Proc } from './harness.js'

const MiB = 1024 * 1024
let dir: string
let registry: TestRegistry
let proxy: CountingProxy
let image: FixtureImage
let imageBytes: number
let procs: Proc[] = []
let origin: OriginEnv | undefined

before(async () => {
  origin = await startOrigin('cluster', 'big', { layerBytes: 24 * MiB, layers: 2 })
  ;({ dir, registry, proxy, image, imageBytes } = origin)
  procs = origin.procs
  // One repository per test, so each test's origin bytes are its own.
  for (const repo of ['big2', 'big3', 'big4']) await registry.push(repo, 'v1', image)
})

after(async () => { await origin?.cleanup() })

async function checkImage (agent: AgentProc, repo: string): Promise<void> {
  const r = await agent.request('GET', `/images/${proxy.host}/${repo}:v1/json`)
  assert.equal(r.status, 200, `${agent.name}: ${r.body}`)
  const inspect = JSON.parse(r.body) as { Id: string, RepoDigests: string[] }
  assert.equal(inspect.Id, image.configs[0]?.digest)
  assert.ok(inspect.RepoDigests.some(d => d.endsWith(image.root.digest)), `${agent.name}: ${inspect.RepoDigests.join(',')}`)
}

test('six agents pull at once: the origin sends each blob about once, agents feed each other', async () => {
  // The seed's link is as fast as an agent's, as in a real cluster.
  const sn = await startSupernode(join(dir, 'sn1'), ['--upload-limit', '16M'])
  procs.push(sn)
  const agents = await Promise.all(Array.from({ length: 6 }, async (_, i) => {
    const a = await startAgent(join(dir, 'c1'), `agent${i}`, ['--supernode', sn.url, '--download-limit', '16M', ...(process.env.JOEY_DEBUG_CLUSTER !== undefined ? ['--log-level', 'debug'] : [])])
    procs.push(a)
    return a
  }))
  proxy.reset()
  await Promise.all(agents.map(async a => { await a.pull(`${proxy.host}/big`, 'v1') }))
  for (const a of agents) await checkImage(a, 'big')
  const origin = proxy.stats.blobBytes
  if (process.env.JOEY_DEBUG_CLUSTER !== undefined) {
    for (const a of agents) {
      const lines = a.logs().split('\n').filter(l => /adding parent|piece received/.test(l)).map(l => JSON.parse(l) as { msg: string, seed: boolean, time: number })
      const t0 = lines[0]?.time ?? 0
      process.stderr.write(a.name + ' ' + lines.map(l => `${l.time - t0}:${l.msg === 'adding parent' ? 'P' : ''}${l.seed ? 'S' : 'a'}`).join(' ') + '\n')
    }
  }
  assert.ok(origin <= imageBytes * 1.05, `origin sent ${origin} bytes for an image of ${imageBytes}`)
  const snm = await supernodeMetrics(sn.url)
  const seedServed = snm.joey_supernode_seed_bytes_served_total ?? 0
  let agentsServed = 0
  for (const a of agents) agentsServed += (await a.metrics()).joeyd_peer_bytes_served_total ?? 0
  assert.ok(agentsServed > seedServed, `agents served ${agentsServed} bytes, the seed ${seedServed}`)
  for (const a of agents) await a.stop()
  await sn.stop()
})

test('an agent killed mid-transfer: the others finish', async () => {
  const sn = await startSupernode(join(dir, 'sn2'))
  procs.push(sn)
  const agents = await Promise.all(Array.from({ length: 4 }, async (_, i) => {
    const a = await startAgent(join(dir, 'c2'), `agent${i}`, ['--supernode', sn.url, '--download-limit', '24M'])
    procs.push(a)
    return a
  }))
  const [victim, ...rest] = agents as [AgentProc, ...AgentProc[]]
  const pulls = rest.map(async a => { await a.pull(`${proxy.host}/big2`, 'v1') })
  const victimPull = victim.pull(`${proxy.host}/big2`, 'v1').catch(() => {})
  await sleep(700)
  await victim.kill()
  await victimPull
  await Promise.all(pulls)
  for (const a of rest) await checkImage(a, 'big2')
  for (const a of rest) await a.stop()
  await sn.stop()
})

test('the supernode killed mid-pull: every agent finishes', async () => {
  const sn = await startSupernode(join(dir, 'sn3'))
  procs.push(sn)
  const agents = await Promise.all(Array.from({ length: 3 }, async (_, i) => {
    const a = await startAgent(join(dir, 'c3'), `agent${i}`, ['--supernode', sn.url, '--download-limit', '24M'])
    procs.push(a)
    return a
  }))
  const pulls = agents.map(async a => { await a.pull(`${proxy.host}/big3`, 'v1') })
  await sleep(700)
  await sn.kill()
  await Promise.all(pulls)
  for (const a of agents) await checkImage(a, 'big3')
  for (const a of agents) await a.stop()
})

test('no supernode reachable: agents pull from the origin and finish', async () => {
  const agents = await Promise.all(Array.from({ length: 2 }, async (_, i) => {
    const a = await startAgent(join(dir, 'c4'), `agent${i}`, ['--supernode', 'http://127.0.0.1:9'])
    procs.push(a)
    return a
  }))
  proxy.reset()
  await Promise.all(agents.map(async a => { await a.pull(`${proxy.host}/big4`, 'v1') }))
  for (const a of agents) await checkImage(a, 'big4')
  for (const a of agents) {
    const m = await a.metrics()
    assert.ok((m.joeyd_origin_bytes_total ?? 0) >= imageBytes * 0.99, `${a.name} counted ${m.joeyd_origin_bytes_total} origin bytes`)
  }
  for (const a of agents) await a.stop()
})
