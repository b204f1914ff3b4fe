import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import Fastify, { type FastifyInstance } from 'fastify'
import { supernodeApi, createSupernodeMetrics, pieceSizeFor, type SeedControl } from '../../supernode/api.js'
import { Scheduler } from '../../supernode/scheduler/index.js'
import { silentLogger } from '../../src/common/index.js'

const D = 'sha256:' + 'd'.repeat(64)
let app: FastifyInstance
const ensured: Array<{ digest: string, reference: string, authorization?: string }> = []

before(async () => {
  const scheduler = new Scheduler()
  const seed: SeedControl = {
    peerId: 'seedpeer',
    ensure: (t) => { ensured.push(t) },
    status: () => ({ state: 'fetching' })
  }
  scheduler.upsertHost({ peerId: 'seedpeer', addrs: ['/ip4/127.0.0.1/tcp/9'], seed: true })
  app = Fastify()
  await app.register(supernodeApi({ logger: silentLogger(), scheduler, seed, metrics: createSupernodeMetrics() }))
  await app.ready()
})
after(async () => { await app.close() })

test('piece size rule: 1 MiB, halved to 256 KiB for small blobs, doubled to keep at most 1000 pieces', () => {
  assert.equal(pieceSizeFor(0), 256 * 1024)
  assert.equal(pieceSizeFor(40 * 1024 * 1024), 512 * 1024)
  assert.equal(pieceSizeFor(1000 * 1024 * 1024), 1024 * 1024)
  assert.equal(pieceSizeFor(1001 * 1024 * 1024), 2 * 1024 * 1024)
  assert.equal(pieceSizeFor(4001 * 1024 * 1024), 8 * 1024 * 1024)
  assert.ok(Math.ceil(100 * 1024 ** 3 / pieceSizeFor(100 * 1024 ** 3)) <= 1000)
})

test('agents register, open a task and get the seed as parent', async () => {
  let res = await app.inject({ method: 'POST', url: '/api/v1/hosts', payload: { peerId: 'agent1', addrs: ['/ip4/127.0.0.1/tcp/4001'], labels: { zone: 'a' } } })
  assert.equal(res.statusCode, 200)
  assert.ok(res.json().ttlMs > 0)
  res = await app.inject({ method: 'POST', url: '/api/v1/tasks', payload: { digest: D, size: 2.5 * 1024 * 1024, peerId: 'agent1', reference: '127.0.0.1:5000/busybox', authorization: 'Bearer x' } })
  assert.equal(res.statusCode, 200)
  const body = res.json()
  assert.equal(body.pieceSize, 256 * 1024)
  assert.equal(body.pieceCount, 10)
  assert.deepEqual(body.parents.map((p: { peerId: string }) => p.peerId), ['seedpeer'])
  assert.equal(body.backToSource, false)
  assert.deepEqual(ensured[0], { digest: D, size: 2.5 * 1024 * 1024, reference: '127.0.0.1:5000/busybox', authorization: 'Bearer x' })
})

test('piece digests are accepted from the seed only', async () => {
  let res = await app.inject({ method: 'POST', url: `/api/v1/tasks/${D}/pieces`, payload: { peerId: 'agent1', pieces: [0], pieceDigests: { 0: 'sha256:' + 'e'.repeat(64) } } })
  assert.equal(res.statusCode, 412)
  assert.equal(res.json().code, 'ERR_FAILED_PRECONDITION')
  res = await app.inject({ method: 'POST', url: `/api/v1/tasks/${D}/pieces`, payload: { peerId: 'seedpeer', pieces: [0], pieceDigests: { 0: 'sha256:' + 'e'.repeat(64) } } })
  assert.equal(res.statusCode, 204)
  res = await app.inject({ method: 'GET', url: `/api/v1/tasks/${D}` })
  assert.equal(res.json().pieceDigests[0], 'sha256:' + 'e'.repeat(64))
  // A parents call sends only the digests the asker does not know yet.
  res = await app.inject({ method: 'POST', url: `/api/v1/tasks/${D}/parents`, payload: { peerId: 'agent1' } })
  const all = res.json().pieceDigests as Array<string | null>
  assert.equal(res.json().pieceDigestsFrom, undefined)
  assert.equal(all[0], 'sha256:' + 'e'.repeat(64))
  res = await app.inject({ method: 'POST', url: `/api/v1/tasks/${D}/parents`, payload: { peerId: 'agent1', digestsFrom: 1 } })
  assert.equal(res.statusCode, 200)
  assert.equal(res.json().pieceDigestsFrom, 1)
  assert.deepEqual(res.json().pieceDigests, all.slice(1))
  res = await app.inject({ method: 'POST', url: `/api/v1/tasks/${D}/parents`, payload: { peerId: 'agent1', digestsFrom: 99 } })
  assert.equal(res.json().pieceDigestsFrom, all.length)
  assert.deepEqual(res.json().pieceDigests, [])
})

test('reports, failures, listings, health and metrics', async () => {
  await app.inject({ method: 'POST', url: '/api/v1/hosts', payload: { peerId: 'agent2', addrs: [] } })
  let res = await app.inject({ method: 'POST', url: `/api/v1/tasks/${D}/pieces`, payload: { peerId: 'agent1', pieces: [0, 1, 2], complete: true } })
  assert.equal(res.statusCode, 204)
  res = await app.inject({ method: 'POST', url: `/api/v1/tasks/${D}/parents`, payload: { peerId: 'agent2' } })
  assert.ok(res.json().parents.some((p: { peerId: string }) => p.peerId === 'agent1'), JSON.stringify(res.json().parents))
  res = await app.inject({ method: 'POST', url: `/api/v1/tasks/${D}/failures`, payload: { peerId: 'agent2', parent: 'agent1', reason: 'corrupt' } })
  assert.equal(res.statusCode, 204)
  res = await app.inject({ method: 'POST', url: `/api/v1/tasks/${D}/parents`, payload: { peerId: 'agent2' } })
  assert.ok(!res.json().parents.some((p: { peerId: string }) => p.peerId === 'agent1'))
  res = await app.inject({ method: 'GET', url: '/api/v1/tasks' })
  assert.equal(res.json()[0].complete, 1)
  res = await app.inject({ method: 'GET', url: '/api/v1/hosts' })
  assert.equal(res.json().length, 3)
  res = await app.inject({ method: 'GET', url: '/healthz' })
  assert.equal(res.json().status, 'ok')
  res = await app.inject({ method: 'GET', url: '/metrics' })
  assert.match(res.body, /joey_supernode_parent_failures_total\{reason="corrupt"\} 1/)
  assert.match(res.body, /joey_supernode_hosts 3/)
})

test('wrong bodies get 400 with a stable code; unknown things 404', async () => {
  const cases: Array<[string, string, unknown, number]> = [
    ['POST', '/api/v1/hosts', { addrs: [] }, 400],
    ['POST', '/api/v1/hosts', { peerId: '../x', addrs: [] }, 400],
    ['POST', '/api/v1/tasks', { digest: 'sha256:zz', size: 1, peerId: 'agent1' }, 400],
    ['POST', '/api/v1/tasks', { digest: D, size: -5, peerId: 'agent1' }, 400],
    ['POST', '/api/v1/tasks', { digest: D, size: 1, peerId: 'agent1' }, 502],
    ['POST', '/api/v1/tasks', { digest: 'sha256:' + 'f'.repeat(64), size: 1, peerId: 'nobody' }, 404],
    ['POST', `/api/v1/tasks/${D}/pieces`, { peerId: 'agent1', pieces: [99] }, 400],
    ['POST', `/api/v1/tasks/${D}/parents`, { peerId: 'agent1', digestsFrom: -1 }, 400],
    ['POST', `/api/v1/tasks/${D}/parents`, { peerId: 'agent1', digestsFrom: 'x' }, 400],
    ['POST', `/api/v1/tasks/${D}/failures`, { peerId: 'agent1', parent: 'x', reason: 'bored' }, 400],
    ['POST', `/api/v1/tasks/${'sha256:' + '1'.repeat(64)}/parents`, { peerId: 'agent1' }, 404],
    ['GET', '/nope', undefined, 404]
  ]
  for (const [method, url, payload, status] of cases) {
    const res = await app.inject({ method: method as 'POST', url, ...(payload !== undefined ? { payload: payload as object } : {}) })
    assert.equal(res.statusCode, status, `${method} ${url} ${JSON.stringify(payload)} → ${res.statusCode} ${res.body}`)
    assert.match(res.json().code, /^ERR_/)
  }
  const garbage = await app.inject({ method: 'POST', url: '/api/v1/hosts', headers: { 'content-type': 'application/json' }, payload: '{nope' })
  assert.equal(garbage.statusCode, 400)
})
