/**
 * consumer.run's side of the idempotency kit: around each handler call (or worker-pool batch) it
 * checks the store, claims the id in this process, and records the id after success.
 *
 * In-process claim: while a delivery of an id is being checked or handled, another delivery of the
 * same id (a duplicate in another lane, or running concurrently) does not run its handler: it waits
 * for the first one's outcome. Recorded → the duplicate is acked (counted as skipped); not recorded
 * (failed, or not run) → the duplicate claims the id in turn and runs, except in the worker path
 * when the consumer rewinds and the duplicate is later in the first one's partition: it is dropped
 * unsettled then, since the rewind brings it again in order. Claims are
 * only held by messages consumer.run has taken, so there are at most pendingMessagesMax of them.
 * Across processes no claim exists: what two processes running one id at once do depends on the
 * store (see docs/IDEMPOTENCY.md).
 *
 * Store errors (seen/record failing) and a bad key make the message fail (nack, it comes again):
 * a message is never acked unless its id was found recorded or recorded after its handler succeeded.
 *
 * Single-threaded: one guard per run, used from the main thread only.
 */
import { IdempotencyStoreError } from '../../errors.js';
import type { ConsumedMessage } from '../message.js';
import { type IdempotencyKeyFunction, idempotencyKeyOf } from './idempotency-key.js';
import type { IdempotencyHandling, IdempotencyStore, RunContext } from './idempotency-store.js';

/** Outcome of one message: handled (error null), failed (error text), duplicate (acked, skipped), or not run. */
export type GuardedOutcome = { error: string | null } | 'duplicate' | 'skipped';

/**
 * One in-process claim of an id, by the delivery `holder`. `wait()` resolves with whether the
 * holder recorded the id; the promise is made only when someone waits (most claims end unwaited).
 */
class Claim {
  readonly holder: ConsumedMessage;
  private recorded: boolean | null = null;
  private waiters: Array<(recorded: boolean) => void> | null = null;

  constructor(holder: ConsumedMessage) {
    this.holder = holder;
  }

  wait(): Promise<boolean> {
    if (this.recorded !== null) return Promise.resolve(this.recorded);
    return new Promise((resolve) => {
      this.waiters ??= [];
      this.waiters.push(resolve);
    });
  }

  finish(recorded: boolean): void {
    this.recorded = recorded;
    const waiters = this.waiters;
    this.waiters = null;
    if (waiters !== null) for (const wake of waiters) wake(recorded);
  }
}

export function errorText(thrown: unknown): string {
  return thrown instanceof Error ? thrown.message || thrown.name : String(thrown);
}

export class IdempotencyGuard<Extra extends object> {
  private readonly store: IdempotencyStore<Extra>;
  private readonly keyFunction: IdempotencyKeyFunction;
  private readonly claims = new Map<string, Claim>();

  constructor(store: IdempotencyStore<Extra>, keyFunction: IdempotencyKeyFunction) {
    this.store = store;
    this.keyFunction = keyFunction;
  }

  /** Ids claimed now (for tests and the bound: never above the run's pending messages). */
  get claimedCount(): number {
    return this.claims.size;
  }

  /**
   * The handler path: runs `handler(message, context)` unless the id is recorded. Resolves
   * 'duplicate' (skip and ack) or 'handled' (recorded); rejects with what the handler or the store
   * threw (nothing recorded).
   */
  async handle(
    message: ConsumedMessage,
    handler: (message: ConsumedMessage, context: RunContext<Extra>) => unknown,
  ): Promise<'handled' | 'duplicate'> {
    const id = idempotencyKeyOf(message, this.keyFunction);
    for (let held = this.claims.get(id); held !== undefined; held = this.claims.get(id)) {
      if (await held.wait()) return 'duplicate';
    }
    const claim = this.claim(id, message);
    let recorded = false;
    try {
      const seen = this.seen(id);
      if (typeof seen === 'boolean' ? seen : await seen) {
        recorded = true;
        return 'duplicate';
      }
      const handling = this.store.handling?.(id) ?? null;
      const context = contextOf(id, handling);
      try {
        await handler(message, context);
      } catch (error) {
        if (handling?.outcome() === 'duplicate') {
          recorded = true;
          return 'duplicate';
        }
        throw error;
      }
      const outcome = handling?.outcome() ?? 'unrecorded';
      if (outcome === 'unrecorded') {
        const recording = this.record(id);
        if (recording !== undefined) await recording;
      }
      recorded = true;
      return outcome === 'duplicate' ? 'duplicate' : 'handled';
    } finally {
      this.release(id, claim, recorded);
    }
  }

  /**
   * The worker-pool path: admits the messages whose ids are neither recorded nor claimed, has
   * `run` handle those (in worker threads: no handler context there), records the handled ones and
   * answers an outcome per message, in order. Messages whose id was claimed wait for the claim and
   * are then duplicates, dropped (`rewinds`: later in the failed holder's partition) or admitted in
   * a further round. If `run` throws, the claims are released unrecorded and the error goes to the
   * caller.
   */
  async handleBatch(
    messages: readonly ConsumedMessage[],
    run: (admitted: ConsumedMessage[]) => Promise<GuardedOutcome[]>,
    rewinds: boolean,
  ): Promise<GuardedOutcome[]> {
    const outcomes: GuardedOutcome[] = new Array(messages.length);
    const admitted: Array<{ index: number; id: string; claim: Claim }> = [];
    const followers: Array<{ index: number; claim: Claim }> = [];
    for (let index = 0; index < messages.length; index++) {
      let id: string;
      try {
        id = idempotencyKeyOf(messages[index]!, this.keyFunction);
      } catch (error) {
        outcomes[index] = { error: errorText(error) };
        continue;
      }
      const held = this.claims.get(id);
      if (held !== undefined) followers.push({ index, claim: held });
      else admitted.push({ index, id, claim: this.claim(id, messages[index]!) });
    }
    const seen = await Promise.all(
      admitted.map((entry) =>
        Promise.resolve()
          .then(() => this.seen(entry.id))
          .then(
            (found) => found,
            (error: unknown) => error as Error,
          ),
      ),
    );
    const toRun: typeof admitted = [];
    for (let position = 0; position < admitted.length; position++) {
      const entry = admitted[position]!;
      const found = seen[position]!;
      if (found === true) {
        outcomes[entry.index] = 'duplicate';
        this.release(entry.id, entry.claim, true);
      } else if (found === false) {
        toRun.push(entry);
      } else {
        outcomes[entry.index] = { error: errorText(found) };
        this.release(entry.id, entry.claim, false);
      }
    }
    let ran: GuardedOutcome[] = [];
    if (toRun.length > 0) {
      try {
        ran = await run(toRun.map((entry) => messages[entry.index]!));
      } catch (error) {
        for (const entry of toRun) this.release(entry.id, entry.claim, false);
        throw error;
      }
    }
    await Promise.all(
      toRun.map(async (entry, position) => {
        let outcome = ran[position] ?? 'skipped';
        let recorded = false;
        if (outcome !== 'skipped' && outcome !== 'duplicate' && outcome.error === null) {
          try {
            await this.record(entry.id);
            recorded = true;
          } catch (error) {
            outcome = { error: errorText(error) };
          }
        }
        outcomes[entry.index] = outcome;
        this.release(entry.id, entry.claim, recorded);
      }),
    );
    const again: number[] = [];
    for (const { index, claim } of followers) {
      const message = messages[index]!;
      const holder = claim.holder;
      if (await claim.wait()) outcomes[index] = 'duplicate';
      else if (
        rewinds &&
        message.topic === holder.topic &&
        message.partition === holder.partition &&
        message.offset > holder.offset
      )
        outcomes[index] = 'skipped';
      else again.push(index);
    }
    if (again.length > 0) {
      const more = await this.handleBatch(
        again.map((index) => messages[index]!),
        run,
        rewinds,
      );
      for (let position = 0; position < again.length; position++)
        outcomes[again[position]!] = more[position]!;
    }
    return outcomes;
  }

  private claim(id: string, holder: ConsumedMessage): Claim {
    const claim = new Claim(holder);
    this.claims.set(id, claim);
    return claim;
  }

  private release(id: string, claim: Claim, recorded: boolean): void {
    if (this.claims.get(id) === claim) this.claims.delete(id);
    claim.finish(recorded);
  }

  /** The store's answer, synchronous when the store's is (memoryStore); failures as IdempotencyStoreError. */
  private seen(id: string): boolean | Promise<boolean> {
    let answer: boolean | Promise<boolean>;
    try {
      answer = this.store.seen(id);
    } catch (error) {
      throw storeError(this.store.kind, 'seen', error);
    }
    if (typeof answer === 'boolean') return answer;
    return Promise.resolve(answer).then(
      (found) => found === true,
      (error: unknown) => {
        throw storeError(this.store.kind, 'seen', error);
      },
    );
  }

  private record(id: string): undefined | Promise<void> {
    let answer: void | Promise<void>;
    try {
      answer = this.store.record(id);
    } catch (error) {
      throw storeError(this.store.kind, 'record', error);
    }
    if (typeof (answer as Promise<void> | undefined)?.then !== 'function') return undefined;
    return Promise.resolve(answer).then(undefined, (error: unknown) => {
      throw storeError(this.store.kind, 'record', error);
    });
  }
}

/** Store failures as IdempotencyStoreError (as they are, when the store already threw one). */
function storeError(kind: string, operation: string, error: unknown): Error {
  if (error instanceof IdempotencyStoreError) return error;
  return new IdempotencyStoreError(`${kind} idempotency store: ${operation} failed: ${errorText(error)}`, {
    cause: error,
  });
}

function contextOf<Extra extends object>(
  id: string,
  handling: IdempotencyHandling<Extra> | null,
): RunContext<Extra> {
  if (handling === null) return { idempotencyKey: id } as RunContext<Extra>;
  return { ...handling.context, idempotencyKey: id };
}
