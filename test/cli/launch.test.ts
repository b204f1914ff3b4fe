import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DAEMON_V8_FLAGS, distIsCurrent } from '../../bin/launch.js'

function run (args: string[], env: Record<string, string> = {}): { status: number | null, out: string } {
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', env: { ...process.env, ...env } })
  return { status: r.status, out: r.stdout + r.stderr }
}

function touch (file: string, secondsFromNow: number): void {
  mkdirSync(join(file, '..'), { recursive: true })
  writeFileSync(file, '')
  const t = new Date(Date.now() + secondsFromNow * 1000)
  utimesSync(file, t, t)
}

test('dist/ counts as current only when built after every source file', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'joey-launch-'))
  t.after(() => { rmSync(dir, { recursive: true, force: true }) })
  touch(join(dir, 'src/common/a.ts'), -60)
  touch(join(dir, 'supernode/b.ts'), -60)
  assert.equal(distIsCurrent(dir), false, 'no build yet')
  touch(join(dir, 'dist/BUILD'), -30)
  assert.equal(distIsCurrent(dir), true)
  touch(join(dir, 'src/common/deep/c.ts'), 0)
  assert.equal(distIsCurrent(dir), false, 'a newer source file below src/')
  touch(join(dir, 'dist/BUILD'), 10)
  assert.equal(distIsCurrent(dir), true)
  touch(join(dir, 'supernode/b.ts'), 20)
  assert.equal(distIsCurrent(dir), false, 'a newer file below supernode/')
  touch(join(dir, 'dist/BUILD'), 30)
  process.env.JOEY_FROM_SOURCE = '1'
  try {
    assert.equal(distIsCurrent(dir), false, 'JOEY_FROM_SOURCE=1 forces the sources')
  } finally {
    delete process.env.JOEY_FROM_SOURCE
  }
})

test('the build runs, and the bins start from dist/ and from the sources alike', () => {
  const b = run(['scripts/build.mjs'])
  assert.equal(b.status, 0, b.out)
  for (const env of [{}, { JOEY_FROM_SOURCE: '1' }] as Array<Record<string, string>>) {
    const v = run(['bin/joeyd.js', '--version'], env)
    assert.equal(v.status, 0, v.out)
    assert.match(v.out, /^\d+\.\d+\.\d+/)
    for (const bin of ['bin/joey.js', 'bin/joey-supernode.js']) {
      const r = run([bin, '--help'], env)
      assert.equal(r.status, 0, r.out)
      assert.match(r.out, /Usage:/)
    }
  }
})

test('the daemons\' V8 flags are flags this node knows', () => {
  // setFlagsFromString ignores a flag V8 does not know; the command line refuses it.
  const r = run([...DAEMON_V8_FLAGS as string[], '-e', '0'])
  assert.equal(r.status, 0, r.out)
  assert.equal(r.out, '')
})
