/**
 * The queue service on a ManualClock: ack timeout, nack with the backoff schedule and with a delay,
 * maxDeliveries -> dead-letter topic with its headers, key_shared ownership and order, the window
 * bound, and the ack state across a restart. Nothing waits for real time: deadlines and retries run
 * on the clock.
 */
import { describe, expect, it } from 'vitest';
import { defaultDeadLetterTopic } from '../../../src/broker/queues/broker-queues.js';
import { ManualClock } from '../../../src/clock.js';
import { decodeRecords, encodeBatch } from '../../../src/format/record-batch.js';
import { queueUnackedPerPartitionMax } from '../../../src/limits.js';
import type { ReceiveRequest, ReceiveResult } from '../../../src/protocol/queue-api.js';
import type { SessionEndpoint } from '../../../src/protocol/session.js';
import type { Broker } from '../../../src/spillway-broker.js';
import { openBroker, temporaryDirectory } from '../helpers.js';

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

function session(broker: Broker): SessionEndpoint {
  return broker.sessions.open({ kind: 'in-process', transport: null });
}

/** [offset, deliveryCount] of every delivery, partition by partition. */
function delivered(result: ReceiveResult): Array<[number, number]> {
  return result.partitions.flatMap((p) =>
    p.offsets.map((offset, i): [number, number] => [offset, p.deliveryCounts[i]!]),
  );
}

function request(overrides: Partial<ReceiveRequest> = {}): ReceiveRequest {
  return {
    group: 'g',
    topic: 't',
    mode: 'shared',
    max: 100,
    waitMs: 0,
    ackTimeoutMs: 1000,
    maxDeliveries: 3,
    retryBackoffMs: [100, 500],
    ...overrides,
  };
}

async function produce(broker: Broker, values: string[], keys?: string[]): Promise<void> {
  await broker.messages.produce(
    't',
    0,
    encodeBatch(values.map((value, i) => ({ value, key: keys?.[i] ?? null, headers: [['h', 'v']] }))),
  );
}

describe('queue timeline (ManualClock)', () => {
  it('ack timeout, backoff schedule, nack delay, dead letter after maxDeliveries, restart', async () => {
    const clock = new ManualClock();
    const dataDir = temporaryDirectory();
    let broker = await openBroker(dataDir, { clock, durability: 'always' });
    await broker.topics.create('t', { partitions: 1 });
    await produce(broker, ['a', 'b', 'c']);
    const member = session(broker);
    expect(delivered(await broker.queues.receive(member, request()))).toEqual([
      [0, 1],
      [1, 1],
      [2, 1],
    ]);
    // Everything is in flight: nothing more.
    expect(delivered(await broker.queues.receive(member, request()))).toEqual([]);
    expect(await broker.queues.ack('g', 't', [{ partition: 0, ranges: [0, 1] }])).toEqual({
      settled: 1,
      ignored: 0,
    });
    expect(await broker.queues.ack('g', 't', [{ partition: 0, ranges: [0, 1] }])).toEqual({
      settled: 0,
      ignored: 1,
    });
    // Nack 1 without a delay: the schedule's first step (100 ms).
    expect(await broker.queues.nack('g', 't', [{ partition: 0, offsets: [1] }], { error: 'first' })).toEqual({
      settled: 1,
      ignored: 0,
    });
    clock.advance(99);
    expect(delivered(await broker.queues.receive(member, request()))).toEqual([]);
    clock.advance(1);
    expect(delivered(await broker.queues.receive(member, request()))).toEqual([[1, 2]]);
    // At 1000 ms offset 2 (delivered at 0) times out; offset 1 (delivered at 100) not yet.
    clock.advance(899);
    expect(delivered(await broker.queues.receive(member, request()))).toEqual([]);
    clock.advance(1);
    expect(delivered(await broker.queues.receive(member, request()))).toEqual([[2, 2]]);
    // Offset 1 times out at 1100: delivered a third time.
    clock.advance(100);
    expect(delivered(await broker.queues.receive(member, request()))).toEqual([[1, 3]]);
    // Its third failure dead-letters it (maxDeliveries 3).
    await broker.queues.nack('g', 't', [{ partition: 0, offsets: [1] }], { error: 'third' });
    await settle();
    const dlq = broker.messages.fetch(defaultDeadLetterTopic('t'), 0, 0, { maxBytes: 65536, maxWaitMs: 0 });
    const [letter] = [...decodeRecords((await dlq).records)];
    const headers = Object.fromEntries(
      letter!.headers.map(([name, value]) => [name, Buffer.from(value!).toString()]),
    );
    expect(Buffer.from(letter!.value!).toString()).toBe('b');
    expect(headers).toMatchObject({
      h: 'v',
      'spillway-dlq-topic': 't',
      'spillway-dlq-partition': '0',
      'spillway-dlq-offset': '1',
      'spillway-dlq-delivery-count': '3',
      'spillway-dlq-error': 'third',
      'spillway-dlq-time': String(clock.nowMs()),
      'spillway-dlq-group': 'g',
    });
    // Offset 2: nacked with an explicit delay, then the broker restarts before it is due.
    await broker.queues.nack('g', 't', [{ partition: 0, offsets: [2] }], { delayMs: 5000, error: 'later' });
    await broker.close();
    broker = await openBroker(dataDir, { clock, durability: 'always' });
    const again = session(broker);
    expect(delivered(await broker.queues.receive(again, request()))).toEqual([]);
    clock.advance(4999);
    expect(delivered(await broker.queues.receive(again, request()))).toEqual([]);
    clock.advance(1);
    // Acked 0 and dead-lettered 1 are not delivered again; 2 is, its count kept across the restart.
    expect(delivered(await broker.queues.receive(again, request()))).toEqual([[2, 3]]);
    await broker.queues.ack('g', 't', [{ partition: 0, ranges: [2, 3] }]);
    expect(broker.queues.describe('g')[0]!.partitions[0]).toMatchObject({ ackFloor: 3, inFlight: 0 });
  });

  it('a closed member releases its deliveries at once; a long-poll wakes for them', async () => {
    const clock = new ManualClock();
    const broker = await openBroker(temporaryDirectory(), { clock });
    await broker.topics.create('t', { partitions: 1 });
    await produce(broker, ['a', 'b']);
    const first = session(broker);
    const second = session(broker);
    expect(delivered(await broker.queues.receive(first, request({ max: 2 })))).toEqual([
      [0, 1],
      [1, 1],
    ]);
    const waiting = broker.queues.receive(second, request({ waitMs: 60_000 }));
    await settle();
    await first.close();
    expect(delivered(await waiting)).toEqual([
      [0, 2],
      [1, 2],
    ]);
  });

  it('key_shared: a key is with one member at a time, in order; it moves once its in-flight messages are settled', async () => {
    const clock = new ManualClock();
    const broker = await openBroker(temporaryDirectory(), { clock });
    await broker.topics.create('t', { partitions: 1 });
    const keys = ['k1', 'k2', 'k3', 'k4', 'k1', 'k2', 'k3', 'k4'];
    await produce(
      broker,
      keys.map((key, i) => `${key}/${i}`),
      keys,
    );
    const a = session(broker);
    const b = session(broker);
    const ks = request({ mode: 'key_shared', max: 100 });
    // a alone: it is the only member, gets everything in order.
    const aFirst = delivered(await broker.queues.receive(a, ks));
    expect(aFirst.map(([offset]) => offset)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    // b joins: every key is in flight with a, so b gets nothing.
    expect(delivered(await broker.queues.receive(b, ks))).toEqual([]);
    // a nacks k1's first message (offset 0): k1's later message (4) is still with a, so k1 stays with a.
    await broker.queues.nack('g', 't', [{ partition: 0, offsets: [0] }], { delayMs: 0 });
    expect(delivered(await broker.queues.receive(b, ks))).toEqual([]);
    expect(delivered(await broker.queues.receive(a, ks))).toEqual([[0, 2]]);
    // a acks everything: keys are free; new messages of them go by hash over {a, b}.
    await broker.queues.ack('g', 't', [{ partition: 0, ranges: [0, 8] }]);
    await produce(
      broker,
      keys.map((key, i) => `${key}/again/${i}`),
      keys,
    );
    const toB = delivered(await broker.queues.receive(b, ks)).map(([offset]) => keys[offset - 8]);
    const toA = delivered(await broker.queues.receive(a, ks)).map(([offset]) => keys[offset - 8]);
    expect([...toA, ...toB].sort()).toEqual([...keys].sort());
    for (const key of new Set(keys)) expect(toA.includes(key) && toB.includes(key)).toBe(false);
  });

  it('key_shared: when a member goes, its keys move to the others once its deliveries are released, in order', async () => {
    const clock = new ManualClock();
    const broker = await openBroker(temporaryDirectory(), { clock });
    await broker.topics.create('t', { partitions: 1 });
    const keys = ['k1', 'k2', 'k1', 'k2', 'k1'];
    await produce(
      broker,
      keys.map((key, i) => `${key}/${i}`),
      keys,
    );
    const a = session(broker);
    const b = session(broker);
    const ks = request({ mode: 'key_shared', max: 2 });
    // a takes the first two (k1/0, k2/1); then b joins: k1 and k2 are with a, b gets nothing.
    expect(delivered(await broker.queues.receive(a, ks))).toEqual([
      [0, 1],
      [1, 1],
    ]);
    expect(delivered(await broker.queues.receive(b, request({ mode: 'key_shared', max: 10 })))).toEqual([]);
    // a goes away: its deliveries are released; b (now alone) gets every message, each key in order.
    await a.close();
    expect(delivered(await broker.queues.receive(b, request({ mode: 'key_shared', max: 10 })))).toEqual([
      [0, 2],
      [1, 2],
      [2, 1],
      [3, 1],
      [4, 1],
    ]);
  });

  it('a deleted topic takes its ack state along: created again, it is consumed from its start', async () => {
    const clock = new ManualClock();
    const dataDir = temporaryDirectory();
    let broker = await openBroker(dataDir, { clock });
    await broker.topics.create('t', { partitions: 1 });
    await produce(broker, ['a', 'b']);
    const member = session(broker);
    expect(delivered(await broker.queues.receive(member, request())).length).toBe(2);
    await broker.queues.ack('g', 't', [{ partition: 0, ranges: [0, 2] }]);
    await broker.topics.delete('t');
    await broker.topics.create('t', { partitions: 1 });
    await produce(broker, ['c']);
    await settle();
    expect(delivered(await broker.queues.receive(member, request()))).toEqual([[0, 1]]);
    // And after a restart (the drop is in the log): delivered again (its second delivery), not skipped.
    await broker.close();
    broker = await openBroker(dataDir, { clock });
    expect(delivered(await broker.queues.receive(session(broker), request()))).toEqual([[0, 2]]);
  });

  it('stops handing out past ack floor + queueUnackedPerPartitionMax', async () => {
    const clock = new ManualClock();
    const broker = await openBroker(temporaryDirectory(), { clock, segmentBytes: 16 * 1024 * 1024 });
    await broker.topics.create('t', { partitions: 1 });
    const total = queueUnackedPerPartitionMax + 10;
    for (let start = 0; start < total; start += 5000) {
      const count = Math.min(5000, total - start);
      await produce(
        broker,
        Array.from({ length: count }, (_, i) => `m${start + i}`),
      );
    }
    const member = session(broker);
    let received = 0;
    for (;;) {
      const got = delivered(
        await broker.queues.receive(member, request({ max: 10_000, maxBytes: 8 * 1024 * 1024 })),
      ).length;
      if (got === 0) break;
      received += got;
    }
    expect(received).toBe(queueUnackedPerPartitionMax);
    await broker.queues.ack('g', 't', [{ partition: 0, ranges: [0, 5] }]);
    expect(delivered(await broker.queues.receive(member, request())).map(([offset]) => offset)).toEqual([
      queueUnackedPerPartitionMax,
      queueUnackedPerPartitionMax + 1,
      queueUnackedPerPartitionMax + 2,
      queueUnackedPerPartitionMax + 3,
      queueUnackedPerPartitionMax + 4,
    ]);
  });
});
