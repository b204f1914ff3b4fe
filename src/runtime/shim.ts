// The container shim: one detached process per running container, like containerd-shim.
// It is runc's parent (`runc run` in the foreground: runc waits for the container's init
// and exits with its status), owns the container's stdout/stderr pipes, appends them to the
// docker json-file log and, once the container is gone and every line is on disk, writes
// the exit status. It outlives joeyd, so a daemon restart loses neither output nor exit code.
//
// It imports only node: modules (and lines.ts, which does the same) so it starts fast and
// runs the same from sources (through tsx) or from the build.
//
// Protocol with the daemon: argv[2] is a JSON config file. On stdout the shim writes one
// JSON line, {"status":"running","pid":N} or {"status":"failed","error":"…","exitCode":N},
// then closes it. The exit file is {"exitCode":N,"finishedAt":"…","error"?:"…"}.
import { spawn } from 'node:child_process'
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs'
import { constants as osConstants } from 'node:os'
import { createClock, encodeEntry, LineSplitter } from './lines.js'

export interface ShimConfig {
  id: string
  bundle: string
  runtime: string
  stateRoot: string
  logPath: string
  exitPath: string
  pidFile: string
  runtimeLog: string
  maxLine: number
  maxEarly: number
}

const config = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as ShimConfig
const clock = createClock()
const logFd = openSync(config.logPath, 'a', 0o640)

rmSync(config.pidFile, { force: true })
rmSync(config.exitPath, { force: true })

type Stream = 'stdout' | 'stderr'
let ready = false
let reported = false
const early: Array<{ stream: Stream, chunk: Buffer }> = []
let earlyBytes = 0
const earlyStderr: Buffer[] = []

function writeEntry (stream: Stream, line: Buffer): void {
  const data = Buffer.from(encodeEntry(stream, line, clock()))
  let off = 0
  while (off < data.length) off += writeSync(logFd, data, off)
}
const splitters: Record<Stream, LineSplitter> = {
  stdout: new LineSplitter(config.maxLine, line => writeEntry('stdout', line)),
  stderr: new LineSplitter(config.maxLine, line => writeEntry('stderr', line))
}

function report (msg: Record<string, unknown>): void {
  if (reported) return
  reported = true
  process.stdout.on('error', () => {})
  process.stdout.end(JSON.stringify(msg) + '\n')
}

function becomeReady (pid: number): void {
  if (ready) return
  ready = true
  for (const e of early) splitters[e.stream].push(e.chunk)
  early.length = 0
  report({ status: 'running', pid })
}

function readPid (): number | undefined {
  try {
    const n = Number(readFileSync(config.pidFile, 'utf8').trim())
    return Number.isSafeInteger(n) && n > 0 ? n : undefined
  } catch {
    return undefined
  }
}

const child = spawn(config.runtime, [
  '--root', config.stateRoot, '--log', config.runtimeLog, '--log-format', 'json',
  'run', '--bundle', config.bundle, '--pid-file', config.pidFile, config.id
], { cwd: config.bundle, stdio: ['ignore', 'pipe', 'pipe'] })

const ended: Array<Promise<void>> = []
for (const stream of ['stdout', 'stderr'] as const) {
  const s = child[stream]!
  ended.push(new Promise(resolve => { s.on('close', resolve); s.on('error', () => resolve()) }))
  s.on('data', (chunk: Buffer) => {
    if (ready) {
      splitters[stream].push(chunk)
      return
    }
    // Until runc reports the container started, stderr may be runc's own error.
    if (stream === 'stderr') earlyStderr.push(chunk)
    early.push({ stream, chunk })
    earlyBytes += chunk.length
    if (earlyBytes > config.maxEarly) {
      const pid = readPid()
      if (pid !== undefined) becomeReady(pid)
    }
  })
}

const poll = setInterval(() => {
  const pid = readPid()
  if (pid !== undefined) {
    clearInterval(poll)
    becomeReady(pid)
  }
}, 5)

let spawnError: Error | undefined
child.on('error', err => {
  spawnError = err
  clearInterval(poll)
  void finish(127, null)
})

child.on('exit', (code, signal) => {
  clearInterval(poll)
  void finish(code, signal)
})

let finishing = false
async function finish (code: number | null, signal: NodeJS.Signals | null): Promise<void> {
  if (finishing) return
  finishing = true
  const exitCode = code ?? (signal !== null ? 128 + (osConstants.signals[signal] ?? 0) : 255)
  // The pipes close once every process of the container is gone (its pid namespace dies
  // with its init); a bounded wait keeps a stray holder from pinning the shim.
  await Promise.race([Promise.all(ended), new Promise(resolve => setTimeout(resolve, 2000))])
  const pid = readPid()
  if (!ready && pid !== undefined) becomeReady(pid)
  let error: string | undefined
  if (!ready) {
    error = spawnError !== undefined
      ? `cannot run ${config.runtime}: ${spawnError.message}`
      : runtimeError(Buffer.concat(earlyStderr).toString('utf8')) || `${config.runtime} run exited with status ${exitCode}`
    report({ status: 'failed', error, exitCode })
  } else {
    splitters.stdout.end()
    splitters.stderr.end()
  }
  try { fsyncSync(logFd) } catch {}
  closeSync(logFd)
  const tmp = `${config.exitPath}.tmp`
  writeFileSync(tmp, JSON.stringify({ exitCode, finishedAt: clock(), ...(error !== undefined ? { error } : {}) }))
  renameSync(tmp, config.exitPath)
  process.exit(0)
}

/** runc prints its fatal error as the last stderr line (plain, because --log is a file). */
function runtimeError (text: string): string {
  const lines = text.split('\n').map(l => l.trim()).filter(l => l !== '')
  const last = lines.at(-1) ?? ''
  const m = /msg="((?:[^"\\]|\\.)*)"/.exec(last)
  if (m !== null) {
    try { return JSON.parse(`"${m[1]!}"`) as string } catch {}
  }
  return last
}
