// Error paths of the joey CLI against a tiny fake Engine API server on a unix socket. The
// happy paths run against the real joeyd in e2e.test.ts.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createNetServer } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { runCli } from '../../src/cli/cli.js'

type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => void

interface Run { code: number, stdout: string, stderr: string }

let dir: string
let socket: string
let server: Server
const routes = new Map<string, Handler>()
const seen: Array<{ method: string, url: URL, headers: IncomingMessage['headers'] }> = []
const closed: string[] = []

function route (method: string, path: string, handler: Handler): void {
  routes.set(`${method} ${path}`, handler)
}

function sendJson (res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}

async function run (argv: string[], opts: { host?: string, signal?: AbortSignal, env?: Record<string, string> } = {}): Promise<Run> {
  let stdout = ''
  let stderr = ''
  const code = await runCli(['-H', opts.host ?? `unix://${socket}`, ...argv], {
    stdout: { write: (s: string) => { stdout += s }, isTTY: false },
    stderr: { write: (s: string) => { stderr += s } },
    env: opts.env ?? {},
    ...(opts.signal !== undefined ? { signal: opts.signal } : {})
  })
  return { code, stdout, stderr }
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'joey-cli-'))
  socket = join(dir, 's.sock')
  server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    seen.push({ method: req.method ?? '', url, headers: req.headers })
    req.on('close', () => { if (!res.writableFinished) closed.push(url.pathname) })
    const exact = routes.get(`${req.method} ${url.pathname}`)
    if (exact !== undefined) { exact(req, res, url); return }
    sendJson(res, 404, { message: `page not found: ${req.method} ${url.pathname}` })
  })
  server.listen(socket)
  await once(server, 'listening')

  route('GET', '/images/json', (_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('[{"Id": ') })
  route('GET', '/images/nope:latest/json', (_req, res) => { sendJson(res, 404, { message: 'No such image: nope:latest' }) })
  route('GET', '/images/127.0.0.1:5000/busybox:latest/json', (_req, res) => { sendJson(res, 200, { Id: 'sha256:' + 'b'.repeat(64), RepoTags: ['127.0.0.1:5000/busybox:latest'] }) })
  route('DELETE', '/images/busybox:latest', (_req, res) => { sendJson(res, 200, [{ Untagged: 'busybox:latest' }, { Deleted: 'sha256:' + 'b'.repeat(64) }]) })
  route('DELETE', '/images/used:latest', (_req, res) => { sendJson(res, 409, { message: 'conflict: unable to remove repository reference "used:latest" (must force)' }) })
  route('GET', '/version', (_req, res) => { res.writeHead(500, { 'content-type': 'text/plain' }); res.end('') })
  route('POST', '/images/create', (_req, res, url) => {
    const image = url.searchParams.get('fromImage')
    res.writeHead(200, { 'content-type': 'application/json' })
    const line = (m: unknown): void => { res.write(JSON.stringify(m) + '\r\n') }
    line({ status: 'Pulling from ' + String(image), id: url.searchParams.get('tag') })
    line({ status: 'Pulling fs layer', progressDetail: {}, id: 'aaaaaaaaaaaa' })
    line({ status: 'Downloading', progressDetail: { current: 10, total: 100 }, id: 'aaaaaaaaaaaa' })
    if (image === 'broken') {
      line({ errorDetail: { message: 'digest mismatch for sha256:abc' }, error: 'digest mismatch for sha256:abc' })
      res.end()
    } else if (image === 'dropped') {
      setTimeout(() => res.socket?.destroy(), 20)
    } else {
      line({ status: 'Pull complete', progressDetail: {}, id: 'aaaaaaaaaaaa' })
      line({ status: 'Digest: sha256:' + 'd'.repeat(64) })
      line({ status: `Status: Downloaded newer image for ${String(image)}:latest` })
      res.end()
    }
  })
})

after(async () => {
  server.closeAllConnections()
  server.close()
  await rm(dir, { recursive: true, force: true })
})

describe('cannot reach joeyd', () => {
  test('a missing socket gives one clear line and exit 1', async () => {
    const missing = join(dir, 'missing.sock')
    for (const argv of [['images'], ['pull', 'busybox'], ['inspect', 'x'], ['rmi', 'x', 'y']]) {
      const r = await run(argv, { host: `unix://${missing}` })
      assert.equal(r.code, 1, argv.join(' '))
      assert.equal(r.stderr, `joey: cannot connect to joeyd at unix://${missing}: is joeyd running?\n`, argv.join(' '))
    }
  })

  test('a refused TCP port is reported the same way', async () => {
    const probe = createNetServer()
    probe.listen(0, '127.0.0.1')
    await once(probe, 'listening')
    const port = (probe.address() as { port: number }).port
    probe.close()
    await once(probe, 'close')
    const r = await run(['images'], { host: `tcp://127.0.0.1:${port}` })
    assert.equal(r.code, 1)
    assert.equal(r.stderr, `joey: cannot connect to joeyd at tcp://127.0.0.1:${port}: is joeyd running?\n`)
  })

  test('version still prints the client half, then fails', async () => {
    const r = await run(['version'], { host: `unix://${join(dir, 'missing.sock')}` })
    assert.equal(r.code, 1)
    assert.match(r.stdout, /^Client:\n Version: +\d+\.\d+\.\d+/)
    assert.doesNotMatch(r.stdout, /Server/)
    assert.match(r.stderr, /^joey: cannot connect to joeyd/)
    const j = await run(['version', '--format', 'json'], { host: `unix://${join(dir, 'missing.sock')}` })
    assert.equal(j.code, 1)
    assert.equal(JSON.parse(j.stdout).Server, null)
  })

  test('JOEY_HOST is used when -H is not given', async () => {
    let stderr = ''
    const code = await runCli(['images'], {
      stdout: { write: () => {} },
      stderr: { write: (s: string) => { stderr += s } },
      env: { JOEY_HOST: 'unix:///nonexistent/joey.sock' }
    })
    assert.equal(code, 1)
    assert.equal(stderr, 'joey: cannot connect to joeyd at unix:///nonexistent/joey.sock: is joeyd running?\n')
  })
})

describe('daemon errors', () => {
  test('inspect prints what it found and the daemon\'s message for the rest', async () => {
    const r = await run(['inspect', '127.0.0.1:5000/busybox:latest', 'nope:latest'])
    assert.equal(r.code, 1)
    assert.equal(r.stderr, 'joey: No such image: nope:latest\n')
    const found = JSON.parse(r.stdout) as Array<{ Id: string }>
    assert.equal(found.length, 1)
    assert.equal(found[0]?.Id, 'sha256:' + 'b'.repeat(64))
    const none = await run(['inspect', 'nope:latest'])
    assert.equal(none.code, 1)
    assert.equal(none.stdout, '[]\n')
  })

  test('rmi goes on after a failure and exits 1', async () => {
    const r = await run(['rmi', 'used:latest', 'busybox:latest'])
    assert.equal(r.code, 1)
    assert.equal(r.stdout, `Untagged: busybox:latest\nDeleted: sha256:${'b'.repeat(64)}\n`)
    assert.equal(r.stderr, 'joey: conflict: unable to remove repository reference "used:latest" (must force)\n')
  })

  test('a 500 without a body still gives a message', async () => {
    const r = await run(['version'])
    assert.equal(r.code, 1)
    assert.equal(r.stderr, 'joey: joeyd answered GET /version with HTTP 500\n')
  })

  test('malformed JSON is a protocol error, not a crash', async () => {
    const r = await run(['images'])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /^joey: joeyd at unix:\/\/.* sent malformed JSON for GET \/images\/json\n$/)
  })

  test('an unknown route surfaces the 404 message', async () => {
    route('DELETE', '/images/gone', (_req, res) => { sendJson(res, 404, { message: 'No such image: gone' }) })
    const r = await run(['rmi', 'gone'])
    assert.equal(r.code, 1)
    assert.equal(r.stderr, 'joey: No such image: gone\n')
  })
})

describe('pull', () => {
  test('sends docker\'s query, prints status lines and the full reference', async () => {
    seen.length = 0
    const r = await run(['pull', '--platform', 'linux/amd64', '127.0.0.1:5000/busybox'])
    assert.equal(r.code, 0, r.stderr)
    const req = seen.find(s => s.url.pathname === '/images/create')
    assert.ok(req)
    assert.equal(req.method, 'POST')
    assert.equal(req.url.searchParams.get('fromImage'), '127.0.0.1:5000/busybox')
    assert.equal(req.url.searchParams.get('tag'), 'latest')
    assert.equal(req.url.searchParams.get('platform'), 'linux/amd64')
    assert.equal(r.stdout, [
      'Using default tag: latest',
      'latest: Pulling from 127.0.0.1:5000/busybox',
      'aaaaaaaaaaaa: Pulling fs layer',
      'aaaaaaaaaaaa: Downloading',
      'aaaaaaaaaaaa: Pull complete',
      'Digest: sha256:' + 'd'.repeat(64),
      'Status: Downloaded newer image for 127.0.0.1:5000/busybox:latest',
      '127.0.0.1:5000/busybox:latest',
      ''
    ].join('\n'))
  })

  test('-q prints only the normalised reference; digests go as the tag', async () => {
    seen.length = 0
    const digest = 'sha256:' + 'e'.repeat(64)
    const r = await run(['pull', '-q', `busybox@${digest}`])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, `docker.io/library/busybox@${digest}\n`)
    const req = seen.find(s => s.url.pathname === '/images/create')
    assert.equal(req?.url.searchParams.get('fromImage'), 'busybox')
    assert.equal(req?.url.searchParams.get('tag'), digest)
  })

  test('an error in the middle of the stream exits 1 with the daemon\'s message', async () => {
    const r = await run(['pull', 'broken:1'])
    assert.equal(r.code, 1)
    assert.equal(r.stderr, 'joey: digest mismatch for sha256:abc\n')
    assert.match(r.stdout, /aaaaaaaaaaaa: Downloading\n$/)
    const q = await run(['pull', '-q', 'broken:1'])
    assert.equal(q.code, 1)
    assert.equal(q.stdout, '')
  })

  test('a connection dropped mid-stream is reported', async () => {
    const r = await run(['pull', 'dropped:1'])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /^joey: joeyd at unix:\/\/.* closed the connection during POST \/images\/create\n$/)
  })

  test('a status error before the stream starts', async () => {
    routes.set('POST /images/create', (_req, res) => { sendJson(res, 404, { message: 'pull access denied for nothere, repository does not exist' }) })
    try {
      const r = await run(['pull', 'nothere'])
      assert.equal(r.code, 1)
      assert.equal(r.stderr, 'joey: pull access denied for nothere, repository does not exist\n')
    } finally {
      routes.delete('POST /images/create')
    }
  })

  test('an interrupt aborts the request on the daemon and exits 130 quietly', async () => {
    const slow: Handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.write(JSON.stringify({ status: 'Waiting', id: 'aaaaaaaaaaaa' }) + '\r\n')
    }
    const previous = routes.get('POST /images/create')
    routes.set('POST /images/create', slow)
    closed.length = 0
    try {
      const controller = new AbortController()
      setTimeout(() => controller.abort(), 200)
      const r = await run(['pull', 'slow:1'], { signal: controller.signal })
      assert.equal(r.code, 130)
      assert.equal(r.stderr, '')
      for (let i = 0; i < 50 && !closed.includes('/images/create'); i++) await new Promise(resolve => setTimeout(resolve, 10))
      assert.ok(closed.includes('/images/create'), 'the daemon saw the pull request go away')
    } finally {
      if (previous !== undefined) routes.set('POST /images/create', previous)
    }
  })
})

describe('usage errors exit 2', () => {
  test('bad options, references, hosts and formats', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['images', '--bogus'], /^joey: unknown option '--bogus'\nSee 'joey --help'\.\n$/],
      [['pul'], /^joey: unknown command 'pul'/],
      [['pull'], /^joey: missing required argument 'image'/],
      [['pull', 'Bad:Ref'], /^joey: invalid reference "Bad:Ref": .*lowercase/],
      [['images', '--format', 'yaml'], /^joey: invalid --format "yaml"/],
      [['inspect', '-f', '{{range .X}}', 'x'], /^joey: unsupported --format action/],
      [['--log-level', 'loud', 'images'], /^joey: option '--log-level <level>' argument 'loud' is invalid/]
    ]
    for (const [argv, stderr] of cases) {
      const r = await run(argv)
      assert.equal(r.code, 2, argv.join(' '))
      assert.match(r.stderr, stderr, argv.join(' '))
    }
    const host = await run(['images'], { host: 'http://localhost:1' })
    assert.equal(host.code, 2)
    assert.match(host.stderr, /^joey: invalid host "http:\/\/localhost:1"/)
  })

  test('help and version exit 0', async () => {
    const help = await run(['pull', '--help'])
    assert.equal(help.code, 0)
    assert.match(help.stdout, /Usage: joey pull \[options\] <image>/)
    const v = await run(['--version'])
    assert.equal(v.code, 0)
    assert.match(v.stdout, /^joey version \d+\.\d+\.\d+\n$/)
  })
})

test('bin/joey.js exits with the status and prints one line on stderr', async () => {
  const child = spawn(process.execPath, ['bin/joey.js', '-H', `unix://${join(dir, 'missing.sock')}`, 'images'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const [code] = await once(child, 'exit') as [number | null]
  assert.equal(code, 1)
  assert.equal(stderr, `joey: cannot connect to joeyd at unix://${join(dir, 'missing.sock')}: is joeyd running?\n`)

  const usage = spawn(process.execPath, ['bin/joey.js', 'pull'], { stdio: 'ignore' })
  const [usageCode] = await once(usage, 'exit') as [number | null]
  assert.equal(usageCode, 2)
})
