/**
 * redisStore(client, { ttlMs, prefix }): processed ids as Redis keys, for consumer.run's
 * idempotency kit. `client` is yours: a connected node-redis (v4 or later) client; the store only
 * calls its `sendCommand([...])` and never connects, quits or installs handlers on it.
 *
 * Keys: `${prefix}${id}` (prefix default 'spillway:processed:'; use one prefix per consumer
 * application: two applications sharing one would skip each other's messages), value the time of
 * processing (ms since the epoch).
 *   seen(id)   → EXISTS key
 *   record(id) → SET key now NX PX ttlMs (an id already recorded keeps its first time and expiry)
 * Bounded: every key expires after ttlMs (default 24 h, at most idempotencyTtlMsMax).
 *
 * Guarantee: at-least-once, with duplicates skipped across processes and restarts while the key
 * lives. The id is recorded after the handler succeeded, in another system than the handler's
 * writes: a crash (or a lost connection) between the handler and the SET runs the handler again
 * on redelivery. Two processes handling the same id at the same moment (a queue redelivery after an
 * ack timeout) may both run it. Redis durability is the server's (AOF/RDB settings): a key lost in
 * a Redis crash means one more run. For an exactly-once effect, keep the id with the business data
 * (sqliteStore's transaction, or a unique constraint: docs/IDEMPOTENCY.md).
 */
import { IdempotencyStoreError, InvalidArgumentError } from '../../errors.js';
import { idempotencyKeyLengthMax, idempotencyTtlMsMax } from '../../limits.js';
import type { IdempotencyStore } from './idempotency-store.js';
import { checkedInteger } from './memory-store.js';

/** What redisStore uses of a node-redis client. */
export interface RedisCommandClient {
  sendCommand(args: string[]): Promise<unknown>;
}

export interface RedisStoreOptions {
  /** How long an id counts as processed, in ms. Default 24 h. */
  ttlMs?: number;
  /** Key prefix. Default 'spillway:processed:'; at most idempotencyKeyLengthMax characters. */
  prefix?: string;
}

export const redisStoreDefaults = { ttlMs: 24 * 60 * 60 * 1000, prefix: 'spillway:processed:' } as const;

function redisError(operation: string, error: unknown): IdempotencyStoreError {
  const text = error instanceof Error ? error.message : String(error);
  return new IdempotencyStoreError(`redis idempotency store: ${operation}: ${text}`, { cause: error });
}

export class RedisStore implements IdempotencyStore {
  readonly kind = 'redis';
  readonly ttlMs: number;
  readonly prefix: string;
  private readonly client: RedisCommandClient;

  constructor(client: RedisCommandClient, options: RedisStoreOptions = {}) {
    if (client === null || typeof client !== 'object' || typeof client.sendCommand !== 'function')
      throw new InvalidArgumentError('redisStore takes a connected node-redis client (v4 or later)');
    if (options === null || typeof options !== 'object')
      throw new InvalidArgumentError('redisStore options must be an object');
    this.client = client;
    this.ttlMs = checkedInteger(
      options.ttlMs,
      'redisStore ttlMs',
      1,
      idempotencyTtlMsMax,
      redisStoreDefaults.ttlMs,
    );
    const prefix = options.prefix ?? redisStoreDefaults.prefix;
    if (typeof prefix !== 'string' || prefix.length > idempotencyKeyLengthMax)
      throw new InvalidArgumentError(
        `redisStore prefix must be a string of at most ${idempotencyKeyLengthMax} characters`,
      );
    this.prefix = prefix;
  }

  /** Checks the connection (PING). */
  async open(): Promise<void> {
    let answer: unknown;
    try {
      answer = await this.client.sendCommand(['PING']);
    } catch (error) {
      throw redisError('PING', error);
    }
    if (String(answer) !== 'PONG') throw redisError('PING', new Error(`answered ${String(answer)}`));
  }

  async seen(id: string): Promise<boolean> {
    let answer: unknown;
    try {
      answer = await this.client.sendCommand(['EXISTS', this.prefix + id]);
    } catch (error) {
      throw redisError('EXISTS', error);
    }
    return Number(answer) > 0;
  }

  async record(id: string): Promise<void> {
    try {
      // OK when set, null when the key exists (recorded before): both mean recorded.
      await this.client.sendCommand([
        'SET',
        this.prefix + id,
        String(Date.now()),
        'NX',
        'PX',
        String(this.ttlMs),
      ]);
    } catch (error) {
      throw redisError('SET NX PX', error);
    }
  }
}

/** A Redis idempotency store over your node-redis client: see RedisStore. */
export function redisStore(client: RedisCommandClient, options: RedisStoreOptions = {}): RedisStore {
  return new RedisStore(client, options);
}
