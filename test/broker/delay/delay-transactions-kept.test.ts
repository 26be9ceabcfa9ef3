/**
 * The bound on the transactions a cluster member's delay service keeps recognising
 * (`BrokerOptions.delayTransactionsKeptMax`, default limits.ts delayTransactionsKeptMax), in process on
 * one broker driven by a ManualClock, in cluster mode (`joinCluster`, one term on its own logs, the
 * replication waits resolved at once) and through the entry point of DELAY_SCHEDULE_COMMITTED
 * (`scheduleCommittedHere`):
 * - past the bound a new transaction's committed delayed batch gets BACKPRESSURE (retriable: the
 *   coordinator retries it), and nothing of it is stored or scheduled;
 * - a resend of a kept transaction's batch is still answered with its first result, and a kept
 *   transaction's next batch is still taken: the bound counts transactions, never refuses a kept one;
 * - once the kept entries are older than delayTransactionKeepMs the refused transaction is taken;
 * - every message taken fires once.
 */
import { describe, expect, it } from 'vitest';
import { LocalDelayTargets } from '../../../src/broker/delay/delay-targets.js';
import { stampCommittedBatch } from '../../../src/broker/transactions/broker-transactions.js';
import { ManualClock } from '../../../src/clock.js';
import { SpillwayError } from '../../../src/errors.js';
import { BatchAttributes } from '../../../src/format/batch-header.js';
import { encodeBatch } from '../../../src/format/record-batch.js';
import { delayTransactionKeepMs } from '../../../src/limits.js';
import { delayMsHeader } from '../../../src/protocol/reserved-headers.js';
import { openBroker, temporaryDirectory, valuesOf } from '../helpers.js';

async function until(what: string, done: () => Promise<boolean> | boolean): Promise<void> {
  for (let waited = 0; !(await done()); waited += 5) {
    if (waited > 10_000) throw new Error(`${what}: not reached`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Half `index` of transaction `id` as the coordinator hands it over: one message due 1 s after the commit. */
function committedHalf(id: number, index: number): Uint8Array {
  const batch = encodeBatch([{ value: `${id}/${index}`, headers: [[delayMsHeader, '1000']] }], {
    attributes: BatchAttributes.delayed,
  });
  return stampCommittedBatch(batch, id, index);
}

async function refusal(promise: Promise<unknown>): Promise<SpillwayError> {
  const error = await promise.then(
    () => null,
    (caught: unknown) => caught,
  );
  if (!(error instanceof SpillwayError)) throw new Error(`expected a SpillwayError, got ${String(error)}`);
  return error;
}

describe('delay service: the bound on kept transactions (cluster mode, ManualClock)', () => {
  it('refuses a new transaction past the bound with BACKPRESSURE, never a kept one; takes it once entries expire', async () => {
    const clock = new ManualClock();
    const broker = await openBroker(temporaryDirectory(), { clock, delayTransactionsKeptMax: 2 });
    await broker.topics.create('t', { partitions: 1 });
    const delay = broker.delay;
    delay.joinCluster({ delay: async () => {}, dead: async () => {}, state: async () => {} }, () =>
      Promise.reject(new SpillwayError('NOT_COORDINATOR', 'no other broker in this test')),
    );
    const targets = new LocalDelayTargets(
      (name) => broker.topics.topicIfExists(name),
      (topic, partition, batch) => broker.messages.produce(topic, partition, batch),
    );
    delay.startTerm(Object.assign(targets, { close: () => undefined }));
    await until('the term serves', () => delay.refusal === null);
    const delayLog = broker.topics.partitionOf('__delay', 0).log;
    const commitMs = clock.nowMs();
    const schedule = (id: number, index: number) =>
      delay.scheduleCommittedHere('t', 0, committedHalf(id, index), commitMs);

    const first = await schedule(1, 0);
    await schedule(2, 0);
    const stored = { end: delayLog.logEndOffset, stats: delay.stats() };
    expect(stored.stats).toMatchObject({ scheduled: 2, pending: 2 });

    // A third transaction: refused, retriable, saying why; nothing of it stored or scheduled.
    const refused = await refusal(schedule(3, 0));
    expect(refused).toMatchObject({ code: 'BACKPRESSURE', retriable: true });
    expect(refused.message).toContain('2 transactions with delayed messages are kept recognisable');
    expect(refused.message).toContain('at most 2');
    expect(delayLog.logEndOffset).toBe(stored.end);
    expect(delay.stats()).toMatchObject({ scheduled: 2, pending: 2 });

    // Kept transactions at the bound: a resend is answered with its first offsets, a next half taken.
    expect(await schedule(1, 0)).toEqual(first);
    expect(delayLog.logEndOffset).toBe(stored.end);
    await schedule(1, 1);
    expect(delay.stats()).toMatchObject({ scheduled: 3, pending: 3 });
    expect((await refusal(schedule(3, 0))).code).toBe('BACKPRESSURE');

    // The kept entries expire: the coordinator's next retry of transaction 3 is taken.
    clock.advance(delayTransactionKeepMs + 1);
    const taken = await schedule(3, 0);
    expect(taken.baseOffset).toBeGreaterThan(stored.end);
    expect(delay.stats().scheduled).toBe(4);

    // Everything taken fires once (transaction 3 one second after its commit's decision time, long past).
    clock.advance(1000);
    const fired = async () =>
      valuesOf((await broker.messages.fetch('t', 0, 0, { maxBytes: 1 << 20, maxWaitMs: 0 })).records);
    await until('every message fired', async () => (await fired()).length >= 4);
    expect((await fired()).sort()).toEqual(['1/0', '1/1', '2/0', '3/0']);
    expect(delay.stats()).toMatchObject({ pending: 0, fired: 4 });
  });
});
