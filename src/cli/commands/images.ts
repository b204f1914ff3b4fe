import type { Command } from 'commander'
import type { CommandContext } from '../context.js'
import { UsageError } from '../errors.js'
import { formatTable } from '../table.js'
import { compileTemplate } from '../template.js'
import type { ImageSummary } from '../types.js'
import { humanSize, timeAgo } from '../units.js'

interface ImagesOptions {
  all?: boolean
  quiet?: boolean
  digests?: boolean
  trunc: boolean
  format?: string
}

/** One line of `joey images`; the field names are docker's, so --format templates carry over. */
export interface ImageRow {
  ID: string
  Repository: string
  Tag: string
  Digest: string
  CreatedSince: string
  CreatedAt: string
  Size: string
}

export interface ImageRowOptions {
  /** One row per digest rather than one per tag (docker's --digests). */
  digests?: boolean
  noTrunc?: boolean
  nowMs?: number
}

const NONE = '<none>'

/** Image ID as docker shows it: 12 hex characters, or the full sha256:… with --no-trunc. */
export function displayId (id: string, noTrunc = false): string {
  if (noTrunc) return id
  const hex = id.startsWith('sha256:') ? id.slice('sha256:'.length) : id
  return hex.slice(0, 12)
}

/** repo:tag → [repo, tag]; the colon of a registry port is not a tag separator. */
function splitTag (repoTag: string): [string, string] | undefined {
  const colon = repoTag.lastIndexOf(':')
  if (colon <= repoTag.lastIndexOf('/')) return undefined
  return [repoTag.slice(0, colon), repoTag.slice(colon + 1)]
}

/** Expands summaries into rows the way docker does: one per tag, digest-only repos last. */
export function imageRows (images: ImageSummary[], options: ImageRowOptions = {}): ImageRow[] {
  const nowMs = options.nowMs ?? Date.now()
  const rows: ImageRow[] = []
  for (const image of images) {
    const repos = new Map<string, { tags: string[], digests: string[] }>()
    const entry = (repo: string): { tags: string[], digests: string[] } => {
      let e = repos.get(repo)
      if (e === undefined) repos.set(repo, e = { tags: [], digests: [] })
      return e
    }
    for (const rt of image.RepoTags ?? []) {
      const parts = splitTag(rt)
      if (parts === undefined || rt === `${NONE}:${NONE}`) continue
      entry(parts[0]).tags.push(parts[1])
    }
    for (const rd of image.RepoDigests ?? []) {
      const at = rd.indexOf('@')
      if (at <= 0 || rd === `${NONE}@${NONE}`) continue
      entry(rd.slice(0, at)).digests.push(rd.slice(at + 1))
    }
    const base = {
      ID: displayId(image.Id, options.noTrunc),
      CreatedSince: timeAgo(image.Created, nowMs),
      CreatedAt: image.Created > 0 ? new Date(image.Created * 1000).toISOString() : '',
      Size: humanSize(image.Size, 3)
    }
    if (repos.size === 0) {
      rows.push({ ...base, Repository: NONE, Tag: NONE, Digest: NONE })
      continue
    }
    const perDigest = options.digests === true
    for (const [repo, { tags, digests }] of repos) {
      for (const tag of tags.length > 0 ? tags : [NONE]) {
        if (!perDigest || digests.length === 0) {
          rows.push({ ...base, Repository: repo, Tag: tag, Digest: digests[0] ?? NONE })
          continue
        }
        for (const digest of digests) rows.push({ ...base, Repository: repo, Tag: tag, Digest: digest })
      }
    }
  }
  return rows
}

/** The default table: REPOSITORY TAG [DIGEST] IMAGE ID CREATED SIZE. */
export function formatImagesTable (rows: ImageRow[], options: { digests?: boolean } = {}): string {
  const digests = options.digests === true
  const header = ['REPOSITORY', 'TAG', ...(digests ? ['DIGEST'] : []), 'IMAGE ID', 'CREATED', 'SIZE']
  const body = rows.map(r => [r.Repository, r.Tag, ...(digests ? [r.Digest] : []), r.ID, r.CreatedSince, r.Size])
  return formatTable([header, ...body])
}

export function registerImages (program: Command, ctx: CommandContext): void {
  program.command('images')
    .description('List images held by joeyd')
    .option('-a, --all', 'show all images, including intermediate ones')
    .option('-q, --quiet', 'only show image IDs')
    .option('--digests', 'show digests')
    .option('--no-trunc', "don't truncate output")
    .option('--format <format>', 'table (default), json (the API objects), or a template such as {{.Repository}}:{{.Tag}}')
    .action(async (opts: ImagesOptions) => { await images(ctx, opts) })
}

async function images (ctx: CommandContext, opts: ImagesOptions): Promise<void> {
  const format = opts.format ?? 'table'
  // Validate before talking to the daemon so a typo fails fast with a usage error.
  const template = format === 'table' || format === 'json' ? undefined : compileFormat(format)
  const list = await ctx.client().listImages({
    ...(opts.all === true ? { all: true } : {}),
    ...(opts.digests === true ? { digests: true } : {}),
    ...(ctx.signal !== undefined ? { signal: ctx.signal } : {})
  })
  if (opts.quiet === true) {
    const ids = [...new Set(list.map(i => displayId(i.Id, !opts.trunc)))]
    ctx.out(ids.map(id => `${id}\n`).join(''))
    return
  }
  if (format === 'json') {
    ctx.out(`${JSON.stringify(list, null, 4)}\n`)
    return
  }
  const rows = imageRows(list, { digests: opts.digests === true, noTrunc: !opts.trunc, nowMs: ctx.now() })
  if (template !== undefined) {
    ctx.out(rows.map(r => `${template(r)}\n`).join(''))
    return
  }
  ctx.out(formatImagesTable(rows, { digests: opts.digests === true }))
}

function compileFormat (format: string): (value: unknown) => string {
  if (!format.includes('{{')) {
    throw new UsageError('ERR_INVALID_ARGUMENT', `invalid --format "${format}": use table, json or a template such as {{.ID}}`)
  }
  return compileTemplate(format)
}
