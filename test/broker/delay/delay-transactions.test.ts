/**
 * Delayed messages inside transactions on a broker driven by a ManualClock, through the client
 * (in-process): nothing is scheduled before the commit; `delayMs` counts from the commit, `deliverAt`
 * stays absolute (a time already past fires at the commit); a rolled-back transaction schedules
 * nothing; bad delayed sends are refused; the delay service takes a committed batch once per
 * (transaction id, index).
 */
import { describe, expect, it } from 'vitest';
import { Spillway } from '../../../src/client/index.js';
import { ManualClock } from '../../../src/clock.js';
import { SpillwayError } from '../../../src/errors.js';
import { BatchAttributes, BatchHeader, batchLengthAt } from '../../../src/format/batch-header.js';
import { decodeRecords, encodeBatch } from '../../../src/format/record-batch.js';
import { crc32c } from '../../../src/native.js';
import { delayMsHeader } from '../../../src/protocol/reserved-headers.js';
import type { Broker } from '../../../src/spillway-broker.js';
import { openBroker, temporaryDirectory } from '../helpers.js';

async function until(condition: () => boolean): Promise<void> {
  for (let waited = 0; !condition(); waited += 5) {
    if (waited > 10_000) throw new Error('condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 5));
}

async function visible(broker: Broker, topic: string) {
  const result = await broker.messages.fetch(topic, 0, 0, { maxBytes: 1 << 20, maxWaitMs: 0 });
  const out: Array<{ value: string; due: string | null; names: string[] }> = [];
  let position = 0;
  while (position < result.records.length) {
    const length = batchLengthAt(result.records, position);
    for (const record of decodeRecords(result.records.subarray(position, position + length))) {
      const due = record.headers.find(([name]) => name === 'sw-original-deliver-at')?.[1];
      out.push({
        value: Buffer.from(record.value!).toString(),
        due: due == null ? null : Buffer.from(due).toString(),
        names: record.headers.map(([name]) => name),
      });
    }
    position += length;
  }
  return out;
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'none';
  } catch (error) {
    return error instanceof SpillwayError ? error.code : String(error);
  }
}

describe('delayed messages inside transactions (ManualClock)', () => {
  it('delayMs counts from the commit, deliverAt stays absolute, rollback schedules nothing', async () => {
    const clock = new ManualClock();
    const broker = await openBroker(temporaryDirectory(), { clock, durability: 'interval' });
    await broker.topics.create('t', { partitions: 1 });
    const sw = await Spillway.connect(broker);
    const tp = sw.producer({ group: 'g', checkTransaction: () => 'unknown' });
    const t0 = clock.nowMs();
    const txn = await tp.beginTransaction();
    await txn.send('t', { value: 'relative', delayMs: 5000, headers: { h: 'v' } });
    await txn.send('t', { value: 'absolute', deliverAt: t0 + 3000 });
    await txn.send('t', { value: 'later', deliverAt: t0 + 20_000 });
    await txn.send('t', { value: 'plain' });
    expect(broker.delay.stats().pending).toBe(0);
    clock.advance(10_000);
    await settle();
    expect(await visible(broker, 't')).toEqual([]);
    const t1 = clock.nowMs();
    await txn.commit();
    expect(broker.delay.stats()).toMatchObject({ pending: 3, scheduled: 3 });
    // The past deliverAt fires at once, the plain message is visible with the commit.
    await until(() => broker.delay.stats().fired === 1);
    expect((await visible(broker, 't')).map((m) => [m.value, m.due])).toEqual([
      ['plain', null],
      ['absolute', String(t0 + 3000)],
    ]);
    clock.advance(4999);
    await settle();
    expect(broker.delay.stats().fired).toBe(1);
    clock.advance(1);
    await until(() => broker.delay.stats().fired === 2);
    const fired = (await visible(broker, 't'))[2]!;
    expect(fired.value).toBe('relative');
    expect(fired.due).toBe(String(t1 + 5000));
    expect(fired.names).not.toContain(delayMsHeader);
    expect(fired.names).toContain('h');
    clock.advance(20_000);
    await until(() => broker.delay.stats().fired === 3);
    expect((await visible(broker, 't'))[3]!.due).toBe(String(t0 + 20_000));

    const rolledBack = await tp.beginTransaction();
    await rolledBack.send('t', { value: 'never', delayMs: 10 });
    await rolledBack.rollback();
    clock.advance(1000);
    await settle();
    expect(broker.delay.stats()).toMatchObject({ pending: 0, scheduled: 3, fired: 3 });
    expect((await visible(broker, 't')).map((m) => m.value)).not.toContain('never');
    await sw.close();
  });

  it('sends of one turn mixing delayed and plain messages travel as separate batches', async () => {
    const clock = new ManualClock();
    const broker = await openBroker(temporaryDirectory(), { clock, durability: 'interval' });
    await broker.topics.create('t', { partitions: 1 });
    const sw = await Spillway.connect(broker);
    const tp = sw.producer({ group: 'g', checkTransaction: () => 'unknown' });
    const txn = await tp.beginTransaction();
    // One turn of the event loop: coalesced into one TXN_SEND, a plain and a delayed batch.
    await Promise.all([
      txn.send('t', { value: 'p1' }),
      txn.send('t', { value: 'd1', delayMs: 1000 }),
      txn.send('t', { value: 'p2' }),
      txn.send('t', { value: 'd2', delayMs: 2000 }),
    ]);
    await txn.commit();
    expect(broker.delay.stats()).toMatchObject({ pending: 2, scheduled: 2 });
    expect((await visible(broker, 't')).map((m) => m.value)).toEqual(['p1', 'p2']);
    clock.advance(2000);
    await until(() => broker.delay.stats().fired === 2);
    expect((await visible(broker, 't')).map((m) => m.value)).toEqual(['p1', 'p2', 'd1', 'd2']);
    await sw.close();
  });

  it('refuses bad delayed sends: both options, no due header, too far ahead', async () => {
    const clock = new ManualClock();
    const broker = await openBroker(temporaryDirectory(), { clock });
    await broker.topics.create('t', { partitions: 1 });
    const sw = await Spillway.connect(broker);
    const tp = sw.producer({ group: 'g', checkTransaction: () => 'unknown' });
    const txn = await tp.beginTransaction();
    expect(await codeOf(txn.send('t', { value: 'x', delayMs: 1, deliverAt: 1 }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(txn.send('t', { value: 'x', delayMs: -1 }))).toBe('INVALID_ARGUMENT');
    await txn.rollback();
    const session = broker.sessions.open({ kind: 'in-process', transport: null });
    const { id } = await broker.transactions.begin(session, { group: 'g' });
    const noDue = encodeBatch([{ value: 'x' }], { attributes: BatchAttributes.delayed });
    expect(await codeOf(broker.transactions.send(session, id, 't', 0, noDue))).toBe('INVALID_BATCH');
    const tooFar = encodeBatch([{ value: 'x', headers: [[delayMsHeader, String(11 * 365 * 86_400_000)]] }], {
      attributes: BatchAttributes.delayed,
    });
    expect(await codeOf(broker.transactions.send(session, id, 't', 0, tooFar))).toBe('INVALID_BATCH');
    await sw.close();
  });

  it('the delay service takes a committed batch once per (transaction id, index)', async () => {
    const clock = new ManualClock();
    const broker = await openBroker(temporaryDirectory(), { clock });
    await broker.topics.create('t', { partitions: 1 });
    const stamped = (index: number): Uint8Array => {
      const batch = encodeBatch([{ value: `v${index}`, headers: [[delayMsHeader, '1000']] }], {
        attributes: BatchAttributes.delayed | BatchAttributes.transactional,
      });
      const view = new DataView(batch.buffer, batch.byteOffset, batch.length);
      view.setBigInt64(BatchHeader.producerId, 77n, true);
      view.setInt32(BatchHeader.baseSequence, index, true);
      view.setUint32(BatchHeader.crc, crc32c(batch.subarray(16)), true);
      return batch;
    };
    const commitMs = clock.nowMs();
    const [a, b] = await Promise.all([
      broker.delay.scheduleCommitted('t', 0, stamped(0), commitMs),
      broker.delay.scheduleCommitted('t', 0, stamped(0), commitMs),
    ]);
    expect(a.baseOffset).toBe(b.baseOffset);
    const again = await broker.delay.scheduleCommitted('t', 0, stamped(0), commitMs);
    expect(again.baseOffset).toBe(a.baseOffset);
    await broker.delay.scheduleCommitted('t', 0, stamped(1), commitMs);
    expect(broker.delay.stats()).toMatchObject({ pending: 2, scheduled: 2, nextDueMs: commitMs + 1000 });
    expect(
      await codeOf(broker.delay.scheduleCommitted('t', 0, encodeBatch([{ value: 'x' }]), commitMs)),
    ).toBe('INVALID_BATCH');
  });
});
