import type { AbortOptions, Logger } from '../common/index.js'
import type { ContentStore } from '../content/index.js'
import type { ImageService } from '../image/index.js'
import type { Snapshotter } from '../unpack/index.js'

export type NetworkMode = 'none' | 'host'
export type ContainerStatus = 'created' | 'running' | 'exited' | 'removing' | 'dead'

export interface CreateOptions extends AbortOptions {
  /** Any name or id ImageService.inspect accepts. The image must be pulled already. */
  image: string
  /** Unique; generated (adjective_name) when absent. A leading '/' is accepted. */
  name?: string
  /** Replaces the image's Cmd. */
  cmd?: string[]
  /** Replaces the image's Entrypoint; `[]` clears it (and the image's Cmd, like docker). */
  entrypoint?: string[]
  /** KEY=VALUE entries, merged over the image's Env. */
  env?: string[]
  workdir?: string
  /** name, uid, name:group or uid:gid; names are resolved in the container's /etc/passwd and /etc/group. */
  user?: string
  hostname?: string
  /** host:container[:ro|rw]; a missing host directory is created, like docker's -v. */
  binds?: string[]
  readOnly?: boolean
  /** Bytes (at least 6 MiB). */
  memory?: number
  /** CPUs as a fraction (0.5 = half a core), at most the host's count. */
  cpus?: number
  /** Most processes in the container; 0 or -1 means unlimited. */
  pidsLimit?: number
  /** Default: the service's defaultNetwork ('none'). */
  network?: NetworkMode
  /** No TTYs: output goes through pipes to the json-file log. */
  tty?: false
  labels?: Record<string, string>
  /** Remove the container (and its writable layer) once it exits. */
  autoRemove?: boolean
}

export interface CreateResult {
  id: string
  name: string
  warnings: string[]
}

export interface LogEntry {
  stream: 'stdout' | 'stderr'
  line: Buffer
  /** RFC 3339 with nanoseconds, as docker's json-file. */
  time: string
}

export interface LogsOptions extends AbortOptions {
  /** Keep reading while the container runs; ends when it stops. */
  follow?: boolean
  /** Default true. */
  stdout?: boolean
  /** Default true. */
  stderr?: boolean
  /** Only entries at or after this time: a Date, unix seconds, or an RFC 3339 string. */
  since?: Date | number | string
  /** Only entries before this time. */
  until?: Date | number | string
  /** Only the last N entries (before following). */
  tail?: number
}

export interface AttachOptions extends AbortOptions {
  stdout?: boolean
  stderr?: boolean
}

export type WaitCondition = 'not-running' | 'next-exit' | 'removed'

export interface WaitOptions extends AbortOptions {
  /** Default 'not-running'. */
  condition?: WaitCondition
}

export interface WaitResult {
  exitCode: number
  error?: string
}

export interface StopOptions {
  /** Seconds between SIGTERM (or the image's StopSignal) and SIGKILL; default 10. -1 waits forever. */
  timeoutSec?: number
  /** Overrides the image's StopSignal. */
  signal?: string
}

export interface RemoveOptions {
  /** Kill a running container first. */
  force?: boolean
}

export interface ListOptions {
  /** Include containers that are not running. */
  all?: boolean
}

export interface ExecOptions {
  cmd: string[]
  env?: string[]
  user?: string
  workdir?: string
}

export interface ExecSession {
  output: AsyncIterable<LogEntry>
  /** Resolves once the process exited and all its output was delivered to `output`. */
  exitCode: Promise<number>
}

export interface ExecInspect {
  ID: string
  ContainerID: string
  Running: boolean
  ExitCode: number | null
  Pid: number
  OpenStdin: false
  OpenStdout: true
  OpenStderr: true
  ProcessConfig: { tty: false, entrypoint: string, arguments: string[], privileged: false, user: string }
}

export interface MountPoint {
  Type: 'bind'
  Source: string
  Destination: string
  Mode: string
  RW: boolean
  Propagation: string
}

/** The docker-shaped view of a container (GET /containers/{id}/json). */
export interface ContainerInspect {
  Id: string
  Created: string
  Path: string
  Args: string[]
  State: {
    Status: ContainerStatus
    Running: boolean
    Paused: false
    Restarting: false
    OOMKilled: boolean
    Dead: boolean
    Pid: number
    ExitCode: number
    Error: string
    StartedAt: string
    FinishedAt: string
  }
  /** Config digest of the image (docker's image ID). */
  Image: string
  ResolvConfPath: string
  HostnamePath: string
  HostsPath: string
  LogPath: string
  Name: string
  RestartCount: number
  Driver: string
  Platform: 'linux'
  ExecIDs: string[] | null
  HostConfig: {
    Binds: string[] | null
    NetworkMode: NetworkMode
    AutoRemove: boolean
    ReadonlyRootfs: boolean
    Memory: number
    NanoCpus: number
    CpuPeriod: number
    CpuQuota: number
    PidsLimit: number | null
    Init: true
    LogConfig: { Type: 'json-file', Config: Record<string, string> }
  }
  GraphDriver: { Name: string, Data: Record<string, string> | null }
  Mounts: MountPoint[]
  Config: {
    Hostname: string
    User: string
    Env: string[]
    Cmd: string[] | null
    Entrypoint: string[] | null
    Image: string
    WorkingDir: string
    Labels: Record<string, string>
    StopSignal?: string
    Tty: false
    OpenStdin: false
    AttachStdin: false
    AttachStdout: boolean
    AttachStderr: boolean
  }
  NetworkSettings: { Networks: Record<string, Record<string, unknown>> }
}

/** One row of `docker ps` (GET /containers/json). */
export interface ContainerSummary {
  Id: string
  Names: string[]
  Image: string
  ImageID: string
  Command: string
  /** Unix seconds. */
  Created: number
  State: ContainerStatus
  /** "Up 5 seconds", "Exited (0) 3 minutes ago", "Created". */
  Status: string
  Labels: Record<string, string>
  HostConfig: { NetworkMode: NetworkMode }
  Mounts: MountPoint[]
}

export interface ContainerService {
  create: (opts: CreateOptions) => Promise<CreateResult>
  start: (id: string) => Promise<void>
  stop: (id: string, opts?: StopOptions) => Promise<void>
  /** Sends a signal (name like SIGHUP/HUP or number); ERR_FAILED_PRECONDITION when not running. */
  kill: (id: string, signal?: string | number) => Promise<void>
  wait: (id: string, opts?: WaitOptions) => Promise<WaitResult>
  restart: (id: string, opts?: StopOptions) => Promise<void>
  remove: (id: string, opts?: RemoveOptions) => Promise<void>
  list: (opts?: ListOptions) => Promise<ContainerSummary[]>
  inspect: (id: string) => Promise<ContainerInspect>
  logs: (id: string, opts?: LogsOptions) => Promise<AsyncIterable<LogEntry>>
  /**
   * Output from now on, ending when the container next exits; works on a created container
   * so a foreground run sees the first line.
   */
  attach: (id: string, opts?: AttachOptions) => Promise<AsyncIterable<LogEntry>>
  exec: (id: string, opts: ExecOptions) => Promise<{ execId: string }>
  execStart: (execId: string) => Promise<ExecSession>
  execInspect: (execId: string) => Promise<ExecInspect>
  /** The full id of a container given its id, id prefix, name or /name. */
  resolve: (idOrName: string) => Promise<string>
}

/** Snapshot GC: what image and container removal trigger, and joeyd runs at start. */
export interface SnapshotCollector {
  /** Removes layer snapshots no image and no container uses; returns their names. */
  collectSnapshots: () => Promise<string[]>
}

export interface ContainerServiceInit {
  /** `<data-root>/containers`: one directory per container (state, spec, logs, rootfs mount point). */
  root: string
  /** runc binary; default `runc` on PATH. */
  runtimePath?: string
  /** runc --root; default /run/joey/runc. */
  stateRoot?: string
  /** Static init binary bind-mounted at /dev/init; default: the first of INIT_CANDIDATES that exists. */
  initPath?: string
  /** Where lxcfs is mounted; its /proc files are bind-mounted when it is. Default /var/lib/lxcfs. */
  lxcfsRoot?: string
  /** Network of containers that ask for none; default 'none'. */
  defaultNetwork?: NetworkMode
  /** Command that runs the shim, followed by its config path; default node with this module's shim. */
  shimCommand?: string[]
  /** cgroup parent (relative to the hierarchy root); default 'joey'. */
  cgroupParent?: string
  /** The default seccomp deny-list; false runs containers unconfined (docker's seccomp=unconfined). Default true. */
  seccomp?: boolean
}

export interface ContainerServiceComponents {
  logger: Logger
  contentStore: ContentStore
  images: ImageService
  snapshotter: Snapshotter
}
