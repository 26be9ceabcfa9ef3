/**
 * The msgIds of a produced batch (record header `sw-msg-id`, protocol/reserved-headers.ts), and the
 * batch re-encoded with only some of its records (the new ones of a batch mixing new and duplicate
 * msgIds). Only dedup topics pay for either: a plain topic's batch is never decoded here.
 */

import { InvalidBatchError } from '../../errors.js';
import {
  type BatchHeaderFields,
  batchBaseOffset,
  batchLengthAt,
  batchMaxTimestampAt,
} from '../../format/batch-header.js';
import { BatchBuilder, RecordCursor, type RecordInput } from '../../format/record-batch.js';
import { VarintReader } from '../../format/varint.js';
import { batchBytesMax } from '../../limits.js';
import { crc32c as nativeCrc32c } from '../../native.js';
import { msgIdOfHeaderValue } from '../../protocol/msg-id.js';
import { msgIdHeader } from '../../protocol/reserved-headers.js';

const msgIdHeaderBytes = Buffer.from(msgIdHeader, 'utf8');

function sameBytes(bytes: Uint8Array, position: number, expected: Uint8Array): boolean {
  for (let index = 0; index < expected.length; index++) {
    if (bytes[position + index] !== expected[index]) return false;
  }
  return true;
}

/**
 * The msgId of each record of a validated batch (null: the record has none), or null when no record
 * has one. INVALID_BATCH for a bad msgId (msg-id.ts) or a record with two `sw-msg-id` headers.
 */
export function batchMsgIds(batch: Uint8Array): Array<string | null> | null {
  const cursor = new RecordCursor(batch);
  const bytes = cursor.bytes;
  const nameLength = msgIdHeaderBytes.length;
  let ids: Array<string | null> | null = null;
  while (cursor.next()) {
    if (cursor.headerCount === 0) continue;
    let id: string | null = null;
    // Header names compared as bytes: nothing decoded but the msgId itself (next() checked the lengths).
    const reader = new VarintReader(bytes, cursor.headersPosition, cursor.batchEnd, cursor.batchPosition);
    for (let header = 0; header < cursor.headerCount; header++) {
      const length = reader.readVarint();
      const nameStart = reader.position;
      reader.position += length;
      const valueLength = reader.readVarint();
      const valueStart = reader.position;
      if (valueLength > 0) reader.position += valueLength;
      if (length !== nameLength || !sameBytes(bytes, nameStart, msgIdHeaderBytes)) continue;
      if (id !== null) throw new InvalidBatchError(`record ${cursor.index}: two ${msgIdHeader} headers`);
      const value = valueLength < 0 ? null : bytes.subarray(valueStart, valueStart + valueLength);
      id = msgIdOfHeaderValue(value, cursor.index);
    }
    if (id === null) continue;
    ids ??= new Array<string | null>(cursor.recordCount).fill(null);
    ids[cursor.index] = id;
  }
  return ids;
}

/**
 * Calls `found(msgId, offset, batchMaxTimestamp)` for every record with a msgId in the `batchCount`
 * whole batches at the start of `bytes` (a log read), in offset order. Batches whose records the
 * produce path would refuse (control batches, a bad msgId) hold no msgId and are skipped.
 */
export function forEachMsgId(
  bytes: Uint8Array,
  batchCount: number,
  found: (msgId: string, offset: number, batchMaxTimestamp: number) => void,
): void {
  let position = 0;
  for (let batch = 0; batch < batchCount; batch++) {
    const length = batchLengthAt(bytes, position);
    const one = bytes.subarray(position, position + length);
    position += length;
    let ids: Array<string | null> | null = null;
    try {
      ids = batchMsgIds(one);
    } catch {
      continue;
    }
    if (ids === null) continue;
    const base = batchBaseOffset(one);
    const maxTimestamp = batchMaxTimestampAt(one);
    for (let record = 0; record < ids.length; record++) {
      const id = ids[record];
      if (id !== null && id !== undefined) found(id, base + record, maxTimestamp);
    }
  }
}

const crc32cOfBytes = (bytes: Uint8Array): number => nativeCrc32c(bytes);

/** A copy of `batch` holding only the records `keep` marks, unchanged (timestamps and headers kept). */
export function keepRecords(
  batch: Uint8Array,
  fields: BatchHeaderFields,
  keep: readonly boolean[],
): Uint8Array {
  const builder = new BatchBuilder({ maxBatchBytes: batchBytesMax, initialBytes: batch.length });
  const cursor = new RecordCursor(batch);
  while (cursor.next()) {
    if (!keep[cursor.index]) continue;
    const record: RecordInput = {
      key: cursor.key(),
      value: cursor.value(),
      headers: cursor.headers(),
      timestamp: cursor.timestamp,
    };
    // Fewer records than a batch that fit: they fit.
    builder.append(record);
  }
  return builder.finishCopy({
    crc32c: crc32cOfBytes,
    attributes: fields.attributes,
    producerId: fields.producerId,
    producerEpoch: fields.producerEpoch,
    baseSequence: fields.baseSequence,
  });
}
