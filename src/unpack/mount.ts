import { dirname, relative, sep } from 'node:path'
import { JoeyError } from '../common/index.js'
import { TOOLS } from './constants.js'
import { run } from './exec.js'
import type { Mount } from './types.js'

const PATH_OPTIONS = ['lowerdir', 'upperdir', 'workdir']

/**
 * Mounts `mounts` on `target` in order (util-linux mount(8)). Overlay layer paths are passed
 * relative to their common directory: the kernel takes one page of mount options, and
 * absolute paths of a deep stack do not fit in it.
 */
export async function mountAll (mounts: Mount[], target: string, options: { signal?: AbortSignal } = {}): Promise<void> {
  let mounted = 0
  try {
    for (const m of mounts) {
      if (m.type === 'overlay') {
        const { cwd, opts } = relativeOverlayOptions(m.options)
        await run(TOOLS.mount, ['-t', 'overlay', '-o', opts.join(','), m.source, target], { cwd, ...opts2(options) })
      } else if (m.type === 'bind' || m.options.includes('bind') || m.options.includes('rbind')) {
        await run(TOOLS.mount, ['-o', m.options.join(','), m.source, target], opts2(options))
      } else {
        await run(TOOLS.mount, ['-t', m.type, '-o', m.options.join(','), m.source, target], opts2(options))
      }
      mounted++
    }
  } catch (err) {
    for (; mounted > 0; mounted--) await unmount(target).catch(() => {})
    throw new JoeyError('ERR_FAILED_PRECONDITION', `cannot mount snapshot on ${target}: ${(err as Error).message}`, { cause: err })
  }
}

function opts2 (options: { signal?: AbortSignal }): { signal?: AbortSignal } {
  return options.signal !== undefined ? { signal: options.signal } : {}
}

/** Unmounts `target`; a lazy (detached) unmount when it is busy. */
export async function unmount (target: string): Promise<void> {
  try {
    await run(TOOLS.umount, [target])
  } catch (err) {
    if (/not mounted|no mount point/i.test((err as Error).message)) return
    if (/busy/i.test((err as Error).message)) {
      await run(TOOLS.umount, ['-l', target])
      return
    }
    throw err
  }
}

function relativeOverlayOptions (options: string[]): { cwd?: string, opts: string[] } {
  const paths: string[] = []
  for (const o of options) {
    const [k, v] = splitOption(o)
    if (v !== undefined && PATH_OPTIONS.includes(k)) paths.push(...v.split(':'))
  }
  if (paths.length === 0 || !paths.every(p => p.startsWith('/'))) return { opts: options }
  let common = dirname(paths[0]!)
  while (!paths.every(p => p.startsWith(common.endsWith(sep) ? common : common + sep))) common = dirname(common)
  if (common === '/') return { opts: options }
  const opts = options.map(o => {
    const [k, v] = splitOption(o)
    if (v === undefined || !PATH_OPTIONS.includes(k)) return o
    return `${k}=${v.split(':').map(p => relative(common, p)).join(':')}`
  })
  return { cwd: common, opts }
}

function splitOption (o: string): [string, string | undefined] {
  const i = o.indexOf('=')
  return i === -1 ? [o, undefined] : [o.slice(0, i), o.slice(i + 1)]
}
