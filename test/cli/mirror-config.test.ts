// `joey mirror configure`: the pure writers, and the command against files in a temp dir
// (written, parsed back, backed up, undone byte for byte). Real containerd and podman read
// what it writes in test/mirror/clients.test.ts.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { chmod, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { runCli } from '../../src/cli/cli.js'
import {
  BACKUP_SUFFIX, CREATED_SUFFIX, applyFile, containerdConfigWarnings, containerdHostsToml, dockerDaemonJson, parseMirrorUrl,
  parseRegistry, podmanMirrorLocation, podmanRegistriesConf, podmanWarnings, undoFile
} from '../../src/cli/mirror-config.js'
import { isJoeyError } from '../../src/common/index.js'

const exec = promisify(execFile)
const mirror = parseMirrorUrl('http://127.0.0.1:65001')

/** TOML → JSON through Python's tomllib (Debian's python3), a parser we did not write. */
async function parseToml (text: string): Promise<Record<string, any>> {
  const script = 'import sys, json, tomllib; print(json.dumps(tomllib.loads(sys.stdin.read())))'
  const child = exec('python3', ['-c', script])
  child.child.stdin?.end(text)
  return JSON.parse((await child).stdout) as Record<string, any>
}

interface Run { code: number, stdout: string, stderr: string }

async function joey (...argv: string[]): Promise<Run> {
  let stdout = ''
  let stderr = ''
  const code = await runCli(argv, {
    stdout: { write: (s: string) => { stdout += s }, isTTY: false },
    stderr: { write: (s: string) => { stderr += s } },
    env: {}
  })
  return { code, stdout, stderr }
}

/** Every file under dir with its bytes, to prove a command changed nothing (or exactly what). */
async function snapshot (dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name)
      if (e.isDirectory()) {
        out[`${p}/`] = ''
        await walk(p)
      } else {
        out[p] = (await readFile(p)).toString('base64')
      }
    }
  }
  await walk(dir)
  return out
}

let dir: string
let n = 0
const fresh = async (): Promise<string> => {
  const d = join(dir, `case${n++}`)
  await mkdir(d)
  return d
}

before(async () => { dir = await mkdtemp(join(tmpdir(), 'joey-mirror-config-')) })
after(async () => { await rm(dir, { recursive: true, force: true }) })

describe('argument parsing', () => {
  test('mirror URLs', () => {
    assert.deepEqual(parseMirrorUrl('http://127.0.0.1:65001/'), { scheme: 'http', host: '127.0.0.1:65001', url: 'http://127.0.0.1:65001' })
    assert.deepEqual(parseMirrorUrl('https://joey.internal'), { scheme: 'https', host: 'joey.internal', url: 'https://joey.internal' })
    for (const bad of ['127.0.0.1:65001', 'ftp://x', 'http://h/v2', 'http://h?x=1', 'http://u:p@h', '']) {
      assert.throws(() => parseMirrorUrl(bad), (e: unknown) => isJoeyError(e, 'ERR_INVALID_ARGUMENT'), bad)
    }
  })

  test('registries: hosts, ports, schemes and Docker Hub aliases', () => {
    assert.deepEqual(parseRegistry('Quay.IO'), { host: 'quay.io', scheme: 'https' })
    assert.deepEqual(parseRegistry('http://127.0.0.1:5000'), { host: '127.0.0.1:5000', scheme: 'http' })
    assert.deepEqual(parseRegistry('registry.example.com:5000'), { host: 'registry.example.com:5000', scheme: 'https' })
    for (const alias of ['docker.io', 'index.docker.io', 'registry-1.docker.io', 'https://index.docker.io/']) {
      assert.deepEqual(parseRegistry(alias), { host: 'docker.io', scheme: 'https' }, alias)
    }
    for (const bad of ['', 'a b', 'host:99999', 'host:', '-bad.com', 'host/path', 'ftp://x.io']) {
      assert.throws(() => parseRegistry(bad), (e: unknown) => isJoeyError(e, 'ERR_INVALID_ARGUMENT'), bad)
    }
  })
})

describe('pure writers', () => {
  test('containerd hosts.toml: the registry as server, the mirror for pull and resolve', async () => {
    const hub = await parseToml(containerdHostsToml(parseRegistry('docker.io'), mirror))
    assert.deepEqual(hub, { server: 'https://registry-1.docker.io', host: { 'http://127.0.0.1:65001': { capabilities: ['pull', 'resolve'] } } })
    const plain = await parseToml(containerdHostsToml(parseRegistry('http://127.0.0.1:5000'), parseMirrorUrl('https://joey.internal:8443')))
    assert.deepEqual(plain, { server: 'http://127.0.0.1:5000', host: { 'https://joey.internal:8443': { capabilities: ['pull', 'resolve'] } } })
  })

  test('podman drop-in: one registry with one mirror each; insecure only where it is plain HTTP', async () => {
    const regs = ['docker.io', 'quay.io', 'http://127.0.0.1:5000'].map(parseRegistry)
    const conf = await parseToml(podmanRegistriesConf(regs, mirror))
    assert.deepEqual(conf, {
      registry: [
        { prefix: 'docker.io', location: 'docker.io', mirror: [{ location: '127.0.0.1:65001', insecure: true }] },
        // joeyd reads the registry from the path: podman sends no ?ns=.
        { prefix: 'quay.io', location: 'quay.io', mirror: [{ location: '127.0.0.1:65001/quay.io', insecure: true }] },
        // A port cannot appear in a path: joeyd's --mirror-upstream has to be that registry.
        { prefix: '127.0.0.1:5000', location: '127.0.0.1:5000', insecure: true, mirror: [{ location: '127.0.0.1:65001', insecure: true }] }
      ]
    })
    const tls = await parseToml(podmanRegistriesConf([parseRegistry('quay.io')], parseMirrorUrl('https://joey.internal')))
    assert.deepEqual(tls.registry[0].mirror, [{ location: 'joey.internal/quay.io' }])
    assert.equal(podmanMirrorLocation(parseRegistry('ghcr.io'), mirror), '127.0.0.1:65001/ghcr.io')
    const warnings = podmanWarnings(regs, mirror)
    assert.ok(warnings.some(w => w.includes('insecure = true')))
    assert.ok(warnings.some(w => w.includes('--mirror-upstream 127.0.0.1:5000')))
    assert.deepEqual(podmanWarnings([parseRegistry('quay.io')], parseMirrorUrl('https://joey.internal')), [])
  })

  test('docker daemon.json: mirror first, every other key and mirror kept', () => {
    assert.deepEqual(JSON.parse(dockerDaemonJson(undefined, mirror)), { 'registry-mirrors': ['http://127.0.0.1:65001'] })
    assert.deepEqual(JSON.parse(dockerDaemonJson('  \n', mirror)), { 'registry-mirrors': ['http://127.0.0.1:65001'] })
    const merged = JSON.parse(dockerDaemonJson('{"debug":true,"registry-mirrors":["https://m.example","http://127.0.0.1:65001/"],"log-opts":{"max-size":"10m"}}', mirror))
    assert.deepEqual(merged, { debug: true, 'registry-mirrors': ['http://127.0.0.1:65001', 'https://m.example'], 'log-opts': { 'max-size': '10m' } })
    const done = '{"registry-mirrors": ["http://127.0.0.1:65001"]}'
    assert.equal(dockerDaemonJson(done, mirror), done, 'already first: left as it is')
    for (const bad of ['{', '[]', '"x"', '{"registry-mirrors": "http://x"}', '{"registry-mirrors": [1]}']) {
      assert.throws(() => dockerDaemonJson(bad, mirror), (e: unknown) => isJoeyError(e, 'ERR_INVALID_CONFIG'), bad)
    }
  })

  test("containerd config.toml: warns with the lines to add, per config version", () => {
    const hosts = '/etc/containerd/certs.d'
    const file = '/etc/containerd/config.toml'
    const absent = containerdConfigWarnings(undefined, file, hosts)
    assert.equal(absent.length, 1)
    assert.match(absent[0] as string, /\[plugins\."io\.containerd\.grpc\.v1\.cri"\.registry\]\n {2}config_path = "\/etc\/containerd\/certs\.d"/)

    const v2 = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "overlayfs"\n'
    assert.match(containerdConfigWarnings(v2, file, hosts)[0] as string, /add\n\[plugins\."io\.containerd\.grpc\.v1\.cri"\.registry\]\n {2}config_path = "\/etc\/containerd\/certs\.d"\n/)
    const v1 = '[plugins.cri.containerd]\n  snapshotter = "overlayfs"\n'
    assert.match(containerdConfigWarnings(v1, file, hosts)[0] as string, /\[plugins\.cri\.registry\]\n {2}config_path/)
    const v3 = 'version = 3\n'
    assert.match(containerdConfigWarnings(v3, file, hosts)[0] as string, /\[plugins\."io\.containerd\.cri\.v1\.images"\.registry\]/)

    const ok = [
      'version = 2',
      'disabled_plugins = []',
      '[plugins."io.containerd.grpc.v1.cri".registry]',
      '  config_path = "/etc/containerd/certs.d:/etc/docker/certs.d" # both',
      ''
    ].join('\n')
    assert.deepEqual(containerdConfigWarnings(ok, file, hosts), [])
    const dotted = 'version = 2\n[plugins]\n  "io.containerd.grpc.v1.cri".registry.config_path = \'/etc/containerd/certs.d/\'\n'
    assert.deepEqual(containerdConfigWarnings(dotted, file, hosts), [])
    const other = 'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/srv/certs.d"\n'
    assert.match(containerdConfigWarnings(other, file, hosts)[0] as string, /config_path to "\/srv\/certs\.d", not \/etc\/containerd\/certs\.d/)
    const mirrors = ok + '[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n  endpoint = ["https://m.example"]\n'
    const w = containerdConfigWarnings(mirrors, file, hosts)
    assert.equal(w.length, 1)
    assert.match(w[0] as string, /registry\.mirrors\] tables: containerd refuses them together with config_path/)
  })
})

test('the ready-made files in deploy/ are what the writers produce', async () => {
  const root = new URL('../../deploy/', import.meta.url).pathname
  for (const host of ['docker.io', 'quay.io', 'ghcr.io']) {
    assert.equal(await readFile(join(root, 'containerd', 'certs.d', host, 'hosts.toml'), 'utf8'), containerdHostsToml(parseRegistry(host), mirror), host)
  }
  assert.equal(await readFile(join(root, 'podman', 'registries.conf.d', '50-joey-mirror.conf'), 'utf8'),
    podmanRegistriesConf(['docker.io', 'quay.io', 'ghcr.io'].map(parseRegistry), mirror))
  assert.equal(await readFile(join(root, 'docker', 'daemon.json'), 'utf8'), dockerDaemonJson(undefined, mirror))
  const snippet = await readFile(join(root, 'containerd', 'config-cri-registry.toml'), 'utf8')
  assert.deepEqual(containerdConfigWarnings(snippet, 'config-cri-registry.toml', '/etc/containerd/certs.d'), [])
  assert.equal((await parseToml(snippet)).plugins['io.containerd.grpc.v1.cri'].registry.config_path, '/etc/containerd/certs.d')
})

describe('file layer', () => {
  test('a changed file keeps its first original; undo restores it byte for byte with its mode', async () => {
    const d = await fresh()
    const file = join(d, 'f.conf')
    const original = Buffer.from([0xef, 0xbb, 0xbf, 0x61, 0x0d, 0x0a, 0x00, 0xff]) // BOM, CRLF, NUL: bytes, not text
    await writeFile(file, original)
    await chmod(file, 0o600)
    assert.deepEqual(await applyFile(file, 'one\n'), { path: file, action: 'updated', backup: file + BACKUP_SUFFIX })
    assert.equal((await stat(file)).mode & 0o777, 0o600)
    assert.deepEqual(await applyFile(file, 'two\n'), { path: file, action: 'updated', backup: file + BACKUP_SUFFIX })
    assert.deepEqual(await applyFile(file, 'two\n'), { path: file, action: 'unchanged' })
    assert.deepEqual(await readFile(file + BACKUP_SUFFIX), original, 'the backup is the first original, not joey\'s own first version')
    assert.deepEqual(await undoFile(file), { path: file, action: 'restored', backup: file + BACKUP_SUFFIX })
    assert.deepEqual(await readFile(file), original)
    assert.equal((await stat(file)).mode & 0o777, 0o600)
    assert.deepEqual(await readdir(d), ['f.conf'])
    assert.equal(await undoFile(file), undefined, 'a second undo finds nothing')
  })

  test('a symlinked file is changed where it points; the link survives change and undo', async () => {
    const d = await fresh()
    await mkdir(join(d, 'managed'))
    const real = join(d, 'managed', 'daemon.json')
    await writeFile(real, '{"debug": true}')
    const link = join(d, 'daemon.json')
    await symlink(real, link)
    assert.deepEqual(await applyFile(link, '{}\n'), { path: real, action: 'updated', backup: real + BACKUP_SUFFIX })
    assert.equal(await readlink(link), real)
    assert.equal(await readFile(link, 'utf8'), '{}\n')
    assert.deepEqual(await undoFile(link), { path: real, action: 'restored', backup: real + BACKUP_SUFFIX })
    assert.equal(await readlink(link), real)
    assert.equal(await readFile(real, 'utf8'), '{"debug": true}')
  })

  test('a created file is removed by undo; a file joey never touched is left alone', async () => {
    const d = await fresh()
    const file = join(d, 'sub', 'new.conf')
    assert.deepEqual(await applyFile(file, 'x\n'), { path: file, action: 'created' })
    assert.deepEqual((await readdir(join(d, 'sub'))).sort(), ['new.conf', 'new.conf' + CREATED_SUFFIX])
    assert.deepEqual(await applyFile(file, 'y\n'), { path: file, action: 'updated', backup: file + BACKUP_SUFFIX })
    assert.deepEqual((await readdir(join(d, 'sub'))).sort(), ['new.conf', 'new.conf' + CREATED_SUFFIX], 'still joey\'s own file: no backup of it')
    assert.deepEqual(await undoFile(file), { path: file, action: 'removed' })
    assert.deepEqual(await readdir(join(d, 'sub')), [])
    const mine = join(d, 'mine.conf')
    await writeFile(mine, 'operator\n')
    assert.equal(await undoFile(mine), undefined)
    assert.equal(await readFile(mine, 'utf8'), 'operator\n')
  })
})

describe('joey mirror configure', () => {
  test('containerd: a hosts.toml per registry, warnings about config.toml, undo removes them', async () => {
    const d = await fresh()
    const hosts = join(d, 'certs.d')
    const cfg = join(d, 'config.toml')
    await writeFile(cfg, 'version = 2\n')
    const r = await joey('mirror', 'configure', 'containerd', '--config-path', hosts, '--containerd-config', cfg,
      '--registry', 'docker.io', '--registry', 'http://127.0.0.1:5000', '--mirror', 'http://127.0.0.1:7001')
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, `created ${join(hosts, 'docker.io', 'hosts.toml')}\ncreated ${join(hosts, '127.0.0.1:5000', 'hosts.toml')}\n`)
    assert.match(r.stderr, /joey: warning: .*config\.toml does not set config_path for the CRI registry/)
    assert.ok(r.stderr.includes(`[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "${hosts}"`), r.stderr)
    assert.match(r.stderr, /ctr reads hosts\.toml only when told/)
    const hub = await parseToml(await readFile(join(hosts, 'docker.io', 'hosts.toml'), 'utf8'))
    assert.equal(hub.server, 'https://registry-1.docker.io')
    assert.deepEqual(hub.host, { 'http://127.0.0.1:7001': { capabilities: ['pull', 'resolve'] } })
    const local = await parseToml(await readFile(join(hosts, '127.0.0.1:5000', 'hosts.toml'), 'utf8'))
    assert.equal(local.server, 'http://127.0.0.1:5000')

    // An operator's own hosts.toml for another registry survives configure and undo.
    await mkdir(join(hosts, 'quay.io'))
    await writeFile(join(hosts, 'quay.io', 'hosts.toml'), 'server = "https://quay.io"\n')
    const u = await joey('mirror', 'configure', 'containerd', '--undo', '--config-path', hosts)
    assert.equal(u.code, 0, u.stderr)
    assert.equal(u.stdout, `removed ${join(hosts, '127.0.0.1:5000', 'hosts.toml')}\nremoved ${join(hosts, 'docker.io', 'hosts.toml')}\n`)
    assert.deepEqual(await snapshot(d), {
      [cfg]: Buffer.from('version = 2\n').toString('base64'),
      [`${hosts}/`]: '',
      [`${join(hosts, 'quay.io')}/`]: '',
      [join(hosts, 'quay.io', 'hosts.toml')]: Buffer.from('server = "https://quay.io"\n').toString('base64')
    })
  })

  test('containerd: an existing hosts.toml is backed up and restored byte for byte', async () => {
    const d = await fresh()
    const hosts = join(d, 'certs.d')
    const file = join(hosts, 'docker.io', 'hosts.toml')
    const original = '# mine\r\nserver = "https://registry-1.docker.io"\r\n[host."https://cache.example"]\r\n  capabilities = ["pull"]\r\n'
    await mkdir(join(hosts, 'docker.io'), { recursive: true })
    await writeFile(file, original)
    const cfg = join(d, 'config.toml')
    await writeFile(cfg, `version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "${hosts}"\n`)
    const r = await joey('mirror', 'configure', 'containerd', '--config-path', hosts, '--containerd-config', cfg)
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, `updated ${file} (the version before joey's first change is kept in ${file}${BACKUP_SUFFIX})\n`)
    assert.doesNotMatch(r.stderr, /config_path/, 'config.toml is right: no warning about it')
    assert.equal(await readFile(file + BACKUP_SUFFIX, 'utf8'), original)
    const before = await snapshot(d)
    const again = await joey('mirror', 'configure', 'containerd', '--config-path', hosts, '--containerd-config', cfg)
    assert.equal(again.stdout, `unchanged ${file}\n`)
    assert.deepEqual(await snapshot(d), before)
    const u = await joey('mirror', 'configure', 'containerd', '--undo', '--config-path', hosts, '--registry', 'index.docker.io')
    assert.equal(u.code, 0, u.stderr)
    assert.equal(u.stdout, `restored ${file} from ${file}${BACKUP_SUFFIX}\n`)
    assert.equal(await readFile(file, 'utf8'), original)
    assert.deepEqual(await readdir(join(hosts, 'docker.io')), ['hosts.toml'])
  })

  test('podman: a drop-in in the directory given; undo removes it', async () => {
    const d = await fresh()
    const dropins = join(d, 'registries.conf.d')
    await mkdir(dropins)
    await writeFile(join(dropins, '00-shortnames.conf'), '[aliases]\n"bb" = "docker.io/library/busybox"\n')
    const r = await joey('mirror', 'configure', 'podman', '--config-path', dropins, '--registry', 'docker.io', '--registry', 'quay.io')
    assert.equal(r.code, 0, r.stderr)
    const file = join(dropins, '50-joey-mirror.conf')
    assert.equal(r.stdout, `created ${file}\n`)
    assert.match(r.stderr, /insecure = true/)
    const conf = await parseToml(await readFile(file, 'utf8'))
    assert.deepEqual(conf.registry.map((x: { prefix: string, mirror: Array<{ location: string }> }) => [x.prefix, x.mirror[0]?.location]), [
      ['docker.io', '127.0.0.1:65001'], ['quay.io', '127.0.0.1:65001/quay.io']
    ])
    const u = await joey('mirror', 'configure', 'podman', '--undo', '--config-path', dropins)
    assert.equal(u.stdout, `removed ${file}\n`)
    assert.deepEqual(await readdir(dropins), ['00-shortnames.conf'])
  })

  test('docker: daemon.json merged, backed up, restored byte for byte; a restart is called for', async () => {
    const d = await fresh()
    const file = join(d, 'daemon.json')
    const original = '{\n\t"debug": true,\n\t"registry-mirrors": ["https://m.example"]\n}'
    await writeFile(file, original)
    const r = await joey('mirror', 'configure', 'docker', '--config-path', file)
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(JSON.parse(await readFile(file, 'utf8')), { debug: true, 'registry-mirrors': ['http://127.0.0.1:65001', 'https://m.example'] })
    assert.match(r.stderr, /only Docker Hub/)
    assert.match(r.stderr, /systemctl restart docker/)
    const u = await joey('mirror', 'configure', 'docker', '--config-path', file, '--undo')
    assert.equal(u.code, 0, u.stderr)
    assert.equal(await readFile(file, 'utf8'), original)
    assert.deepEqual(await readdir(d), ['daemon.json'])

    const absent = join(d, 'etc-docker')
    const c = await joey('mirror', 'configure', 'docker', '--config-path', `${absent}/`)
    assert.equal(c.stdout, `created ${join(absent, 'daemon.json')}\n`)
    assert.deepEqual(JSON.parse(await readFile(join(absent, 'daemon.json'), 'utf8')), { 'registry-mirrors': ['http://127.0.0.1:65001'] })
    await joey('mirror', 'configure', 'docker', '--config-path', `${absent}/`, '--undo')
    assert.deepEqual(await readdir(absent), [])
  })

  test('undo when nothing was changed is a clean no-op', async () => {
    const d = await fresh()
    await writeFile(join(d, 'daemon.json'), '{}')
    await mkdir(join(d, 'certs.d', 'docker.io'), { recursive: true })
    await writeFile(join(d, 'certs.d', 'docker.io', 'hosts.toml'), 'server = "https://registry-1.docker.io"\n')
    const before = await snapshot(d)
    for (const args of [
      ['docker', '--config-path', join(d, 'daemon.json')],
      ['containerd', '--config-path', join(d, 'certs.d')],
      ['containerd', '--config-path', join(d, 'nowhere')],
      ['podman', '--config-path', join(d, 'x.conf')]
    ]) {
      const u = await joey('mirror', 'configure', ...args, '--undo')
      assert.equal(u.code, 0, u.stderr)
      assert.match(u.stdout, /^nothing to undo: /, args.join(' '))
      assert.equal(u.stderr, '')
    }
    assert.deepEqual(await snapshot(d), before)
  })

  test('bad arguments: exit 2, one clear line, nothing written', async () => {
    const d = await fresh()
    await writeFile(join(d, 'daemon.json'), '{"debug": true}')
    const before = await snapshot(d)
    const cases: Array<[string[], RegExp]> = [
      [[], /name the client to configure: containerd, podman, docker/],
      [['nerdctl'], /unknown client "nerdctl"/],
      [['docker', '--mirror', 'ftp://x'], /--mirror: expected an http:\/\/ or https:\/\/ URL/],
      [['docker', '--mirror', 'http://127.0.0.1:65001/v2/'], /--mirror: expected scheme:\/\/host\[:port\] without path/],
      [['podman', '--registry', 'bad host'], /--registry: expected a registry host\[:port\]/],
      [['docker', '--registry', 'quay.io'], /dockerd mirrors Docker Hub \(docker\.io\) only/],
      [['podman', '--containerd-config', '/x'], /--containerd-config applies to containerd only/],
      [['docker', '--config-path', ''], /--config-path: expected a path/]
    ]
    for (const [args, message] of cases) {
      const withPath = args.includes('--config-path') ? args : [...args, '--config-path', join(d, 'daemon.json')]
      const r = await joey('mirror', 'configure', ...withPath)
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
      assert.equal(r.stdout, '')
      assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr)
      assert.match(r.stderr, /^joey: /)
      assert.match(r.stderr, message)
    }
    assert.deepEqual(await snapshot(d), before)
  })

  test('a daemon.json that is not JSON is refused and left alone (exit 1)', async () => {
    const d = await fresh()
    const file = join(d, 'daemon.json')
    await writeFile(file, '{"debug": true,}')
    const r = await joey('mirror', 'configure', 'docker', '--config-path', file)
    assert.equal(r.code, 1)
    assert.match(r.stderr, /daemon\.json: not valid JSON .*nothing was changed/)
    assert.deepEqual(await readdir(d), ['daemon.json'])
    assert.equal(await readFile(file, 'utf8'), '{"debug": true,}')
  })

  test('a path that cannot be written: a clear error naming it (exit 1)', async () => {
    const d = await fresh()
    await writeFile(join(d, 'plain-file'), 'x')
    const r = await joey('mirror', 'configure', 'docker', '--config-path', join(d, 'plain-file', 'daemon.json'))
    assert.equal(r.code, 1)
    assert.equal(r.stderr, `joey: cannot read ${join(d, 'plain-file', 'daemon.json')}: a parent is not a directory\n`)
    assert.deepEqual(await readdir(d), ['plain-file'])
  })
})
