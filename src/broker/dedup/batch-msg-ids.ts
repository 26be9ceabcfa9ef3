/**
 * The msgIds of a produced batch (record header `sw-msg-id`, protocol/reserved-headers.ts), and the
 * batch re-encoded with only some of its records (the new ones of a batch mixing new and duplicate
 * msgIds). Only dedup topics pay for either: a plain topic's batch is never decoded here.
 */

import { InvalidBatchError } from '../../errors.js';
import type { BatchHeaderFields } from '../../format/batch-header.js';
import { BatchBuilder, RecordCursor, type RecordInput } from '../../format/record-batch.js';
import { batchBytesMax } from '../../limits.js';
import { crc32c as nativeCrc32c } from '../../native.js';
import { msgIdOfHeaderValue } from '../../protocol/msg-id.js';
import { msgIdHeader } from '../../protocol/reserved-headers.js';

const msgIdHeaderBytes = Buffer.from(msgIdHeader, 'utf8');

/**
 * The msgId of each record of a validated batch (null: the record has none), or null when no record
 * has one. INVALID_BATCH for a bad msgId (msg-id.ts) or a record with two `sw-msg-id` headers.
 */
export function batchMsgIds(batch: Uint8Array): Array<string | null> | null {
  const cursor = new RecordCursor(batch);
  let ids: Array<string | null> | null = null;
  while (cursor.next()) {
    if (cursor.headerCount === 0) continue;
    let id: string | null = null;
    for (const [name, value] of cursor.headers()) {
      if (name.length !== msgIdHeaderBytes.length || name !== msgIdHeader) continue;
      if (id !== null) throw new InvalidBatchError(`record ${cursor.index}: two ${msgIdHeader} headers`);
      id = msgIdOfHeaderValue(value, cursor.index);
    }
    if (id === null) continue;
    ids ??= new Array<string | null>(cursor.recordCount).fill(null);
    ids[cursor.index] = id;
  }
  return ids;
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
