// A hostile peer in the cluster: it registers with the supernode like any agent, claims
// every piece of the image's layer, and serves each piece with a byte flipped under
// digests that match the bad bytes. Agents must reject every one of them against the
// seed's digests, report it, get it blocked, and still finish with nothing bad stored.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { createReadStream } from 'node:fs'
import { open, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { pieceSizeFor, silentLogger } from '../../src/common/index.js'
import { createP2PHost, openPieceSession } from '../../src/p2p/index.js'
import { type FixtureImage } from '../fixtures/images.js'
import { type CountingProxy } from '../fixtures/proxy.js'
import { startOrigin, type OriginEnv, startAgent, startSupernode, supernodeMetrics, type AgentProc, type Proc } from './harness.js'

const ROOT = new URL('../..', import.meta.url).pathname
const MiB = 1024 * 1024
let dir: string
let proxy: CountingProxy
let image: FixtureImage
let procs: Proc[] = []
const children: ChildProcess[] = []

let origin: OriginEnv | undefined

before(async () => {
  origin = await startOrigin('hostile', 'victim', { layerBytes: 20 * MiB, layers: 1 })
  ;({ dir, proxy, image } = origin)
  procs = origin.procs
})

after(async () => {
  await Promise.all(children.map(async (c) => {
    if (c.exitCode !== null || c.signalCode !== null) return
    const exited = once(c, 'exit')
    process.kill(c.pid as number, 'SIGKILL')
    await exited
  }))
  await origin?.cleanup()
})

interface Hostile { peerId: string, addrs: string[], served: Array<{ digest: string, index: number }> }

async function startHostile (supernode: string, blobs: Array<{ digest: string, file: string }>): Promise<Hostile> {
  const child = spawn(process.execPath, [
    '--import', 'tsx', '--import', './test/setup.ts', 'test/cluster/hostile-peer.ts',
    '--supernode', supernode, ...blobs.flatMap(b => ['--blob', `${b.digest}=${b.file}`])
  ], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
  children.push(child)
  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', (s: string) => { stderr = (stderr + s).slice(-10_000) })
  const served: Hostile['served'] = []
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  const ready = new Promise<{ peerId: string, addrs: string[] }>((resolve, reject) => {
    lines.on('line', (line) => {
      const o = JSON.parse(line) as { event: string, peerId?: string, addrs?: string[], digest?: string, index?: number }
      if (o.event === 'ready') resolve({ peerId: o.peerId as string, addrs: o.addrs as string[] })
      else if (o.event === 'served') served.push({ digest: o.digest as string, index: o.index as number })
    })
    child.once('exit', (code) => { reject(new Error(`hostile peer exited with ${String(code)}: ${stderr}`)) })
    setTimeout(() => { reject(new Error(`hostile peer did not start: ${stderr}`)) }, 30_000).unref()
  })
  return { ...await ready, served }
}

async function sha256File (path: string): Promise<string> {
  const h = createHash('sha256')
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer)
  return h.digest('hex')
}

/** Every committed blob hashes to its name: nothing unverified reached the store. */
async function assertStoreClean (agent: AgentProc): Promise<string[]> {
  const blobsDir = join(agent.dataRoot, 'content', 'blobs', 'sha256')
  const names = await readdir(blobsDir)
  for (const name of names) {
    assert.equal(await sha256File(join(blobsDir, name)), name, `${agent.name}: blob ${name} does not match its name`)
  }
  return names.map(n => `sha256:${n}`)
}

test('corrupt pieces from a hostile peer are rejected, it is blocked, and the pulls finish clean', async () => {
  const layer = image.layers[0]
  assert.ok(layer?.path !== undefined)
  const sn = await startSupernode(join(dir, 'sn'))
  procs.push(sn)
  const evil = await startHostile(sn.url, [{ digest: layer.digest, file: layer.path }])

  // The premise: its bytes pass the piece session's own check (its META digests match them)
  // yet differ from the real piece, so only the agent's check against the seed's digests
  // can catch them.
  const host = createP2PHost({ listen: ['/ip4/127.0.0.1/tcp/0'] }, { logger: silentLogger() })
  await host.start()
  try {
    const session = await openPieceSession(host, evil.addrs[0] as string, layer.digest)
    assert.equal(session.meta.pieceSize, pieceSizeFor(layer.size))
    const got = Buffer.from(await session.request(0))
    await session.close()
    const real = Buffer.alloc(session.meta.pieceSize)
    const fh = await open(layer.path, 'r')
    await fh.read(real, 0, real.length, 0)
    await fh.close()
    assert.equal(got.length, real.length)
    assert.notDeepEqual(got, real)
  } finally {
    await host.stop()
  }
  const probed = evil.served.length

  const agents = await Promise.all(['agent0', 'agent1'].map(async (name) => {
    const a = await startAgent(dir, name, ['--supernode', sn.url])
    procs.push(a)
    return a
  }))
  // The scheduler offers the hostile peer first: a complete holder that is not the seed.
  await Promise.all(agents.map(async a => { await a.pull(`${proxy.host}/victim`, 'v1') }))

  assert.ok(evil.served.length > probed, 'the agents never asked the hostile peer for a piece; the test proves nothing')
  for (const a of agents) {
    const inspect = await a.request('GET', `/images/${proxy.host}/victim:v1/json`)
    assert.equal(inspect.status, 200, `${a.name}: ${inspect.body}`)
    const body = JSON.parse(inspect.body) as { Id: string, RepoDigests: string[] }
    assert.equal(body.Id, image.configs[0]?.digest)
    assert.ok(body.RepoDigests.some(d => d.endsWith(image.root.digest)), body.RepoDigests.join(','))
    const stored = await assertStoreClean(a)
    assert.ok(stored.includes(layer.digest), `${a.name} has no layer blob`)
    // No partial download is left behind either: the layer was committed and its partial removed.
    const partials: string[] = await readdir(join(a.dataRoot, 'partials')).catch(() => [])
    assert.ok(!partials.includes(layer.digest.slice('sha256:'.length)), `${a.name}: leftover partial of the layer`)
  }

  // Both agents were offered it first (the seed gets no request while a peer parent claims
  // the piece), both caught it, dropped it as corrupt and told the supernode.
  const dropped = agents.filter(a => a.logs().split('\n').some(l => l.includes('"dropping parent"') && l.includes(evil.peerId) && l.includes('"reason":"corrupt"')))
  assert.equal(dropped.length, 2, 'each agent drops the hostile peer as corrupt')
  const m = await supernodeMetrics(sn.url)
  assert.ok((m['joey_supernode_parent_failures_total{reason="corrupt"}'] ?? 0) >= dropped.length, JSON.stringify(m))

  const hosts = await (await fetch(`${sn.url}/api/v1/hosts`)).json() as Array<{ peerId: string, failures: number }>
  const evilHost = hosts.find(h => h.peerId === evil.peerId)
  assert.ok((evilHost?.failures ?? 0) >= dropped.length, JSON.stringify(evilHost))
  const tasks = await (await fetch(`${sn.url}/api/v1/tasks`)).json() as Array<{ digest: string, blocked: string[], complete: number }>
  const task = tasks.find(t => t.digest === layer.digest)
  assert.ok(task !== undefined)
  assert.deepEqual(task.blocked, [evil.peerId], 'two reporters block the peer for the whole task')
  assert.equal(task.complete, 4, 'seed, hostile peer (by its own claim) and both agents hold the blob')

  // A newcomer is no longer offered the hostile peer for this blob.
  const probe = 'probe-peer'
  await fetch(`${sn.url}/api/v1/hosts`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ peerId: probe, addrs: [] }) })
  const res = await fetch(`${sn.url}/api/v1/tasks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ digest: layer.digest, size: layer.size, peerId: probe }) })
  const view = await res.json() as { parents: Array<{ peerId: string }> }
  assert.ok(view.parents.length > 0, 'the newcomer gets parents')
  assert.ok(!view.parents.some(p => p.peerId === evil.peerId), `the hostile peer is still offered: ${JSON.stringify(view.parents)}`)

  // The origin sent the layer about once (to the seed), not once per agent.
  assert.ok(proxy.stats.blobBytes <= (layer.size + (image.configs[0]?.size ?? 0)) * 1.1 + MiB, `origin sent ${proxy.stats.blobBytes}`)
  for (const a of agents) await a.stop()
  await sn.stop()
})
