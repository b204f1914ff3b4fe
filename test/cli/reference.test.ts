import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { pullTarget } from '../../src/cli/reference.js'
import { parseHost } from '../../src/cli/host.js'
import { UsageError } from '../../src/cli/errors.js'

const DIGEST = 'sha256:' + 'a'.repeat(64)

describe('pullTarget', () => {
  test('sends the familiar name and the tag, as docker\'s client does', () => {
    const r = pullTarget('busybox')
    assert.equal(r.fromImage, 'busybox')
    assert.equal(r.tag, 'latest')
    assert.equal(r.defaultedTag, true)
    assert.equal(r.full, 'docker.io/library/busybox:latest')

    const u = pullTarget('someone/app:1.0')
    assert.equal(u.fromImage, 'someone/app')
    assert.equal(u.tag, '1.0')
    assert.equal(u.defaultedTag, false)
    assert.equal(u.full, 'docker.io/someone/app:1.0')
  })

  test('keeps registry hosts with ports; the port is not a tag', () => {
    const r = pullTarget('127.0.0.1:5000/busybox')
    assert.equal(r.fromImage, '127.0.0.1:5000/busybox')
    assert.equal(r.tag, 'latest')
    assert.equal(r.defaultedTag, true)
    assert.equal(r.full, '127.0.0.1:5000/busybox:latest')
    const t = pullTarget('127.0.0.1:5000/busybox:1')
    assert.equal(t.defaultedTag, false)
    assert.equal(t.full, '127.0.0.1:5000/busybox:1')
  })

  test('a digest is sent as the tag and wins over a tag', () => {
    const r = pullTarget(`busybox@${DIGEST}`)
    assert.equal(r.tag, DIGEST)
    assert.equal(r.defaultedTag, false)
    assert.equal(r.full, `docker.io/library/busybox@${DIGEST}`)
    const both = pullTarget(`reg.example.com/app:1@${DIGEST}`)
    assert.equal(both.tag, DIGEST)
    assert.equal(both.fromImage, 'reg.example.com/app')
  })

  test('bad references are usage errors with ERR_INVALID_REFERENCE', () => {
    for (const input of ['', 'Busybox', 'busybox:', 'busybox:-x', 'busybox@sha256:xyz', ':latest', 'a//b', 'app/-x', 'a'.repeat(300)]) {
      assert.throws(() => pullTarget(input), (err: unknown) => {
        assert.ok(err instanceof UsageError, `${input}: ${String(err)}`)
        assert.equal(err.code, 'ERR_INVALID_REFERENCE')
        assert.match(err.message, /^invalid reference/)
        return true
      })
    }
  })
})

describe('parseHost', () => {
  test('parses unix and tcp addresses', () => {
    assert.deepEqual(parseHost('unix:///run/joey/joeyd.sock'), { kind: 'unix', socketPath: '/run/joey/joeyd.sock', address: 'unix:///run/joey/joeyd.sock' })
    assert.deepEqual(parseHost('tcp://127.0.0.1:2376'), { kind: 'tcp', host: '127.0.0.1', port: 2376, address: 'tcp://127.0.0.1:2376' })
    assert.deepEqual(parseHost('tcp://example.com'), { kind: 'tcp', host: 'example.com', port: 2375, address: 'tcp://example.com:2375' })
    assert.equal(parseHost('tcp://[::1]:99').address, 'tcp://[::1]:99')
  })

  test('rejects anything else with ERR_INVALID_ARGUMENT', () => {
    for (const bad of ['', '/run/joey.sock', 'unix://relative.sock', 'http://x:1', 'tcp://', 'tcp://host:1/path', 'tcp://host:99999', 'ssh://x']) {
      assert.throws(() => parseHost(bad), (err: unknown) => err instanceof UsageError && err.code === 'ERR_INVALID_ARGUMENT', bad)
    }
  })
})
