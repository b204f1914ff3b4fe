import { JoeyError, type ErrorCode } from '../common/index.js'

/**
 * Bad input the client can reject without asking the daemon (an invalid reference, host or
 * --format): exits with commander's usage status rather than the operation-failure status.
 */
export class UsageError extends JoeyError {
  constructor (code: ErrorCode, message: string) {
    super(code, message)
    this.name = 'UsageError'
  }
}

/** Exit statuses: docker's convention of 0 and 1, with 2 for usage errors. */
export const EXIT_OK = 0
export const EXIT_FAILURE = 1
export const EXIT_USAGE = 2
