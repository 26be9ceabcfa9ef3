/**
 * The delay service in a broker on a ManualClock: delayed batches are stored and fire at their due
 * time (not before) into the target with key, value and headers kept, plus sw-original-deliver-at;
 * pending messages survive a restart (crashes: delay-processes.test.ts, with SIGKILL); what came due
 * while down fires at open; a deleted target sends due messages to __delay_dead with a reason; bad
 * delayed batches are refused with INVALID_BATCH.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/clock.js';
import { BatchAttributes, batchLengthAt } from '../../../src/format/batch-header.js';
import { decodeRecords, encodeBatch } from '../../../src/format/record-batch.js';
import { deliverAtHeader } from '../../../src/protocol/reserved-headers.js';
import type { Broker } from '../../../src/spillway-broker.js';
import { openBroker, rejectedCode, temporaryDirectory } from '../helpers.js';

/** Real time for the appends and fdatasyncs started by a clock step (the clock itself does not move). */
async function settle(): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 40));
}

/** Waits (real time, bounded) until `done()`; the assertions after it say what was expected. */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !done(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
}

function delayedBatch(items: Array<{ value: string; dueMs: number; key?: string }>): Uint8Array {
  return encodeBatch(
    items.map((item) => ({
      key: item.key ?? null,
      value: item.value,
      headers: [
        ['h', 'v'],
        [deliverAtHeader, String(item.dueMs)],
      ],
    })),
    { attributes: BatchAttributes.delayed },
  );
}

interface Fired {
  value: string;
  key: string | null;
  headers: Record<string, string>;
}

async function read(broker: Broker, topic: string, partition = 0): Promise<Fired[]> {
  const result = await broker.messages.fetch(topic, partition, 0, { maxBytes: 1 << 20, maxWaitMs: 0 });
  const out: Fired[] = [];
  let position = 0;
  while (position < result.records.length) {
    const length = batchLengthAt(result.records, position);
    for (const record of decodeRecords(result.records.subarray(position, position + length))) {
      out.push({
        value: Buffer.from(record.value!).toString(),
        key: record.key === null ? null : Buffer.from(record.key).toString(),
        headers: Object.fromEntries(
          record.headers.map(([k, v]) => [k, v === null ? '' : Buffer.from(v).toString()]),
        ),
      });
    }
    position += length;
  }
  return out;
}

describe('delayed messages (ManualClock)', () => {
  it('fire at their due time with key, value and headers, once, across a restart', async () => {
    const clock = new ManualClock();
    const dataDir = temporaryDirectory();
    let broker = await openBroker(dataDir, { clock, durability: 'always' });
    await broker.topics.create('t', { partitions: 1 });
    const t0 = clock.nowMs();
    const answer = await broker.messages.produce(
      't',
      0,
      delayedBatch([
        { value: 'a', dueMs: t0 + 1000, key: 'ka' },
        { value: 'b', dueMs: t0 + 5000 },
        { value: 'year', dueMs: t0 + 365 * 86_400_000 },
      ]),
    );
    expect(answer.delayed).toBe(true);
    expect(broker.delay.stats()).toMatchObject({
      pending: 3,
      withinMinute: 2,
      later: 1,
      nextDueMs: t0 + 1000,
    });
    clock.advance(999);
    await settle();
    expect(await read(broker, 't')).toEqual([]);
    clock.advance(1);
    await until(() => broker.delay.stats().fired === 1);
    const first = await read(broker, 't');
    expect(first).toEqual([
      {
        value: 'a',
        key: 'ka',
        headers: {
          h: 'v',
          'sw-original-deliver-at': String(t0 + 1000),
          'sw-delay-ref': String(answer.baseOffset),
        },
      },
    ]);
    // Clean restart: b and the year-ahead message are still pending.
    await broker.close();
    broker = await openBroker(dataDir, { clock, durability: 'always' });
    expect(broker.openReport.delay).toMatchObject({ pending: 2, cleanStart: true });
    clock.advance(4000);
    await until(() => broker.delay.stats().fired === 1);
    expect((await read(broker, 't')).map((m) => m.value)).toEqual(['a', 'b']);
    // More firing after the restart, then the year-ahead message is all that is left.
    await broker.messages.produce('t', 0, delayedBatch([{ value: 'c', dueMs: clock.nowMs() + 10 }]));
    clock.advance(10);
    await until(() => broker.delay.stats().fired === 2);
    expect((await read(broker, 't')).map((m) => m.value)).toEqual(['a', 'b', 'c']);
    expect(broker.delay.stats()).toMatchObject({ pending: 1, later: 1 });
  });

  it('what came due while the broker was down fires at open', async () => {
    const clock = new ManualClock();
    const dataDir = temporaryDirectory();
    let broker = await openBroker(dataDir, { clock });
    await broker.topics.create('t', { partitions: 2 });
    const t0 = clock.nowMs();
    for (let i = 0; i < 10; i++) {
      await broker.messages.produce(
        't',
        i % 2,
        delayedBatch([{ value: `m${i}`, dueMs: t0 + 1000 * (i + 1) }]),
      );
    }
    await broker.close();
    clock.advance(3_600_000);
    broker = await openBroker(dataDir, { clock });
    await until(() => broker.delay.stats().fired === 10);
    const values = [...(await read(broker, 't', 0)), ...(await read(broker, 't', 1))]
      .map((m) => m.value)
      .sort();
    expect(values).toEqual(Array.from({ length: 10 }, (_, i) => `m${i}`).sort());
    expect(broker.delay.stats()).toMatchObject({ pending: 0, fired: 10 });
  });

  it('a due message whose topic was deleted goes to __delay_dead with the reason', async () => {
    const clock = new ManualClock();
    const dataDir = temporaryDirectory();
    const broker = await openBroker(dataDir, { clock });
    await broker.topics.create('gone', { partitions: 1 });
    await broker.topics.create('again', { partitions: 1 });
    const t0 = clock.nowMs();
    await broker.messages.produce('gone', 0, delayedBatch([{ value: 'x', dueMs: t0 + 100, key: 'k' }]));
    await broker.messages.produce('again', 0, delayedBatch([{ value: 'y', dueMs: t0 + 100 }]));
    await broker.topics.delete('gone');
    await broker.topics.delete('again');
    clock.advance(1);
    await broker.topics.create('again', { partitions: 1 });
    clock.advance(100);
    await until(() => broker.delay.stats().deadLettered === 2);
    const dead = await read(broker, '__delay_dead');
    expect(
      dead.map((m) => [m.value, m.headers['sw-delay-dead-reason'], m.headers['sw-delay-target']]),
    ).toEqual([
      ['x', 'the target topic was deleted', 'gone/0'],
      ['y', 'the target topic was deleted and created again', 'again/0'],
    ]);
    expect(await read(broker, 'again')).toEqual([]);
    expect(broker.delay.stats()).toMatchObject({ pending: 0, deadLettered: 2 });
  });

  it('refuses delayed batches without a valid due time', async () => {
    const clock = new ManualClock();
    const broker = await openBroker(temporaryDirectory(), { clock });
    await broker.topics.create('t', { partitions: 1 });
    const noHeader = encodeBatch([{ value: 'v' }], { attributes: BatchAttributes.delayed });
    expect(await rejectedCode(broker.messages.produce('t', 0, noHeader))).toBe('INVALID_BATCH');
    const bad = encodeBatch([{ value: 'v', headers: [[deliverAtHeader, '12a']] }], {
      attributes: BatchAttributes.delayed,
    });
    expect(await rejectedCode(broker.messages.produce('t', 0, bad))).toBe('INVALID_BATCH');
    const tooFar = delayedBatch([{ value: 'v', dueMs: clock.nowMs() + 11 * 365 * 86_400_000 }]);
    expect(await rejectedCode(broker.messages.produce('t', 0, tooFar))).toBe('INVALID_BATCH');
    expect(broker.delay.stats().pending).toBe(0);
  });
});
