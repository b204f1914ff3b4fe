import type { Logger } from '../common/index.js'
import type { ImageService } from '../image/index.js'
import type { ContainerService } from '../runtime/index.js'
import type { AgentMetrics } from './metrics.js'

/** What /version and /info report about this daemon and host; gathered once by the agent. */
export interface SystemInfo {
  /** Persistent engine ID (docker info's ID). */
  id: string
  /** Host name. */
  name: string
  version: string
  gitCommit: string
  buildTime: string
  dataRoot: string
  /** Storage driver name shown by docker info. */
  driver: string
  /** e.g. "Debian GNU/Linux 12 (bookworm)". */
  operatingSystem: string
  osVersion: string
  kernelVersion: string
  /** GOOS-style: linux. */
  osType: string
  /** GOARCH-style (amd64), as /version reports it. */
  arch: string
  /** uname -m (x86_64), as docker info reports it. */
  machine: string
  ncpu: number
  memTotal: number
  insecureRegistries: string[]
  /** The runtime the daemon runs on (docker shows the Go version there). */
  runtimeVersion: string
}

export interface EngineApiComponents {
  logger: Logger
  images: ImageService
  metrics: AgentMetrics
  system: SystemInfo
  /** Container and exec routes; absent (no runc) they answer 501. */
  containers?: ContainerService
}

export interface EngineApiInit {
  /** Aborted when the daemon shuts down: in-flight pulls stop and keep their partial data. */
  signal?: AbortSignal
  /** Request body cap in bytes. */
  bodyLimit?: number
}
