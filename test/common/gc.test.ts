import { test } from 'node:test'
import assert from 'node:assert/strict'
import { constants, PerformanceObserver } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { createGcPacer } from '../../src/common/index.js'

interface GcDetail { kind: number, flags: number }

test('a GC pacer runs a young-generation collection each time the bytes it is told of pass its step', async (t) => {
  const forced: number[] = []
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const detail = (entry as PerformanceEntry & { detail: GcDetail }).detail
      if ((detail.flags & constants.NODE_PERFORMANCE_GC_FLAGS_FORCED) !== 0) forced.push(detail.kind)
    }
  })
  observer.observe({ entryTypes: ['gc'] })
  t.after(() => { observer.disconnect() })
  // GC entries arrive after the collection, on a later turn of the event loop.
  const settle = async (): Promise<void> => { await sleep(50) }

  const pacer = createGcPacer({ everyBytes: 1000 })
  pacer.note(600)
  await settle()
  assert.deepEqual(forced, [], 'below the step: no collection')
  pacer.note(600)
  await settle()
  assert.deepEqual(forced, [constants.NODE_PERFORMANCE_GC_MINOR], 'past the step: one young-generation collection')
  pacer.note(999)
  await settle()
  assert.equal(forced.length, 1, 'the count starts over after a collection')
  pacer.note(5000)
  await settle()
  assert.deepEqual(forced, [constants.NODE_PERFORMANCE_GC_MINOR, constants.NODE_PERFORMANCE_GC_MINOR])
})
