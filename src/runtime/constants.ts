/** runc looked up on PATH when init.runtimePath is not given. */
export const DEFAULT_RUNTIME = 'runc'
/** runc's own default state root; joeyd normally passes its own under the data root. */
export const DEFAULT_STATE_ROOT = '/run/joey/runc'
/** Parent of every container's cgroup (`/joey/<id>`), like docker's `/docker`. */
export const CGROUP_PARENT = 'joey'

/**
 * Static init binaries bind-mounted at /dev/init as pid 1 (docker's `--init`): they reap
 * zombies and forward signals. Debian ships tini-static (package tini) and catatonit.
 */
export const INIT_CANDIDATES = ['/usr/bin/tini-static', '/usr/bin/catatonit', '/usr/libexec/podman/catatonit', '/usr/bin/docker-init', '/usr/libexec/docker/docker-init']
/** Where the init binary appears inside the container. */
export const INIT_PATH = '/dev/init'

/** docker stop's default grace period before SIGKILL. */
export const STOP_TIMEOUT_SEC = 10
/** How long kill/stop wait for the shim to record an exit after SIGKILL. */
export const KILL_WAIT_MS = 15_000
/** How long start() waits for the shim to report the container running. */
export const START_TIMEOUT_MS = 30_000
/** Fallback poll for exits and log growth when inotify misses an event. */
export const POLL_MS = 500

/** docker's json-file splits lines longer than this into partial entries. */
export const MAX_LOG_LINE = 16 * 1024
/** Output buffered by the shim before runc reports the container started. */
export const MAX_EARLY_OUTPUT = 1024 * 1024

/** docker's minimum --memory. */
export const MIN_MEMORY = 6 * 1024 * 1024
/** CFS period docker uses to express --cpus as a quota. */
export const CPU_PERIOD = 100_000
/** RLIMIT_NOFILE ceiling; lowered to the daemon's own hard limit, which runc cannot exceed. */
export const MAX_NOFILE = 1_048_576

/** Size of /dev and /dev/shm tmpfs, as docker's default (64 MiB). */
export const SHM_SIZE = 64 * 1024 * 1024

/** docker's zero time for StartedAt/FinishedAt of a container that never ran. */
export const ZERO_TIME = '0001-01-01T00:00:00Z'

/** Exit code recorded when the shim died without recording one (docker uses 255 for lost tasks). */
export const LOST_EXIT_CODE = 255
/** Exit code of a command that is not found (shell convention, docker's too). */
export const NOT_FOUND_EXIT_CODE = 127
/** Exit code of a command that exists but cannot be run. */
export const NOT_EXECUTABLE_EXIT_CODE = 126

export const DEFAULT_PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

/** Files written by the service and the shim in `<root>/<id>/`. */
export const FILES = {
  record: 'config.v2.json',
  spec: 'config.json',
  shimConfig: 'shim.json',
  shimLog: 'shim.log',
  shimPid: 'shim.pid',
  exit: 'exit.json',
  pid: 'init.pid',
  rootfs: 'rootfs',
  hostname: 'hostname',
  hosts: 'hosts',
  resolvConf: 'resolv.conf'
} as const
