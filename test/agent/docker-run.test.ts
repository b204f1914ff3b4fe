// docker run end to end: the real docker CLI against joeyd (a child process) with runc, and a
// real registry serving the busybox fixture: foreground runs, exit codes, detached containers,
// ps, logs, exec, stop and rm.
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, execFileSync } from 'node:child_process'
import { access, mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { busyboxImage } from '../fixtures/images.js'
import { startRegistry, type TestRegistry } from '../fixtures/registry.js'
import { startJoeyd, type Joeyd } from './daemon.js'

const DOCKER = '/usr/local/bin/docker'

async function exists (path: string): Promise<boolean> {
  try {
    await access(path)
    return true
  } catch {
    return false
  }
}

function hasRunc (): boolean {
  try {
    execFileSync('runc', ['--version'], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

const skip = process.getuid?.() !== 0
  ? 'needs root to run containers'
  : !hasRunc()
      ? 'runc is not installed'
      : !await exists(DOCKER) ? `no docker CLI at ${DOCKER}` : false

interface Run { code: number, stdout: string, stderr: string }

describe('docker run against joeyd', { skip }, () => {
  let dir: string
  let registry: TestRegistry
  let joeyd: Joeyd
  let ref: string

  async function docker (...args: string[]): Promise<Run> {
    return await new Promise<Run>((resolve) => {
      execFile(DOCKER, args, {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, DOCKER_HOST: `unix://${joeyd.socket}`, DOCKER_CONFIG: join(dir, 'docker-config') },
        timeout: 60_000
      }, (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1
        resolve({ code, stdout, stderr })
      })
    })
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'joey-docker-run-'))
    await mkdir(join(dir, 'docker-config'))
    registry = await startRegistry()
    await registry.push('busybox', 'latest', await busyboxImage())
    ref = `${registry.host}/busybox:latest`
    joeyd = await startJoeyd({ dataRoot: join(dir, 'data'), socket: join(dir, 'run', 'joeyd.sock') })
  })

  after(async () => {
    if (joeyd !== undefined) {
      const ids = await docker('ps', '-aq').catch(() => ({ stdout: '' }))
      for (const id of ids.stdout.split('\n').filter(Boolean)) await docker('rm', '-f', id).catch(() => {})
      await joeyd.stop().catch(async () => { await joeyd.kill() })
    }
    if (registry !== undefined) await registry.stop().catch(() => {})
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  test('docker run --rm pulls the image and prints the output of the command', async () => {
    const r = await docker('run', '--rm', ref, 'echo', 'hi')
    assert.equal(r.code, 0, `${r.stderr}\n${joeyd.output().slice(-4000)}`)
    assert.equal(r.stdout, 'hi\n')
    assert.equal((await docker('ps', '-aq')).stdout.trim(), '', 'the --rm container is gone')
  })

  test('docker run exits with the container\'s exit code', async () => {
    const r = await docker('run', '--rm', ref, 'sh', '-c', 'echo out; echo err >&2; exit 7')
    assert.equal(r.code, 7, r.stderr)
    assert.equal(r.stdout, 'out\n')
    assert.match(r.stderr, /err/)
  })

  test('a detached container: ps, logs, exec, stop, rm', async () => {
    const run = await docker('run', '-d', '--name', 'web', ref, 'sh', '-c', 'echo started; exec sleep 1000')
    assert.equal(run.code, 0, run.stderr)
    const id = run.stdout.trim()
    assert.match(id, /^[a-f0-9]{64}$/)

    const ps = await docker('ps', '--format', '{{.ID}} {{.Names}} {{.Status}}')
    assert.equal(ps.code, 0, ps.stderr)
    assert.match(ps.stdout, new RegExp(`^${id.slice(0, 12)} web Up `, 'm'))

    let logs = ''
    for (let i = 0; i < 50 && !logs.includes('started'); i++) {
      logs = (await docker('logs', 'web')).stdout
      if (!logs.includes('started')) await new Promise(resolve => setTimeout(resolve, 100))
    }
    assert.equal(logs, 'started\n')

    const ex = await docker('exec', 'web', 'echo', 'inside')
    assert.equal(ex.code, 0, ex.stderr)
    assert.equal(ex.stdout, 'inside\n')
    const exFail = await docker('exec', 'web', 'sh', '-c', 'exit 3')
    assert.equal(exFail.code, 3, exFail.stderr)

    const stop = await docker('stop', '-t', '1', 'web')
    assert.equal(stop.code, 0, stop.stderr)
    const exited = await docker('ps', '-a', '--format', '{{.Names}} {{.Status}}')
    assert.match(exited.stdout, /^web Exited \(\d+\) /m)
    const inspect = await docker('inspect', '--format', '{{.State.Status}}', 'web')
    assert.equal(inspect.stdout.trim(), 'exited', inspect.stderr)

    const rmr = await docker('rm', 'web')
    assert.equal(rmr.code, 0, rmr.stderr)
    assert.equal((await docker('ps', '-aq')).stdout.trim(), '')
  })

  test('a running container survives a joeyd restart', async () => {
    const run = await docker('run', '-d', '--name', 'keeper', ref, 'sleep', '1000')
    assert.equal(run.code, 0, run.stderr)
    assert.equal(await joeyd.stop(), 0)
    joeyd = await startJoeyd({ dataRoot: join(dir, 'data'), socket: join(dir, 'run', 'joeyd.sock') })
    const ps = await docker('ps', '--format', '{{.Names}} {{.State}}')
    assert.match(ps.stdout, /^keeper running$/m, `${ps.stderr}\n${joeyd.output().slice(-3000)}`)
    const rmr = await docker('rm', '-f', 'keeper')
    assert.equal(rmr.code, 0, rmr.stderr)
  })

  test('unknown containers and TTYs get docker\'s errors', async () => {
    const logs = await docker('logs', 'nope')
    assert.notEqual(logs.code, 0)
    assert.match(logs.stderr, /No such container: nope/)
    const tty = await docker('run', '--rm', '-t', ref, 'true')
    assert.notEqual(tty.code, 0)
    assert.match(tty.stderr, /TTYs are not supported/)
  })
})
