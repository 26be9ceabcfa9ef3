import { describe, expect, test } from 'vitest';
import {
  type ConsumedMessage,
  type GroupConsumer,
  type Spillway,
  SpillwayError,
} from '../../src/client/index.js';
import { connect, openBroker, waitFor } from './helpers.js';

/** Reads a consumer in the background, acking each message; `stop()` closes it. */
function drain(consumer: GroupConsumer, seen: ConsumedMessage[], options: { ack?: boolean } = {}) {
  const done = (async () => {
    for await (const message of consumer) {
      seen.push(message);
      if (options.ack !== false) await message.ack();
    }
  })();
  return {
    done,
    stop: async () => {
      await consumer.close();
      await done;
    },
  };
}

async function produceKeyed(sw: Spillway, topic: string, count: number, prefix = 'v'): Promise<void> {
  const producer = sw.producer();
  await Promise.all(
    Array.from({ length: count }, (_, i) =>
      producer.send(topic, { key: `k${i % 37}`, value: `${prefix}${i}` }),
    ),
  );
  await producer.close();
}

const values = (messages: ConsumedMessage[]): string[] => messages.map((m) => m.value!.toString());

describe('GroupConsumer, group mode', () => {
  test('members share the partitions; a closed member hands its partitions over; commits resume a restarted group', async () => {
    const broker = await openBroker();
    const sw = await connect(broker);
    await sw.admin.createTopic('t', { partitions: 6 });
    const a = sw.consumer({ group: 'g', topics: ['t'], from: 'earliest', commitIntervalMs: 5 });
    await a.ready();
    expect(a.assignment()).toHaveLength(6);
    const b = sw.consumer({ group: 'g', topics: ['t'], from: 'earliest', commitIntervalMs: 5 });
    await b.ready();
    await waitFor(() => a.assignment().length === 3 && b.assignment().length === 3);
    const owned = new Set([...a.assignment(), ...b.assignment()].map((p) => p.partition));
    expect(owned.size).toBe(6);
    const seenA: ConsumedMessage[] = [];
    const seenB: ConsumedMessage[] = [];
    const runA = drain(a, seenA);
    const runB = drain(b, seenB);
    await produceKeyed(sw, 't', 600);
    await waitFor(() => seenA.length + seenB.length === 600);
    // A partition is read by one member only.
    const partitionsA = new Set(seenA.map((m) => m.partition));
    expect(seenB.some((m) => partitionsA.has(m.partition))).toBe(false);
    await runB.stop();
    await waitFor(() => a.assignment().length === 6);
    await produceKeyed(sw, 't', 60, 'w');
    await waitFor(() => seenA.filter((m) => m.value!.toString().startsWith('w')).length === 60);
    // b committed before leaving: nothing of the first 600 came again.
    expect(seenA.length + seenB.length).toBe(660);
    await runA.stop();
    const description = broker.groups.describe('g');
    expect(description.members).toHaveLength(0);
    expect(description.lag).toBe(0);
    expect(description.partitions.map((p) => p.committed).reduce((x, y) => x! + y!, 0)).toBe(660);
    // A new member of the group starts from the committed offsets, not from `from`.
    const c = sw.consumer({ group: 'g', topics: ['t'], from: 'earliest' });
    const seenC: ConsumedMessage[] = [];
    const runC = drain(c, seenC);
    await c.ready();
    await produceKeyed(sw, 't', 5, 'x');
    await waitFor(() => seenC.length === 5);
    expect(values(seenC).every((value) => value.startsWith('x'))).toBe(true);
    await runC.stop();
  });

  test('per-key order holds across a rebalance', async () => {
    const broker = await openBroker();
    const sw = await connect(broker);
    await sw.admin.createTopic('t', { partitions: 4 });
    const seen: ConsumedMessage[] = [];
    const a = sw.consumer({ group: 'g', topics: ['t'], from: 'earliest', commitIntervalMs: 5 });
    const runA = drain(a, seen);
    await a.ready();
    const producing = produceKeyed(sw, 't', 2000);
    const b = sw.consumer({ group: 'g', topics: ['t'], from: 'earliest', commitIntervalMs: 5 });
    const runB = drain(b, seen);
    await producing;
    await waitFor(() => new Set(values(seen)).size === 2000);
    const lastByKey = new Map<string, number>();
    for (const message of seen) {
      const key = message.key!.toString();
      const index = Number(message.value!.toString().slice(1));
      expect(index).toBeGreaterThan(lastByKey.get(key) ?? -1);
      lastByKey.set(key, index);
    }
    expect(seen.length).toBe(2000); // graceful hand-over: no duplicates
    await runA.stop();
    await runB.stop();
  });

  test('partitions added while members run are picked up from the earliest offset', async () => {
    const broker = await openBroker();
    const sw = await connect(broker);
    await sw.admin.createTopic('t', { partitions: 2 });
    const seen: ConsumedMessage[] = [];
    const a = sw.consumer({ group: 'g', topics: ['t'], from: 'latest' });
    const run = drain(a, seen);
    await a.ready();
    const generation = a.generation;
    await sw.admin.addPartitions('t', 2);
    const producer = sw.producer();
    await producer.send('t', { partition: 3, value: 'new' });
    await waitFor(() => seen.length === 1);
    expect(seen[0]!.partition).toBe(3);
    expect(a.assignment()).toHaveLength(4);
    expect(a.generation).toBeGreaterThan(generation);
    await producer.close();
    await run.stop();
  });

  test('nack rewinds the partition: the message comes again with a higher deliveryCount', async () => {
    const broker = await openBroker();
    const sw = await connect(broker);
    await sw.admin.createTopic('t');
    const producer = sw.producer();
    for (const value of ['a', 'b', 'c']) await producer.send('t', { value });
    const consumer = sw.consumer({ group: 'g', topics: ['t'], from: 'earliest' });
    const first = (await consumer.next()).value as ConsumedMessage;
    await first.ack();
    const second = (await consumer.next()).value as ConsumedMessage;
    expect(second.value!.toString()).toBe('b');
    await second.nack();
    const again = (await consumer.next()).value as ConsumedMessage;
    expect([again.value!.toString(), again.deliveryCount]).toEqual(['b', 2]);
    await again.ack();
    const third = (await consumer.next()).value as ConsumedMessage;
    expect([third.value!.toString(), third.deliveryCount]).toEqual(['c', 1]);
    await third.ack();
    await consumer.close();
    expect(broker.groups.describe('g').partitions[0]!.committed).toBe(3);
    await producer.close();
  });

  test('a member the broker removed joins again and goes on from the committed offset', async () => {
    const broker = await openBroker();
    const sw = await connect(broker);
    await sw.admin.createTopic('t');
    const seen: ConsumedMessage[] = [];
    const consumer = sw.consumer({ group: 'g', topics: ['t'], from: 'earliest', commitIntervalMs: 5 });
    const run = drain(consumer, seen);
    await consumer.ready();
    await produceKeyed(sw, 't', 10);
    await waitFor(() => seen.length === 10);
    await waitFor(() => consumer.assignment()[0]?.committed === 10);
    const first = consumer.member!;
    const session = broker.sessions.get(sw.broker.sessionId!)!;
    await broker.groups.leave(session, { group: 'g', memberId: first });
    await waitFor(() => consumer.member !== first && consumer.assignment().length === 1);
    await produceKeyed(sw, 't', 5, 'after');
    await waitFor(() => seen.length === 15);
    expect(values(seen.slice(10)).every((value) => value.startsWith('after'))).toBe(true);
    expect(consumer.stats.joins).toBe(2);
    await run.stop();
  });

  test('bad options and mismatched joins are typed errors', async () => {
    const broker = await openBroker();
    const sw = await connect(broker);
    await sw.admin.createTopic('t');
    await sw.admin.createTopic('u');
    expect(() => sw.consumer({ group: '', topics: ['t'] })).toThrow(SpillwayError);
    expect(() => sw.consumer({ group: 'g', topics: ['t'], mode: 'broadcast' })).toThrow(/stable memberId/);
    const a = sw.consumer({ group: 'g', topics: ['t'] });
    await a.ready();
    const b = sw.consumer({ group: 'g', topics: ['u'] });
    await expect(b.next()).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const c = sw.consumer({ group: 'g', topics: ['t'], mode: 'broadcast', memberId: 'm' });
    await expect(c.next()).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const d = sw.consumer({ group: 'h', topics: ['missing'] });
    await expect(d.next()).rejects.toMatchObject({ code: 'UNKNOWN_TOPIC' });
    await a.close();
  });
});

describe('GroupConsumer, broadcast mode', () => {
  test('every member gets every message and resumes from its own position', async () => {
    const broker = await openBroker();
    const sw = await connect(broker);
    await sw.admin.createTopic('t', { partitions: 3 });
    const seen1: ConsumedMessage[] = [];
    const seen2: ConsumedMessage[] = [];
    const m1 = sw.consumer({
      group: 'b',
      topics: ['t'],
      mode: 'broadcast',
      memberId: 'one',
      from: 'earliest',
      commitIntervalMs: 5,
    });
    const m2 = sw.consumer({
      group: 'b',
      topics: ['t'],
      mode: 'broadcast',
      memberId: 'two',
      from: 'earliest',
      commitIntervalMs: 5,
    });
    const run1 = drain(m1, seen1);
    const run2 = drain(m2, seen2);
    await produceKeyed(sw, 't', 300);
    await waitFor(() => seen1.length === 300 && seen2.length === 300);
    expect(new Set(values(seen1)).size).toBe(300);
    expect(new Set(values(seen2)).size).toBe(300);
    await run1.stop();
    await produceKeyed(sw, 't', 10, 'late');
    await waitFor(() => seen2.length === 310);
    const again: ConsumedMessage[] = [];
    const m1b = sw.consumer({
      group: 'b',
      topics: ['t'],
      mode: 'broadcast',
      memberId: 'one',
      from: 'earliest',
    });
    const run1b = drain(m1b, again);
    await waitFor(() => again.length === 10);
    expect(values(again).every((value) => value.startsWith('late'))).toBe(true);
    const rows = broker.groups.describe('b').partitions;
    expect(new Set(rows.map((row) => row.member))).toEqual(new Set(['one', 'two']));
    await run1b.stop();
    await run2.stop();
  });
});
