// joeyd as a real child process for end-to-end tests: its own data root, socket and TCP port,
// ready once /_ping answers; stopped with SIGTERM (or SIGKILL) by PID.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Client } from 'undici'

const ROOT = new URL('../..', import.meta.url).pathname
const READY_TIMEOUT_MS = 20_000
const STOP_TIMEOUT_MS = 10_000

export async function freePort (): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    const srv = createServer()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      srv.close(() => { resolve(port) })
    })
  })
}

export interface Joeyd {
  child: ChildProcess
  pid: number
  socket: string
  tcpUrl: string
  /** Everything joeyd wrote to stdout and stderr so far. */
  output: () => string
  stdout: () => string
  /** An Engine API client on the unix socket. */
  client: Client
  /** SIGTERM, then SIGKILL after a timeout; resolves with the exit code (null when killed). */
  stop: () => Promise<number | null>
  kill: () => Promise<void>
}

export interface StartJoeydOptions {
  dataRoot: string
  socket: string
  tcpPort?: number
  args?: string[]
  env?: Record<string, string>
}

export async function startJoeyd (opts: StartJoeydOptions): Promise<Joeyd> {
  const tcpPort = opts.tcpPort ?? await freePort()
  const args = [join(ROOT, 'bin/joeyd.js'), '--data-root', opts.dataRoot, '-H', `unix://${opts.socket}`, '-H', `tcp://127.0.0.1:${tcpPort}`, '--log-level', 'debug', '--mirror', '127.0.0.1:0', ...(opts.args ?? [])]
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...opts.env } })
  let out = ''
  let stdout = ''
  child.stdout!.setEncoding('utf8').on('data', (s: string) => { out += s; stdout += s })
  child.stderr!.setEncoding('utf8').on('data', (s: string) => { out += s })
  const exited = once(child, 'exit')
  const client = new Client('http://localhost', { socketPath: opts.socket })
  const pid = child.pid!

  const kill = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(pid, 'SIGKILL')
      await exited
    }
    await client.destroy().catch(() => {})
  }
  const stop = async (): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) {
      // Signal first: closing the client would wait for in-flight requests such as a pull.
      process.kill(pid, 'SIGTERM')
      const timer = setTimeout(() => { if (child.exitCode === null) process.kill(pid, 'SIGKILL') }, STOP_TIMEOUT_MS)
      await exited
      clearTimeout(timer)
    }
    await client.destroy().catch(() => {})
    return child.exitCode
  }

  const deadline = Date.now() + READY_TIMEOUT_MS
  for (;;) {
    if (child.exitCode !== null) throw new Error(`joeyd exited early (${child.exitCode}):\n${out}`)
    try {
      const res = await client.request({ method: 'GET', path: '/_ping' })
      const body = await res.body.text()
      if (res.statusCode === 200 && body === 'OK') break
    } catch {}
    if (Date.now() > deadline) {
      await kill()
      throw new Error(`joeyd did not answer /_ping within ${READY_TIMEOUT_MS} ms:\n${out}`)
    }
    await sleep(100)
  }
  return { child, pid, socket: opts.socket, tcpUrl: `http://127.0.0.1:${tcpPort}`, output: () => out, stdout: () => stdout, client, stop, kill }
}
