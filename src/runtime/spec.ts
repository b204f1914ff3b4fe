import { CPU_PERIOD, SHM_SIZE } from './constants.js'
import type { ExecUser } from './rootfs.js'
import type { NetworkMode } from './types.js'

/** docker's default capability set (moby oci/caps/defaults.go). */
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE'
]

/** Paths docker hides from containers (bind of /dev/null or an empty read-only tmpfs). */
export const MASKED_PATHS = [
  '/proc/asound', '/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap'
]

/** Paths docker makes read-only inside containers. */
export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger']

/**
 * /proc files runc lets a bind mount cover (its checkProcMount list) and lxcfs provides:
 * with them, free, top and /proc/cpuinfo inside a container show its limits, not the host's.
 */
export const LXCFS_PROC_FILES = ['cpuinfo', 'diskstats', 'meminfo', 'stat', 'swaps', 'uptime', 'loadavg']

export interface Bind {
  source: string
  destination: string
  readOnly: boolean
}

export interface OciMount {
  destination: string
  type: string
  source: string
  options: string[]
}

export interface SpecInput {
  rootfs: string
  readOnly: boolean
  /** The full argv of pid 1, init included. */
  args: string[]
  env: string[]
  cwd: string
  user: ExecUser
  hostname: string
  network: NetworkMode
  /** Per-container /etc/hostname, /etc/hosts, /etc/resolv.conf on the host. */
  etc: { hostname: string, hosts: string, resolvConf: string }
  binds: Bind[]
  /** Host path of a static init, bind-mounted at initTarget. */
  init?: { source: string, target: string }
  memory?: number
  /** Set memory+swap to the memory limit (no swap), when the host accounts swap. */
  limitSwap?: boolean
  cpus?: number
  pidsLimit?: number
  cgroupsPath: string
  /** A private cgroup namespace (cgroup v2, as docker does there). */
  cgroupNamespace: boolean
  nofile: number
  /** Extra read-write binds such as lxcfs's /proc files. */
  extraMounts?: OciMount[]
  /** linux.seccomp; none when undefined. */
  seccomp?: Record<string, unknown>
}

export interface OciProcess {
  terminal: false
  user: { uid: number, gid: number, additionalGids?: number[] }
  args: string[]
  env: string[]
  cwd: string
  capabilities: { bounding: string[], effective: string[], permitted: string[] }
  rlimits: Array<{ type: string, hard: number, soft: number }>
  noNewPrivileges: boolean
}

/** The process part of the spec, shared by a container's pid 1 and its exec sessions. */
export function processSpec (args: string[], env: string[], cwd: string, user: ExecUser, nofile: number): OciProcess {
  return {
    terminal: false,
    user: { uid: user.uid, gid: user.gid, ...(user.additionalGids.length > 0 ? { additionalGids: user.additionalGids } : {}) },
    args,
    env,
    cwd,
    capabilities: { bounding: [...DEFAULT_CAPABILITIES], effective: [...DEFAULT_CAPABILITIES], permitted: [...DEFAULT_CAPABILITIES] },
    rlimits: [{ type: 'RLIMIT_NOFILE', hard: nofile, soft: nofile }],
    noNewPrivileges: false
  }
}

/** An OCI runtime spec (1.0.2, what runc 1.1 reads) shaped like the one docker generates. */
export function buildSpec (input: SpecInput): Record<string, unknown> {
  const etcOptions = ['rbind', 'rprivate', ...(input.readOnly ? ['ro'] : [])]
  const shmSize = `size=${SHM_SIZE / 1024}k`
  const mounts: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', shmSize] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['ro', 'nosuid', 'noexec', 'nodev', 'relatime'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', shmSize] },
    { destination: '/etc/resolv.conf', type: 'bind', source: input.etc.resolvConf, options: etcOptions },
    { destination: '/etc/hostname', type: 'bind', source: input.etc.hostname, options: etcOptions },
    { destination: '/etc/hosts', type: 'bind', source: input.etc.hosts, options: etcOptions },
    ...input.binds.map(b => ({ destination: b.destination, type: 'bind', source: b.source, options: ['rbind', 'rprivate', ...(b.readOnly ? ['ro'] : [])] })),
    ...(input.init !== undefined ? [{ destination: input.init.target, type: 'bind', source: input.init.source, options: ['bind', 'ro', 'nosuid', 'nodev'] }] : []),
    ...(input.extraMounts ?? [])
  ]

  const namespaces: Array<{ type: string }> = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }]
  if (input.network === 'none') namespaces.push({ type: 'network' })
  if (input.cgroupNamespace) namespaces.push({ type: 'cgroup' })

  const resources: Record<string, unknown> = { devices: [{ allow: false, access: 'rwm' }] }
  if (input.memory !== undefined && input.memory > 0) {
    resources.memory = { limit: input.memory, ...(input.limitSwap === true ? { swap: input.memory } : {}) }
  }
  if (input.cpus !== undefined && input.cpus > 0) {
    resources.cpu = { quota: Math.round(input.cpus * CPU_PERIOD), period: CPU_PERIOD }
  }
  if (input.pidsLimit !== undefined && input.pidsLimit > 0) resources.pids = { limit: input.pidsLimit }

  return {
    ociVersion: '1.0.2',
    process: processSpec(input.args, input.env, input.cwd, input.user, input.nofile),
    root: { path: input.rootfs, readonly: input.readOnly },
    hostname: input.hostname,
    mounts,
    linux: {
      resources,
      cgroupsPath: input.cgroupsPath,
      namespaces,
      maskedPaths: [...MASKED_PATHS],
      readonlyPaths: [...READONLY_PATHS],
      ...(input.seccomp !== undefined ? { seccomp: input.seccomp } : {})
    }
  }
}
