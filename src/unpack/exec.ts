import { spawn } from 'node:child_process'
import { JoeyError, isAbortError } from '../common/index.js'

const PACKAGES: Record<string, string> = {
  zstd: 'zstd',
  setfattr: 'attr',
  mknod: 'coreutils',
  cp: 'coreutils',
  mount: 'mount',
  umount: 'mount'
}

export interface RunOptions {
  signal?: AbortSignal
  cwd?: string
}

/**
 * Runs a short-lived tool to completion. Node has no mknod, setxattr or mount, so these few
 * operations go through the Debian tools that wrap the same system calls.
 */
export async function run (cmd: string, args: string[], options: RunOptions = {}): Promise<string> {
  options.signal?.throwIfAborted()
  return await new Promise<string>((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
      ...(options.signal !== undefined ? { signal: options.signal } : {})
    })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (c: Buffer) => out.push(c))
    child.stderr.on('data', (c: Buffer) => err.push(c))
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (isAbortError(e)) reject(new JoeyError('ERR_ABORTED', `${cmd} aborted`, { cause: e }))
      else if (e.code === 'ENOENT') {
        reject(new JoeyError('ERR_FAILED_PRECONDITION', `${cmd} is not installed (Debian package ${PACKAGES[cmd] ?? cmd})`, { cause: e }))
      } else reject(new JoeyError('ERR_INTERNAL', `${cmd} failed to start: ${e.message}`, { cause: e }))
    })
    child.on('close', (code, signal) => {
      if (code === 0) {
        resolve(Buffer.concat(out).toString())
        return
      }
      const stderr = Buffer.concat(err).toString().trim()
      reject(new ToolError(cmd, args, code, signal, stderr))
    })
  })
}

/** A tool exited non-zero; callers decide whether its complaint matters (e.g. ENOTSUP). */
export class ToolError extends JoeyError {
  readonly stderr: string
  constructor (cmd: string, args: string[], code: number | null, signal: NodeJS.Signals | null, stderr: string) {
    super('ERR_INTERNAL', `${cmd} ${args.join(' ')} ${code !== null ? `exited with ${code}` : `was killed by ${String(signal)}`}${stderr !== '' ? `: ${stderr}` : ''}`,
      { detail: { cmd, code, stderr } })
    this.stderr = stderr
  }
}
