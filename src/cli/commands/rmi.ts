import type { Command } from 'commander'
import { isJoeyError } from '../../common/index.js'
import type { CommandContext } from '../context.js'
import { EXIT_FAILURE } from '../errors.js'

interface RmiOptions {
  force?: boolean
  prune: boolean
}

/** Whether the daemon answered with this error (so other names may still succeed). */
export function isDaemonAnswer (err: unknown): boolean {
  return isJoeyError(err) && err.detail?.fromDaemon === true
}

export function registerRmi (program: Command, ctx: CommandContext): void {
  program.command('rmi')
    .description('Remove one or more images')
    .argument('<image...>', 'image names, IDs or name@digest')
    .option('-f, --force', 'force removal of the image')
    .option('--no-prune', 'do not delete untagged parents')
    .action(async (names: string[], opts: RmiOptions) => { await rmi(ctx, names, opts) })
}

async function rmi (ctx: CommandContext, names: string[], opts: RmiOptions): Promise<void> {
  const client = ctx.client()
  for (const name of names) {
    try {
      const items = await client.removeImage(name, {
        ...(opts.force === true ? { force: true } : {}),
        ...(!opts.prune ? { noPrune: true } : {}),
        ...(ctx.signal !== undefined ? { signal: ctx.signal } : {})
      })
      for (const item of items) {
        if (item.Untagged !== undefined) ctx.out(`Untagged: ${item.Untagged}\n`)
        if (item.Deleted !== undefined) ctx.out(`Deleted: ${item.Deleted}\n`)
      }
    } catch (err) {
      // Like docker, one missing image does not stop the others; an unreachable daemon does.
      if (!isDaemonAnswer(err)) throw err
      ctx.error((err as Error).message)
      ctx.exitCode = EXIT_FAILURE
    }
  }
}
