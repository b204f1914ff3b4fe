#!/usr/bin/env node
// Runs the whole suite with node's test runner (Node 20 has no glob support in --test).
// Usage: npm test [-- <path filter>...]
import { readdirSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { spawn, spawnSync } from 'node:child_process'
import { distIsCurrent } from '../bin/launch.js'

const root = new URL('..', import.meta.url).pathname
const filters = process.argv.slice(2)

function walk (dir) {
  const out = []
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) out.push(...walk(p))
    else if (name.endsWith('.test.ts')) out.push(relative(root, p))
  }
  return out
}

const files = walk(join(root, 'test')).sort()
  .filter(f => filters.length === 0 || filters.some(x => f.includes(x)))
if (files.length === 0) {
  console.error('no test files matched')
  process.exit(1)
}
// The bins run dist/ when it is current, as installed agents do; build it so the tests
// exercise that path (an edit during the run makes them fall back to the sources).
if (!distIsCurrent()) {
  const b = spawnSync(process.execPath, ['scripts/build.mjs'], { cwd: root, stdio: 'inherit' })
  if (b.status !== 0) process.exit(b.status ?? 1)
}
const args = [
  '--import', 'tsx', '--import', './test/setup.ts',
  '--test', '--test-concurrency=' + (process.env.TEST_CONCURRENCY ?? '2'),
  '--test-reporter=' + (process.env.TEST_REPORTER ?? 'spec'),
  ...files
]
const child = spawn(process.execPath, args, { cwd: root, stdio: 'inherit' })
child.on('exit', (code, signal) => process.exit(code ?? (signal != null ? 1 : 0)))
