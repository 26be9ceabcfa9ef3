/**
 * Record batch header: the fixed part of every batch, shared by the storage, the broker and the
 * client. docs/FORMAT.md documents it byte for byte; golden-byte tests keep the two honest.
 *
 * All integers little-endian. Positions from the start of the batch:
 *
 *   0  int64   baseOffset       offset of the first record; 0 from producers, assigned by the broker
 *                               by patching these 8 bytes only (they are outside the CRC)
 *   8  int32   batchLength      total bytes of the batch, this header included
 *  12  uint32  crc              CRC32C of bytes [16, batchLength)
 *  16  int8    magic            format version, currently 1
 *  17  int8    reserved         0
 *  18  uint16  attributes       bits 0-2 compression (0 none), bit 4 transactional, bit 5 control,
 *                               bit 6 delayed; other bits 0
 *  20  int32   recordCount      >= 1; offsets of the batch are baseOffset .. baseOffset+recordCount-1
 *  24  int64   firstTimestamp   ms since the epoch of the first record
 *  32  int64   maxTimestamp     largest record timestamp in the batch
 *  40  int64   producerId       -1 when not idempotent
 *  48  int16   producerEpoch    -1 when not idempotent
 *  50  int16   reserved         0
 *  52  int32   baseSequence     -1 when not idempotent
 *  56  ...     records          recordCount records (see record-batch.ts)
 */
import { batchBytesMax, batchRecordCountMax } from '../limits.js';
import { readInt64LE, writeInt64LE } from './int64.js';

export const BatchHeader = {
  baseOffset: 0,
  batchLength: 8,
  crc: 12,
  /** First byte covered by the CRC. */
  crcStart: 16,
  magic: 16,
  reserved1: 17,
  attributes: 18,
  recordCount: 20,
  firstTimestamp: 24,
  maxTimestamp: 32,
  producerId: 40,
  producerEpoch: 48,
  reserved2: 50,
  baseSequence: 52,
  /** Size of the header; records start here. */
  size: 56,
} as const;

export const batchMagic = 1;

export const BatchAttributes = {
  compressionMask: 0x7,
  transactional: 1 << 4,
  control: 1 << 5,
  delayed: 1 << 6,
  /** Bits that must be zero in magic 1. */
  reservedMask: 0xffff & ~(0x7 | (1 << 4) | (1 << 5) | (1 << 6)),
} as const;

/** Smallest possible batch: a header and one empty record (length, attributes, 2 deltas, 2 nulls, 0 headers). */
export const batchBytesMin = BatchHeader.size + 7;

export function batchBaseOffset(batch: Uint8Array, position = 0): number {
  return readInt64LE(batch, position + BatchHeader.baseOffset);
}

export function setBatchBaseOffset(batch: Uint8Array, baseOffset: number, position = 0): void {
  writeInt64LE(batch, baseOffset, position + BatchHeader.baseOffset);
}

function view(batch: Uint8Array): DataView {
  return new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
}

/** Reads batchLength at `position` without checks (call `checkBatchHeader` first on untrusted data). */
export function batchLengthAt(bytes: Uint8Array, position = 0): number {
  return (
    bytes[position + 8]! |
    (bytes[position + 9]! << 8) |
    (bytes[position + 10]! << 16) |
    (bytes[position + 11]! << 24)
  );
}

export function batchCrcAt(bytes: Uint8Array, position = 0): number {
  return batchLengthAt(bytes, position + 4) >>> 0;
}

export function batchRecordCountAt(bytes: Uint8Array, position = 0): number {
  return batchLengthAt(bytes, position + 12);
}

export function batchFirstTimestampAt(bytes: Uint8Array, position = 0): number {
  return readInt64LE(bytes, position + BatchHeader.firstTimestamp);
}

export function batchMaxTimestampAt(bytes: Uint8Array, position = 0): number {
  return readInt64LE(bytes, position + BatchHeader.maxTimestamp);
}

export interface BatchHeaderFields {
  baseOffset: number;
  batchLength: number;
  crc: number;
  magic: number;
  attributes: number;
  recordCount: number;
  firstTimestamp: number;
  maxTimestamp: number;
  producerId: number;
  producerEpoch: number;
  baseSequence: number;
}

export function readBatchHeader(batch: Uint8Array, position = 0): BatchHeaderFields {
  const v = view(batch);
  return {
    baseOffset: readInt64LE(batch, position + BatchHeader.baseOffset),
    batchLength: v.getInt32(position + BatchHeader.batchLength, true),
    crc: v.getUint32(position + BatchHeader.crc, true),
    magic: v.getInt8(position + BatchHeader.magic),
    attributes: v.getUint16(position + BatchHeader.attributes, true),
    recordCount: v.getInt32(position + BatchHeader.recordCount, true),
    firstTimestamp: readInt64LE(batch, position + BatchHeader.firstTimestamp),
    maxTimestamp: readInt64LE(batch, position + BatchHeader.maxTimestamp),
    producerId: readInt64LE(batch, position + BatchHeader.producerId),
    producerEpoch: v.getInt16(position + BatchHeader.producerEpoch, true),
    baseSequence: v.getInt32(position + BatchHeader.baseSequence, true),
  };
}

/**
 * Structural check of the header at `position` of `bytes` (no CRC): the length fits the limits and
 * the available bytes, the magic is known, reserved bits are zero, the record count is sane.
 * Returns null when the header is valid, else the reason. Used by recovery (a torn tail) and by
 * validation of produced batches.
 */
export function checkBatchHeader(bytes: Uint8Array, position: number, available: number): string | null {
  if (available < BatchHeader.size) return `only ${available} bytes left, less than a batch header`;
  const length = batchLengthAt(bytes, position);
  if (length < batchBytesMin) return `batch length ${length} is below the minimum ${batchBytesMin}`;
  if (length > batchBytesMax) return `batch length ${length} exceeds the maximum ${batchBytesMax}`;
  if (length > available) return `batch length ${length} runs past the ${available} bytes available`;
  if (bytes[position + BatchHeader.magic] !== batchMagic) {
    return `unknown magic ${bytes[position + BatchHeader.magic]}`;
  }
  if (bytes[position + BatchHeader.reserved1] !== 0) return 'reserved byte is not zero';
  const attributes =
    bytes[position + BatchHeader.attributes]! | (bytes[position + BatchHeader.attributes + 1]! << 8);
  if ((attributes & BatchAttributes.reservedMask) !== 0) return `reserved attribute bits set (${attributes})`;
  if ((attributes & BatchAttributes.compressionMask) !== 0) return 'compressed batches are not supported yet';
  const recordCount = batchRecordCountAt(bytes, position);
  if (recordCount < 1 || recordCount > batchRecordCountMax) return `record count ${recordCount} out of range`;
  // Every record takes at least 7 bytes, so the count cannot exceed what the length allows.
  if (recordCount > (length - BatchHeader.size) / 7)
    return `record count ${recordCount} does not fit length ${length}`;
  if (bytes[position + BatchHeader.reserved2] !== 0 || bytes[position + BatchHeader.reserved2 + 1] !== 0) {
    return 'reserved bytes 50-51 are not zero';
  }
  // The high 32 bits of baseOffset: negative, or beyond 2^53, cannot be an offset.
  const baseOffsetHigh =
    bytes[position + 4]! |
    (bytes[position + 5]! << 8) |
    (bytes[position + 6]! << 16) |
    (bytes[position + 7]! << 24);
  if (baseOffsetHigh < 0) return 'negative base offset';
  if (baseOffsetHigh > 0x1f_ffff) return 'base offset beyond 2^53';
  return null;
}
