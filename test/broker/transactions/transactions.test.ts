/**
 * Transactional messages end to end through the client (in-process transport) on a broker driven by
 * a ManualClock: commit, rollback, decisions applied twice, check-back (commit, rollback, unknown then
 * commit, no producer connected -> rollback after maxChecks, another member of the group answering),
 * the check-back clock across a restart, and the bounds. Visibility is checked by reading every
 * partition of the target topics.
 */
import { describe, expect, it } from 'vitest';
import { Spillway } from '../../../src/client/index.js';
import type { CheckAnswer, TransactionCheck } from '../../../src/client/transactional-producer.js';
import { ManualClock } from '../../../src/clock.js';
import { SpillwayError } from '../../../src/errors.js';
import { BatchAttributes } from '../../../src/format/batch-header.js';
import { encodeBatch } from '../../../src/format/record-batch.js';
import { transactionBeginRecordDelayMs, transactionsOpenPerSessionMax } from '../../../src/limits.js';
import { msgIdHeader } from '../../../src/protocol/reserved-headers.js';
import type { Broker } from '../../../src/spillway-broker.js';
import { openBroker, temporaryDirectory, valuesOf } from '../helpers.js';

/** Lets I/O in flight finish (state log fdatasyncs run on the thread pool, not on the clock). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 5));
}

/** Waits until `condition` holds (fails the test after 10 s: a hang, not a timing assertion). */
async function until(condition: () => boolean): Promise<void> {
  for (let waited = 0; !condition(); waited += 5) {
    if (waited > 10_000) throw new Error('condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Every value visible to consumers in every partition of `topic`, partition by partition. */
async function visible(broker: Broker, topic: string): Promise<string[]> {
  const values: string[] = [];
  const { partitionCount } = broker.topics.describe(topic);
  for (let partition = 0; partition < partitionCount; partition++) {
    const result = await broker.messages.fetch(topic, partition, 0, { maxBytes: 1 << 20, maxWaitMs: 0 });
    values.push(...valuesOf(result.records));
  }
  return values.sort();
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'none';
  } catch (error) {
    return error instanceof SpillwayError ? error.code : String(error);
  }
}

async function setup(options: { restartable?: boolean } = {}) {
  const clock = new ManualClock();
  const dataDir = temporaryDirectory();
  const broker = await openBroker(dataDir, { clock, durability: 'interval' });
  broker.transactions.onLog = (line) => logs.push(line);
  const logs: string[] = [];
  await broker.topics.create('orders', { partitions: 3 });
  await broker.topics.create('audit', { partitions: 1, durability: 'always' });
  void options;
  return { clock, dataDir, broker, logs };
}

async function client(broker: Broker): Promise<Spillway> {
  return Spillway.connect(broker);
}

describe('transactions', () => {
  it('commit makes every message visible at once, across topics and partitions; duplicates are answered', async () => {
    const { broker } = await setup();
    const sw = await client(broker);
    const tp = sw.producer({ group: 'order-service', checkTransaction: () => 'unknown' });
    const txn = await tp.beginTransaction();
    const sent = await Promise.all([
      txn.send('orders', { key: 'o-1', value: 'created-1' }),
      txn.send('orders', { key: 'o-2', value: 'created-2' }),
      txn.send('orders', { key: 'o-3', value: 'created-3' }),
      txn.send('audit', { value: 'audit-1' }),
    ]);
    expect(await visible(broker, 'orders')).toEqual([]);
    expect(await visible(broker, 'audit')).toEqual([]);
    // Sends of one turn travel in one TXN_SEND: one half batch per target partition.
    const halves = new Set(sent.map((result) => result.halfOffset)).size;
    expect(halves).toBe(
      new Set(sent.map((result, i) => `${i === 3 ? 'audit' : 'orders'} ${result.partition}`)).size,
    );
    expect(broker.transactions.list()).toMatchObject([
      { id: txn.id, group: 'order-service', halves, messages: 4 },
    ]);
    const result = await txn.commit();
    expect(result).toMatchObject({
      id: txn.id,
      outcome: 'committed',
      duplicate: false,
      decidedBy: 'producer',
      messages: 4,
    });
    expect(await visible(broker, 'orders')).toEqual(['created-1', 'created-2', 'created-3']);
    expect(await visible(broker, 'audit')).toEqual(['audit-1']);
    // The delivered batch is marked transactional and stamped with the transaction.
    const fetched = await broker.messages.fetch('audit', 0, 0, { maxBytes: 1 << 20, maxWaitMs: 0 });
    const view = new DataView(fetched.records.buffer, fetched.records.byteOffset);
    expect(view.getUint16(18, true) & BatchAttributes.transactional).not.toBe(0);
    expect(Number(view.getBigInt64(40, true))).toBe(txn.id);
    // Twice: applied once, the answer says so; a contradicting decision or a late send is refused.
    expect(await txn.commit()).toMatchObject({ outcome: 'committed', duplicate: true });
    await settle();
    expect(await txn.commit()).toMatchObject({ outcome: 'committed', duplicate: true });
    expect(await codeOf(txn.rollback())).toBe('TRANSACTION_COMMITTED');
    expect(await codeOf(txn.send('orders', { value: 'late' }))).toBe('TRANSACTION_COMMITTED');
    expect(await visible(broker, 'orders')).toHaveLength(3);
    expect(broker.transactions.list()).toEqual([]);
    expect(broker.transactions.stats()).toMatchObject({ committed: 1, open: 0, halfBytes: 0 });
    await sw.close();
  });

  it('rollback discards; a commit after it is refused and says so', async () => {
    const { broker } = await setup();
    const sw = await client(broker);
    const tp = sw.producer({ group: 'g', checkTransaction: () => 'unknown' });
    const txn = await tp.beginTransaction();
    await txn.send('orders', { value: 'never' });
    expect(await txn.rollback()).toMatchObject({ outcome: 'rolled-back', duplicate: false, messages: 1 });
    expect(await txn.rollback()).toMatchObject({ outcome: 'rolled-back', duplicate: true });
    await expect(txn.commit()).rejects.toMatchObject({
      code: 'TRANSACTION_ROLLED_BACK',
      message: /by the producer/,
    });
    expect(await visible(broker, 'orders')).toEqual([]);
    // A plain producer on the same topic is unaffected.
    await tp.send('orders', { value: 'plain' });
    expect(await visible(broker, 'orders')).toEqual(['plain']);
    expect(await codeOf(broker.transactions.end(null, 999_999, 'commit'))).toBe('UNKNOWN_TRANSACTION');
    await sw.close();
  });

  it('check-back answered commit, rollback, and unknown then commit', async () => {
    const { broker, clock } = await setup();
    const sw = await client(broker);
    const answers = new Map<string, CheckAnswer[]>();
    const asked: TransactionCheck[] = [];
    const tp = sw.producer({
      group: 'g',
      checkAfterMs: 1000,
      checkTransaction: async (check) => {
        asked.push(check);
        const txnValue = byId.get(check.id)!;
        return answers.get(txnValue)!.shift() ?? 'unknown';
      },
    });
    const byId = new Map<number, string>();
    async function undecided(value: string, script: CheckAnswer[]): Promise<number> {
      const txn = await tp.beginTransaction();
      byId.set(txn.id, value);
      answers.set(value, script);
      await txn.send('orders', { value });
      return txn.id;
    }
    const committed = await undecided('by-check', ['commit']);
    const rolledBack = await undecided('rolled-by-check', ['rollback']);
    const later = await undecided('unknown-then-commit', ['unknown', 'commit']);
    clock.advance(999);
    await settle();
    expect(asked).toEqual([]);
    clock.advance(1);
    await until(() => asked.length === 3 && broker.transactions.list().length === 1);
    expect(asked.map((check) => [check.id, check.checks]).sort((a, b) => a[0]! - b[0]!)).toEqual([
      [committed, 1],
      [rolledBack, 1],
      [later, 1],
    ]);
    expect(await visible(broker, 'orders')).toEqual(['by-check']);
    expect(broker.transactions.list().map((info) => [info.id, info.checks])).toEqual([[later, 1]]);
    // The backoff doubles: the second check comes 2 s after the first.
    clock.advance(1999);
    await settle();
    expect(asked).toHaveLength(3);
    clock.advance(1);
    await until(() => asked.length === 4 && broker.transactions.list().length === 0);
    expect(await visible(broker, 'orders')).toEqual(['by-check', 'unknown-then-commit']);
    expect(await codeOf(broker.transactions.end(null, rolledBack, 'commit'))).toBe('TRANSACTION_ROLLED_BACK');
    expect(await broker.transactions.end(null, committed, 'commit')).toMatchObject({
      duplicate: true,
      decidedBy: 'check-back',
    });
    expect(broker.transactions.stats().checkAnswers).toEqual({
      commit: 2,
      rollback: 1,
      unknown: 1,
      failed: 0,
    });
    await sw.close();
  });

  it('no producer connected: rolled back after maxChecks check-backs, logged; a late commit is told why', async () => {
    const { broker, clock, logs } = await setup();
    const sw = await client(broker);
    const tp = sw.producer({
      group: 'g',
      checkAfterMs: 1000,
      maxChecks: 3,
      checkTransaction: () => 'commit',
    });
    const txn = await tp.beginTransaction();
    await txn.send('orders', { value: 'orphan' });
    await sw.close();
    await settle();
    // Checks at 1 s, +2 s, +4 s; the rollback 8 s after the third.
    for (const [index, step] of [1000, 2000, 4000].entries()) {
      clock.advance(step);
      await until(() => broker.transactions.stats().checksWithoutProducer === index + 1);
    }
    expect(broker.transactions.list()).toMatchObject([{ id: txn.id, checks: 3 }]);
    clock.advance(7999);
    await settle();
    expect(broker.transactions.list()).toHaveLength(1);
    clock.advance(1);
    await until(() => broker.transactions.list().length === 0);
    expect(broker.transactions.stats()).toMatchObject({ rolledBack: 1, timedOut: 1 });
    expect(logs.join('\n')).toMatch(
      new RegExp(`transaction ${txn.id} .* rolled back: undecided after 3 check-backs`),
    );
    await expect(broker.transactions.end(null, txn.id, 'commit')).rejects.toMatchObject({
      code: 'TRANSACTION_ROLLED_BACK',
      message: /by the broker after 3 check-backs/,
    });
    expect(await visible(broker, 'orders')).toEqual([]);
  });

  it('another member of the producer group answers when the sender is gone', async () => {
    const { broker, clock } = await setup();
    const sender = await client(broker);
    const begun = await sender
      .producer({ group: 'billing', checkAfterMs: 500, checkTransaction: () => 'rollback' })
      .beginTransaction();
    await begun.send('orders', { value: 'from-sender' });
    await sender.close();
    const other = await client(broker);
    const seen: number[] = [];
    const member = other.producer({
      group: 'billing',
      checkTransaction: (check) => {
        seen.push(check.id);
        return 'commit';
      },
    });
    // A member of another group is never asked.
    const stranger = await client(broker);
    stranger.producer({ group: 'other', checkTransaction: () => 'rollback' });
    await member.ready();
    await settle();
    clock.advance(500);
    await until(() => broker.transactions.list().length === 0);
    expect(seen).toEqual([begun.id]);
    expect(await visible(broker, 'orders')).toEqual(['from-sender']);
    await other.close();
    await stranger.close();
  });

  it('an open transaction survives a restart and its check-back clock resumes where it was', async () => {
    const { broker, clock, dataDir } = await setup();
    const sw = await client(broker);
    const tp = sw.producer({ group: 'g', checkAfterMs: 10_000, checkTransaction: () => 'unknown' });
    const txn = await tp.beginTransaction();
    await txn.send('orders', { value: 'survivor' });
    await txn.send('audit', { value: 'survivor-audit' });
    clock.advance(4000);
    await sw.close();
    await broker.close();
    const reopened = await openBroker(dataDir, { clock, durability: 'interval' });
    expect(reopened.transactions.list()).toMatchObject([{ id: txn.id, checks: 0, ageMs: 4000, halves: 2 }]);
    clock.advance(5999);
    await settle();
    expect(reopened.transactions.stats().checksWithoutProducer).toBe(0);
    clock.advance(1);
    await until(() => reopened.transactions.stats().checksWithoutProducer === 1);
    // Committed after the restart: both halves are delivered.
    expect(await reopened.transactions.end(null, txn.id, 'commit')).toMatchObject({
      outcome: 'committed',
      messages: 2,
    });
    expect(await visible(reopened, 'orders')).toEqual(['survivor']);
    expect(await visible(reopened, 'audit')).toEqual(['survivor-audit']);
    // A new transaction gets a new id.
    const next = await reopened.transactions.begin(
      reopened.sessions.open({ kind: 'in-process', transport: null }),
      {
        group: 'g',
      },
    );
    expect(next.id).toBeGreaterThan(txn.id);
  });

  it('reserved ids (TXN_IDS) begin on their first send or end, on their session only, once; they survive restarts', async () => {
    const { broker, dataDir, clock } = await setup();
    const mine = broker.sessions.open({ kind: 'in-process', transport: null });
    const other = broker.sessions.open({ kind: 'in-process', transport: null });
    const { from, count } = await broker.transactions.reserveIds(mine, 'g', 3);
    expect(count).toBe(3);
    const batch = () => encodeBatch([{ value: `v${from}` }]);
    // Another session cannot begin it: the send says the id is unknown.
    broker.transactions.beginLeased(other, from, { group: 'g' });
    expect(await codeOf(broker.transactions.send(other, from, 'orders', 0, batch()))).toBe(
      'UNKNOWN_TRANSACTION',
    );
    broker.transactions.beginLeased(mine, from, { group: 'g', checkAfterMs: 2000 });
    broker.transactions.beginLeased(mine, from, { group: 'g' }); // live already: nothing
    const sent = await broker.transactions.sendMany(
      mine,
      from,
      [
        { topic: 'orders', partition: 0 },
        { topic: 'audit', partition: 0 },
      ],
      Buffer.concat([encodeBatch([{ value: 'o' }, { value: 'p' }]), encodeBatch([{ value: 'a' }])]),
    );
    expect(sent).toMatchObject({ records: 3 });
    expect(sent.halfOffsets).toHaveLength(2);
    expect(broker.transactions.list()).toMatchObject([{ id: from, halves: 2, messages: 3 }]);
    expect(await broker.transactions.end(mine, from, 'commit')).toMatchObject({
      outcome: 'committed',
      messages: 3,
    });
    expect(await visible(broker, 'orders')).toEqual(['o', 'p']);
    // Begun once: a second begin does nothing, the send is refused as for any decided transaction.
    broker.transactions.beginLeased(mine, from, { group: 'g' });
    expect(await codeOf(broker.transactions.send(mine, from, 'orders', 0, batch()))).toBe(
      'TRANSACTION_COMMITTED',
    );
    // An end with no send before it: an empty transaction, decided once.
    broker.transactions.beginLeased(mine, from + 1, { group: 'g' });
    expect(await broker.transactions.end(mine, from + 1, 'rollback')).toMatchObject({
      outcome: 'rolled-back',
      messages: 0,
    });
    // Bad sizes of a multi-batch body are typed errors.
    broker.transactions.beginLeased(mine, from + 2, { group: 'g' });
    const one = encodeBatch([{ value: 'x' }]);
    const parts = [
      { topic: 'orders', partition: 0 },
      { topic: 'orders', partition: 1 },
    ];
    expect(await codeOf(broker.transactions.sendMany(mine, from + 2, parts, one))).toBe('INVALID_BATCH');
    expect(
      await codeOf(
        broker.transactions.sendMany(mine, from + 2, parts.slice(0, 1), Buffer.concat([one, one])),
      ),
    ).toBe('INVALID_BATCH');
    expect(await codeOf(broker.transactions.reserveIds(mine, 'g', 0))).toBe('INVALID_ARGUMENT');
    // The reservation is durable: ids after a restart come after it.
    await broker.close();
    const reopened = await openBroker(dataDir, { clock, durability: 'interval' });
    const next = await reopened.transactions.begin(
      reopened.sessions.open({ kind: 'in-process', transport: null }),
      {
        group: 'g',
      },
    );
    expect(next.id).toBeGreaterThanOrEqual(from + count);
    await reopened.close();
  });

  it('a transactional producer begins without a request of its own and coalesces the sends of one turn', async () => {
    const { broker } = await setup();
    const sw = await client(broker);
    const tp = sw.producer({ group: 'g', checkTransaction: () => 'unknown' });
    const first = await tp.beginTransaction();
    const second = await tp.beginTransaction();
    expect(second.id).toBe(first.id + 1);
    expect(broker.transactions.list()).toEqual([]); // nothing begun on the broker yet
    const results = await Promise.all([
      first.send('orders', { value: 'a', partition: 0 }),
      first.send('orders', { value: 'b', partition: 0 }),
      first.send('audit', { value: 'c', partition: 0 }),
    ]);
    expect(results[0]!.halfOffset).toBe(results[1]!.halfOffset); // one batch for orders/0
    expect(broker.transactions.list()).toMatchObject([{ id: first.id, halves: 2, messages: 3 }]);
    expect(await first.commit()).toMatchObject({ outcome: 'committed', messages: 3, duplicate: false });
    expect(await first.commit()).toMatchObject({ outcome: 'committed', duplicate: true });
    expect(await visible(broker, 'orders')).toEqual(['a', 'b']);
    // Never sent to: the end begins and decides it.
    expect(await second.rollback()).toMatchObject({ id: second.id, outcome: 'rolled-back', messages: 0 });
    await sw.close();
  });

  it('the begin record is written 100 ms after the begin unless a decision recorded the transaction first; a clean close writes it', async () => {
    const { broker, clock, dataDir } = await setup();
    const sw = await client(broker);
    const tp = sw.producer({ group: 'g', checkTransaction: () => 'unknown' });
    const entries = () => broker.topics.partitionOf('__transactions', 0).log.logEndOffset;
    const quick = await tp.beginTransaction(); // reserves ids first (TXN_IDS: one entry)
    await settle();
    const before = entries();
    await quick.send('orders', { value: 'quick' });
    await quick.commit();
    await until(() => entries() === before + 2); // committing, committed: no begin record
    const slow = await tp.beginTransaction();
    await slow.send('orders', { value: 'slow' });
    await settle();
    expect(entries()).toBe(before + 2);
    clock.advance(transactionBeginRecordDelayMs);
    await until(() => entries() === before + 3);
    const unrecorded = await tp.beginTransaction();
    await unrecorded.send('audit', { value: 'kept by the close' });
    await sw.close();
    await broker.close();
    const reopened = await openBroker(dataDir, { clock, durability: 'interval' });
    expect(reopened.transactions.list().map((txn) => txn.id)).toEqual([slow.id, unrecorded.id]);
    await reopened.close();
  });

  it('a target topic deleted before the commit: the commit is refused, the rollback works', async () => {
    const { broker } = await setup();
    const session = broker.sessions.open({ kind: 'in-process', transport: null });
    await broker.topics.create('doomed', { partitions: 1 });
    const { id } = await broker.transactions.begin(session, { group: 'g' });
    await broker.transactions.send(session, id, 'doomed', 0, encodeBatch([{ value: 'gone' }]));
    await broker.transactions.send(session, id, 'orders', 0, encodeBatch([{ value: 'kept?' }]));
    await broker.topics.delete('doomed');
    expect(await codeOf(broker.transactions.end(session, id, 'commit'))).toBe('UNKNOWN_TOPIC');
    expect(await visible(broker, 'orders')).toEqual([]);
    expect(await broker.transactions.end(session, id, 'rollback')).toMatchObject({ outcome: 'rolled-back' });
  });

  it('bounds and refusals are typed errors', async () => {
    const { broker } = await setup();
    const session = broker.sessions.open({ kind: 'in-process', transport: null });
    const { id } = await broker.transactions.begin(session, { group: 'g' });
    // A delayed batch is taken (test/broker/delay/delay-transactions.test.ts), not one without a due time.
    const delayed = encodeBatch([{ value: 'later' }], { attributes: BatchAttributes.delayed });
    expect(await codeOf(broker.transactions.send(session, id, 'orders', 0, delayed))).toBe('INVALID_BATCH');
    expect(
      await codeOf(broker.transactions.send(session, id, '__metadata', 0, encodeBatch([{ value: 'x' }]))),
    ).toBe('INVALID_ARGUMENT');
    expect(
      await codeOf(broker.transactions.send(session, id, 'nope', 0, encodeBatch([{ value: 'x' }]))),
    ).toBe('UNKNOWN_TOPIC');
    expect(
      await codeOf(broker.transactions.send(session, 424242, 'orders', 0, encodeBatch([{ value: 'x' }]))),
    ).toBe('UNKNOWN_TRANSACTION');
    expect(await codeOf(broker.transactions.begin(session, { group: '' }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(broker.transactions.begin(session, { group: 'g', checkAfterMs: 0 }))).toBe(
      'INVALID_ARGUMENT',
    );
    // msgIds to a dedup topic: refused (dedup does not apply inside transactions); plain topics take the header.
    await broker.topics.create('deduped', { partitions: 1, dedupWindowMs: 60_000 });
    const withMsgId = encodeBatch([{ value: 'x', headers: [[msgIdHeader, 'm-1']] }]);
    expect(await codeOf(broker.transactions.send(session, id, 'deduped', 0, withMsgId))).toBe(
      'INVALID_BATCH',
    );
    expect(
      await codeOf(broker.transactions.send(session, id, 'deduped', 0, encodeBatch([{ value: 'y' }]))),
    ).toBe('none');
    expect(await codeOf(broker.transactions.send(session, id, 'orders', 0, withMsgId))).toBe('none');
    // A plain produce of a transactional batch is refused: halves go through TXN_SEND.
    const transactional = encodeBatch([{ value: 'x' }], { attributes: BatchAttributes.transactional });
    expect(await codeOf(broker.messages.produce('orders', 0, transactional))).toBe('INVALID_BATCH');
    // Open transactions per session.
    const begins = [];
    for (let i = 1; i < transactionsOpenPerSessionMax; i++)
      begins.push(broker.transactions.begin(session, { group: 'g' }));
    await Promise.all(begins);
    expect(await codeOf(broker.transactions.begin(session, { group: 'g' }))).toBe('TOO_MANY_TRANSACTIONS');
    const other = broker.sessions.open({ kind: 'in-process', transport: null });
    expect(await codeOf(broker.transactions.begin(other, { group: 'g' }))).toBe('none');
  });
});
