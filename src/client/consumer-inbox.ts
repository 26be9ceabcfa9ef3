/**
 * What the three consumers (log, group, queue) share between their fetch loops and their iterator.
 *
 * `BufferQueue`: a FIFO of fetched chunks (or messages) taken from the front by index, so taking is
 * O(1) without Array.shift; removed items leave holes (undefined) that the taker skips; the storage
 * is reset when the queue runs empty and compacted when mostly taken.
 *
 * `ConsumerInbox`: the readers waiting for a message, the first failure of a loop (the iteration
 * throws it once what is buffered is taken, after closing the consumer), and the iteration's slow
 * path. One event loop; nothing here is thread-safe.
 */
import type { ConsumedMessage } from './message.js';

/** Taken items at the front past which push() compacts, when they are also most of the storage. */
const compactAfter = 1024;

export class BufferQueue<T> {
  private items: Array<T | undefined> = [];
  private head = 0;

  /** True when nothing is left to take (holes included). */
  get isEmpty(): boolean {
    return this.head >= this.items.length;
  }

  /** Items left to take, holes included. */
  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    if (this.head > compactAfter && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    this.items.push(item);
  }

  /** The first item left (undefined: a hole, or the queue is empty). */
  front(): T | undefined {
    return this.items[this.head];
  }

  /** Drops the first item; the storage is released when nothing is left. */
  shift(): void {
    this.items[this.head] = undefined;
    this.head++;
    if (this.head >= this.items.length) this.clear();
  }

  /** Calls `visit` for every item left (holes skipped), front first. */
  forEach(visit: (item: T) => void): void {
    for (let index = this.head; index < this.items.length; index++) {
      const item = this.items[index];
      if (item !== undefined) visit(item);
    }
  }

  /** Removes every item left that `remove` returns true for (leaving a hole). */
  removeWhere(remove: (item: T) => boolean): void {
    for (let index = this.head; index < this.items.length; index++) {
      const item = this.items[index];
      if (item !== undefined && remove(item)) this.items[index] = undefined;
    }
  }

  /** Takes every item left out of the queue, front first (holes skipped). */
  drain(): T[] {
    const left: T[] = [];
    this.forEach((item) => {
      left.push(item);
    });
    this.clear();
    return left;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
  }
}

export class ConsumerInbox {
  private readonly waiters: Array<() => void> = [];
  private failure: unknown = null;
  private readonly signal: AbortSignal;

  /** `signal`: the consumer's lifetime; once aborted, failures are ignored and next() ends. */
  constructor(signal: AbortSignal) {
    this.signal = signal;
  }

  /** Records the first failure of a loop and wakes the readers (ignored once closing). */
  fail(error: unknown): void {
    if (this.failure !== null || this.signal.aborted) return;
    this.failure = error;
    this.wake();
  }

  /** Wakes every reader waiting in next(). */
  wake(): void {
    if (this.waiters.length === 0) return;
    for (const wake of this.waiters.splice(0)) wake();
  }

  /**
   * The iteration: `take()` until it gives a message; else the recorded failure (thrown after
   * `close()`), or the end once the consumer closes, or a wait for wake(). An error thrown by
   * `take` (e.g. a corrupt batch) also closes the consumer and is thrown.
   */
  async next<Item = ConsumedMessage>(
    take: () => Item | null,
    close: () => Promise<void>,
  ): Promise<IteratorResult<Item, undefined>> {
    for (;;) {
      let message: Item | null;
      try {
        message = take();
      } catch (error) {
        await close();
        throw error;
      }
      if (message !== null) return { done: false, value: message };
      if (this.failure !== null) {
        const failure = this.failure;
        this.failure = null;
        await close();
        throw failure;
      }
      if (this.signal.aborted) return { done: true, value: undefined };
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }
}
