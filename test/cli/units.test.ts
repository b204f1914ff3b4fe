import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { humanDuration, humanSize, shortDuration, timeAgo } from '../../src/cli/units.js'
import { formatTable } from '../../src/cli/table.js'

describe('humanSize', () => {
  test('uses SI units without a space, like docker', () => {
    assert.equal(humanSize(0), '0B')
    assert.equal(humanSize(999), '999B')
    assert.equal(humanSize(1000), '1kB')
    assert.equal(humanSize(1234), '1.234kB')
    assert.equal(humanSize(4_261_234, 3), '4.26MB')
    assert.equal(humanSize(12_345_678), '12.35MB')
    assert.equal(humanSize(45_600_000), '45.6MB')
    assert.equal(humanSize(1_500_000_000), '1.5GB')
    assert.equal(humanSize(2e12), '2TB')
  })

  test('rounding up to 1000 rolls over to the next unit', () => {
    assert.equal(humanSize(999_960, 3), '1MB')
    assert.equal(humanSize(999_999_999, 4), '1GB')
  })

  test('negative and non-finite sizes do not throw', () => {
    assert.equal(humanSize(-1500), '-1.5kB')
    assert.equal(humanSize(Number.NaN), 'NaN')
  })
})

describe('humanDuration', () => {
  const s = 1000
  const h = 3600 * s
  test('follows docker\'s wording at each boundary', () => {
    assert.equal(humanDuration(500), 'Less than a second')
    assert.equal(humanDuration(1 * s), '1 second')
    assert.equal(humanDuration(59 * s), '59 seconds')
    assert.equal(humanDuration(60 * s), 'About a minute')
    assert.equal(humanDuration(119 * s), 'About a minute')
    assert.equal(humanDuration(120 * s), '2 minutes')
    assert.equal(humanDuration(59 * 60 * s), '59 minutes')
    assert.equal(humanDuration(60 * 60 * s), 'About an hour')
    assert.equal(humanDuration(2 * h), '2 hours')
    assert.equal(humanDuration(47 * h), '47 hours')
    assert.equal(humanDuration(48 * h), '2 days')
    assert.equal(humanDuration(14 * 24 * h), '2 weeks')
    assert.equal(humanDuration(60 * 24 * h), '2 months')
    assert.equal(humanDuration(2 * 365 * 24 * h), '2 years')
  })

  test('timeAgo works from unix seconds and shows N/A without a time', () => {
    const now = Date.UTC(2024, 0, 1, 12)
    assert.equal(timeAgo(Date.UTC(2024, 0, 1, 10) / 1000, now), '2 hours ago')
    assert.equal(timeAgo(now / 1000 + 5, now), 'Less than a second ago')
    assert.equal(timeAgo(0, now), 'N/A')
  })

  test('shortDuration prints Go-style durations', () => {
    assert.equal(shortDuration(0), '0s')
    assert.equal(shortDuration(7_400), '7s')
    assert.equal(shortDuration(60_000), '1m0s')
    assert.equal(shortDuration(3_723_000), '1h2m3s')
  })
})

describe('formatTable', () => {
  test('pads columns to the widest cell plus 3, at least 10, and leaves the last unpadded', () => {
    const out = formatTable([
      ['REPOSITORY', 'TAG', 'SIZE'],
      ['busybox', 'latest', '4.26MB'],
      ['127.0.0.1:5000/busybox', '1', '1kB']
    ])
    assert.equal(out,
      'REPOSITORY               TAG       SIZE\n' +
      'busybox                  latest    4.26MB\n' +
      '127.0.0.1:5000/busybox   1         1kB\n')
  })

  test('an empty table prints nothing and ragged rows do not throw', () => {
    assert.equal(formatTable([]), '')
    assert.equal(formatTable([['a', 'b'], ['c']]), 'a         b\nc\n')
  })
})
