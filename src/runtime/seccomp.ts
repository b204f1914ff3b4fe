/**
 * A deny-list seccomp profile covering what docker's default profile refuses to containers
 * without extra capabilities: new namespaces (above all user namespaces, which an
 * unprivileged process can otherwise create and use to reach kernel code meant for root),
 * keyrings, kernel modules, bpf, perf, mounts, clocks, swap and reboot. Everything else is
 * allowed, so images keep working; docker's allow-list is stricter but ~400 entries long.
 */
const DENIED = [
  'acct', 'add_key', 'bpf', 'clock_adjtime', 'clock_settime', 'create_module', 'delete_module', 'finit_module',
  'fsconfig', 'fsmount', 'fsopen', 'fspick', 'get_kernel_syms', 'init_module', 'ioperm', 'iopl', 'kcmp',
  'kexec_file_load', 'kexec_load', 'keyctl', 'lookup_dcookie', 'mount', 'mount_setattr', 'move_mount',
  'name_to_handle_at', 'nfsservctl', 'open_by_handle_at', 'open_tree', 'perf_event_open', 'pivot_root',
  'query_module', 'quotactl', 'quotactl_fd', 'reboot', 'request_key', 'setns', 'settimeofday', 'stime', 'swapoff',
  'swapon', 'sysfs', '_sysctl', 'umount', 'umount2', 'unshare', 'uselib', 'userfaultfd', 'ustat', 'vm86', 'vm86old'
]

/** CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET: clone() may not create namespaces. */
const CLONE_NAMESPACE_FLAGS = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000]

const EPERM = 1
const ENOSYS = 38

function architectures (arch: string): string[] | undefined {
  // Listing the compat ABIs makes their syscalls go through the same filter instead of around it.
  switch (arch) {
    case 'x64': return ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']
    case 'arm64': return ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']
    default: return undefined
  }
}

export function defaultSeccompProfile (arch: string = process.arch): Record<string, unknown> {
  const archs = architectures(arch)
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    ...(archs !== undefined ? { architectures: archs } : {}),
    syscalls: [
      { names: DENIED, action: 'SCMP_ACT_ERRNO', errnoRet: EPERM },
      // One rule per flag: seccomp ANDs the conditions of a rule and ORs the rules.
      ...CLONE_NAMESPACE_FLAGS.map(flag => ({
        names: ['clone'],
        action: 'SCMP_ACT_ERRNO',
        errnoRet: EPERM,
        args: [{ index: 0, value: flag, valueTwo: flag, op: 'SCMP_CMP_MASKED_EQ' }]
      })),
      // clone3 passes its flags in memory a filter cannot read; ENOSYS makes libcs fall back to clone.
      { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS }
    ]
  }
}
