import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Scheduler, SCHEDULER_DEFAULTS } from '../../supernode/scheduler/index.js'
import { Bitfield } from '../../src/common/bitfield.js'
import { PeerTable } from '../../supernode/scheduler/tables.js'

const D = 'sha256:' + 'a'.repeat(64)

/** Most tests here pin the ranked mode's rules; the default (a mesh) is tested by name. */
function setup (n: number, opts: ConstructorParameters<typeof Scheduler>[0] = {}): Scheduler {
  let t = 1000
  const s = new Scheduler({ now: () => t, random: () => 0.5, ranked: true, ...opts })
  ;(s as unknown as { tick: (ms: number) => void }).tick = (ms: number) => { t += ms }
  s.upsertHost({ peerId: 'seed', addrs: ['/ip4/127.0.0.1/tcp/1'], seed: true, uploadSlots: 4 })
  for (let i = 1; i <= n; i++) s.upsertHost({ peerId: `p${i}`, addrs: [`/ip4/127.0.0.1/tcp/${1000 + i}`], uploadSlots: 4 })
  s.upsertTask(D, { size: 40 * 1024 * 1024, pieceSize: 4 * 1024 * 1024 })
  s.joinTask(D, 'seed')
  return s
}

test('Bitfield counts, grows, compares and round-trips', () => {
  const a = new Bitfield(10); const b = new Bitfield(10)
  a.set(1); a.set(3); a.set(3); a.set(9)
  b.set(3)
  assert.equal(a.count, 3)
  assert.equal(a.countMissingIn(b), 2)
  assert.throws(() => a.set(20), { code: 'ERR_INVALID_ARGUMENT' })
  a.resize(21)
  a.set(20)
  assert.equal(a.length, 21)
  assert.deepEqual(a.toArray(), [1, 3, 9, 20])
  assert.equal(a.toBytes()[0], 0b01010000)
  assert.deepEqual(Bitfield.fromBytes(a.toBytes(), 21).toArray(), [1, 3, 9, 20])
  assert.throws(() => a.set(-1), { code: 'ERR_INVALID_ARGUMENT' })
  assert.equal(a.has(1.5), false)
})

test('the first peer gets the seed; later peers prefer agents holding pieces', () => {
  const s = setup(3)
  s.joinTask(D, 'p1')
  const first = s.parents(D, 'p1')
  assert.deepEqual(first.parents.map(p => p.peerId), ['seed'])
  assert.equal(first.backToSource, false)
  s.reportPieces(D, 'p1', { pieces: [0, 1, 2] })
  s.joinTask(D, 'p2')
  const second = s.parents(D, 'p2')
  assert.equal(second.parents[0]?.peerId, 'p1', 'an agent with pieces ranks above the seed')
  assert.ok(second.parents.some(p => p.peerId === 'seed'))
})

test('ranks keep the parent graph acyclic', () => {
  const s = setup(2)
  s.joinTask(D, 'p1'); s.joinTask(D, 'p2')
  s.reportPieces(D, 'p1', { pieces: [0] })
  s.reportPieces(D, 'p2', { pieces: [1] })
  const p1 = s.parents(D, 'p1')
  assert.ok(!p1.parents.some(p => p.peerId === 'p2'), 'p1 must not take its later peer p2 as parent')
  const p2 = s.parents(D, 'p2')
  assert.ok(p2.parents.some(p => p.peerId === 'p1'))
  // Once p2 completes it may serve anyone without creating a loop.
  s.reportPieces(D, 'p2', { complete: true })
  const again = s.parents(D, 'p1')
  assert.ok(again.parents.some(p => p.peerId === 'p2'))
})

test('same zone and rack come first', () => {
  const s = setup(0)
  s.upsertHost({ peerId: 'far', addrs: [], labels: { zone: 'b', rack: 'r9' } })
  s.upsertHost({ peerId: 'zone', addrs: [], labels: { zone: 'a', rack: 'r2' } })
  s.upsertHost({ peerId: 'rack', addrs: [], labels: { zone: 'a', rack: 'r1' } })
  s.upsertHost({ peerId: 'me', addrs: [], labels: { zone: 'a', rack: 'r1' } })
  for (const id of ['far', 'zone', 'rack']) { s.joinTask(D, id); s.reportPieces(D, id, { complete: true }) }
  s.joinTask(D, 'me')
  const choice = s.parents(D, 'me')
  assert.deepEqual(choice.parents.slice(0, 3).map(p => p.peerId), ['rack', 'zone', 'far'])
  // Labels sent again with a heartbeat take effect at once.
  s.upsertHost({ peerId: 'far', addrs: [], labels: { zone: 'a', rack: 'r1' } })
  s.upsertHost({ peerId: 'rack', addrs: [], labels: { zone: 'b' } })
  // (The seed comes first now: a seed child keeps its seed.)
  assert.deepEqual(s.parents(D, 'me').parents.map(p => p.peerId).filter(id => id !== 'seed'), ['far', 'zone', 'rack'])
})

test('load spreads: no parent gets more children than its slots while others are free', () => {
  const s = setup(40, { maxParents: 2 })
  for (let i = 1; i <= 8; i++) { s.joinTask(D, `p${i}`); s.reportPieces(D, `p${i}`, { complete: true }) }
  for (let i = 9; i <= 40; i++) s.joinTask(D, `p${i}`)
  for (let i = 9; i <= 24; i++) s.parents(D, `p${i}`)
  for (let i = 1; i <= 8; i++) {
    const load = s.hosts.get(`p${i}`)?.load ?? 0
    assert.ok(load <= 4, `p${i} has ${load} children, over its 4 slots`)
  }
  assert.equal(s.hosts.get('seed')?.load, 0, 'the seed is spared while agents have free slots')
})

test('a corrupt parent is blocked for the reporter, and for everyone after two reporters', () => {
  const s = setup(4)
  s.joinTask(D, 'p1'); s.reportPieces(D, 'p1', { complete: true })
  for (const id of ['p2', 'p3', 'p4']) s.joinTask(D, id)
  s.reportFailure(D, 'p2', 'p1', 'corrupt')
  assert.ok(!s.parents(D, 'p2').parents.some(p => p.peerId === 'p1'))
  assert.ok(s.parents(D, 'p3').parents.some(p => p.peerId === 'p1'))
  s.reportFailure(D, 'p3', 'p1', 'corrupt')
  assert.ok(!s.parents(D, 'p4').parents.some(p => p.peerId === 'p1'))
})

test('repeatedly failing hosts are skipped until the failure window passes', () => {
  const s = setup(3, { maxFailures: 2, failureWindowMs: 1000 })
  s.joinTask(D, 'p1'); s.reportPieces(D, 'p1', { complete: true })
  s.joinTask(D, 'p2')
  s.reportFailure(D, 'p2', 'p1', 'timeout')
  s.reportFailure(D, 'p2', 'p1', 'timeout')
  assert.ok(!s.parents(D, 'p2').parents.some(p => p.peerId === 'p1'))
  ;(s as unknown as { tick: (ms: number) => void }).tick(5000)
  assert.ok(s.parents(D, 'p2').parents.some(p => p.peerId === 'p1'))
})

test('back to source is allowed only without a seed, and capped per task', () => {
  const s = new Scheduler({ maxBackToSource: 2 })
  for (const id of ['a', 'b', 'c', 'd']) s.upsertHost({ peerId: id, addrs: [] })
  s.upsertTask(D, { size: 10, pieceSize: 4 })
  assert.equal(s.parents(D, 'a').backToSource, true, 'the first peer of a seedless task goes to the origin')
  const b = s.parents(D, 'b')
  assert.deepEqual([b.backToSource, b.parents.map(p => p.peerId)], [false, ['a']], 'the next relays from it')
  assert.equal(s.parents(D, 'c', { exclude: ['a', 'b'] }).backToSource, true, 'a peer that cannot reach the others may go')
  assert.equal(s.parents(D, 'd', { exclude: ['a', 'b', 'c'] }).backToSource, false, 'but no more than the cap at once')
  s.reportPieces(D, 'a', { complete: true })
  assert.equal(s.parents(D, 'd', { exclude: ['b', 'c'] }).parents[0]?.peerId, 'a')
})

test('soft state: hosts expire after the TTL and leave their tasks', () => {
  const s = setup(2, { hostTtlMs: 100 })
  s.joinTask(D, 'p1'); s.reportPieces(D, 'p1', { pieces: [0] })
  ;(s as unknown as { tick: (ms: number) => void }).tick(50)
  s.upsertHost({ peerId: 'p2', addrs: [] })
  ;(s as unknown as { tick: (ms: number) => void }).tick(60)
  assert.deepEqual(s.expireHosts(), ['p1'])
  assert.equal(s.tasks.get(D)?.peers.has('p1'), false)
  assert.ok(s.hosts.has('seed'), 'seeds do not expire')
})

test('bad input gets stable codes', () => {
  const s = setup(1)
  assert.throws(() => s.reportPieces(D, 'p1', { pieces: [999] }), { code: 'ERR_INVALID_ARGUMENT' })
  assert.throws(() => s.parents('sha256:' + 'b'.repeat(64), 'p1'), { code: 'ERR_NOT_FOUND' })
  assert.throws(() => s.joinTask(D, 'stranger'), { code: 'ERR_NOT_FOUND' })
  assert.throws(() => s.upsertTask('sha256:' + 'c'.repeat(64), { size: -1, pieceSize: 4 }), { code: 'ERR_INVALID_ARGUMENT' })
})

test('a seed feeds a few children per task; the rest relay from agents', () => {
  const s = setup(8, { seedChildrenPerTask: 2 })
  for (let i = 1; i <= 8; i++) s.joinTask(D, `p${i}`)
  const seedChildren = (): number => [...(s.tasks.get(D)?.peers.values() ?? [])].filter(p => p.parents.has('seed')).length
  for (let i = 1; i <= 8; i++) s.parents(D, `p${i}`)
  assert.ok(seedChildren() <= 2, `the seed has ${seedChildren()} children`)
  for (let i = 3; i <= 8; i++) assert.ok(s.parents(D, `p${i}`).parents.length > 0, `p${i} got no parent`)
})

test('with thousands of peers a decision samples, and still honours ranks and complete peers', () => {
  let r = 0
  const s = setup(0, { random: () => { r = (r * 9301 + 49297) % 233280; return r / 233280 } })
  for (let i = 1; i <= 2000; i++) { s.upsertHost({ peerId: `p${i}`, addrs: [] }); s.joinTask(D, `p${i}`) }
  for (let i = 1; i <= 1500; i++) s.reportPieces(D, `p${i}`, { pieces: [i % 10] })
  for (const i of [1800, 1900]) s.reportPieces(D, `p${i}`, { complete: true })
  const rank = (id: string): number => s.tasks.get(D)?.peers.get(id)?.rank ?? -1
  const choice = s.parents(D, 'p1000')
  assert.equal(choice.parents.length, 4)
  for (const p of choice.parents) {
    const parent = s.tasks.get(D)?.peers.get(p.peerId)
    assert.ok(parent?.complete === true || rank(p.peerId) < rank('p1000'), `${p.peerId} is neither earlier nor complete`)
  }
  // An early peer sees the complete ones among the thousands that joined after it.
  s.reportPieces(D, 'p2', { pieces: [0, 1, 2, 3, 4, 5, 6, 7, 8] })
  const early = s.parents(D, 'p2').parents.map(p => p.peerId)
  assert.ok(early.includes('p1800') && early.includes('p1900'), `p2 got ${early.join(',')}`)
})

test('a leaving parent gives back its children: load and links stay consistent', () => {
  const s = setup(6)
  for (let i = 1; i <= 6; i++) s.joinTask(D, `p${i}`)
  s.reportPieces(D, 'p1', { complete: true })
  s.reportPieces(D, 'p2', { pieces: [0] })
  for (let i = 3; i <= 6; i++) s.parents(D, `p${i}`)
  const children = (id: string): number => [...(s.tasks.get(D)?.peers.values() ?? [])].filter(p => p.parents.has(id)).length
  assert.equal(s.hosts.get('p1')?.load, children('p1'))
  s.leaveTask(D, 'p1')
  assert.equal(children('p1'), 0)
  assert.equal(s.hosts.get('p1')?.load, 0)
  assert.equal(s.hosts.get('p2')?.load, children('p2'))
  s.reportFailure(D, 'p3', 'p2', 'timeout')
  assert.equal(s.hosts.get('p2')?.load, children('p2'))
  assert.ok(!s.tasks.get(D)?.peers.get('p2')?.children.has('p3'))
})

test('a seed child keeps its seed until it completes, so the cap counts it', () => {
  const s = setup(6, { seedChildrenPerTask: 1, maxParents: 2 })
  for (let i = 1; i <= 6; i++) s.joinTask(D, `p${i}`)
  assert.deepEqual(s.parents(D, 'p1').parents.map(p => p.peerId), ['seed'])
  // p1 now has better candidates than the seed, yet keeps it.
  for (let i = 2; i <= 4; i++) s.reportPieces(D, `p${i}`, { complete: true })
  assert.ok(s.parents(D, 'p1').parents.some(p => p.peerId === 'seed'))
  assert.ok(!s.parents(D, 'p5').parents.some(p => p.peerId === 'seed'), 'the seed has its one child')
  s.reportPieces(D, 'p1', { complete: true })
  assert.equal(s.tasks.get(D)?.peers.get('seed')?.children.size, 0)
})

test('unranked (the default), peers may take later peers as parents, and the seed its first children', () => {
  assert.equal(SCHEDULER_DEFAULTS.ranked, false)
  const s = setup(4, { ranked: false, seedChildrenPerTask: 1 })
  for (let i = 1; i <= 4; i++) s.joinTask(D, `p${i}`)
  assert.deepEqual(s.parents(D, 'p1').parents.map(p => p.peerId), ['seed'], 'the first asker gets the seed')
  s.reportPieces(D, 'p4', { pieces: [0, 1] })
  const p2 = s.parents(D, 'p2').parents.map(p => p.peerId)
  assert.ok(p2.includes('p4'), `p2 may take the later p4: ${p2.join(',')}`)
  assert.ok(!p2.includes('seed'))
})

test('the peer table counts pieces a row holds and another lacks, across words, and widens', () => {
  const t = new PeerTable(40)
  const a = t.alloc(); const b = t.alloc()
  for (const i of [0, 31, 32, 39]) t.set(a, i)
  assert.equal(t.set(a, 31), false, 'a piece is counted once')
  t.set(b, 31)
  assert.equal(t.missingIn(a, b), 3)
  assert.equal(t.missingIn(b, a), 0)
  t.widen(300)
  t.set(b, 299)
  assert.deepEqual([t.has(a, 32), t.has(a, 33), t.has(b, 299), t.missingIn(a, b), t.missingIn(b, a)], [true, false, true, 3, 1])
  // Growing past the first rows keeps what the rows hold.
  const more = Array.from({ length: 100 }, () => t.alloc())
  for (const r of more) t.set(r, r % 300)
  assert.ok(more.every(r => t.has(r, r % 300)) && t.has(a, 39) && t.has(b, 299))
  t.release(a)
  const c = t.alloc()
  assert.equal(c, a, 'a released row is reused')
  assert.deepEqual([t.has(c, 0), t.missingIn(c, b)], [false, 0], 'and starts empty')
})

test('pieces reported before the blob size is known count once it is', () => {
  const s = new Scheduler({ random: () => 0.5 })
  for (const id of ['few', 'many', 'me']) s.upsertHost({ peerId: id, addrs: [] })
  s.upsertTask(D)
  s.reportPieces(D, 'few', { pieces: [0] })
  s.reportPieces(D, 'many', { pieces: [0, 33, 70, 99] })
  s.upsertTask(D, { size: 100, pieceSize: 1 })
  assert.deepEqual(s.parents(D, 'me').parents.map(p => p.peerId), ['many', 'few'])
  s.reportPieces(D, 'few', { pieces: Array.from({ length: 99 }, (_, i) => i + 1) })
  assert.equal(s.tasks.get(D)?.peers.get('few')?.complete, true)
})

test('a host registered again after it was removed starts without load or failures', () => {
  const s = setup(3, { maxFailures: 1 })
  s.joinTask(D, 'p1'); s.reportPieces(D, 'p1', { complete: true })
  s.joinTask(D, 'p2'); s.joinTask(D, 'p3')
  s.parents(D, 'p2')
  s.reportFailure(D, 'p3', 'p1', 'timeout')
  s.removeHost('p1')
  s.upsertHost({ peerId: 'p4', addrs: [] })
  s.joinTask(D, 'p4'); s.reportPieces(D, 'p4', { complete: true })
  assert.deepEqual([s.hosts.get('p4')?.load, s.hosts.get('p4')?.failures], [0, 0])
  assert.equal(s.parents(D, 'p3').parents[0]?.peerId, 'p4')
})
