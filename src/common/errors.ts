/**
 * Errors with stable codes, grouped by kind like containerd's errdefs. Every code is
 * listed in docs/errors.md; the HTTP layers map kinds to status codes in one place.
 */
export type ErrorKind =
  | 'InvalidArgument'
  | 'NotFound'
  | 'AlreadyExists'
  | 'FailedPrecondition'
  | 'Unauthorized'
  | 'Unavailable'
  | 'DataLoss'
  | 'Aborted'
  | 'Conflict'
  | 'Internal'

export const ERROR_CODES = {
  ERR_INVALID_ARGUMENT: 'InvalidArgument',
  ERR_INVALID_REFERENCE: 'InvalidArgument',
  ERR_INVALID_DIGEST: 'InvalidArgument',
  ERR_INVALID_PLATFORM: 'InvalidArgument',
  ERR_INVALID_CONFIG: 'InvalidArgument',
  ERR_MANIFEST_INVALID: 'InvalidArgument',
  ERR_UNSUPPORTED_MEDIA_TYPE: 'InvalidArgument',
  ERR_MANIFEST_TOO_LARGE: 'InvalidArgument',
  ERR_NOT_FOUND: 'NotFound',
  ERR_MANIFEST_UNKNOWN: 'NotFound',
  ERR_BLOB_UNKNOWN: 'NotFound',
  ERR_NAME_UNKNOWN: 'NotFound',
  ERR_NO_MATCHING_PLATFORM: 'NotFound',
  ERR_IMAGE_NOT_FOUND: 'NotFound',
  ERR_ALREADY_EXISTS: 'AlreadyExists',
  ERR_LOCKED: 'Conflict',
  ERR_IN_USE: 'Conflict',
  ERR_FAILED_PRECONDITION: 'FailedPrecondition',
  ERR_UNAUTHORIZED: 'Unauthorized',
  ERR_AUTH_CHALLENGE: 'Unauthorized',
  ERR_REGISTRY_UNAVAILABLE: 'Unavailable',
  ERR_REGISTRY_TIMEOUT: 'Unavailable',
  ERR_UNAVAILABLE: 'Unavailable',
  ERR_PIECE_DEFERRED: 'Unavailable',
  ERR_DIGEST_MISMATCH: 'DataLoss',
  ERR_SIZE_MISMATCH: 'DataLoss',
  ERR_TRUNCATED: 'DataLoss',
  ERR_UNSAFE_PATH: 'InvalidArgument',
  ERR_LIMIT_EXCEEDED: 'InvalidArgument',
  ERR_PROTOCOL: 'InvalidArgument',
  ERR_ABORTED: 'Aborted',
  ERR_INTERNAL: 'Internal'
} as const satisfies Record<string, ErrorKind>

export type ErrorCode = keyof typeof ERROR_CODES

export interface JoeyErrorOptions {
  cause?: unknown
  /** Extra machine-readable detail, e.g. `{ digest, expected, actual }`. */
  detail?: Record<string, unknown>
}

export class JoeyError extends Error {
  readonly code: ErrorCode
  readonly kind: ErrorKind
  readonly detail?: Record<string, unknown>

  constructor (code: ErrorCode, message: string, options: JoeyErrorOptions = {}) {
    super(message, options.cause !== undefined ? { cause: options.cause } : undefined)
    this.name = 'JoeyError'
    this.code = code
    this.kind = ERROR_CODES[code]
    if (options.detail !== undefined) this.detail = options.detail
  }
}

export function isJoeyError (err: unknown, code?: ErrorCode): err is JoeyError {
  return err instanceof JoeyError && (code === undefined || err.code === code)
}

export function errorKind (err: unknown): ErrorKind {
  return err instanceof JoeyError ? err.kind : 'Internal'
}

/** HTTP status for a kind, shared by the Engine API, the mirror and the supernode API. */
export function httpStatus (err: unknown): number {
  switch (errorKind(err)) {
    case 'InvalidArgument': return 400
    case 'Unauthorized': return 401
    case 'NotFound': return 404
    case 'AlreadyExists': return 409
    case 'Conflict': return 409
    case 'FailedPrecondition': return 412
    case 'Unavailable': return 503
    case 'DataLoss': return 502
    case 'Aborted': return 499
    default: return 500
  }
}

export function errorMessage (err: unknown): string {
  if (err instanceof Error) return err.message
  return String(err)
}

/** Wraps any thrown value so callers can rely on `.code`. */
export function toJoeyError (err: unknown, fallback: ErrorCode = 'ERR_INTERNAL'): JoeyError {
  if (err instanceof JoeyError) return err
  if (isAbortError(err)) return new JoeyError('ERR_ABORTED', 'operation aborted', { cause: err })
  return new JoeyError(fallback, errorMessage(err), { cause: err })
}

export function isAbortError (err: unknown): boolean {
  return err instanceof Error && (err.name === 'AbortError' || err.name === 'TimeoutError' || (err as { code?: string }).code === 'ABORT_ERR')
}
