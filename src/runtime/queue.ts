/**
 * A single-consumer async queue with back-pressure: `onPressure(true)` when more than
 * `highWater` items wait (the producer pauses), `onPressure(false)` once drained.
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  private items: T[] = []
  private ended = false
  private failure: unknown
  private waiter: (() => void) | undefined
  private paused = false

  constructor (private readonly highWater = 256, private readonly onPressure: (paused: boolean) => void = () => {}) {}

  push (item: T): void {
    if (this.ended) return
    this.items.push(item)
    if (!this.paused && this.items.length > this.highWater) {
      this.paused = true
      this.onPressure(true)
    }
    this.wake()
  }

  end (err?: unknown): void {
    if (this.ended) return
    this.ended = true
    this.failure = err
    this.wake()
  }

  private wake (): void {
    const w = this.waiter
    this.waiter = undefined
    w?.()
  }

  async * [Symbol.asyncIterator] (): AsyncIterator<T> {
    for (;;) {
      const item = this.items.shift()
      if (item !== undefined) {
        if (this.paused && this.items.length === 0) {
          this.paused = false
          this.onPressure(false)
        }
        yield item
        continue
      }
      if (this.ended) {
        if (this.failure !== undefined) throw this.failure
        return
      }
      await new Promise<void>(resolve => { this.waiter = resolve })
    }
  }
}
