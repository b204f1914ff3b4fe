export * from './types.js'
export { parseReference, withTag, withDigest, repositoryOf, type ParseReferenceOptions } from './reference.js'
export { parsePlatform, formatPlatform, defaultPlatform, normalizePlatform, platformMatches, selectManifest } from './platform.js'
export {
  parseManifest, parseDescriptor, isManifestMediaType, isIndexMediaType, stripMediaTypeParams,
  MANIFEST_ACCEPT, MANIFEST_MEDIA_TYPES, INDEX_MEDIA_TYPES, type ParsedManifest
} from './manifest.js'
export { parseWwwAuthenticate, type Challenge } from './auth.js'
export { createRegistryClient, type RegistryClientComponents } from './client.js'
