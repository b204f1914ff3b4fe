// createAgent in process: listeners, socket files and the lifecycle, without a registry.
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { lstat, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Client, request } from 'undici'
import { isJoeyError, silentLogger } from '../../src/common/index.js'
import { createAgent, parseAgentConfig, type Agent } from '../../src/agent/index.js'

let dir: string
const agents: Agent[] = []
before(async () => { dir = await mkdtemp(join(tmpdir(), 'joey-agent-')) })
after(async () => {
  for (const a of agents) await a.stop().catch(() => {})
  await rm(dir, { recursive: true, force: true })
})

function agent (name: string, socket: string, extra: string[] = []): Agent {
  const a = createAgent(parseAgentConfig(['--data-root', join(dir, name), '-H', `unix://${socket}`, '-H', 'tcp://127.0.0.1:0', '--mirror', '127.0.0.1:0', ...extra], {}), { logger: silentLogger() })
  agents.push(a)
  return a
}

async function getJson (socket: string, path: string): Promise<Record<string, any>> {
  const client = new Client('http://localhost', { socketPath: socket })
  try {
    const res = await client.request({ method: 'GET', path })
    return await res.body.json() as Record<string, any>
  } finally {
    await client.close()
  }
}

describe('createAgent', () => {
  test('listens on a unix socket (parent dir created, mode 0660) and on TCP port 0', async () => {
    const socket = join(dir, 'a', 'run', 'joey', 'joeyd.sock')
    const a = agent('a', socket)
    await a.start()
    const st = await stat(socket)
    assert.ok(st.isSocket())
    assert.equal(st.mode & 0o777, 0o660)
    const [unix, tcp] = a.addresses()
    assert.equal(unix, `unix://${socket}`)
    assert.match(tcp!, /^tcp:\/\/127\.0\.0\.1:[1-9][0-9]*$/)
    const res = await request(`${tcp!.replace('tcp://', 'http://')}/_ping`)
    assert.equal(await res.body.text(), 'OK')
    const info = await getJson(socket, '/info')
    assert.equal(info.DockerRootDir, join(dir, 'a'))
    assert.equal(info.Images, 0)

    // A second daemon on the same socket is refused, and the first keeps its socket.
    const b = agent('b', socket)
    await assert.rejects(b.start(), (err: unknown) => isJoeyError(err, 'ERR_IN_USE') && /another daemon/.test(err.message))
    await b.stop()
    assert.ok((await stat(socket)).isSocket())

    await a.stop()
    await assert.rejects(lstat(socket), { code: 'ENOENT' })
  })

  test('the engine ID survives a restart', async () => {
    const socket = join(dir, 'id.sock')
    const first = agent('id', socket)
    await first.start()
    const id = (await getJson(socket, '/info')).ID as string
    await first.stop()
    const second = agent('id', socket)
    await second.start()
    assert.equal((await getJson(socket, '/info')).ID, id)
    assert.equal((await readFile(join(dir, 'id', 'engine-id'), 'utf8')).trim(), id)
    await second.stop()
  })

  test('a stale socket left by a killed process is replaced', async () => {
    const socket = join(dir, 'stale.sock')
    // A process that dies by SIGKILL cannot unlink its socket.
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socket)}, () => process.kill(process.pid, 'SIGKILL'))`])
    await once(child, 'exit')
    assert.ok((await lstat(socket)).isSocket())
    const a = agent('stale', socket)
    await a.start()
    assert.equal((await getJson(socket, '/version')).ApiVersion, '1.43')
    await a.stop()
  })

  test('a file that is not a socket is never replaced', async () => {
    const path = join(dir, 'precious.txt')
    await writeFile(path, 'keep me')
    const a = agent('precious', path)
    await assert.rejects(a.start(), (err: unknown) => isJoeyError(err, 'ERR_FAILED_PRECONDITION') && err.message.includes('is not a socket'))
    await a.stop()
    assert.equal(await readFile(path, 'utf8'), 'keep me')
  })

  test('a TCP port in use fails the start and leaves nothing listening', async () => {
    const socket = join(dir, 'busy.sock')
    const a = agent('busy-a', join(dir, 'busy-a.sock'))
    await a.start()
    const port = a.addresses()[1]!.split(':').at(-1)!
    const b = createAgent(parseAgentConfig(['--data-root', join(dir, 'busy-b'), '-H', `unix://${socket}`, '-H', `tcp://127.0.0.1:${port}`, '--mirror', '127.0.0.1:0'], {}), { logger: silentLogger() })
    agents.push(b)
    await assert.rejects(b.start(), { code: 'EADDRINUSE' })
    await b.stop()
    await assert.rejects(lstat(socket), { code: 'ENOENT' })
    await a.stop()
  })
})
