/**
 * The layout of the `__delay` log (docs/STATE.md, "Delayed messages"): each scheduled batch is two
 * adjacent batches, appended in one synchronous step (so nothing lands between them):
 *
 *   offset b - 1   target batch: attributes 0, one record: key = the target topic (UTF-8),
 *                  value = msgpack { p: partition, c: the topic's createdAtMs, b?: base ms,
 *                  m?: [moved-from ref, ...] }
 *   offsets b..    the producer's batch as it came (attribute `delayed`; each record carries
 *                  `sw-deliver-at`, or `sw-delay-ms` counted from the base ms `b`: the commit time of
 *                  a transaction, the schedule time of a produce), records b .. b + count - 1. A
 *                  transaction's batch keeps the stamp of its commit (attribute transactional,
 *                  producerId = transaction id, baseSequence = its index in the transaction).
 *
 * A pair written by the forward rewrite (broker-delay.ts, "Rewrite") has `m`: the `__delay` offsets
 * its records were moved from, one per record, in order; the batch holds copies of those records
 * (key, value, headers, timestamp unchanged).
 *
 * A record's `__delay` offset is its reference (`ref`) everywhere: in the timing wheel, in the fired
 * markers of `__delay_state`, and in the `sw-delay-ref` header of the fired copy. A target batch not
 * followed by its scheduled batch (a torn tail) is skipped: its produce was never acknowledged.
 */
import { BatchAttributes, batchRecordCountAt, readBatchHeader } from '../../format/batch-header.js';
import { BatchBuilder, RecordCursor } from '../../format/record-batch.js';
import { VarintReader } from '../../format/varint.js';
import { crc32c as nativeCrc32c } from '../../native.js';
import { delayMsHeader, deliverAtHeader } from '../../protocol/reserved-headers.js';
import type { LogStore } from '../../storage/log-store.js';
import { statePackr } from '../state/state-machine.js';

/** Where a scheduled batch goes. */
export interface DelayTarget {
  topic: string;
  partition: number;
  /** The topic's creation time when scheduled: a topic deleted and created again is another topic. */
  createdAtMs: number;
  /** What `sw-delay-ms` counts from (epoch ms): the commit of a transaction, or the schedule time. */
  baseMs?: number;
  /** Rewrite pairs only: the refs the records were moved from (one per record). */
  movedFrom?: number[];
}

const crc32cOfBytes = (bytes: Uint8Array): number => nativeCrc32c(bytes);

/** Builds target batches; reused (finish returns a view valid until the next call). */
export class TargetBatchEncoder {
  private readonly builder = new BatchBuilder({ initialBytes: 1024 });

  /** The target batch of `target` (a view of the builder: append it before the next call). */
  encode(target: DelayTarget, nowMs: number): Uint8Array {
    this.builder.reset();
    this.builder.append({
      key: target.topic,
      value: statePackr.pack({
        p: target.partition,
        c: target.createdAtMs,
        ...(target.baseMs !== undefined ? { b: target.baseMs } : {}),
        ...(target.movedFrom !== undefined ? { m: target.movedFrom } : {}),
      }),
      timestamp: nowMs,
    });
    return this.builder.finish({ crc32c: crc32cOfBytes });
  }
}

function decodeTarget(cursor: RecordCursor): DelayTarget | null {
  if (!cursor.next()) return null;
  const topic = cursor.keyText();
  const value = cursor.value();
  if (topic === null || value === null) return null;
  const fields: unknown = statePackr.unpack(value);
  if (typeof fields !== 'object' || fields === null) return null;
  const { p, c, b, m } = fields as { p?: unknown; c?: unknown; b?: unknown; m?: unknown };
  if (typeof p !== 'number' || !Number.isSafeInteger(p) || p < 0) return null;
  if (typeof c !== 'number' || !Number.isSafeInteger(c)) return null;
  const target: DelayTarget = { topic, partition: p, createdAtMs: c };
  if (typeof b === 'number' && Number.isSafeInteger(b) && b >= 0) target.baseMs = b;
  if (
    Array.isArray(m) &&
    m.every((ref) => typeof ref === 'number' && Number.isSafeInteger(ref) && ref >= 0)
  ) {
    target.movedFrom = m as number[];
  }
  return target;
}

const deliverAtName = new TextEncoder().encode(deliverAtHeader);
const delayMsName = new TextEncoder().encode(delayMsHeader);

/**
 * The due time of the cursor's current record: its `sw-deliver-at` header (epoch ms), else its
 * `sw-delay-ms` header plus `baseMs` (when given); null when it has neither or a value is not
 * decimal digits. Reads the header bytes in place: nothing allocated per record.
 */
export function dueOf(cursor: RecordCursor, baseMs: number | undefined): number | null {
  const at = headerMsOf(cursor, deliverAtName);
  if (at !== undefined || baseMs === undefined) return at ?? null;
  const delay = headerMsOf(cursor, delayMsName);
  return delay === undefined || delay === null ? null : baseMs + delay;
}

/**
 * The due time of the cursor's current record (its `sw-deliver-at` header, epoch ms), or null when
 * it has none or it is not decimal digits.
 */
export function deliverAtOf(cursor: RecordCursor): number | null {
  return headerMsOf(cursor, deliverAtName) ?? null;
}

/**
 * The value of the header named `name` as decimal ms: undefined when the record has no such header,
 * null when its value is not 1 to 16 decimal digits. Reads in place (the lengths were checked by the
 * cursor's next()).
 */
function headerMsOf(cursor: RecordCursor, name: Uint8Array): number | null | undefined {
  const bytes = cursor.bytes;
  const reader = new VarintReader(bytes, cursor.headersPosition, cursor.batchEnd, cursor.batchPosition);
  for (let header = 0; header < cursor.headerCount; header++) {
    const nameLength = reader.readVarint();
    const nameStart = reader.position;
    reader.position = nameStart + nameLength;
    const valueLength = reader.readVarint();
    const valueStart = reader.position;
    if (valueLength > 0) reader.position += valueLength;
    if (nameLength !== name.length) continue;
    let same = true;
    for (let i = 0; i < nameLength && same; i++) same = bytes[nameStart + i] === name[i];
    if (!same) continue;
    if (valueLength <= 0 || valueLength > 16) return null;
    let ms = 0;
    for (let i = 0; i < valueLength; i++) {
      const digit = bytes[valueStart + i]! - 48;
      if (digit < 0 || digit > 9) return null;
      ms = ms * 10 + digit;
    }
    return ms;
  }
  return undefined;
}

/** A scheduled batch read back from `__delay`: valid while the log keeps its segment. */
export interface ScheduledBatch {
  target: DelayTarget;
  /** Offset of its first record. */
  base: number;
  count: number;
  /** The batch bytes (a view). */
  bytes: Uint8Array;
}

/** The scheduled batch holding `__delay` offset `ref`, or null when the log does not have it. */
export function readScheduledBatch(log: LogStore, ref: number): ScheduledBatch | null {
  if (ref <= log.logStartOffset || ref >= log.logEndOffset) return null;
  const data = log.read(ref, 1);
  if (data.batchCount === 0 || data.firstOffset > ref) return null;
  const base = data.firstOffset;
  const targetRead = log.read(base - 1, 1);
  if (targetRead.batchCount === 0 || targetRead.firstOffset !== base - 1) return null;
  const target = decodeTarget(new RecordCursor(targetRead.bytes, 0));
  if (target === null) return null;
  const length = readBatchHeader(data.bytes, 0).batchLength;
  return { target, base, count: batchRecordCountAt(data.bytes, 0), bytes: data.bytes.subarray(0, length) };
}

/**
 * Walks the scheduled batches of `log` from `from` to its end, in order, calling `visit` for each
 * complete pair (target batch then delayed batch) and `onOrphan` for a target batch followed by
 * another target batch (its own batch never made it: a crash between the two appends). Returns the
 * number of batches skipped (such a target, or anything else out of place).
 */
export function scanScheduledBatches(
  log: LogStore,
  from: number,
  visit: (batch: ScheduledBatch) => void,
  onOrphan: (targetOffset: number) => void = () => undefined,
  readBytes = 4 * 1024 * 1024,
): number {
  let offset = Math.max(from, log.logStartOffset);
  let target: DelayTarget | null = null;
  let targetOffset = -1;
  let skipped = 0;
  while (offset < log.logEndOffset) {
    const result = log.read(offset, readBytes);
    if (result.batchCount === 0) break;
    let position = 0;
    while (position < result.bytes.length) {
      const header = readBatchHeader(result.bytes, position);
      const bytes = result.bytes.subarray(position, position + header.batchLength);
      position += header.batchLength;
      const base = header.baseOffset;
      if (base + header.recordCount <= offset) continue; // before `from`
      if ((header.attributes & BatchAttributes.delayed) === 0) {
        if (target !== null) {
          skipped++;
          onOrphan(targetOffset);
        }
        target = decodeTarget(new RecordCursor(bytes, 0));
        targetOffset = base;
        if (target === null) skipped++;
      } else {
        if (target !== null && targetOffset === base - 1) {
          visit({ target, base, count: header.recordCount, bytes });
        } else {
          skipped++;
          if (target !== null) onOrphan(targetOffset);
        }
        target = null;
      }
    }
    offset = result.nextOffset;
  }
  if (target !== null) {
    // A torn tail: the produce was never answered.
    skipped++;
    onOrphan(targetOffset);
  }
  return skipped;
}
