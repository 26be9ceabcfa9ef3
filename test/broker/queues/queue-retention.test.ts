/**
 * Retention deleting a queue's unsettled messages (docs/PROTOCOL.md "Queues"): offsets below the
 * partition's log start are gone, the queue partition skips them (cursor, ready, scheduled, in flight,
 * keys), records that in `__queue_state` (a restart does not expect them again) and counts them
 * (`skippedByRetention`); the rest is delivered. A topic deleted under a queue group, and created
 * again with its name, does not resume the old offsets. Real retention (64 KiB segments) on a
 * ManualClock; nothing waits for real time.
 */
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/clock.js';
import { encodeBatch } from '../../../src/format/record-batch.js';
import type { ReceiveRequest, ReceiveResult } from '../../../src/protocol/queue-api.js';
import type { SessionEndpoint } from '../../../src/protocol/session.js';
import type { Broker } from '../../../src/spillway-broker.js';
import { openBroker, temporaryDirectory } from '../helpers.js';

function session(broker: Broker): SessionEndpoint {
  return broker.sessions.open({ kind: 'in-process', transport: null });
}

function offsetsOf(result: ReceiveResult): number[] {
  return result.partitions.flatMap((p) => p.offsets);
}

function request(overrides: Partial<ReceiveRequest> = {}): ReceiveRequest {
  return {
    group: 'g',
    topic: 't',
    mode: 'shared',
    max: 1000,
    waitMs: 0,
    ackTimeoutMs: 1000,
    maxDeliveries: 5,
    retryBackoffMs: [100],
    ...overrides,
  };
}

const padding = 'p'.repeat(1000);

/** One ~1 KiB message per batch, keys k0..k3 in turn: 64 messages fill a 64 KiB segment. */
async function produce(broker: Broker, from: number, count: number, topic = 't'): Promise<void> {
  for (let i = from; i < from + count; i++) {
    await broker.messages.produce(topic, 0, encodeBatch([{ key: `k${i % 4}`, value: `${i}${padding}` }]));
  }
}

describe('queue partitions under retention', () => {
  it('skips offsets retention deleted (cursor, ready, scheduled, in flight), durably, and counts them', async () => {
    const clock = new ManualClock();
    const dataDir = temporaryDirectory();
    let broker = await openBroker(dataDir, { clock, durability: 'always' });
    await broker.topics.create('t', { partitions: 1, segmentBytes: 64 * 1024, retentionBytes: 64 * 1024 });
    await produce(broker, 0, 100);
    const member = session(broker);
    // 0..19 delivered: 0..4 acked, 5..9 nacked with a delay (scheduled), 10..14 nacked now (ready),
    // 15..19 in flight; 20.. not handed out yet (the cursor).
    const first = await broker.queues.receive(member, request({ max: 20 }));
    expect(offsetsOf(first)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    const receipt15 = broker.queues.receipt('g', 0, 15, first.partitions[0]!.leases[15]!);
    await broker.queues.ack('g', 't', [{ partition: 0, ranges: [0, 5] }]);
    await broker.queues.nack('g', 't', [{ partition: 0, offsets: [5, 6, 7, 8, 9] }], { delayMs: 60_000 });
    await broker.queues.nack('g', 't', [{ partition: 0, offsets: [10, 11, 12, 13, 14] }], { delayMs: 0 });
    await produce(broker, 100, 200);
    expect(broker.applyRetention().deletedSegments).toBeGreaterThan(0);
    const logStart = broker.topics.describe('t').partitions[0]!.logStartOffset;
    expect(logStart).toBeGreaterThan(20);
    // Everything below the log start is gone: the rest is delivered, from the log start on.
    const rest = await broker.queues.receive(member, request());
    const restOffsets = Array.from({ length: 300 - logStart }, (_, i) => logStart + i);
    expect(offsetsOf(rest)).toEqual(restOffsets);
    expect(broker.queues.describe('g')[0]!.partitions[0]).toMatchObject({
      cursor: 300,
      ready: 0,
      scheduled: 0,
      inFlight: 300 - logStart,
      // 5..19 (nacked or in flight) and 20..logStart-1 (never handed out) were unsettled. 0..4 were acked.
      skippedByRetention: logStart - 5,
    });
    // An in-flight receipt below the log start answers as expired; an ack of a gone offset is ignored.
    await expect(broker.queues.ackReceipts('g', [receipt15])).rejects.toMatchObject({
      code: 'RECEIPT_EXPIRED',
    });
    expect(await broker.queues.ack('g', 't', [{ partition: 0, ranges: [16, 17] }])).toEqual({
      settled: 0,
      ignored: 1,
    });
    expect(await broker.queues.ack('g', 't', [{ partition: 0, ranges: [logStart, 290] }])).toEqual({
      settled: 290 - logStart,
      ignored: 0,
    });
    expect(broker.queues.describe('g')[0]!.partitions[0]).toMatchObject({
      ackFloor: 290,
      skippedByRetention: logStart - 5,
    });
    // Nothing pending fires for a gone offset: past every retry time and deadline only 290..299 come
    // again (their ack timeout).
    clock.advance(120_000);
    expect(offsetsOf(await broker.queues.receive(member, request()))).toEqual(
      Array.from({ length: 10 }, (_, i) => 290 + i),
    );
    await broker.close();

    // A restart: the skip is durable (the floor is past the log start), the count too.
    broker = await openBroker(dataDir, { clock, durability: 'always' });
    const again = await broker.queues.receive(session(broker), request());
    expect(offsetsOf(again)).toEqual(Array.from({ length: 10 }, (_, i) => 290 + i));
    expect(broker.queues.describe('g')[0]!.partitions[0]).toMatchObject({
      ackFloor: 290,
      skippedByRetention: logStart - 5,
    });
    await broker.close();
  });

  it('key_shared: keys whose waiting messages were deleted go on with the rest', async () => {
    const clock = new ManualClock();
    const broker = await openBroker(temporaryDirectory(), { clock });
    await broker.topics.create('t', { partitions: 1, segmentBytes: 64 * 1024, retentionBytes: 64 * 1024 });
    await produce(broker, 0, 100);
    const a = session(broker);
    const b = session(broker);
    const keyed = request({ mode: 'key_shared', max: 10 });
    // Both members join, then each takes what its keys allow; nothing is acked.
    await broker.queues.receive(a, { ...keyed, max: 1 });
    await broker.queues.receive(b, { ...keyed, max: 1 });
    await broker.queues.receive(a, keyed);
    await broker.queues.receive(b, keyed);
    await produce(broker, 100, 200);
    expect(broker.applyRetention().deletedSegments).toBeGreaterThan(0);
    const logStart = broker.topics.describe('t').partitions[0]!.logStartOffset;
    const seen: number[] = [];
    for (let round = 0; round < 20; round++) {
      const got = [
        ...offsetsOf(await broker.queues.receive(a, keyed)),
        ...offsetsOf(await broker.queues.receive(b, keyed)),
      ];
      if (got.length === 0) break;
      seen.push(...got);
      await broker.queues.ack('g', 't', [
        { partition: 0, ranges: got.flatMap((offset) => [offset, offset + 1]) },
      ]);
    }
    seen.sort((x, y) => x - y);
    expect(seen).toEqual(Array.from({ length: 300 - logStart }, (_, i) => logStart + i));
    expect(broker.queues.describe('g')[0]!.partitions[0]).toMatchObject({ ackFloor: 300, inFlight: 0 });
    await broker.close();
  });

  it('a topic deleted under a queue group: receives answer UNKNOWN_TOPIC; created again it starts afresh', async () => {
    const clock = new ManualClock();
    const dataDir = temporaryDirectory();
    let broker = await openBroker(dataDir, { clock, durability: 'always' });
    await broker.topics.create('t', { partitions: 1 });
    await produce(broker, 0, 10);
    const member = session(broker);
    expect(offsetsOf(await broker.queues.receive(member, request({ max: 6 })))).toEqual([0, 1, 2, 3, 4, 5]);
    await broker.queues.ack('g', 't', [{ partition: 0, ranges: [0, 4] }]);
    // A second group with state, not in memory after the restart below.
    expect(offsetsOf(await broker.queues.receive(member, request({ group: 'h', max: 3 })))).toEqual([
      0, 1, 2,
    ]);
    await broker.queues.ack('h', 't', [{ partition: 0, ranges: [0, 3] }]);
    await broker.close();
    broker = await openBroker(dataDir, { clock, durability: 'always' });
    const again = session(broker);
    expect(offsetsOf(await broker.queues.receive(again, request({ max: 2 })))).toEqual([4, 5]);
    expect(offsetsOf(await broker.queues.receive(again, request()))).toEqual([6, 7, 8, 9]);
    const waiting = broker.queues.receive(again, request({ waitMs: 60_000 })).then(
      () => 'answered',
      (error: { code?: string }) => error.code,
    );
    await broker.topics.delete('t');
    expect(await waiting).toBe('UNKNOWN_TOPIC');
    await expect(broker.queues.receive(again, request())).rejects.toMatchObject({ code: 'UNKNOWN_TOPIC' });
    expect(broker.queues.describe()).toEqual([]);
    // Created again with the name: another topic. Neither group resumes its old floor (4 and 3).
    await broker.topics.create('t', { partitions: 1 });
    await produce(broker, 0, 5);
    const fresh = await broker.queues.receive(again, request());
    expect(fresh.partitions[0]!.offsets).toEqual([0, 1, 2, 3, 4]);
    expect(fresh.partitions[0]!.deliveryCounts).toEqual([1, 1, 1, 1, 1]);
    expect(offsetsOf(await broker.queues.receive(again, request({ group: 'h' })))).toEqual([0, 1, 2, 3, 4]);
    await broker.close();
  });
});
