import { parseDigest, sha256, type Digest } from '../common/index.js'

/**
 * Chain IDs of a layer stack, bottom first (OCI image spec): chainID(L0) = diffID(L0),
 * chainID(Ln) = sha256(chainID(Ln-1) + ' ' + diffID(Ln)). A snapshot keyed by chain ID
 * holds exactly that stack, so images sharing a base share its snapshots.
 */
export function chainIDs (diffIds: readonly string[]): Digest[] {
  const out: Digest[] = []
  for (const d of diffIds) {
    const diffId = parseDigest(d)
    const prev = out[out.length - 1]
    out.push(prev === undefined ? diffId : sha256(`${prev} ${diffId}`))
  }
  return out
}

/** Chain ID of the whole stack (the top layer's). */
export function chainID (diffIds: readonly string[]): Digest | undefined {
  const ids = chainIDs(diffIds)
  return ids[ids.length - 1]
}
