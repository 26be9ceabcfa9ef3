/**
 * Re-verifies stored record batches: walks whole batches of a segment's valid bytes from a batch
 * boundary and checks each one's header, base offset and CRC32C. Read-only; used by the scrub
 * (src/broker/scrubber.ts). The append path and recovery (segment-scan.ts) never call it.
 *
 * A CRC32C mismatch is damage inside one batch: its header still gives its length, so the walk
 * reports it and goes on after it. A damaged header is damage the walk cannot pass (the length is
 * not to be trusted): it reports it and stops.
 */
import {
  BatchHeader,
  batchCrcAt,
  batchLengthAt,
  batchRecordCountAt,
  checkBatchHeader,
} from '../format/batch-header.js';
import { readInt64LE } from '../format/int64.js';
import type { Crc32cFunction } from './segment-scan.js';

export interface BatchDamage {
  /** Byte position of the damaged batch in the segment file. */
  position: number;
  /** Offset the damaged batch starts at (the offset expected there). */
  baseOffset: number;
  /** Offset after the damaged batch, or null when its header is damaged (its end is unknown). */
  nextOffset: number | null;
  reason: string;
}

export interface VerifyStep {
  /** Where the walk stopped: a batch boundary, or `end`. */
  position: number;
  /** Offset expected at `position`. */
  nextOffset: number;
  batches: number;
  bytes: number;
  damage: BatchDamage[];
  /** True when a damaged header stopped the walk before `end`. */
  stopped: boolean;
}

/**
 * Verifies the whole batches in `bytes[position, end)` until at least `maxBytes` were verified
 * (one batch more than `maxBytes` is allowed: batches are never split). `expectedOffset` is the base
 * offset of the batch at `position`.
 */
export function verifyBatches(
  bytes: Uint8Array,
  position: number,
  end: number,
  expectedOffset: number,
  maxBytes: number,
  crc32c: Crc32cFunction,
): VerifyStep {
  const step: VerifyStep = {
    position,
    nextOffset: expectedOffset,
    batches: 0,
    bytes: 0,
    damage: [],
    stopped: false,
  };
  let cursor = position;
  let expected = expectedOffset;
  while (cursor < end && step.bytes < maxBytes) {
    const problem = checkBatchHeader(bytes, cursor, end - cursor);
    const baseOffset = problem === null ? readInt64LE(bytes, cursor + BatchHeader.baseOffset) : -1;
    if (problem !== null || baseOffset !== expected) {
      step.damage.push({
        position: cursor,
        baseOffset: expected,
        nextOffset: null,
        reason: problem ?? `base offset ${baseOffset}, expected ${expected}`,
      });
      step.stopped = true;
      break;
    }
    const length = batchLengthAt(bytes, cursor);
    const next = baseOffset + batchRecordCountAt(bytes, cursor);
    const computed = crc32c(bytes, 0, cursor + BatchHeader.crcStart, cursor + length) >>> 0;
    if (computed !== batchCrcAt(bytes, cursor)) {
      step.damage.push({ position: cursor, baseOffset, nextOffset: next, reason: 'CRC32C mismatch' });
    }
    cursor += length;
    expected = next;
    step.batches++;
    step.bytes += length;
  }
  step.position = cursor;
  step.nextOffset = expected;
  return step;
}
