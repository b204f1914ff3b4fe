import type { Command } from 'commander'
import type { CommandContext } from '../context.js'
import { CLIENT_VERSION, goArch } from '../meta.js'
import { compileTemplate } from '../template.js'
import type { ServerVersion } from '../types.js'

interface VersionOptions {
  format?: string
}

export interface ClientVersion {
  Version: string
  NodeVersion: string
  Os: string
  Arch: string
}

export interface VersionInfo {
  Client: ClientVersion
  /** null when joeyd could not be reached. */
  Server: ServerVersion | null
}

/** Keys end at column 20, as in docker's version output. */
const VALUE_COLUMN = 20

function kv (indent: string, key: string, value: string): string {
  const label = `${indent}${key}:`
  return `${label.padEnd(Math.max(VALUE_COLUMN, label.length + 1))}${value}\n`
}

export function clientVersion (): ClientVersion {
  return { Version: CLIENT_VERSION, NodeVersion: process.version, Os: process.platform, Arch: goArch() }
}

/** docker-style text: a Client section and, when reachable, a Server section. */
export function formatVersion (info: VersionInfo): string {
  const c = info.Client
  let out = 'Client:\n'
  out += kv(' ', 'Version', c.Version)
  out += kv(' ', 'Node.js version', c.NodeVersion)
  out += kv(' ', 'OS/Arch', `${c.Os}/${c.Arch}`)
  const s = info.Server
  if (s === null) return out
  out += `\nServer:${s.Platform?.Name !== undefined && s.Platform.Name !== '' ? ` ${s.Platform.Name}` : ''}\n`
  out += ' Engine:\n'
  out += kv('  ', 'Version', s.Version)
  out += kv('  ', 'API version', `${s.ApiVersion}${s.MinAPIVersion !== undefined ? ` (minimum version ${s.MinAPIVersion})` : ''}`)
  const optional: Array<[string, unknown]> = [
    ['Node.js version', s.NodeVersion],
    ['Go version', s.GoVersion],
    ['Git commit', s.GitCommit],
    ['Built', s.BuildTime],
    ['OS/Arch', s.Os !== undefined && s.Arch !== undefined ? `${s.Os}/${s.Arch}` : undefined],
    ['Kernel version', s.KernelVersion],
    ['Experimental', s.Experimental]
  ]
  for (const [key, value] of optional) if (value !== undefined && value !== '') out += kv('  ', key, String(value))
  for (const component of s.Components ?? []) {
    if (component.Name === 'Engine') continue
    out += ` ${component.Name}:\n`
    out += kv('  ', 'Version', component.Version)
    for (const [key, value] of Object.entries(component.Details ?? {})) out += kv('  ', key, typeof value === 'string' ? value : JSON.stringify(value))
  }
  return out
}

export function registerVersion (program: Command, ctx: CommandContext): void {
  program.command('version')
    .description('Show the joey client and joeyd server versions')
    .option('-f, --format <format>', 'json or a template such as {{.Server.Version}}')
    .action(async (opts: VersionOptions) => { await version(ctx, opts) })
}

async function version (ctx: CommandContext, opts: VersionOptions): Promise<void> {
  const template = opts.format === undefined || opts.format === 'json' ? undefined : compileTemplate(opts.format)
  const info: VersionInfo = { Client: clientVersion(), Server: null }
  let failure: unknown
  try {
    info.Server = await ctx.client().version(ctx.signal !== undefined ? { signal: ctx.signal } : {})
  } catch (err) {
    failure = err
  }
  if (opts.format === 'json') ctx.out(`${JSON.stringify(info)}\n`)
  else if (template !== undefined) ctx.out(`${template(info)}\n`)
  else ctx.out(formatVersion(info))
  // The client half is still useful when joeyd is down; the error follows it, and exits 1.
  if (failure !== undefined) throw failure
}
