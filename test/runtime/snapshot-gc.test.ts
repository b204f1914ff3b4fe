// Layer snapshots are shared between images and released by GC: removing one image frees
// only the layers no other image uses, a container keeps its image's layers until it is
// removed, and a new service sweeps what an interrupted removal left. Run against both
// snapshotters (overlay where the kernel allows it).
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chainIDs, detectSnapshotter, type SnapshotterKind } from '../../src/unpack/index.js'
import { makeEnv, skipReason, type RuntimeEnv } from './helpers.js'

const skip = skipReason()

async function overlayWorks (): Promise<boolean> {
  const dir = await mkdtemp(join(tmpdir(), 'joey-detect-'))
  try {
    return await detectSnapshotter(dir) === 'overlay'
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

for (const kind of ['overlay', 'copy'] as SnapshotterKind[]) {
  describe(`snapshot GC (${kind} snapshotter)`, { skip, timeout: 120_000 }, () => {
    let env: RuntimeEnv
    let busyboxChain: string[]
    let multiChain: string[]

    before(async () => {
      // Without overlayfs env stays unset and every test skips itself.
      if (kind === 'overlay' && !await overlayWorks()) return
      env = await makeEnv({ snapshotter: kind })
      busyboxChain = chainIDs((await env.images.inspect(env.busybox)).rootfs.diff_ids)
      multiChain = chainIDs((await env.images.inspect(env.multi)).rootfs.diff_ids)
    })
    after(async () => { await env?.cleanup() })

    const committed = async (): Promise<string[]> =>
      (await env.snapshotter.list()).filter(s => s.kind === 'committed').map(s => s.name).sort()
    const sorted = (names: string[]): string[] => [...new Set(names)].sort()

    test('shared base layers stay until the last image and container using them go', async (t) => {
      if (env === undefined) return t.skip('overlayfs is not usable here')
      // The fixtures share their bottom layer: multi is busybox's layer plus more.
      assert.equal(multiChain[0], busyboxChain[0])
      const svc = await env.newService()
      const onMulti = await svc.create({ image: env.multi, cmd: ['true'] })
      const onBusybox = await svc.create({ image: env.busybox, cmd: ['true'] })
      assert.deepEqual(await committed(), sorted([...busyboxChain, ...multiChain]))

      // Images still there: removing their containers frees nothing.
      await svc.remove(onBusybox.id)
      assert.deepEqual(await svc.collectSnapshots(), [])
      assert.deepEqual(await committed(), sorted([...busyboxChain, ...multiChain]))

      // The image goes while a container uses it (rmi --force): its layers stay for the container.
      await env.images.remove(env.multi, { force: true })
      assert.deepEqual(await svc.collectSnapshots(), [])
      assert.deepEqual(await committed(), sorted([...busyboxChain, ...multiChain]))

      // The container goes too: only the layers busybox shares stay.
      await svc.remove(onMulti.id)
      assert.deepEqual(await committed(), sorted(busyboxChain))

      // A container on the remaining image reuses its snapshot, nothing is applied again.
      const again = await svc.create({ image: env.busybox, cmd: ['true'] })
      assert.deepEqual(await committed(), sorted(busyboxChain))
      await svc.remove(again.id)

      await env.images.remove(env.busybox)
      assert.deepEqual(await svc.collectSnapshots(), sorted(busyboxChain))
      assert.deepEqual(await committed(), [])
      assert.deepEqual(await env.snapshotter.list(), [])
      await svc.stop()
    })

    test('a new service sweeps snapshots an interrupted removal left behind', async (t) => {
      if (env === undefined) return t.skip('overlayfs is not usable here')
      await env.images.pull(env.multi)
      const first = await env.newService()
      const c = await first.create({ image: env.multi, cmd: ['true'] })
      await first.remove(c.id)
      await first.stop()
      assert.deepEqual(await committed(), sorted(multiChain))
      // The image is removed but joeyd dies before collecting.
      await env.images.remove(env.multi)
      assert.deepEqual(await committed(), sorted(multiChain))
      const second = await env.newService()
      assert.deepEqual(await committed(), [])
      await second.stop()
    })

    test('collections running beside creates never take a chain from under them', async (t) => {
      if (env === undefined) return t.skip('overlayfs is not usable here')
      await env.images.pull(env.multi)
      const svc = await env.newService()
      const creating = [svc.create({ image: env.multi, cmd: ['true'] }), svc.create({ image: env.multi, cmd: ['true'] })]
      const collections = [svc.collectSnapshots(), svc.collectSnapshots()]
      const ids = (await Promise.all(creating)).map(r => r.id)
      await Promise.all(collections)
      assert.deepEqual(await committed(), sorted(multiChain))
      await env.images.remove(env.multi)
      await svc.remove(ids[0]!)
      assert.deepEqual(await committed(), sorted(multiChain))
      await svc.remove(ids[1]!)
      assert.deepEqual(await committed(), [])
      await svc.stop()
    })
  })
}
