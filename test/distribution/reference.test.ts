import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { parseReference, withDigest, withTag } from '../../src/distribution/index.js'

const D = 'sha256:' + 'ab'.repeat(32)

describe('parseReference', () => {
  const valid: Array<[string, { domain: string, path: string, tag?: string, digest?: string, str: string, familiar: string }]> = [
    ['busybox', { domain: 'docker.io', path: 'library/busybox', tag: 'latest', str: 'docker.io/library/busybox:latest', familiar: 'busybox:latest' }],
    ['busybox:1.36', { domain: 'docker.io', path: 'library/busybox', tag: '1.36', str: 'docker.io/library/busybox:1.36', familiar: 'busybox:1.36' }],
    ['user/repo', { domain: 'docker.io', path: 'user/repo', tag: 'latest', str: 'docker.io/user/repo:latest', familiar: 'user/repo:latest' }],
    ['user/repo:tag', { domain: 'docker.io', path: 'user/repo', tag: 'tag', str: 'docker.io/user/repo:tag', familiar: 'user/repo:tag' }],
    ['docker.io/library/busybox', { domain: 'docker.io', path: 'library/busybox', tag: 'latest', str: 'docker.io/library/busybox:latest', familiar: 'busybox:latest' }],
    ['docker.io/busybox', { domain: 'docker.io', path: 'library/busybox', tag: 'latest', str: 'docker.io/library/busybox:latest', familiar: 'busybox:latest' }],
    ['index.docker.io/library/busybox:1', { domain: 'docker.io', path: 'library/busybox', tag: '1', str: 'docker.io/library/busybox:1', familiar: 'busybox:1' }],
    ['host:5000/repo', { domain: 'host:5000', path: 'repo', tag: 'latest', str: 'host:5000/repo:latest', familiar: 'host:5000/repo:latest' }],
    ['host:5000/repo:tag', { domain: 'host:5000', path: 'repo', tag: 'tag', str: 'host:5000/repo:tag', familiar: 'host:5000/repo:tag' }],
    ['localhost/repo', { domain: 'localhost', path: 'repo', tag: 'latest', str: 'localhost/repo:latest', familiar: 'localhost/repo:latest' }],
    ['127.0.0.1:5000/a/b/c:v1.2-rc_3', { domain: '127.0.0.1:5000', path: 'a/b/c', tag: 'v1.2-rc_3', str: '127.0.0.1:5000/a/b/c:v1.2-rc_3', familiar: '127.0.0.1:5000/a/b/c:v1.2-rc_3' }],
    ['ghcr.io/org/app', { domain: 'ghcr.io', path: 'org/app', tag: 'latest', str: 'ghcr.io/org/app:latest', familiar: 'ghcr.io/org/app:latest' }],
    ['[::1]:5000/repo', { domain: '[::1]:5000', path: 'repo', tag: 'latest', str: '[::1]:5000/repo:latest', familiar: '[::1]:5000/repo:latest' }],
    ['user/a.b-c__d---e', { domain: 'docker.io', path: 'user/a.b-c__d---e', tag: 'latest', str: 'docker.io/user/a.b-c__d---e:latest', familiar: 'user/a.b-c__d---e:latest' }],
    [`busybox@${D}`, { domain: 'docker.io', path: 'library/busybox', digest: D, str: `docker.io/library/busybox@${D}`, familiar: `busybox@${D}` }],
    [`busybox:1@${D}`, { domain: 'docker.io', path: 'library/busybox', tag: '1', digest: D, str: `docker.io/library/busybox:1@${D}`, familiar: `busybox:1@${D}` }],
    [`host:5000/repo@${D}`, { domain: 'host:5000', path: 'repo', digest: D, str: `host:5000/repo@${D}`, familiar: `host:5000/repo@${D}` }]
  ]
  for (const [input, want] of valid) {
    test(`accepts ${input}`, () => {
      const ref = parseReference(input)
      assert.equal(ref.domain, want.domain)
      assert.equal(ref.path, want.path)
      assert.equal(ref.tag, want.tag)
      assert.equal(ref.digest, want.digest)
      assert.equal(ref.toString(), want.str)
      assert.equal(String(ref), want.str)
      assert.equal(ref.familiar, want.familiar)
      assert.equal(ref.name, `${want.domain}/${want.path}`)
      // Normalised output parses back to itself.
      assert.equal(parseReference(ref.toString()).toString(), want.str)
    })
  }

  const invalid: Array<[string, RegExp]> = [
    ['', /empty/],
    ['Busybox', /lowercase/],
    ['user/Repo', /lowercase/],
    ['Upper/repo', /lowercase/],
    ['host:5000/Repo', /lowercase/],
    ['a//b', /empty path component/],
    ['repo/', /empty path component/],
    ['host:5000/', /empty path component/],
    ['a/../b', /path component/],
    ['a..b', /path component/],
    ['-repo', /path component/],
    ['repo-', /path component/],
    ['busy box', /whitespace/],
    ['busybox ', /whitespace/],
    ['busybox:', /tag is empty/],
    ['busybox:-x', /tag/],
    ['busybox:a/b', /./],
    ['busybox:' + 'a'.repeat(129), /tag/],
    ['busybox@sha256:abc', /invalid digest/],
    ['busybox@md5:' + 'a'.repeat(32), /digest/],
    ['busybox@', /digest/],
    ['https://example.com/repo', /scheme/],
    ['host:port/repo', /registry host/],
    ['-host.io/repo', /registry host/],
    ['a.b__c.io/repo', /registry host/],
    ['user/a___b', /path component/],
    [':tag', /repository name is empty/],
    ['a'.repeat(64).replace(/a/g, 'f'), /image ID/],
    ['host.io/' + 'a'.repeat(260), /255/]
  ]
  for (const [input, message] of invalid) {
    test(`rejects ${JSON.stringify(input.length > 40 ? input.slice(0, 40) + '…' : input)}`, () => {
      assert.throws(() => parseReference(input), (err: any) => {
        assert.equal(err.code, 'ERR_INVALID_REFERENCE')
        assert.match(err.message, message)
        return true
      })
    })
  }

  test('defaultTag applies only without tag and digest', () => {
    assert.equal(parseReference('busybox', { defaultTag: 'stable' }).tag, 'stable')
    assert.equal(parseReference('busybox:1', { defaultTag: 'stable' }).tag, '1')
    assert.equal(parseReference(`busybox@${D}`, { defaultTag: 'stable' }).tag, undefined)
  })

  test('a long but legal name is accepted', () => {
    const path = 'a'.repeat(255 - 'host.io/'.length)
    assert.equal(parseReference(`host.io/${path}`).path, path)
  })
})

describe('withTag / withDigest', () => {
  test('replace tag and digest', () => {
    const ref = parseReference('busybox:1')
    assert.equal(withTag(ref, '2').toString(), 'docker.io/library/busybox:2')
    assert.equal(withDigest(ref, D).toString(), `docker.io/library/busybox@${D}`)
    assert.equal(withDigest(ref, D, { keepTag: true }).familiar, `busybox:1@${D}`)
    assert.throws(() => withTag(ref, '.bad'), { code: 'ERR_INVALID_REFERENCE' })
    assert.throws(() => withDigest(ref, 'sha256:zz'), { code: 'ERR_INVALID_REFERENCE' })
  })

  test('JSON form is the string form', () => {
    assert.equal(JSON.stringify({ r: parseReference('busybox') }), '{"r":"docker.io/library/busybox:latest"}')
  })
})
