// joey run/ps/logs/exec/stop/rm against a real joeyd child process running containers with
// runc, pulling busybox from a real docker-registry on the first run.
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { EngineClient } from '../../src/cli/client.js'
import { ContainerClient } from '../../src/cli/containers-client.js'
import { busyboxImage } from '../fixtures/images.js'
import { REGISTRY_BIN, startRegistry, type TestRegistry } from '../fixtures/registry.js'

const ROOT = new URL('../../', import.meta.url).pathname
const READY_TIMEOUT_MS = 20_000
const STOP_TIMEOUT_MS = 5_000

function skipReason (): string | false {
  if (process.getuid?.() !== 0) return 'containers need root'
  if (spawnSync('runc', ['--version']).status !== 0) return 'runc is not installed'
  if (!existsSync(REGISTRY_BIN)) return `${REGISTRY_BIN} is not installed`
  if (!existsSync(join(ROOT, 'src/agent/main.ts'))) return 'joeyd (src/agent/main.ts) is not built yet'
  return false
}

interface Run { code: number | null, stdout: string, stderr: string }

let dir: string
let socket: string
let registry: TestRegistry | undefined
let joeyd: ChildProcess | undefined
let joeydLog = ''
let ref: string

async function joey (args: string[]): Promise<Run> {
  const child = spawn(process.execPath, [join(ROOT, 'bin/joey.js'), '-H', `unix://${socket}`, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
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

describe('joey run and friends against joeyd with runc', { skip: skipReason() }, () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'joey-cli-run-'))
    socket = join(dir, 's.sock')
    registry = await startRegistry()
    await registry.push('busybox', 'latest', await busyboxImage())
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
      // Containers outlive joeyd by design: remove them while it still answers.
      const client = new ContainerClient({ host: `unix://${socket}` })
      try {
        for (const c of await client.list(true)) await client.remove(c.Id, true).catch(() => {})
      } catch {} finally {
        await client.close()
      }
      const exited = once(joeyd, 'exit')
      process.kill(joeyd.pid, 'SIGTERM')
      const timer = setTimeout(() => { if (joeyd?.pid !== undefined && joeyd.exitCode === null) process.kill(joeyd.pid, 'SIGKILL') }, STOP_TIMEOUT_MS)
      await exited
      clearTimeout(timer)
    }
    await registry?.stop()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  test('run --rm pulls the missing image, prints the output and exits 0', async () => {
    const r = await joey(['run', '--rm', ref, 'echo', 'hi'])
    assert.equal(r.code, 0, `${r.stderr}\n${joeydLog}`)
    assert.equal(r.stdout, 'hi\n')
    assert.match(r.stderr, /Unable to find image '.*busybox:latest' locally/)
    const ps = await joey(['ps', '-a', '-q'])
    assert.equal(ps.stdout, '', 'the --rm container is gone')
  })

  test('run exits with the container\'s status and keeps stderr apart', async () => {
    const r = await joey(['run', '--rm', ref, 'sh', '-c', 'echo out; echo err >&2; exit 7'])
    assert.equal(r.code, 7, r.stderr)
    assert.equal(r.stdout, 'out\n')
    assert.equal(r.stderr, 'err\n')
  })

  test('run passes -e and -w to the container', async () => {
    const r = await joey(['run', '--rm', '-e', 'GREETING=hello there', '-w', '/tmp', ref, 'sh', '-c', 'echo "$GREETING"; pwd'])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, 'hello there\n/tmp\n')
  })

  test('a detached container: ps, logs, exec, inspect, stop, rm', async () => {
    const started = await joey(['run', '-d', '--name', 'web', ref, 'sh', '-c', 'echo ready; exec sleep 1000'])
    assert.equal(started.code, 0, `${started.stderr}\n${joeydLog}`)
    const id = started.stdout.trim()
    assert.match(id, /^[0-9a-f]{64}$/)

    const ps = await joey(['ps'])
    assert.equal(ps.code, 0, ps.stderr)
    const lines = ps.stdout.trimEnd().split('\n')
    assert.match(lines[0] ?? '', /^CONTAINER ID +IMAGE +COMMAND +CREATED +STATUS +PORTS +NAMES$/)
    const row = lines.find(l => l.endsWith(' web'))
    assert.ok(row, ps.stdout)
    assert.ok(row.startsWith(id.slice(0, 12)), row)
    assert.match(row, / Up /)

    const json = await joey(['ps', '--format', 'json'])
    assert.equal((JSON.parse(json.stdout.trim()) as { Names: string }).Names, 'web')

    // The first line may take a moment to reach the log.
    let logs = await joey(['logs', 'web'])
    for (let i = 0; i < 50 && logs.stdout === ''; i++) {
      await sleep(100)
      logs = await joey(['logs', 'web'])
    }
    assert.equal(logs.code, 0, logs.stderr)
    assert.equal(logs.stdout, 'ready\n')

    const inside = await joey(['exec', 'web', 'echo', 'inside'])
    assert.equal(inside.code, 0, inside.stderr)
    assert.equal(inside.stdout, 'inside\n')
    const failing = await joey(['exec', 'web', 'sh', '-c', 'exit 3'])
    assert.equal(failing.code, 3, failing.stderr)

    const inspect = await joey(['inspect', '-f', '{{.Id}}', 'web'])
    assert.equal(inspect.code, 0, inspect.stderr)
    assert.equal(inspect.stdout, `${id}\n`)

    const stop = await joey(['stop', '-t', '1', 'web'])
    assert.equal(stop.code, 0, stop.stderr)
    assert.equal(stop.stdout, 'web\n')
    const removed = await joey(['rm', 'web'])
    assert.equal(removed.code, 0, removed.stderr)
    assert.equal(removed.stdout, 'web\n')

    const all = await joey(['ps', '-a'])
    assert.equal(all.stdout.trimEnd().split('\n').length, 1, all.stdout)
  })

  test('misses exit 1 with the daemon\'s message', async () => {
    const r = await joey(['rm', 'nosuchcontainer'])
    assert.equal(r.code, 1)
    assert.match(r.stderr, /^joey: .*nosuchcontainer.*\n$/)
    const logs = await joey(['logs', 'nosuchcontainer'])
    assert.equal(logs.code, 1)
  })
})
