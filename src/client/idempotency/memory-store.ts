/**
 * memoryStore({ max, ttlMs }): processed ids in this process's memory, for consumer.run's
 * idempotency kit.
 *
 * Guarantee: per process and per store object only. A restart forgets every id, and two processes
 * (two members of a group, say) do not see each other's ids: after a rebalance or restart a
 * redelivered message runs again. Use it for duplicates that come close together in one process
 * (a rewind after a failed handler, a producer retry read by the same consumer), or in tests.
 *
 * Bounded: at most `max` ids (default 100,000, at most idempotencyMemoryIdsMax), least recently
 * recorded or seen first out; an id older than `ttlMs` (default 24 h, at most idempotencyTtlMsMax)
 * counts as unseen. Both checks cost O(1) (a Map in recency order).
 */
import { InvalidArgumentError } from '../../errors.js';
import { idempotencyMemoryIdsMax, idempotencyTtlMsMax } from '../../limits.js';
import type { IdempotencyStore } from './idempotency-store.js';

export interface MemoryStoreOptions {
  /** Most ids kept. Default 100,000. */
  max?: number;
  /** How long an id counts as processed, in ms. Default 24 h. */
  ttlMs?: number;
  /** Wall time in ms (tests drive expiry with it). Default Date.now. */
  now?: () => number;
}

export const memoryStoreDefaults = { max: 100_000, ttlMs: 24 * 60 * 60 * 1000 } as const;

export function checkedInteger(
  value: unknown,
  name: string,
  min: number,
  max: number,
  fallback: number,
): number {
  const resolved = value ?? fallback;
  if (typeof resolved !== 'number' || !Number.isSafeInteger(resolved) || resolved < min || resolved > max) {
    throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return resolved;
}

export class MemoryStore implements IdempotencyStore {
  readonly kind = 'memory';
  readonly max: number;
  readonly ttlMs: number;
  private readonly now: () => number;
  /** id -> expiry (ms since the epoch); Map order is recency, oldest first. */
  private readonly expiries = new Map<string, number>();

  constructor(options: MemoryStoreOptions = {}) {
    if (options === null || typeof options !== 'object')
      throw new InvalidArgumentError('memoryStore options must be an object');
    this.max = checkedInteger(
      options.max,
      'memoryStore max',
      1,
      idempotencyMemoryIdsMax,
      memoryStoreDefaults.max,
    );
    this.ttlMs = checkedInteger(
      options.ttlMs,
      'memoryStore ttlMs',
      1,
      idempotencyTtlMsMax,
      memoryStoreDefaults.ttlMs,
    );
    if (options.now !== undefined && typeof options.now !== 'function')
      throw new InvalidArgumentError('memoryStore now must be a function');
    this.now = options.now ?? Date.now;
  }

  /** Ids held (expired ones included until they are looked at or pushed out). */
  get size(): number {
    return this.expiries.size;
  }

  /** Synchronous (consumer.run takes the answer without waiting a turn). */
  seen(id: string): boolean {
    const expiry = this.expiries.get(id);
    if (expiry === undefined) return false;
    this.expiries.delete(id);
    if (expiry <= this.now()) return false;
    this.expiries.set(id, expiry);
    return true;
  }

  record(id: string): void {
    this.expiries.delete(id);
    this.expiries.set(id, this.now() + this.ttlMs);
    if (this.expiries.size > this.max) {
      const oldest = this.expiries.keys().next();
      if (!oldest.done) this.expiries.delete(oldest.value);
    }
  }

  clear(): void {
    this.expiries.clear();
  }
}

/** An in-process LRU idempotency store: see MemoryStore. */
export function memoryStore(options: MemoryStoreOptions = {}): MemoryStore {
  return new MemoryStore(options);
}
