import type { Command } from 'commander'
import { isJoeyError } from '../../common/index.js'
import type { CommandContext } from '../context.js'
import { EXIT_FAILURE } from '../errors.js'
import { UsageError } from '../errors.js'
import { compileTemplate } from '../template.js'
import { containerClient } from './containers.js'
import { isDaemonAnswer } from './rmi.js'

interface InspectOptions {
  format?: string
  type?: string
}

export function registerInspect (program: Command, ctx: CommandContext): void {
  program.command('inspect')
    .description('Show low-level information on images or containers as JSON')
    .argument('<name...>', 'image names, IDs or name@digest; container names or IDs')
    .option('-f, --format <format>', 'json (default) or a template such as {{.Id}} or {{json .Config}}')
    .option('--type <type>', 'only look for an image or a container (default: an image, then a container)')
    .action(async (names: string[], opts: InspectOptions) => { await inspect(ctx, names, opts) })
}

async function inspect (ctx: CommandContext, names: string[], opts: InspectOptions): Promise<void> {
  const format = opts.format ?? 'json'
  const template = format === 'json' ? undefined : compileTemplate(format)
  const type = opts.type
  if (type !== undefined && type !== 'image' && type !== 'container') {
    throw new UsageError('ERR_INVALID_ARGUMENT', `invalid --type "${type}": use image or container`)
  }
  const client = ctx.client()
  const containers = type === 'image' ? undefined : containerClient(ctx)
  const signal = ctx.signal !== undefined ? { signal: ctx.signal } : {}
  const found: unknown[] = []
  const failures: string[] = []
  try {
    for (const name of names) {
      try {
        found.push(await inspectOne(name))
      } catch (err) {
        if (!isDaemonAnswer(err)) throw err
        failures.push((err as Error).message)
      }
    }
  } finally {
    await containers?.close().catch(() => {})
  }

  async function inspectOne (name: string): Promise<unknown> {
    if (containers === undefined) return await client.inspectImage(name, signal)
    if (type === 'container') return await containers.inspect(name, signal)
    try {
      return await client.inspectImage(name, signal)
    } catch (err) {
      // Like docker: a name that is no image may still be a container.
      if (!isJoeyError(err, 'ERR_NOT_FOUND')) throw err
      try {
        return await containers.inspect(name, signal)
      } catch (cerr) {
        // Neither (or a daemon without containers, 501): the image miss is the clearer message.
        throw isDaemonAnswer(cerr) ? err : cerr
      }
    }
  }
  // docker prints what it found (an empty array if nothing) and the misses on stderr.
  if (template !== undefined) ctx.out(found.map(i => `${template(i)}\n`).join(''))
  else ctx.out(`${JSON.stringify(found, null, 4)}\n`)
  for (const message of failures) ctx.error(message)
  if (failures.length > 0) ctx.exitCode = EXIT_FAILURE
}
