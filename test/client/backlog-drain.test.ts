/**
 * drainBacklog (client/backlog-drain.ts) against a real broker, in process and over WebSocket: the
 * backlog lands in the target exactly once with key, value, headers and timestamp, per-key order
 * holds, the group's offsets reach the end; a resume after an interrupted run (copies present beyond
 * the group's commit, with gaps) copies only what is missing; refusals.
 */
import { describe, expect, it } from 'vitest';
import { drainBacklog, drainSourceValue, parseDrainSource } from '../../src/client/backlog-drain.js';
import type { Spillway } from '../../src/client/index.js';
import { partitionForKey } from '../../src/protocol/partitioner.js';
import { drainGroupHeader, drainSourceHeader } from '../../src/protocol/reserved-headers.js';
import { connect, openBroker, serve } from './helpers.js';

interface Copy {
  partition: number;
  offset: number;
  key: string | null;
  value: string;
  headers: Record<string, string | null>;
  timestamp: number;
  source: { topic: string; partition: number; offset: number };
}

/** Every message of `topic`, read from the start to the end offsets now. */
async function readAll(sw: Spillway, topic: string): Promise<Copy[]> {
  const description = await sw.admin.describeTopic(topic);
  const ends = description.partitions.map((p) => p.logEndOffset);
  let pending = ends.filter((end) => end > 0).length;
  const copies: Copy[] = [];
  if (pending === 0) return copies;
  const reader = sw.consumer({ topics: [topic], from: 'earliest', maxWaitMs: 50 });
  for await (const message of reader) {
    const headers: Record<string, string | null> = {};
    for (const [name, value] of Object.entries(message.headers)) headers[name] = value?.toString() ?? null;
    copies.push({
      partition: message.partition,
      offset: message.offset,
      key: message.key?.toString() ?? null,
      value: message.value!.toString(),
      headers,
      timestamp: message.timestamp,
      source: parseDrainSource(headers[drainSourceHeader] ?? '') ?? { topic: '', partition: -1, offset: -1 },
    });
    if (message.offset === ends[message.partition]! - 1 && --pending === 0) break;
  }
  await reader.close();
  return copies;
}

/** Produces `count` messages into `topic`: keys k0..k(keys-1) (every 7th unkeyed), a header, set timestamps. */
async function fill(sw: Spillway, topic: string, count: number, keys: number): Promise<void> {
  const producer = sw.producer({ lingerMs: 1 });
  const sends: Array<Promise<unknown>> = [];
  for (let i = 0; i < count; i++) {
    sends.push(
      producer.send(topic, {
        key: i % 7 === 3 ? null : `k${i % keys}`,
        value: `v${i}`,
        headers: { seq: String(i), empty: null },
        timestamp: 1_600_000_000_000 + i,
      }),
    );
  }
  await Promise.all(sends);
  await producer.close();
}

/** Checks the target against the source backlog [from, to) per partition: exactly once, order, content. */
function checkCopies(
  sourceMessages: Copy[],
  copies: Copy[],
  ranges: Array<{ partition: number; from: number; to: number }>,
  targetPartitions: number,
): void {
  const expected = sourceMessages.filter((m) => {
    const range = ranges.find((r) => r.partition === m.partition)!;
    return m.offset >= range.from && m.offset < range.to;
  });
  const seen = new Map<string, Copy>();
  for (const copy of copies) {
    const id = `${copy.source.partition}:${copy.source.offset}`;
    expect(seen.has(id), `copied twice: ${id}`).toBe(false);
    seen.set(id, copy);
  }
  expect(seen.size).toBe(expected.length);
  for (const original of expected) {
    const copy = seen.get(`${original.partition}:${original.offset}`)!;
    expect(copy, `missing ${original.partition}:${original.offset}`).toBeDefined();
    expect(copy.key).toBe(original.key);
    expect(copy.value).toBe(original.value);
    expect(copy.timestamp).toBe(original.timestamp);
    expect(copy.headers['seq']).toBe(original.headers['seq']);
    expect(copy.headers['empty']).toBeNull();
    if (original.key !== null) expect(copy.partition).toBe(partitionForKey(original.key, targetPartitions));
  }
  // Per key: target order (partition, offset) follows source order (within a source partition).
  const lastByKey = new Map<string, number>();
  for (const copy of [...copies].sort((a, b) => a.partition - b.partition || a.offset - b.offset)) {
    if (copy.key === null) continue;
    const id = `${copy.key}/${copy.source.partition}`;
    const last = lastByKey.get(id) ?? -1;
    expect(copy.source.offset, `order of key ${copy.key}`).toBeGreaterThan(last);
    lastByKey.set(id, copy.source.offset);
  }
}

async function committedOf(sw: Spillway, group: string, topic: string): Promise<number[]> {
  const description = await sw.admin.describeGroup(group);
  return description.partitions
    .filter((row) => row.topic === topic)
    .sort((a, b) => a.partition - b.partition)
    .map((row) => row.committed ?? -1);
}

describe('drainBacklog', () => {
  for (const transport of ['in-process', 'websocket'] as const) {
    it(`moves the backlog past the group's committed offsets, exactly once (${transport})`, async () => {
      const broker = await openBroker();
      const target = transport === 'in-process' ? broker : `ws://127.0.0.1:${(await serve(broker)).port}`;
      const sw = await connect(target);
      await sw.admin.createTopic('orders', { partitions: 3, durability: 'interval' });
      await fill(sw, 'orders', 3000, 40);
      // The group consumed some first: 500 messages committed.
      const consumer = sw.consumer({ group: 'billing', topics: ['orders'], from: 'earliest' });
      let taken = 0;
      for await (const message of consumer) {
        await message.ack();
        if (++taken === 500) break;
      }
      const committedBefore = await committedOf(sw, 'billing', 'orders');
      const progress: number[] = [];
      const result = await drainBacklog(sw, {
        source: 'orders',
        group: 'billing',
        into: 'orders-wide',
        partitions: 8,
        onProgress: (p) => progress.push(p.copied),
      });
      expect(result).toMatchObject({ created: true, interrupted: false, skipped: 0 });
      expect(result.total).toBe(3000 - committedBefore.reduce((sum, c) => sum + c, 0));
      expect(result.copied).toBe(result.total);
      expect(progress.at(-1)).toBe(result.copied);
      const wide = await sw.admin.describeTopic('orders-wide');
      expect(wide.partitionCount).toBe(8);
      expect(wide.config.durability).toBe('interval');
      checkCopies(await readAll(sw, 'orders'), await readAll(sw, 'orders-wide'), result.ranges, 8);
      const ends = (await sw.admin.describeTopic('orders')).partitions.map((p) => p.logEndOffset);
      expect(await committedOf(sw, 'billing', 'orders')).toEqual(ends);
      expect((await sw.admin.describeGroup('billing')).lag).toBe(0);
      // Nothing left: a second run copies nothing.
      const again = await drainBacklog(sw, {
        source: 'orders',
        group: 'billing',
        into: 'orders-wide',
        partitions: 8,
      });
      expect(again).toMatchObject({ created: false, total: 0, copied: 0, skipped: 0, interrupted: false });
    });
  }

  it('resumes after an interrupted run: copies beyond the commit (with gaps) are not made twice', async () => {
    const broker = await openBroker();
    const sw = await connect(broker);
    await sw.admin.createTopic('src', { partitions: 2 });
    await sw.admin.createTopic('tmp', { partitions: 4 });
    await fill(sw, 'src', 1000, 25);
    const source = await readAll(sw, 'src');
    // What an interrupted run leaves: in TMP, copies of some offsets of partition 0 above the
    // group's (absent) commit, with a gap, and for partition 1 a few; plus a copy for another group
    // and one of another topic, which must not count.
    const producer = sw.producer();
    const planted = source.filter(
      (m) => (m.partition === 0 && m.offset < 120 && m.offset !== 50) || (m.partition === 1 && m.offset < 10),
    );
    for (const m of planted) {
      await producer.send('tmp', {
        key: m.key,
        value: m.value,
        headers: {
          seq: m.headers['seq']!,
          empty: null,
          [drainSourceHeader]: drainSourceValue('src', m.partition, m.offset),
          [drainGroupHeader]: 'g',
        },
        timestamp: m.timestamp,
        partition: m.key === null ? 0 : partitionForKey(m.key, 4),
      });
    }
    await producer.send('tmp', {
      value: 'x',
      headers: { [drainSourceHeader]: drainSourceValue('src', 0, 50), [drainGroupHeader]: 'other' },
    });
    await producer.send('tmp', {
      value: 'y',
      headers: { [drainSourceHeader]: drainSourceValue('elsewhere', 0, 50), [drainGroupHeader]: 'g' },
    });
    await producer.close();
    const result = await drainBacklog(sw, { source: 'src', group: 'g', into: 'tmp', partitions: 4 });
    expect(result).toMatchObject({
      created: false,
      total: 1000,
      skipped: planted.length,
      interrupted: false,
    });
    expect(result.copied).toBe(1000 - planted.length);
    const copies = (await readAll(sw, 'tmp')).filter(
      (c) => c.headers[drainGroupHeader] === 'g' && c.source.topic === 'src',
    );
    // The planted copies of offset 0..119 but 50: the copy of 50 comes later in its partition, so
    // for its key the order across the gap is not kept (what a real interruption cannot produce:
    // there a partition's copies are a prefix of what was sent) — check exactly-once and content only.
    const ids = copies.map((c) => `${c.source.partition}:${c.source.offset}`);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.length).toBe(1000);
    const ends = (await sw.admin.describeTopic('src')).partitions.map((p) => p.logEndOffset);
    expect(await committedOf(sw, 'g', 'src')).toEqual(ends);
  });

  it('refuses a group with live members, a queue group, a target with another partition count', async () => {
    const broker = await openBroker();
    const sw = await connect(broker);
    await sw.admin.createTopic('src', { partitions: 2 });
    await fill(sw, 'src', 10, 3);
    const member = sw.consumer({ group: 'busy', topics: ['src'], from: 'earliest' });
    await member.ready();
    await expect(
      drainBacklog(sw, { source: 'src', group: 'busy', into: 'tmp', partitions: 4 }),
    ).rejects.toMatchObject({ code: 'GROUP_NOT_EMPTY' });
    await member.close();
    const queue = sw.consumer({ group: 'q', topics: ['src'], mode: 'shared' });
    for await (const message of queue) {
      await message.ack();
      break;
    }
    await queue.close();
    await expect(
      drainBacklog(sw, { source: 'src', group: 'q', into: 'tmp', partitions: 4 }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await sw.admin.createTopic('narrow', { partitions: 2 });
    await expect(
      drainBacklog(sw, { source: 'src', group: 'busy', into: 'narrow', partitions: 4 }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(
      drainBacklog(sw, { source: 'src', group: 'busy', into: 'src', partitions: 4 }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(
      drainBacklog(sw, { source: 'src', group: 'busy', into: 'x', partitions: 0 }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(
      drainBacklog(sw, { source: 'nope', group: 'busy', into: 'x', partitions: 2 }),
    ).rejects.toMatchObject({ code: 'UNKNOWN_TOPIC' });
  });

  it('stops when its signal aborts, commits what was copied, and a next run finishes', async () => {
    const broker = await openBroker();
    const sw = await connect(broker);
    await sw.admin.createTopic('src', { partitions: 2 });
    await fill(sw, 'src', 20_000, 100);
    const stop = new AbortController();
    const first = await drainBacklog(sw, {
      source: 'src',
      group: 'g',
      into: 'tmp',
      partitions: 4,
      inFlightMessagesMax: 100,
      progressIntervalMs: 1,
      onProgress: (p) => {
        if (p.copied > 0) stop.abort();
      },
      signal: stop.signal,
    });
    expect(first.interrupted).toBe(true);
    expect(first.copied).toBeLessThan(20_000);
    const second = await drainBacklog(sw, { source: 'src', group: 'g', into: 'tmp', partitions: 4 });
    expect(second.interrupted).toBe(false);
    expect(second.skipped).toBe(0);
    expect(first.copied + second.copied).toBe(20_000);
    checkCopies(
      await readAll(sw, 'src'),
      await readAll(sw, 'tmp'),
      [
        { partition: 0, from: 0, to: Number.MAX_SAFE_INTEGER },
        { partition: 1, from: 0, to: Number.MAX_SAFE_INTEGER },
      ],
      4,
    );
  });
});

it('parseDrainSource reads what drainSourceValue writes, topics with colons included', () => {
  expect(parseDrainSource(drainSourceValue('a:b', 3, 42))).toEqual({
    topic: 'a:b',
    partition: 3,
    offset: 42,
  });
  expect(parseDrainSource('nope')).toBeNull();
  expect(parseDrainSource('t:x:1')).toBeNull();
  expect(parseDrainSource(':1:2')).toBeNull();
});
