/**
 * The broker on a ManualClock (BrokerOptions.clock): timed retention, long-poll deadlines and the
 * times it stores all follow the injected clock; nothing here waits for real time to pass. The
 * clock values are far beyond anything real time could reach within a test, so a timer left on real
 * time fails these tests instead of passing by luck.
 */
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { encodeBatch } from '../../src/format/record-batch.js';
import { batchOf, openBroker, temporaryDirectory, valuesOf } from './helpers.js';

const segmentBytes = 64 * 1024;

/** Lets promise continuations and I/O callbacks run; no broker timer can fire (they are on the clock). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Tracks whether `promise` has settled. */
function track<T>(promise: Promise<T>): { promise: Promise<T>; done: () => boolean } {
  let settled = false;
  const tracked = promise.finally(() => {
    settled = true;
  });
  return { promise: tracked, done: () => settled };
}

/** One batch that fills most of a segment, stamped `timestamp`. */
function bigBatch(tag: string, timestamp: number): Uint8Array {
  return encodeBatch([{ value: `${tag}/${'x'.repeat(segmentBytes - 2048)}`, timestamp }]);
}

describe('Broker on a ManualClock', () => {
  it('deletes expired segments when the retention timer fires on the clock', async () => {
    const clock = new ManualClock();
    const hour = 3_600_000;
    const broker = await openBroker(temporaryDirectory(), {
      clock,
      retentionCheckIntervalMs: hour,
      segmentBytes,
    });
    await broker.topics.create('t', { retentionMs: 24 * hour });
    // Three segments, stamped with the clock's time, one hour apart.
    for (let i = 0; i < 3; i++) {
      await broker.messages.produce('t', 0, bigBatch(`b${i}`, clock.nowMs()));
      clock.advance(hour); // Retention passes run here and find nothing expired yet.
    }
    expect(broker.lastRetentionPass).toMatchObject({ deletedSegments: 0, failures: [] });
    expect(broker.topics.describe('t').partitions[0]).toMatchObject({ segmentCount: 3, logStartOffset: 0 });
    // The first batch (stamped at 0) expires once the clock passes 24 h; the pass at 24 h is not past.
    clock.advance(21 * hour);
    expect(broker.lastRetentionPass).toMatchObject({ deletedSegments: 0 });
    clock.advance(hour);
    expect(broker.lastRetentionPass).toMatchObject({ deletedSegments: 1, failures: [] });
    expect(broker.topics.describe('t').partitions[0]).toMatchObject({ segmentCount: 2, logStartOffset: 1 });
    // The active segment always stays, however old (it is 26 h old then: past the retention). Every
    // timer of the broker fires on the way, so a longer jump costs seconds of test time, not meaning.
    clock.advance(3 * hour);
    expect(broker.topics.describe('t').partitions[0]).toMatchObject({ segmentCount: 1, logStartOffset: 2 });
  });

  it('answers a long-poll when the clock reaches maxWaitMs, not before', async () => {
    const clock = new ManualClock();
    const broker = await openBroker(temporaryDirectory(), { clock });
    await broker.topics.create('t');
    const timersBefore = clock.pendingTimerCount;
    const waiting = track(broker.messages.fetch('t', 0, 0, { maxBytes: 1024, maxWaitMs: 30_000 }));
    await settle();
    expect(broker.waitingFetchCount).toBe(1);
    expect(clock.pendingTimerCount).toBe(timersBefore + 1);
    clock.advance(29_999);
    await settle();
    expect(waiting.done()).toBe(false);
    clock.advance(1);
    expect(await waiting.promise).toMatchObject({ batchCount: 0, nextOffset: 0, highWatermark: 0 });
    expect(broker.waitingFetchCount).toBe(0);
    expect(clock.pendingTimerCount).toBe(timersBefore);
  });

  it('keeps the long-poll deadline across wake-ups that bring too little', async () => {
    const clock = new ManualClock();
    const broker = await openBroker(temporaryDirectory(), { clock });
    await broker.topics.create('t');
    const size = batchOf('a').length;
    const waiting = track(
      broker.messages.fetch('t', 0, 0, { maxBytes: 1 << 20, maxWaitMs: 30_000, minBytes: 3 * size }),
    );
    await settle();
    clock.advance(10_000);
    await broker.messages.produce('t', 0, batchOf('a')); // Wakes it: too little, it waits again for the rest.
    await settle();
    clock.advance(19_999);
    await settle();
    expect(waiting.done()).toBe(false);
    expect(broker.waitingFetchCount).toBe(1);
    clock.advance(1);
    expect(valuesOf((await waiting.promise).records)).toEqual(['a/0']);
  });

  it('answers a long-poll with maxWaitMs 0 at once, with no timer', async () => {
    const clock = new ManualClock();
    const broker = await openBroker(temporaryDirectory(), { clock });
    await broker.topics.create('t');
    const timersBefore = clock.pendingTimerCount;
    expect((await broker.messages.fetch('t', 0, 0, { maxBytes: 1024, maxWaitMs: 0 })).batchCount).toBe(0);
    expect(clock.pendingTimerCount).toBe(timersBefore);
  });

  it('stamps topic creation times and set-aside directories with the clock wall time', async () => {
    const clock = new ManualClock(1_234_000);
    const dataDir = temporaryDirectory();
    const broker = await openBroker(dataDir, { clock });
    expect((await broker.topics.create('first')).createdAtMs).toBe(1_234_000);
    clock.advance(5_000);
    // A directory the metadata does not know is moved aside, stamped with the clock.
    mkdirSync(join(dataDir, 'topics', 'second'), { recursive: true });
    expect((await broker.topics.create('second')).createdAtMs).toBe(1_239_000);
    expect(existsSync(join(dataDir, 'topics', 'second.orphan-1239000'))).toBe(true);
    expect(readdirSync(join(dataDir, 'topics')).sort()).toEqual([
      '__consumer_offsets',
      '__dedup',
      '__delay',
      '__delay_dead',
      '__delay_state',
      '__metadata',
      '__producer_state',
      '__queue_state',
      '__transactions',
      '__txn_half',
      'first',
      'second',
      'second.orphan-1239000',
    ]);
  });
});

describe('sessions on a ManualClock', () => {
  it('times out a server request and stamps the open time on the broker clock', async () => {
    const clock = new ManualClock();
    const broker = await openBroker(temporaryDirectory(), { clock });
    const sent: number[] = [];
    const session = broker.sessions.open({
      kind: 'in-process',
      transport: {
        sendServerRequest: (frame) => void sent.push(frame.correlationId),
        disconnect: () => undefined,
      },
    });
    session.identify('test-client', 2);
    expect(session.openedAtMs).toBe(clock.nowMs());
    const request = track(session.request(64, {}, undefined, { timeoutMs: 60_000 }));
    await settle();
    expect(sent).toHaveLength(1);
    clock.advance(59_999);
    await settle();
    expect(request.done()).toBe(false);
    clock.advance(1);
    await expect(request.promise).rejects.toMatchObject({ code: 'TIMEOUT' });
    await session.close();
    await broker.close();
  });
});
