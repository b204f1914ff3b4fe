import type { Command } from 'commander'
import type { CommandContext } from '../context.js'

export function registerTag (program: Command, ctx: CommandContext): void {
  program.command('tag')
    .description('Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE')
    .argument('<source>', 'SOURCE_IMAGE[:TAG], an image name or ID')
    .argument('<target>', 'TARGET_IMAGE[:TAG]')
    .action(async (source: string, target: string) => {
      await ctx.client().tagImage(source, target, ctx.signal !== undefined ? { signal: ctx.signal } : {})
    })
}
