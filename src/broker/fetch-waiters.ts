/**
 * Long-poll bookkeeping: fetches waiting for data on a partition. A fetch that found fewer bytes
 * than it wants registers here and is woken by the next append to that partition (`wake`), by its
 * timeout, by its abort signal, or by the broker closing (`wakeAll`); then it reads again.
 *
 * Bounded (limits.ts): at most `perKeyMax` waiters per partition and `totalMax` in all; one more
 * fails at once with BackpressureError. Every waiter owns one timer and at most one abort listener,
 * both released the moment it settles, whatever settles it: nothing leaks.
 *
 * Timeouts run on the injected clock (the broker's), so a test can time them out with a ManualClock.
 * A waiting fetch's timer keeps the process alive (someone awaits its answer).
 *
 * Keys are compared by identity (the broker uses its Partition objects). Single-threaded.
 */
import { type Clock, type ClockTimer, systemClock } from '../clock.js';
import { BackpressureError } from '../errors.js';

/** Why a wait ended: data arrived (or the partition changed), the time ran out, the caller gave up, the broker closes. */
export type WakeReason = 'data' | 'timeout' | 'abort' | 'close';

interface Waiter<K> {
  key: K;
  resolve: (reason: WakeReason) => void;
  timer: ClockTimer | null;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | null;
  settled: boolean;
}

export class FetchWaiters<K> {
  private readonly waitersByKey = new Map<K, Set<Waiter<K>>>();
  private count = 0;
  private readonly perKeyMax: number;
  private readonly totalMax: number;
  private readonly clock: Clock;

  constructor(perKeyMax: number, totalMax: number, clock: Clock = systemClock) {
    this.perKeyMax = perKeyMax;
    this.totalMax = totalMax;
    this.clock = clock;
  }

  /** Waiters registered now, over all keys. */
  get waitingCount(): number {
    return this.count;
  }

  waitingCountFor(key: K): number {
    return this.waitersByKey.get(key)?.size ?? 0;
  }

  /**
   * Waits at most `timeoutMs` for `wake(key)`. Resolves with the reason the wait ended; never
   * rejects. Throws BackpressureError (synchronously) when the limits are reached.
   */
  wait(key: K, timeoutMs: number, signal?: AbortSignal): Promise<WakeReason> {
    if (signal?.aborted) return Promise.resolve('abort');
    let waiters = this.waitersByKey.get(key);
    if (this.count >= this.totalMax) {
      throw new BackpressureError(`too many fetches waiting for data (limit ${this.totalMax})`);
    }
    if (waiters !== undefined && waiters.size >= this.perKeyMax) {
      throw new BackpressureError(
        `too many fetches waiting for data on one partition (limit ${this.perKeyMax})`,
      );
    }
    if (waiters === undefined) {
      waiters = new Set();
      this.waitersByKey.set(key, waiters);
    }
    const set = waiters;
    return new Promise<WakeReason>((resolve) => {
      const waiter: Waiter<K> = { key, resolve, timer: null, signal, onAbort: null, settled: false };
      waiter.timer = this.clock.setTimeout(() => this.settle(waiter, 'timeout'), Math.max(0, timeoutMs));
      if (signal !== undefined) {
        waiter.onAbort = () => this.settle(waiter, 'abort');
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      set.add(waiter);
      this.count++;
    });
  }

  /** Wakes every fetch waiting on `key` (an append happened, or the partition went away). */
  wake(key: K): void {
    const waiters = this.waitersByKey.get(key);
    if (waiters === undefined) return;
    for (const waiter of [...waiters]) this.settle(waiter, 'data');
  }

  /** Wakes every waiting fetch with `reason` (the broker closes). */
  wakeAll(reason: WakeReason): void {
    for (const waiters of [...this.waitersByKey.values()]) {
      for (const waiter of [...waiters]) this.settle(waiter, reason);
    }
  }

  private settle(waiter: Waiter<K>, reason: WakeReason): void {
    if (waiter.settled) return;
    waiter.settled = true;
    this.clock.clearTimer(waiter.timer);
    waiter.timer = null;
    if (waiter.onAbort !== null) waiter.signal?.removeEventListener('abort', waiter.onAbort);
    waiter.onAbort = null;
    const waiters = this.waitersByKey.get(waiter.key);
    if (waiters?.delete(waiter)) {
      this.count--;
      if (waiters.size === 0) this.waitersByKey.delete(waiter.key);
    }
    waiter.resolve(reason);
  }
}
