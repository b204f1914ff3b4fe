/**
 * Cold start: `echo hi` in the busybox fixture image, already pulled and unpacked, from
 * the create request to the first output byte, the way `docker run` drives the Engine API
 * (create, attach, start). Beside it the floor: `runc run` of a prepared bundle (the same
 * layer extracted, `runc spec` with `echo hi`), plain and with tini as pid 1 as joeyd runs
 * it. The steps of the joeyd run are timed apart to show what the overhead is made of.
 */
import { spawn } from 'node:child_process'
import { request as httpRequest } from 'node:http'
import { createRequire } from 'node:module'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import type { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { Client } from 'undici'
import { distIsCurrent } from '../../bin/launch.js'
import { busyboxImage } from '../../test/fixtures/images.js'
import { startRegistry } from '../../test/fixtures/registry.js'
import { enginePull, median, runCommand, startJoeyd, type BenchOptions, type CaseResult, type Metric } from '../lib.js'

const TINI = '/usr/bin/tini-static'

interface Steps { create: number, attach: number, start: number, firstByte: number, total: number }

function p90 (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil(0.9 * s.length) - 1)]!
}

async function json (client: Client, method: 'POST' | 'DELETE', path: string, body?: unknown): Promise<{ status: number, body: any }> {
  const res = await client.request({
    method,
    path,
    ...(body !== undefined ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {})
  })
  const text = await res.body.text()
  return { status: res.statusCode, body: text === '' ? undefined : JSON.parse(text) }
}

/** docker's attach: a hijacked connection carrying the multiplexed output. */
async function attach (socketPath: string, id: string): Promise<{ socket: Socket, head: Buffer }> {
  return await new Promise((resolve, reject) => {
    const req = httpRequest({
      socketPath,
      method: 'POST',
      path: `/containers/${id}/attach?stream=1&stdout=1&stderr=1`,
      headers: { Connection: 'Upgrade', Upgrade: 'tcp', 'Content-Length': '0' }
    })
    req.once('upgrade', (_res, socket: Socket, head: Buffer) => { resolve({ socket, head }) })
    req.once('response', (res) => { reject(new Error(`attach answered ${res.statusCode ?? 0} instead of upgrading`)) })
    req.once('error', reject)
    req.end()
  })
}

/** One `docker run busybox echo hi` through the Engine API; times each step. */
async function engineRun (client: Client, socketPath: string, image: string): Promise<Steps> {
  const t0 = performance.now()
  const created = await json(client, 'POST', '/containers/create', { Image: image, Cmd: ['echo', 'hi'] })
  if (created.status !== 201) throw new Error(`create failed: ${created.status} ${JSON.stringify(created.body)}`)
  const id = (created.body as { Id: string }).Id
  const t1 = performance.now()
  const { socket, head } = await attach(socketPath, id)
  const t2 = performance.now()
  let firstAt = head.length > 0 ? t2 : 0
  const chunks: Buffer[] = [head]
  const ended = new Promise<void>((resolve) => {
    socket.on('data', (c: Buffer) => {
      if (firstAt === 0) firstAt = performance.now()
      chunks.push(c)
    })
    socket.once('close', () => { resolve() })
    socket.once('end', () => { resolve() })
  })
  const firstByte = new Promise<void>((resolve) => {
    if (firstAt !== 0) resolve()
    else socket.once('data', () => { resolve() })
  })
  const started = await json(client, 'POST', `/containers/${id}/start`)
  if (started.status !== 204) throw new Error(`start failed: ${started.status} ${JSON.stringify(started.body)}`)
  const t3 = performance.now()
  await firstByte
  const t4 = Math.max(firstAt, t3)
  await ended
  const out = Buffer.concat(chunks)
  if (!out.subarray(8).toString().startsWith('hi\n')) throw new Error(`unexpected output ${JSON.stringify(out.toString())}`)
  await json(client, 'POST', `/containers/${id}/wait`)
  await json(client, 'DELETE', `/containers/${id}`)
  return { create: t1 - t0, attach: t2 - t1, start: t3 - t2, firstByte: t4 - t3, total: firstAt - t0 }
}

/** `runc run` of a prepared bundle: spawn to first stdout byte. */
async function runcRun (stateRoot: string, bundle: string, id: string): Promise<number> {
  const t0 = performance.now()
  const child = spawn('runc', ['--root', stateRoot, 'run', '--bundle', bundle, id], { stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  child.stderr.on('data', (c: Buffer) => { err += c.toString() })
  let first = 0
  let out = ''
  child.stdout.on('data', (c: Buffer) => {
    if (first === 0) first = performance.now()
    out += c.toString()
  })
  const code = await new Promise<number | null>((resolve) => { child.once('close', resolve) })
  if (code !== 0 || out !== 'hi\n') throw new Error(`runc run exited ${String(code)} with ${JSON.stringify(out)}: ${err}`)
  return first - t0
}

async function prepareBundle (dir: string, layer: Buffer, withInit: boolean): Promise<string> {
  const bundle = join(dir, withInit ? 'bundle-init' : 'bundle')
  await mkdir(join(bundle, 'rootfs'), { recursive: true })
  await writeFile(join(dir, 'layer.tar.gz'), layer)
  await runCommand('tar', ['-xzf', join(dir, 'layer.tar.gz'), '-C', join(bundle, 'rootfs')])
  await runCommand('runc', ['spec', '--bundle', bundle])
  const spec = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as Record<string, any>
  spec.process.terminal = false
  spec.process.args = withInit ? ['/dev/init', '--', 'echo', 'hi'] : ['echo', 'hi']
  spec.root = { path: 'rootfs', readonly: true }
  if (withInit) spec.mounts.push({ destination: '/dev/init', type: 'bind', source: TINI, options: ['bind', 'ro'] })
  await writeFile(join(bundle, 'config.json'), JSON.stringify(spec))
  return bundle
}

/** How long a process takes to start: node (plain or with the loader the shim runs under from sources), mount(8). */
async function processStart (what: 'node' | 'node+tsx' | 'mount'): Promise<number> {
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href
  const t0 = performance.now()
  if (what === 'mount') await runCommand('mount', ['--version'])
  else await runCommand(process.execPath, [...(what === 'node+tsx' ? ['--import', tsx] : []), '-e', '0'])
  return performance.now() - t0
}

export async function run (opts: BenchOptions): Promise<CaseResult> {
  const rounds = opts.quick ? 7 : 21
  const dir = await mkdtemp(join(tmpdir(), 'joey-bench-cold-'))
  const registry = await startRegistry()
  const root = join(dir, 'data')
  const socket = join(dir, 'joeyd.sock')
  let d: Awaited<ReturnType<typeof startJoeyd>> | undefined
  const client = new Client('http://localhost', { socketPath: socket, bodyTimeout: 0, headersTimeout: 0 })
  try {
    const image = await busyboxImage()
    await registry.push('bench/busybox', 'v1', image)
    const ref = `${registry.host}/bench/busybox:v1`
    // joeyd (and the shim it spawns) runs the build when it is current, else the sources through tsx.
    const fromDist = (distIsCurrent as () => boolean)()
    d = await startJoeyd(['--data-root', root, '-H', `unix://${socket}`, '--mirror', '127.0.0.1:0', '--log-level', 'warn'], socket)
    await enginePull(socket, `${registry.host}/bench/busybox`, 'v1')
    // The first run unpacks the layer into its snapshot: not part of a cold start.
    await engineRun(client, socket, ref)

    const layer = image.layers[0]!.data!
    const plainBundle = await prepareBundle(dir, layer, false)
    const initBundle = await prepareBundle(dir, layer, true)
    const stateRoot = join(dir, 'runc')
    await runcRun(stateRoot, plainBundle, 'warm')

    const joey: Steps[] = []
    const plain: number[] = []
    const init: number[] = []
    const node: number[] = []
    const nodeTsx: number[] = []
    const mount: number[] = []
    for (let r = 0; r < rounds; r++) {
      joey.push(await engineRun(client, socket, ref))
      plain.push(await runcRun(stateRoot, plainBundle, `plain-${r}`))
      init.push(await runcRun(stateRoot, initBundle, `init-${r}`))
      if (r < 5) {
        node.push(await processStart('node'))
        nodeTsx.push(await processStart('node+tsx'))
        mount.push(await processStart('mount'))
      }
    }
    const step = (k: keyof Steps): number[] => joey.map(s => s[k])
    const total = step('total')
    const ratio = median(total) / median(plain)
    const metrics: Metric[] = [
      { name: 'joeyd run → first byte, median', value: median(total), unit: 'ms' },
      { name: 'joeyd run → first byte, p90', value: p90(total), unit: 'ms' },
      { name: '  create request', value: median(step('create')), unit: 'ms' },
      { name: '  attach request', value: median(step('attach')), unit: 'ms' },
      { name: '  start request', value: median(step('start')), unit: 'ms' },
      { name: '  start → first byte', value: median(step('firstByte')), unit: 'ms' },
      { name: 'runc run → first byte, median', value: median(plain), unit: 'ms' },
      { name: 'runc run → first byte, p90', value: p90(plain), unit: 'ms' },
      { name: 'runc run with tini, median', value: median(init), unit: 'ms' },
      { name: 'joeyd ÷ runc run', value: ratio, unit: '×' },
      { name: 'node process start', value: median(node), unit: 'ms' },
      { name: 'node process start with tsx', value: median(nodeTsx), unit: 'ms' },
      { name: 'mount(8) process start', value: median(mount), unit: 'ms' },
      // What start() costs beyond the shim's node process and runc itself: rootfs mount, spec, records.
      { name: 'start − shim node − runc (est.)', value: median(step('start')) - median(fromDist ? node : nodeTsx) - median(init), unit: 'ms' }
    ]
    return {
      name: 'cold-start',
      description: `docker run's create + attach + start of echo hi in the unpacked busybox image through joeyd, vs runc run of a prepared bundle; ${rounds} rounds, median and p90`,
      metrics,
      notes: [
        `joeyd ran ${fromDist ? 'the build in dist/' : 'from sources through tsx (dist/ is stale: npm run build first to time the build)'}`
      ],
      data: { fromDist, joey, runc: plain, runcInit: init, node, nodeTsx, mount }
    }
  } finally {
    await client.close().catch(() => {})
    await d?.stop()
    await registry.stop()
    await rm(dir, { recursive: true, force: true })
  }
}
