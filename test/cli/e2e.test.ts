// joey against the real thing: docker-registry serving the busybox fixture, joeyd as a child
// process on its own socket and data root, and bin/joey.js run as a child process per command.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { EngineClient } from '../../src/cli/client.js'
import { shortId } from '../../src/common/digest.js'
import { busyboxImage, type FixtureImage } from '../fixtures/images.js'
import { startRegistry, type TestRegistry } from '../fixtures/registry.js'
import { ESC, Screen } from './screen.js'

const ROOT = new URL('../../', import.meta.url).pathname
const HAVE_JOEYD = existsSync(join(ROOT, 'src/agent/main.ts'))
const READY_TIMEOUT_MS = 20_000
const STOP_TIMEOUT_MS = 5_000

interface Run { code: number | null, stdout: string, stderr: string }

let dir: string
let socket: string
let registry: TestRegistry | undefined
let image: FixtureImage
let joeyd: ChildProcess | undefined
let joeydLog = ''
let ref: string

async function joey (args: string[], opts: { tty?: boolean } = {}): Promise<Run> {
  const argv = [join(ROOT, 'bin/joey.js'), '-H', `unix://${socket}`, ...args]
  // script(1) gives joey a real pseudo-terminal, so the in-place progress path runs for real.
  const [cmd, cmdArgs] = opts.tty === true
    ? ['script', ['-qefc', [process.execPath, ...argv].map(a => `'${a}'`).join(' '), '/dev/null']]
    : [process.execPath, argv]
  const child = spawn(cmd, cmdArgs as string[], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout?.setEncoding('utf8').on('data', (s: string) => { stdout += s })
  child.stderr?.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const [code] = await once(child, 'exit') as [number | null]
  return { code, stdout, stderr }
}

async function waitReady (): Promise<void> {
  const client = new EngineClient({ host: `unix://${socket}` })
  const deadline = Date.now() + READY_TIMEOUT_MS
  try {
    for (;;) {
      if (joeyd?.exitCode !== null) throw new Error(`joeyd exited early (${String(joeyd?.exitCode)}):\n${joeydLog}`)
      try {
        await client.ping()
        return
      } catch {}
      if (Date.now() > deadline) throw new Error(`joeyd did not answer /_ping within ${READY_TIMEOUT_MS} ms:\n${joeydLog}`)
      await sleep(100)
    }
  } finally {
    await client.close()
  }
}

describe('joey against joeyd and a real registry', { skip: HAVE_JOEYD ? false : 'joeyd (src/agent/main.ts) is not built yet' }, () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'joey-cli-e2e-'))
    socket = join(dir, 's.sock')
    image = await busyboxImage()
    registry = await startRegistry()
    await registry.push('busybox', 'latest', image)
    ref = `${registry.host}/busybox:latest`
    joeyd = spawn(process.execPath, [join(ROOT, 'bin/joeyd.js'), '--data-root', join(dir, 'data'), '-H', `unix://${socket}`, '--mirror', '127.0.0.1:0'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe']
    })
    joeyd.stdout?.setEncoding('utf8').on('data', (s: string) => { joeydLog += s })
    joeyd.stderr?.setEncoding('utf8').on('data', (s: string) => { joeydLog += s })
    await waitReady()
  })

  after(async () => {
    if (joeyd !== undefined && joeyd.exitCode === null && joeyd.pid !== undefined) {
      const exited = once(joeyd, 'exit')
      process.kill(joeyd.pid, 'SIGTERM')
      const timer = setTimeout(() => { if (joeyd?.pid !== undefined && joeyd.exitCode === null) process.kill(joeyd.pid, 'SIGKILL') }, STOP_TIMEOUT_MS)
      await exited
      clearTimeout(timer)
    }
    await registry?.stop()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  test('version shows the server', async () => {
    const r = await joey(['version'])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^Client:\n/)
    assert.match(r.stdout, /\nServer:.*\n Engine:\n {2}Version: +\S+\n {2}API version: +\d+\.\d+/)
  })

  test('pull prints plain status lines in logs and ends with the reference', async () => {
    const r = await joey(['pull', ref])
    assert.equal(r.code, 0, `${r.stderr}\n${joeydLog}`)
    assert.equal(r.stderr, '')
    assert.ok(!r.stdout.includes(ESC), 'no escape codes when stdout is not a terminal')
    const lines = r.stdout.trimEnd().split('\n')
    assert.equal(new Set(lines).size, lines.length, 'no line is repeated')
    const layer = shortId(image.layers[0]?.digest ?? '')
    assert.ok(lines.includes(`${layer}: Pull complete`), r.stdout)
    assert.ok(lines.includes(`Digest: ${image.root.digest}`), r.stdout)
    assert.ok(lines.includes(`Status: Downloaded newer image for ${ref}`), r.stdout)
    assert.equal(lines.at(-1), ref)
  })

  test('pulling again is quick and -q prints only the reference', async () => {
    const again = await joey(['pull', ref])
    assert.equal(again.code, 0, again.stderr)
    assert.match(again.stdout, new RegExp(`Status: Image is up to date for ${ref.replace(/[.]/g, '\\.')}\n`))
    const quiet = await joey(['pull', '-q', ref])
    assert.equal(quiet.code, 0, quiet.stderr)
    assert.equal(quiet.stdout, `${ref}\n`)
  })

  test('images lists the pulled image in every format', async () => {
    const config = image.configs[0]?.digest ?? ''
    const table = await joey(['images'])
    assert.equal(table.code, 0, table.stderr)
    const lines = table.stdout.trimEnd().split('\n')
    assert.match(lines[0] ?? '', /^REPOSITORY +TAG +IMAGE ID +CREATED +SIZE$/)
    const row = lines.find(l => l.startsWith(`${registry?.host}/busybox `))
    assert.ok(row, table.stdout)
    assert.match(row, new RegExp(`^\\S+ +latest +${shortId(config)} +(\\d+ \\w+|About an? \\w+|Less than a second) ago +[\\d.]+[kMG]?B$`))

    const quiet = await joey(['images', '-q'])
    assert.equal(quiet.stdout, `${shortId(config)}\n`)

    const json = await joey(['images', '--format', 'json'])
    const list = JSON.parse(json.stdout) as Array<{ Id: string, RepoTags: string[], RepoDigests: string[], Size: number }>
    assert.equal(list.length, 1)
    assert.equal(list[0]?.Id, config)
    assert.deepEqual(list[0]?.RepoTags, [ref])
    assert.ok((list[0]?.Size ?? 0) > 0)

    const digests = await joey(['images', '--digests', '--no-trunc'])
    assert.ok(digests.stdout.includes(image.root.digest), digests.stdout)
    assert.ok(digests.stdout.includes(config), digests.stdout)
  })

  test('inspect prints a JSON array and supports templates; misses exit 1', async () => {
    const config = image.configs[0]?.digest ?? ''
    const r = await joey(['inspect', ref])
    assert.equal(r.code, 0, r.stderr)
    const [detail] = JSON.parse(r.stdout) as Array<{ Id: string, RepoTags: string[], Os: string, RootFS: { Layers: string[] } }>
    assert.equal(detail?.Id, config)
    assert.deepEqual(detail?.RepoTags, [ref])
    assert.equal(detail?.Os, 'linux')

    const id = await joey(['inspect', '-f', '{{.Id}}', ref])
    assert.equal(id.stdout, `${config}\n`)

    const miss = await joey(['inspect', ref, `${registry?.host}/nothere:latest`])
    assert.equal(miss.code, 1)
    assert.equal((JSON.parse(miss.stdout) as unknown[]).length, 1)
    assert.match(miss.stderr, /^joey: .*nothere.*\n$/)
  })

  test('pull of a missing tag fails with the daemon\'s message', async () => {
    const r = await joey(['pull', `${registry?.host}/busybox:nosuchtag`])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /^joey: .*nosuchtag.*\n$/)
    assert.ok(!r.stdout.includes(`${registry?.host}/busybox:nosuchtag\n`), 'no success line')
  })

  test('tag gives the image a second name; rmi of that name only untags; bad targets fail', async () => {
    const t = await joey(['tag', ref, 'example.com/team/app:v1'])
    assert.equal(t.code, 0, t.stderr)
    assert.equal(t.stdout, '')
    const names = await joey(['images', '--format', '{{.Repository}}:{{.Tag}}'])
    assert.deepEqual(names.stdout.trim().split('\n').sort(), [ref, 'example.com/team/app:v1'].sort())
    const bad = await joey(['tag', ref, 'example.com/app@sha256:' + 'a'.repeat(64)])
    assert.equal(bad.code, 1)
    assert.match(bad.stderr, /refusing to create a tag with a digest reference/)
    const missing = await joey(['tag', 'ghost:1', 'example.com/x:1'])
    assert.equal(missing.code, 1)
    assert.match(missing.stderr, /No such image: ghost:1/)
    const un = await joey(['rmi', 'example.com/team/app:v1'])
    assert.equal(un.code, 0, un.stderr)
    assert.equal(un.stdout, 'Untagged: example.com/team/app:v1\n')
  })

  test('rmi untags and deletes; a second rmi fails', async () => {
    const r = await joey(['rmi', ref])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, new RegExp(`^Untagged: ${ref.replace(/[.]/g, '\\.')}\n(Untagged: .*\n)*(Deleted: sha256:[a-f0-9]{64}\n)+$`))
    assert.ok(r.stdout.includes(`Deleted: ${image.configs[0]?.digest ?? ''}\n`), r.stdout)

    const empty = await joey(['images', '-q'])
    assert.equal(empty.stdout, '')
    const again = await joey(['rmi', ref])
    assert.equal(again.code, 1)
    assert.match(again.stderr, /^joey: .*\n$/)
  })

  test('on a terminal, pull redraws one line per layer in place', async () => {
    const r = await joey(['pull', ref], { tty: true })
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`)
    const screen = new Screen()
    screen.feed(r.stdout)
    const text = screen.text()
    const layer = shortId(image.layers[0]?.digest ?? '')
    assert.deepEqual(text.filter(l => l.startsWith(`${layer}:`)), [`${layer}: Pull complete`], r.stdout)
    assert.equal(text.at(-1), ref)
    assert.ok(text.includes(`Status: Downloaded newer image for ${ref}`), text.join('\n'))
  })
})
