import type { Command } from 'commander'
import type { CommandContext } from '../context.js'
import { UsageError } from '../errors.js'
import {
  DEFAULT_CONFIG_PATHS, DEFAULT_CONTAINERD_CONFIG, DEFAULT_MIRROR_URL, MIRROR_CLIENTS, configureMirror, parseMirrorUrl,
  parseRegistry, undoMirror, type MirrorClient
} from '../mirror-config.js'

interface ConfigureFlags {
  undo?: boolean
  mirror?: string
  configPath?: string
  registry?: string[]
  containerdConfig?: string
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value]

export function registerMirror (program: Command, ctx: CommandContext): void {
  const mirror = program.command('mirror')
    .description("Set up container clients to pull through joeyd's registry mirror")
  mirror.command('configure')
    .description('Point containerd, podman or dockerd at the mirror (or, with --undo, restore their previous configuration)')
    .argument('[client]', `${MIRROR_CLIENTS.join(', ')}`)
    .option('--undo', 'restore the files this command changed and remove the ones it created')
    .option('--mirror <url>', `the mirror's URL (default: ${DEFAULT_MIRROR_URL})`)
    .option('--config-path <path>', `containerd: hosts directory (${DEFAULT_CONFIG_PATHS.containerd}); podman: drop-in file (${DEFAULT_CONFIG_PATHS.podman}); docker: daemon.json (${DEFAULT_CONFIG_PATHS.docker})`)
    .option('--registry <host>', 'a registry to mirror, host[:port] or http://host[:port] for a plain-HTTP one; repeatable (default: docker.io)', collect)
    .option('--containerd-config <file>', `containerd's config.toml, read to check config_path (default: ${DEFAULT_CONTAINERD_CONFIG})`)
    .action(async (client: string | undefined, flags: ConfigureFlags) => { await configure(ctx, client, flags) })
}

function parseClient (raw: string | undefined): MirrorClient {
  // Checked here rather than by commander so that every usage error is one line.
  if (raw === undefined) throw new UsageError('ERR_INVALID_ARGUMENT', `mirror configure: name the client to configure: ${MIRROR_CLIENTS.join(', ')}`)
  if (!(MIRROR_CLIENTS as readonly string[]).includes(raw)) {
    throw new UsageError('ERR_INVALID_ARGUMENT', `mirror configure: unknown client "${raw}": expected one of ${MIRROR_CLIENTS.join(', ')}`)
  }
  return raw as MirrorClient
}

async function configure (ctx: CommandContext, rawClient: string | undefined, flags: ConfigureFlags): Promise<void> {
  const client = parseClient(rawClient)
  // Parse everything before touching a file, so a typo changes nothing.
  const registries = (flags.registry ?? []).map(parseRegistry)
  if (flags.containerdConfig !== undefined && client !== 'containerd') throw new UsageError('ERR_INVALID_ARGUMENT', `--containerd-config applies to containerd only, not ${client}`)
  if (flags.configPath?.trim() === '') throw new UsageError('ERR_INVALID_ARGUMENT', '--config-path: expected a path, got an empty string')
  const warn = (w: string): void => { ctx.io.stderr.write(`joey: warning: ${w}\n`) }

  if (flags.undo === true) {
    const { undone } = await undoMirror({ client, registries, ...(flags.configPath !== undefined ? { configPath: flags.configPath } : {}) })
    if (undone.length === 0) ctx.out(`nothing to undo: joey mirror configure ${client} changed no file${flags.configPath !== undefined ? ` under ${flags.configPath}` : ''}\n`)
    for (const u of undone) ctx.out(u.action === 'restored' ? `restored ${u.path} from ${u.backup ?? ''}\n` : `removed ${u.path}\n`)
    if (client === 'docker' && undone.length > 0) warn('dockerd keeps its mirrors until it reloads: run `systemctl reload docker` or `systemctl restart docker`')
    return
  }

  const endpoint = parseMirrorUrl(flags.mirror ?? DEFAULT_MIRROR_URL)
  const result = await configureMirror({
    client,
    mirror: endpoint,
    registries,
    ...(flags.configPath !== undefined ? { configPath: flags.configPath } : {}),
    ...(flags.containerdConfig !== undefined ? { containerdConfig: flags.containerdConfig } : {})
  })
  for (const c of result.changes) {
    if (c.action === 'created') ctx.out(`created ${c.path}\n`)
    else if (c.action === 'updated') ctx.out(`updated ${c.path} (the version before joey's first change is kept in ${c.backup ?? ''})\n`)
    else ctx.out(`unchanged ${c.path}\n`)
  }
  for (const w of result.warnings) warn(w)
}
