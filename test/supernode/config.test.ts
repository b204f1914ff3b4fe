import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseSupernodeConfig } from '../../supernode/config.js'

const noKey = (): Uint8Array => { throw new Error('no swarm key in these tests') }

test('defaults: a mesh of parents, no upload cap', () => {
  const c = parseSupernodeConfig([], noKey)
  assert.equal(c.rankedParents, false)
  assert.equal(c.uploadLimit, 0)
  assert.equal(c.listen, '0.0.0.0:8002')
})

test('--ranked-parents and the YAML key turn ranks on; flags win over the file', (t) => {
  assert.equal(parseSupernodeConfig(['--ranked-parents'], noKey).rankedParents, true)
  const dir = mkdtempSync(join(tmpdir(), 'joey-sn-config-'))
  t.after(() => { rmSync(dir, { recursive: true, force: true }) })
  const file = join(dir, 'sn.yaml')
  writeFileSync(file, 'rankedParents: true\nuploadLimit: 10M\n')
  const c = parseSupernodeConfig(['--config', file], noKey)
  assert.equal(c.rankedParents, true)
  assert.equal(c.uploadLimit, 10_000_000)
  assert.equal(parseSupernodeConfig(['--config', file, '--upload-limit', '1M'], noKey).uploadLimit, 1_000_000)
})

test('bad values and unknown keys are ERR_INVALID_CONFIG with the key named', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'joey-sn-config-'))
  t.after(() => { rmSync(dir, { recursive: true, force: true }) })
  const bad = join(dir, 'bad.yaml')
  writeFileSync(bad, 'rankedParents: sometimes\n')
  assert.throws(() => parseSupernodeConfig(['--config', bad], noKey), { code: 'ERR_INVALID_CONFIG', message: /rankedParents/ })
  const unknown = join(dir, 'unknown.yaml')
  writeFileSync(unknown, 'ranked: true\n')
  assert.throws(() => parseSupernodeConfig(['--config', unknown], noKey), { code: 'ERR_INVALID_CONFIG', message: /unknown key "ranked"/ })
  assert.throws(() => parseSupernodeConfig(['--listen', 'nonsense'], noKey), { code: 'ERR_INVALID_CONFIG', message: /--listen/ })
})

test('the ready-made deploy/joey-supernode.yaml parses with its documented defaults', () => {
  const c = parseSupernodeConfig(['--config', 'deploy/joey-supernode.yaml'], noKey)
  assert.equal(c.rankedParents, false)
  assert.equal(c.maxBackToSource, 2)
  assert.equal(c.uploadLimit, 0)
})
