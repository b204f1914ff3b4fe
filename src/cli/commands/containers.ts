import { StringDecoder } from 'node:string_decoder'
import type { Command } from 'commander'
import { JoeyError, isJoeyError } from '../../common/index.js'
import { ContainerClient, type ContainerCreateBody, type ContainerSummary } from '../containers-client.js'
import type { CommandContext } from '../context.js'
import { EXIT_FAILURE, UsageError } from '../errors.js'
import { ProgressRenderer } from '../progress.js'
import { pullTarget } from '../reference.js'
import { formatTable } from '../table.js'
import { compileTemplate } from '../template.js'
import { timeAgo } from '../units.js'
import { isDaemonAnswer } from './rmi.js'

// ---------------------------------------------------------------------------------------
// Flag parsing: pure, so bad input is refused before the daemon is asked.

function usage (message: string): UsageError {
  return new UsageError('ERR_INVALID_ARGUMENT', message)
}

/**
 * -e values as docker reads them: K=V is passed as is; a bare K takes the value from the
 * client's environment and is dropped when unset there.
 */
export function parseEnvFlags (values: string[], env: Record<string, string | undefined> = {}): string[] {
  const out: string[] = []
  for (const v of values) {
    const eq = v.indexOf('=')
    const key = eq < 0 ? v : v.slice(0, eq)
    if (key === '' || /\s/.test(key)) throw usage(`invalid environment variable "${v}": expected KEY=VALUE`)
    if (eq >= 0) {
      out.push(v)
      continue
    }
    const fromClient = env[key]
    if (fromClient !== undefined) out.push(`${key}=${fromClient}`)
  }
  return out
}

/** -v host:container[:ro|rw]; only bind mounts of absolute host paths (joeyd has no named volumes). */
export function parseVolume (spec: string): string {
  const parts = spec.split(':')
  if (parts.length < 2 || parts.length > 3) throw usage(`invalid volume "${spec}": expected /host/path:/container/path[:ro]`)
  const [host = '', container = '', mode] = parts
  if (!host.startsWith('/')) throw usage(`invalid volume "${spec}": the host path must be absolute (named volumes are not supported)`)
  if (!container.startsWith('/')) throw usage(`invalid volume "${spec}": the container path must be absolute`)
  if (mode !== undefined && mode !== 'ro' && mode !== 'rw') throw usage(`invalid volume "${spec}": mode must be ro or rw, not "${mode}"`)
  return spec
}

const MEMORY_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }

/** docker's RAMInBytes: a number with an optional binary unit (b, k, m, g, t; kb, mb… too). */
export function parseMemory (text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)b?$/i.exec(text.trim())
  const unit = MEMORY_UNITS[(m?.[2] ?? '').toLowerCase()]
  if (m === null || unit === undefined) throw usage(`invalid memory size "${text}": expected bytes or a size such as 512m or 1.5g`)
  const bytes = Math.floor(Number(m[1]) * unit)
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw usage(`invalid memory size "${text}": must be more than 0 bytes`)
  return bytes
}

/** --cpus as NanoCpus, as docker sends it. */
export function parseCpus (text: string): number {
  if (!/^\d+(?:\.\d+)?$/.test(text.trim())) throw usage(`invalid --cpus "${text}": expected a number such as 1.5`)
  const nano = Math.round(Number(text) * 1e9)
  if (nano <= 0) throw usage(`invalid --cpus "${text}": must be more than 0`)
  return nano
}

/** --pids-limit: a positive count, or -1 for no limit. */
export function parsePidsLimit (text: string): number {
  if (!/^-?\d+$/.test(text.trim())) throw usage(`invalid --pids-limit "${text}": expected an integer`)
  const n = Number(text)
  if (n === 0 || n < -1 || !Number.isSafeInteger(n)) throw usage(`invalid --pids-limit "${text}": use a positive count or -1 for no limit`)
  return n
}

export function parseNetwork (text: string): 'none' | 'host' | 'default' {
  if (text === 'none' || text === 'host' || text === 'default') return text
  throw usage(`network mode "${text}" is not supported by joeyd: use none or host`)
}

/** --tail for logs: a count or "all". */
export function parseTail (text: string): string {
  if (text === 'all' || /^\d+$/.test(text)) return text
  throw usage(`invalid --tail "${text}": expected a number of lines or all`)
}

/** -t for stop: seconds, -1 waiting for ever as in docker. */
export function parseStopTimeout (text: string): number {
  if (!/^-?\d+$/.test(text) || Number(text) < -1) throw usage(`invalid --time "${text}": expected seconds`)
  return Number(text)
}

export interface RunOptions {
  detach?: boolean
  rm?: boolean
  env: string[]
  volume: string[]
  workdir?: string
  user?: string
  name?: string
  memory?: string
  cpus?: string
  pidsLimit?: string
  network?: string
  readOnly?: boolean
}

/** The create body for `run`, validating every flag. */
export function createBody (image: string, cmd: string[], opts: RunOptions, env: Record<string, string | undefined> = {}): ContainerCreateBody {
  if (image.trim() === '') throw usage('an image is required')
  if (opts.name !== undefined && !/^\/?[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(opts.name)) {
    throw usage(`invalid container name "${opts.name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`)
  }
  const body: ContainerCreateBody = { Image: image }
  if (cmd.length > 0) body.Cmd = cmd
  const vars = parseEnvFlags(opts.env, env)
  if (vars.length > 0) body.Env = vars
  if (opts.workdir !== undefined) {
    if (!opts.workdir.startsWith('/')) throw usage(`invalid working directory "${opts.workdir}": must be absolute`)
    body.WorkingDir = opts.workdir
  }
  if (opts.user !== undefined && opts.user !== '') body.User = opts.user
  if (opts.detach !== true) {
    body.AttachStdout = true
    body.AttachStderr = true
  }
  const hc: NonNullable<ContainerCreateBody['HostConfig']> = {}
  const binds = opts.volume.map(parseVolume)
  if (binds.length > 0) hc.Binds = binds
  if (opts.memory !== undefined) hc.Memory = parseMemory(opts.memory)
  if (opts.cpus !== undefined) hc.NanoCpus = parseCpus(opts.cpus)
  if (opts.pidsLimit !== undefined) hc.PidsLimit = parsePidsLimit(opts.pidsLimit)
  if (opts.network !== undefined) hc.NetworkMode = parseNetwork(opts.network)
  if (opts.readOnly === true) hc.ReadonlyRootfs = true
  // A detached --rm is the daemon's job; a foreground one removes after reading the exit.
  if (opts.rm === true && opts.detach === true) hc.AutoRemove = true
  if (Object.keys(hc).length > 0) body.HostConfig = hc
  return body
}

// ---------------------------------------------------------------------------------------
// The multiplexed stream.

export interface Frame { stream: 'stdout' | 'stderr', data: Buffer }

/** Splits docker's multiplexed stream (8-byte headers) into frames, across chunk boundaries. */
export async function * demultiplex (source: AsyncIterable<Buffer | Uint8Array>): AsyncGenerator<Frame> {
  let buf: Buffer = Buffer.alloc(0)
  let offset = 0
  for await (const chunk of source) {
    buf = buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([buf, chunk])
    let off = 0
    while (buf.length - off >= 8) {
      const type = buf[off]
      if ((type !== 1 && type !== 2) || buf[off + 1] !== 0 || buf[off + 2] !== 0 || buf[off + 3] !== 0) {
        throw new JoeyError('ERR_PROTOCOL', `invalid multiplexed stream header at byte ${offset + off}`)
      }
      const len = buf.readUInt32BE(off + 4)
      if (buf.length - off - 8 < len) break
      yield { stream: type === 1 ? 'stdout' : 'stderr', data: buf.subarray(off + 8, off + 8 + len) }
      off += 8 + len
    }
    offset += off
    buf = buf.subarray(off)
  }
  if (buf.length > 0) throw new JoeyError('ERR_TRUNCATED', `multiplexed stream ended inside a frame (${buf.length} bytes left over)`)
}

/** Copies a multiplexed stream to the process's stdout and stderr. */
export async function copyFrames (ctx: CommandContext, source: AsyncIterable<Buffer>): Promise<void> {
  const decoders = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') }
  for await (const f of demultiplex(source)) {
    const text = decoders[f.stream].write(f.data)
    if (text === '') continue
    if (f.stream === 'stdout') ctx.io.stdout.write(text)
    else ctx.io.stderr.write(text)
  }
  const outRest = decoders.stdout.end()
  if (outRest !== '') ctx.io.stdout.write(outRest)
  const errRest = decoders.stderr.end()
  if (errRest !== '') ctx.io.stderr.write(errRest)
}

// ---------------------------------------------------------------------------------------
// ps rows.

/** One line of `joey ps`, with docker's field names so --format templates carry over. */
export interface ContainerRow {
  ID: string
  Image: string
  Command: string
  CreatedAt: string
  RunningFor: string
  Ports: string
  State: string
  Status: string
  Names: string
  Labels: string
}

const COMMAND_WIDTH = 20

function ellipsis (s: string, width: number): string {
  const chars = [...s]
  return chars.length <= width ? s : `${chars.slice(0, width - 1).join('')}…`
}

function shortContainerId (id: string, noTrunc: boolean): string {
  const hex = id.startsWith('sha256:') ? id.slice('sha256:'.length) : id
  return noTrunc ? id : hex.slice(0, 12)
}

function portsText (ports: ContainerSummary['Ports']): string {
  return (ports ?? []).map(p => {
    const target = `${p.PrivatePort ?? ''}/${p.Type ?? 'tcp'}`
    return p.PublicPort !== undefined ? `${p.IP ?? '0.0.0.0'}:${p.PublicPort}->${target}` : target
  }).join(', ')
}

export function containerRows (list: ContainerSummary[], options: { noTrunc?: boolean, nowMs?: number } = {}): ContainerRow[] {
  const noTrunc = options.noTrunc === true
  const nowMs = options.nowMs ?? Date.now()
  return list.map(c => {
    const image = c.Image ?? ''
    const created = c.Created ?? 0
    // docker leaves out link names (/other/alias): only a container's own names have one slash.
    const names = (c.Names ?? []).filter(n => n.lastIndexOf('/') <= 0).map(n => n.replace(/^\//, ''))
    const command = c.Command ?? ''
    return {
      ID: shortContainerId(c.Id, noTrunc),
      Image: !noTrunc && image.startsWith('sha256:') ? shortContainerId(image, false) : image,
      Command: JSON.stringify(noTrunc ? command : ellipsis(command, COMMAND_WIDTH)),
      CreatedAt: created > 0 ? new Date(created * 1000).toISOString() : '',
      RunningFor: timeAgo(created, nowMs),
      Ports: portsText(c.Ports),
      State: c.State ?? '',
      Status: c.Status ?? '',
      Names: names.join(','),
      Labels: Object.entries(c.Labels ?? {}).map(([k, v]) => `${k}=${v}`).join(',')
    }
  })
}

export function formatPsTable (rows: ContainerRow[]): string {
  const header = ['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'PORTS', 'NAMES']
  return formatTable([header, ...rows.map(r => [r.ID, r.Image, r.Command, r.RunningFor, r.Status, r.Ports, r.Names])])
}

// ---------------------------------------------------------------------------------------
// Commands.

function collect (value: string, previous: string[]): string[] {
  return [...previous, value]
}

function signalOpt (ctx: CommandContext): { signal?: AbortSignal } {
  return ctx.signal !== undefined ? { signal: ctx.signal } : {}
}

/** A container client on the same daemon as ctx.client(), closed by the caller. */
export function containerClient (ctx: CommandContext): ContainerClient {
  const engine = ctx.client()
  return new ContainerClient({ host: engine.host, logger: ctx.logger() })
}

async function withClient (ctx: CommandContext, fn: (c: ContainerClient) => Promise<void>): Promise<void> {
  const client = containerClient(ctx)
  try {
    await fn(client)
  } finally {
    await client.close().catch(() => {})
  }
}

export function registerContainers (program: Command, ctx: CommandContext): void {
  // Flags after the image belong to the container's command (`run busybox sh -c …`), as in
  // docker; that needs positional options, so global options go before the subcommand.
  program.enablePositionalOptions()

  program.command('run')
    .description('Create and start a container from an image')
    .argument('<image>', 'image reference, pulled when joeyd does not have it')
    .argument('[command...]', 'command and arguments (default: the image\'s)')
    .passThroughOptions()
    .option('-d, --detach', 'run in the background and print the container ID')
    .option('--rm', 'remove the container when it exits')
    .option('-e, --env <KEY=VALUE>', 'set an environment variable (repeatable)', collect, [])
    .option('-v, --volume <host:container[:ro]>', 'bind mount a host path (repeatable)', collect, [])
    .option('-w, --workdir <dir>', 'working directory inside the container')
    .option('-u, --user <user>', 'user[:group] to run as')
    .option('--name <name>', 'name the container')
    .option('-m, --memory <bytes>', 'memory limit: bytes or 512m, 1g')
    .option('--cpus <n>', 'number of CPUs, e.g. 1.5')
    .option('--pids-limit <n>', 'process limit (-1 for none)')
    .option('--network <mode>', 'none or host')
    .option('--read-only', 'mount the root filesystem read-only')
    .action(async (image: string, cmd: string[], opts: RunOptions) => { await run(ctx, image, cmd, opts) })

  program.command('ps')
    .description('List containers')
    .option('-a, --all', 'show all containers (default: only running ones)')
    .option('-q, --quiet', 'only show container IDs')
    .option('--no-trunc', "don't truncate output")
    .option('--format <format>', 'table (default), json (one object per line) or a template such as {{.Names}}')
    .action(async (opts: { all?: boolean, quiet?: boolean, trunc: boolean, format?: string }) => { await ps(ctx, opts) })

  program.command('logs')
    .description('Print the output of a container')
    .argument('<container>', 'container name or ID')
    .option('-f, --follow', 'keep printing output while the container runs')
    .option('-n, --tail <n>', 'only the last N lines (or all)', parseTail)
    .option('-t, --timestamps', 'prefix every line with its time')
    .action(async (container: string, opts: { follow?: boolean, tail?: string, timestamps?: boolean }) => {
      await withClient(ctx, async (c) => {
        const body = await c.logs(container, {
          ...(opts.follow === true ? { follow: true } : {}),
          ...(opts.tail !== undefined ? { tail: opts.tail } : {}),
          ...(opts.timestamps === true ? { timestamps: true } : {}),
          ...signalOpt(ctx)
        })
        await copyFrames(ctx, body)
      })
    })

  program.command('stop')
    .description('Stop one or more running containers')
    .argument('<container...>', 'container names or IDs')
    .option('-t, --time <seconds>', 'seconds to wait before killing the container', parseStopTimeout)
    .action(async (names: string[], opts: { time?: number }) => {
      await eachContainer(ctx, names, async (c, name) => { await c.stop(name, opts.time, signalOpt(ctx)) })
    })

  program.command('rm')
    .description('Remove one or more containers')
    .argument('<container...>', 'container names or IDs')
    .option('-f, --force', 'kill and remove a running container')
    .action(async (names: string[], opts: { force?: boolean }) => {
      await eachContainer(ctx, names, async (c, name) => { await c.remove(name, opts.force === true, signalOpt(ctx)) })
    })

  program.command('exec')
    .description('Run a command in a running container')
    .argument('<container>', 'container name or ID')
    .argument('<command...>', 'command and arguments')
    .passThroughOptions()
    .option('-d, --detach', 'run the command in the background')
    .option('-e, --env <KEY=VALUE>', 'set an environment variable (repeatable)', collect, [])
    .option('-w, --workdir <dir>', 'working directory inside the container')
    .option('-u, --user <user>', 'user[:group] to run as')
    .action(async (container: string, cmd: string[], opts: { detach?: boolean, env: string[], workdir?: string, user?: string }) => {
      await exec(ctx, container, cmd, opts)
    })
}

/** stop and rm: like docker, print each name done, report misses and carry on. */
async function eachContainer (ctx: CommandContext, names: string[], fn: (c: ContainerClient, name: string) => Promise<void>): Promise<void> {
  await withClient(ctx, async (c) => {
    for (const name of names) {
      try {
        await fn(c, name)
        ctx.out(`${name}\n`)
      } catch (err) {
        if (!isDaemonAnswer(err)) throw err
        ctx.error((err as Error).message)
        ctx.exitCode = EXIT_FAILURE
      }
    }
  })
}

async function ps (ctx: CommandContext, opts: { all?: boolean, quiet?: boolean, trunc: boolean, format?: string }): Promise<void> {
  const format = opts.format ?? 'table'
  let template: ((v: unknown) => string) | undefined
  if (format !== 'table' && format !== 'json') {
    if (!format.includes('{{')) throw usage(`invalid --format "${format}": use table, json or a template such as {{.ID}}`)
    template = compileTemplate(format)
  }
  await withClient(ctx, async (c) => {
    const list = await c.list(opts.all === true, signalOpt(ctx))
    const rows = containerRows(list, { noTrunc: !opts.trunc, nowMs: ctx.now() })
    if (opts.quiet === true) ctx.out(rows.map(r => `${r.ID}\n`).join(''))
    else if (format === 'json') ctx.out(rows.map(r => `${JSON.stringify(r)}\n`).join(''))
    else if (template !== undefined) ctx.out(rows.map(r => `${template(r)}\n`).join(''))
    else ctx.out(formatPsTable(rows))
  })
}

/** docker's answer to a create for a missing image (404 No such image: …). */
function isMissingImage (err: unknown): boolean {
  return isJoeyError(err, 'ERR_NOT_FOUND') && /no such image/i.test(err.message)
}

async function createPulling (ctx: CommandContext, c: ContainerClient, image: string, body: ContainerCreateBody, name: string | undefined): Promise<string> {
  try {
    return (await c.create(body, name, signalOpt(ctx))).Id
  } catch (err) {
    if (!isMissingImage(err)) throw err
  }
  // As docker does: the pull's progress goes to stderr so stdout stays the container's.
  const target = pullTarget(image)
  ctx.io.stderr.write(`Unable to find image '${image}' locally\n`)
  const renderer = new ProgressRenderer(ctx.io.stderr, { now: ctx.now })
  for await (const msg of ctx.client().pullImage({ fromImage: target.fromImage, tag: target.tag }, signalOpt(ctx))) renderer.render(msg)
  return (await c.create(body, name, signalOpt(ctx))).Id
}

async function run (ctx: CommandContext, image: string, cmd: string[], opts: RunOptions): Promise<void> {
  const body = createBody(image, cmd, opts, ctx.io.env)
  // Reject a bad reference before creating anything.
  pullTarget(image)
  await withClient(ctx, async (c) => {
    const id = await createPulling(ctx, c, image, body, opts.name)
    if (opts.detach === true) {
      await c.start(id, signalOpt(ctx))
      ctx.out(`${id}\n`)
      return
    }
    try {
      // The wait is registered before the start so a quick exit cannot be missed.
      const { result } = await c.wait(id, 'next-exit', signalOpt(ctx))
      await c.start(id, signalOpt(ctx))
      // The log follows until the container exits and starts at its first line.
      await copyFrames(ctx, await c.logs(id, { follow: true, ...signalOpt(ctx) }))
      const r = await result
      if (r.Error?.Message !== undefined && r.Error.Message !== '') ctx.error(r.Error.Message)
      // docker exits 125 for a daemon-side failure with no status of the container's own.
      ctx.exitCode = r.StatusCode >= 0 ? r.StatusCode : 125
    } finally {
      if (opts.rm === true) {
        await c.remove(id, true).catch((err: unknown) => { ctx.error(`removing container ${id.slice(0, 12)}: ${(err as Error).message}`) })
      }
    }
  })
}

async function exec (ctx: CommandContext, container: string, cmd: string[], opts: { detach?: boolean, env: string[], workdir?: string, user?: string }): Promise<void> {
  const env = parseEnvFlags(opts.env, ctx.io.env)
  if (opts.workdir !== undefined && !opts.workdir.startsWith('/')) throw usage(`invalid working directory "${opts.workdir}": must be absolute`)
  await withClient(ctx, async (c) => {
    const execId = await c.execCreate(container, {
      Cmd: cmd,
      AttachStdout: opts.detach !== true,
      AttachStderr: opts.detach !== true,
      ...(env.length > 0 ? { Env: env } : {}),
      ...(opts.workdir !== undefined ? { WorkingDir: opts.workdir } : {}),
      ...(opts.user !== undefined && opts.user !== '' ? { User: opts.user } : {})
    }, signalOpt(ctx))
    if (opts.detach === true) {
      await c.execStartDetached(execId, signalOpt(ctx))
      return
    }
    await copyFrames(ctx, await c.execStart(execId, signalOpt(ctx)))
    const info = await c.execInspect(execId, signalOpt(ctx))
    if (typeof info.ExitCode !== 'number') throw new JoeyError('ERR_PROTOCOL', `joeyd reported no exit code for exec ${execId.slice(0, 12)}`)
    ctx.exitCode = info.ExitCode
  })
}
