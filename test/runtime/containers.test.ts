// Containers run by real runc from images pulled out of a real registry: output, exit codes,
// config from the image and the caller, binds, limits, isolation, layered filesystems.
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { isJoeyError } from '../../src/common/index.js'
import { multiLayerExpectations } from '../fixtures/images.js'
import { collect, makeEnv, runToExit, skipReason, type Containers, type RuntimeEnv } from './helpers.js'

const skip = skipReason()

describe('container runtime with runc', { skip, timeout: 120_000 }, () => {
  let env: RuntimeEnv
  let svc: Containers

  before(async () => {
    env = await makeEnv()
    svc = await env.newService()
  })
  after(async () => { await env?.cleanup() })

  const code = (c: string) => (err: unknown) => isJoeyError(err, c as never)

  test('echo hi: output reaches logs and attach, in docker json-file format', async () => {
    const r = await runToExit(svc, { image: env.busybox, cmd: ['echo', 'hi'] })
    assert.equal(r.exitCode, 0)
    assert.equal(r.stdout, 'hi\n')
    const logs = await collect(await svc.logs(r.id))
    assert.deepEqual(logs.all.map(e => [e.stream, e.line.toString()]), [['stdout', 'hi\n']])
    const info = await svc.inspect(r.id)
    assert.equal(info.State.Status, 'exited')
    assert.equal(info.State.Running, false)
    const lines = (await readFile(info.LogPath, 'utf8')).trim().split('\n').map(l => JSON.parse(l) as Record<string, string>)
    assert.equal(lines.length, 1)
    assert.equal(lines[0]!.log, 'hi\n')
    assert.equal(lines[0]!.stream, 'stdout')
    assert.match(lines[0]!.time!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/)
    assert.ok(Date.parse(info.State.FinishedAt) >= Date.parse(info.State.StartedAt))
  })

  test('exit codes are kept; stdout and stderr are told apart', async () => {
    const r = await runToExit(svc, { image: env.busybox, cmd: ['sh', '-c', 'echo out; echo err >&2; exit 7'] })
    assert.equal(r.exitCode, 7)
    assert.equal(r.stdout, 'out\n')
    assert.equal(r.stderr, 'err\n')
    assert.equal((await svc.inspect(r.id)).State.ExitCode, 7)
    assert.deepEqual(await svc.wait(r.id), { exitCode: 7 })
    assert.equal((await collect(await svc.logs(r.id, { stdout: false }))).all.map(e => e.line.toString()).join(''), 'err\n')
  })

  test('image Env and Cmd with caller overrides, HOSTNAME and HOME, workdir created', async () => {
    const r = await runToExit(svc, {
      image: env.busybox,
      cmd: ['sh', '-c', 'env | sort; pwd'],
      env: ['FOO=bar', 'PATH=/bin:/usr/bin'],
      workdir: '/srv/app',
      hostname: 'box1'
    })
    assert.equal(r.exitCode, 0)
    const lines = r.stdout.trim().split('\n')
    assert.ok(lines.includes('FOO=bar'))
    assert.ok(lines.includes('PATH=/bin:/usr/bin'))
    assert.ok(lines.includes('HOSTNAME=box1'))
    assert.ok(lines.includes('HOME=/root'))
    assert.equal(lines.at(-1), '/srv/app')
    const info = await svc.inspect(r.id)
    assert.deepEqual(info.Config.Env, ['PATH=/bin:/usr/bin', 'FOO=bar'])
    assert.deepEqual(info.Config.Cmd, ['sh', '-c', 'env | sort; pwd'])
    assert.equal(info.Config.WorkingDir, '/srv/app')
    // The image's own Cmd (sh) is used when none is given; hostname defaults to the short id.
    const d = await runToExit(svc, { image: env.busybox, entrypoint: ['hostname'] })
    assert.equal(d.stdout, `${d.id.slice(0, 12)}\n`)
  })

  test('user by name and by uid:gid from the image\'s passwd; unknown names are refused', async () => {
    const byName = await runToExit(svc, { image: env.busybox, cmd: ['sh', '-c', 'id -u; id -g; echo $HOME'], user: 'nobody' })
    assert.equal(byName.stdout, '1000\n1000\n/tmp\n')
    const byId = await runToExit(svc, { image: env.busybox, cmd: ['sh', '-c', 'id -u; id -g'], user: '1000:0' })
    assert.equal(byId.stdout, '1000\n0\n')
    const unlisted = await runToExit(svc, { image: env.busybox, cmd: ['id', '-u'], user: '4242' })
    assert.equal(unlisted.stdout, '4242\n')
    const before = (await svc.list({ all: true })).length
    await assert.rejects(svc.create({ image: env.busybox, cmd: ['true'], user: 'ghost' }), (err: unknown) => {
      assert.ok(isJoeyError(err, 'ERR_INVALID_ARGUMENT'))
      assert.match((err as Error).message, /unable to find user ghost/)
      return true
    })
    await assert.rejects(svc.create({ image: env.busybox, cmd: ['true'], user: 'nobody:nogroup' }), code('ERR_INVALID_ARGUMENT'))
    assert.equal((await svc.list({ all: true })).length, before, 'a refused create leaves nothing behind')
    assert.deepEqual((await readdir(env.containersRoot)).length, before)
  })

  test('bind mounts: read-write and :ro', async () => {
    const host = join(env.dir, 'vol')
    await mkdir(host)
    await writeFile(join(host, 'in.txt'), 'from host\n')
    const rw = await runToExit(svc, { image: env.busybox, cmd: ['sh', '-c', 'cat /data/in.txt; echo from container > /data/out.txt'], binds: [`${host}:/data`] })
    assert.equal(rw.exitCode, 0)
    assert.equal(rw.stdout, 'from host\n')
    assert.equal(await readFile(join(host, 'out.txt'), 'utf8'), 'from container\n')
    const ro = await runToExit(svc, { image: env.busybox, cmd: ['sh', '-c', 'cat /data/in.txt; echo x > /data/nope.txt'], binds: [`${host}:/data:ro`] })
    assert.notEqual(ro.exitCode, 0)
    assert.equal(ro.stdout, 'from host\n')
    assert.match(ro.stderr, /Read-only file system/)
    assert.equal(existsSync(join(host, 'nope.txt')), false)
    const info = await svc.inspect(ro.id)
    assert.deepEqual(info.Mounts, [{ Type: 'bind', Source: host, Destination: '/data', Mode: 'ro', RW: false, Propagation: 'rprivate' }])
    // A missing host directory is created, as docker's -v does.
    const fresh = join(env.dir, 'fresh', 'dir')
    const mk = await runToExit(svc, { image: env.busybox, cmd: ['touch', '/v/made'], binds: [`${fresh}:/v`] })
    assert.equal(mk.exitCode, 0)
    assert.ok(existsSync(join(fresh, 'made')))
  })

  test('read-only rootfs refuses writes; the writable layer keeps writes across restarts otherwise', async () => {
    const ro = await runToExit(svc, { image: env.busybox, cmd: ['sh', '-c', 'touch /etc/x || touch /tmp/x'], readOnly: true })
    assert.notEqual(ro.exitCode, 0)
    assert.match(ro.stderr, /Read-only file system/)
    assert.equal((await svc.inspect(ro.id)).HostConfig.ReadonlyRootfs, true)

    const rw = await runToExit(svc, { image: env.busybox, cmd: ['sh', '-c', 'cat /state 2>/dev/null; echo run >> /state'] })
    assert.equal(rw.stdout, '')
    const again = svc.wait(rw.id, { condition: 'next-exit' })
    await svc.start(rw.id)
    await again
    const logs = await collect(await svc.logs(rw.id))
    assert.equal(logs.stdout, 'run\n', 'the second run sees what the first wrote; logs span both runs')
  })

  test('memory, cpu and pids limits land in the container\'s cgroup', async () => {
    const r = await runToExit(svc, {
      image: env.busybox,
      cmd: ['sh', '-c', [
        'cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes',
        'cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max',
        'cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us'
      ].join('; ')],
      memory: 64 * 1024 * 1024,
      pidsLimit: 20,
      cpus: 0.5
    })
    assert.equal(r.exitCode, 0, r.stderr)
    const [mem, pids, cpu] = r.stdout.trim().split('\n')
    assert.equal(mem, String(64 * 1024 * 1024))
    assert.equal(pids, '20')
    assert.match(cpu!, /^50000( 100000)?$/)
    const info = await svc.inspect(r.id)
    assert.equal(info.HostConfig.Memory, 64 * 1024 * 1024)
    assert.equal(info.HostConfig.PidsLimit, 20)
    assert.equal(info.HostConfig.NanoCpus, 500_000_000)
  })

  test('the pids limit stops a fork bomb at the limit', async () => {
    const r = await runToExit(svc, {
      image: env.busybox,
      cmd: ['sh', '-c', 'for i in $(seq 1 30); do sleep 5 & done 2>/dev/null; sleep 0.2; ls /proc | grep -c "^[0-9]"; kill $(jobs -p) 2>/dev/null; true'],
      pidsLimit: 10
    })
    const count = Number(r.stdout.trim().split('\n').at(-1))
    assert.ok(count <= 10, `at most 10 processes, saw ${count}`)
  })

  test('network none has only loopback; host shares the host\'s interfaces', async () => {
    const none = await runToExit(svc, { image: env.busybox, cmd: ['ls', '/sys/class/net'], network: 'none' })
    assert.deepEqual(none.stdout.trim().split(/\s+/), ['lo'])
    const hostIfs = (await readdir('/sys/class/net')).sort()
    const host = await runToExit(svc, { image: env.busybox, cmd: ['ls', '/sys/class/net'], network: 'host' })
    assert.deepEqual(host.stdout.trim().split(/\s+/).sort(), hostIfs)
  })

  test('docker\'s default isolation: capabilities, masked and read-only /proc paths, /dev/shm', async () => {
    const r = await runToExit(svc, {
      image: env.busybox,
      cmd: ['sh', '-c', [
        'grep CapBnd /proc/self/status',
        'cat /proc/kcore | wc -c',
        'echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo sys-writable || echo sys-readonly',
        'touch /dev/shm/x && echo shm-ok',
        'ls /proc/1/exe >/dev/null && cat /proc/1/comm',
        // The seccomp profile refuses new namespaces (user namespaces above all) and keyrings.
        'busybox unshare -U true 2>/dev/null && echo userns-allowed || echo userns-denied',
        'busybox unshare -n true 2>/dev/null && echo netns-allowed || echo netns-denied'
      ].join('; ')]
    })
    const lines = r.stdout.trim().split('\n')
    // docker's default set: chown dac_override fowner fsetid kill setgid setuid setpcap
    // net_bind_service net_raw sys_chroot mknod audit_write setfcap.
    assert.equal(lines[0], 'CapBnd:\t00000000a80425fb')
    assert.equal(lines[1], '0')
    assert.equal(lines[2], 'sys-readonly')
    assert.equal(lines[3], 'shm-ok')
    assert.match(lines[4]!, /^(catatonit|tini|tini-static|docker-init|init)$/, 'pid 1 is the init')
    assert.equal(lines[5], 'userns-denied')
    assert.equal(lines[6], 'netns-denied')
  })

  test('multi-layer image: whiteouts and opaque dirs applied, hard link and symlink intact', async () => {
    const script = [
      ...Object.keys(multiLayerExpectations.files).map(f => `cat '/${f}'`),
      ...multiLayerExpectations.absent.map(p => `test -e '/${p}' && echo 'PRESENT ${p}'`),
      `stat -c %i /data/keep /data/hard`,
      'readlink /data/link',
      'ls /opaque'
    ].join('; ')
    const r = await runToExit(svc, { image: env.multi, cmd: ['sh', '-c', script + '; true'] })
    assert.equal(r.exitCode, 0, r.stderr)
    const out = r.stdout
    assert.ok(out.startsWith(Object.values(multiLayerExpectations.files).join('')), out)
    assert.doesNotMatch(out, /PRESENT/)
    const lines = out.trim().split('\n')
    const [ino1, ino2] = lines.slice(-4, -2)
    assert.equal(ino1, ino2, 'hard link shares the inode')
    assert.equal(lines.at(-2), 'keep')
    assert.equal(lines.at(-1), 'c')
  })

})
