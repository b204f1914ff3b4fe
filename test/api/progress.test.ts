import { test } from 'node:test'
import assert from 'node:assert/strict'
import { formatProgress, humanSize, toJsonMessage } from '../../src/api/index.js'

test('humanSize matches docker\'s units.HumanSize', () => {
  assert.equal(humanSize(0), '0B')
  assert.equal(humanSize(999), '999B')
  assert.equal(humanSize(1000), '1kB')
  assert.equal(humanSize(1_234_567), '1.235MB')
  assert.equal(humanSize(3_400_000), '3.4MB')
  assert.equal(humanSize(999_999), '1000kB')
  assert.equal(humanSize(100_663_296), '100.7MB')
  assert.equal(humanSize(5 * 1000 ** 3), '5GB')
})

test('formatProgress renders dockerd\'s 50-wide bar', () => {
  assert.equal(formatProgress(0, 0), '')
  assert.equal(formatProgress(0, 100), `[>${' '.repeat(50)}]       0B/100B`)
  assert.equal(formatProgress(50, 100), `[${'='.repeat(25)}>${' '.repeat(25)}]      50B/100B`)
  assert.equal(formatProgress(100, 100), `[${'='.repeat(50)}>]     100B/100B`)
  // A total that is unknown or wrong shows the count alone, as docker does.
  assert.equal(formatProgress(50, 0), '     50B')
  assert.equal(formatProgress(200, 100), `[${'='.repeat(50)}>]     200B`)
})

test('toJsonMessage follows docker\'s JSONMessage field rules', () => {
  assert.deepEqual(toJsonMessage({ id: 'latest', status: 'Pulling from library/busybox' }), { status: 'Pulling from library/busybox', id: 'latest' })
  assert.deepEqual(toJsonMessage({ id: 'abcdefabcdef', status: 'Already exists' }), { status: 'Already exists', progressDetail: {}, id: 'abcdefabcdef' })
  assert.deepEqual(toJsonMessage({ status: 'Digest: sha256:x' }), { status: 'Digest: sha256:x' })
  // Zero counts are omitted (omitempty), the bar is still drawn from them.
  assert.deepEqual(toJsonMessage({ id: 'abcdefabcdef', status: 'Downloading', progressDetail: { current: 0, total: 10 } }),
    { status: 'Downloading', progressDetail: { total: 10 }, progress: `[>${' '.repeat(50)}]       0B/10B`, id: 'abcdefabcdef' })
})
