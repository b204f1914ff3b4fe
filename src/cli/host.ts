import { DEFAULT_TCP_PORT } from './constants.js'
import { UsageError } from './errors.js'

export type HostSpec =
  | { kind: 'unix', socketPath: string, address: string }
  | { kind: 'tcp', host: string, port: number, address: string }

/** Parses a daemon address as docker's -H does: unix:///path or tcp://host[:port]. */
export function parseHost (value: string): HostSpec {
  const input = value.trim()
  if (input.startsWith('unix://')) {
    const socketPath = input.slice('unix://'.length)
    if (!socketPath.startsWith('/')) {
      throw new UsageError('ERR_INVALID_ARGUMENT', `invalid host "${value}": unix:// needs an absolute socket path, e.g. unix:///run/joey/joeyd.sock`)
    }
    return { kind: 'unix', socketPath, address: `unix://${socketPath}` }
  }
  if (input.startsWith('tcp://')) {
    let url: URL
    try {
      url = new URL(`http://${input.slice('tcp://'.length)}`)
    } catch {
      throw new UsageError('ERR_INVALID_ARGUMENT', `invalid host "${value}": expected tcp://host:port`)
    }
    if (url.hostname === '' || (url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.username !== '') {
      throw new UsageError('ERR_INVALID_ARGUMENT', `invalid host "${value}": expected tcp://host:port`)
    }
    const port = url.port === '' ? DEFAULT_TCP_PORT : Number(url.port)
    return { kind: 'tcp', host: url.hostname, port, address: `tcp://${url.hostname}:${port}` }
  }
  throw new UsageError('ERR_INVALID_ARGUMENT', `invalid host "${value}": expected unix:///path/to/socket or tcp://host:port`)
}
