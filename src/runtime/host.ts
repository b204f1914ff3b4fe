import { access, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { LXCFS_PROC_FILES, type OciMount } from './spec.js'

/** Mount points of this mount namespace (field 5 of mountinfo, octal escapes decoded). */
export async function mountPoints (): Promise<Array<{ target: string, fstype: string }>> {
  const text = await readFile('/proc/self/mountinfo', 'utf8')
  const out: Array<{ target: string, fstype: string }> = []
  for (const line of text.split('\n')) {
    if (line === '') continue
    const [left, right = ''] = line.split(' - ')
    const fields = left!.split(' ')
    const target = (fields[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)))
    out.push({ target, fstype: right.split(' ')[0] ?? '' })
  }
  return out
}

export async function isMountPoint (path: string): Promise<boolean> {
  return (await mountPoints()).some(m => m.target === path)
}

/** Whether anything is mounted at or below `dir`: such a directory must never be rm -rf'd. */
export async function hasMountsUnder (dir: string): Promise<boolean> {
  const prefix = dir.endsWith('/') ? dir : dir + '/'
  return (await mountPoints()).some(m => m.target === dir || m.target.startsWith(prefix))
}

async function exists (path: string): Promise<boolean> {
  try {
    await access(path)
    return true
  } catch {
    return false
  }
}

export interface HostFacts {
  cgroupV2: boolean
  /** The kernel accounts swap per cgroup, so memory+swap can be capped at the memory limit. */
  swapAccounting: boolean
  /** RLIMIT_NOFILE for containers: at most the daemon's own hard limit, which runc cannot raise. */
  nofile: number
}

export async function hostFacts (maxNofile: number): Promise<HostFacts> {
  const cgroupV2 = await exists('/sys/fs/cgroup/cgroup.controllers')
  const swapAccounting = cgroupV2
    ? await exists('/sys/fs/cgroup/init.scope/memory.swap.max') || await exists('/sys/fs/cgroup/system.slice/memory.swap.max')
    : await exists('/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes')
  let nofile = maxNofile
  try {
    const limits = await readFile('/proc/self/limits', 'utf8')
    const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(limits)
    if (m !== null && m[2] !== 'unlimited') nofile = Math.min(maxNofile, Number(m[2]))
  } catch {}
  return { cgroupV2, swapAccounting, nofile }
}

/** lxcfs's virtualized /proc files, when lxcfs is mounted at `root`; none otherwise. */
export async function lxcfsMounts (root: string): Promise<OciMount[]> {
  const mounted = (await mountPoints()).some(m => m.target === root && m.fstype.startsWith('fuse'))
  if (!mounted) return []
  const out: OciMount[] = []
  for (const f of LXCFS_PROC_FILES) {
    const source = join(root, 'proc', f)
    if (await exists(source)) out.push({ destination: `/proc/${f}`, type: 'bind', source, options: ['rbind', 'rprivate'] })
  }
  const online = join(root, 'sys/devices/system/cpu/online')
  if (await exists(online)) out.push({ destination: '/sys/devices/system/cpu/online', type: 'bind', source: online, options: ['rbind', 'rprivate'] })
  return out
}
