import { describe, expect, test } from 'vitest';
import { producerDefaults, SpillwayError } from '../../src/client/index.js';
import { nextStickyPartition, partitionOfKey } from '../../src/client/partition-chooser.js';
import { BackpressureError } from '../../src/errors.js';
import { batchRecordCountAt } from '../../src/format/batch-header.js';
import type { MessageService } from '../../src/protocol/broker-api.js';
import { partitionForKey } from '../../src/protocol/partitioner.js';
import type { Broker } from '../../src/spillway-broker.js';
import { connect, deferred, delegate, openBroker, sleep, waitFor } from './helpers.js';

interface ProduceCall {
  topic: string;
  partition: number;
  recordCount: number;
  bytes: number;
}

/** The broker behind a wrapper that records every produce call. */
async function recordingBroker(overrides: (broker: Broker) => Partial<MessageService> = () => ({})) {
  const broker = await openBroker();
  const calls: ProduceCall[] = [];
  const extra = overrides(broker);
  const api = delegate(broker, {
    produce: (topic, partition, batch) => {
      calls.push({ topic, partition, recordCount: batchRecordCountAt(batch), bytes: batch.length });
      return extra.produce
        ? extra.produce(topic, partition, batch)
        : broker.messages.produce(topic, partition, batch);
    },
    ...(extra.fetch ? { fetch: extra.fetch } : {}),
  });
  return { broker, api, calls };
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<SpillwayError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(SpillwayError);
    expect((error as SpillwayError).code).toBe(code);
    return error as SpillwayError;
  }
  throw new Error(`expected a rejection with ${code}`);
}

describe('partitioner', () => {
  test("keyed partitions are Kafka's: toPositive(murmur2(utf8 key)) % count", () => {
    // Kafka's UtilsTest.testMurmur2 vectors.
    const vectors: Array<[string, number]> = [
      ['21', -973932308],
      ['foobar', -790332482],
      ['a-little-bit-long-string', -985981536],
      ['a-little-bit-longer-string', -1486304829],
      ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
      ['abc', 479470107],
    ];
    for (const [key, hash] of vectors) {
      for (const count of [1, 3, 8, 100]) {
        expect(partitionOfKey(key, count)).toBe((hash & 0x7fffffff) % count);
        expect(partitionOfKey(Buffer.from(key), count)).toBe((hash & 0x7fffffff) % count);
      }
    }
  });

  test('string and byte keys agree with the shared partitioner, including non-ASCII and long keys', () => {
    const keys = ['', 'user-1', 'é', '日本語のキー', '🙂'.repeat(10), 'x'.repeat(5000)];
    for (let i = 0; i < 500; i++) keys.push(`key-${i}-${Math.random()}`);
    for (const key of keys) {
      for (const count of [1, 7, 8, 4096]) {
        expect(partitionOfKey(key, count)).toBe(partitionForKey(key, count));
        expect(partitionOfKey(Buffer.from(key), count)).toBe(partitionForKey(key, count));
      }
    }
  });

  test('the next sticky partition is another one, spread over all', () => {
    expect(nextStickyPartition(0, 1)).toBe(0);
    const seen = new Set<number>();
    for (let i = 0; i < 1000; i++) {
      const next = nextStickyPartition(3, 8);
      expect(next).not.toBe(3);
      expect(next).toBeGreaterThanOrEqual(0);
      expect(next).toBeLessThan(8);
      seen.add(next);
    }
    expect(seen.size).toBe(7);
  });
});

describe('producer', () => {
  test('send resolves with the partition and offset of each record once acked', async () => {
    const { api, calls } = await recordingBroker();
    const sw = await connect(api);
    await sw.admin.createTopic('orders', { partitions: 3 });
    const producer = sw.producer();
    const sends = Array.from({ length: 10 }, (_, i) =>
      producer.send('orders', { partition: 1, value: `v${i}` }),
    );
    const results = await Promise.all(sends);
    expect(results).toEqual(Array.from({ length: 10 }, (_, i) => ({ partition: 1, offset: i })));
    expect(calls).toEqual([{ topic: 'orders', partition: 1, recordCount: 10, bytes: expect.any(Number) }]);
    expect(await producer.send('orders', { partition: 1, value: 'next' })).toEqual({
      partition: 1,
      offset: 10,
    });
    expect(producer.bufferedBytes).toBe(0);
  });

  test('lingerMs 0 puts the sends of one tick in one batch per partition', async () => {
    const { api, calls } = await recordingBroker();
    const sw = await connect(api);
    await sw.admin.createTopic('t', { partitions: 2 });
    const producer = sw.producer({ lingerMs: 0 });
    const first = [];
    for (let i = 0; i < 100; i++) first.push(producer.send('t', { partition: i % 2, value: `a${i}` }));
    await Promise.all(first);
    expect(calls.map((call) => [call.partition, call.recordCount]).sort()).toEqual([
      [0, 50],
      [1, 50],
    ]);
    // A later tick makes a new batch.
    await producer.send('t', { partition: 0, value: 'b' });
    expect(calls).toHaveLength(3);
    // Sequential awaited sends: one batch each.
    for (let i = 0; i < 5; i++) await producer.send('t', { partition: 1, value: `c${i}` });
    expect(calls).toHaveLength(8);
  });

  test('lingerMs > 0 holds a batch that long for more records', async () => {
    const { api, calls } = await recordingBroker();
    const sw = await connect(api);
    await sw.admin.createTopic('t');
    const producer = sw.producer({ lingerMs: 150 });
    const started = Date.now();
    const first = producer.send('t', { value: 'a' });
    await sleep(40);
    const second = producer.send('t', { value: 'b' });
    expect(calls).toHaveLength(0);
    expect(await first).toEqual({ partition: 0, offset: 0 });
    expect(await second).toEqual({ partition: 0, offset: 1 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
    expect(calls).toHaveLength(1);
    expect(calls[0]!.recordCount).toBe(2);
  });

  test('a batch is sent once it reaches batchBytes; a record larger than batchBytes travels alone', async () => {
    const { api, calls } = await recordingBroker();
    const sw = await connect(api);
    await sw.admin.createTopic('t');
    const producer = sw.producer({ batchBytes: 1024, lingerMs: 10_000 });
    const value = 'x'.repeat(100);
    const sends = Array.from({ length: 50 }, () => producer.send('t', { value }));
    // Full batches leave at once, without waiting for the linger.
    await waitFor(() => calls.length >= 5);
    sends.push(producer.send('t', { value: 'y'.repeat(5000) }));
    await producer.flush();
    const results = await Promise.all(sends);
    expect(results.map((result) => result.offset)).toEqual(Array.from({ length: 51 }, (_, i) => i));
    // Full batches: no room left for another 100-byte record, and never past batchBytes.
    for (const call of calls.slice(0, 5)) {
      expect(call.bytes).toBeGreaterThan(1024 - 120);
      expect(call.bytes).toBeLessThanOrEqual(1024);
    }
    expect(calls.reduce((sum, call) => sum + call.recordCount, 0)).toBe(51);
    expect(calls.at(-1)).toMatchObject({ recordCount: 1, bytes: expect.any(Number) });
    expect(calls.at(-1)!.bytes).toBeGreaterThan(5000);
  });

  test('keyed records go to the partition of their key, the same every time', async () => {
    const { broker, api } = await recordingBroker();
    const sw = await connect(api);
    await sw.admin.createTopic('k', { partitions: 8 });
    const producer = sw.producer();
    const keys = Array.from({ length: 200 }, (_, i) => `user-${i}`);
    for (let round = 0; round < 3; round++) {
      const results = await Promise.all(keys.map((key) => producer.send('k', { key, value: key })));
      results.forEach((result, i) => {
        expect(result.partition).toBe(partitionForKey(keys[i]!, 8));
      });
      const bytes = await Promise.all(
        keys.map((key) => producer.send('k', { key: Buffer.from(key), value: 'b' })),
      );
      bytes.forEach((result, i) => {
        expect(result.partition).toBe(partitionForKey(keys[i]!, 8));
      });
    }
    expect(broker.topics.describe('k').partitions.every((partition) => partition.logEndOffset > 0)).toBe(
      true,
    );
  });

  test('keyless records stick to one partition per batch, then move to another', async () => {
    const { api, calls } = await recordingBroker();
    const sw = await connect(api);
    await sw.admin.createTopic('s', { partitions: 4 });
    const producer = sw.producer();
    const partitionsPerTick: number[] = [];
    for (let tick = 0; tick < 40; tick++) {
      const results = await Promise.all(Array.from({ length: 20 }, () => producer.send('s', { value: 'v' })));
      const partitions = new Set(results.map((result) => result.partition));
      expect(partitions.size).toBe(1);
      partitionsPerTick.push(results[0]!.partition);
    }
    for (let tick = 1; tick < partitionsPerTick.length; tick++) {
      expect(partitionsPerTick[tick]).not.toBe(partitionsPerTick[tick - 1]);
    }
    expect(new Set(partitionsPerTick).size).toBe(4);
    expect(calls.every((call) => call.recordCount === 20)).toBe(true);
  });

  test('an explicit partition is honoured; a partition beyond the count is refreshed, then refused', async () => {
    const { api } = await recordingBroker();
    const sw = await connect(api);
    await sw.admin.createTopic('p', { partitions: 2 });
    const producer = sw.producer();
    expect(await producer.send('p', { key: 'whatever', partition: 1, value: 'a' })).toEqual({
      partition: 1,
      offset: 0,
    });
    await expectCode(producer.send('p', { partition: 2, value: 'b' }), 'UNKNOWN_PARTITION');
    await expectCode(producer.send('p', { partition: -1, value: 'b' }), 'INVALID_ARGUMENT');
    // Partitions added after the producer cached the count: the send refreshes and goes through.
    await sw.admin.addPartitions('p', 2);
    expect(await producer.send('p', { partition: 3, value: 'c' })).toEqual({ partition: 3, offset: 0 });
  });

  test('partition counts are refreshed when older than metadataMaxAgeMs: keys follow added partitions', async () => {
    const { api } = await recordingBroker();
    const sw = await connect(api, { metadataMaxAgeMs: 0 });
    await sw.admin.createTopic('grow', { partitions: 2 });
    const producer = sw.producer();
    const key = Array.from({ length: 100 }, (_, i) => `key-${i}`).find(
      (candidate) => partitionForKey(candidate, 8) >= 2,
    )!;
    expect((await producer.send('grow', { key, value: 'a' })).partition).toBe(partitionForKey(key, 2));
    await sw.admin.addPartitions('grow', 6);
    let partition = -1;
    for (let attempt = 0; attempt < 20 && partition !== partitionForKey(key, 8); attempt++) {
      partition = (await producer.send('grow', { key, value: 'b' })).partition;
    }
    expect(partition).toBe(partitionForKey(key, 8));
  });

  test('sends made before the partition count is known keep their order, across topics', async () => {
    const { api } = await recordingBroker();
    const sw = await connect(api);
    await sw.admin.createTopic('x');
    await sw.admin.createTopic('y');
    const producer = sw.producer();
    const order: string[] = [];
    const sends = [];
    for (let i = 0; i < 20; i++) {
      const topic = i % 2 === 0 ? 'x' : 'y';
      sends.push(
        producer.send(topic, { value: `${i}` }).then((result) => order.push(`${topic}${result.offset}`)),
      );
    }
    const missing = expectCode(producer.send('missing', { value: 'z' }), 'UNKNOWN_TOPIC');
    await Promise.all(sends);
    expect(order.filter((entry) => entry.startsWith('x'))).toEqual(
      Array.from({ length: 10 }, (_, i) => `x${i}`),
    );
    await missing;
  });

  test('an unknown topic fails the send with UNKNOWN_TOPIC', async () => {
    const { api } = await recordingBroker();
    const sw = await connect(api);
    const producer = sw.producer();
    await expectCode(producer.send('missing', { value: 'x' }), 'UNKNOWN_TOPIC');
    await sw.admin.createTopic('missing');
    expect(await producer.send('missing', { value: 'x' })).toEqual({ partition: 0, offset: 0 });
  });

  test('bad records are refused without harming the others; unsupported features are refused', async () => {
    const { api } = await recordingBroker();
    const sw = await connect(api);
    await sw.admin.createTopic('t');
    const producer = sw.producer();
    const good = producer.send('t', { value: 'ok' });
    await expectCode(producer.send('t', { value: 42 as unknown as string }), 'INVALID_ARGUMENT');
    await expectCode(producer.send('t', { key: 'k'.repeat(70_000), value: 'x' }), 'INVALID_BATCH');
    for (const msgId of [42, '', 'x'.repeat(257), null]) {
      await expectCode(producer.send('t', { value: 'x', msgId: msgId as string }), 'INVALID_ARGUMENT');
    }
    await expectCode(
      producer.send('t', { value: 'x', msgId: 'm', headers: { 'sw-msg-id': 'n' } }),
      'INVALID_ARGUMENT',
    );
    await expectCode(producer.send('t', { value: 'x', delayMs: -1 }), 'INVALID_ARGUMENT');
    await expectCode(producer.send('t', { value: 'x', delayMs: 1, deliverAt: 1 }), 'INVALID_ARGUMENT');
    expect(await good).toEqual({ partition: 0, offset: 0 });
    expect(await producer.send('t', { value: null, key: null })).toEqual({ partition: 0, offset: 1 });
    expect(() => sw.producer({ idempotent: true, inFlightBatchesPerPartitionMax: 6 })).toThrow(/\[1, 5\]/);
    expect(() => sw.producer({ producerName: 'p' })).toThrow(/needs idempotent/);
    expect(() => sw.producer({ lingerMs: -1 })).toThrow(SpillwayError);
  });

  test('a retriable error is retried with backoff until the broker accepts', async () => {
    let failuresLeft = 3;
    const { api, calls } = await recordingBroker((broker) => ({
      produce: async (topic, partition, batch) => {
        if (failuresLeft > 0) {
          failuresLeft--;
          throw new BackpressureError('busy, try later');
        }
        return broker.messages.produce(topic, partition, batch);
      },
    }));
    const sw = await connect(api);
    await sw.admin.createTopic('r');
    const producer = sw.producer({ retryBackoffMs: 10 });
    const started = Date.now();
    const results = await Promise.all([
      producer.send('r', { value: 'a' }),
      producer.send('r', { value: 'b' }),
    ]);
    expect(results).toEqual([
      { partition: 0, offset: 0 },
      { partition: 0, offset: 1 },
    ]);
    expect(calls).toHaveLength(4);
    // Backoffs of ~10, ~20 and ~40 ms (±20 %).
    expect(Date.now() - started).toBeGreaterThanOrEqual(50);
  });

  test('retries are bounded by count and by deliveryTimeoutMs; other errors are not retried', async () => {
    let error: SpillwayError = new BackpressureError('always busy');
    const { api, calls } = await recordingBroker(() => ({
      produce: async () => {
        throw error;
      },
    }));
    const sw = await connect(api);
    await sw.admin.createTopic('r');
    const byCount = sw.producer({ retries: 2, retryBackoffMs: 1 });
    const failed = await expectCode(byCount.send('r', { value: 'a' }), 'BACKPRESSURE');
    expect(failed.message).toBe('always busy');
    expect(calls).toHaveLength(3);

    calls.length = 0;
    const byTime = sw.producer({
      retries: 1000,
      retryBackoffMs: 20,
      retryBackoffMaxMs: 20,
      deliveryTimeoutMs: 150,
    });
    const started = Date.now();
    await expectCode(byTime.send('r', { value: 'a' }), 'BACKPRESSURE');
    expect(Date.now() - started).toBeLessThan(1000);
    expect(calls.length).toBeGreaterThan(2);
    expect(calls.length).toBeLessThan(12);

    calls.length = 0;
    error = new SpillwayError('STORAGE_IO', 'disk broke');
    await expectCode(sw.producer().send('r', { value: 'a' }), 'STORAGE_IO');
    expect(calls).toHaveLength(1);
  });

  test('a batch that fails rejects every send in it with its error; other batches are unaffected', async () => {
    const { api, calls } = await recordingBroker((broker) => ({
      produce: async (topic, partition, batch) => {
        if (partition === 1) throw new SpillwayError('STORAGE_IO', 'partition 1 disk broke');
        return broker.messages.produce(topic, partition, batch);
      },
    }));
    const sw = await connect(api);
    await sw.admin.createTopic('f', { partitions: 2 });
    const producer = sw.producer();
    const outcomes = await Promise.allSettled(
      Array.from({ length: 200 }, (_, i) => producer.send('f', { partition: i % 2, value: `v${i}` })),
    );
    expect(calls.map((call) => [call.partition, call.recordCount]).sort()).toEqual([
      [0, 100],
      [1, 100],
    ]);
    const errors = new Set<unknown>();
    outcomes.forEach((outcome, i) => {
      if (i % 2 === 0) {
        expect(outcome).toEqual({ status: 'fulfilled', value: { partition: 0, offset: i / 2 } });
      } else {
        expect(outcome.status).toBe('rejected');
        const reason = (outcome as PromiseRejectedResult).reason as SpillwayError;
        expect(reason.code).toBe('STORAGE_IO');
        errors.add(reason);
      }
    });
    // One error, the batch's, for all its records.
    expect(errors.size).toBe(1);
    expect(producer.bufferedBytes).toBe(0);
    await producer.flush();
  });

  test('sends settle only after the ack, in send order within a partition, across batches', async () => {
    const gate = deferred();
    const { api, calls } = await recordingBroker((broker) => ({
      produce: async (topic, partition, batch) => {
        await gate.promise;
        return broker.messages.produce(topic, partition, batch);
      },
    }));
    const sw = await connect(api);
    await sw.admin.createTopic('s');
    const producer = sw.producer({ batchBytes: 1024, inFlightBatchesPerPartitionMax: 1 });
    const order: number[] = [];
    const sends = Array.from({ length: 300 }, (_, i) =>
      producer.send('s', { value: 'x'.repeat(50) }).then((result) => {
        order.push(i);
        return result;
      }),
    );
    await sleep(20);
    expect(calls).toHaveLength(1);
    expect(order).toEqual([]);
    gate.resolve();
    const results = await Promise.all(sends);
    expect(calls.length).toBeGreaterThan(10);
    expect(order).toEqual(Array.from({ length: 300 }, (_, i) => i));
    expect(results).toEqual(Array.from({ length: 300 }, (_, i) => ({ partition: 0, offset: i })));
  });

  test('a retried batch goes before the later batches of its partition', async () => {
    let failFirst = true;
    const { api, calls } = await recordingBroker((broker) => ({
      produce: async (topic, partition, batch) => {
        if (failFirst) {
          failFirst = false;
          throw new SpillwayError('TIMEOUT', 'slow');
        }
        return broker.messages.produce(topic, partition, batch);
      },
    }));
    const sw = await connect(api);
    await sw.admin.createTopic('o');
    const producer = sw.producer({ retryBackoffMs: 20, inFlightBatchesPerPartitionMax: 1 });
    const first = producer.send('o', { value: 'first' });
    await sleep(5);
    const second = producer.send('o', { value: 'second' });
    expect(await first).toEqual({ partition: 0, offset: 0 });
    expect(await second).toEqual({ partition: 0, offset: 1 });
    expect(calls.map((call) => call.recordCount)).toEqual([1, 1, 1]);
  });

  test('in-flight batches are bounded per partition and in total', async () => {
    let inFlight = 0;
    let inFlightMax = 0;
    const perPartition = new Map<number, number>();
    let perPartitionMax = 0;
    const { api } = await recordingBroker((broker) => ({
      produce: async (topic, partition, batch) => {
        inFlight++;
        perPartition.set(partition, (perPartition.get(partition) ?? 0) + 1);
        inFlightMax = Math.max(inFlightMax, inFlight);
        perPartitionMax = Math.max(perPartitionMax, perPartition.get(partition)!);
        await sleep(5);
        inFlight--;
        perPartition.set(partition, perPartition.get(partition)! - 1);
        return broker.messages.produce(topic, partition, batch);
      },
    }));
    const sw = await connect(api);
    await sw.admin.createTopic('f', { partitions: 4 });
    const producer = sw.producer({
      batchBytes: 200,
      inFlightBatchesPerPartitionMax: 3,
      inFlightBatchesMax: 5,
    });
    const sends = Array.from({ length: 400 }, (_, i) =>
      producer.send('f', { partition: i % 4, value: 'v'.repeat(50) }),
    );
    const results = await Promise.all(sends);
    expect(perPartitionMax).toBe(3);
    expect(inFlightMax).toBe(5);
    // Each partition's offsets follow the send order.
    for (let partition = 0; partition < 4; partition++) {
      const offsets = results
        .filter((result) => result.partition === partition)
        .map((result) => result.offset);
      expect(offsets).toEqual(Array.from({ length: 100 }, (_, i) => i));
    }
  });

  test('in-flight bytes are bounded per partition and in total (each bound passed by one batch at most)', async () => {
    let bytes = 0;
    let bytesMax = 0;
    const perPartition = new Map<number, number>();
    let perPartitionMax = 0;
    let batchMax = 0;
    const { api } = await recordingBroker((broker) => ({
      produce: async (topic, partition, batch) => {
        bytes += batch.length;
        perPartition.set(partition, (perPartition.get(partition) ?? 0) + batch.length);
        bytesMax = Math.max(bytesMax, bytes);
        perPartitionMax = Math.max(perPartitionMax, perPartition.get(partition)!);
        batchMax = Math.max(batchMax, batch.length);
        await sleep(5);
        bytes -= batch.length;
        perPartition.set(partition, perPartition.get(partition)! - batch.length);
        return broker.messages.produce(topic, partition, batch);
      },
    }));
    const sw = await connect(api);
    await sw.admin.createTopic('b', { partitions: 4 });
    const producer = sw.producer({
      batchBytes: 300,
      inFlightBytesPerPartitionMax: 700,
      inFlightBytesMax: 1500,
    });
    const sends = Array.from({ length: 400 }, (_, i) =>
      producer.send('b', { partition: i % 4, value: 'v'.repeat(50) }),
    );
    const results = await Promise.all(sends);
    expect(batchMax).toBeLessThanOrEqual(300);
    // Another batch goes while less than the bound is in flight: up to bound + one batch.
    expect(perPartitionMax).toBeGreaterThanOrEqual(700);
    expect(perPartitionMax).toBeLessThan(700 + batchMax);
    expect(bytesMax).toBeGreaterThanOrEqual(1500);
    expect(bytesMax).toBeLessThan(1500 + batchMax);
    for (let partition = 0; partition < 4; partition++) {
      const offsets = results
        .filter((result) => result.partition === partition)
        .map((result) => result.offset);
      expect(offsets).toEqual(Array.from({ length: 100 }, (_, i) => i));
    }
  });

  test('with the default batchBytes a batch of large records grows to hold 15–16 of them (256 KiB); a set batchBytes is kept', async () => {
    const { api, calls } = await recordingBroker();
    const sw = await connect(api);
    await sw.admin.createTopic('big');
    const value = new Uint8Array(16 * 1024).fill(7);
    const adaptive = sw.producer({ lingerMs: 10_000 });
    const first = Array.from({ length: 40 }, () => adaptive.send('big', { value }));
    await adaptive.flush();
    await Promise.all(first);
    expect(calls.map((call) => call.recordCount)).toEqual([15, 15, 10]);
    expect(Math.max(...calls.map((call) => call.bytes))).toBeLessThanOrEqual(256 * 1024);
    calls.length = 0;
    const fixed = sw.producer({ lingerMs: 10_000, batchBytes: 64 * 1024 });
    const second = Array.from({ length: 8 }, () => fixed.send('big', { value }));
    await fixed.flush();
    await Promise.all(second);
    expect(calls.map((call) => call.recordCount)).toEqual([3, 3, 2]);
    expect(Math.max(...calls.map((call) => call.bytes))).toBeLessThanOrEqual(64 * 1024);
    // Small records: batchBytes as before.
    calls.length = 0;
    const small = Array.from({ length: 2000 }, () => adaptive.send('big', { value: 'x'.repeat(100) }));
    await adaptive.flush();
    await Promise.all(small);
    expect(Math.max(...calls.map((call) => call.bytes))).toBeLessThanOrEqual(64 * 1024);
  });

  test('send waits while bufferMemoryBytes of batches are unacknowledged, and keeps the call order', async () => {
    const gate = deferred();
    const { api } = await recordingBroker((broker) => ({
      produce: async (topic, partition, batch) => {
        await gate.promise;
        return broker.messages.produce(topic, partition, batch);
      },
    }));
    const sw = await connect(api);
    await sw.admin.createTopic('m');
    const producer = sw.producer({ bufferMemoryBytes: 32768, batchBytes: 1024 });
    const value = 'x'.repeat(1000);
    const settled: number[] = [];
    const sends = Array.from({ length: 50 }, (_, i) =>
      producer.send('m', { value }).then((result) => {
        settled.push(i);
        return result;
      }),
    );
    await sleep(30);
    // About bufferMemoryBytes of records were taken; the rest wait.
    expect(producer.bufferedBytes).toBeGreaterThanOrEqual(32768);
    expect(producer.bufferedBytes).toBeLessThan(32768 + 1024 + 1100);
    expect(settled).toHaveLength(0);
    gate.resolve();
    const results = await Promise.all(sends);
    expect(settled).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(results.map((result) => result.offset)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    expect(producer.bufferedBytes).toBe(0);
  });

  test('a caller that never awaits is bounded: sends past the waiting room reject with BACKPRESSURE', async () => {
    const gate = deferred();
    const { api } = await recordingBroker((broker) => ({
      produce: async (topic, partition, batch) => {
        await gate.promise;
        return broker.messages.produce(topic, partition, batch);
      },
    }));
    const sw = await connect(api);
    await sw.admin.createTopic('bounded');
    const bufferMemoryBytes = 64 * 1024;
    const producer = sw.producer({ bufferMemoryBytes, batchBytes: 4096 });
    // The topic's partition count known (the first send fetches it), so sends go straight to batches.
    const first = producer.send('bounded', { value: 'first' });
    await waitFor(() => producer.bufferedBytes > 0);
    const outcomes: Array<Promise<string>> = [];
    for (let i = 0; i < 100_000; i++) {
      outcomes.push(
        producer.send('bounded', { value: 'x'.repeat(100) }).then(
          () => 'ok',
          (error: SpillwayError) => error.code,
        ),
      );
    }
    // Held: about bufferMemoryBytes in batches, then waiting sends (100 B + 256 B each) up to twice it.
    const waitingRoom = Math.floor(bufferMemoryBytes / (100 + 256));
    gate.resolve();
    await first;
    const results = await Promise.all(outcomes);
    const accepted = results.filter((code) => code === 'ok').length;
    expect(results.filter((code) => code !== 'ok').every((code) => code === 'BACKPRESSURE')).toBe(true);
    expect(accepted).toBeGreaterThan(bufferMemoryBytes / 100);
    expect(accepted).toBeLessThanOrEqual(Math.ceil((bufferMemoryBytes + 4096) / 100) + waitingRoom + 1);
    expect(accepted).toBeLessThan(100_000 / 50);
    expect(producer.bufferedBytes).toBe(0);
    await expect(producer.send('bounded', { value: 'after' })).resolves.toMatchObject({ partition: 0 });
  });

  test("onBufferFull: 'reject' rejects at once with BACKPRESSURE while the buffer is full", async () => {
    const gate = deferred();
    const { api } = await recordingBroker((broker) => ({
      produce: async (topic, partition, batch) => {
        await gate.promise;
        return broker.messages.produce(topic, partition, batch);
      },
    }));
    const sw = await connect(api);
    await sw.admin.createTopic('r');
    const producer = sw.producer({ bufferMemoryBytes: 4096, batchBytes: 1024, onBufferFull: 'reject' });
    const taken: Array<Promise<unknown>> = [];
    let refused: SpillwayError | undefined;
    for (let i = 0; i < 100 && refused === undefined; i++) {
      const send = producer.send('r', { value: 'y'.repeat(200) });
      taken.push(send);
      await Promise.race([send, sleep(5)]).catch((error: SpillwayError) => {
        refused = error;
      });
    }
    expect(refused?.code).toBe('BACKPRESSURE');
    expect(refused?.message).toMatch(/producer buffer is full/);
    gate.resolve();
    await Promise.allSettled(taken);
    await expect(producer.send('r', { value: 'again' })).resolves.toBeDefined();
    expect(() => sw.producer({ onBufferFull: 'drop' as 'wait' })).toThrow(/onBufferFull/);
  });

  test('sendBatch: one promise for many records, results in record order, batches of their own', async () => {
    const { broker, api, calls } = await recordingBroker();
    const sw = await connect(api);
    await sw.admin.createTopic('sb', { partitions: 4 });
    const producer = sw.producer({ lingerMs: 10_000 });
    // Unknown to the producer yet: the first call goes record by record behind the metadata load.
    const firstCall = producer.sendBatch('sb', [{ value: 'a', partition: 2 }]);
    await producer.flush();
    const first = await firstCall;
    expect(first).toEqual([{ partition: 2, offset: 0 }]);
    calls.length = 0;
    const single = producer.send('sb', { value: 'before', partition: 1 });
    const messages = Array.from({ length: 300 }, (_, i) => ({ key: `k-${i % 7}`, value: `v-${i}` }));
    const pending = producer.sendBatch('sb', messages);
    const after = producer.send('sb', { value: 'after', partition: 1 });
    await producer.flush();
    const results = await pending;
    expect(results).toHaveLength(300);
    expect(await single).toEqual({ partition: 1, offset: 0 });
    // Each record where its key says, offsets dense per partition in record order.
    const next = new Map<number, number>([
      [1, 1],
      [2, 1],
    ]);
    for (const [i, result] of results.entries()) {
      expect(result.partition).toBe(partitionForKey(`k-${i % 7}`, 4));
      expect(result.offset).toBe(next.get(result.partition) ?? 0);
      next.set(result.partition, result.offset + 1);
    }
    // A tracked send() after the call is not mixed into the call's batch: its offset is right.
    expect(await after).toEqual({ partition: 1, offset: next.get(1) });
    // What the broker stored at each record's (partition, offset) is that record.
    const stored = new Map<string, string>();
    for (let partition = 0; partition < 4; partition++) {
      const end = broker.messages.listOffset('sb', partition, 'latest');
      if (end === 0) continue;
      const consumer = sw.consumer({ topics: ['sb'], partitions: [partition], from: 'earliest' });
      for await (const message of consumer) {
        stored.set(`${partition}:${message.offset}`, message.value!.toString());
        if (message.offset === end - 1) break;
      }
      await consumer.close();
    }
    for (const [i, result] of results.entries()) {
      expect(stored.get(`${result.partition}:${result.offset}`)).toBe(`v-${i}`);
    }
    // Batched: far fewer produce requests than records.
    expect(calls.length).toBeLessThanOrEqual(8);
  });

  test('sendBatch: bad input is a typed error; an empty list resolves with none', async () => {
    const { api } = await recordingBroker();
    const sw = await connect(api);
    await sw.admin.createTopic('sx');
    const producer = sw.producer();
    expect(await producer.sendBatch('sx', [])).toEqual([]);
    await expectCode(producer.sendBatch('sx', 'nope' as never), 'INVALID_ARGUMENT');
    await expectCode(producer.sendBatch('sx', [{ value: 5 as never }]), 'INVALID_ARGUMENT');
    // A bad record after good ones: the call rejects, the records before it are sent.
    await expectCode(
      producer.sendBatch('sx', [{ value: 'kept' }, { value: 5 as never }]),
      'INVALID_ARGUMENT',
    );
    await producer.flush();
    expect(await producer.send('sx', { value: 'next' })).toEqual({ partition: 0, offset: 1 });
    await expectCode(producer.sendBatch('nowhere', [{ value: 'x' }]), 'UNKNOWN_TOPIC');
    await expectCode(producer.sendBatch('sx', [{ value: 'x', partition: 3 }]), 'UNKNOWN_PARTITION');
    await producer.close();
    await expectCode(producer.sendBatch('sx', [{ value: 'x' }]), 'CONNECTION_CLOSED');
  });

  test('flush sends lingering batches now and waits for their acks', async () => {
    const { api, calls } = await recordingBroker();
    const sw = await connect(api);
    await sw.admin.createTopic('t', { partitions: 2 });
    const producer = sw.producer({ lingerMs: 60_000 });
    let acked = 0;
    const sends = Array.from({ length: 10 }, (_, i) =>
      producer.send('t', { partition: i % 2, value: 'v' }).then(() => acked++),
    );
    await sleep(20);
    expect(calls).toHaveLength(0);
    const started = Date.now();
    await producer.flush();
    expect(Date.now() - started).toBeLessThan(1000);
    expect(acked).toBe(10);
    expect(calls).toHaveLength(2);
    await Promise.all(sends);
    // Failed sends do not make flush throw (their own promises carry the error).
    await expectCode(producer.send('nope', { value: 'x' }), 'UNKNOWN_TOPIC');
    await producer.flush();
  });

  test('close flushes, then refuses sends', async () => {
    const { api } = await recordingBroker();
    const sw = await connect(api);
    await sw.admin.createTopic('t');
    const producer = sw.producer({ lingerMs: 60_000 });
    const pending = producer.send('t', { value: 'before close' });
    const closing = producer.close();
    await expectCode(producer.send('t', { value: 'during close' }), 'CONNECTION_CLOSED');
    await closing;
    expect(await pending).toEqual({ partition: 0, offset: 0 });
    const refused = await expectCode(producer.send('t', { value: 'after close' }), 'CONNECTION_CLOSED');
    expect(refused.retriable).toBe(false);
    await producer.close();
  });

  test('Spillway.close flushes its producers before closing the connection', async () => {
    const { api } = await recordingBroker();
    const sw = await connect(api);
    await sw.admin.createTopic('t');
    const producer = sw.producer({ lingerMs: 60_000 });
    const pending = producer.send('t', { value: 'x' });
    await sw.close();
    expect(await pending).toEqual({ partition: 0, offset: 0 });
    expect(() => sw.producer()).toThrow(/closed/);
  });

  test('the documented defaults', () => {
    expect(producerDefaults).toMatchObject({
      lingerMs: 0,
      batchBytes: 65536,
      bufferMemoryBytes: 32 * 1024 * 1024,
      inFlightBytesPerPartitionMax: 4 * 1024 * 1024,
      inFlightBytesMax: 16 * 1024 * 1024,
    });
  });

  test("producers of one client share the connection; offsets are the broker's", async () => {
    const { api } = await recordingBroker();
    const sw = await connect(api);
    await sw.admin.createTopic('t');
    const a = sw.producer();
    const b = sw.producer();
    const all = await Promise.all([
      a.send('t', { value: '1' }),
      b.send('t', { value: '2' }),
      a.send('t', { value: '3' }),
    ]);
    expect(new Set(all.map((result) => result.offset)).size).toBe(3);
  });
});
