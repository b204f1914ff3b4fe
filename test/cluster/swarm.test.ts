// A private swarm: the supernode's seed and the agents share one swarm key, so only they
// can open libp2p connections to each other. An agent without the key, or with another
// one, still talks HTTP to the supernode and is offered parents, but cannot reach any of
// them: its pull still finishes, from the origin alone.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateSwarmKey } from '../../src/p2p/index.js'
import { type FixtureImage } from '../fixtures/images.js'
import { type CountingProxy } from '../fixtures/proxy.js'
import { startOrigin, type OriginEnv, startAgent, startSupernode, supernodeMetrics, type AgentProc, type Proc } from './harness.js'

const MiB = 1024 * 1024
let dir: string
let proxy: CountingProxy
let image: FixtureImage
let procs: Proc[] = []

let origin: OriginEnv | undefined

before(async () => {
  origin = await startOrigin('swarm', 'private', { layerBytes: 16 * MiB, layers: 1 })
  ;({ dir, proxy, image } = origin)
  procs = origin.procs
})

after(async () => {
  await origin?.cleanup()
})

async function checkImage (agent: AgentProc): Promise<void> {
  const r = await agent.request('GET', `/images/${proxy.host}/private:v1/json`)
  assert.equal(r.status, 200, `${agent.name}: ${r.body}`)
  assert.equal((JSON.parse(r.body) as { Id: string }).Id, image.configs[0]?.digest)
}

/** The agent's libp2p peer id, from its start-up log line. */
function peerIdOf (agent: AgentProc): string {
  for (const line of agent.logs().split('\n')) {
    try {
      const o = JSON.parse(line) as { msg?: string, peerId?: string }
      if (o.msg === 'p2p host started' && o.peerId !== undefined) return o.peerId
    } catch {}
  }
  throw new Error(`${agent.name} logged no peer id`)
}

/** Parents this agent dropped because it could not open a piece session to them. */
function refusedParents (agent: AgentProc): Set<string> {
  const out = new Set<string>()
  for (const line of agent.logs().split('\n')) {
    if (!line.includes('"dropping parent"')) continue
    try {
      const o = JSON.parse(line) as { parent?: string, reason?: string }
      if (o.reason === 'refused' && o.parent !== undefined) out.add(o.parent)
    } catch {}
  }
  return out
}

test('agents with the swarm key share pieces; agents without it fall back to the origin', async () => {
  const layer = image.layers[0]
  assert.ok(layer !== undefined)
  const key = join(dir, 'swarm.key')
  const otherKey = join(dir, 'other.key')
  await writeFile(key, generateSwarmKey(), { mode: 0o600 })
  await writeFile(otherKey, generateSwarmKey(), { mode: 0o600 })

  const sn = await startSupernode(join(dir, 'sn'), ['--swarm-key', key])
  procs.push(sn)
  const start = async (name: string, extra: string[]): Promise<AgentProc> => {
    const a = await startAgent(dir, name, ['--supernode', sn.url, ...extra])
    procs.push(a)
    return a
  }
  const [first, second, keyless, wrongKey] = await Promise.all([
    start('member0', ['--swarm-key', key]),
    start('member1', ['--swarm-key', key]),
    start('keyless', []),
    start('wrongkey', ['--swarm-key', otherKey])
  ])

  // Members one after the other: the first is fed by the seed, the second by the first.
  await first.pull(`${proxy.host}/private`, 'v1')
  await second.pull(`${proxy.host}/private`, 'v1')
  for (const a of [first, second]) {
    await checkImage(a)
    const m = await a.metrics()
    assert.equal(m.joeyd_origin_bytes_total, 0, `${a.name} fetched from the origin`)
    assert.ok((m.joeyd_peer_bytes_total ?? 0) >= layer.size, `${a.name}: peer bytes ${m.joeyd_peer_bytes_total}`)
  }
  assert.ok(((await first.metrics()).joeyd_peer_bytes_served_total ?? 0) > 0, 'the first member served the second')
  const snm = await supernodeMetrics(sn.url)
  assert.ok((snm.joey_supernode_seed_origin_bytes_total ?? 0) <= layer.size * 1.05, 'the seed fetched the layer once')

  // Outsiders pull after the members finished, so their failed dials cannot slow the members.
  const memberIds = new Set([sn.peerId, peerIdOf(first), peerIdOf(second)])
  await Promise.all([keyless.pull(`${proxy.host}/private`, 'v1'), wrongKey.pull(`${proxy.host}/private`, 'v1')])
  for (const a of [keyless, wrongKey]) {
    await checkImage(a)
    const m = await a.metrics()
    assert.equal(m.joeyd_peer_bytes_total, 0, `${a.name} got bytes from a peer`)
    const origin = m.joeyd_origin_bytes_total ?? 0
    assert.ok(origin >= layer.size && origin <= layer.size * 1.05, `${a.name}: origin bytes ${origin} for a ${layer.size}-byte layer`)
    // It was offered the swarm's members as parents and could not connect to any of them.
    const refused = refusedParents(a)
    assert.ok(refused.size > 0, `${a.name} never tried a parent`)
    for (const id of refused) assert.ok(memberIds.has(id) || id === peerIdOf(keyless) || id === peerIdOf(wrongKey), `${a.name} refused an unknown peer ${id}`)
    assert.ok([...refused].some(id => memberIds.has(id)), `${a.name} was never offered a member of the swarm`)
  }
  // Members served nothing to the outsiders.
  const seedServed = (await supernodeMetrics(sn.url)).joey_supernode_seed_bytes_served_total ?? 0
  assert.equal(seedServed, snm.joey_supernode_seed_bytes_served_total ?? 0, 'the seed served an outsider')
  for (const a of [keyless, wrongKey, first, second]) await a.stop()
  await sn.stop()
})
