/**
 * joeyd pulling the large image straight from a registry vs `skopeo copy` of the same
 * image from the same registry, alternating in one run; joeyd's peak RSS beside it.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { largeImage } from '../../test/fixtures/images.js'
import { startRegistry } from '../../test/fixtures/registry.js'
import { MiB, enginePull, median, peakRssBytes, runCommand, startJoeyd, type BenchOptions, type CaseResult } from '../lib.js'

export async function run (opts: BenchOptions): Promise<CaseResult> {
  const layerBytes = opts.quick ? 64 * MiB : 256 * MiB
  const rounds = opts.quick ? 1 : 3
  const dir = await mkdtemp(join(tmpdir(), 'joey-bench-direct-'))
  const registry = await startRegistry()
  try {
    const image = await largeImage({ layerBytes })
    await registry.push('bench/large', 'v1', image)
    const ref = `${registry.host}/bench/large`
    const skopeo: number[] = []
    const joey: number[] = []
    let rss = 0
    for (let r = 0; r < rounds; r++) {
      const out = join(dir, `skopeo-${r}`)
      let t = performance.now()
      await runCommand('skopeo', ['copy', '--src-tls-verify=false', `docker://${ref}:v1`, `oci:${out}`])
      skopeo.push(performance.now() - t)
      await rm(out, { recursive: true, force: true })

      const root = join(dir, `joeyd-${r}`)
      const socket = join(root, 'joeyd.sock')
      const d = await startJoeyd(['--data-root', root, '-H', `unix://${socket}`, '--mirror', '127.0.0.1:0', '--log-level', 'warn'], socket)
      try {
        t = performance.now()
        await enginePull(socket, ref, 'v1')
        joey.push(performance.now() - t)
        rss = Math.max(rss, await peakRssBytes(d.pid))
      } finally {
        await d.stop()
        await rm(root, { recursive: true, force: true })
      }
    }
    const size = image.blobs().reduce((n, b) => n + b.size, 0)
    const ratio = median(joey) / median(skopeo)
    return {
      name: 'direct-pull',
      description: `joeyd pull vs skopeo copy of a ${(size / MiB).toFixed(0)} MiB image from one local registry (${rounds} alternating round(s), medians)`,
      metrics: [
        { name: 'joeyd pull time', value: median(joey) / 1000, unit: 's' },
        { name: 'skopeo copy time', value: median(skopeo) / 1000, unit: 's' },
        { name: 'joeyd ÷ skopeo time', value: ratio, unit: '×', target: '≤ 1.20', ok: ratio <= 1.2 },
        { name: 'joeyd throughput', value: size / MiB / (median(joey) / 1000), unit: 'MiB/s' },
        { name: 'joeyd peak RSS', value: rss / MiB, unit: 'MiB', target: '≤ 150', ok: rss / MiB <= 150 }
      ],
      notes: []
    }
  } finally {
    await registry.stop()
    await rm(dir, { recursive: true, force: true })
  }
}
