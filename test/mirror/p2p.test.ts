// The mirror in a cluster: a joey-supernode and two joeyd agents as separate processes. A
// client pulls through agent 1's mirror, then another through agent 2's: the origin sends
// the blobs once, and agent 2 gets them from peers, not from the origin.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { request } from 'undici'
import { Digester, sha256 } from '../../src/common/index.js'
import { startOrigin, type OriginEnv, startAgent, startSupernode, type AgentProc, type Proc } from '../cluster/harness.js'
import { type FixtureImage } from '../fixtures/images.js'
import { type CountingProxy } from '../fixtures/proxy.js'

const MiB = 1024 * 1024
let dir: string
let proxy: CountingProxy
let image: FixtureImage
let procs: Proc[] = []

let origin: OriginEnv | undefined

before(async () => {
  origin = await startOrigin('mirror-p2p', 'app', { layerBytes: 6 * MiB, layers: 2 })
  ;({ dir, proxy, image } = origin)
  procs = origin.procs
})

after(async () => {
  await origin?.cleanup()
})

/** What containerd does through a mirror: the tag, then the manifest's blobs, each checked. */
async function pullThrough (agent: AgentProc): Promise<void> {
  const ns = `?ns=${encodeURIComponent(proxy.host)}`
  const m = await request(`${agent.mirror}/v2/app/manifests/v1${ns}`, { headers: { accept: image.root.mediaType } })
  const body = Buffer.from(await m.body.arrayBuffer())
  assert.equal(m.statusCode, 200, body.toString())
  assert.equal(sha256(body), image.root.digest)
  const manifest = JSON.parse(body.toString()) as { config: { digest: string }, layers: Array<{ digest: string }> }
  for (const digest of [manifest.config.digest, ...manifest.layers.map(l => l.digest)]) {
    const res = await request(`${agent.mirror}/v2/app/blobs/${digest}${ns}`)
    assert.equal(res.statusCode, 200, `${agent.name}: ${digest}`)
    // Hash as the bytes stream in: blobs are not held whole in memory.
    const d = new Digester()
    for await (const chunk of res.body) d.update(chunk as Buffer)
    assert.equal(d.digest(), digest, `${agent.name}: bytes of ${digest}`)
  }
}

test('two agents, one supernode: the second mirror pull comes from peers, the origin sends once', async () => {
  const sn = await startSupernode(join(dir, 'sn'))
  procs.push(sn)
  const [a1, a2] = await Promise.all(['a1', 'a2'].map(async name => {
    const a = await startAgent(dir, name, ['--supernode', sn.url])
    procs.push(a)
    return a
  })) as [AgentProc, AgentProc]
  const total = image.blobs().reduce((n, b) => n + b.size, 0)
  const layers = image.layers.reduce((n, b) => n + b.size, 0)

  proxy.reset()
  await pullThrough(a1)
  await pullThrough(a2)

  // Each blob left the origin once for the whole cluster.
  assert.ok(proxy.stats.blobBytes >= layers && proxy.stats.blobBytes <= total * 1.05, `origin sent ${proxy.stats.blobBytes} bytes for blobs of ${total}`)
  const m2 = await a2.metrics()
  assert.equal(m2.joeyd_origin_bytes_total, 0, 'agent 2 fetched nothing from the origin')
  const peer = m2.joeyd_peer_bytes_total ?? 0
  assert.ok(peer >= layers && peer <= total * 1.05, `agent 2 got ${peer} bytes from peers for blobs of ${total}`)
})
