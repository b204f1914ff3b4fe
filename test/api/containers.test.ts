// Container and exec routes against a scripted ContainerService: docker's shapes, the 501
// without a runtime, bad bodies (400), unknown ids (404), conflicts (409), the multiplexed
// framing, and an attach over a real HTTP upgrade.
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { connect } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { JoeyError, silentLogger } from '../../src/common/index.js'
import { buildEngineApi, createAgentMetrics, demuxFrames, muxFrame, CONTAINERS_DISABLED } from '../../src/api/index.js'
import type {
  ContainerInspect, ContainerService, ContainerSummary, CreateOptions, ExecInspect, LogEntry, WaitOptions
} from '../../src/runtime/index.js'
import { FakeImages, system } from './helpers.js'

const ID = 'f'.repeat(64)
const EXEC = 'e'.repeat(64)

function entries (list: Array<[LogEntry['stream'], string]>): AsyncIterable<LogEntry> {
  return (async function * () {
    for (const [stream, text] of list) yield { stream, line: Buffer.from(text), time: '2024-01-01T00:00:00.000000000Z' }
  })()
}

class FakeContainers implements ContainerService {
  created: CreateOptions[] = []
  running = false
  waits: WaitOptions[] = []
  removed: Array<{ id: string, force: boolean | undefined }> = []

  private check (id: string): string {
    if (id !== ID && id !== 'web') throw new JoeyError('ERR_NOT_FOUND', `No such container: ${id}`)
    return ID
  }

  async create (opts: CreateOptions): Promise<{ id: string, name: string, warnings: string[] }> {
    if (opts.image === 'missing') throw new JoeyError('ERR_IMAGE_NOT_FOUND', 'image not found')
    if (opts.name === 'taken') throw new JoeyError('ERR_ALREADY_EXISTS', 'Conflict. The container name "/taken" is already in use')
    this.created.push(opts)
    return { id: ID, name: opts.name ?? 'x', warnings: [] }
  }

  async start (id: string): Promise<void> { this.check(id); this.running = true }
  async stop (id: string): Promise<void> { this.check(id); this.running = false }
  async kill (id: string): Promise<void> {
    this.check(id)
    if (!this.running) throw new JoeyError('ERR_FAILED_PRECONDITION', `Container ${ID} is not running`)
  }

  async wait (id: string, opts: WaitOptions = {}): Promise<{ exitCode: number }> {
    this.check(id)
    this.waits.push(opts)
    return { exitCode: 7 }
  }

  async restart (id: string): Promise<void> { this.check(id) }
  async remove (id: string, opts: { force?: boolean } = {}): Promise<void> { this.removed.push({ id: this.check(id), force: opts.force }) }
  async list (): Promise<ContainerSummary[]> {
    return [{ Id: ID, Names: ['/web'], Image: 'busybox', ImageID: 'sha256:1', Command: 'sleep 1', Created: 1, State: 'running', Status: 'Up 3 seconds', Labels: {}, HostConfig: { NetworkMode: 'none' }, Mounts: [] }]
  }

  async inspect (id: string): Promise<ContainerInspect> {
    this.check(id)
    return { Id: ID, State: { Running: this.running } } as unknown as ContainerInspect
  }

  async logs (id: string): Promise<AsyncIterable<LogEntry>> {
    this.check(id)
    return entries([['stdout', 'out\n'], ['stderr', 'err\n']])
  }

  async attach (id: string): Promise<AsyncIterable<LogEntry>> {
    this.check(id)
    return entries([['stdout', 'hi\n']])
  }

  async exec (id: string): Promise<{ execId: string }> {
    this.check(id)
    if (!this.running) throw new JoeyError('ERR_FAILED_PRECONDITION', `Container ${ID} is not running`)
    return { execId: EXEC }
  }

  async execStart (execId: string): Promise<{ output: AsyncIterable<LogEntry>, exitCode: Promise<number> }> {
    if (execId !== EXEC) throw new JoeyError('ERR_NOT_FOUND', `No such exec instance: ${execId}`)
    return { output: entries([['stdout', 'inside\n']]), exitCode: Promise.resolve(0) }
  }

  async execInspect (execId: string): Promise<ExecInspect> {
    if (execId !== EXEC) throw new JoeyError('ERR_NOT_FOUND', `No such exec instance: ${execId}`)
    return { ID: EXEC, ContainerID: ID, Running: false, ExitCode: 0 } as unknown as ExecInspect
  }

  async resolve (id: string): Promise<string> { return this.check(id) }
}

async function build (containers?: ContainerService): Promise<FastifyInstance> {
  return await buildEngineApi({}, {
    logger: silentLogger(),
    images: new FakeImages(),
    metrics: createAgentMetrics({}),
    system,
    ...(containers !== undefined ? { containers } : {})
  })
}

describe('multiplexed stream framing', () => {
  test('a frame is an 8-byte header (stream, 3 zero bytes, BE length) and the payload', () => {
    const f = muxFrame('stderr', Buffer.from('abc'))
    assert.deepEqual([...f.subarray(0, 8)], [2, 0, 0, 0, 0, 0, 0, 3])
    assert.equal(f.subarray(8).toString(), 'abc')
    assert.equal(muxFrame('stdout', Buffer.alloc(0x10203))[0], 1)
    assert.deepEqual([...muxFrame('stdout', Buffer.alloc(0x10203)).subarray(4, 8)], [0, 1, 2, 3])
  })

  test('demuxFrames splits frames and keeps an incomplete tail', () => {
    const buf = Buffer.concat([muxFrame('stdout', Buffer.from('a')), muxFrame('stderr', Buffer.from('bc')), muxFrame('stdout', Buffer.from('xyz')).subarray(0, 9)])
    const { frames, rest } = demuxFrames(buf)
    assert.deepEqual(frames.map(f => [f.stream, f.data.toString()]), [['stdout', 'a'], ['stderr', 'bc']])
    assert.equal(rest.length, 9)
    assert.throws(() => demuxFrames(Buffer.from([9, 0, 0, 0, 0, 0, 0, 0])), { code: 'ERR_PROTOCOL' })
  })
})

describe('container routes without a runtime', () => {
  test('answer 501', async () => {
    const app = await build()
    for (const [method, url] of [['POST', '/containers/create'], ['GET', '/containers/json'], ['POST', '/v1.43/exec/x/start'], ['DELETE', '/containers/x']] as const) {
      const res = await app.inject({ method, url })
      assert.equal(res.statusCode, 501, url)
      assert.deepEqual(res.json(), { message: CONTAINERS_DISABLED })
    }
    await app.close()
  })
})

describe('container routes', () => {
  let app: FastifyInstance
  let svc: FakeContainers
  before(async () => { svc = new FakeContainers(); app = await build(svc) })
  after(async () => { await app.close() })

  test('create maps docker\'s Config and HostConfig', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1.43/containers/create?name=web',
      payload: {
        Image: 'busybox', Cmd: ['echo', 'hi'], Entrypoint: null, Env: ['A=1'], WorkingDir: '/tmp', User: '1:1', Hostname: 'h', Labels: { a: 'b' }, Tty: false,
        HostConfig: { Binds: ['/h:/c:ro'], Memory: 64 << 20, NanoCpus: 5e8, PidsLimit: 10, NetworkMode: 'host', ReadonlyRootfs: true, AutoRemove: true }
      }
    })
    assert.equal(res.statusCode, 201, res.body)
    assert.deepEqual(res.json(), { Id: ID, Warnings: [] })
    assert.deepEqual(svc.created.at(-1), {
      image: 'busybox', name: 'web', cmd: ['echo', 'hi'], env: ['A=1'], workdir: '/tmp', user: '1:1', hostname: 'h', labels: { a: 'b' },
      binds: ['/h:/c:ro'], memory: 64 << 20, cpus: 0.5, pidsLimit: 10, network: 'host', readOnly: true, autoRemove: true
    })
    const quota = await app.inject({ method: 'POST', url: '/containers/create', payload: { Image: 'busybox', HostConfig: { CpuQuota: 150000, CpuPeriod: 100000, NetworkMode: 'default' } } })
    assert.equal(quota.statusCode, 201)
    assert.equal(svc.created.at(-1)!.cpus, 1.5)
    assert.equal(svc.created.at(-1)!.network, undefined)
  })

  test('bad create bodies get 400 with a clear message', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{}, /Image is required/],
      [{ Image: 'busybox', Tty: true }, /TTYs are not supported/],
      [{ Image: 'busybox', OpenStdin: true }, /stdin is not supported/],
      [{ Image: 'busybox', Cmd: [1] }, /Cmd must be a list of strings/],
      [{ Image: 'busybox', HostConfig: { Memory: 'lots' } }, /HostConfig.Memory must be a number/],
      [{ Image: 'busybox', HostConfig: { NetworkMode: 'bridge' } }, /network mode "bridge" is not supported/],
      [{ Image: 'busybox', Labels: { a: 1 } }, /Labels must be a map of strings/]
    ]
    for (const [payload, re] of cases) {
      const res = await app.inject({ method: 'POST', url: '/containers/create', payload: payload as object })
      assert.equal(res.statusCode, 400, JSON.stringify(payload))
      assert.match(res.json().message, re)
    }
    const notJson = await app.inject({ method: 'POST', url: '/containers/create', headers: { 'content-type': 'application/json' }, payload: '{' })
    assert.equal(notJson.statusCode, 400)
  })

  test('a missing image is docker\'s 404 "No such image", a taken name 409', async () => {
    const res = await app.inject({ method: 'POST', url: '/containers/create', payload: { Image: 'missing' } })
    assert.equal(res.statusCode, 404)
    assert.deepEqual(res.json(), { message: 'No such image: missing' })
    const taken = await app.inject({ method: 'POST', url: '/containers/create?name=taken', payload: { Image: 'busybox' } })
    assert.equal(taken.statusCode, 409)
  })

  test('unknown containers and execs get 404 "No such container"', async () => {
    for (const [method, url] of [['GET', '/containers/nope/json'], ['POST', '/containers/nope/start'], ['POST', '/containers/nope/stop'], ['POST', '/containers/nope/wait'],
      ['DELETE', '/containers/nope'], ['GET', '/containers/nope/logs?stdout=1'], ['POST', '/containers/nope/attach?stream=1&stdout=1'], ['POST', '/containers/nope/kill']] as const) {
      const res = await app.inject({ method, url })
      assert.equal(res.statusCode, 404, url)
      assert.deepEqual(res.json(), { message: 'No such container: nope' })
    }
    const ex = await app.inject({ method: 'GET', url: '/exec/nope/json' })
    assert.equal(ex.statusCode, 404)
    assert.match(ex.json().message, /No such exec instance/)
  })

  test('start is 204 then 304; stop 204 then 304; kill of a stopped container 409', async () => {
    assert.equal((await app.inject({ method: 'POST', url: '/containers/web/start' })).statusCode, 204)
    assert.equal((await app.inject({ method: 'POST', url: '/containers/web/start' })).statusCode, 304)
    assert.equal((await app.inject({ method: 'POST', url: '/containers/web/stop?t=1' })).statusCode, 204)
    assert.equal((await app.inject({ method: 'POST', url: '/containers/web/stop' })).statusCode, 304)
    assert.equal((await app.inject({ method: 'POST', url: '/containers/web/stop?t=soon' })).statusCode, 400)
    const kill = await app.inject({ method: 'POST', url: '/containers/web/kill?signal=HUP' })
    assert.equal(kill.statusCode, 409)
    assert.match(kill.json().message, /is not running/)
  })

  test('wait returns {StatusCode, Error} and passes the condition', async () => {
    const res = await app.inject({ method: 'POST', url: '/containers/web/wait?condition=next-exit' })
    assert.equal(res.statusCode, 200)
    assert.deepEqual(res.json(), { StatusCode: 7, Error: null })
    assert.equal(svc.waits.at(-1)!.condition, 'next-exit')
    assert.equal((await app.inject({ method: 'POST', url: '/containers/web/wait?condition=soon' })).statusCode, 400)
  })

  test('delete passes force', async () => {
    assert.equal((await app.inject({ method: 'DELETE', url: '/containers/web?force=1&v=1' })).statusCode, 204)
    assert.deepEqual(svc.removed.at(-1), { id: ID, force: true })
  })

  test('list adds Ports; inspect passes through', async () => {
    const list = (await app.inject({ method: 'GET', url: '/containers/json?all=1' })).json()
    assert.equal(list[0].Names[0], '/web')
    assert.deepEqual(list[0].Ports, [])
    assert.equal((await app.inject({ method: 'GET', url: '/containers/web/json' })).json().Id, ID)
  })

  test('logs are multiplexed, with timestamps when asked', async () => {
    const res = await app.inject({ method: 'GET', url: '/containers/web/logs?stdout=1&stderr=1&timestamps=1' })
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers['content-type'], 'application/vnd.docker.multiplexed-stream')
    const { frames } = demuxFrames(res.rawPayload)
    assert.deepEqual(frames.map(f => [f.stream, f.data.toString()]), [['stdout', '2024-01-01T00:00:00.000000000Z out\n'], ['stderr', '2024-01-01T00:00:00.000000000Z err\n']])
    const none = await app.inject({ method: 'GET', url: '/containers/web/logs' })
    assert.equal(none.statusCode, 400)
  })

  test('exec create, start (non-upgraded) and inspect', async () => {
    await app.inject({ method: 'POST', url: '/containers/web/start' })
    const bad = await app.inject({ method: 'POST', url: '/containers/web/exec', payload: { Cmd: [] } })
    assert.equal(bad.statusCode, 400)
    const tty = await app.inject({ method: 'POST', url: '/containers/web/exec', payload: { Cmd: ['sh'], Tty: true } })
    assert.equal(tty.statusCode, 400)
    const created = await app.inject({ method: 'POST', url: '/containers/web/exec', payload: { Cmd: ['echo', 'inside'], AttachStdout: true } })
    assert.equal(created.statusCode, 201)
    assert.deepEqual(created.json(), { Id: EXEC })
    const started = await app.inject({ method: 'POST', url: `/exec/${EXEC}/start`, payload: { Detach: false, Tty: false } })
    assert.equal(started.statusCode, 200)
    assert.deepEqual(demuxFrames(started.rawPayload).frames.map(f => f.data.toString()), ['inside\n'])
    assert.equal((await app.inject({ method: 'GET', url: `/exec/${EXEC}/json` })).json().ExitCode, 0)
  })

  test('attach over a real upgraded connection answers 101 UPGRADED and frames', async () => {
    await app.listen({ port: 0, host: '127.0.0.1' })
    const port = (app.server.address() as { port: number }).port
    const raw = await new Promise<Buffer>((resolve, reject) => {
      const s = connect(port, '127.0.0.1')
      const chunks: Buffer[] = []
      s.on('data', (c: Buffer) => chunks.push(c))
      s.on('end', () => { resolve(Buffer.concat(chunks)); s.destroy() })
      s.on('error', reject)
      s.write('POST /v1.43/containers/web/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n')
    })
    const sep = raw.indexOf('\r\n\r\n')
    const head = raw.subarray(0, sep).toString()
    assert.match(head, /^HTTP\/1.1 101 UPGRADED\r\n/)
    assert.match(head, /Content-Type: application\/vnd.docker.multiplexed-stream/)
    assert.deepEqual(demuxFrames(raw.subarray(sep + 4)).frames.map(f => [f.stream, f.data.toString()]), [['stdout', 'hi\n']])
  })
})
