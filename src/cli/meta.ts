import pkg from '../../package.json' with { type: 'json' }

export const CLIENT_NAME = 'joey'
export const CLIENT_VERSION: string = pkg.version

/** Go's GOARCH names, which image platforms and docker's version output use. */
export function goArch (arch: string = process.arch): string {
  switch (arch) {
    case 'x64': return 'amd64'
    case 'ia32': return '386'
    case 'ppc64': return 'ppc64le'
    default: return arch
  }
}
