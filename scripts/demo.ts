/**
 * The main job in one command: a local cluster pull. Builds an image, serves it from a
 * local origin registry, starts a joey-supernode and several joeyd agents as separate
 * processes, pulls on all of them at once and prints per-node time, bytes from peers vs
 * the origin, and the origin egress ratio.
 *
 *   npx tsx scripts/demo.ts [--agents N] [--size MiB] [--rate MiB/s]
 */
import '../src/common/polyfill.js'
import { join } from 'node:path'
import { startAgent, startOrigin, startSupernode, supernodeMetrics, type AgentProc } from '../test/cluster/harness.js'

const MiB = 1024 * 1024

function arg (name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`)
  if (i < 0) return fallback
  const v = Number(process.argv[i + 1])
  if (!Number.isFinite(v) || v <= 0) {
    console.error(`--${name} takes a positive number`)
    process.exit(2)
  }
  return v
}

async function main (): Promise<void> {
  const agentsN = Math.floor(arg('agents', 5))
  const sizeMiB = arg('size', 96)
  const rate = arg('rate', 16)
  console.log(`Joey local cluster pull: ${agentsN} agents, a ${sizeMiB} MiB image, each node capped at ${rate} MiB/s`)
  process.stdout.write('building the image and starting the origin registry… ')
  const env = await startOrigin('demo', 'demo/app', { layerBytes: Math.round(sizeMiB * MiB / 2), layers: 2 })
  const { dir, image, proxy: origin, imageBytes: size, procs } = env
  process.once('SIGINT', () => { void env.cleanup().then(() => process.exit(130)) })
  try {
    console.log(`${(size / MiB).toFixed(1)} MiB in ${image.layers.length} layers`)
    console.log(`origin registry at ${origin.url} (counting the bytes it sends)`)
    const sn = await startSupernode(join(dir, 'supernode'), ['--upload-limit', `${rate}Mi`])
    procs.push(sn)
    console.log(`supernode at ${sn.url}`)
    const agents: AgentProc[] = await Promise.all(Array.from({ length: agentsN }, async (_, i) => {
      const a = await startAgent(dir, `node${i + 1}`, ['--supernode', sn.url, '--download-limit', `${rate}Mi`, '--upload-limit', `${rate}Mi`])
      procs.push(a)
      return a
    }))
    console.log(`${agents.length} agents started; pulling ${origin.host}/demo/app:v1 on all of them at once…\n`)
    origin.reset()
    const started = performance.now()
    const times = await Promise.all(agents.map(async (a) => {
      const t = performance.now()
      await a.pull(`${origin.host}/demo/app`, 'v1')
      const ms = performance.now() - t
      console.log(`  ${a.name} done in ${(ms / 1000).toFixed(1)} s`)
      return ms
    }))
    const wall = performance.now() - started
    const bound = size / (rate * MiB) * 1000
    console.log('\n| node | time | ÷ (S ÷ B) | from peers | from origin |')
    console.log('| --- | --- | --- | --- | --- |')
    for (const [i, a] of agents.entries()) {
      const m = await a.metrics()
      const peers = m.joeyd_peer_bytes_total ?? 0
      const fromOrigin = m.joeyd_origin_bytes_total ?? 0
      console.log(`| ${a.name} | ${((times[i] ?? 0) / 1000).toFixed(1)} s | ${((times[i] ?? 0) / bound).toFixed(2)} | ${(peers / MiB).toFixed(1)} MiB | ${(fromOrigin / MiB).toFixed(1)} MiB |`)
    }
    const snm = await supernodeMetrics(sn.url)
    const egress = origin.stats.blobBytes
    console.log(`\nseed fetched ${((snm.joey_supernode_seed_origin_bytes_total ?? 0) / MiB).toFixed(1)} MiB from the origin and served ${((snm.joey_supernode_seed_bytes_served_total ?? 0) / MiB).toFixed(1)} MiB to agents`)
    console.log(`origin egress: ${(egress / MiB).toFixed(1)} MiB for a ${(size / MiB).toFixed(1)} MiB image pulled by ${agentsN} nodes = ${(egress / size).toFixed(2)}× the image (direct pulls would be ${agentsN}×)`)
    console.log(`all nodes done in ${(wall / 1000).toFixed(1)} s; one node alone at ${rate} MiB/s needs ${(bound / 1000).toFixed(1)} s`)
  } finally {
    await env.cleanup()
  }
}

main().catch((err) => {
  console.error(`demo failed: ${(err as Error).message}`)
  process.exit(1)
})
