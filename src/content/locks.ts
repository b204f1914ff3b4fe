import { JoeyError } from '../common/index.js'

interface Held {
  released: Promise<void>
  release: () => void
}

/** Exclusive ownership of ingest refs within this process (containerd keeps the same in-memory lock). */
export class RefLocks {
  private readonly held = new Map<string, Held>()

  isHeld (key: string): boolean {
    return this.held.has(key)
  }

  /** Resolves to a release function; waits up to timeoutMs for a held key, then ERR_LOCKED. */
  async acquire (key: string, timeoutMs: number): Promise<() => void> {
    const deadline = Date.now() + Math.max(0, timeoutMs)
    for (;;) {
      const current = this.held.get(key)
      if (current === undefined) return this.take(key)
      const left = deadline - Date.now()
      if (left <= 0) {
        throw new JoeyError('ERR_LOCKED', `ingest ref "${key}" is held by another writer`, { detail: { ref: key } })
      }
      let timer: NodeJS.Timeout | undefined
      await Promise.race([
        current.released,
        new Promise<void>(resolve => { timer = setTimeout(resolve, left) })
      ])
      clearTimeout(timer)
    }
  }

  private take (key: string): () => void {
    let resolve!: () => void
    const entry: Held = { released: new Promise<void>(r => { resolve = r }), release: () => {} }
    let done = false
    entry.release = () => {
      if (done) return
      done = true
      if (this.held.get(key) === entry) this.held.delete(key)
      resolve()
    }
    this.held.set(key, entry)
    return entry.release
  }
}

interface Waiter {
  exclusive: boolean
  resolve: () => void
}

/**
 * Commits and metadata updates share the lock; gc takes it exclusively so that nothing
 * becomes referenced between its mark and its sweep. Queued gc runs before later sharers
 * so a steady stream of commits cannot starve it.
 */
export class RwLock {
  private readers = 0
  private writer = false
  private readonly queue: Waiter[] = []

  async shared<T> (fn: () => Promise<T>): Promise<T> {
    if (!this.writer && this.queue.length === 0) this.readers++
    else await new Promise<void>(resolve => this.queue.push({ exclusive: false, resolve }))
    try {
      return await fn()
    } finally {
      this.readers--
      this.pump()
    }
  }

  async exclusive<T> (fn: () => Promise<T>): Promise<T> {
    if (!this.writer && this.readers === 0 && this.queue.length === 0) this.writer = true
    else await new Promise<void>(resolve => this.queue.push({ exclusive: true, resolve }))
    try {
      return await fn()
    } finally {
      this.writer = false
      this.pump()
    }
  }

  private pump (): void {
    while (this.queue.length > 0 && !this.writer) {
      const head = this.queue[0] as Waiter
      if (head.exclusive) {
        if (this.readers > 0) return
        this.queue.shift()
        this.writer = true
        head.resolve()
        return
      }
      this.queue.shift()
      this.readers++
      head.resolve()
    }
  }
}

/** Runs read-modify-write steps on one key (a digest, a lease, an image name) one at a time. */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>()

  async run<T> (key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve()
    let done!: () => void
    const mine = new Promise<void>(resolve => { done = resolve })
    const tail = previous.then(() => mine)
    this.tails.set(key, tail)
    await previous
    try {
      return await fn()
    } finally {
      done()
      if (this.tails.get(key) === tail) this.tails.delete(key)
    }
  }
}
