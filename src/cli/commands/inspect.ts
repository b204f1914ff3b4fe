import type { Command } from 'commander'
import type { CommandContext } from '../context.js'
import { EXIT_FAILURE } from '../errors.js'
import { compileTemplate } from '../template.js'
import type { ImageInspect } from '../types.js'
import { isDaemonAnswer } from './rmi.js'

interface InspectOptions {
  format?: string
}

export function registerInspect (program: Command, ctx: CommandContext): void {
  program.command('inspect')
    .description('Show low-level information on images as JSON')
    .argument('<image...>', 'image names, IDs or name@digest')
    .option('-f, --format <format>', 'json (default) or a template such as {{.Id}} or {{json .Config}}')
    .action(async (names: string[], opts: InspectOptions) => { await inspect(ctx, names, opts) })
}

async function inspect (ctx: CommandContext, names: string[], opts: InspectOptions): Promise<void> {
  const format = opts.format ?? 'json'
  const template = format === 'json' ? undefined : compileTemplate(format)
  const client = ctx.client()
  const found: ImageInspect[] = []
  const failures: string[] = []
  for (const name of names) {
    try {
      found.push(await client.inspectImage(name, ctx.signal !== undefined ? { signal: ctx.signal } : {}))
    } catch (err) {
      if (!isDaemonAnswer(err)) throw err
      failures.push((err as Error).message)
    }
  }
  // docker prints what it found (an empty array if nothing) and the misses on stderr.
  if (template !== undefined) ctx.out(found.map(i => `${template(i)}\n`).join(''))
  else ctx.out(`${JSON.stringify(found, null, 4)}\n`)
  for (const message of failures) ctx.error(message)
  if (failures.length > 0) ctx.exitCode = EXIT_FAILURE
}
