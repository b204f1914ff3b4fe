#!/usr/bin/env node
// npm run build: transpiles src/ and supernode/ to dist/ (one .js per .ts, no bundling),
// which the bin launchers run when it is current. Type checking is `npm run typecheck`'s job;
// this only strips types, so it takes well under a second.
// The new tree is built beside dist/ and swapped in, so a process that is starting never
// reads a half-written file.
import { build } from 'esbuild'
import { cpSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'

const root = new URL('..', import.meta.url).pathname
const SOURCE_DIRS = ['src', 'supernode']

function walk (dir, out = []) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) walk(p, out)
    else out.push(p)
  }
  return out
}

const files = SOURCE_DIRS.flatMap(d => walk(join(root, d)))
const tmp = join(root, `dist.tmp-${process.pid}`)
rmSync(tmp, { recursive: true, force: true })
mkdirSync(tmp, { recursive: true })
try {
  await build({
    entryPoints: files.filter(f => f.endsWith('.ts')),
    outdir: tmp,
    outbase: root,
    format: 'esm',
    platform: 'node',
    target: 'node20.18',
    sourcemap: 'linked',
    logLevel: 'warning'
  })
  for (const f of files.filter(f => f.endsWith('.js'))) {
    const dest = join(tmp, relative(root, f))
    mkdirSync(join(dest, '..'), { recursive: true })
    cpSync(f, dest)
  }
  // Sources import ../../package.json for the version; dist/ gets the fields they read.
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
  writeFileSync(join(tmp, 'package.json'), JSON.stringify({ name: pkg.name, version: pkg.version, type: pkg.type }, null, 2) + '\n')
  // The stamp is written last: the launchers trust dist/ only when the stamp is newer
  // than every source file.
  writeFileSync(join(tmp, 'BUILD'), `${new Date().toISOString()}\n`)
  const dist = join(root, 'dist')
  const old = join(root, `dist.old-${process.pid}`)
  let hadDist = false
  try { statSync(dist); hadDist = true } catch {}
  if (hadDist) renameSync(dist, old)
  renameSync(tmp, dist)
  if (hadDist) rmSync(old, { recursive: true, force: true })
} catch (err) {
  rmSync(tmp, { recursive: true, force: true })
  throw err
}
