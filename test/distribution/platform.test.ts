import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { defaultPlatform, formatPlatform, parsePlatform, platformMatches, selectManifest, type Descriptor, type Index, type Platform } from '../../src/distribution/index.js'

function entry (n: number, platform?: Platform): Descriptor {
  const d: Descriptor = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: 'sha256:' + n.toString(16).padStart(64, '0'), size: 100 + n }
  if (platform !== undefined) d.platform = platform
  return d
}

function index (...manifests: Descriptor[]): Index {
  return { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests }
}

describe('parsePlatform', () => {
  test('parses and normalises', () => {
    assert.deepEqual(parsePlatform('linux/amd64'), { os: 'linux', architecture: 'amd64' })
    assert.deepEqual(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64', variant: 'v8' })
    assert.deepEqual(parsePlatform('linux/arm64'), { os: 'linux', architecture: 'arm64', variant: 'v8' })
    assert.deepEqual(parsePlatform('linux/aarch64'), { os: 'linux', architecture: 'arm64', variant: 'v8' })
    assert.deepEqual(parsePlatform('Linux/x86_64'), { os: 'linux', architecture: 'amd64' })
    assert.deepEqual(parsePlatform('linux/arm'), { os: 'linux', architecture: 'arm', variant: 'v7' })
    assert.deepEqual(parsePlatform('linux/arm/6'), { os: 'linux', architecture: 'arm', variant: 'v6' })
    assert.deepEqual(parsePlatform('linux/armhf'), { os: 'linux', architecture: 'arm', variant: 'v7' })
    assert.deepEqual(parsePlatform('linux/i386'), { os: 'linux', architecture: '386' })
    assert.deepEqual(parsePlatform('windows/amd64'), { os: 'windows', architecture: 'amd64' })
  })

  test('a lone os or arch is completed from the host', () => {
    const host = defaultPlatform()
    assert.equal(parsePlatform('linux').architecture, host.architecture)
    assert.deepEqual(parsePlatform('arm64'), { os: host.os, architecture: 'arm64', variant: 'v8' })
  })

  for (const bad of ['', 'linux/', '/amd64', 'linux/amd64/v8/x', 'linux/am d64', 'bogus', 'linux/amd64!']) {
    test(`rejects ${JSON.stringify(bad)}`, () => {
      assert.throws(() => parsePlatform(bad), (err: any) => err.code === 'ERR_INVALID_PLATFORM' && err.message.includes(bad))
    })
  }

  test('formatPlatform round-trips', () => {
    for (const s of ['linux/amd64', 'linux/arm64/v8', 'linux/arm/v7', 'windows/amd64']) assert.equal(formatPlatform(parsePlatform(s)), s)
  })
})

describe('defaultPlatform', () => {
  test('maps node names to OCI names', () => {
    const p = defaultPlatform()
    const want: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', s390x: 's390x', riscv64: 'riscv64' }
    if (want[process.arch] !== undefined) assert.equal(p.architecture, want[process.arch])
    assert.equal(p.os, process.platform === 'win32' ? 'windows' : process.platform)
    if (process.arch === 'arm64') assert.equal(p.variant, 'v8')
    if (process.arch === 'x64') assert.equal(p.variant, undefined)
  })
})

describe('platformMatches', () => {
  const cases: Array<[string, Platform, boolean]> = [
    ['linux/amd64', { os: 'linux', architecture: 'amd64' }, true],
    ['linux/amd64', { os: 'linux', architecture: 'arm64' }, false],
    ['linux/amd64', { os: 'windows', architecture: 'amd64' }, false],
    ['linux/arm64/v8', { os: 'linux', architecture: 'arm64' }, true],
    ['linux/arm64', { os: 'linux', architecture: 'arm64', variant: 'v8' }, true],
    ['linux/arm64/v8', { os: 'linux', architecture: 'aarch64' }, true],
    ['linux/arm/v7', { os: 'linux', architecture: 'arm', variant: 'v6' }, true],
    ['linux/arm/v6', { os: 'linux', architecture: 'arm', variant: 'v7' }, false],
    ['linux/arm/v7', { os: 'linux', architecture: 'arm' }, true],
    ['linux/arm/v7', { os: 'linux', architecture: 'arm64' }, false]
  ]
  for (const [want, have, ok] of cases) {
    test(`${want} ${ok ? 'accepts' : 'refuses'} ${formatPlatform(have)}`, () => {
      const w = want.split('/')
      const wp: Platform = { os: w[0]!, architecture: w[1]! }
      if (w[2] !== undefined) wp.variant = w[2]
      assert.equal(platformMatches(wp, have), ok)
    })
  }
})

describe('selectManifest', () => {
  const amd64 = entry(1, { os: 'linux', architecture: 'amd64' })
  const arm64 = entry(2, { os: 'linux', architecture: 'arm64', variant: 'v8' })
  const armv6 = entry(3, { os: 'linux', architecture: 'arm', variant: 'v6' })
  const armv7 = entry(4, { os: 'linux', architecture: 'arm', variant: 'v7' })
  const attestation = entry(5, { os: 'unknown', architecture: 'unknown' })
  const noPlatform = entry(6)
  const amd64v3 = entry(7, { os: 'linux', architecture: 'amd64', variant: 'v3' })

  test('picks the entry for the wanted platform', () => {
    const idx = index(attestation, noPlatform, amd64, arm64, armv6, armv7)
    assert.equal(selectManifest(idx, parsePlatform('linux/amd64')), amd64)
    assert.equal(selectManifest(idx, parsePlatform('linux/arm64')), arm64)
    assert.equal(selectManifest(idx, { os: 'linux', architecture: 'arm64' }), arm64)
    assert.equal(selectManifest(idx, parsePlatform('linux/arm/v7')), armv7)
    assert.equal(selectManifest(idx, parsePlatform('linux/arm/v6')), armv6)
  })

  test('arm64 entries without a variant match v8, like containerd', () => {
    const bare = entry(8, { os: 'linux', architecture: 'arm64' })
    assert.equal(selectManifest(index(amd64, bare), parsePlatform('linux/arm64/v8')), bare)
  })

  test('the closest variant wins over order', () => {
    assert.equal(selectManifest(index(armv6, armv7), parsePlatform('linux/arm/v7')), armv7)
    assert.equal(selectManifest(index(armv6), parsePlatform('linux/arm/v7')), armv6)
    assert.equal(selectManifest(index(amd64v3, amd64), parsePlatform('linux/amd64')), amd64)
    assert.equal(selectManifest(index(amd64v3), parsePlatform('linux/amd64')), amd64v3)
  })

  test('no match lists what is available', () => {
    assert.throws(() => selectManifest(index(attestation, amd64, arm64), parsePlatform('linux/s390x')), (err: any) => {
      assert.equal(err.code, 'ERR_NO_MATCHING_PLATFORM')
      assert.match(err.message, /linux\/s390x/)
      assert.match(err.message, /available: linux\/amd64, linux\/arm64\/v8/)
      assert.doesNotMatch(err.message, /unknown/)
      assert.deepEqual(err.detail.available, ['linux/amd64', 'linux/arm64/v8'])
      return true
    })
    assert.throws(() => selectManifest(index(), parsePlatform('linux/amd64')), { code: 'ERR_NO_MATCHING_PLATFORM', message: /available: none/ })
  })
})
