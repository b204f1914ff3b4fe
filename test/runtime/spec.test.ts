// Unit tests of the parts that need no runc: the OCI spec, user resolution inside a rootfs,
// bind/env/signal parsing, line splitting and the json-file reader.
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { isJoeyError } from '../../src/common/index.js'
import { buildSpec, DEFAULT_CAPABILITIES, defaultSeccompProfile, lookPath, MASKED_PATHS, READONLY_PATHS, resolveInRoot, resolveUser, type SpecInput } from '../../src/runtime/index.js'
import { LineSplitter, encodeEntry, formatNs } from '../../src/runtime/lines.js'
import { parseTime, readLog } from '../../src/runtime/logs.js'
import { humanDuration, mergeEnv, parseBind, parseSignal } from '../../src/runtime/util.js'
import { generateName, normalizeName } from '../../src/runtime/names.js'

const code = (c: string) => (err: unknown) => isJoeyError(err, c as never)

function input (over: Partial<SpecInput> = {}): SpecInput {
  return {
    rootfs: '/r',
    readOnly: false,
    args: ['/dev/init', '--', 'sh'],
    env: ['PATH=/bin'],
    cwd: '/',
    user: { uid: 0, gid: 0, additionalGids: [], home: '/root' },
    hostname: 'h',
    network: 'none',
    etc: { hostname: '/c/hostname', hosts: '/c/hosts', resolvConf: '/c/resolv.conf' },
    binds: [],
    cgroupsPath: '/joey/x',
    cgroupNamespace: false,
    nofile: 1024,
    ...over
  }
}

describe('OCI spec', () => {
  test('docker defaults: capabilities, masked and read-only paths, namespaces, mounts, rlimits', () => {
    const spec = buildSpec(input()) as any
    assert.equal(spec.ociVersion, '1.0.2')
    assert.equal(spec.process.terminal, false)
    assert.deepEqual(spec.process.capabilities.bounding, DEFAULT_CAPABILITIES)
    assert.equal(DEFAULT_CAPABILITIES.length, 14)
    assert.ok(!DEFAULT_CAPABILITIES.includes('CAP_SYS_ADMIN'))
    assert.deepEqual(spec.linux.maskedPaths, MASKED_PATHS)
    assert.deepEqual(spec.linux.readonlyPaths, READONLY_PATHS)
    assert.deepEqual(spec.linux.namespaces.map((n: any) => n.type), ['pid', 'ipc', 'uts', 'mount', 'network'])
    assert.deepEqual(spec.process.rlimits, [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }])
    const dests = spec.mounts.map((m: any) => m.destination)
    for (const d of ['/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys', '/sys/fs/cgroup', '/etc/hosts', '/etc/hostname', '/etc/resolv.conf']) assert.ok(dests.includes(d), d)
    assert.deepEqual(spec.linux.resources, { devices: [{ allow: false, access: 'rwm' }] })
    assert.equal(spec.linux.cgroupsPath, '/joey/x')
    assert.equal(spec.linux.seccomp, undefined)
  })

  test('the seccomp profile denies namespaces and keyrings and covers the compat ABIs', () => {
    const p = defaultSeccompProfile('x64') as any
    assert.equal(p.defaultAction, 'SCMP_ACT_ALLOW')
    assert.deepEqual(p.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'])
    const denied = p.syscalls.flatMap((r: any) => r.args === undefined && r.errnoRet === 1 ? r.names : [])
    for (const name of ['unshare', 'setns', 'keyctl', 'bpf', 'mount', 'init_module']) assert.ok(denied.includes(name), name)
    assert.ok(p.syscalls.some((r: any) => r.names.includes('clone') && r.args[0].value === 0x10000000))
    assert.equal((buildSpec(input({ seccomp: p })) as any).linux.seccomp, p)
  })

  test('host network keeps the host netns; cgroup v2 gets a cgroup namespace', () => {
    const spec = buildSpec(input({ network: 'host', cgroupNamespace: true })) as any
    assert.deepEqual(spec.linux.namespaces.map((n: any) => n.type), ['pid', 'ipc', 'uts', 'mount', 'cgroup'])
  })

  test('limits, read-only root, binds and init', () => {
    const spec = buildSpec(input({
      readOnly: true,
      memory: 64 << 20,
      limitSwap: true,
      cpus: 1.5,
      pidsLimit: 100,
      binds: [{ source: '/h', destination: '/c', readOnly: true }],
      init: { source: '/usr/bin/tini-static', target: '/dev/init' },
      user: { uid: 1000, gid: 1000, additionalGids: [5], home: '/home/u' }
    })) as any
    assert.equal(spec.root.readonly, true)
    assert.deepEqual(spec.linux.resources.memory, { limit: 64 << 20, swap: 64 << 20 })
    assert.deepEqual(spec.linux.resources.cpu, { quota: 150000, period: 100000 })
    assert.deepEqual(spec.linux.resources.pids, { limit: 100 })
    assert.deepEqual(spec.process.user, { uid: 1000, gid: 1000, additionalGids: [5] })
    const bind = spec.mounts.find((m: any) => m.destination === '/c')
    assert.deepEqual(bind, { destination: '/c', type: 'bind', source: '/h', options: ['rbind', 'rprivate', 'ro'] })
    const init = spec.mounts.find((m: any) => m.destination === '/dev/init')
    assert.equal(init.source, '/usr/bin/tini-static')
    assert.ok(init.options.includes('ro'))
    assert.ok(spec.mounts.find((m: any) => m.destination === '/etc/hosts').options.includes('ro'))
  })
})

describe('user resolution in a rootfs', () => {
  let root: string
  let outside: string

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'joey-rootfs-'))
    outside = await mkdtemp(join(tmpdir(), 'joey-outside-'))
    await mkdir(join(root, 'etc'))
    await mkdir(join(root, 'bin'))
    await writeFile(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n# comment\nbroken line\n')
    await writeFile(join(root, 'etc/group'), 'root:x:0:\napp:x:1000:\nstaff:x:50:app,other\nwheel:x:10:app\n')
    await writeFile(join(root, 'bin/tool'), '#!/bin/sh\n', { mode: 0o755 })
    await writeFile(join(root, 'bin/data'), 'x', { mode: 0o644 })
    await symlink('/bin/tool', join(root, 'bin/abs-link'))
    await writeFile(join(outside, 'passwd'), 'evil:x:0:0::/:/bin/sh\n')
  })
  after(async () => {
    await rm(root, { recursive: true, force: true })
    await rm(outside, { recursive: true, force: true })
  })

  test('names, uids, groups and supplementary groups', async () => {
    assert.deepEqual(await resolveUser(root, ''), { uid: 0, gid: 0, additionalGids: [], home: '/root' })
    assert.deepEqual(await resolveUser(root, 'app'), { uid: 1000, gid: 1000, additionalGids: [50, 10], home: '/home/app' })
    assert.deepEqual(await resolveUser(root, '1000'), { uid: 1000, gid: 1000, additionalGids: [50, 10], home: '/home/app' })
    assert.deepEqual(await resolveUser(root, 'app:staff'), { uid: 1000, gid: 50, additionalGids: [10], home: '/home/app' })
    assert.deepEqual(await resolveUser(root, '123:456'), { uid: 123, gid: 456, additionalGids: [], home: '/' })
    await assert.rejects(resolveUser(root, 'ghost'), code('ERR_INVALID_ARGUMENT'))
    await assert.rejects(resolveUser(root, 'app:nogroup'), code('ERR_INVALID_ARGUMENT'))
    await assert.rejects(resolveUser(root, 'a:b:c'), code('ERR_INVALID_ARGUMENT'))
    await assert.rejects(resolveUser(root, '99999999999'), code('ERR_INVALID_ARGUMENT'))
    await assert.rejects(resolveUser(root, 'app:'), code('ERR_INVALID_ARGUMENT'))
  })

  test('symlinks in the image cannot make the daemon read host files', async () => {
    const evil = await mkdtemp(join(tmpdir(), 'joey-evil-'))
    try {
      await mkdir(join(evil, 'etc'))
      await symlink(join(outside, 'passwd'), join(evil, 'etc/passwd'))
      // The absolute target is taken inside the rootfs, where it does not exist.
      await assert.rejects(resolveUser(evil, 'evil'), code('ERR_INVALID_ARGUMENT'))
      await rm(join(evil, 'etc/passwd'))
      await symlink('../../../../../../../../' + join(outside, 'passwd'), join(evil, 'etc/passwd'))
      await assert.rejects(resolveUser(evil, 'evil'), code('ERR_INVALID_ARGUMENT'))
      assert.equal(await resolveInRoot(evil, '/etc/passwd'), join(evil, outside, 'passwd'))
    } finally {
      await rm(evil, { recursive: true, force: true })
    }
  })

  test('lookPath finds executables like execvp, through absolute symlinks inside the root', async () => {
    assert.deepEqual(await lookPath(root, 'tool', '/usr/bin:/bin', '/'), { ok: true, path: '/bin/tool' })
    assert.deepEqual(await lookPath(root, '/bin/abs-link', '', '/'), { ok: true, path: '/bin/abs-link' })
    assert.equal((await lookPath(root, 'data', '/bin', '/') as any).reason, 'not-executable')
    assert.equal((await lookPath(root, 'nope', '/bin', '/') as any).reason, 'not-found')
    assert.equal((await lookPath(root, './tool', '', '/bin')).ok, true)
  })
})

describe('parsing', () => {
  test('binds', () => {
    assert.deepEqual(parseBind('/a:/b'), { source: '/a', destination: '/b', readOnly: false })
    assert.deepEqual(parseBind('/a/:/b/../c:ro'), { source: '/a/', destination: '/c', readOnly: true })
    for (const bad of ['/a', 'vol:/b', '/a:b', '/a:/', '/a:/b:z', '/a:/b:ro:x']) assert.throws(() => parseBind(bad), code('ERR_INVALID_ARGUMENT'), bad)
  })

  test('env merge, signals, names, durations, times', () => {
    assert.deepEqual(mergeEnv(['A=1', 'B=2', 'C=3'], ['B=x', 'D=4', 'C']), ['A=1', 'B=x', 'D=4'])
    assert.equal(parseSignal('TERM', 'KILL'), 15)
    assert.equal(parseSignal('sigusr1', 'KILL'), 10)
    assert.equal(parseSignal(9, 'TERM'), 9)
    assert.equal(parseSignal(undefined, 'SIGKILL'), 9)
    for (const bad of ['NOPE', 0, 65, '1.5']) assert.throws(() => parseSignal(bad, 'TERM'), code('ERR_INVALID_ARGUMENT'))
    assert.equal(normalizeName('/web'), 'web')
    assert.throws(() => normalizeName('a'), code('ERR_INVALID_ARGUMENT'))
    assert.throws(() => normalizeName('-x'), code('ERR_INVALID_ARGUMENT'))
    const taken = new Set<string>()
    for (let i = 0; i < 200; i++) {
      const n = generateName(x => taken.has(x))
      assert.ok(!taken.has(n))
      taken.add(normalizeName(n))
    }
    assert.equal(humanDuration(300), 'Less than a second')
    assert.equal(humanDuration(5000), '5 seconds')
    assert.equal(humanDuration(65_000), 'About a minute')
    assert.equal(humanDuration(3 * 3600_000), '3 hours')
    assert.equal(parseTime(1.5, 'since'), 1500)
    assert.equal(parseTime('2024-01-01T00:00:00Z', 'since'), Date.UTC(2024, 0, 1))
    assert.throws(() => parseTime('soon', 'since'), code('ERR_INVALID_ARGUMENT'))
    assert.equal(formatNs(1_700_000_000_123_456_789n), '2023-11-14T22:13:20.123456789Z')
  })

  test('line splitter: newlines kept, long lines cut, tail flushed at end', () => {
    const lines: string[] = []
    const s = new LineSplitter(4, l => lines.push(l.toString()))
    s.push(Buffer.from('ab\ncd'))
    s.push(Buffer.from('e\nfghij'))
    s.push(Buffer.from('k'))
    s.end()
    assert.deepEqual(lines, ['ab\n', 'cde\n', 'fghi', 'jk'])
  })
})

describe('json-file reader', () => {
  let dir: string
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'joey-logs-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  test('skips torn lines, keeps UTF-8 across chunk boundaries, follows until done', async () => {
    const path = join(dir, 'x-json.log')
    const long = 'é'.repeat(40_000) + '\n'
    await writeFile(path, encodeEntry('stdout', Buffer.from('one\n'), '2024-01-01T00:00:00.000000001Z') + '{"torn\n' +
      encodeEntry('stderr', Buffer.from(long), '2024-01-01T00:00:01.000000000Z'))
    let done = false
    const wakers = new Set<() => void>()
    const got: string[] = []
    const reader = (async () => {
      for await (const e of readLog({ path, stdout: true, stderr: true, follow: true, done: () => done, subscribe: w => { wakers.add(w); return () => wakers.delete(w) } })) got.push(`${e.stream}:${e.line.toString()}`)
    })()
    await new Promise(resolve => setTimeout(resolve, 100))
    await writeFile(path, encodeEntry('stdout', Buffer.from('late\n'), '2024-01-01T00:00:02Z'), { flag: 'a' })
    done = true
    for (const w of wakers) w()
    await reader
    assert.deepEqual(got, ['stdout:one\n', `stderr:${long}`, 'stdout:late\n'])
  })
})
