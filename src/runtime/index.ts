export { createContainerService } from './service.js'
export { buildSpec, processSpec, DEFAULT_CAPABILITIES, MASKED_PATHS, READONLY_PATHS, LXCFS_PROC_FILES } from './spec.js'
export { defaultSeccompProfile } from './seccomp.js'
export type { Bind, OciMount, OciProcess, SpecInput } from './spec.js'
export { resolveUser, resolveInRoot, lookPath, parsePasswd, parseGroup } from './rootfs.js'
export type { ExecUser, PasswdEntry, GroupEntry } from './rootfs.js'
export type {
  AttachOptions, ContainerInspect, ContainerService, ContainerServiceComponents, ContainerServiceInit, ContainerStatus,
  ContainerSummary, CreateOptions, CreateResult, ExecInspect, ExecOptions, ExecSession, ListOptions, LogEntry, LogsOptions,
  MountPoint, NetworkMode, RemoveOptions, SnapshotCollector, StopOptions, WaitCondition, WaitOptions, WaitResult
} from './types.js'
export {
  CGROUP_PARENT, DEFAULT_RUNTIME, DEFAULT_STATE_ROOT, INIT_CANDIDATES, INIT_PATH, STOP_TIMEOUT_SEC, MAX_LOG_LINE
} from './constants.js'
