import type { Command } from 'commander'
import type { CommandContext } from '../context.js'
import { ProgressRenderer } from '../progress.js'
import { pullTarget } from '../reference.js'

interface PullOptions {
  platform?: string
  quiet?: boolean
}

export function registerPull (program: Command, ctx: CommandContext): void {
  program.command('pull')
    .description('Download an image from a registry through joeyd')
    .argument('<image>', 'image reference: NAME[:TAG|@DIGEST], e.g. busybox or registry:5000/app:1.0')
    .option('--platform <platform>', "os/arch[/variant] to pull (default: the daemon's platform)")
    .option('-q, --quiet', 'print only the image reference once pulled')
    .action(async (image: string, opts: PullOptions) => { await pull(ctx, image, opts) })
}

async function pull (ctx: CommandContext, image: string, opts: PullOptions): Promise<void> {
  const target = pullTarget(image)
  const quiet = opts.quiet === true
  if (target.defaultedTag && !quiet) ctx.out(`Using default tag: ${target.tag}\n`)
  const renderer = quiet ? undefined : new ProgressRenderer(ctx.io.stdout, { now: ctx.now })
  const params = {
    fromImage: target.fromImage,
    tag: target.tag,
    ...(opts.platform !== undefined ? { platform: opts.platform } : {})
  }
  const stream = ctx.client().pullImage(params, ctx.signal !== undefined ? { signal: ctx.signal } : {})
  for await (const msg of stream) renderer?.render(msg)
  ctx.out(`${target.full}\n`)
}
