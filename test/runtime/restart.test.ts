// The daemon restarts, containers do not: a new service on the same root finds running
// containers still running (their shims kept the output flowing), records exits that
// happened meanwhile, and can follow and stop what the old one started.
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { alive, collect, makeEnv, skipReason, type RuntimeEnv } from './helpers.js'

const run = promisify(execFile)
const skip = skipReason()

describe('container service restarts', { skip, timeout: 90_000 }, () => {
  let env: RuntimeEnv

  before(async () => { env = await makeEnv() })
  after(async () => { await env?.cleanup() })

  const shimPid = async (id: string): Promise<number> => Number((await readFile(join(env.containersRoot, id, 'shim.pid'), 'utf8')).trim())
  const runcState = async (id: string): Promise<string | undefined> => {
    try {
      return (JSON.parse((await run(env.runcPath, ['--root', env.stateRoot, 'state', id])).stdout) as { status: string }).status
    } catch {
      return undefined
    }
  }

  test('running containers and their logs survive a restart; exits during the downtime are recorded', async () => {
    const first = await env.newService()
    const long = await first.create({ image: env.busybox, name: 'long', cmd: ['sh', '-c', 'echo before; while true; do sleep 0.2; if [ -e /tmp/go ]; then echo after; rm /tmp/go; fi; done'] })
    const short = await first.create({ image: env.busybox, name: 'short', cmd: ['sh', '-c', 'echo short-lived; sleep 1; exit 9'] })
    const ready = await first.attach(long.id)
    await first.start(long.id)
    await first.start(short.id)
    for await (const e of ready) if (e.line.toString() === 'before\n') break
    const pid = (await first.inspect(long.id)).State.Pid
    await first.stop()

    // Nothing of the container depends on the service object: the shims hold it.
    const shim = await shimPid(long.id)
    assert.ok(await alive(shim))
    assert.ok(await alive(pid))
    await new Promise(resolve => setTimeout(resolve, 1500))
    assert.equal(await runcState(short.id), undefined, 'runc run cleaned up after the short one')

    const second = await env.newService()
    const info = await second.inspect('long')
    assert.equal(info.State.Status, 'running')
    assert.equal(info.State.Pid, pid)
    const gone = await second.inspect('short')
    assert.equal(gone.State.Status, 'exited')
    assert.equal(gone.State.ExitCode, 9)
    assert.equal((await collect(await second.logs('short'))).stdout, 'short-lived\n')
    assert.deepEqual((await second.list()).map(c => c.Names[0]), ['/long'])

    // Exec and follow work on a container the old service started.
    const touch = await second.execStart((await second.exec('long', { cmd: ['touch', '/tmp/go'] })).execId)
    assert.equal(await touch.exitCode, 0)
    const followed: string[] = []
    const follow = (async () => {
      for await (const e of await second.logs('long', { follow: true })) {
        followed.push(e.line.toString())
        if (followed.length === 2) await second.stop('long', { timeoutSec: 1 })
      }
    })()
    await follow
    assert.deepEqual(followed, ['before\n', 'after\n'])
    const stopped = await second.inspect('long')
    assert.equal(stopped.State.Running, false)
    assert.equal(stopped.State.ExitCode, 143, 'SIGTERM from the new service ended it')
    assert.equal(await alive(shim), false)
    assert.equal(await runcState(long.id), undefined)
    await second.remove('long')
    await second.remove('short')
    await second.stop()
  })

  test('a shim killed from outside is noticed: the container is killed and the exit recorded as lost', async () => {
    const svc = await env.newService()
    const { id } = await svc.create({ image: env.busybox, cmd: ['sleep', '1000'] })
    await svc.start(id)
    const pid = (await svc.inspect(id)).State.Pid
    const exited = svc.wait(id)
    process.kill(await shimPid(id), 'SIGKILL')
    const res = await exited
    assert.equal(res.exitCode, 255)
    assert.match(res.error ?? '', /shim/)
    await new Promise(resolve => setTimeout(resolve, 200))
    assert.equal(await alive(pid), false)
    assert.equal(await runcState(id), undefined)
    await svc.remove(id)
    await svc.stop()
  })
})
