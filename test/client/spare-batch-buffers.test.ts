import { describe, expect, test } from 'vitest';
import { Accumulator, PartitionQueue, type ProducerBatch } from '../../src/client/accumulator.js';
import { SpareBatchBuffers, spareBatchBufferBytesMin } from '../../src/client/spare-batch-buffers.js';
import { decodeRecords } from '../../src/format/record-batch.js';
import { producerSpareBatchBuffersMax, producerSpareBatchBytesMax } from '../../src/limits.js';

/** `length` bytes particular to `seed`. */
function patternOf(length: number, seed: number): Buffer {
  const bytes = Buffer.allocUnsafe(length);
  for (let index = 0; index < length; index++) bytes[index] = (index * 13 + seed * 7) & 0xff;
  return bytes;
}

/** An accumulator with linger 0 (a batch per flush) over one partition queue. */
function setup(recycle: boolean) {
  const accumulator = new Accumulator({
    batchBytes: 64 * 1024,
    adaptive: true,
    lingerMs: 0,
    onSendable: () => undefined,
    onSealed: () => undefined,
    recycle,
  });
  const queue = new PartitionQueue('t', 0);
  /** Appends one record of `value` and seals its batch (what the producer does at linger 0). */
  const sealOne = (value: Buffer): ProducerBatch => {
    void accumulator.append(queue, { value, timestamp: 1 }, value.length).catch(() => undefined);
    accumulator.beginFlush();
    const batch = accumulator.takeSendable(queue)!;
    accumulator.endFlush();
    batch.attempts++; // sent once (the producer's transmit)
    return batch;
  };
  return { accumulator, queue, sealOne };
}

/** The value of the only record of a sealed batch. */
function valueIn(batch: ProducerBatch): Buffer {
  const bytes = batch.bytes!;
  const records = [...decodeRecords(bytes)];
  expect(records).toHaveLength(1);
  return Buffer.from(records[0]!.value!);
}

describe('spare batch buffers', () => {
  test('take lends the smallest free buffer within twice the size asked; give is bounded', () => {
    const spares = new SpareBatchBuffers();
    expect(spares.take(1000)).toBeUndefined();
    const sizes = [8192, 65_536, 32_768, 16_384];
    for (const size of sizes) spares.give(Buffer.allocUnsafeSlow(size));
    expect([spares.count, spares.freeBytes]).toEqual([4, 8192 + 65_536 + 32_768 + 16_384]);
    expect(spares.take(16_000)!.length).toBe(16_384);
    // 16,385 to 32,770: the 32 KiB one, not the 64 KiB one.
    expect(spares.take(16_385)!.length).toBe(32_768);
    // Nothing within twice 1,000 bytes (8 KiB is more): none.
    expect(spares.take(1000)).toBeUndefined();
    expect(spares.take(40_000)!.length).toBe(65_536);
    expect([spares.count, spares.freeBytes]).toEqual([1, 8192]);
    expect(SpareBatchBuffers.sizeFor(1)).toBe(spareBatchBufferBytesMin);
    expect(SpareBatchBuffers.sizeFor(16_500)).toBe(32_768);
    expect(SpareBatchBuffers.sizeFor(32_768)).toBe(32_768);

    const counted = new SpareBatchBuffers();
    for (let index = 0; index < producerSpareBatchBuffersMax + 5; index++) {
      counted.give(Buffer.allocUnsafeSlow(spareBatchBufferBytesMin));
    }
    expect(counted.count).toBe(producerSpareBatchBuffersMax);
    const sized = new SpareBatchBuffers();
    const big = producerSpareBatchBytesMax / 4;
    for (let index = 0; index < 6; index++) sized.give(Buffer.allocUnsafeSlow(big));
    expect(sized.freeBytes).toBe(producerSpareBatchBytesMax);
  });

  test('one-record 16 KiB batches are copied into buffers of their own and reused only once acknowledged', () => {
    const { accumulator, sealOne } = setup(true);
    // Eight batches in flight at once: eight distinct buffers, each holding its own record.
    const inFlight = Array.from({ length: 8 }, (_, index) => sealOne(patternOf(16 * 1024, index)));
    const memories = new Set(inFlight.map((batch) => batch.bytes!.buffer));
    expect(memories.size).toBe(8);
    for (const batch of inFlight) {
      expect(batch.ownsBuffer).toBe(true);
      expect(batch.bytes!.byteOffset).toBe(0);
      // Counted whole: the next power of two of the batch.
      expect(batch.accountedBytes).toBe(32 * 1024);
    }
    const snapshots = inFlight.map((batch) => Buffer.from(batch.bytes!));
    // Acknowledge the first four: their buffers become spares.
    for (const batch of inFlight.slice(0, 4)) accumulator.resolve(batch, 0);
    expect(accumulator.spareBuffers.count).toBe(4);
    const freed = new Set(inFlight.slice(0, 4).map((batch) => batch.bytes));
    expect(freed).toEqual(new Set([null]));
    // The next four batches reuse exactly those buffers; the four still in flight keep their bytes.
    const next = Array.from({ length: 4 }, (_, index) => sealOne(patternOf(16 * 1024, 100 + index)));
    expect(accumulator.spareBuffers.count).toBe(0);
    for (const [index, batch] of next.entries()) {
      expect(memories.has(batch.bytes!.buffer)).toBe(true);
      expect(valueIn(batch).equals(patternOf(16 * 1024, 100 + index))).toBe(true);
    }
    for (const [index, batch] of inFlight.slice(4).entries()) {
      expect(Buffer.from(batch.bytes!).equals(snapshots[4 + index]!)).toBe(true);
      expect(valueIn(batch).equals(patternOf(16 * 1024, 4 + index))).toBe(true);
    }
    expect(accumulator.bufferedBytes).toBe(8 * 32 * 1024);
  });

  test('a batch that failed or was sent twice is never reused; small batches and no recycle keep no spares', () => {
    const { accumulator, sealOne } = setup(true);
    const failed = sealOne(patternOf(16 * 1024, 1));
    accumulator.reject(failed, new Error('lost'));
    const retried = sealOne(patternOf(16 * 1024, 2));
    retried.attempts++; // a second attempt: the first may still sit in a socket's queue
    accumulator.resolve(retried, 0);
    expect(accumulator.spareBuffers.count).toBe(0);
    const small = sealOne(patternOf(100, 3));
    expect(small.ownsBuffer).toBe(false);
    expect(small.bytes!.length).toBeLessThan(spareBatchBufferBytesMin);
    accumulator.resolve(small, 0);
    expect(accumulator.spareBuffers.count).toBe(0);

    const plain = setup(false);
    const batch = plain.sealOne(patternOf(16 * 1024, 4));
    // Without recycle a copied batch holds exactly its bytes.
    expect(batch.bytes!.buffer.byteLength).toBe(batch.bytes!.length);
    plain.accumulator.resolve(batch, 0);
    expect(plain.accumulator.spareBuffers.count).toBe(0);
  });

  test('full batches keep going into the builder buffers of acknowledged ones', () => {
    const { accumulator, queue } = setup(true);
    const value = patternOf(16 * 1024, 9);
    const sealed: ProducerBatch[] = [];
    // 16 KiB records grow adaptive batches to 256 KiB: sealed full, detached from the builder.
    for (let index = 0; index < 64; index++) {
      void accumulator.append(queue, { value, timestamp: 1 }, value.length).catch(() => undefined);
      while (queue.ready.length > 0) {
        const batch = accumulator.takeSendable(queue)!;
        batch.attempts++;
        sealed.push(batch);
      }
    }
    expect(sealed.length).toBeGreaterThanOrEqual(3);
    const first = sealed[0]!;
    expect(first.ownsBuffer).toBe(true);
    const memory = first.bytes!.buffer;
    accumulator.resolve(first, 0);
    expect(accumulator.spareBuffers.count).toBe(1);
    for (let index = 0; index < 40; index++) {
      void accumulator.append(queue, { value, timestamp: 1 }, value.length).catch(() => undefined);
    }
    accumulator.beginFlush();
    const later: ProducerBatch[] = [];
    for (let batch = accumulator.takeSendable(queue); batch !== null; batch = accumulator.takeSendable(queue))
      later.push(batch);
    accumulator.endFlush();
    expect(accumulator.spareBuffers.count).toBe(0);
    expect(later.some((batch) => batch.bytes!.buffer === memory)).toBe(true);
    for (const batch of [...sealed.slice(1), ...later]) {
      for (const record of decodeRecords(batch.bytes!)) {
        expect(Buffer.from(record.value!).equals(value)).toBe(true);
      }
    }
  });
});
