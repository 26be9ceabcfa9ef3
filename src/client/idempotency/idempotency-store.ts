/**
 * The contract between consumer.run and an idempotency store (memoryStore, sqliteStore, redisStore,
 * or your own): which message ids were processed.
 *
 * consumer.run({ handler, idempotency: store }) calls, per message, with the message's idempotency
 * key `id` (see idempotency-key.ts):
 *   1. `seen(id)`: true → the message is acked without running the handler (a duplicate);
 *   2. the handler, with a context built from `handling(id)` when the store has it;
 *   3. when the handler succeeded and the handling did not record the id itself: `record(id)`.
 * A failed handler records nothing: the message comes again and runs again.
 * consumer.run never calls these concurrently for one id (its in-process claim, idempotency-guard.ts);
 * for different ids they may run concurrently.
 *
 * A store's errors should be IdempotencyStoreError (code IDEMPOTENCY_STORE): consumer.run nacks the
 * message, which then comes again.
 */

/** The state of one handling (handling(id)) once the handler returned or threw. */
export type HandlingOutcome =
  /** The handler did not record the id: consumer.run calls record(id) if it succeeded. */
  | 'unrecorded'
  /** The id was recorded inside the handling (e.g. in the handler's own SQLite transaction). */
  | 'recorded'
  /** The handling found the id already recorded (and rolled its writes back): a duplicate. */
  | 'duplicate';

/** What a store adds to one handler call. */
export interface IdempotencyHandling<Extra extends object> {
  /** Merged into the handler's context (e.g. `{ transaction }`). */
  readonly context: Extra;
  outcome(): HandlingOutcome;
}

export interface IdempotencyStore<Extra extends object = object> {
  /** For messages and docs: 'memory', 'sqlite', 'redis'. */
  readonly kind: string;
  /** Called once by consumer.run before it consumes: opens files or checks the connection. */
  open?(): Promise<void>;
  /** Whether `id` is recorded as processed (and not expired). Synchronous answers are taken as they are. */
  seen(id: string): boolean | Promise<boolean>;
  /** Records `id` as processed (for the store's time to live). Recording an id twice is harmless. */
  record(id: string): void | Promise<void>;
  /** What the handler's context gets for this id (sqliteStore: a transaction that records it). */
  handling?(id: string): IdempotencyHandling<Extra>;
}

/**
 * The second argument of a consumer.run handler: the message's idempotency key (null when the run
 * has no idempotency store) and what the store adds (sqliteStore: `transaction`).
 */
export type RunContext<Extra extends object = object> = Extra & { readonly idempotencyKey: string | null };
