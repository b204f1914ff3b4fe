// The copy snapshotter end to end, lxcfs's /proc files, and the service's own failure modes
// (no runc, a missing init binary).
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { isJoeyError } from '../../src/common/index.js'
import { unmount } from '../../src/unpack/index.js'
import { multiLayerExpectations } from '../fixtures/images.js'
import { collect, makeEnv, runToExit, skipReason, type RuntimeEnv } from './helpers.js'

const skip = skipReason()
const code = (c: string) => (err: unknown) => isJoeyError(err, c as never)

describe('runtime on the copy snapshotter, lxcfs, failure modes', { skip, timeout: 90_000 }, () => {
  let env: RuntimeEnv
  let lxcfs: ChildProcess | undefined
  let lxcfsDir: string | undefined

  before(async () => { env = await makeEnv({ snapshotter: 'copy' }) })
  after(async () => {
    if (lxcfs?.pid !== undefined && lxcfs.exitCode === null) {
      const exited = new Promise(resolve => lxcfs!.once('exit', resolve))
      lxcfs.kill('SIGTERM')
      await Promise.race([exited, new Promise(resolve => setTimeout(resolve, 3000))])
      if (lxcfs.exitCode === null) lxcfs.kill('SIGKILL')
    }
    if (lxcfsDir !== undefined) await unmount(lxcfsDir).catch(() => {})
    await env?.cleanup()
  })

  test('copy snapshotter: the image tree is used in place, writes stay in the container', async () => {
    const svc = await env.newService()
    const script = [
      ...Object.keys(multiLayerExpectations.files).map(f => `cat '/${f}'`),
      ...multiLayerExpectations.absent.map(p => `test -e '/${p}' && echo 'PRESENT ${p}'`),
      'readlink /data/link',
      'echo changed > /data/keep'
    ].join('; ')
    const r = await runToExit(svc, { image: env.multi, cmd: ['sh', '-c', script] })
    assert.equal(r.exitCode, 0, r.stderr)
    assert.equal(r.stdout, Object.values(multiLayerExpectations.files).join('') + 'keep\n')
    assert.equal((await svc.inspect(r.id)).Driver, 'copy')
    // A second container from the same image does not see the first one's write.
    const other = await runToExit(svc, { image: env.multi, cmd: ['cat', '/data/keep'] })
    assert.equal(other.stdout, 'keep\n')
    await svc.remove(r.id)
    await svc.remove(other.id)
  })

  test('lxcfs /proc files are bind-mounted when lxcfs is mounted: free shows the limit', async (t) => {
    if (spawnSync('sh', ['-c', 'command -v lxcfs']).status !== 0 || !(await readFile('/proc/filesystems', 'utf8')).includes('fuse')) {
      t.skip('lxcfs or fuse is not available (apt-get install lxcfs)')
      return
    }
    lxcfsDir = join(env.dir, 'lxcfs')
    await mkdir(lxcfsDir)
    lxcfs = spawn('lxcfs', ['-f', '-p', join(env.dir, 'lxcfs.pid'), lxcfsDir], { stdio: 'ignore' })
    for (let i = 0; i < 100; i++) {
      if ((await readFile('/proc/self/mountinfo', 'utf8')).includes(` ${lxcfsDir} `)) break
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    const svc = await env.newService({ lxcfsRoot: lxcfsDir })
    const r = await runToExit(svc, { image: env.busybox, cmd: ['sh', '-c', 'grep MemTotal /proc/meminfo'], memory: 64 * 1024 * 1024 })
    assert.equal(r.exitCode, 0, r.stderr)
    assert.match(r.stdout, /^MemTotal:\s+65536 kB$/m)
    await svc.remove(r.id)
  })

  test('no runc: start fails with ERR_UNAVAILABLE and the container stays created', async () => {
    const svc = await env.newService({ runtimePath: join(env.dir, 'no-such-runc') })
    const { id } = await svc.create({ image: env.busybox, cmd: ['true'] })
    await assert.rejects(svc.start(id), code('ERR_UNAVAILABLE'))
    const info = await svc.inspect(id)
    assert.equal(info.State.Status, 'created')
    await svc.remove(id)
    await svc.stop()
  })

  test('a configured init binary that does not exist is a config error; the service refuses calls until started', async () => {
    const { createContainerService } = await import('../../src/runtime/index.js')
    const svc = createContainerService({ root: join(env.dir, 'other'), initPath: join(env.dir, 'no-init'), stateRoot: env.stateRoot }, {
      logger: (await import('./helpers.js')).logger, contentStore: env.store, images: env.images, snapshotter: env.snapshotter
    })
    await assert.rejects(svc.create({ image: env.busybox }), code('ERR_UNAVAILABLE'))
    await assert.rejects(svc.start(), code('ERR_INVALID_CONFIG'))
  })

  test('logs of a container that never ran are empty; attach ends when its first run ends', async () => {
    const svc = await env.newService()
    const { id } = await svc.create({ image: env.busybox, cmd: ['echo', 'first'] })
    assert.equal((await collect(await svc.logs(id, { follow: true }))).all.length, 0)
    const attached = collect(await svc.attach(id))
    await svc.start(id)
    assert.equal((await attached).stdout, 'first\n')
    await svc.remove(id)
  })
})
