import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CorruptBatchError, InvalidArgumentError, InvalidBatchError } from '../../src/errors.js';
import { BatchAttributes, BatchHeader, setBatchBaseOffset } from '../../src/format/batch-header.js';
import { crc32c } from '../../src/format/crc32c.js';
import {
  BatchBuilder,
  type DecodedRecord,
  decodeRecords,
  encodeBatch,
  type RecordBytes,
  RecordCursor,
  type RecordInput,
  validateBatch,
  verifyBatchCrc,
} from '../../src/format/record-batch.js';
import { writeVarint } from '../../src/format/varint.js';
import {
  batchBytesMax,
  batchRecordCountMax,
  recordHeaderCountMax,
  recordHeaderKeyBytesMax,
  recordHeaderValueBytesMax,
  recordKeyBytesMax,
} from '../../src/limits.js';

// The annotated example of docs/FORMAT.md ("Example"): keep the two identical.
const goldenRecords: RecordInput[] = [
  { key: 'id-1', value: 'hello', timestamp: 1_700_000_000_000 },
  { key: null, value: 'hi', headers: { trace: 't1' }, timestamp: 1_700_000_000_250 },
  { key: 'id-1', value: null, timestamp: 1_699_999_999_999 },
];
const goldenHex = [
  // header
  '0000000000000000', // baseOffset 0
  '66000000', // batchLength 102
  'd52b0cf1', // crc 0xf10c2bd5
  '01', // magic 1
  '00', // reserved
  '0000', // attributes
  '03000000', // recordCount 3
  '0068e5cf8b010000', // firstTimestamp 1700000000000
  'fa68e5cf8b010000', // maxTimestamp 1700000000250
  'ffffffffffffffff', // producerId -1
  'ffff', // producerEpoch -1
  '0000', // reserved
  'ffffffff', // baseSequence -1
  // record 0
  '1e', // length 15
  '00', // attributes
  '00', // timestampDelta 0
  '00', // offsetDelta 0
  '08', // keyLength 4
  '69642d31', // 'id-1'
  '0a', // valueLength 5
  '68656c6c6f', // 'hello'
  '00', // headerCount 0
  // record 1
  '24', // length 18
  '00', // attributes
  'f403', // timestampDelta 250
  '02', // offsetDelta 1
  '01', // keyLength -1 (null)
  '04', // valueLength 2
  '6869', // 'hi'
  '02', // headerCount 1
  '0a', // header keyLength 5
  '7472616365', // 'trace'
  '04', // header valueLength 2
  '7431', // 't1'
  // record 2
  '14', // length 10
  '00', // attributes
  '01', // timestampDelta -1
  '04', // offsetDelta 2
  '08', // keyLength 4
  '69642d31', // 'id-1'
  '01', // valueLength -1 (null)
  '00', // headerCount 0
].join('');

const utf8 = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'utf8'));
const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
const fromHex = (hex: string): Uint8Array => new Uint8Array(Buffer.from(hex, 'hex'));

function golden(): Uint8Array {
  return fromHex(goldenHex);
}

function asBytes(data: RecordBytes | undefined): Uint8Array | null {
  if (data == null) return null;
  return typeof data === 'string' ? utf8(data) : data;
}

function plain(bytes: Uint8Array | null): number[] | null {
  return bytes === null ? null : [...bytes];
}

/** What decoding `records` must give back. */
function expected(records: readonly RecordInput[], baseOffset = 0): unknown[] {
  return records.map((record, index) => {
    const headers = record.headers;
    const pairs: Array<readonly [string, RecordBytes]> =
      headers == null ? [] : Array.isArray(headers) ? headers : Object.entries(headers);
    return {
      offset: baseOffset + index,
      timestamp: record.timestamp,
      key: plain(asBytes(record.key)),
      value: plain(asBytes(record.value)),
      headers: pairs.map(([name, value]) => [name, plain(asBytes(value))]),
    };
  });
}

function decoded(batch: Uint8Array, position = 0): unknown[] {
  return [...decodeRecords(batch, position)].map((record: DecodedRecord) => ({
    offset: record.offset,
    timestamp: record.timestamp,
    key: plain(record.key),
    value: plain(record.value),
    headers: record.headers.map(([name, value]) => [name, plain(value)]),
  }));
}

/** Recomputes the CRC of a batch at `position` after a test changed its bytes. */
function fixCrc(batch: Uint8Array, position = 0): Uint8Array {
  const length = new DataView(batch.buffer, batch.byteOffset).getInt32(position + 8, true);
  const crc = crc32c(batch, 0, position + 16, position + length);
  new DataView(batch.buffer, batch.byteOffset).setUint32(position + 12, crc, true);
  return batch;
}

/** A record's bytes: the length varint, then `body`. */
function record(...body: number[]): number[] {
  const prefix = new Uint8Array(5);
  const end = writeVarint(prefix, 0, body.length);
  return [...prefix.subarray(0, end), ...body];
}

/** Zigzag of a small integer, as one varint byte. */
const z = (value: number): number => (value >= 0 ? value * 2 : -value * 2 - 1);

/** A minimal valid record body at `index`: no timestamp delta, null key and value, no headers. */
const emptyBody = (index: number): number[] => [0, 0, z(index), z(-1), z(-1), 0];

interface RawFields {
  recordCount?: number;
  firstTimestamp?: number;
  maxTimestamp?: number;
  batchLength?: number;
}

/** A batch made by hand around record bytes, with a correct CRC, for structural negative tests. */
function rawBatch(records: number[][], fields: RawFields = {}): Uint8Array {
  const body = records.flat();
  const bytes = new Uint8Array(BatchHeader.size + body.length);
  const view = new DataView(bytes.buffer);
  view.setInt32(BatchHeader.batchLength, fields.batchLength ?? bytes.length, true);
  bytes[BatchHeader.magic] = 1;
  view.setInt32(BatchHeader.recordCount, fields.recordCount ?? records.length, true);
  view.setBigInt64(BatchHeader.firstTimestamp, BigInt(fields.firstTimestamp ?? 1000), true);
  view.setBigInt64(
    BatchHeader.maxTimestamp,
    BigInt(fields.maxTimestamp ?? fields.firstTimestamp ?? 1000),
    true,
  );
  view.setBigInt64(BatchHeader.producerId, -1n, true);
  view.setInt16(BatchHeader.producerEpoch, -1, true);
  view.setInt32(BatchHeader.baseSequence, -1, true);
  bytes.set(body, BatchHeader.size);
  return fixCrc(bytes);
}

function expectInvalid(batch: Uint8Array, message: RegExp): void {
  expect(() => validateBatch(batch)).toThrow(InvalidBatchError);
  expect(() => validateBatch(batch)).toThrow(message);
  // The decoder finds the same structural problems (it does not check the CRC).
  expect(() => [...decodeRecords(batch)]).toThrow(InvalidBatchError);
}

describe('golden bytes (docs/FORMAT.md example)', () => {
  it('encodes the example batch to exactly the documented bytes', () => {
    expect(toHex(encodeBatch(goldenRecords))).toBe(goldenHex);
    expect(goldenHex.length / 2).toBe(102);
  });

  it('matches the hex dump in docs/FORMAT.md', () => {
    const doc = readFileSync(new URL('../../docs/FORMAT.md', import.meta.url), 'utf8');
    const dump = /102 bytes:\n\n```\n([0-9a-f \n]+)```/.exec(doc);
    expect(dump).not.toBeNull();
    expect(dump![1]!.replace(/\s+/g, '')).toBe(goldenHex);
  });

  it('decodes and validates the documented bytes', () => {
    const batch = golden();
    expect(decoded(batch)).toEqual(expected(goldenRecords));
    expect(validateBatch(batch, { baseOffset: 0 })).toEqual({
      baseOffset: 0,
      batchLength: 102,
      crc: 0xf10c2bd5,
      magic: 1,
      attributes: 0,
      recordCount: 3,
      firstTimestamp: 1_700_000_000_000,
      maxTimestamp: 1_700_000_000_250,
      producerId: -1,
      producerEpoch: -1,
      baseSequence: -1,
    });
    expect(verifyBatchCrc(batch)).toBe(true);
  });

  it('keeps the header fields given to finish()', () => {
    const builder = new BatchBuilder();
    builder.append({ value: 'x', timestamp: 5 });
    const batch = builder.finish({
      producerId: 2 ** 40,
      producerEpoch: 7,
      baseSequence: 123,
      attributes: BatchAttributes.transactional | BatchAttributes.delayed,
    });
    const fields = validateBatch(batch);
    expect(fields).toMatchObject({
      producerId: 2 ** 40,
      producerEpoch: 7,
      baseSequence: 123,
      attributes: BatchAttributes.transactional | BatchAttributes.delayed,
      recordCount: 1,
      firstTimestamp: 5,
      maxTimestamp: 5,
    });
  });
});

describe('broker offset assignment', () => {
  it('patches baseOffset only: the CRC still holds and offsets follow', () => {
    const batch = golden();
    setBatchBaseOffset(batch, 1_000_000_007);
    expect(verifyBatchCrc(batch)).toBe(true);
    expect(validateBatch(batch).baseOffset).toBe(1_000_000_007);
    expect(decoded(batch)).toEqual(expected(goldenRecords, 1_000_000_007));
    expect(() => validateBatch(batch, { baseOffset: 0 })).toThrow(/baseOffset 1000000007 is not 0/);
  });
});

// Arbitraries for the round-trip properties.
const textArbitrary = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 60 }),
  fc.string({ unit: 'grapheme', minLength: 33, maxLength: 400 }),
  fc.string({ minLength: 100, maxLength: 3000 }),
);
const bytesArbitrary = fc.oneof(fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ maxLength: 3000 }));
const dataArbitrary: fc.Arbitrary<RecordBytes> = fc.oneof(
  fc.constant(null),
  fc.constant(''),
  fc.constant(new Uint8Array(0)),
  textArbitrary,
  bytesArbitrary,
);
const headerNameArbitrary = fc.string({ unit: 'grapheme', maxLength: 20 });
const headersArbitrary = fc.oneof(
  fc.constant(undefined),
  fc.array(fc.tuple(headerNameArbitrary, dataArbitrary), { maxLength: 5 }),
  fc.dictionary(headerNameArbitrary, dataArbitrary, { maxKeys: 5, noNullPrototype: true }),
);
const timestampArbitrary = fc.oneof(
  fc.constantFrom(0, 1, Number.MAX_SAFE_INTEGER, 1_700_000_000_000),
  fc.integer({ min: 1_700_000_000_000 - 100_000, max: 1_700_000_000_000 + 100_000 }),
  fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
);
const recordArbitrary: fc.Arbitrary<RecordInput> = fc.record(
  {
    key: fc.oneof(fc.constant(undefined), dataArbitrary),
    value: dataArbitrary,
    headers: headersArbitrary,
    timestamp: timestampArbitrary,
  },
  { requiredKeys: ['value', 'timestamp'] },
);

describe('round trip (properties)', () => {
  // One builder for all runs: reset() and the reused, growing buffer are part of what is tested.
  const builder = new BatchBuilder({ initialBytes: 64 });

  it('decodes what it encodes, and validateBatch accepts it', () => {
    fc.assert(
      fc.property(fc.array(recordArbitrary, { minLength: 1, maxLength: 30 }), (records) => {
        builder.reset();
        for (const input of records) expect(builder.append(input)).toBe(true);
        expect(builder.recordCount).toBe(records.length);
        const batch = builder.finish();
        expect(batch.length).toBe(builder.sizeBytes);
        expect(decoded(batch)).toEqual(expected(records));
        const timestamps = records.map((input) => input.timestamp!);
        const fields = validateBatch(batch, { baseOffset: 0 });
        expect(fields.recordCount).toBe(records.length);
        expect(fields.batchLength).toBe(batch.length);
        expect(fields.firstTimestamp).toBe(timestamps[0]);
        expect(fields.maxTimestamp).toBe(Math.max(...timestamps));
        // encodeBatch (a fresh builder) gives the same bytes.
        expect(toHex(encodeBatch(records))).toBe(toHex(batch));
      }),
      { numRuns: 300 },
    );
  });

  it('decodes a batch in the middle of a larger buffer, views staying inside it', () => {
    fc.assert(
      fc.property(
        fc.array(recordArbitrary, { minLength: 1, maxLength: 10 }),
        fc.nat(64),
        (records, before) => {
          const batch = encodeBatch(records);
          const buffer = new Uint8Array(before + batch.length + 16).fill(0xee);
          buffer.set(batch, before);
          expect(decoded(buffer, before)).toEqual(expected(records));
          expect(validateBatch(buffer, { position: before }).batchLength).toBe(batch.length);
          for (const decodedRecord of decodeRecords(buffer, before)) {
            for (const view of [decodedRecord.key, decodedRecord.value]) {
              if (view === null) continue;
              expect(view.buffer).toBe(buffer.buffer);
              expect(view.byteOffset).toBeGreaterThanOrEqual(before);
              expect(view.byteOffset + view.length).toBeLessThanOrEqual(before + batch.length);
            }
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  it('gives the same answers through RecordCursor', () => {
    fc.assert(
      fc.property(fc.array(recordArbitrary, { minLength: 1, maxLength: 10 }), (records) => {
        const batch = encodeBatch(records);
        const cursor = new RecordCursor(batch);
        const seen: unknown[] = [];
        while (cursor.next()) {
          seen.push({
            offset: cursor.offset,
            timestamp: cursor.timestamp,
            key: plain(cursor.key()),
            value: plain(cursor.value()),
            headers: cursor.headers().map(([name, value]) => [name, plain(value)]),
          });
        }
        expect(seen).toEqual(expected(records));
        expect(cursor.next()).toBe(false);
      }),
      { numRuns: 100 },
    );
  });
});

describe('BatchBuilder', () => {
  it('encodes strings as UTF-8, including long ones and lone surrogates', () => {
    const values = ['é', '😀'.repeat(40), `${'x'.repeat(40)}é`, 'a\uD800b'.repeat(20), 'ü'.repeat(5000)];
    const batch = encodeBatch(values.map((value, index) => ({ key: value, value, timestamp: index })));
    const records = [...decodeRecords(batch)];
    records.forEach((decodedRecord, index) => {
      expect(toHex(decodedRecord.value!)).toBe(Buffer.from(values[index]!, 'utf8').toString('hex'));
      expect(toHex(decodedRecord.key!)).toBe(Buffer.from(values[index]!, 'utf8').toString('hex'));
    });
  });

  it('moves a long string value back when its length prefix is shorter than the bound', () => {
    // 40 ASCII characters: the bound (120 bytes) needs a 2-byte varint, the real length 1 byte.
    for (const length of [33, 40, 63, 64, 65, 100, 2730, 2731, 8192]) {
      const value = 'v'.repeat(length);
      const batch = encodeBatch([{ value, timestamp: 1 }]);
      expect([...decodeRecords(batch)][0]!.value).toEqual(utf8(value));
      validateBatch(batch);
    }
  });

  it('reuses its buffer across reset() and grows it when needed', () => {
    const builder = new BatchBuilder({ initialBytes: 100 });
    const capacity = builder.capacityBytes;
    builder.append({ value: new Uint8Array(10), timestamp: 1 });
    const first = builder.finish();
    builder.reset();
    expect(builder.recordCount).toBe(0);
    expect(builder.sizeBytes).toBe(BatchHeader.size);
    builder.append({ value: new Uint8Array(10).fill(1), timestamp: 2 });
    const second = builder.finish();
    // Same memory: the first view now shows the second batch (documented ownership).
    expect(first.buffer).toBe(second.buffer);
    expect(toHex(first)).toBe(toHex(second));
    builder.reset();
    builder.append({ value: 'y'.repeat(1000), timestamp: 3 });
    expect(builder.capacityBytes).toBeGreaterThan(capacity);
    expect([...decodeRecords(builder.finish())][0]!.value).toEqual(utf8('y'.repeat(1000)));
  });

  it('finishCopy() returns bytes that survive reset()', () => {
    const builder = new BatchBuilder();
    builder.append({ value: 'keep', timestamp: 1 });
    const copy = builder.finishCopy();
    const hex = toHex(copy);
    builder.reset();
    builder.append({ value: 'other', timestamp: 2 });
    builder.finish();
    expect(toHex(copy)).toBe(hex);
    expect(copy.byteOffset).toBe(0);
    expect(copy.buffer.byteLength).toBe(copy.length);
  });

  it('finishDetach() hands its buffer over and continues in the one given (or a new one)', () => {
    const builder = new BatchBuilder({ initialBytes: 4096 });
    builder.append({ value: 'first', timestamp: 1 });
    const first = builder.finishDetach();
    const hex = toHex(first);
    expect(first.byteOffset).toBe(0);
    expect(first.buffer.byteLength).toBe(4096); // the whole former buffer
    builder.reset();
    builder.append({ value: 'second', timestamp: 2 });
    const spare = Buffer.alloc(8192, 0xee);
    const second = builder.finishDetach({}, spare);
    expect(toHex(first)).toBe(hex); // not overwritten by the next batch
    expect(second.buffer).not.toBe(first.buffer);
    builder.reset();
    builder.append({ value: 'third', timestamp: 3 });
    const third = builder.finish();
    expect(third.buffer).toBe(spare.buffer); // continued in the spare
    expect([...decodeRecords(third)][0]!.value).toEqual(utf8('third'));
    expect([...decodeRecords(second)][0]!.value).toEqual(utf8('second'));
    expect(() => builder.finishDetach({}, Buffer.from(third.buffer))).toThrow(InvalidArgumentError);
  });

  it('takes headers as an object (own keys only) or as a list with repeats', () => {
    const inherited = Object.create({ inherited: 'no' }) as Record<string, RecordBytes>;
    inherited['own'] = 'yes';
    const batch = encodeBatch([
      { value: null, headers: inherited, timestamp: 1 },
      {
        value: null,
        headers: [
          ['a', '1'],
          ['a', null],
          ['', new Uint8Array([1])],
        ],
        timestamp: 1,
      },
    ]);
    const records = [...decodeRecords(batch)];
    expect(records[0]!.headers).toEqual([['own', utf8('yes')]]);
    expect(records[1]!.headers).toEqual([
      ['a', utf8('1')],
      ['a', null],
      ['', Uint8Array.from([1])],
    ]);
  });

  it('uses Date.now() when no timestamp is given', () => {
    const before = Date.now();
    const batch = encodeBatch([{ value: 'now' }]);
    const timestamp = [...decodeRecords(batch)][0]!.timestamp;
    expect(timestamp).toBeGreaterThanOrEqual(before);
    expect(timestamp).toBeLessThanOrEqual(Date.now());
  });

  it('uses the CRC function it is given, on bytes [16, end)', () => {
    const seen: number[] = [];
    const builder = new BatchBuilder();
    builder.append({ value: 'x', timestamp: 1 });
    const batch = builder.finish({
      crc32c: (bytes) => {
        seen.push(bytes.length);
        return 0xdeadbeef;
      },
    });
    expect(seen).toEqual([batch.length - 16]);
    expect(new DataView(batch.buffer, batch.byteOffset).getUint32(12, true)).toBe(0xdeadbeef);
    expect(() => validateBatch(batch)).toThrow(CorruptBatchError);
    expect(validateBatch(batch, { crc32c: () => 0xdeadbeef }).crc).toBe(0xdeadbeef);
  });

  it('rejects misuse and bad arguments', () => {
    const builder = new BatchBuilder();
    expect(() => builder.finish()).toThrow(InvalidBatchError);
    builder.append({ value: 'x', timestamp: 1 });
    for (const timestamp of [-1, 1.5, Number.NaN, Number.MAX_SAFE_INTEGER + 1, Number.POSITIVE_INFINITY]) {
      expect(() => builder.append({ value: 'x', timestamp })).toThrow(InvalidArgumentError);
    }
    expect(builder.recordCount).toBe(1);
    expect(() => builder.finish({ attributes: 1 })).toThrow(InvalidArgumentError); // compression
    expect(() => builder.finish({ attributes: 1 << 8 })).toThrow(InvalidArgumentError); // reserved bit
    expect(() => builder.finish({ producerId: -2 })).toThrow(InvalidArgumentError);
    expect(() => builder.finish({ producerEpoch: 40_000 })).toThrow(InvalidArgumentError);
    expect(() => builder.finish({ baseSequence: 2 ** 31 })).toThrow(InvalidArgumentError);
    builder.finish();
    expect(() => builder.append({ value: 'x', timestamp: 1 })).toThrow(/reset/);
    expect(() => new BatchBuilder({ maxBatchBytes: batchBytesMax + 1 })).toThrow(InvalidArgumentError);
    expect(() => new BatchBuilder({ maxBatchBytes: 10 })).toThrow(InvalidArgumentError);
    expect(() => new BatchBuilder({ initialBytes: -1 })).toThrow(InvalidArgumentError);
  });
});

describe('limits', () => {
  it('accepts a key at the limit and rejects one byte more', () => {
    const builder = new BatchBuilder();
    expect(builder.append({ key: new Uint8Array(recordKeyBytesMax), value: null, timestamp: 1 })).toBe(true);
    expect(() =>
      builder.append({ key: new Uint8Array(recordKeyBytesMax + 1), value: null, timestamp: 1 }),
    ).toThrow(InvalidBatchError);
    expect(() =>
      builder.append({ key: 'k'.repeat(recordKeyBytesMax + 1), value: null, timestamp: 1 }),
    ).toThrow(/record key of 65537 bytes/);
    expect(builder.recordCount).toBe(1);
    validateBatch(builder.finish());
  });

  it('rejects a header key, a header value or a header count over the limit', () => {
    const builder = new BatchBuilder();
    const at = (headers: RecordInput['headers']): boolean =>
      builder.append({ value: null, headers, timestamp: 1 });
    expect(at([['k'.repeat(recordHeaderKeyBytesMax), null]])).toBe(true);
    expect(() => at([['k'.repeat(recordHeaderKeyBytesMax + 1), null]])).toThrow(/header key of 1025 bytes/);
    // UTF-8 bytes count, not characters.
    expect(() => at({ ['é'.repeat(513)]: null })).toThrow(InvalidBatchError);
    expect(at([['v', new Uint8Array(recordHeaderValueBytesMax)]])).toBe(true);
    expect(() => at([['v', new Uint8Array(recordHeaderValueBytesMax + 1)]])).toThrow(/header value of 65537/);
    const many = (count: number): Array<[string, null]> => Array.from({ length: count }, () => ['h', null]);
    expect(at(many(recordHeaderCountMax))).toBe(true);
    expect(() => at(many(recordHeaderCountMax + 1))).toThrow(InvalidBatchError);
    expect(builder.recordCount).toBe(3);
    validateBatch(builder.finish());
  });

  it('throws when a record can never fit, whatever the batch holds', () => {
    const builder = new BatchBuilder({ maxBatchBytes: 1024 });
    expect(() => builder.append({ value: new Uint8Array(1024), timestamp: 1 })).toThrow(InvalidBatchError);
    expect(() => builder.append({ value: 'x'.repeat(1000), timestamp: 1 })).toThrow(/can never fit/);
    expect(() => builder.append({ value: new Uint8Array(960), timestamp: 1 })).toThrow(/can never fit/);
    // The largest record that fits an empty batch: 1024 - 56 bytes.
    // Record: length (2) + attributes, deltas, null key (4) + valueLength (2) + value + headerCount (1).
    const largest = 1024 - BatchHeader.size - 2 - 4 - 2 - 1;
    expect(builder.append({ value: new Uint8Array(largest), timestamp: 1 })).toBe(true);
    expect(builder.sizeBytes).toBe(1024);
    expect(builder.append({ value: null, timestamp: 1 })).toBe(false);
    validateBatch(builder.finish());
  });

  it('returns false, writing nothing, when the batch is full', () => {
    fc.assert(
      fc.property(
        fc.array(recordArbitrary, { minLength: 1, maxLength: 40 }),
        fc.integer({ min: 200, max: 4000 }),
        (records, maxBatchBytes) => {
          const builder = new BatchBuilder({ maxBatchBytes, initialBytes: 64 });
          const accepted: RecordInput[] = [];
          for (const input of records) {
            const before = builder.sizeBytes;
            let appended: boolean;
            try {
              appended = builder.append(input);
            } catch (error) {
              expect(error).toBeInstanceOf(InvalidBatchError);
              expect(builder.sizeBytes).toBe(before);
              continue;
            }
            if (appended) accepted.push(input);
            else expect(builder.sizeBytes).toBe(before);
            expect(builder.sizeBytes).toBeLessThanOrEqual(maxBatchBytes);
          }
          if (accepted.length === 0) return;
          const batch = builder.finish();
          expect(batch.length).toBeLessThanOrEqual(maxBatchBytes);
          // Rejected records left nothing behind: same bytes as a batch of the accepted ones only.
          expect(toHex(batch)).toBe(toHex(encodeBatch(accepted)));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('returns false once the batch holds batchRecordCountMax records', () => {
    const builder = new BatchBuilder({ initialBytes: 8 * 1024 * 1024 });
    const empty: RecordInput = { key: null, value: null, timestamp: 1 };
    for (let i = 0; i < batchRecordCountMax; i++) {
      if (!builder.append(empty)) throw new Error(`append ${i} refused`);
    }
    expect(builder.append(empty)).toBe(false);
    const batch = builder.finish();
    expect(validateBatch(batch).recordCount).toBe(batchRecordCountMax);
  });
});

describe('negative space: validateBatch and the decoder', () => {
  it('rejects every truncation of a batch', () => {
    const batch = golden();
    for (let length = 0; length < batch.length; length++) {
      const truncated = batch.slice(0, length);
      expect(() => validateBatch(truncated), `length ${length}`).toThrow(InvalidBatchError);
      expect(() => new RecordCursor(truncated)).toThrow(InvalidBatchError);
      expect(verifyBatchCrc(truncated)).toBe(false);
    }
  });

  it('detects every single-byte corruption (CRC or structure)', () => {
    const batch = golden();
    for (let position = 0; position < batch.length; position++) {
      for (let mask = 1; mask < 256; mask++) {
        const corrupted = batch.slice();
        corrupted[position]! ^= mask;
        let error: unknown = null;
        try {
          validateBatch(corrupted, { baseOffset: 0 });
        } catch (caught) {
          error = caught;
        }
        if (!(error instanceof InvalidBatchError || error instanceof CorruptBatchError)) {
          throw new Error(`corruption at byte ${position} (xor ${mask}) not detected: ${String(error)}`);
        }
        if (position >= BatchHeader.crcStart && error instanceof CorruptBatchError) {
          expect(verifyBatchCrc(corrupted)).toBe(false);
        }
      }
    }
  });

  it('survives random corruption with a recomputed CRC: InvalidBatchError or a sane batch (property)', () => {
    const base = encodeBatch([
      ...goldenRecords,
      {
        key: 'k'.repeat(70),
        value: new Uint8Array(200).fill(7),
        headers: [
          ['a', 'b'],
          ['c', null],
        ],
        timestamp: 9,
      },
    ]);
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(base.length - 1 - BatchHeader.crcStart), fc.integer({ min: 1, max: 255 })), {
          minLength: 1,
          maxLength: 4,
        }),
        (changes) => {
          const buffer = new Uint8Array(base.length + 32).fill(0xee);
          buffer.set(base);
          for (const [offset, mask] of changes) buffer[BatchHeader.crcStart + offset]! ^= mask;
          fixCrc(buffer);
          let fields: ReturnType<typeof validateBatch>;
          try {
            fields = validateBatch(buffer);
          } catch (error) {
            expect(error).toBeInstanceOf(InvalidBatchError);
            return;
          }
          const end = fields.batchLength;
          let count = 0;
          for (const decodedRecord of decodeRecords(buffer)) {
            count++;
            for (const view of [
              decodedRecord.key,
              decodedRecord.value,
              ...decodedRecord.headers.map((h) => h[1]),
            ]) {
              if (view !== null) expect(view.byteOffset + view.length).toBeLessThanOrEqual(end);
            }
          }
          expect(count).toBe(fields.recordCount);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('reports a CRC mismatch as CorruptBatchError', () => {
    const batch = golden();
    batch[60]! ^= 1;
    expect(() => validateBatch(batch)).toThrow(CorruptBatchError);
    expect(() => validateBatch(batch)).toThrow(/stored 0xf10c2bd5/);
    expect(verifyBatchCrc(batch)).toBe(false);
  });

  it('rejects a bad header with the reason', () => {
    const badMagic = golden();
    badMagic[BatchHeader.magic] = 2;
    expect(() => validateBatch(fixCrc(badMagic))).toThrow(/unknown magic 2/);
    const reserved = golden();
    reserved[BatchHeader.reserved2] = 1;
    expect(() => validateBatch(fixCrc(reserved))).toThrow(/reserved bytes 50-51/);
    const producer = golden();
    producer[BatchHeader.producerEpoch + 1] = 0x80; // epoch -32513
    expect(() => validateBatch(fixCrc(producer))).toThrow(/producer fields/);
    const unsafe = golden();
    unsafe[BatchHeader.producerId + 6] = 0x00; // producerId with high bits set beyond 2^53
    unsafe[BatchHeader.producerId + 7] = 0x7f;
    expect(() => validateBatch(fixCrc(unsafe))).toThrow(InvalidBatchError);
  });

  it('rejects a record whose varint is too long or overflows', () => {
    // The length varint of record 0 takes 6 bytes.
    expectInvalid(
      rawBatch([[0x80, 0x80, 0x80, 0x80, 0x80, 0x01, ...emptyBody(0)]]),
      /longer than 5 bytes at byte 56/,
    );
    // The timestampDelta varlong overflows the safe integers.
    expectInvalid(
      rawBatch([record(0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0, 1, 1, 0)]),
      /varlong overflows the safe integer range at byte 58/,
    );
    // The keyLength varint runs past the end of its record.
    expectInvalid(rawBatch([record(0, 0, 0, 0x80, 0x80, 0x80)]), /varint runs past the end at byte 60/);
  });

  it('rejects offsetDelta out of sequence', () => {
    expectInvalid(rawBatch([record(...emptyBody(1))]), /record 0 has offsetDelta 1/);
    expectInvalid(rawBatch([record(...emptyBody(0)), record(...emptyBody(0))]), /record 1 has offsetDelta 0/);
    expectInvalid(rawBatch([record(...emptyBody(0)), record(...emptyBody(2))]), /record 1 has offsetDelta 2/);
    validateBatch(rawBatch([record(...emptyBody(0)), record(...emptyBody(1))]));
  });

  it('rejects a record running past the end of the batch', () => {
    // Record length 100 with 6 bytes left.
    expectInvalid(rawBatch([[0xc8, 0x01, ...emptyBody(0)]]), /record 0 has length 100/);
    // A value that runs past its record.
    expectInvalid(rawBatch([record(0, 0, 0, z(-1), z(10), 1, 2, 3, 0)]), /value length 10/);
    // recordCount says 2, one record present (padding keeps the count plausible).
    const padded = rawBatch([record(...emptyBody(0)), [0, 0, 0, 0, 0, 0, 0]], { recordCount: 2 });
    expectInvalid(padded, /record 1 has length 0/);
  });

  it('rejects records that stop short of batchLength, or fields that stop short of the record length', () => {
    expectInvalid(
      rawBatch([record(...emptyBody(0)), [0]], { recordCount: 1 }),
      /1 records stop short of the batch length 64 at byte 63/,
    );
    expectInvalid(rawBatch([record(...emptyBody(0), 0)]), /record 0 has length 7 but its fields take 6/);
  });

  it('rejects bad lengths, attributes and limits inside records', () => {
    expectInvalid(rawBatch([record(1, 0, 0, z(-1), z(-1), 0)]), /attributes 1/);
    expectInvalid(rawBatch([record(0, 0, 0, z(-2), z(-1), 0)]), /key length -2/);
    expectInvalid(rawBatch([record(0, 0, 0, z(-1), z(-2), 0)]), /value length -2/);
    expectInvalid(rawBatch([record(0, 0, 0, z(-1), z(-1), z(-1))]), /header count -1/);
    expectInvalid(
      rawBatch([record(0, 0, 0, z(-1), z(-1), z(1), z(-1), z(-1))]),
      /header 0 has key length -1/,
    );
    // Header count over the limit (257, a 2-byte varint).
    expectInvalid(rawBatch([record(0, 0, 0, z(-1), z(-1), 0x82, 0x04)]), /header count 257/);
    // A header key over its limit, present in full.
    const name = new Array<number>(recordHeaderKeyBytesMax + 1).fill(0x61);
    expectInvalid(
      rawBatch([record(0, 0, 0, z(-1), z(-1), z(1), 0x82, 0x10, ...name, z(-1))]),
      /key length 1025/,
    );
    // A record key over its limit, present in full.
    const key = new Array<number>(recordKeyBytesMax + 1).fill(0x6b);
    expectInvalid(rawBatch([record(0, 0, 0, 0x82, 0x80, 0x08, ...key, z(-1), 0)]), /key length 65537/);
  });

  it('rejects a header key that is not UTF-8 (validateBatch)', () => {
    const batch = rawBatch([record(0, 0, 0, z(-1), z(-1), z(1), z(2), 0xc3, 0x28, z(-1))]);
    expect(() => validateBatch(batch)).toThrow(/not UTF-8/);
    // The decoder substitutes U+FFFD rather than fail.
    expect([...decodeRecords(batch)][0]!.headers[0]![0]).toBe('\uFFFD(');
  });

  it('checks timestamps against firstTimestamp and maxTimestamp', () => {
    const two = (first: number, max: number, delta0: number, delta1: number): Uint8Array =>
      rawBatch([record(0, z(delta0), z(0), z(-1), z(-1), 0), record(0, z(delta1), z(1), z(-1), z(-1), 0)], {
        firstTimestamp: first,
        maxTimestamp: max,
      });
    validateBatch(two(1000, 1010, 0, 10));
    validateBatch(two(1000, 1000, 0, -10));
    expect(() => validateBatch(two(1000, 1005, 0, 10))).toThrow(
      /timestamp 1010, after the batch maxTimestamp 1005/,
    );
    expect(() => validateBatch(two(1000, 1020, 0, 10))).toThrow(/maxTimestamp 1020 is not the largest/);
    expectInvalid(two(1000, 1010, 1, 10), /record 0 has timestamp delta 1/);
    expectInvalid(two(5, 5, 0, -10), /record 1 has timestamp delta -10/);
    expect(() => validateBatch(two(1000, 999, 0, 0))).toThrow(/timestamps out of order/);
  });

  it('validates a batch followed by another, by position', () => {
    const first = golden();
    const second = encodeBatch([{ value: 'second', timestamp: 7 }]);
    const both = new Uint8Array(first.length + second.length);
    both.set(first);
    both.set(second, first.length);
    const fields = validateBatch(both);
    expect(fields.batchLength).toBe(first.length);
    expect(validateBatch(both, { position: fields.batchLength }).recordCount).toBe(1);
    expect(verifyBatchCrc(both, first.length)).toBe(true);
    expect(() => validateBatch(both, { available: first.length - 1 })).toThrow(/runs past/);
    expect(decoded(both, first.length)).toEqual(expected([{ value: 'second', timestamp: 7 }]));
  });
});

describe('BatchBuilder.appendValues', () => {
  it('writes the same bytes as append() of the same value-only records, for any lengths', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 200 }),
        fc.integer({ min: 0, max: 2 ** 41 }),
        (values, timestamp) => {
          const one = new BatchBuilder({ initialBytes: 64 });
          for (const value of values) expect(one.append({ value, timestamp })).toBe(true);
          const many = new BatchBuilder({ initialBytes: 64 });
          expect(many.appendValues(values, timestamp)).toBe(values.length);
          expect(Buffer.from(many.finish())).toEqual(Buffer.from(one.finish()));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('stops at a full batch and goes on from an index after a reset; typed errors for misuse', () => {
    const values = Array.from({ length: 100 }, (_, i) => new Uint8Array(100).fill(i));
    const builder = new BatchBuilder({ maxBatchBytes: 4096 });
    const first = builder.appendValues(values, 1000);
    expect(first).toBeGreaterThan(10);
    expect(first).toBeLessThan(100);
    const batch = builder.finish();
    expect(batch.length).toBeLessThanOrEqual(4096);
    expect([...decodeRecords(batch)].map((record) => record.value![0])).toEqual(
      Array.from({ length: first }, (_, i) => i),
    );
    expect(() => builder.appendValues(values, 1000)).toThrow(InvalidArgumentError);
    builder.reset();
    expect(builder.appendValues(values, 2000, first)).toBeGreaterThan(0);
    expect(() => builder.appendValues(values, -1)).toThrow(InvalidArgumentError);
    expect(() => builder.appendValues([new Uint8Array(5000)], 1)).toThrow(InvalidBatchError);
  });
});
