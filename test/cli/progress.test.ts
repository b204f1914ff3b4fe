import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { ProgressRenderer, renderProgressBar } from '../../src/cli/progress.js'
import type { JSONMessage } from '../../src/cli/types.js'
import { ESC, Screen } from './screen.js'

const A = 'aaaaaaaaaaaa'
const B = 'bbbbbbbbbbbb'
const DIGEST = 'sha256:' + 'c'.repeat(64)

/** A pull of two layers as dockerd streams it (progress strings trimmed). */
const PULL: JSONMessage[] = [
  { status: 'Pulling from library/busybox', id: 'latest' },
  { status: 'Pulling fs layer', progressDetail: {}, id: A },
  { status: 'Pulling fs layer', progressDetail: {}, id: B },
  { status: 'Downloading', progressDetail: { current: 1_000_000, total: 4_000_000 }, progress: '[===>   ] 1MB/4MB', id: A },
  { status: 'Downloading', progressDetail: { current: 2_000_000, total: 4_000_000 }, id: A },
  { status: 'Downloading', progressDetail: { current: 500, total: 1000 }, id: B },
  { status: 'Verifying Checksum', progressDetail: {}, id: B },
  { status: 'Download complete', progressDetail: {}, id: B },
  { status: 'Downloading', progressDetail: { current: 4_000_000, total: 4_000_000 }, id: A },
  { status: 'Verifying Checksum', progressDetail: {}, id: A },
  { status: 'Download complete', progressDetail: {}, id: A },
  { status: 'Extracting', progressDetail: { current: 2_000_000, total: 4_000_000 }, id: A },
  { status: 'Pull complete', progressDetail: {}, id: A },
  { status: 'Extracting', progressDetail: { current: 1000, total: 1000 }, id: B },
  { status: 'Pull complete', progressDetail: {}, id: B },
  { status: `Digest: ${DIGEST}` },
  { status: 'Status: Downloaded newer image for busybox:latest' }
]

function terminal (columns?: number, rows?: number): { screen: Screen, sink: { write: (s: string) => void, isTTY: true, columns?: number, rows?: number }, raw: string[] } {
  const screen = new Screen()
  const raw: string[] = []
  const sink = {
    write: (s: string) => { raw.push(s); screen.feed(s) },
    isTTY: true as const,
    ...(columns !== undefined ? { columns } : {}),
    ...(rows !== undefined ? { rows } : {})
  }
  return { screen, sink, raw }
}

describe('renderProgressBar', () => {
  test('draws docker\'s 50-wide bar with right-aligned sizes', () => {
    assert.equal(renderProgressBar({ current: 2_000_000, total: 4_000_000 }),
      '[' + '='.repeat(25) + '>' + ' '.repeat(25) + ']      2MB/4MB')
    assert.equal(renderProgressBar({ current: 12_345_678, total: 45_600_000 }, { barWidth: 10 }),
      '[==>        ]  12.35MB/45.6MB')
    assert.equal(renderProgressBar({ current: 45_600_000, total: 45_600_000 }, { barWidth: 4 }),
      '[====>]   45.6MB/45.6MB')
  })

  test('handles missing totals, overshoot, custom units and no progress', () => {
    assert.equal(renderProgressBar({}), '')
    assert.equal(renderProgressBar({ current: 0, total: 0 }), '')
    assert.equal(renderProgressBar({ current: 1500 }), '   1.5kB')
    assert.equal(renderProgressBar({ current: 5000, total: 4000 }, { barWidth: 0 }), '     5kB')
    assert.equal(renderProgressBar({ current: 3, total: 7, units: 'layers' }, { barWidth: 0 }), '3/7 layers')
  })

  test('estimates the time left when the daemon says when the transfer started', () => {
    const start = 1_700_000_000
    const bar = renderProgressBar({ current: 1_000_000, total: 4_000_000, start }, { barWidth: 0, nowMs: (start + 10) * 1000 })
    assert.equal(bar, '     1MB/4MB 30s')
    assert.equal(renderProgressBar({ current: 4_000_000, total: 4_000_000, start }, { barWidth: 0, nowMs: (start + 10) * 1000 }), '     4MB/4MB')
  })
})

describe('ProgressRenderer on a terminal', () => {
  test('keeps one line per layer in first-seen order and redraws it in place', () => {
    const { screen, sink } = terminal()
    const renderer = new ProgressRenderer(sink)
    for (const msg of PULL.slice(0, 6)) renderer.render(msg)
    assert.deepEqual(screen.text(), [
      'latest: Pulling from library/busybox',
      `${A}: Downloading [${'='.repeat(25)}>${' '.repeat(25)}]      2MB/4MB`,
      `${B}: Downloading [${'='.repeat(25)}>${' '.repeat(25)}]     500B/1kB`
    ])
    // The cursor rests at the start of the line below the block, ready for the next line.
    assert.equal(screen.row, 3)
    assert.equal(screen.col, 0)

    for (const msg of PULL.slice(6)) renderer.render(msg)
    assert.deepEqual(screen.text(), [
      'latest: Pulling from library/busybox',
      `${A}: Pull complete`,
      `${B}: Pull complete`,
      `Digest: ${DIGEST}`,
      'Status: Downloaded newer image for busybox:latest'
    ])
    assert.equal(screen.col, 0)
  })

  test('a shorter status fully replaces a longer one', () => {
    const { screen, sink } = terminal()
    const renderer = new ProgressRenderer(sink)
    renderer.render({ id: A, status: 'Downloading', progressDetail: { current: 1, total: 2 } })
    renderer.render({ id: A, status: 'Done' })
    assert.deepEqual(screen.text(), [`${A}: Done`])
  })

  test('narrow terminals get a shorter bar, then none, and never a wrapped line', () => {
    for (const columns of [100, 60, 40, 20]) {
      const { screen, sink } = terminal(columns)
      const renderer = new ProgressRenderer(sink)
      for (const msg of PULL) renderer.render(msg)
      assert.ok(screen.maxWidth < columns, `a line of ${screen.maxWidth} characters on a ${columns}-column terminal`)
      assert.equal(screen.text()[1], `${A}: Pull complete`.slice(0, columns - 1))
    }
    const { screen, sink } = terminal(60)
    const renderer = new ProgressRenderer(sink)
    for (const msg of PULL.slice(0, 5)) renderer.render(msg)
    assert.match(screen.text()[1] ?? '', /^a{12}: Downloading \[=+> +\] {6}2MB\/4MB$/)
  })

  test('a layer line that scrolled off the screen is written anew instead of corrupting the top', () => {
    const { screen, sink } = terminal(80, 3)
    const renderer = new ProgressRenderer(sink)
    renderer.render({ id: A, status: 'Waiting' })
    renderer.render({ id: B, status: 'Waiting' })
    renderer.render({ id: 'cccccccccccc', status: 'Waiting' })
    renderer.render({ id: 'dddddddddddd', status: 'Waiting' })
    renderer.render({ id: A, status: 'Pull complete' }) // 4 lines up on a 3-row screen
    renderer.render({ id: 'dddddddddddd', status: 'Pull complete' }) // 2 lines up: reachable
    const text = screen.text()
    assert.equal(text[0], `${A}: Waiting`)
    assert.equal(text[3], 'dddddddddddd: Pull complete')
    assert.equal(text[4], `${A}: Pull complete`)
  })

  test('stream messages are written line by line', () => {
    const { screen, sink } = terminal()
    const renderer = new ProgressRenderer(sink)
    renderer.render({ stream: 'one\ntwo\n' })
    renderer.render({ id: A, status: 'x' })
    renderer.render({ id: A, status: 'y' })
    assert.deepEqual(screen.text(), ['one', 'two', `${A}: y`])
  })
})

describe('ProgressRenderer in logs (not a terminal)', () => {
  test('prints each status change once, without bars or escape codes', () => {
    let out = ''
    const renderer = new ProgressRenderer({ write: (s) => { out += s }, isTTY: false })
    for (const msg of PULL) renderer.render(msg)
    renderer.render({ status: 'Status: Downloaded newer image for busybox:latest' }) // a repeat is not printed twice
    assert.equal(out, [
      'latest: Pulling from library/busybox',
      `${A}: Pulling fs layer`,
      `${B}: Pulling fs layer`,
      `${A}: Downloading`,
      `${B}: Downloading`,
      `${B}: Verifying Checksum`,
      `${B}: Download complete`,
      `${A}: Verifying Checksum`,
      `${A}: Download complete`,
      `${A}: Extracting`,
      `${A}: Pull complete`,
      `${B}: Extracting`,
      `${B}: Pull complete`,
      `Digest: ${DIGEST}`,
      'Status: Downloaded newer image for busybox:latest',
      ''
    ].join('\n'))
    assert.ok(!out.includes(ESC) && !out.includes('=>'))
  })

  test('the tty option overrides the sink', () => {
    let out = ''
    const renderer = new ProgressRenderer({ write: (s) => { out += s }, isTTY: true }, { tty: false })
    renderer.render({ id: A, status: 'Downloading', progressDetail: { current: 1, total: 2 } })
    assert.equal(out, `${A}: Downloading\n`)
  })
})
