import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import {
  containerRows, createBody, demultiplex, formatPsTable, parseCpus, parseEnvFlags, parseMemory,
  parseNetwork, parsePidsLimit, parseStopTimeout, parseTail, parseVolume, type Frame, type RunOptions
} from '../../src/cli/commands/containers.js'
import { runCli } from '../../src/cli/cli.js'
import { muxFrame } from '../../src/api/engine/stream.js'
import { UsageError } from '../../src/cli/errors.js'

function usageError (message: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof UsageError, String(err))
    assert.equal(err.code, 'ERR_INVALID_ARGUMENT')
    assert.match(err.message, message)
    return true
  }
}

async function * chunks (...parts: Buffer[]): AsyncGenerator<Buffer> {
  for (const p of parts) yield p
}

async function frames (source: AsyncIterable<Buffer>): Promise<Array<{ stream: Frame['stream'], text: string }>> {
  const out: Array<{ stream: Frame['stream'], text: string }> = []
  for await (const f of demultiplex(source)) out.push({ stream: f.stream, text: f.data.toString() })
  return out
}

describe('run flag parsing', () => {
  test('-e takes KEY=VALUE as is and a bare KEY from the client environment', () => {
    assert.deepEqual(parseEnvFlags(['A=1', 'B=', 'C=x=y', 'HOME', 'UNSET'], { HOME: '/root' }), ['A=1', 'B=', 'C=x=y', 'HOME=/root'])
    assert.throws(() => parseEnvFlags(['=1']), usageError(/invalid environment variable "=1"/))
    assert.throws(() => parseEnvFlags(['A B=1']), usageError(/KEY=VALUE/))
  })

  test('-v accepts absolute binds with an optional ro/rw mode', () => {
    assert.equal(parseVolume('/srv:/data'), '/srv:/data')
    assert.equal(parseVolume('/srv:/data:ro'), '/srv:/data:ro')
    assert.throws(() => parseVolume('data:/data'), usageError(/host path must be absolute/))
    assert.throws(() => parseVolume('/srv:data'), usageError(/container path must be absolute/))
    assert.throws(() => parseVolume('/srv:/data:rx'), usageError(/mode must be ro or rw/))
    assert.throws(() => parseVolume('/srv'), usageError(/expected \/host\/path/))
    assert.throws(() => parseVolume('/a:/b:ro:x'), usageError(/expected/))
  })

  test('--memory takes bytes or binary units, like docker', () => {
    assert.equal(parseMemory('1048576'), 1048576)
    assert.equal(parseMemory('512m'), 512 * 1024 * 1024)
    assert.equal(parseMemory('512M'), 512 * 1024 * 1024)
    assert.equal(parseMemory('64k'), 65536)
    assert.equal(parseMemory('1.5g'), 1.5 * 1024 ** 3)
    assert.equal(parseMemory('2gb'), 2 * 1024 ** 3)
    assert.equal(parseMemory('100b'), 100)
    for (const bad of ['', 'lots', '-1m', '0', '5x', '1.2.3m']) {
      assert.throws(() => parseMemory(bad), usageError(/invalid memory size/), bad)
    }
  })

  test('--cpus becomes NanoCpus', () => {
    assert.equal(parseCpus('1'), 1e9)
    assert.equal(parseCpus('1.5'), 1.5e9)
    assert.equal(parseCpus('0.25'), 2.5e8)
    for (const bad of ['0', 'two', '-1', '']) assert.throws(() => parseCpus(bad), usageError(/invalid --cpus/), bad)
  })

  test('--pids-limit, --network, --tail and stop -t', () => {
    assert.equal(parsePidsLimit('100'), 100)
    assert.equal(parsePidsLimit('-1'), -1)
    assert.throws(() => parsePidsLimit('0'), usageError(/positive count/))
    assert.throws(() => parsePidsLimit('ten'), usageError(/expected an integer/))
    assert.equal(parseNetwork('none'), 'none')
    assert.equal(parseNetwork('host'), 'host')
    assert.throws(() => parseNetwork('bridge'), usageError(/not supported by joeyd/))
    assert.equal(parseTail('all'), 'all')
    assert.equal(parseTail('10'), '10')
    assert.throws(() => parseTail('-3'), usageError(/invalid --tail/))
    assert.equal(parseStopTimeout('0'), 0)
    assert.equal(parseStopTimeout('-1'), -1)
    assert.throws(() => parseStopTimeout('soon'), usageError(/invalid --time/))
  })

  test('createBody maps every flag to docker\'s create body', () => {
    const opts: RunOptions = {
      env: ['A=1'],
      volume: ['/srv:/data:ro'],
      workdir: '/work',
      user: '1000:1000',
      name: 'web',
      memory: '512m',
      cpus: '0.5',
      pidsLimit: '64',
      network: 'none',
      readOnly: true,
      rm: true
    }
    assert.deepEqual(createBody('busybox', ['echo', 'hi'], opts), {
      Image: 'busybox',
      Cmd: ['echo', 'hi'],
      Env: ['A=1'],
      WorkingDir: '/work',
      User: '1000:1000',
      AttachStdout: true,
      AttachStderr: true,
      HostConfig: { Binds: ['/srv:/data:ro'], Memory: 512 * 1024 * 1024, NanoCpus: 5e8, PidsLimit: 64, NetworkMode: 'none', ReadonlyRootfs: true }
    })
    // Detached --rm is left to the daemon; no command keeps the image's.
    assert.deepEqual(createBody('busybox', [], { env: [], volume: [], detach: true, rm: true }), { Image: 'busybox', HostConfig: { AutoRemove: true } })
    assert.throws(() => createBody('busybox', [], { env: [], volume: [], workdir: 'rel' }), usageError(/must be absolute/))
    assert.throws(() => createBody('busybox', [], { env: [], volume: [], name: 'bad name' }), usageError(/invalid container name/))
  })

  test('bad flags are usage errors (exit 2) before the daemon is asked', async () => {
    let stderr = ''
    const io = { stdout: { write: () => true }, stderr: { write: (s: string) => { stderr += s } }, env: {} }
    // The socket does not exist: reaching the daemon would be exit 1, not 2.
    const code = await runCli(['-H', 'unix:///nonexistent/joey.sock', 'run', '--memory', 'lots', 'busybox'], io)
    assert.equal(code, 2)
    assert.match(stderr, /invalid memory size "lots"/)
  })
})

describe('demultiplex', () => {
  test('splits frames by stream, across chunk boundaries', async () => {
    const all = Buffer.concat([muxFrame('stdout', Buffer.from('out 1\n')), muxFrame('stderr', Buffer.from('err\n')), muxFrame('stdout', Buffer.from('out 2\n'))])
    const expected = [{ stream: 'stdout', text: 'out 1\n' }, { stream: 'stderr', text: 'err\n' }, { stream: 'stdout', text: 'out 2\n' }]
    assert.deepEqual(await frames(chunks(all)), expected)
    // One byte at a time: headers and payloads split anywhere.
    const bytes = [...all].map(b => Buffer.from([b]))
    assert.deepEqual(await frames(chunks(...bytes)), expected)
    assert.deepEqual(await frames(chunks()), [])
  })

  test('a stream cut inside a frame is ERR_TRUNCATED', async () => {
    const frame = muxFrame('stdout', Buffer.from('hello'))
    await assert.rejects(frames(chunks(frame.subarray(0, 10))), { code: 'ERR_TRUNCATED' })
    await assert.rejects(frames(chunks(frame.subarray(0, 4))), { code: 'ERR_TRUNCATED' })
  })

  test('a bad header is ERR_PROTOCOL', async () => {
    await assert.rejects(frames(chunks(Buffer.from('not a multiplexed stream'))), { code: 'ERR_PROTOCOL', message: /byte 0/ })
    const second = Buffer.concat([muxFrame('stdout', Buffer.from('ok')), Buffer.from([1, 0, 1, 0, 0, 0, 0, 0])])
    await assert.rejects(frames(chunks(second)), { code: 'ERR_PROTOCOL', message: /byte 10/ })
  })
})

describe('ps rows', () => {
  const now = Date.UTC(2024, 0, 1, 12, 0, 0)
  const id = 'a'.repeat(64)
  const list = [
    {
      Id: id,
      Names: ['/web', '/other/alias'],
      Image: 'registry:5000/busybox:latest',
      Command: "sh -c 'echo ready; exec sleep 1000'",
      Created: now / 1000 - 5,
      State: 'running',
      Status: 'Up 5 seconds',
      Ports: []
    },
    {
      Id: 'b'.repeat(64),
      Names: ['/done'],
      Image: `sha256:${'c'.repeat(64)}`,
      Command: 'echo hi',
      Created: now / 1000 - 7200,
      State: 'exited',
      Status: 'Exited (0) 2 hours ago',
      Labels: { a: 'b' }
    }
  ]

  test('rows read like docker\'s: short IDs, quoted and truncated commands, names without slashes', () => {
    const [web, done] = containerRows(list, { nowMs: now })
    assert.equal(web?.ID, 'a'.repeat(12))
    assert.equal(web?.Command, '"sh -c \'echo ready; …"')
    assert.equal(web?.Names, 'web')
    assert.equal(web?.RunningFor, '5 seconds ago')
    assert.equal(web?.Status, 'Up 5 seconds')
    assert.equal(done?.Image, 'c'.repeat(12))
    assert.equal(done?.Command, '"echo hi"')
    assert.equal(done?.RunningFor, '2 hours ago')
    assert.equal(done?.Labels, 'a=b')

    const [full] = containerRows(list, { nowMs: now, noTrunc: true })
    assert.equal(full?.ID, id)
    assert.equal(full?.Command, '"sh -c \'echo ready; exec sleep 1000\'"')
  })

  test('the table has docker\'s columns and a header even when empty', () => {
    assert.equal(formatPsTable([]), 'CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES\n')
    const lines = formatPsTable(containerRows(list, { nowMs: now })).split('\n')
    assert.match(lines[0] ?? '', /^CONTAINER ID +IMAGE +COMMAND +CREATED +STATUS +PORTS +NAMES$/)
    assert.match(lines[1] ?? '', /^a{12} +registry:5000\/busybox:latest +".*…" +5 seconds ago +Up 5 seconds +web$/)
    assert.match(lines[2] ?? '', /^b{12} +c{12} +"echo hi" +2 hours ago +Exited \(0\) 2 hours ago +done$/)
  })
})
