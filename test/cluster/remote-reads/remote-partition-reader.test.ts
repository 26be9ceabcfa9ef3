/**
 * The queue service's remote partition reader (src/cluster/remote-reads/remote-partition-reader.ts)
 * against real brokers listening on loopback (two single brokers holding the same batches at the
 * same offsets stand for a partition's leader before and after a move; no etcd needed):
 * - batches from the ack floor, whole, below the high watermark; a long-poll answer wakes `onData`;
 * - bounds: the window (floor + windowOffsets), the cache bytes per reader and the shared budget —
 *   at a bound it stops, and resumes once the floor moves (`settled`);
 * - a miss past the cache returns nothing (the offset waits) and is served once fetched; a miss
 *   below the cache's start restarts the cache there (the refetch);
 * - the leader moving (route to another broker, the first one closed): no offset lost or repeated;
 * - retention on the leader deleting what the reader is about to fetch: it moves to the leader's log
 *   start (OFFSET_OUT_OF_RANGE, then LIST_OFFSET earliest) instead of retrying forever.
 * About 2 s.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { freePort } from '../../../bench/peers/server-process.js';
import type { Transport } from '../../../src/client/transport.js';
import { WebSocketTransport } from '../../../src/client/websocket-transport.js';
import {
  RemoteCacheBudget,
  RemotePartitionReader,
  type RemoteReaderOptions,
} from '../../../src/cluster/remote-reads/remote-partition-reader.js';
import { batchBaseOffset, batchLengthAt, batchRecordCountAt } from '../../../src/format/batch-header.js';
import { decodeRecords, encodeBatch } from '../../../src/format/record-batch.js';
import { Broker } from '../../../src/spillway-broker.js';

const topic = 'jobs';
const recordsPerBatch = 10;

interface Member {
  id: number;
  broker: Broker;
  url: string;
}

let directory: string;
const members: Member[] = [];
/** One connection per broker URL, as the broker → broker pool keeps them. */
const transports = new Map<string, Promise<Transport>>();

async function openMember(id: number): Promise<Member> {
  const port = await freePort();
  const broker = await Broker.open({ dataDir: join(directory, `broker-${id}`), durability: 'none' });
  await broker.listen({ host: '127.0.0.1', port });
  await broker.topics.create(topic, { partitions: 1 });
  const member = { id, broker, url: `ws://127.0.0.1:${port}` };
  members.push(member);
  return member;
}

/** Appends batches `from`..`to - 1` (each `recordsPerBatch` records, values `v<offset>`) to `member`. */
async function produce(member: Member, from: number, to: number): Promise<void> {
  for (let batch = from; batch < to; batch++) {
    const records = Array.from({ length: recordsPerBatch }, (_, index) => ({
      value: `v${batch * recordsPerBatch + index}`,
    }));
    await member.broker.messages.produce(topic, 0, encodeBatch(records));
  }
}

function connect(url: string): Promise<Transport> {
  let transport = transports.get(url);
  if (transport === undefined) {
    transport = WebSocketTransport.connect(url, { requestTimeoutMs: 10_000 });
    transports.set(url, transport);
  }
  return transport;
}

function reader(
  route: () => Member | undefined,
  overrides: Partial<RemoteReaderOptions> & { floor: () => number },
): { reader: RemotePartitionReader; woken: { count: number } } {
  const woken = { count: 0 };
  const opened = new RemotePartitionReader({
    topic,
    partition: 0,
    route: () => {
      const member = route();
      return member === undefined ? undefined : { brokerId: member.id, url: member.url };
    },
    connect,
    onData: () => {
      woken.count++;
    },
    budget: new RemoteCacheBudget(1 << 30),
    fetchWaitMs: 200,
    ...overrides,
  });
  return { reader: opened, woken };
}

async function until<T>(what: string, probe: () => T | undefined, boundMs = 10_000): Promise<T> {
  const deadline = Date.now() + boundMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The offsets of the values the reader returns from `from` on, batch by batch, until a miss. */
function readAll(source: RemotePartitionReader, from: number): number[] {
  const offsets: number[] = [];
  let offset = from;
  for (;;) {
    const read = source.read(offset, 1 << 20);
    if (read.batchCount === 0) return offsets;
    let position = 0;
    for (let index = 0; index < read.batchCount; index++) {
      const length = batchLengthAt(read.records, position);
      const base = batchBaseOffset(read.records, position);
      expect(base + batchRecordCountAt(read.records, position)).toBeGreaterThan(offset);
      for (const record of decodeRecords(read.records.subarray(position, position + length))) {
        if (record.offset < offset) continue;
        expect(Buffer.from(record.value ?? []).toString()).toBe(`v${record.offset}`);
        offsets.push(record.offset);
      }
      position += length;
    }
    offset = offsets.at(-1)! + 1;
  }
}

beforeAll(() => {
  directory = mkdtempSync(join(tmpdir(), 'spillway-remote-reader-'));
});

afterAll(async () => {
  for (const transport of transports.values()) await (await transport).close().catch(() => undefined);
  for (const member of members) await member.broker.close().catch(() => undefined);
  rmSync(directory, { recursive: true, force: true });
});

describe('RemotePartitionReader', () => {
  test('caches whole batches from the floor; a long-poll answer wakes; a miss waits and is served once fetched', async () => {
    const leader = await openMember(1);
    await produce(leader, 0, 3);
    const { reader: source, woken } = reader(() => leader, { floor: () => 5 });
    try {
      await until('the first batches', () => (source.cachedEndOffset >= 30 ? true : undefined));
      // The batch holding the floor (base 0) is kept whole; nothing below it is asked for.
      expect(source.cacheStartOffset).toBe(0);
      expect(readAll(source, 5)).toEqual(Array.from({ length: 25 }, (_, index) => index + 5));
      expect(source.visibleEndOffset).toBe(30);
      // Past the cache: nothing now (never a blocking read), the offset waits.
      expect(source.read(30, 1 << 20).batchCount).toBe(0);
      const before = woken.count;
      await produce(leader, 3, 4);
      await until('the long-poll answer', () => (woken.count > before ? true : undefined));
      expect(readAll(source, 30)).toEqual(Array.from({ length: 10 }, (_, index) => index + 30));
    } finally {
      source.close();
    }
    expect(source.bytes).toBe(0);
  });

  test('stops at the window and at the cache bytes; resumes as the floor moves; the shared budget bounds all readers', async () => {
    const leader = members[0]!;
    await produce(leader, 4, 20); // 200 records in 20 batches
    let floor = 0;
    const budget = new RemoteCacheBudget(1 << 30);
    const batchBytes = leader.broker.topics.partitionOf(topic, 0).read(0, 1).records.length;
    // One batch per FETCH answer, so that a bound is met exactly (an answer may pass it by itself).
    const fetchBytesMax = batchBytes;
    const windowed = reader(() => leader, { floor: () => floor, windowOffsets: 35, budget, fetchBytesMax });
    const bounded = reader(() => leader, {
      floor: () => 0,
      cacheBytesMax: batchBytes * 3,
      budget,
      fetchBytesMax,
    });
    try {
      // Window: fetching stops once the cache reaches floor + 35 (whole batches: up to offset 40).
      await until('the window filled', () => (windowed.reader.cachedEndOffset >= 40 ? true : undefined));
      await until('the bytes bound reached', () =>
        bounded.reader.bytes >= batchBytes * 3 ? true : undefined,
      );
      await new Promise((resolve) => setTimeout(resolve, 400)); // several fetch waits: nothing more comes
      expect(windowed.reader.cachedEndOffset).toBe(40);
      // What is not cached still counts as visible (the queue's lag): the leader's high watermark.
      expect(windowed.reader.visibleEndOffset).toBe(200);
      // Three batches reach the byte bound (the later ones are no smaller than the first): then it stops.
      expect(bounded.reader.cachedEndOffset).toBe(30);
      expect(bounded.reader.bytes).toBeGreaterThanOrEqual(batchBytes * 3);
      expect(budget.bytes).toBe(windowed.reader.bytes + bounded.reader.bytes);
      // Acks move the floor: the batches below it go, and the window moves on.
      floor = 100;
      windowed.reader.settled();
      await until('the window moved', () => (windowed.reader.cachedEndOffset >= 130 ? true : undefined));
      expect(windowed.reader.cacheStartOffset).toBe(100);
      expect(readAll(windowed.reader, 100).at(-1)).toBe(windowed.reader.cachedEndOffset - 1);
      // A shared budget that is full stops a reader that already has a batch.
      const small = new RemoteCacheBudget(batchBytes * 2);
      const first = reader(() => leader, { floor: () => 0, budget: small, fetchBytesMax });
      const second = reader(() => leader, { floor: () => 0, budget: small, fetchBytesMax });
      await until('the budget spent', () => (small.bytes >= batchBytes * 2 ? true : undefined));
      await new Promise((resolve) => setTimeout(resolve, 400));
      // Once spent, no reader fetches: at most the answers already asked for arrive past it.
      expect(small.bytes).toBeLessThanOrEqual(batchBytes * 3);
      expect(first.reader.bytes).toBeGreaterThan(0);
      expect(second.reader.bytes).toBeGreaterThan(0);
      first.reader.close();
      second.reader.close();
      expect(small.bytes).toBe(0);
    } finally {
      windowed.reader.close();
      bounded.reader.close();
    }
    expect(budget.bytes).toBe(0);
  });

  test('a read below the cache start restarts the cache there (refetch)', async () => {
    const leader = members[0]!;
    let floor = 150;
    const { reader: source } = reader(() => leader, { floor: () => floor });
    try {
      await until('the cache from 150', () => (source.cachedEndOffset >= 200 ? true : undefined));
      expect(source.cacheStartOffset).toBe(150);
      floor = 60;
      expect(source.read(60, 1 << 20).batchCount).toBe(0);
      expect(source.stats.restarts).toBe(1);
      await until('the refetch', () => (source.read(60, 1).batchCount > 0 ? true : undefined));
      expect(readAll(source, 60)).toEqual(Array.from({ length: 140 }, (_, index) => index + 60));
    } finally {
      source.close();
    }
  });

  test('a fetch below the log start of the leader (retention) moves to the log start and goes on', async () => {
    const leader = await openMember(3);
    const aged = 'aged';
    await leader.broker.topics.create(aged, {
      partitions: 1,
      segmentBytes: 64 * 1024,
      retentionBytes: 64 * 1024,
    });
    const padding = 'p'.repeat(1000);
    const append = async (from: number, to: number): Promise<void> => {
      for (let offset = from; offset < to; offset++) {
        await leader.broker.messages.produce(aged, 0, encodeBatch([{ value: `v${offset}${padding}` }]));
      }
    };
    await append(0, 50);
    let floor = 0;
    // One batch per answer: the cache stops at the window exactly.
    const { reader: source, woken } = reader(() => leader, {
      topic: aged,
      floor: () => floor,
      windowOffsets: 10,
      fetchBytesMax: 1,
    });
    try {
      await until('the window filled', () => (source.cachedEndOffset >= 10 ? true : undefined));
      expect(source.logStartOffset).toBe(0);
      // Retention deletes what the reader was about to fetch; then the floor moves (acks).
      await append(50, 300);
      expect(leader.broker.applyRetention().deletedSegments).toBeGreaterThan(0);
      const logStart = leader.broker.topics.describe(aged).partitions[0]!.logStartOffset;
      expect(logStart).toBeGreaterThan(20);
      const before = woken.count;
      floor = 10;
      source.settled();
      await until('the skip to the log start', () => (source.logStartOffset === logStart ? true : undefined));
      expect(source.stats.skips).toBe(1);
      expect(woken.count).toBeGreaterThan(before);
      // A read below the log start is gone: no refetch there.
      expect(source.read(15, 1 << 20).batchCount).toBe(0);
      expect(source.stats.restarts).toBe(0);
      floor = logStart;
      source.settled();
      await until('batches from the log start', () =>
        source.read(logStart, 1).batchCount > 0 ? true : undefined,
      );
      expect(source.cacheStartOffset).toBe(logStart);
    } finally {
      source.close();
    }
  });

  test('follows the leader to another broker: no offset lost or repeated', async () => {
    const first = members[0]!;
    const second = await openMember(2);
    await produce(second, 0, 20); // the same batches at the same offsets (a replica)
    let leader: Member | undefined = first;
    const { reader: source, woken } = reader(() => leader, { floor: () => 0 });
    try {
      await until('the first leader read', () => (source.cachedEndOffset >= 200 ? true : undefined));
      // The leader moves: broker 1 goes away (its fetch fails), broker 2 leads and gets more data.
      leader = undefined;
      await first.broker.close();
      members.splice(members.indexOf(first), 1);
      leader = second;
      const before = woken.count;
      await produce(second, 20, 25);
      await until('data from the new leader', () =>
        woken.count > before && source.cachedEndOffset >= 250 ? true : undefined,
      );
      expect(source.leadersUsed).toEqual([1, 2]);
      expect(readAll(source, 0)).toEqual(Array.from({ length: 250 }, (_, index) => index));
    } finally {
      source.close();
    }
  });
});
