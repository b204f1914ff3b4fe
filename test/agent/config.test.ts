import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { CommanderError } from 'commander'
import { isJoeyError } from '../../src/common/index.js'
import { parseAgentConfig, registryHostFromEnvName } from '../../src/agent/index.js'

const ROOT = new URL('../..', import.meta.url).pathname
const CA = '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n'

let dir: string
before(async () => { dir = await mkdtemp(join(tmpdir(), 'joey-agent-config-')) })
after(async () => { await rm(dir, { recursive: true, force: true }) })

async function yamlFile (name: string, text: string): Promise<string> {
  const path = join(dir, name)
  await writeFile(path, text)
  return path
}

/** Asserts parsing fails with ERR_INVALID_CONFIG and a message that starts with `where`. */
function rejects (argv: string[], where: string | RegExp, env: Record<string, string> = {}): void {
  assert.throws(() => parseAgentConfig(argv, env), (err: unknown) => {
    assert.ok(isJoeyError(err, 'ERR_INVALID_CONFIG'), `expected ERR_INVALID_CONFIG, got ${String(err)}`)
    if (typeof where === 'string') assert.ok(err.message.startsWith(`${where}:`), `"${err.message}" should start with "${where}:"`)
    else assert.match(err.message, where)
    assert.ok(!err.message.includes('\n'), 'one line')
    return true
  }, argv.join(' '))
}

describe('parseAgentConfig: flags', () => {
  test('defaults', () => {
    const c = parseAgentConfig([], {})
    assert.deepEqual(c.hosts, [{ kind: 'unix', path: '/run/joey/joeyd.sock', address: 'unix:///run/joey/joeyd.sock' }])
    assert.equal(c.dataRoot, '/var/lib/joey')
    assert.deepEqual(c.insecureRegistries, [])
    assert.deepEqual(c.registries, {})
    assert.equal(c.logLevel, 'info')
    assert.equal(c.logFormat, 'json')
    assert.equal(c.maxConcurrentDownloads, 3)
    assert.equal(c.platform, undefined)
    // With a supernode every layer starts at once; an explicit value still wins.
    assert.equal(parseAgentConfig(['--supernode', 'http://10.0.0.1:8002'], {}).maxConcurrentDownloads, 16)
    assert.equal(parseAgentConfig(['--supernode', 'http://10.0.0.1:8002', '--max-concurrent-downloads', '2'], {}).maxConcurrentDownloads, 2)
    assert.equal(c.registryConfig, undefined)
    assert.equal(c.configFile, undefined)
  })

  test('every flag', async () => {
    const dockerConfig = await yamlFile('config.json', '{"auths":{}}')
    const c = parseAgentConfig([
      '-H', 'unix:///tmp/j/joeyd.sock', '--host', 'tcp://127.0.0.1:2376', '-H', 'tcp://[::1]', '-H', 'unix:///tmp/j/joeyd.sock',
      '--data-root', 'rel/data', '--insecure-registry', 'Registry.Local:5000', '--insecure-registry', '10.0.0.1',
      '--registry-config', dockerConfig, '--platform', 'linux/arm64', '--max-concurrent-downloads', '6',
      '--log-level', 'debug', '--log-format', 'pretty'
    ], {})
    assert.deepEqual(c.hosts, [
      { kind: 'unix', path: '/tmp/j/joeyd.sock', address: 'unix:///tmp/j/joeyd.sock' },
      { kind: 'tcp', host: '127.0.0.1', port: 2376, address: 'tcp://127.0.0.1:2376' },
      { kind: 'tcp', host: '::1', port: 2375, address: 'tcp://[::1]:2375' }
    ])
    assert.equal(c.dataRoot, resolve(process.cwd(), 'rel/data'))
    assert.deepEqual(c.insecureRegistries, ['registry.local:5000', '10.0.0.1'])
    assert.equal(c.registryConfig, dockerConfig)
    assert.equal(c.platform, 'linux/arm64')
    assert.equal(c.maxConcurrentDownloads, 6)
    assert.equal(c.logLevel, 'debug')
    assert.equal(c.logFormat, 'pretty')
  })

  test('tcp port 0 and unix:// with no path', () => {
    const c = parseAgentConfig(['-H', 'tcp://127.0.0.1:0', '-H', 'unix://'], {})
    assert.equal(c.hosts[0]!.kind === 'tcp' && c.hosts[0]!.port, 0)
    assert.equal(c.hosts[1]!.kind === 'unix' && c.hosts[1]!.path, '/run/joey/joeyd.sock')
  })

  test('bad flag values name the flag', async () => {
    rejects(['-H', 'http://127.0.0.1:80'], '--host')
    rejects(['-H', 'tcp://127.0.0.1:99999'], '--host')
    rejects(['-H', 'tcp://127.0.0.1:80/x'], '--host')
    rejects(['-H', 'unix://relative.sock'], '--host')
    rejects(['-H', 'fd://'], '--host')
    rejects(['--data-root', ''], '--data-root')
    rejects(['--log-level', 'loud'], '--log-level')
    rejects(['--log-format', 'xml'], '--log-format')
    rejects(['--platform', 'linux//'], '--platform')
    rejects(['--platform', 'plan9000'], '--platform')
    rejects(['--max-concurrent-downloads', '0'], '--max-concurrent-downloads')
    rejects(['--max-concurrent-downloads', 'lots'], '--max-concurrent-downloads')
    rejects(['--max-concurrent-downloads', '1000'], '--max-concurrent-downloads')
    rejects(['--insecure-registry', 'http://registry:5000'], '--insecure-registry')
    rejects(['--insecure-registry', 'registry:70000'], '--insecure-registry')
    rejects(['--insecure-registry', 'bad_host!'], '--insecure-registry')
    rejects(['--registry-config', join(dir, 'missing.json')], '--registry-config')
    rejects(['--registry-config', dir], '--registry-config')
    rejects(['--config', join(dir, 'missing.yaml')], '--config')
    rejects(['--nope'], /unknown option '--nope'/)
    rejects(['extra'], /too many arguments/)
    rejects(['--data-root'], /argument missing/)
  })

  test('--help and --version print and stop with exit code 0', () => {
    for (const [flag, re] of [['--help', /Usage: joeyd/], ['-v', /^\d+\.\d+\.\d+/]] as const) {
      let out = ''
      assert.throws(() => parseAgentConfig([flag], {}, { writeOut: (s) => { out += s } }), (err: unknown) => err instanceof CommanderError && err.exitCode === 0)
      assert.match(out, re)
    }
  })
})

describe('parseAgentConfig: YAML file', () => {
  test('every key, with relative paths resolved against the file', async () => {
    await writeFile(join(dir, 'ca.pem'), CA)
    await writeFile(join(dir, 'docker.json'), '{}')
    const path = await yamlFile('full.yaml', [
      'hosts: ["unix:///tmp/f/joeyd.sock", "tcp://127.0.0.1:2380"]',
      'data-root: data',
      'insecure-registries: [reg.local:5000]',
      'registry-config: docker.json',
      'platform: linux/amd64',
      'max-concurrent-downloads: 5',
      'log-level: warn',
      'log-format: auto',
      'registries:',
      '  secure.example.com:',
      '    ca-file: ca.pem',
      '  legacy.example.com:',
      '    insecure: true',
      '    skip-verify: true'
    ].join('\n'))
    const c = parseAgentConfig(['--config', path], {})
    assert.equal(c.configFile, path)
    assert.deepEqual(c.hosts.map(h => h.address), ['unix:///tmp/f/joeyd.sock', 'tcp://127.0.0.1:2380'])
    assert.equal(c.dataRoot, join(dir, 'data'))
    assert.deepEqual(c.insecureRegistries, ['reg.local:5000'])
    assert.equal(c.registryConfig, join(dir, 'docker.json'))
    assert.equal(c.platform, 'linux/amd64')
    assert.equal(c.maxConcurrentDownloads, 5)
    assert.equal(c.logLevel, 'warn')
    assert.equal(c.logFormat, 'auto')
    assert.deepEqual(c.registries, {
      'secure.example.com': { ca: CA },
      'legacy.example.com': { insecure: true, skipVerify: true }
    })
  })

  test('flags override the file; list flags replace its lists', async () => {
    const path = await yamlFile('override.yaml', 'hosts: ["tcp://127.0.0.1:1"]\ndata-root: /from/file\nlog-level: warn\ninsecure-registries: [a.local]\n')
    const c = parseAgentConfig(['--config', path, '--data-root', '/from/flag', '-H', 'tcp://127.0.0.1:2', '--insecure-registry', 'b.local'], {})
    assert.equal(c.dataRoot, '/from/flag')
    assert.deepEqual(c.hosts.map(h => h.address), ['tcp://127.0.0.1:2'])
    assert.deepEqual(c.insecureRegistries, ['b.local'])
    assert.equal(c.logLevel, 'warn')
  })

  test('an empty file is no settings', async () => {
    const c = parseAgentConfig(['--config', await yamlFile('empty.yaml', '')], {})
    assert.equal(c.dataRoot, '/var/lib/joey')
  })

  test('bad files name the file and the key', async () => {
    const bad = async (name: string, text: string, re: RegExp): Promise<void> => {
      const path = await yamlFile(name, text)
      rejects(['--config', path], re)
    }
    await bad('unknown.yaml', 'supernode: x\n', /^--config: unknown key "supernode"/)
    await bad('list.yaml', '- a\n- b\n', /^--config: .* must hold a YAML mapping/)
    await bad('syntax.yaml', 'hosts: [unterminated\n', /^--config: .* is not valid YAML/)
    await bad('type.yaml', 'data-root: 5\n', /bad-type\.yaml|type\.yaml: data-root: expected a non-empty string/)
    await bad('hosts.yaml', 'hosts: ["http://x"]\n', /hosts\.yaml: hosts: expected unix/)
    await bad('level.yaml', 'log-level: loud\n', /level\.yaml: log-level: expected one of/)
    await bad('mcd.yaml', 'max-concurrent-downloads: "3"\n', /mcd\.yaml: max-concurrent-downloads: expected an integer/)
    await bad('cred.yaml', 'registries:\n  r.example.com:\n    password: hunter2\n', /registries\."r\.example\.com"\.password: unknown setting .*JOEY_REGISTRY_AUTH_<HOST>/)
    await bad('ca.yaml', 'registries:\n  r.example.com:\n    ca-file: nothere.pem\n', /ca-file: cannot read/)
    await bad('regbool.yaml', 'registries:\n  r.example.com:\n    insecure: "yes"\n', /insecure: expected true or false/)
    await bad('reghost.yaml', 'registries:\n  "https://r.example.com":\n    insecure: true\n', /registries\."https:\/\/r\.example\.com": expected a registry host/)
  })
})

describe('registry credentials from the environment', () => {
  test('JOEY_REGISTRY_AUTH_<HOST> decodes "_" "." , "__" "-" and "___" ":"', () => {
    assert.equal(registryHostFromEnvName('JOEY_REGISTRY_AUTH_127_0_0_1___5000'), '127.0.0.1:5000')
    assert.equal(registryHostFromEnvName('JOEY_REGISTRY_AUTH_REGISTRY__1_DOCKER_IO'), 'registry-1.docker.io')
    assert.equal(registryHostFromEnvName('JOEY_REGISTRY_AUTH_DOCKER_IO'), 'docker.io')
  })

  test('credentials merge with the file\'s registry settings', async () => {
    const path = await yamlFile('merge.yaml', 'registries:\n  127.0.0.1:5000:\n    insecure: true\n')
    const c = parseAgentConfig(['--config', path], {
      JOEY_REGISTRY_AUTH_127_0_0_1___5000: 'joey:pa:ss',
      JOEY_REGISTRY_AUTH_GHCR_IO: 'bot:token',
      UNRELATED: 'x'
    })
    assert.deepEqual(c.registries, {
      '127.0.0.1:5000': { insecure: true, username: 'joey', password: 'pa:ss' },
      'ghcr.io': { username: 'bot', password: 'token' }
    })
  })

  test('bad variables are named', () => {
    rejects([], 'JOEY_REGISTRY_AUTH_GHCR_IO', { JOEY_REGISTRY_AUTH_GHCR_IO: 'no-colon' })
    rejects([], 'JOEY_REGISTRY_AUTH_GHCR_IO', { JOEY_REGISTRY_AUTH_GHCR_IO: ':password' })
    rejects([], 'JOEY_REGISTRY_AUTH_A____B', { JOEY_REGISTRY_AUTH_A____B: 'u:p' })
    rejects([], 'JOEY_REGISTRY_AUTH_', { JOEY_REGISTRY_AUTH_: 'u:p' })
    rejects([], 'JOEY_REGISTRY_AUTH__X', { JOEY_REGISTRY_AUTH__X: 'u:p' })
  })
})

describe('joeyd exit codes', () => {
  async function run (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
    const child = spawn(process.execPath, [join(ROOT, 'bin/joeyd.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
    const timer = setTimeout(() => { if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL') }, 20_000)
    const [code] = await once(child, 'exit') as [number | null]
    clearTimeout(timer)
    return { code, stdout, stderr }
  }

  test('a bad value exits 2 with one line naming the flag', async () => {
    for (const [args, prefix] of [[['--log-level', 'loud'], 'joeyd: --log-level: '], [['--bogus'], "joeyd: unknown option '--bogus'"], [['-H', 'http://x'], 'joeyd: --host: ']] as const) {
      const r = await run([...args])
      assert.equal(r.code, 2, r.stderr)
      assert.equal(r.stdout, '')
      const lines = r.stderr.split('\n').filter(l => l !== '')
      assert.equal(lines.length, 1, r.stderr)
      assert.ok(lines[0]!.startsWith(prefix), lines[0])
    }
  })

  test('--help exits 0', async () => {
    const r = await run(['--help'])
    assert.equal(r.code, 0)
    assert.match(r.stdout, /--data-root <dir>/)
  })
})
