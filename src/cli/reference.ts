import { isJoeyError } from '../common/index.js'
import { parseReference, repositoryOf, type Reference } from '../distribution/index.js'
import { UsageError } from './errors.js'

export interface PullTarget {
  ref: Reference
  /** What docker's client sends as fromImage: busybox rather than docker.io/library/busybox. */
  fromImage: string
  /** A tag or a digest (a digest wins when both are given, as in docker). */
  tag: string
  /** No tag or digest was typed, so "latest" was assumed. */
  defaultedTag: boolean
  /** domain/path[:tag][@digest], what `pull` prints on success. */
  full: string
}

/**
 * Parses what a user typed for `pull` with the shared reference grammar. A bad reference is
 * a usage error: it is rejected before the daemon is asked.
 */
export function pullTarget (input: string): PullTarget {
  let ref: Reference
  try {
    ref = parseReference(input)
  } catch (err) {
    if (isJoeyError(err)) throw new UsageError(err.code, err.message)
    throw err
  }
  const lastComponent = input.slice(input.lastIndexOf('/') + 1)
  return {
    ref,
    fromImage: repositoryOf(ref).familiar,
    tag: ref.digest ?? ref.tag ?? 'latest',
    defaultedTag: !input.includes('@') && !lastComponent.includes(':'),
    full: ref.toString()
  }
}
