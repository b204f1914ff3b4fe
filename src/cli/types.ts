// The client's view of the Docker Engine API objects joey uses. Field names and shapes are
// the documented Engine API ones (v1.43), so the same client also works against dockerd.
// Fields a daemon may leave out are optional; unknown fields pass through untouched.

/** One newline-delimited message of a streaming endpoint (pull, push, load). */
export interface JSONMessage {
  id?: string
  status?: string
  /** Pre-rendered progress from the daemon; the client renders its own from progressDetail. */
  progress?: string
  progressDetail?: ProgressDetail
  /** Raw text output (build, load). */
  stream?: string
  error?: string
  errorDetail?: { code?: number, message?: string }
  aux?: unknown
  [key: string]: unknown
}

export interface ProgressDetail {
  current?: number
  total?: number
  /** Unix seconds when the transfer began: lets the client estimate the time left. */
  start?: number
  units?: string
}

/** GET /images/json */
export interface ImageSummary {
  Id: string
  ParentId?: string
  RepoTags: string[] | null
  RepoDigests: string[] | null
  /** Unix seconds. */
  Created: number
  Size: number
  SharedSize?: number
  VirtualSize?: number
  Labels?: Record<string, string> | null
  Containers?: number
  [key: string]: unknown
}

/** GET /images/{name}/json */
export interface ImageInspect {
  Id: string
  RepoTags?: string[] | null
  RepoDigests?: string[] | null
  Parent?: string
  Comment?: string
  /** RFC 3339. */
  Created?: string
  Author?: string
  Config?: Record<string, unknown> | null
  Architecture?: string
  Variant?: string
  Os?: string
  Size?: number
  RootFS?: { Type: string, Layers?: string[] }
  Metadata?: { LastTagTime?: string }
  [key: string]: unknown
}

/** One item of DELETE /images/{name}. */
export interface ImageDeleteResponseItem {
  Untagged?: string
  Deleted?: string
}

/** GET /version */
export interface ServerVersion {
  Platform?: { Name: string }
  Components?: Array<{ Name: string, Version: string, Details?: Record<string, unknown> }>
  Version: string
  ApiVersion: string
  MinAPIVersion?: string
  GitCommit?: string
  GoVersion?: string
  Os?: string
  Arch?: string
  KernelVersion?: string
  Experimental?: boolean
  BuildTime?: string
  [key: string]: unknown
}

/** GET /_ping: the body is "OK"; the interesting bits are response headers. */
export interface PingResult {
  apiVersion?: string
  osType?: string
  builderVersion?: string
}
