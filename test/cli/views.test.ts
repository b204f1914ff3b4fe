import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { displayId, formatImagesTable, imageRows } from '../../src/cli/commands/images.js'
import { formatVersion } from '../../src/cli/commands/version.js'
import { compileTemplate } from '../../src/cli/template.js'
import { parseJsonStream } from '../../src/cli/json-stream.js'
import { imagePath, statusErrorCode } from '../../src/cli/client.js'
import type { ImageSummary } from '../../src/cli/types.js'
import { JoeyError } from '../../src/common/errors.js'

const NOW = Date.UTC(2024, 5, 1, 12)
const ID1 = 'sha256:' + '1'.repeat(8) + 'f'.repeat(56)
const ID2 = 'sha256:' + '2'.repeat(64)
const D1 = 'sha256:' + 'd'.repeat(64)
const D2 = 'sha256:' + 'e'.repeat(64)

const IMAGES: ImageSummary[] = [
  {
    Id: ID1,
    RepoTags: ['busybox:latest', 'busybox:1.36', '127.0.0.1:5000/busybox:latest'],
    RepoDigests: ['busybox@' + D1, '127.0.0.1:5000/busybox@' + D2],
    Created: NOW / 1000 - 2 * 3600,
    Size: 4_261_234
  },
  { Id: ID2, RepoTags: [], RepoDigests: ['app@' + D1], Created: 0, Size: 1_500 },
  { Id: ID2, RepoTags: null, RepoDigests: null, Created: NOW / 1000 - 30, Size: 999 }
]

describe('images view', () => {
  test('one row per tag, digest-only repos and untagged images as <none>', () => {
    const rows = imageRows(IMAGES, { nowMs: NOW })
    assert.deepEqual(rows.map(r => [r.Repository, r.Tag, r.ID, r.CreatedSince, r.Size]), [
      ['busybox', 'latest', '11111111ffff', '2 hours ago', '4.26MB'],
      ['busybox', '1.36', '11111111ffff', '2 hours ago', '4.26MB'],
      ['127.0.0.1:5000/busybox', 'latest', '11111111ffff', '2 hours ago', '4.26MB'],
      ['app', '<none>', '222222222222', 'N/A', '1.5kB'],
      ['<none>', '<none>', '222222222222', '30 seconds ago', '999B']
    ])
  })

  test('--digests shows the digest of each repository', () => {
    const rows = imageRows(IMAGES.slice(0, 2), { nowMs: NOW, digests: true })
    assert.deepEqual(rows.map(r => [r.Repository, r.Tag, r.Digest]), [
      ['busybox', 'latest', D1],
      ['busybox', '1.36', D1],
      ['127.0.0.1:5000/busybox', 'latest', D2],
      ['app', '<none>', D1]
    ])
    const table = formatImagesTable(rows.slice(0, 1), { digests: true }).split('\n')
    assert.match(table[0] ?? '', /^REPOSITORY {3}TAG {7}DIGEST {2,}IMAGE ID {7}CREATED {7}SIZE$/)
    assert.match(table[1] ?? '', new RegExp(`^busybox {6}latest {4}${D1} {3}11111111ffff {3}2 hours ago {3}4.26MB$`))
  })

  test('the table has docker\'s columns and --no-trunc shows full IDs', () => {
    const out = formatImagesTable(imageRows(IMAGES.slice(0, 1), { nowMs: NOW, noTrunc: true }))
    const lines = out.trimEnd().split('\n')
    assert.equal(lines.length, 4)
    assert.match(lines[0] ?? '', /^REPOSITORY +TAG +IMAGE ID +CREATED +SIZE$/)
    assert.ok(lines[1]?.includes(ID1))
    assert.equal(displayId(ID1), '11111111ffff')
    assert.equal(displayId('abc'), 'abc')
  })
})

describe('templates', () => {
  test('field paths and json', () => {
    const obj = { Id: 'x', Config: { Env: ['A=1'], User: '' }, Size: 3 }
    assert.equal(compileTemplate('{{.Id}}')(obj), 'x')
    assert.equal(compileTemplate('{{ .Id }} {{.Size}}\\n')(obj), 'x 3\n')
    assert.equal(compileTemplate('{{json .Config.Env}}')(obj), '["A=1"]')
    assert.equal(compileTemplate('{{.Config.Env}}')(obj), '["A=1"]')
    assert.equal(compileTemplate('{{.Missing.Deep}}')(obj), '<no value>')
    assert.equal(compileTemplate('{{json .}}')({ a: 1 }), '{"a":1}')
  })

  test('unsupported actions are usage errors', () => {
    for (const bad of ['{{range .X}}', '{{.Id | upper}}', '{{Id}}', '{{.Id}', 'x}}']) {
      assert.throws(() => compileTemplate(bad), { code: 'ERR_INVALID_ARGUMENT' }, bad)
    }
  })
})

describe('version view', () => {
  const client = { Version: '0.1.0', NodeVersion: 'v20.0.0', Os: 'linux', Arch: 'amd64' }
  test('client only when the server is unreachable', () => {
    assert.equal(formatVersion({ Client: client, Server: null }),
      'Client:\n Version:           0.1.0\n Node.js version:   v20.0.0\n OS/Arch:           linux/amd64\n')
  })

  test('server engine and components', () => {
    const out = formatVersion({
      Client: client,
      Server: {
        Platform: { Name: 'Joey' },
        Version: '0.1.0',
        ApiVersion: '1.43',
        MinAPIVersion: '1.24',
        Os: 'linux',
        Arch: 'amd64',
        Components: [{ Name: 'Engine', Version: '0.1.0' }, { Name: 'runc', Version: '1.1.12', Details: { GitCommit: 'abc' } }]
      }
    })
    assert.match(out, /\nServer: Joey\n Engine:\n {2}Version: {10}0\.1\.0\n {2}API version: {6}1\.43 \(minimum version 1\.24\)\n {2}OS\/Arch: {10}linux\/amd64\n runc:\n {2}Version: {10}1\.1\.12\n {2}GitCommit: {8}abc\n$/)
  })
})

describe('client helpers', () => {
  test('image paths keep slashes, colons and @ literal', () => {
    assert.equal(imagePath('127.0.0.1:5000/busybox:latest', '/json'), '/images/127.0.0.1:5000/busybox:latest/json')
    assert.equal(imagePath(`busybox@${D1}`), `/images/busybox@${D1}`)
    assert.equal(imagePath('a b?c'), '/images/a%20b%3Fc')
  })

  test('statuses map to stable codes', () => {
    assert.equal(statusErrorCode(400), 'ERR_INVALID_ARGUMENT')
    assert.equal(statusErrorCode(404), 'ERR_NOT_FOUND')
    assert.equal(statusErrorCode(409), 'ERR_IN_USE')
    assert.equal(statusErrorCode(503), 'ERR_UNAVAILABLE')
    assert.equal(statusErrorCode(500), 'ERR_INTERNAL')
  })
})

describe('parseJsonStream', () => {
  async function collect (chunks: Array<string | Uint8Array>): Promise<unknown[]> {
    const out: unknown[] = []
    for await (const v of parseJsonStream((async function * () { yield * chunks })())) out.push(v)
    return out
  }

  test('splits \\r\\n-separated, concatenated and chunk-split messages', async () => {
    const text = '{"status":"a"}\r\n{"status":"b {}\\"}"}{"id":"x","progressDetail":{}}\n  [1]\n'
    assert.deepEqual(await collect([text]), [{ status: 'a' }, { status: 'b {}"}' }, { id: 'x', progressDetail: {} }, [1]])
    // Every split point, including inside strings and multi-byte characters.
    const bytes = Buffer.from('{"status":"é✓"}\n{"a":[{"b":"}"}]}\n')
    for (let i = 1; i < bytes.length; i++) {
      assert.deepEqual(await collect([bytes.subarray(0, i), bytes.subarray(i)]), [{ status: 'é✓' }, { a: [{ b: '}' }] }], `split at ${i}`)
    }
  })

  test('garbage, truncation and malformed JSON are protocol errors', async () => {
    await assert.rejects(collect(['hello']), { code: 'ERR_PROTOCOL' })
    await assert.rejects(collect(['{"a":1}{"b":']), (err: unknown) => err instanceof JoeyError && err.code === 'ERR_TRUNCATED')
    await assert.rejects(collect(['{"a":}']), { code: 'ERR_PROTOCOL' })
    assert.deepEqual(await collect([]), [])
  })

  test('an endless message is cut off', async () => {
    const big = '{"a":"' + 'x'.repeat(1024 * 1024 + 10)
    await assert.rejects(collect([big]), { code: 'ERR_LIMIT_EXCEEDED' })
  })
})
