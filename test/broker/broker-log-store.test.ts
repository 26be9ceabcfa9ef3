/**
 * The broker on other LogStores (BrokerOptions.logFactory): on MemoryLog, and on FaultyLog wrappers
 * that inject full disks, I/O errors and slow syncs into one partition while the others keep
 * serving. Slow syncs are delays on a ManualClock: deterministic, no real waiting.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { dispatch } from '../../src/protocol/dispatch.js';
import { FrameFlags } from '../../src/protocol/frame.js';
import { Opcode } from '../../src/protocol/opcodes.js';
import { FaultyLogFactory } from '../../src/storage/faulty-log.js';
import { memoryLogFactory } from '../../src/storage/memory-log.js';
import { PartitionLog } from '../../src/storage/partition-log.js';
import { batchOf, openBroker, readAll, rejectedCode, temporaryDirectory, valuesOf } from './helpers.js';

/** Every file (not directory) under `directory`, relative paths. */
function filesUnder(directory: string, prefix = ''): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? filesUnder(join(directory, entry.name), `${prefix}${entry.name}/`)
      : [`${prefix}${entry.name}`],
  );
}

/** Lets promise continuations run; no clock timer can fire. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

function track<T>(promise: Promise<T>): { promise: Promise<T>; done: () => boolean } {
  let settled = false;
  const tracked = promise.finally(() => {
    settled = true;
  });
  return { promise: tracked, done: () => settled };
}

describe('Broker on MemoryLog', () => {
  it('produces, fetches, lists offsets and describes with no segment file on disk', async () => {
    const dataDir = temporaryDirectory();
    const broker = await openBroker(dataDir, { logFactory: memoryLogFactory });
    await broker.topics.create('t', { partitions: 2 });
    expect(await broker.messages.produce('t', 0, batchOf('a', 2, 1000))).toMatchObject({
      baseOffset: 0,
      lastOffset: 1,
    });
    expect(await broker.messages.produce('t', 0, batchOf('b', 1, 5000))).toMatchObject({
      baseOffset: 2,
      lastOffset: 2,
    });
    await broker.messages.produce('t', 1, batchOf('c'));
    expect(await readAll(broker, 't', 0)).toEqual(['a/0', 'a/1', 'b/0']);
    expect(await readAll(broker, 't', 1)).toEqual(['c/0']);
    expect(broker.messages.listOffset('t', 0, 'earliest')).toBe(0);
    expect(broker.messages.listOffset('t', 0, 'latest')).toBe(3);
    expect(broker.messages.listOffset('t', 0, { timestamp: 1001 })).toBe(0);
    expect(broker.messages.listOffset('t', 0, { timestamp: 4000 })).toBe(2);
    expect(broker.topics.describe('t').partitions[0]).toMatchObject({
      logStartOffset: 0,
      logEndOffset: 3,
      durableOffset: 3,
      segmentCount: 2,
    });
    await broker.topics.addPartitions('t', 1);
    await broker.messages.produce('t', 2, batchOf('d'));
    expect(await readAll(broker, 't', 2)).toEqual(['d/0']);
    // The broker keeps one empty directory per partition (its metadata log is always on disk).
    expect(readdirSync(join(dataDir, 'topics', 't')).sort()).toEqual(['0', '1', '2']);
    expect(filesUnder(join(dataDir, 'topics', 't'))).toEqual([]);
    await broker.topics.delete('t');
    expect(broker.topics.list()).toEqual([]);
  });

  it('shows an `always` topic everything appended (the model syncs at once)', async () => {
    const broker = await openBroker(temporaryDirectory(), { logFactory: memoryLogFactory });
    await broker.topics.create('t', { durability: 'always' });
    expect(await broker.messages.produce('t', 0, batchOf('a'))).toMatchObject({ durability: 'always' });
    expect(await readAll(broker, 't', 0)).toEqual(['a/0']);
  });

  it('applies retention by the broker clock', async () => {
    const clock = new ManualClock(10_000);
    const broker = await openBroker(temporaryDirectory(), { logFactory: memoryLogFactory, clock });
    await broker.topics.create('t', { retentionMs: 1_000 });
    await broker.messages.produce('t', 0, batchOf('old', 1, 8_000));
    await broker.messages.produce('t', 0, batchOf('new', 1, 9_500));
    await broker.messages.produce('t', 0, batchOf('newest', 1, 9_900));
    // At 10 000 only `old` (8 000) is older than 1 s.
    expect(broker.applyRetention()).toMatchObject({ deletedSegments: 1, failures: [] });
    expect(await readAll(broker, 't', 0, 1)).toEqual(['new/0', 'newest/0']);
  });
});

describe('Broker on FaultyLog', () => {
  it('answers STORAGE_FULL for a produce that hits ENOSPC and keeps serving, that partition too', async () => {
    const faulty = new FaultyLogFactory(memoryLogFactory);
    const broker = await openBroker(temporaryDirectory(), { logFactory: faulty.open });
    await broker.topics.create('t', { partitions: 2 });
    faulty.log('t', 0).fail('append', 'ENOSPC');
    const failed = await broker.messages.produce('t', 0, batchOf('lost')).catch((error: unknown) => error);
    expect(failed).toMatchObject({ code: 'STORAGE_FULL', retriable: true, name: 'StorageFullError' });
    await broker.messages.produce('t', 1, batchOf('other'));
    expect(await readAll(broker, 't', 1)).toEqual(['other/0']);
    // One call only: the retry succeeds, at the offset the failed one did not take.
    expect(await broker.messages.produce('t', 0, batchOf('retried'))).toMatchObject({ baseOffset: 0 });
    expect(await readAll(broker, 't', 0)).toEqual(['retried/0']);
    expect(faulty.log('t', 0).injectedCount).toBe(1);
  });

  it('answers STORAGE_IO from a point on until healed, on the wire too', async () => {
    const faulty = new FaultyLogFactory(memoryLogFactory);
    const broker = await openBroker(temporaryDirectory(), { logFactory: faulty.open });
    await broker.topics.create('t', { partitions: 2 });
    const log = faulty.log('t', 1);
    log.fail('append', 'EIO', { after: 2, times: Number.POSITIVE_INFINITY });
    await broker.messages.produce('t', 1, batchOf('a'));
    await broker.messages.produce('t', 1, batchOf('b'));
    for (let i = 0; i < 3; i++)
      expect(await rejectedCode(broker.messages.produce('t', 1, batchOf('x')))).toBe('STORAGE_IO');
    // What a client gets: an error frame with the code.
    const answer = await dispatch(
      broker,
      {
        opcode: Opcode.produce,
        flags: 0,
        correlationId: 7,
        header: { topic: 't', partition: 1 },
        body: batchOf('wire'),
      },
      { brokerVersion: 'test', session: broker.sessions.open({ kind: 'http', transport: null }) },
    );
    expect(answer.flags & FrameFlags.error).not.toBe(0);
    expect(answer.header).toMatchObject({ code: 'STORAGE_IO', retriable: false });
    // The other partition is untouched.
    await broker.messages.produce('t', 0, batchOf('fine'));
    expect(await readAll(broker, 't', 0)).toEqual(['fine/0']);
    log.heal();
    await broker.messages.produce('t', 1, batchOf('c'));
    expect(await readAll(broker, 't', 1)).toEqual(['a/0', 'b/0', 'c/0']);
  });

  it('a failed sync fails the produce and hides the batch from consumers of an `always` topic', async () => {
    const faulty = new FaultyLogFactory(memoryLogFactory);
    const broker = await openBroker(temporaryDirectory(), { logFactory: faulty.open });
    await broker.topics.create('t', { durability: 'always' });
    await broker.messages.produce('t', 0, batchOf('a'));
    faulty.log('t', 0).fail('sync', 'EIO');
    expect(await rejectedCode(broker.messages.produce('t', 0, batchOf('unsynced')))).toBe('STORAGE_IO');
    expect(await readAll(broker, 't', 0)).toEqual(['a/0']);
    expect(broker.topics.describe('t').partitions[0]).toMatchObject({ logEndOffset: 2, durableOffset: 1 });
  });

  it('a slow sync on one partition does not hold up the others', async () => {
    const clock = new ManualClock();
    const faulty = new FaultyLogFactory(memoryLogFactory);
    const broker = await openBroker(temporaryDirectory(), { logFactory: faulty.open, clock });
    await broker.topics.create('t', { partitions: 2, durability: 'always' });
    faulty.log('t', 0).delay('sync', 2_000);
    const slow = track(broker.messages.produce('t', 0, batchOf('slow')));
    const consumer = track(broker.messages.fetch('t', 0, 0, { maxBytes: 1 << 20, maxWaitMs: 30_000 }));
    // Partition 1 produces and serves while partition 0's sync is pending.
    for (let i = 0; i < 3; i++) await broker.messages.produce('t', 1, batchOf(`fast${i}`));
    expect(await readAll(broker, 't', 1)).toEqual(['fast0/0', 'fast1/0', 'fast2/0']);
    await settle();
    expect(slow.done()).toBe(false);
    expect(consumer.done()).toBe(false);
    // Appended but not durable: an `always` consumer does not see it yet.
    expect(broker.topics.describe('t').partitions[0]).toMatchObject({ logEndOffset: 1, durableOffset: 0 });
    expect((await broker.messages.fetch('t', 0, 0, { maxBytes: 1 << 20, maxWaitMs: 0 })).highWatermark).toBe(
      0,
    );
    clock.advance(1_999);
    await settle();
    expect(slow.done()).toBe(false);
    clock.advance(1);
    expect(await slow.promise).toMatchObject({ baseOffset: 0, durability: 'always' });
    expect(valuesOf((await consumer.promise).records)).toEqual(['slow/0']);
  });

  it('a slow append on one partition does not hold up the others, and keeps call order', async () => {
    const clock = new ManualClock();
    const faulty = new FaultyLogFactory(memoryLogFactory);
    const broker = await openBroker(temporaryDirectory(), { logFactory: faulty.open, clock });
    await broker.topics.create('t', { partitions: 2 });
    faulty.log('t', 0).delay('append', 500);
    const first = track(broker.messages.produce('t', 0, batchOf('first')));
    const second = track(broker.messages.produce('t', 0, batchOf('second')));
    await broker.messages.produce('t', 1, batchOf('fast'));
    expect(await readAll(broker, 't', 1)).toEqual(['fast/0']);
    await settle();
    expect([first.done(), second.done()]).toEqual([false, false]);
    clock.advance(500);
    expect(await first.promise).toMatchObject({ baseOffset: 0 });
    expect(await second.promise).toMatchObject({ baseOffset: 1 });
  });

  it('reports a retention failure of one partition and applies the others', async () => {
    const faulty = new FaultyLogFactory(memoryLogFactory);
    const broker = await openBroker(temporaryDirectory(), { logFactory: faulty.open });
    await broker.topics.create('t', { partitions: 2, retentionMs: 1_000 });
    for (const partition of [0, 1]) {
      await broker.messages.produce('t', partition, batchOf('old', 1, 1));
      await broker.messages.produce('t', partition, batchOf('new', 1, 2));
    }
    faulty.log('t', 0).fail('retention', 'EIO');
    const result = broker.applyRetention();
    expect(result.deletedSegments).toBe(1);
    expect(result.failures).toHaveLength(1);
    expect(result.failures[0]).toMatchObject({ topic: 't', partition: 0, error: { code: 'STORAGE_IO' } });
    expect(broker.messages.listOffset('t', 0, 'earliest')).toBe(0);
    expect(broker.messages.listOffset('t', 1, 'earliest')).toBe(1);
  });

  it('wraps the real PartitionLog too: ENOSPC on one partition, the file log serves the other', async () => {
    const faulty = new FaultyLogFactory((request) => PartitionLog.open(request));
    const broker = await openBroker(temporaryDirectory(), { logFactory: faulty.open });
    await broker.topics.create('t', { partitions: 2 });
    faulty.log('t', 0).fail('append', 'ENOSPC', { times: 2 });
    expect(await rejectedCode(broker.messages.produce('t', 0, batchOf('a')))).toBe('STORAGE_FULL');
    expect(await rejectedCode(broker.messages.produce('t', 0, batchOf('b')))).toBe('STORAGE_FULL');
    await broker.messages.produce('t', 1, batchOf('c'));
    await broker.messages.produce('t', 0, batchOf('d'));
    expect(await readAll(broker, 't', 0)).toEqual(['d/0']);
    expect(await readAll(broker, 't', 1)).toEqual(['c/0']);
    expect(faulty.log('t', 0).inner).toBeInstanceOf(PartitionLog);
  });
});
