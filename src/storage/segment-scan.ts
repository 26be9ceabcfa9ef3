/**
 * Walks the batches of a segment from its start, validating each one, and rebuilds the segment's
 * state (size, next offset, max timestamp, indexes) as it goes. Used by recovery (log-loader.ts) and
 * by deep verification; the append path never calls it.
 *
 * A batch is accepted when its header is structurally valid (checkBatchHeader), its base offset is
 * the expected next offset, and, for batches at or after `verifyCrcFromOffset`, its CRC32C matches.
 * The scan stops at the first batch that fails; an all-zero header is the normal end of data in a
 * preallocated file and is reported as `end`, anything else as `invalid`.
 */
import {
  BatchHeader,
  batchCrcAt,
  batchLengthAt,
  batchMagic,
  batchMaxTimestampAt,
  batchRecordCountAt,
  checkBatchHeader,
} from '../format/batch-header.js';
import { readInt64LE } from '../format/int64.js';
import { emptyState, type LogSegment } from './log-segment.js';

export type Crc32cFunction = (bytes: Uint8Array, previous?: number, start?: number, end?: number) => number;

export interface ScanStop {
  kind: 'end' | 'invalid';
  /** Byte position in the .log file where the scan stopped. */
  position: number;
  /** Offset the next batch should have had. */
  expectedOffset: number;
  reason: string;
}

export interface ScanResult {
  /** Null when the scan reached the end of the file exactly on a batch boundary. */
  stop: ScanStop | null;
  batchCount: number;
  bytesVerified: number;
}

/** The base offset at `position`, or -1 when damage made it negative or larger than 2^53 - 1. */
function baseOffsetOrInvalid(bytes: Uint8Array, position: number): number {
  const high =
    bytes[position + 4]! |
    (bytes[position + 5]! << 8) |
    (bytes[position + 6]! << 16) |
    (bytes[position + 7]! << 24);
  if (high < 0 || high > 0x1fffff) return -1;
  return readInt64LE(bytes, position + BatchHeader.baseOffset);
}

function isZero(bytes: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** Scans `segment` from position 0 up to `fileBytes`, restoring its state to what is valid. */
export function scanSegment(
  segment: LogSegment,
  fileBytes: number,
  verifyCrcFromOffset: number,
  crc32c: Crc32cFunction,
): ScanResult {
  const bytes = segment.mappedView();
  segment.restore(emptyState(segment.baseOffset));
  let position = 0;
  let batchCount = 0;
  let bytesVerified = 0;
  const end = Math.min(fileBytes, bytes.length);
  while (position < end) {
    const expectedOffset = segment.nextOffset;
    const available = end - position;
    const problem = checkBatchHeader(bytes, position, available);
    if (problem !== null) {
      const headerEnd = Math.min(end, position + BatchHeader.size);
      const kind = isZero(bytes, position, headerEnd) ? 'end' : 'invalid';
      return { stop: { kind, position, expectedOffset, reason: problem }, batchCount, bytesVerified };
    }
    const length = batchLengthAt(bytes, position);
    const baseOffset = baseOffsetOrInvalid(bytes, position);
    if (baseOffset !== expectedOffset) {
      return {
        stop: {
          kind: 'invalid',
          position,
          expectedOffset,
          reason: `base offset ${baseOffset}, expected ${expectedOffset}`,
        },
        batchCount,
        bytesVerified,
      };
    }
    if (baseOffset >= verifyCrcFromOffset) {
      const actual = crc32c(bytes, 0, position + BatchHeader.crcStart, position + length);
      const stored = batchCrcAt(bytes, position);
      if (actual !== stored) {
        return {
          stop: {
            kind: 'invalid',
            position,
            expectedOffset,
            reason: `CRC32C ${hex(actual)} != stored ${hex(stored)}`,
          },
          batchCount,
          bytesVerified,
        };
      }
      bytesVerified += length;
    }
    segment.recordBatch(
      position,
      baseOffset,
      length,
      batchRecordCountAt(bytes, position),
      batchMaxTimestampAt(bytes, position),
    );
    position += length;
    batchCount++;
  }
  return { stop: null, batchCount, bytesVerified };
}

/**
 * Restores a sealed segment's state from its index files, walking (headers only) from the last index
 * entry to the end of the file. Returns the reason when the indexes cannot be trusted.
 */
export function loadSegmentFromIndexes(segment: LogSegment, fileBytes: number): string | null {
  const loaded = segment.loadIndexes(fileBytes);
  if (typeof loaded === 'string') return loaded;
  const bytes = segment.mappedView();
  const last = loaded.offsetIndex.lastEntry();
  let position = last ? last.position : 0;
  let nextOffset = segment.baseOffset + (last ? last.relativeOffset : 0);
  let maxTimestamp = -1;
  // The time index holds the max timestamp of everything before its last entry.
  maxTimestamp = Math.max(maxTimestamp, loaded.timeIndex.lastMaxTimestampBefore());
  const indexedPosition = position;
  while (position < fileBytes) {
    const problem = checkBatchHeader(bytes, position, fileBytes - position);
    if (problem !== null) return `batch at ${position}: ${problem}`;
    const baseOffset = baseOffsetOrInvalid(bytes, position);
    if (baseOffset !== nextOffset)
      return `batch at ${position} has offset ${baseOffset}, expected ${nextOffset}`;
    nextOffset = baseOffset + batchRecordCountAt(bytes, position);
    maxTimestamp = Math.max(maxTimestamp, batchMaxTimestampAt(bytes, position));
    position += batchLengthAt(bytes, position);
  }
  if (position !== fileBytes) return `last batch runs past the end of the file`;
  segment.restore({
    sizeBytes: fileBytes,
    nextOffset,
    maxTimestamp,
    offsetIndex: loaded.offsetIndex,
    timeIndex: loaded.timeIndex,
    bytesSinceIndexEntry: fileBytes - indexedPosition,
  });
  return null;
}

/**
 * The first valid batch after `from` in `bytes[0, end)`: a structurally valid header whose CRC32C
 * matches, whose base offset lies in [minOffset, maxOffset) and is reachable (every record takes at
 * least 7 bytes, so the bytes skipped bound the offsets skipped), and whose base offset is vouched
 * for: by the damaged batch at `from` when only its records are damaged, or by the batches after it
 * (`vouchedFor` below). The base offset is outside the CRC, so the last two checks
 * keep a damaged base offset from being taken for the resume point, and a damaged base offset of
 * the batch after an intact one from getting the intact one rejected.
 * Used after damage, to tell damage followed by intact data from a torn tail, and to find where the
 * data resumes. Runs without the magic byte are skipped natively (`indexOf`): zeros cost little.
 */
export function findNextValidBatch(
  bytes: Buffer,
  from: number,
  end: number,
  minOffset: number,
  maxOffset: number,
  crc32c: Crc32cFunction,
): { position: number; offset: number } | null {
  const isValidAt = (position: number): boolean => {
    if (checkBatchHeader(bytes, position, end - position) !== null) return false;
    const length = batchLengthAt(bytes, position);
    return (
      crc32c(bytes, 0, position + BatchHeader.crcStart, position + length) === batchCrcAt(bytes, position)
    );
  };
  const inRange = (baseOffset: number): boolean => baseOffset >= minOffset && baseOffset < maxOffset;
  /** The first position >= `start` holding the magic byte where `accept` holds, with its base offset. */
  const firstBatchFrom = (
    start: number,
    accept: (position: number, baseOffset: number) => boolean,
  ): { position: number; offset: number } | null => {
    let candidate = start;
    while (candidate + BatchHeader.size <= end) {
      const magicAt = bytes.indexOf(batchMagic, candidate + BatchHeader.magic);
      if (magicAt < 0) return null;
      candidate = magicAt - BatchHeader.magic;
      if (candidate + BatchHeader.size > end) return null;
      const baseOffset = baseOffsetOrInvalid(bytes, candidate);
      if (accept(candidate, baseOffset)) return { position: candidate, offset: baseOffset };
      candidate++;
    }
    return null;
  };
  /** The largest base offset a batch at `position` can have: every record takes at least 7 bytes. */
  const reachableAt = (position: number): number => minOffset + Math.ceil((position - from) / 7);
  /**
   * Whether the batches after the candidate vouch for its base offset. Walks the valid batches that
   * follow it, predicting their base offsets from its own (lengths and record counts are under the
   * CRC, base offsets are not): one that matches confirms it. A valid batch that does not match means
   * its base offset or the candidate's is damaged: when the candidate's offset implied by it is
   * impossible (outside [minOffset, reachable]) that batch is the damaged one and the walk goes on;
   * otherwise the candidate is in doubt, and rejected unless a later batch confirms it. Rejecting is
   * the safe choice: a rejected batch is set aside (kept in quarantine/), whereas a resume point too
   * high gets the intact batches after it cut as a torn tail on the next open. When the walk ends at
   * a damaged batch, the next valid batch after it must not hold offsets below the predicted ones.
   */
  const vouchedFor = (position: number, baseOffset: number): boolean => {
    let at = position + batchLengthAt(bytes, position);
    let recordsBefore = batchRecordCountAt(bytes, position);
    let otherEstimate: number | null = null;
    for (;;) {
      if (at + BatchHeader.size > end) return otherEstimate === null;
      const stored = baseOffsetOrInvalid(bytes, at);
      if (stored === baseOffset + recordsBefore) return true;
      if (!isValidAt(at)) break;
      const estimate = stored - recordsBefore;
      if (estimate >= minOffset && estimate <= reachableAt(position)) {
        // Two batches agreeing with each other against the candidate: its base offset is damaged.
        if (estimate === otherEstimate) return false;
        otherEstimate = estimate;
      }
      recordsBefore += batchRecordCountAt(bytes, at);
      at += batchLengthAt(bytes, at);
    }
    if (otherEstimate !== null) return false;
    const witness = firstBatchFrom(at, (next, offset) => inRange(offset) && isValidAt(next));
    return witness === null || witness.offset >= baseOffset + recordsBefore;
  };
  // When the batch at `from` has a sound header and the expected base offset (the damage is in its
  // records), its length and record count say where the next batch is and which offset it holds: a
  // candidate exactly there is vouched for by it. Only ever evidence for a candidate, never against
  // (the CRC failed, so its count may be the damaged field).
  const predicted =
    checkBatchHeader(bytes, from, end - from) === null && baseOffsetOrInvalid(bytes, from) === minOffset
      ? { position: from + batchLengthAt(bytes, from), offset: minOffset + batchRecordCountAt(bytes, from) }
      : null;
  return firstBatchFrom(
    from + 1,
    (candidate, baseOffset) =>
      inRange(baseOffset) &&
      baseOffset <= reachableAt(candidate) &&
      isValidAt(candidate) &&
      ((candidate === predicted?.position && baseOffset === predicted.offset) ||
        vouchedFor(candidate, baseOffset)),
  );
}

function hex(value: number): string {
  return `0x${value.toString(16).padStart(8, '0')}`;
}
