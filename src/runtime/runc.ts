import { execFile } from 'node:child_process'
import { JoeyError } from '../common/index.js'

export interface RuncState {
  id: string
  pid: number
  /** creating, created, running, paused or stopped. */
  status: string
  bundle: string
}

const RUNC_TIMEOUT_MS = 30_000

/** The one-shot runc commands; long-lived `runc run` belongs to the shim. */
export class Runc {
  constructor (readonly path: string, readonly root: string) {}

  private async run (args: string[]): Promise<string> {
    return await new Promise((resolve, reject) => {
      execFile(this.path, ['--root', this.root, ...args], { timeout: RUNC_TIMEOUT_MS, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (err === null) {
          resolve(stdout)
          return
        }
        const code = (err as { code?: unknown }).code
        if (code === 'ENOENT') {
          reject(new JoeyError('ERR_UNAVAILABLE', `OCI runtime ${this.path} not found: install runc (apt-get install runc) or set the runtime path`, { cause: err }))
          return
        }
        const msg = lastLine(stderr) || err.message
        reject(new JoeyError('ERR_INTERNAL', `${this.path} ${args[0] ?? ''} failed: ${msg}`, { cause: err, detail: { args, stderr: stderr.slice(-2000) } }))
      })
    })
  }

  async version (): Promise<string> {
    return (await this.run(['--version'])).split('\n')[0] ?? ''
  }

  /** `undefined` when runc has no such container (never created, or deleted after its exit). */
  async state (id: string): Promise<RuncState | undefined> {
    try {
      return JSON.parse(await this.run(['state', id])) as RuncState
    } catch (err) {
      if (isNotExist(err)) return undefined
      throw err
    }
  }

  /** Signals the container's pid 1; false when it no longer exists or is not running. */
  async kill (id: string, signal: string): Promise<boolean> {
    try {
      await this.run(['kill', id, signal])
      return true
    } catch (err) {
      if (isNotExist(err) || /not running|process already finished|container not running/i.test((err as Error).message)) return false
      throw err
    }
  }

  async delete (id: string): Promise<void> {
    try {
      await this.run(['delete', '--force', id])
    } catch (err) {
      if (!isNotExist(err)) throw err
    }
  }

  execArgs (id: string, processFile: string, pidFile: string): string[] {
    return ['--root', this.root, 'exec', '--process', processFile, '--pid-file', pidFile, id]
  }
}

function lastLine (text: string): string {
  const line = text.split('\n').map(l => l.trim()).filter(l => l !== '').at(-1) ?? ''
  const m = /msg="((?:[^"\\]|\\.)*)"/.exec(line)
  if (m !== null) {
    try { return JSON.parse(`"${m[1]!}"`) as string } catch {}
  }
  return line
}

function isNotExist (err: unknown): boolean {
  return err instanceof JoeyError && err.code === 'ERR_INTERNAL' && /does not exist|not exist|no such file/i.test(err.message)
}
