import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { MEDIA_TYPES, parseManifest } from '../../src/distribution/index.js'

const D1 = 'sha256:' + '1'.repeat(64)
const D2 = 'sha256:' + '2'.repeat(64)
const D3 = 'sha256:' + '3'.repeat(64)

function manifest (over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociManifest,
    config: { mediaType: MEDIA_TYPES.ociConfig, digest: D1, size: 123 },
    layers: [{ mediaType: MEDIA_TYPES.ociLayerGzip, digest: D2, size: 4567, annotations: { a: 'b' } }],
    ...over
  }
}

function index (over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociIndex,
    manifests: [
      { mediaType: MEDIA_TYPES.ociManifest, digest: D1, size: 500, platform: { os: 'linux', architecture: 'amd64' } },
      { mediaType: MEDIA_TYPES.ociManifest, digest: D2, size: 501, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } }
    ],
    ...over
  }
}

const bytes = (v: unknown): Buffer => Buffer.from(JSON.stringify(v))

function expectCode (code: string, fn: () => unknown, message?: RegExp): void {
  assert.throws(fn, (err: any) => {
    assert.equal(err.code, code, err.message)
    if (message !== undefined) assert.match(err.message, message)
    return true
  })
}

describe('parseManifest', () => {
  test('OCI manifest', () => {
    const r = parseManifest(bytes(manifest()), MEDIA_TYPES.ociManifest)
    assert.equal(r.kind, 'manifest')
    if (r.kind !== 'manifest') return
    assert.equal(r.manifest.mediaType, MEDIA_TYPES.ociManifest)
    assert.equal(r.manifest.config.digest, D1)
    assert.equal(r.manifest.layers[0]!.size, 4567)
    assert.deepEqual(r.manifest.layers[0]!.annotations, { a: 'b' })
  })

  test('Docker v2s2 manifest and manifest list', () => {
    const m = parseManifest(bytes(manifest({ mediaType: MEDIA_TYPES.dockerManifest })), MEDIA_TYPES.dockerManifest)
    assert.equal(m.kind, 'manifest')
    const l = parseManifest(bytes(index({ mediaType: MEDIA_TYPES.dockerManifestList })), MEDIA_TYPES.dockerManifestList)
    assert.equal(l.kind, 'index')
    if (l.kind === 'index') assert.deepEqual(l.index.manifests[1]!.platform, { os: 'linux', architecture: 'arm64', variant: 'v8' })
  })

  test('OCI index', () => {
    const r = parseManifest(bytes(index()), `${MEDIA_TYPES.ociIndex}; charset=utf-8`)
    assert.equal(r.kind, 'index')
    if (r.kind === 'index') assert.equal(r.index.manifests.length, 2)
  })

  test('media type from header, else inferred from the shape', () => {
    const noType = manifest()
    delete noType.mediaType
    const fromHeader = parseManifest(bytes(noType), MEDIA_TYPES.dockerManifest)
    assert.equal(fromHeader.kind === 'manifest' && fromHeader.manifest.mediaType, MEDIA_TYPES.dockerManifest)
    const inferred = parseManifest(bytes(noType), 'application/json')
    assert.equal(inferred.kind === 'manifest' && inferred.manifest.mediaType, MEDIA_TYPES.ociManifest)
    const idx = index()
    delete idx.mediaType
    const inferredIndex = parseManifest(bytes(idx))
    assert.equal(inferredIndex.kind === 'index' && inferredIndex.index.mediaType, MEDIA_TYPES.ociIndex)
  })

  test('schema 1 is unsupported', () => {
    expectCode('ERR_UNSUPPORTED_MEDIA_TYPE', () => parseManifest(bytes({ schemaVersion: 1, name: 'x', tag: 'y', fsLayers: [] })), /schema 1/)
    expectCode('ERR_UNSUPPORTED_MEDIA_TYPE', () => parseManifest(bytes(manifest()), 'application/vnd.docker.distribution.manifest.v1+prettyjws'), /schema 1/)
  })

  test('unknown media types are unsupported', () => {
    expectCode('ERR_UNSUPPORTED_MEDIA_TYPE', () => parseManifest(bytes(manifest({ mediaType: 'application/vnd.example+json' }))), /application\/vnd\.example\+json/)
    const noType = manifest()
    delete noType.mediaType
    expectCode('ERR_UNSUPPORTED_MEDIA_TYPE', () => parseManifest(bytes(noType), 'application/vnd.cncf.helm.config.v1+json'))
  })

  const invalid: Array<[string, unknown, RegExp]> = [
    ['not JSON', '{nope', /not valid JSON/],
    ['an array', [], /not a JSON object/],
    ['schemaVersion 3', manifest({ schemaVersion: 3 }), /schemaVersion/],
    ['no schemaVersion', manifest({ schemaVersion: undefined }), /schemaVersion/],
    ['bad config digest', manifest({ config: { mediaType: MEDIA_TYPES.ociConfig, digest: 'sha256:abc', size: 1 } }), /config\.digest/],
    ['uppercase digest', manifest({ config: { mediaType: MEDIA_TYPES.ociConfig, digest: 'sha256:' + 'A'.repeat(64), size: 1 } }), /config\.digest/],
    ['sha512 layer', manifest({ layers: [{ mediaType: MEDIA_TYPES.ociLayerGzip, digest: 'sha512:' + 'a'.repeat(128), size: 1 }] }), /layers\[0\]\.digest/],
    ['negative size', manifest({ layers: [{ mediaType: MEDIA_TYPES.ociLayerGzip, digest: D3, size: -1 }] }), /layers\[0\]\.size/],
    ['fractional size', manifest({ layers: [{ mediaType: MEDIA_TYPES.ociLayerGzip, digest: D3, size: 1.5 }] }), /size/],
    ['string size', manifest({ layers: [{ mediaType: MEDIA_TYPES.ociLayerGzip, digest: D3, size: '12' }] }), /size/],
    ['missing mediaType in descriptor', manifest({ config: { digest: D1, size: 1 } }), /config\.mediaType/],
    ['layers not an array', manifest({ layers: {} }), /layers/],
    ['no config', manifest({ config: undefined }), /config/],
    ['index without manifests', index({ manifests: undefined }), /manifests/],
    ['index with config', index({ config: { mediaType: MEDIA_TYPES.ociConfig, digest: D1, size: 1 } }), /config/],
    ['index entry with bad platform', index({ manifests: [{ mediaType: MEDIA_TYPES.ociManifest, digest: D1, size: 1, platform: { os: 'linux' } }] }), /platform/],
    ['annotations not strings', manifest({ annotations: { a: 1 } }), /annotations/],
    ['no type and no shape', { schemaVersion: 2 }, /neither/]
  ]
  for (const [name, doc, message] of invalid) {
    test(`invalid: ${name}`, () => {
      expectCode('ERR_MANIFEST_INVALID', () => parseManifest(typeof doc === 'string' ? Buffer.from(doc) : bytes(doc)), message)
    })
  }
})
