/**
 * The in-flight window of a transport: at most `limit` requests on the wire at once; callers beyond
 * it wait in a FIFO queue of at most `queuedMax` entries, and beyond that are refused with
 * BACKPRESSURE (retriable). tryAcquire() takes a slot without allocating when one is free.
 * Single-threaded; every acquire that succeeded must be paired with exactly one release().
 */
import { assert } from '../assert.js';
import { SpillwayError } from '../errors.js';

interface Waiter {
  resolve: () => void;
  reject: (error: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  /** Admitted, aborted or rejected: no longer counted as waiting. */
  settled: boolean;
}

export class RequestWindow {
  private limitCount: number;
  readonly queuedMax: number;
  private inFlight = 0;
  /** FIFO of waiters; `head` is the index of the first live one (shifting arrays is O(n)). */
  private waiters: Array<Waiter | null> = [];
  private head = 0;
  private waitingCount = 0;

  constructor(limit: number, queuedMax: number) {
    if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`window limit ${limit} < 1`);
    this.limitCount = limit;
    this.queuedMax = queuedMax;
  }

  get limit(): number {
    return this.limitCount;
  }

  get inFlightCount(): number {
    return this.inFlight;
  }

  get queuedCount(): number {
    return this.waitingCount;
  }

  /** Changes the limit (e.g. to what the broker announced in HELLO) and admits waiters that now fit. */
  setLimit(limit: number): void {
    if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`window limit ${limit} < 1`);
    this.limitCount = limit;
    this.admit();
  }

  /** Takes a slot if one is free and nobody is queued ahead. */
  tryAcquire(): boolean {
    if (this.inFlight < this.limitCount && this.waitingCount === 0) {
      this.inFlight++;
      return true;
    }
    return false;
  }

  /** Waits for a slot (FIFO). Rejects with BACKPRESSURE when the queue is full, or when `signal` aborts. */
  wait(signal?: AbortSignal): Promise<void> {
    if (this.waitingCount >= this.queuedMax) {
      return Promise.reject(
        new SpillwayError(
          'BACKPRESSURE',
          `${this.waitingCount} requests already wait for one of ${this.limitCount} in-flight slots`,
        ),
      );
    }
    if (signal?.aborted) return Promise.reject(abortError(signal));
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, signal, onAbort: undefined, settled: false };
      this.waiters.push(waiter);
      this.waitingCount++;
      if (signal) {
        waiter.onAbort = () => {
          if (waiter.settled) return;
          waiter.settled = true;
          this.waitingCount--;
          reject(abortError(signal));
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
    });
  }

  release(): void {
    assert(this.inFlight > 0, 'RequestWindow.release without a matching acquire');
    this.inFlight--;
    this.admit();
  }

  /** Rejects every queued waiter with `error` (the transport is closing). Slots taken stay taken. */
  rejectQueued(error: unknown): void {
    const waiters = this.waiters;
    for (let index = this.head; index < waiters.length; index++) {
      const waiter = waiters[index];
      if (waiter && !waiter.settled) {
        waiter.settled = true;
        this.detach(waiter);
        waiter.reject(error);
      }
    }
    this.waiters = [];
    this.head = 0;
    this.waitingCount = 0;
  }

  private admit(): void {
    const waiters = this.waiters;
    while (this.inFlight < this.limitCount && this.waitingCount > 0) {
      const waiter = waiters[this.head];
      waiters[this.head] = null;
      this.head++;
      if (!waiter || waiter.settled) continue;
      waiter.settled = true;
      this.waitingCount--;
      this.inFlight++;
      this.detach(waiter);
      waiter.resolve();
    }
    if (this.head > 1024 && this.head * 2 > waiters.length) {
      this.waiters = waiters.slice(this.head);
      this.head = 0;
    } else if (this.waitingCount === 0 && waiters.length > 0) {
      this.waiters = [];
      this.head = 0;
    }
  }

  private detach(waiter: Waiter): void {
    if (waiter.signal && waiter.onAbort) waiter.signal.removeEventListener('abort', waiter.onAbort);
  }
}

/** The error a request rejects with when its AbortSignal fires (its reason if that is a SpillwayError). */
export function abortError(signal: AbortSignal): SpillwayError {
  const reason: unknown = signal.reason;
  if (reason instanceof SpillwayError) return reason;
  return new SpillwayError('CONNECTION_CLOSED', 'request aborted', { retriable: false, cause: reason });
}
