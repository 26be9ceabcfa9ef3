import { describe, expect, it } from 'vitest';
import { BatchAttributes, readBatchHeader } from '../../src/format/batch-header.js';
import { encodeBatch } from '../../src/format/record-batch.js';
import { fetchMaxWaitMsMax } from '../../src/limits.js';
import {
  batchOf,
  openBroker,
  readAll,
  recordsOf,
  rejectedCode,
  temporaryDirectory,
  thrownCode,
  valuesOf,
} from './helpers.js';

const now = { maxBytes: 1 << 20, maxWaitMs: 0 };

describe('Broker produce and fetch', () => {
  it('assigns consecutive offsets per partition and reads back exactly what was produced', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('events', { partitions: 4 });
    const model: string[][] = [[], [], [], []];
    let seed = 7;
    const random = (n: number): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return seed % n;
    };
    const padding = 'x'.repeat(500);
    for (let i = 0; i < 300; i++) {
      const partition = random(4);
      const count = 1 + random(5);
      const values = Array.from({ length: count }, (_, r) => `b${i}/${r}/${padding}`);
      const result = await broker.messages.produce(
        'events',
        partition,
        encodeBatch(values.map((value) => ({ value }))),
      );
      expect(result).toEqual({
        partition,
        baseOffset: model[partition]!.length,
        lastOffset: model[partition]!.length + count - 1,
        durability: 'none',
      });
      model[partition]!.push(...values);
    }
    const described = broker.topics.describe('events').partitions;
    for (let partition = 0; partition < 4; partition++) {
      expect(await readAll(broker, 'events', partition)).toEqual(model[partition]);
      expect(described[partition]!.logEndOffset).toBe(model[partition]!.length);
    }
    // Enough data to roll 64 KiB segments: reads cross segment boundaries.
    expect(described.some((partition) => partition.segmentCount > 1)).toBe(true);
    // A fetch from inside a batch starts at that batch; a small maxBytes still returns one whole batch.
    const middle = Math.floor(model[0]!.length / 2);
    const one = await broker.messages.fetch('events', 0, middle, { maxBytes: 1, maxWaitMs: 0 });
    expect(one.batchCount).toBe(1);
    expect(one.firstOffset).toBeLessThanOrEqual(middle);
    expect(one.nextOffset).toBeGreaterThan(middle);
    expect(one).toMatchObject({
      topic: 'events',
      partition: 0,
      logStartOffset: 0,
      highWatermark: model[0]!.length,
    });
    expect(recordsOf(one.records).map((record) => record.offset)).toContain(middle);
  });

  it('answers offsets out of range with OFFSET_OUT_OF_RANGE naming the log bounds', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('t');
    await broker.messages.produce('t', 0, batchOf('a', 3));
    const atEnd = await broker.messages.fetch('t', 0, 3, now);
    expect(atEnd).toMatchObject({ batchCount: 0, firstOffset: 3, nextOffset: 3, highWatermark: 3 });
    expect(atEnd.records.length).toBe(0);
    await expect(broker.messages.fetch('t', 0, 4, now)).rejects.toMatchObject({
      code: 'OFFSET_OUT_OF_RANGE',
      message: expect.stringContaining('[0, 3]'),
    });
    expect(await rejectedCode(broker.messages.fetch('t', 0, -1, now))).toBe('OFFSET_OUT_OF_RANGE');
    expect(await rejectedCode(broker.messages.fetch('t', 0, 1.5, now))).toBe('INVALID_ARGUMENT');
    expect(await rejectedCode(broker.messages.fetch('t', 0, 0, { maxBytes: 0, maxWaitMs: 0 }))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(
      await rejectedCode(
        broker.messages.fetch('t', 0, 0, { maxBytes: 10, maxWaitMs: fetchMaxWaitMsMax + 1 }),
      ),
    ).toBe('INVALID_ARGUMENT');
    expect(
      await rejectedCode(broker.messages.fetch('t', 0, 0, { maxBytes: 10, maxWaitMs: 0, minBytes: 0 })),
    ).toBe('INVALID_ARGUMENT');
  });

  it('rejects bad batches with the right code and appends nothing', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('t');
    await broker.messages.produce('t', 0, batchOf('good'));
    const corrupt = batchOf('bad');
    corrupt[corrupt.length - 2]! ^= 0x01;
    const trailing = new Uint8Array(batchOf('x').length + 5);
    trailing.set(batchOf('x'));
    const withOffset = batchOf('y');
    withOffset[0] = 9;
    const huge = encodeBatch([{ value: 'z'.repeat(70 * 1024) }]);
    const cases: Array<[string, unknown, string]> = [
      ['corrupt CRC', corrupt, 'CORRUPT_BATCH'],
      ['truncated', batchOf('t').subarray(0, batchOf('t').length - 3), 'INVALID_BATCH'],
      ['header only', batchOf('h').subarray(0, 40), 'INVALID_BATCH'],
      ['empty', new Uint8Array(0), 'INVALID_BATCH'],
      ['two batches / trailing bytes', trailing, 'INVALID_BATCH'],
      ['base offset set', withOffset, 'INVALID_BATCH'],
      ['larger than a segment', huge, 'INVALID_BATCH'],
      [
        'transactional',
        encodeBatch([{ value: 'v' }], { attributes: BatchAttributes.transactional }),
        'INVALID_BATCH',
      ],
      ['control', encodeBatch([{ value: 'v' }], { attributes: BatchAttributes.control }), 'INVALID_BATCH'],
      [
        'delayed without a due time',
        encodeBatch([{ value: 'v' }], { attributes: BatchAttributes.delayed }),
        'INVALID_BATCH',
      ],
      ['not bytes', 'hello', 'INVALID_ARGUMENT'],
    ];
    for (const [name, batch, code] of cases) {
      expect(await rejectedCode(broker.messages.produce('t', 0, batch as Uint8Array)), name).toBe(code);
    }
    await expect(
      broker.messages.produce('t', 0, encodeBatch([{ value: 'v' }], { attributes: BatchAttributes.delayed })),
    ).rejects.toThrow(/has no valid sw-deliver-at header/);
    expect(broker.topics.describe('t').partitions[0]!.logEndOffset).toBe(1);
    expect(await readAll(broker, 't', 0)).toEqual(['good/0']);
  });

  it('stores producer fields as given and assigns the base offset', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('t');
    await broker.messages.produce('t', 0, batchOf('first', 2));
    // An idempotent batch needs a registered producer (docs/PROTOCOL.md, "Idempotent PRODUCE").
    for (let i = 0; i < 42; i++) await broker.producers.initProducer({});
    await broker.producers.initProducer({ name: 'p' });
    for (let i = 0; i < 3; i++) await broker.producers.initProducer({ name: 'p' });
    const batch = encodeBatch([{ value: 'a' }, { value: 'b' }], {
      producerId: 42,
      producerEpoch: 3,
      baseSequence: 0,
    });
    const copy = batch.slice();
    expect(await broker.messages.produce('t', 0, batch)).toMatchObject({ baseOffset: 2, lastOffset: 3 });
    expect(batch).toEqual(copy); // the caller's bytes are not modified
    const fetched = await broker.messages.fetch('t', 0, 2, now);
    expect(readBatchHeader(fetched.records)).toMatchObject({
      baseOffset: 2,
      producerId: 42,
      producerEpoch: 3,
      baseSequence: 0,
      recordCount: 2,
    });
  });

  it('lists offsets: earliest, latest and by timestamp', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('t');
    expect(broker.messages.listOffset('t', 0, 'earliest')).toBe(0);
    expect(broker.messages.listOffset('t', 0, 'latest')).toBe(0);
    expect(broker.messages.listOffset('t', 0, { timestamp: 0 })).toBe(0);
    await broker.messages.produce('t', 0, batchOf('a', 2, 1000)); // offsets 0-1, timestamps 1000-1001
    await broker.messages.produce('t', 0, batchOf('b', 2, 2000)); // offsets 2-3
    await broker.messages.produce('t', 0, batchOf('c', 2, 3000)); // offsets 4-5
    expect(broker.messages.listOffset('t', 0, 'earliest')).toBe(0);
    expect(broker.messages.listOffset('t', 0, 'latest')).toBe(6);
    expect(broker.messages.listOffset('t', 0, { timestamp: 0 })).toBe(0);
    expect(broker.messages.listOffset('t', 0, { timestamp: 1500 })).toBe(2);
    expect(broker.messages.listOffset('t', 0, { timestamp: 3001 })).toBe(4);
    expect(broker.messages.listOffset('t', 0, { timestamp: 9999 })).toBe(6);
    expect(thrownCode(() => broker.messages.listOffset('t', 0, 'newest' as 'latest'))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(thrownCode(() => broker.messages.listOffset('t', 0, { timestamp: -5 }))).toBe('INVALID_ARGUMENT');
  });

  it('with durability always, consumers see only what is on disk', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('safe', { durability: 'always' });
    const producing = broker.messages.produce('safe', 0, batchOf('a', 2));
    // Appended to the log, but its fdatasync has not completed: not visible yet.
    const early = await broker.messages.fetch('safe', 0, 0, now);
    expect(early).toMatchObject({ batchCount: 0, highWatermark: 0 });
    expect(broker.messages.listOffset('safe', 0, 'latest')).toBe(0);
    expect(await producing).toMatchObject({ baseOffset: 0, lastOffset: 1, durability: 'always' });
    const late = await broker.messages.fetch('safe', 0, 0, now);
    expect(valuesOf(late.records)).toEqual(['a/0', 'a/1']);
    expect(late.highWatermark).toBe(2);
    expect(broker.topics.describe('safe').partitions[0]).toMatchObject({ logEndOffset: 2, durableOffset: 2 });
  });

  it('applies retention on demand', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('sized', { retentionBytes: 64 * 1024 });
    await broker.topics.create('forever');
    const padding = 'p'.repeat(1000);
    for (let i = 0; i < 300; i++) {
      await broker.messages.produce('sized', 0, encodeBatch([{ value: `${i}${padding}` }]));
      await broker.messages.produce(
        'forever',
        0,
        encodeBatch([{ value: `${i}${padding}`, timestamp: 1000 + i }]),
      );
    }
    expect(broker.topics.describe('sized').partitions[0]!.segmentCount).toBeGreaterThan(2);
    const result = broker.applyRetention();
    expect(result.failures).toEqual([]);
    expect(result.deletedSegments).toBeGreaterThan(0);
    const after = broker.topics.describe('sized').partitions[0]!;
    expect(after.logStartOffset).toBeGreaterThan(0);
    expect(after.sizeBytes).toBeLessThan(2 * 64 * 1024);
    expect(broker.messages.listOffset('sized', 0, 'earliest')).toBe(after.logStartOffset);
    expect(await rejectedCode(broker.messages.fetch('sized', 0, 0, now))).toBe('OFFSET_OUT_OF_RANGE');
    expect(broker.topics.describe('forever').partitions[0]!.logStartOffset).toBe(0);
  });

  it('applies retention by time on its timer', async () => {
    const broker = await openBroker(temporaryDirectory(), { retentionCheckIntervalMs: 20 });
    await broker.topics.create('timed', { retentionMs: 60_000 });
    const padding = 'p'.repeat(1000);
    // Timestamps in 1970: older than any retention.
    for (let i = 0; i < 200; i++) {
      await broker.messages.produce(
        'timed',
        0,
        encodeBatch([{ value: `${i}${padding}`, timestamp: 1000 + i }]),
      );
    }
    expect(broker.topics.describe('timed').partitions[0]!.segmentCount).toBeGreaterThan(1);
    // Only the active segment is left.
    await expect
      .poll(() => broker.topics.describe('timed').partitions[0]!.segmentCount, {
        timeout: 2000,
        interval: 10,
      })
      .toBe(1);
    expect(broker.lastRetentionPass?.failures).toEqual([]);
    expect(broker.messages.listOffset('timed', 0, 'earliest')).toBeGreaterThan(0);
  });
});
