import { endianness } from 'node:os'
import { JoeyError } from '../common/index.js'
import type { Descriptor, Index, Platform } from './types.js'

const KNOWN_OS = new Set(['linux', 'windows', 'darwin', 'freebsd', 'netbsd', 'openbsd', 'solaris', 'illumos', 'aix', 'android', 'ios', 'plan9', 'dragonfly', 'js', 'wasip1'])
const KNOWN_ARCH = new Set(['amd64', 'arm64', 'arm', '386', 'ppc64', 'ppc64le', 's390x', 'riscv64', 'mips', 'mipsle', 'mips64', 'mips64le', 'loong64', 'wasm'])
const COMPONENT_RE = /^[a-z0-9_.-]+$/

/** Normalises names the way containerd does, so "aarch64" and "arm64/v8" compare equal to "arm64". */
export function normalizePlatform (p: Platform): Platform {
  const os = p.os.toLowerCase() === 'macos' ? 'darwin' : p.os.toLowerCase()
  let architecture = p.architecture.toLowerCase()
  let variant = p.variant?.toLowerCase()
  switch (architecture) {
    case 'i386': case 'i686': case 'x86':
      architecture = '386'
      variant = undefined
      break
    case 'x86_64': case 'x86-64': case 'amd64':
      architecture = 'amd64'
      if (variant === 'v1') variant = undefined
      break
    case 'aarch64': case 'arm64':
      architecture = 'arm64'
      // v8 is what every arm64 machine runs, so it is the variant an index means by none.
      if (variant === undefined || variant === '' || variant === '8' || variant === 'v8' || variant === 'v8.0') variant = 'v8'
      break
    case 'armhf':
      architecture = 'arm'
      variant = 'v7'
      break
    case 'armel':
      architecture = 'arm'
      variant = 'v6'
      break
    case 'arm':
      if (variant === undefined || variant === '' || variant === '7') variant = 'v7'
      else if (/^[5-8]$/.test(variant)) variant = `v${variant}`
      break
  }
  const out: Platform = { os, architecture }
  if (variant !== undefined && variant !== '') out.variant = variant
  if (p['os.version'] !== undefined) out['os.version'] = p['os.version']
  if (p['os.features'] !== undefined) out['os.features'] = p['os.features']
  return out
}

/** Parses "os/arch[/variant]"; a lone os or arch is completed from the host, as containerd does. */
export function parsePlatform (spec: string): Platform {
  const parts = spec.trim().toLowerCase().split('/')
  const bad = (why: string): JoeyError => new JoeyError('ERR_INVALID_PLATFORM', `invalid platform "${spec}": ${why}`, { detail: { platform: spec } })
  if (parts.length > 3) throw bad('expected os/architecture[/variant]')
  for (const part of parts) {
    if (part.length === 0) throw bad('empty component')
    if (!COMPONENT_RE.test(part)) throw bad(`"${part}" contains characters other than a-z, 0-9, "_", "." and "-"`)
  }
  const host = defaultPlatform()
  if (parts.length === 1) {
    const only = parts[0]!
    if (KNOWN_OS.has(only)) return normalizePlatform({ os: only, architecture: host.architecture, ...(host.variant !== undefined ? { variant: host.variant } : {}) })
    const arch = normalizePlatform({ os: host.os, architecture: only })
    if (KNOWN_ARCH.has(arch.architecture)) return arch
    throw bad(`"${only}" is neither a known operating system nor a known architecture`)
  }
  const p: Platform = { os: parts[0]!, architecture: parts[1]! }
  if (parts[2] !== undefined) p.variant = parts[2]
  return normalizePlatform(p)
}

export function formatPlatform (p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant !== undefined && p.variant !== '' ? `/${p.variant}` : ''}`
}

/** The OCI platform of this process, e.g. linux/arm64/v8 on a 64-bit ARM host. */
export function defaultPlatform (): Platform {
  const osMap: Record<string, string> = { win32: 'windows', sunos: 'solaris' }
  const os = osMap[process.platform] ?? process.platform
  switch (process.arch) {
    case 'x64': return { os, architecture: 'amd64' }
    case 'arm64': return { os, architecture: 'arm64', variant: 'v8' }
    case 'arm': {
      const v = Number((process.config.variables as Record<string, unknown>).arm_version ?? 7)
      return { os, architecture: 'arm', variant: `v${Number.isInteger(v) && v >= 5 && v <= 8 ? v : 7}` }
    }
    case 'ia32': return { os, architecture: '386' }
    // Node says ppc64 and mips for both byte orders; OCI names the little-endian ones apart.
    case 'ppc64': return { os, architecture: endianness() === 'LE' ? 'ppc64le' : 'ppc64' }
    case 'mips': return { os, architecture: endianness() === 'LE' ? 'mipsle' : 'mips' }
    case 'mipsel': return { os, architecture: 'mipsle' }
    default: return { os, architecture: process.arch }
  }
}

/** Variants a platform can run, best first: an arm v7 host also runs v6 and v5 images. */
function compatibleVariants (p: Platform): Array<string | undefined> {
  if (p.architecture === 'arm') {
    const n = Number(p.variant?.slice(1) ?? 7)
    const out: string[] = []
    for (let v = n; v >= 5; v--) out.push(`v${v}`)
    return out
  }
  return [p.variant]
}

/**
 * Whether an image for `have` runs where `want` was asked for: same OS and architecture, and
 * a variant the wanted one can run (arm64 with no variant is v8; arm v7 also runs v6).
 */
export function platformMatches (want: Platform, have: Platform): boolean {
  return rank(normalizePlatform(want), normalizePlatform(have), want.variant === undefined) !== -1
}

/** -1 when `have` does not fit `want`, else a preference where lower is better. */
function rank (want: Platform, have: Platform, anyVariant: boolean): number {
  if (want.os !== have.os || want.architecture !== have.architecture) return -1
  if (want['os.version'] !== undefined && have['os.version'] !== undefined && want['os.version'] !== have['os.version']) return -1
  const variants = compatibleVariants(want)
  const i = variants.indexOf(have.variant)
  if (i !== -1) return i
  // A want without a variant takes any variant of its architecture, after the default one.
  return anyVariant ? variants.length : -1
}

/** Picks the index entry for `want`, preferring the closest variant; first listed wins ties. */
export function selectManifest (index: Index, want: Platform): Descriptor {
  const w = normalizePlatform(want)
  let best: Descriptor | undefined
  let bestRank = Infinity
  for (const desc of index.manifests) {
    if (desc.platform === undefined) continue
    const r = rank(w, normalizePlatform(desc.platform), want.variant === undefined)
    if (r !== -1 && r < bestRank) {
      best = desc
      bestRank = r
    }
  }
  if (best !== undefined) return best
  const available = index.manifests
    .filter(d => d.platform !== undefined && d.platform.os !== 'unknown')
    .map(d => formatPlatform(d.platform!))
  throw new JoeyError('ERR_NO_MATCHING_PLATFORM',
    `no image for platform ${formatPlatform(w)} in the index; available: ${available.length > 0 ? available.join(', ') : 'none'}`,
    { detail: { platform: formatPlatform(w), available } })
}
