// Container lifecycle with real runc: exec, stop and kill through the init, zombie reaping,
// following logs, auto-remove, names and lookups, restart, and refused input.
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { isJoeyError } from '../../src/common/index.js'
import { alive, collect, makeEnv, runToExit, skipReason, type Containers, type RuntimeEnv } from './helpers.js'

const skip = skipReason()

describe('container lifecycle with runc', { skip, timeout: 120_000 }, () => {
  let env: RuntimeEnv
  let svc: Containers

  before(async () => {
    env = await makeEnv()
    svc = await env.newService()
  })
  after(async () => { await env?.cleanup() })

  const code = (c: string) => (err: unknown) => isJoeyError(err, c as never)

  test('exec into a running container: output, exit code, user, env, workdir, inspect', async () => {
    const { id } = await svc.create({ image: env.busybox, cmd: ['sleep', '1000'] })
    await svc.start(id)
    try {
      const { execId } = await svc.exec(id, { cmd: ['sh', '-c', 'echo from-exec; echo oops >&2; echo $X; pwd; id -u; exit 3'], env: ['X=y'], workdir: '/tmp', user: 'nobody' })
      const session = await svc.execStart(execId)
      const out = await collect(session.output)
      assert.equal(await session.exitCode, 3)
      assert.equal(out.stdout, 'from-exec\ny\n/tmp\n1000\n')
      assert.equal(out.stderr, 'oops\n')
      const ei = await svc.execInspect(execId)
      assert.equal(ei.ExitCode, 3)
      assert.equal(ei.Running, false)
      assert.equal(ei.ContainerID, id)
      assert.ok((await svc.inspect(id)).ExecIDs?.includes(execId))
      await assert.rejects(svc.execStart(execId), code('ERR_FAILED_PRECONDITION'))

      // The exec joins the container's pid namespace: it sees sleep, not the host.
      const ps = await svc.execStart((await svc.exec(id, { cmd: ['sh', '-c', 'cat /proc/[0-9]*/comm'] })).execId)
      const comms = (await collect(ps.output)).stdout.trim().split('\n')
      assert.ok(comms.includes('sleep'))
      assert.ok(comms.length < 10, comms.join(','))

      const missing = await svc.execStart((await svc.exec(id, { cmd: ['nosuchcmd'] })).execId)
      assert.match((await collect(missing.output)).stderr, /executable file not found/)
      assert.equal(await missing.exitCode, 127)
      await assert.rejects(svc.exec(id, { cmd: [] }), code('ERR_INVALID_ARGUMENT'))
      await assert.rejects(svc.execInspect('nope'), code('ERR_NOT_FOUND'))
    } finally {
      await svc.remove(id, { force: true })
    }
    await assert.rejects(svc.exec(id, { cmd: ['true'] }), code('ERR_NOT_FOUND'))
  })

  test('stop: SIGTERM reaches the command through the init; one that ignores it gets SIGKILL after the timeout', async () => {
    const { id } = await svc.create({ image: env.busybox, cmd: ['sleep', '1000'] })
    await svc.start(id)
    const pid = (await svc.inspect(id)).State.Pid
    assert.ok(pid > 0 && await alive(pid))
    let t = Date.now()
    await svc.stop(id, { timeoutSec: 10 })
    assert.ok(Date.now() - t < 5000, 'sleep dies of SIGTERM at once')
    assert.equal((await svc.inspect(id)).State.ExitCode, 143)
    assert.equal(await alive(pid), false)

    const stubborn = await svc.create({ image: env.busybox, cmd: ['sh', '-c', 'trap "" TERM; echo ready; while true; do sleep 1; done'] })
    const ready = await svc.attach(stubborn.id)
    await svc.start(stubborn.id)
    for await (const e of ready) if (e.line.toString() === 'ready\n') break
    t = Date.now()
    await svc.stop(stubborn.id, { timeoutSec: 1 })
    const took = Date.now() - t
    assert.ok(took >= 900 && took < 8000, `stopped after ${took} ms`)
    const info = await svc.inspect(stubborn.id)
    assert.equal(info.State.ExitCode, 137)
    assert.equal(info.State.Running, false)
    // Stopping a stopped container is a no-op, as docker's 304.
    await svc.stop(stubborn.id)
  })

  test('kill forwards a signal to the command; the exit and its output are recorded', async () => {
    const { id } = await svc.create({ image: env.busybox, cmd: ['sh', '-c', 'trap "echo got-usr1; exit 5" USR1; echo ready; while true; do sleep 0.1; done'] })
    const out = await svc.attach(id)
    await svc.start(id)
    const lines: string[] = []
    for await (const e of out) {
      lines.push(e.line.toString())
      if (lines.length === 1) await svc.kill(id, 'USR1')
    }
    assert.deepEqual(lines, ['ready\n', 'got-usr1\n'])
    assert.equal((await svc.wait(id)).exitCode, 5)
    await assert.rejects(svc.kill(id, 'TERM'), code('ERR_FAILED_PRECONDITION'))
  })

  test('the init reaps orphaned zombies', async () => {
    const { id } = await svc.create({ image: env.busybox, cmd: ['sh', '-c', '(sleep 0.1 &); (sleep 0.1 &); (sleep 0.1 &); exec sleep 1000'] })
    await svc.start(id)
    try {
      await new Promise(resolve => setTimeout(resolve, 600))
      const s = await svc.execStart((await svc.exec(id, { cmd: ['sh', '-c', 'for f in /proc/[0-9]*/stat; do cat $f; echo; done'] })).execId)
      const stats = (await collect(s.output)).stdout.trim().split('\n').filter(l => l !== '')
      const states = stats.map(l => l.slice(l.lastIndexOf(')') + 2).split(' ')[0])
      assert.ok(stats.length >= 2, stats.join('\n'))
      assert.ok(!states.includes('Z'), `no zombies: ${stats.join('\n')}`)
    } finally {
      await svc.remove(id, { force: true })
    }
  })

  test('logs: follow until exit, tail, since, stream filters', async () => {
    const { id } = await svc.create({ image: env.busybox, cmd: ['sh', '-c', 'for i in 1 2 3 4 5; do echo $i; sleep 0.1; done; echo e >&2'] })
    await svc.start(id)
    const followed = await collect(await svc.logs(id, { follow: true }))
    assert.equal(followed.stdout, '1\n2\n3\n4\n5\n')
    assert.equal(followed.stderr, 'e\n')
    assert.equal((await collect(await svc.logs(id, { tail: 2 }))).all.map(e => e.line.toString()).join(''), '5\ne\n')
    assert.equal((await collect(await svc.logs(id, { tail: 0 }))).all.length, 0)
    assert.equal((await collect(await svc.logs(id, { since: Date.now() / 1000 + 60 }))).all.length, 0)
    assert.equal((await collect(await svc.logs(id, { until: new Date(0) }))).all.length, 0)
    assert.equal((await collect(await svc.logs(id, { stderr: false }))).all.length, 5)
    await assert.rejects(svc.logs(id, { tail: -1 }), code('ERR_INVALID_ARGUMENT'))
    await assert.rejects(svc.logs(id, { since: 'yesterday' }), code('ERR_INVALID_ARGUMENT'))
  })

  test('long lines are split into 16 KiB entries, like docker', async () => {
    const r = await runToExit(svc, { image: env.busybox, cmd: ['sh', '-c', 'head -c 40000 /dev/zero | tr "\\0" a; echo'] })
    const logs = await collect(await svc.logs(r.id))
    assert.deepEqual(logs.all.map(e => e.line.length), [16384, 16384, 40000 - 32768 + 1])
    assert.equal(logs.stdout, 'a'.repeat(40000) + '\n')
  })

  test('autoRemove removes the container and its files after exit', async () => {
    const { id } = await svc.create({ image: env.busybox, cmd: ['echo', 'bye'], autoRemove: true })
    const out = collect(await svc.attach(id))
    const removed = svc.wait(id, { condition: 'removed' })
    await svc.start(id)
    assert.deepEqual(await removed, { exitCode: 0 })
    assert.equal((await out).stdout, 'bye\n')
    await assert.rejects(svc.inspect(id), code('ERR_NOT_FOUND'))
    assert.equal(existsSync(join(env.containersRoot, id)), false)
  })

  test('names, id prefixes, list and remove', async () => {
    const a = await svc.create({ image: env.busybox, name: 'web', cmd: ['sleep', '1000'] })
    assert.equal(a.name, 'web')
    assert.match(a.id, /^[a-f0-9]{64}$/)
    await assert.rejects(svc.create({ image: env.busybox, name: '/web', cmd: ['true'] }), code('ERR_ALREADY_EXISTS'))
    await assert.rejects(svc.create({ image: env.busybox, name: 'bad name!', cmd: ['true'] }), code('ERR_INVALID_ARGUMENT'))
    assert.equal(await svc.resolve('/web'), a.id)
    assert.equal(await svc.resolve(a.id.slice(0, 12)), a.id)
    const b = await svc.create({ image: env.busybox, cmd: ['true'] })
    assert.match(b.name, /^[a-z]+_[a-z]+\d*$/)
    assert.equal((await svc.inspect(b.id)).State.Status, 'created')

    await svc.start('web')
    const running = await svc.list()
    assert.ok(running.some(c => c.Id === a.id && c.Names[0] === '/web' && c.State === 'running' && c.Status.startsWith('Up ')))
    assert.ok(!running.some(c => c.Id === b.id))
    const all = await svc.list({ all: true })
    const rowB = all.find(c => c.Id === b.id)
    assert.equal(rowB?.Status, 'Created')
    assert.equal(rowB?.Command, 'true')

    await assert.rejects(svc.remove('web'), code('ERR_IN_USE'))
    await svc.remove('web', { force: true })
    await assert.rejects(svc.inspect('web'), code('ERR_NOT_FOUND'))
    await svc.remove(b.id)
    // The name is free again.
    const c = await svc.create({ image: env.busybox, name: 'web', cmd: ['true'] })
    await svc.remove(c.id)
  })

  test('restart stops and starts again; wait next-exit sees each run', async () => {
    const { id } = await svc.create({ image: env.busybox, cmd: ['sh', '-c', 'echo up; exec sleep 1000'] })
    await svc.start(id)
    const pid1 = (await svc.inspect(id)).State.Pid
    await svc.restart(id, { timeoutSec: 1 })
    const info = await svc.inspect(id)
    assert.equal(info.State.Running, true)
    assert.notEqual(info.State.Pid, pid1)
    const next = svc.wait(id, { condition: 'next-exit' })
    await svc.kill(id, 'KILL')
    assert.equal((await next).exitCode, 137)
    await new Promise(resolve => setTimeout(resolve, 100))
    assert.equal((await collect(await svc.logs(id))).stdout, 'up\nup\n')
    await svc.remove(id)
  })

  test('bad input is refused with stable codes and changes nothing', async () => {
    const before = (await svc.list({ all: true })).length
    await assert.rejects(svc.create({ image: 'no-such-image:latest', cmd: ['true'] }), code('ERR_IMAGE_NOT_FOUND'))
    await assert.rejects(svc.create({ image: env.busybox, binds: ['relative:/x'] }), code('ERR_INVALID_ARGUMENT'))
    await assert.rejects(svc.create({ image: env.busybox, binds: ['/tmp:/x:rx'] }), code('ERR_INVALID_ARGUMENT'))
    await assert.rejects(svc.create({ image: env.busybox, binds: ['/tmp:/'] }), code('ERR_INVALID_ARGUMENT'))
    await assert.rejects(svc.create({ image: env.busybox, memory: 1024 }), code('ERR_INVALID_ARGUMENT'))
    await assert.rejects(svc.create({ image: env.busybox, cpus: 1000 }), code('ERR_INVALID_ARGUMENT'))
    await assert.rejects(svc.create({ image: env.busybox, pidsLimit: -5 }), code('ERR_INVALID_ARGUMENT'))
    await assert.rejects(svc.create({ image: env.busybox, workdir: 'relative' }), code('ERR_INVALID_ARGUMENT'))
    await assert.rejects(svc.create({ image: env.busybox, env: ['=x'] }), code('ERR_INVALID_ARGUMENT'))
    await assert.rejects(svc.create({ image: env.busybox, network: 'bridge' as never }), code('ERR_INVALID_ARGUMENT'))
    await assert.rejects(svc.create({ image: env.busybox, tty: true as never }), code('ERR_INVALID_ARGUMENT'))
    await assert.rejects(svc.inspect('nope'), code('ERR_NOT_FOUND'))
    await assert.rejects(svc.logs('nope'), code('ERR_NOT_FOUND'))
    await assert.rejects(svc.start('nope'), code('ERR_NOT_FOUND'))
    await assert.rejects(svc.remove('nope'), code('ERR_NOT_FOUND'))
    await assert.rejects(svc.wait('nope'), code('ERR_NOT_FOUND'))
    assert.equal((await svc.list({ all: true })).length, before)
  })

  test('a command that does not exist fails start with docker\'s message and exit code 127', async () => {
    const { id } = await svc.create({ image: env.busybox, cmd: ['nosuchcmd'] })
    const exited = svc.wait(id, { condition: 'next-exit' })
    await assert.rejects(svc.start(id), (err: unknown) => {
      assert.ok(isJoeyError(err, 'ERR_INVALID_ARGUMENT'))
      assert.match((err as Error).message, /executable file not found in \$PATH/)
      return true
    })
    assert.equal((await exited).exitCode, 127)
    const info = await svc.inspect(id)
    assert.equal(info.State.ExitCode, 127)
    assert.equal(info.State.Running, false)
    assert.match(info.State.Error, /nosuchcmd/)
    await assert.rejects(svc.kill(id), code('ERR_FAILED_PRECONDITION'))
    await assert.rejects(svc.kill(id, 'NOSUCHSIG'), code('ERR_INVALID_ARGUMENT'))
    await svc.remove(id)
    assert.equal((await stat(env.containersRoot)).isDirectory(), true)
  })
})
