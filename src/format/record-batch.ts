/**
 * Record batch codec: the unit Spillway stores on disk and sends on the wire. Producers encode a
 * batch once (BatchBuilder); the broker validates it (validateBatch), patches baseOffset and appends
 * the bytes as they are; consumers decode it lazily (decodeRecords, RecordCursor). Nothing re-encodes.
 *
 * Layout (docs/FORMAT.md documents it byte for byte; the golden-byte test keeps the two honest):
 *
 *   header(56)          fixed, little-endian, see batch-header.ts
 *   recordCount times:
 *     length            varint   bytes of the rest of this record
 *     attributes        int8     0
 *     timestampDelta    varlong  timestamp - firstTimestamp (may be negative)
 *     offsetDelta       varint   index of the record in the batch (0, 1, 2, ...)
 *     keyLength         varint   -1 for a null key
 *     key               keyLength bytes
 *     valueLength       varint   -1 for a null value
 *     value             valueLength bytes
 *     headerCount       varint
 *     headerCount times:
 *       keyLength       varint   >= 0
 *       key             keyLength bytes of UTF-8
 *       valueLength     varint   -1 for a null value
 *       value           valueLength bytes
 *
 * Varints are zigzag (varint.ts). The header's firstTimestamp is the timestamp of record 0 (its delta
 * is 0); later records may carry earlier timestamps (negative deltas); maxTimestamp is the largest.
 *
 * Buffer ownership: BatchBuilder.finish() returns a view into the builder's own buffer, valid until the
 * next reset(); finishCopy() returns bytes the caller owns. Keys, values and cursors from the decoder
 * are views into the batch given to it and must not outlive it (a view into a segment map must not
 * outlive the map). None of these classes may be used from two places at once.
 */
import { isUtf8 } from 'node:buffer';
import { assert, unreachable } from '../assert.js';
import { CorruptBatchError, InvalidArgumentError, InvalidBatchError } from '../errors.js';
import {
  batchBytesMax,
  batchRecordCountMax,
  recordHeaderCountMax,
  recordHeaderKeyBytesMax,
  recordHeaderValueBytesMax,
  recordKeyBytesMax,
} from '../limits.js';
import {
  BatchAttributes,
  BatchHeader,
  type BatchHeaderFields,
  batchBytesMin,
  batchCrcAt,
  batchLengthAt,
  batchMagic,
  batchRecordCountAt,
  checkBatchHeader,
  readBatchHeader,
} from './batch-header.js';
import { crc32c } from './crc32c.js';
import { readInt64LE, writeInt64LE } from './int64.js';
import { VarintReader, varintSize, varlongSize, writeVarint, writeVarlong } from './varint.js';

/** Bytes of a key, a value or a header value: a string is written as UTF-8; null is distinct from empty. */
export type RecordBytes = string | Uint8Array | null;

/** Headers in insertion order, as an object or as a list of pairs (a list may repeat a key). */
export type RecordHeadersInput =
  | Readonly<Record<string, RecordBytes>>
  | ReadonlyArray<readonly [string, RecordBytes]>;

export interface RecordInput {
  key?: RecordBytes | undefined;
  value: RecordBytes;
  headers?: RecordHeadersInput | undefined;
  /** Milliseconds since the epoch, a safe integer >= 0. Default: Date.now(). */
  timestamp?: number | undefined;
}

/** A decoded record. `key`, `value` and header values are views into the batch (zero-copy). */
export interface DecodedRecord {
  offset: number;
  timestamp: number;
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: Array<[string, Uint8Array | null]>;
}

/**
 * CRC32C of all of `bytes`. Both src/format/crc32c.ts's `crc32c` and the native one fit. The codec
 * always passes a view of exactly the covered range, so an implementation that ignores extra
 * parameters is still correct.
 */
export type Crc32cFunction = (bytes: Uint8Array) => number;

export interface BatchBuilderOptions {
  /** Initial size of the builder's buffer; it doubles as needed up to maxBatchBytes. Default 16 KiB. */
  initialBytes?: number;
  /** Largest batch this builder makes, header included. Default and upper bound: limits.batchBytesMax. */
  maxBatchBytes?: number;
  /** The CRC32C finish() uses when its options name none. Default: the pure TypeScript crc32c. */
  crc32c?: Crc32cFunction;
}

export interface FinishOptions {
  /** -1 when not idempotent. */
  producerId?: number;
  /** -1 when not idempotent. */
  producerEpoch?: number;
  /** -1 when not idempotent. */
  baseSequence?: number;
  /** BatchAttributes bits (transactional, control, delayed); compression must be 0 for now. */
  attributes?: number;
  /** Default: the builder's (BatchBuilderOptions.crc32c). */
  crc32c?: Crc32cFunction;
}

const initialBytesDefault = 16 * 1024;

/**
 * Writes records straight into one growable buffer, reused from batch to batch with reset(), with no
 * allocation per record. The size of each record is computed first, then the record is written in
 * place; short ASCII strings (keys, header names) are measured and copied by a JavaScript loop, and a
 * long string value is encoded once, directly into the buffer, at the position its largest possible
 * UTF-8 length implies, then moved back only if its length prefix turns out shorter (measured: 35 to
 * 90 ns per record faster than Buffer.byteLength + write, even with the move).
 *
 * Ownership: finish() returns a view of the builder's buffer, valid until the next reset() (the next
 * batch overwrites it). A caller that keeps the batch longer uses finishCopy(), or finishDetach(),
 * which hands the buffer itself over (no copy) and continues in another one. Not reentrant.
 */
export class BatchBuilder {
  readonly maxBatchBytes: number;
  private readonly crc32c: Crc32cFunction;
  private buffer: Buffer;
  /** End of the records written so far; BatchHeader.size when empty. */
  private position: number = BatchHeader.size;
  private count = 0;
  private firstTimestamp = 0;
  private maxTimestamp = 0;
  private finished = false;
  /** Scratch: UTF-8/byte lengths of the headers of the record being appended (key, value, ...). */
  private readonly headerLengths = new Int32Array(2 * recordHeaderCountMax);
  private headerCount = 0;
  /** Set by measureHeaders for headers given as an object: their own keys, in order. */
  private headerNames: string[] = [];
  /** Set by writeTextAhead: where it wrote the value. */
  private textAt = -1;

  constructor(options: BatchBuilderOptions = {}) {
    const maxBatchBytes = options.maxBatchBytes ?? batchBytesMax;
    if (!Number.isInteger(maxBatchBytes) || maxBatchBytes < batchBytesMin || maxBatchBytes > batchBytesMax) {
      throw new InvalidArgumentError(
        `maxBatchBytes ${maxBatchBytes} is outside [${batchBytesMin}, ${batchBytesMax}]`,
      );
    }
    const initialBytes = options.initialBytes ?? initialBytesDefault;
    if (!Number.isInteger(initialBytes) || initialBytes < 0) {
      throw new InvalidArgumentError(`initialBytes ${initialBytes} is not a non-negative integer`);
    }
    this.maxBatchBytes = maxBatchBytes;
    this.crc32c = options.crc32c ?? crc32c;
    this.buffer = Buffer.allocUnsafeSlow(Math.min(Math.max(initialBytes, batchBytesMin), maxBatchBytes));
  }

  /** Records appended since the last reset. */
  get recordCount(): number {
    return this.count;
  }

  /** Size the batch would have if finished now, header included. */
  get sizeBytes(): number {
    return this.position;
  }

  /** Size of the builder's buffer (grows, never shrinks). */
  get capacityBytes(): number {
    return this.buffer.length;
  }

  /** Starts a new batch in the same buffer. Views returned by finish() become invalid. */
  reset(): void {
    this.position = BatchHeader.size;
    this.count = 0;
    this.firstTimestamp = 0;
    this.maxTimestamp = 0;
    this.finished = false;
  }

  /**
   * Appends one record. Returns false, writing nothing, when the record would take the batch past
   * maxBatchBytes or batchRecordCountMax (finish this batch and append it to the next one). Throws
   * InvalidBatchError when the record can never fit a batch or a key or header exceeds its limit,
   * InvalidArgumentError for a bad timestamp or header key, or after `finish` without `reset`
   * (misuse by the caller of a public class: a typed error, not an assertion).
   */
  append(record: RecordInput): boolean {
    if (this.finished) throw new InvalidArgumentError('BatchBuilder.append after finish: call reset() first');
    const timestamp = record.timestamp ?? Date.now();
    if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
      throw new InvalidArgumentError(`timestamp ${timestamp} is not a safe integer >= 0`);
    }
    const key = record.key;
    const value = record.value;
    let keyLength = -1;
    if (key != null) {
      keyLength = typeof key === 'string' ? utf8Length(key) : key.byteLength;
      if (keyLength > recordKeyBytesMax) {
        throw new InvalidBatchError(
          `record key of ${keyLength} bytes exceeds the limit ${recordKeyBytesMax}`,
        );
      }
    }
    const headers = record.headers;
    const headersBytes = headers == null ? 1 : this.measureHeaders(headers);
    const index = this.count;
    const timestampDelta = index === 0 ? 0 : timestamp - this.firstTimestamp;
    // Body bytes before valueLength: attributes, the two deltas, keyLength and the key.
    const leadBytes =
      1 + varlongSize(timestampDelta) + varintSize(index) + varintSize(keyLength) + Math.max(keyLength, 0);
    const start = this.position;

    let valueLength = -1;
    // Where a long string value was already written (writeTextAhead), or -1.
    let textAt = -1;
    if (value != null) {
      if (typeof value !== 'string') {
        valueLength = value.byteLength;
      } else if (value.length <= shortStringUnits) {
        valueLength = utf8Length(value);
      } else {
        valueLength = this.writeTextAhead(start, leadBytes, headersBytes, value);
        if (valueLength >= 0) textAt = this.textAt;
        else valueLength = Buffer.byteLength(value);
      }
      if (valueLength > this.maxBatchBytes) throw this.neverFits(valueLength);
    }
    const bodyBytes = leadBytes + varintSize(valueLength) + Math.max(valueLength, 0) + headersBytes;
    if (bodyBytes > this.maxBatchBytes) throw this.neverFits(bodyBytes);
    const recordBytes = varintSize(bodyBytes) + bodyBytes;
    if (BatchHeader.size + recordBytes > this.maxBatchBytes) throw this.neverFits(recordBytes);
    const end = start + recordBytes;
    if (end > this.maxBatchBytes || index >= batchRecordCountMax) return false;
    if (end > this.buffer.length) {
      assert(textAt < 0, 'BatchBuilder: buffer too small for a value written ahead');
      this.grow(end);
    }

    const buffer = this.buffer;
    let position = writeVarint(buffer, start, bodyBytes);
    buffer[position++] = 0;
    position = writeVarlong(buffer, position, timestampDelta);
    position = writeVarint(buffer, position, index);
    position = writeVarint(buffer, position, keyLength);
    if (keyLength > 0) position = writeBytes(buffer, position, key!, keyLength);
    position = writeVarint(buffer, position, valueLength);
    if (textAt >= 0) {
      // Written ahead assuming the longest prefixes; the real ones may be shorter: move it back.
      if (textAt !== position) buffer.copyWithin(position, textAt, textAt + valueLength);
      position += valueLength;
    } else if (valueLength > 0) {
      position = writeBytes(buffer, position, value!, valueLength);
    }
    position = headers == null ? writeVarint(buffer, position, 0) : this.writeHeaders(position, headers);
    if (position !== end)
      unreachable(`BatchBuilder: wrote ${position - start} bytes, computed ${recordBytes}`);

    this.position = end;
    this.count = index + 1;
    if (index === 0) {
      this.firstTimestamp = timestamp;
      this.maxTimestamp = timestamp;
    } else if (timestamp > this.maxTimestamp) {
      this.maxTimestamp = timestamp;
    }
    return true;
  }

  /**
   * The batch path for value-only records: appends `values[from..]` as records with no key, no
   * headers and the one `timestamp`, the same bytes append() writes for them, without a record
   * object each. Returns how many it appended: fewer than asked when the batch is full (finish it,
   * reset, and go on from there). Throws what append() throws (a bad timestamp, a value that can
   * never fit, misuse after finish).
   */
  appendValues(values: readonly Uint8Array[], timestamp: number, from = 0): number {
    if (this.finished)
      throw new InvalidArgumentError('BatchBuilder.appendValues after finish: call reset() first');
    if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
      throw new InvalidArgumentError(`timestamp ${timestamp} is not a safe integer >= 0`);
    }
    if (this.count === 0) {
      this.firstTimestamp = timestamp;
      this.maxTimestamp = timestamp;
    } else if (timestamp > this.maxTimestamp) {
      this.maxTimestamp = timestamp;
    }
    const timestampDelta = timestamp - this.firstTimestamp;
    // attributes, the timestamp delta, keyLength -1 (one byte), the header count 0 (one byte).
    const fixedBytes = 1 + varlongSize(timestampDelta) + 1 + 1;
    let index = this.count;
    let position = this.position;
    let appended = 0;
    for (let i = from; i < values.length; i++) {
      const value = values[i]!;
      const valueLength = value.byteLength;
      const bodyBytes = fixedBytes + varintSize(index) + varintSize(valueLength) + valueLength;
      const recordBytes = varintSize(bodyBytes) + bodyBytes;
      if (BatchHeader.size + recordBytes > this.maxBatchBytes) throw this.neverFits(recordBytes);
      const end = position + recordBytes;
      if (end > this.maxBatchBytes || index >= batchRecordCountMax) break;
      if (end > this.buffer.length) {
        this.position = position; // grow() keeps the bytes up to the position
        this.grow(end);
      }
      const buffer = this.buffer;
      position = writeVarint(buffer, position, bodyBytes);
      buffer[position++] = 0;
      position = writeVarlong(buffer, position, timestampDelta);
      position = writeVarint(buffer, position, index);
      buffer[position++] = 1; // keyLength -1, zigzag
      position = writeVarint(buffer, position, valueLength);
      // One TypedArray.set per value: a byte loop was slower here even for 100 B (interleaved runs).
      buffer.set(value, position);
      position += valueLength;
      buffer[position++] = 0; // no headers
      index++;
      appended++;
    }
    this.position = position;
    this.count = index;
    return appended;
  }

  /**
   * Fills the header (baseOffset 0, CRC32C last) and returns the batch: a view into the builder's
   * buffer, valid until the next reset(). Appending after finish() needs a reset() first.
   */
  finish(options: FinishOptions = {}): Uint8Array {
    if (this.count === 0)
      throw new InvalidBatchError('cannot finish an empty batch: a batch holds at least one record');
    const attributes = options.attributes ?? 0;
    const producerId = options.producerId ?? -1;
    const producerEpoch = options.producerEpoch ?? -1;
    const baseSequence = options.baseSequence ?? -1;
    if (
      !Number.isInteger(attributes) ||
      attributes < 0 ||
      attributes > 0xffff ||
      (attributes & BatchAttributes.reservedMask) !== 0 ||
      (attributes & BatchAttributes.compressionMask) !== 0
    ) {
      throw new InvalidArgumentError(`attributes ${attributes} are not valid for magic ${batchMagic}`);
    }
    if (!Number.isSafeInteger(producerId) || producerId < -1) {
      throw new InvalidArgumentError(`producerId ${producerId} is not -1 or a safe integer >= 0`);
    }
    if (!Number.isInteger(producerEpoch) || producerEpoch < -1 || producerEpoch > 0x7fff) {
      throw new InvalidArgumentError(`producerEpoch ${producerEpoch} is not in [-1, 32767]`);
    }
    if (!Number.isInteger(baseSequence) || baseSequence < -1 || baseSequence > 0x7fff_ffff) {
      throw new InvalidArgumentError(`baseSequence ${baseSequence} is not in [-1, 2^31 - 1]`);
    }
    const buffer = this.buffer;
    const length = this.position;
    writeInt64LE(buffer, 0, BatchHeader.baseOffset);
    buffer.writeInt32LE(length, BatchHeader.batchLength);
    buffer[BatchHeader.magic] = batchMagic;
    buffer[BatchHeader.reserved1] = 0;
    buffer.writeUInt16LE(attributes, BatchHeader.attributes);
    buffer.writeInt32LE(this.count, BatchHeader.recordCount);
    writeInt64LE(buffer, this.firstTimestamp, BatchHeader.firstTimestamp);
    writeInt64LE(buffer, this.maxTimestamp, BatchHeader.maxTimestamp);
    writeInt64LE(buffer, producerId, BatchHeader.producerId);
    buffer.writeInt16LE(producerEpoch, BatchHeader.producerEpoch);
    buffer.writeInt16LE(0, BatchHeader.reserved2);
    buffer.writeInt32LE(baseSequence, BatchHeader.baseSequence);
    const batch = new Uint8Array(buffer.buffer, buffer.byteOffset, length);
    const crc = (options.crc32c ?? this.crc32c)(batch.subarray(BatchHeader.crcStart, length));
    buffer.writeUInt32LE(crc >>> 0, BatchHeader.crc);
    this.finished = true;
    return batch;
  }

  /**
   * finish(), then hands the builder's buffer over with the batch instead of copying it: the result
   * (a view at offset 0 of its own ArrayBuffer, whose whole length is the old buffer) is the
   * caller's, and the builder continues in `next` (a buffer nobody reads or writes any more, e.g.
   * the storage of an acknowledged batch) or, without one, in a new buffer as large as the old one.
   * Call reset() before the next append, as after finish().
   */
  finishDetach(options: FinishOptions = {}, next?: Buffer): Uint8Array {
    const batch = this.finish(options);
    if (next !== undefined && (next.buffer === this.buffer.buffer || next.length < batchBytesMin)) {
      throw new InvalidArgumentError(
        'BatchBuilder.finishDetach: next must be another buffer of at least a batch header',
      );
    }
    this.buffer = next ?? Buffer.allocUnsafeSlow(this.buffer.length);
    return batch;
  }

  /** finish(), then a copy of the batch that the caller owns (the builder can be reset at once). */
  finishCopy(options: FinishOptions = {}): Uint8Array {
    const view = this.finish(options);
    const copy = new Uint8Array(view.length);
    copy.set(view);
    return copy;
  }

  /**
   * Writes a long string value where it belongs if its byte length took the most UTF-8 allows (3 bytes
   * per UTF-16 unit), so that the string is encoded once without being measured first; append() then
   * moves it back by the bytes the length prefixes turn out not to need (only when the real length
   * takes a shorter varint than the bound, e.g. ASCII strings of 33 to 63 characters). Returns the bytes written and sets textAt, or returns
   * -1 when the bound does not fit the largest buffer (the caller measures the string instead).
   * Bytes past `position` are scratch until the record is committed, so a record that then does not
   * fit leaves nothing behind.
   */
  private writeTextAhead(start: number, leadBytes: number, headersBytes: number, text: string): number {
    const upperBytes = 3 * text.length;
    if (upperBytes > this.maxBatchBytes) return -1;
    const upperBodyBytes = leadBytes + varintSize(upperBytes) + upperBytes + headersBytes;
    const at = start + varintSize(upperBodyBytes) + leadBytes + varintSize(upperBytes);
    // Room for the whole record at its upper bound, so that append() never grows (moves) the buffer
    // after the text is in it.
    const upperEnd = at + upperBytes + headersBytes;
    if (upperEnd > this.buffer.length) {
      if (upperEnd > this.maxBatchBytes) return -1;
      this.grow(upperEnd);
    }
    this.textAt = at;
    return this.buffer.write(text, at);
  }

  private neverFits(bytes: number): InvalidBatchError {
    return new InvalidBatchError(
      `a record of ${bytes} bytes or more can never fit a batch of at most ${this.maxBatchBytes} bytes`,
    );
  }

  private grow(needed: number): void {
    const capacity = Math.min(Math.max(needed, this.buffer.length * 2), this.maxBatchBytes);
    const next = Buffer.allocUnsafeSlow(capacity);
    this.buffer.copy(next, 0, 0, this.position);
    this.buffer = next;
  }

  /** Checks the headers' limits, stores their lengths in `headerLengths`, returns their encoded size. */
  private measureHeaders(headers: RecordHeadersInput): number {
    let count = 0;
    let bytes = 0;
    if (isHeaderList(headers)) {
      for (let i = 0; i < headers.length; i++) {
        const pair = headers[i]!;
        bytes += this.measureHeader(count++, pair[0], pair[1]);
      }
    } else {
      // Own keys only (a for-in would also visit enumerable inherited ones); kept for writeHeaders.
      const names = Object.keys(headers);
      this.headerNames = names;
      for (let i = 0; i < names.length; i++) {
        const name = names[i]!;
        bytes += this.measureHeader(count++, name, headers[name]);
      }
    }
    this.headerCount = count;
    return varintSize(count) + bytes;
  }

  private measureHeader(index: number, name: string, value: RecordBytes | undefined): number {
    if (index >= recordHeaderCountMax) {
      throw new InvalidBatchError(`more than ${recordHeaderCountMax} record headers (the limit)`);
    }
    if (typeof name !== 'string')
      throw new InvalidArgumentError(`header key ${String(name)} is not a string`);
    const nameLength = utf8Length(name);
    if (nameLength > recordHeaderKeyBytesMax) {
      throw new InvalidBatchError(
        `header key of ${nameLength} bytes exceeds the limit ${recordHeaderKeyBytesMax}`,
      );
    }
    let valueLength = -1;
    if (value != null) {
      valueLength = typeof value === 'string' ? utf8Length(value) : value.byteLength;
      if (valueLength > recordHeaderValueBytesMax) {
        throw new InvalidBatchError(
          `header value of ${valueLength} bytes exceeds the limit ${recordHeaderValueBytesMax}`,
        );
      }
    }
    this.headerLengths[2 * index] = nameLength;
    this.headerLengths[2 * index + 1] = valueLength;
    return varintSize(nameLength) + nameLength + varintSize(valueLength) + Math.max(valueLength, 0);
  }

  /** Writes the headers measured by measureHeaders, in the same order. */
  private writeHeaders(position: number, headers: RecordHeadersInput): number {
    const buffer = this.buffer;
    const lengths = this.headerLengths;
    position = writeVarint(buffer, position, this.headerCount);
    let index = 0;
    if (isHeaderList(headers)) {
      for (let i = 0; i < headers.length; i++) {
        const pair = headers[i]!;
        position = writeHeader(buffer, position, pair[0], pair[1], lengths[index]!, lengths[index + 1]!);
        index += 2;
      }
    } else {
      const names = this.headerNames;
      for (let i = 0; i < names.length; i++) {
        const name = names[i]!;
        position = writeHeader(buffer, position, name, headers[name], lengths[index]!, lengths[index + 1]!);
        index += 2;
      }
    }
    return position;
  }
}

function isHeaderList(headers: RecordHeadersInput): headers is ReadonlyArray<readonly [string, RecordBytes]> {
  return Array.isArray(headers);
}

function writeHeader(
  buffer: Buffer,
  position: number,
  name: string,
  value: RecordBytes | undefined,
  nameLength: number,
  valueLength: number,
): number {
  position = writeVarint(buffer, position, nameLength);
  if (nameLength > 0) position = writeBytes(buffer, position, name, nameLength);
  position = writeVarint(buffer, position, valueLength);
  if (valueLength > 0) position = writeBytes(buffer, position, value!, valueLength);
  return position;
}

/**
 * Strings up to this many UTF-16 units are measured and written by a JavaScript loop when they are
 * ASCII: for short keys and header names that is several times faster than a call into C++.
 */
const shortStringUnits = 32;
/** Byte arrays up to this length are copied by a loop, faster than TypedArray.prototype.set for them. */
const shortBytes = 16;

/** UTF-8 byte length of `text` (lone surrogates count as U+FFFD, 3 bytes, as Buffer writes them). */
function utf8Length(text: string): number {
  const units = text.length;
  if (units <= shortStringUnits) {
    let i = 0;
    while (i < units && text.charCodeAt(i) < 0x80) i++;
    if (i === units) return units;
  }
  return Buffer.byteLength(text);
}

/** Writes `length` bytes (measured beforehand) of `data` at `position`; returns the position after them. */
function writeBytes(buffer: Buffer, position: number, data: string | Uint8Array, length: number): number {
  if (typeof data !== 'string') {
    if (length <= shortBytes) {
      for (let i = 0; i < length; i++) buffer[position + i] = data[i]!;
    } else {
      buffer.set(data, position);
    }
  } else if (length === data.length && length <= shortStringUnits) {
    // UTF-8 length equal to UTF-16 length: all ASCII.
    for (let i = 0; i < length; i++) buffer[position + i] = data.charCodeAt(i);
  } else {
    const written = buffer.write(data, position, length);
    if (written !== length) unreachable(`BatchBuilder: wrote ${written} bytes of a ${length}-byte string`);
  }
  return position + length;
}

/**
 * Builds one batch from `records` with a fresh builder. Throws InvalidBatchError if they do not fit
 * in one batch. The result is owned by the caller. For tests, tools and cold paths; the producer keeps
 * a BatchBuilder and reuses it.
 */
export function encodeBatch(
  records: Iterable<RecordInput>,
  options: FinishOptions & BatchBuilderOptions = {},
): Uint8Array {
  const builder = new BatchBuilder(options);
  for (const record of records) {
    if (!builder.append(record)) {
      throw new InvalidBatchError(
        `records do not fit one batch of at most ${builder.maxBatchBytes} bytes (${builder.recordCount} did)`,
      );
    }
  }
  return builder.finish(options);
}

/**
 * A cursor over the records of the batch at `position` of `bytes`, allocating nothing per record:
 * next() moves to the next record and exposes its fields; key(), value() and headers() build views
 * on demand. The constructor checks the header structure (checkBatchHeader, not the CRC); next()
 * checks every varint and length of the record against the record's and the batch's end, the
 * offsetDelta sequence and the limits, and, after the last record, that the records end exactly at
 * batchLength. Errors are InvalidBatchError naming the byte position in the batch.
 */
export class RecordCursor {
  readonly bytes: Uint8Array;
  /** Position of the batch in `bytes`. */
  readonly batchPosition: number;
  /** Position in `bytes` just past the batch. */
  readonly batchEnd: number;
  readonly baseOffset: number;
  readonly recordCount: number;
  readonly firstTimestamp: number;
  /** Index of the current record in the batch; -1 before the first next(). */
  index = -1;
  offset = -1;
  timestamp = 0;
  /** Position in `bytes` of the current record's key; keyLength is -1 for a null key. */
  keyPosition = 0;
  keyLength = -1;
  valuePosition = 0;
  valueLength = -1;
  headerCount = 0;
  /** Position in `bytes` of the current record's first header. */
  headersPosition = 0;
  private readonly reader: VarintReader;
  private text: Buffer | null = null;

  constructor(bytes: Uint8Array, position = 0) {
    checkHeader(bytes, position, bytes.length - position);
    this.bytes = bytes;
    this.batchPosition = position;
    this.batchEnd = position + batchLengthAt(bytes, position);
    this.baseOffset = readHeaderInt64(bytes, position, BatchHeader.baseOffset, 'baseOffset');
    this.recordCount = batchRecordCountAt(bytes, position);
    this.firstTimestamp = readHeaderInt64(bytes, position, BatchHeader.firstTimestamp, 'firstTimestamp');
    this.reader = new VarintReader(bytes, position + BatchHeader.size, this.batchEnd, position);
  }

  /** Moves to the next record; false after the last one (having checked the batch ends there). */
  next(): boolean {
    const index = this.index + 1;
    const reader = this.reader;
    if (index >= this.recordCount) {
      if (index === this.recordCount) {
        this.index = index;
        if (reader.position !== this.batchEnd) {
          throw reader.error(
            reader.position,
            `the ${this.recordCount} records stop short of the batch length ${this.batchEnd - this.batchPosition}`,
          );
        }
      }
      return false;
    }
    const bytes = this.bytes;
    const batchEnd = this.batchEnd;
    const recordStart = reader.position;
    const bodyLength = reader.readVarint();
    const bodyStart = reader.position;
    if (bodyLength < 6 || bodyLength > batchEnd - bodyStart) {
      throw reader.error(recordStart, `record ${index} has length ${bodyLength}, out of [6, bytes left]`);
    }
    const recordEnd = bodyStart + bodyLength;
    reader.end = recordEnd;
    if (bytes[bodyStart] !== 0)
      throw reader.error(bodyStart, `record ${index} has attributes ${bytes[bodyStart]}`);
    reader.position = bodyStart + 1;
    const timestampDelta = reader.readVarlong();
    const offsetPosition = reader.position;
    const offsetDelta = reader.readVarint();
    if (offsetDelta !== index) {
      throw reader.error(offsetPosition, `record ${index} has offsetDelta ${offsetDelta}`);
    }
    let lengthPosition = reader.position;
    const keyLength = reader.readVarint();
    if (keyLength < -1 || keyLength > recordEnd - reader.position || keyLength > recordKeyBytesMax) {
      throw reader.error(lengthPosition, `record ${index} has key length ${keyLength}`);
    }
    this.keyPosition = reader.position;
    this.keyLength = keyLength;
    if (keyLength > 0) reader.position += keyLength;
    lengthPosition = reader.position;
    const valueLength = reader.readVarint();
    if (valueLength < -1 || valueLength > recordEnd - reader.position) {
      throw reader.error(lengthPosition, `record ${index} has value length ${valueLength}`);
    }
    this.valuePosition = reader.position;
    this.valueLength = valueLength;
    if (valueLength > 0) reader.position += valueLength;
    lengthPosition = reader.position;
    const headerCount = reader.readVarint();
    if (headerCount < 0 || headerCount > recordHeaderCountMax) {
      throw reader.error(lengthPosition, `record ${index} has header count ${headerCount}`);
    }
    this.headerCount = headerCount;
    this.headersPosition = reader.position;
    for (let header = 0; header < headerCount; header++) {
      lengthPosition = reader.position;
      const nameLength = reader.readVarint();
      if (
        nameLength < 0 ||
        nameLength > recordEnd - reader.position ||
        nameLength > recordHeaderKeyBytesMax
      ) {
        throw reader.error(lengthPosition, `record ${index} header ${header} has key length ${nameLength}`);
      }
      reader.position += nameLength;
      lengthPosition = reader.position;
      const headerValueLength = reader.readVarint();
      if (
        headerValueLength < -1 ||
        headerValueLength > recordEnd - reader.position ||
        headerValueLength > recordHeaderValueBytesMax
      ) {
        throw reader.error(
          lengthPosition,
          `record ${index} header ${header} has value length ${headerValueLength}`,
        );
      }
      if (headerValueLength > 0) reader.position += headerValueLength;
    }
    if (reader.position !== recordEnd) {
      throw reader.error(
        recordStart,
        `record ${index} has length ${bodyLength} but its fields take ${reader.position - bodyStart}`,
      );
    }
    reader.end = batchEnd;
    const timestamp = this.firstTimestamp + timestampDelta;
    if (timestamp < 0 || timestamp > Number.MAX_SAFE_INTEGER || (index === 0 && timestampDelta !== 0)) {
      throw reader.error(bodyStart + 1, `record ${index} has timestamp delta ${timestampDelta}`);
    }
    this.index = index;
    this.offset = this.baseOffset + index;
    this.timestamp = timestamp;
    return true;
  }

  /** The current record's key, a view into the batch, or null. */
  key(): Uint8Array | null {
    return this.keyLength < 0
      ? null
      : this.bytes.subarray(this.keyPosition, this.keyPosition + this.keyLength);
  }

  /** The current record's key decoded from UTF-8 (invalid sequences become U+FFFD), or null. */
  keyText(): string | null {
    if (this.keyLength < 0) return null;
    return this.textBuffer().toString('utf8', this.keyPosition, this.keyPosition + this.keyLength);
  }

  /** The current record's value, a view into the batch, or null. */
  value(): Uint8Array | null {
    return this.valueLength < 0
      ? null
      : this.bytes.subarray(this.valuePosition, this.valuePosition + this.valueLength);
  }

  /** The current record's headers: keys decoded from UTF-8, values views into the batch or null. */
  headers(): Array<[string, Uint8Array | null]> {
    const result: Array<[string, Uint8Array | null]> = [];
    const count = this.headerCount;
    if (count === 0) return result;
    const text = this.textBuffer();
    // The lengths were checked by next(); read them again without checks.
    const reader = new VarintReader(this.bytes, this.headersPosition, this.batchEnd, this.batchPosition);
    for (let header = 0; header < count; header++) {
      const nameLength = reader.readVarint();
      const nameStart = reader.position;
      const name = nameLength === 0 ? '' : text.toString('utf8', nameStart, nameStart + nameLength);
      reader.position = nameStart + nameLength;
      const valueLength = reader.readVarint();
      const valueStart = reader.position;
      if (valueLength < 0) {
        result.push([name, null]);
      } else {
        result.push([name, this.bytes.subarray(valueStart, valueStart + valueLength)]);
        reader.position = valueStart + valueLength;
      }
    }
    return result;
  }

  /** True when every header key of the current record is valid UTF-8 (validateBatch checks it). */
  headerKeysAreUtf8(): boolean {
    const reader = new VarintReader(this.bytes, this.headersPosition, this.batchEnd, this.batchPosition);
    for (let header = 0; header < this.headerCount; header++) {
      const nameLength = reader.readVarint();
      const nameStart = reader.position;
      if (nameLength > 0 && !isUtf8(this.bytes.subarray(nameStart, nameStart + nameLength))) return false;
      reader.position = nameStart + nameLength;
      const valueLength = reader.readVarint();
      if (valueLength > 0) reader.position += valueLength;
    }
    return true;
  }

  private textBuffer(): Buffer {
    if (this.text === null) {
      const bytes = this.bytes;
      this.text = Buffer.isBuffer(bytes)
        ? bytes
        : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    }
    return this.text;
  }
}

/**
 * Lazy iterator over the records of a batch (see RecordCursor for the checks). One record object per
 * step; RecordCursor allocates nothing per record and is faster when the caller needs only some fields.
 */
export class RecordIterator implements Iterator<DecodedRecord, undefined>, Iterable<DecodedRecord> {
  readonly cursor: RecordCursor;

  constructor(bytes: Uint8Array, position = 0) {
    this.cursor = new RecordCursor(bytes, position);
  }

  next(): IteratorResult<DecodedRecord, undefined> {
    const cursor = this.cursor;
    if (!cursor.next()) return { done: true, value: undefined };
    return {
      done: false,
      value: {
        offset: cursor.offset,
        timestamp: cursor.timestamp,
        key: cursor.key(),
        value: cursor.value(),
        headers: cursor.headers(),
      },
    };
  }

  [Symbol.iterator](): this {
    return this;
  }
}

/** Decodes the records of the batch at `position` of `bytes` lazily. Views are zero-copy. */
export function decodeRecords(bytes: Uint8Array, position = 0): RecordIterator {
  return new RecordIterator(bytes, position);
}

/**
 * True when the CRC32C stored in the batch at `position` matches its bytes [16, batchLength). Cheap:
 * only checks that the batch length fits `bytes`, then computes one CRC with `crcFunction`.
 */
export function verifyBatchCrc(
  bytes: Uint8Array,
  position = 0,
  crcFunction: Crc32cFunction = crc32c,
): boolean {
  if (position < 0 || bytes.length - position < BatchHeader.size) return false;
  const length = batchLengthAt(bytes, position);
  if (length < BatchHeader.size || length > bytes.length - position) return false;
  const computed = crcFunction(bytes.subarray(position + BatchHeader.crcStart, position + length)) >>> 0;
  return computed === batchCrcAt(bytes, position);
}

export interface ValidateBatchOptions {
  /** Default: the pure TypeScript crc32c. The broker passes the native one. */
  crc32c?: Crc32cFunction;
  /** Position of the batch in `bytes`. Default 0. */
  position?: number;
  /** Bytes available from `position` (the batch may be followed by others). Default: to the end. */
  available?: number;
  /** When given, the batch's baseOffset must equal it (0 for a batch from a producer). */
  baseOffset?: number;
}

/**
 * Full check of a batch before the broker appends it (or after storage reads it back): header
 * structure (checkBatchHeader), the CRC32C, then every record (lengths and varints, offsetDelta
 * sequence, count, limits, header keys in UTF-8, timestamps: record 0 at firstTimestamp, all in
 * [0, maxTimestamp] with maxTimestamp reached), and that the records end exactly at batchLength.
 * Throws CorruptBatchError on a CRC mismatch, InvalidBatchError otherwise; returns the header fields.
 */
export function validateBatch(bytes: Uint8Array, options: ValidateBatchOptions = {}): BatchHeaderFields {
  const position = options.position ?? 0;
  if (!Number.isInteger(position) || position < 0 || position > bytes.length) {
    throw new InvalidArgumentError(`position ${position} is outside the ${bytes.length} bytes given`);
  }
  const available = Math.min(options.available ?? bytes.length - position, bytes.length - position);
  checkHeader(bytes, position, available);
  const length = batchLengthAt(bytes, position);
  const crcFunction = options.crc32c ?? crc32c;
  const computed = crcFunction(bytes.subarray(position + BatchHeader.crcStart, position + length)) >>> 0;
  const stored = batchCrcAt(bytes, position);
  if (computed !== stored) {
    throw new CorruptBatchError(
      `batch CRC32C mismatch: stored ${hex32(stored)}, computed ${hex32(computed)}`,
    );
  }
  let fields: BatchHeaderFields;
  try {
    fields = readBatchHeader(bytes, position);
  } catch (error) {
    throw new InvalidBatchError(`invalid batch header: ${(error as Error).message}`);
  }
  if (bytes[position + BatchHeader.reserved2] !== 0 || bytes[position + BatchHeader.reserved2 + 1] !== 0) {
    throw new InvalidBatchError('invalid batch header: reserved bytes 50-51 are not zero');
  }
  if (options.baseOffset !== undefined && fields.baseOffset !== options.baseOffset) {
    throw new InvalidBatchError(`batch baseOffset ${fields.baseOffset} is not ${options.baseOffset}`);
  }
  if (fields.firstTimestamp < 0 || fields.maxTimestamp < fields.firstTimestamp) {
    throw new InvalidBatchError(
      `batch timestamps out of order: first ${fields.firstTimestamp}, max ${fields.maxTimestamp}`,
    );
  }
  if (fields.producerId < -1 || fields.producerEpoch < -1 || fields.baseSequence < -1) {
    throw new InvalidBatchError(
      `batch producer fields out of range: id ${fields.producerId}, epoch ${fields.producerEpoch}, sequence ${fields.baseSequence}`,
    );
  }
  const cursor = new RecordCursor(bytes, position);
  let maxTimestamp = -1;
  while (cursor.next()) {
    const timestamp = cursor.timestamp;
    if (timestamp > fields.maxTimestamp) {
      throw new InvalidBatchError(
        `record ${cursor.index} has timestamp ${timestamp}, after the batch maxTimestamp ${fields.maxTimestamp}`,
      );
    }
    if (timestamp > maxTimestamp) maxTimestamp = timestamp;
    if (cursor.headerCount > 0 && !cursor.headerKeysAreUtf8()) {
      throw new InvalidBatchError(`record ${cursor.index} has a header key that is not UTF-8`);
    }
  }
  if (maxTimestamp !== fields.maxTimestamp) {
    throw new InvalidBatchError(
      `batch maxTimestamp ${fields.maxTimestamp} is not the largest record timestamp ${maxTimestamp}`,
    );
  }
  return fields;
}

/** checkBatchHeader, throwing InvalidBatchError (also for an int64 field it cannot read). */
function checkHeader(bytes: Uint8Array, position: number, available: number): void {
  let reason: string | null;
  try {
    reason = checkBatchHeader(bytes, position, available);
  } catch (error) {
    // readInt64LE throws a RangeError on a baseOffset outside the safe integers (corruption).
    reason = error instanceof RangeError ? error.message : String(error);
  }
  if (reason !== null) throw new InvalidBatchError(`invalid batch header: ${reason}`);
}

function readHeaderInt64(bytes: Uint8Array, position: number, field: number, name: string): number {
  try {
    return readInt64LE(bytes, position + field);
  } catch {
    throw new InvalidBatchError(`invalid batch header: ${name} is outside the safe integer range`);
  }
}

function hex32(value: number): string {
  return `0x${value.toString(16).padStart(8, '0')}`;
}
