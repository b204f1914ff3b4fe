import { test } from 'node:test'
import assert from 'node:assert/strict'
import { JoeyError, httpStatus, toJoeyError, isJoeyError, ERROR_CODES } from '../../src/common/errors.js'
import { parseDigest, sha256, Digester, shortId } from '../../src/common/digest.js'

test('every code maps to a kind and a status', () => {
  for (const code of Object.keys(ERROR_CODES) as Array<keyof typeof ERROR_CODES>) {
    const err = new JoeyError(code, 'x')
    assert.equal(err.code, code)
    assert.ok(httpStatus(err) >= 400)
  }
  assert.equal(httpStatus(new JoeyError('ERR_NOT_FOUND', 'gone')), 404)
  assert.equal(httpStatus(new Error('boom')), 500)
})

test('toJoeyError keeps codes and wraps others', () => {
  const e = new JoeyError('ERR_LOCKED', 'busy')
  assert.equal(toJoeyError(e), e)
  const wrapped = toJoeyError(new Error('plain'))
  assert.ok(isJoeyError(wrapped, 'ERR_INTERNAL'))
  const ab = new Error('aborted'); ab.name = 'AbortError'
  assert.equal(toJoeyError(ab).code, 'ERR_ABORTED')
})

test('digests are validated and computed', () => {
  const d = sha256('hello')
  assert.equal(d, 'sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824')
  assert.equal(parseDigest(d), d)
  assert.throws(() => parseDigest('sha256:xyz'), { code: 'ERR_INVALID_DIGEST' })
  assert.throws(() => parseDigest('sha512:' + 'a'.repeat(128)), { code: 'ERR_INVALID_DIGEST', message: /unsupported digest algorithm/ })
  assert.throws(() => parseDigest('../../etc/passwd'), { code: 'ERR_INVALID_DIGEST' })
  const g = new Digester(); g.update(Buffer.from('hel')); g.update(Buffer.from('lo'))
  assert.equal(g.digest(), d); assert.equal(g.size, 5)
  assert.equal(shortId(d), '2cf24dba5fb0')
})
