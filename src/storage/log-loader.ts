/**
 * Opening a partition log directory: finds its segments, reads the recovery checkpoint, restores
 * every segment and recovers the tail after an unclean shutdown. Kept apart from the append path.
 *
 *  - After a clean shutdown (checkpoint says so), sealed and last segments are restored from their
 *    index files (rebuilt by a scan where those are missing or wrong).
 *  - After a crash, segments holding data at or past the recovery point are scanned; batches from
 *    the recovery point on have their CRC32C checked. The first invalid batch ends the log: the rest
 *    of that segment is zeroed and later segments are deleted, and the report says what was cut.
 *  - Data before the recovery point was acknowledged as durable: damage found there is never cut
 *    silently; opening fails with a CorruptLogError naming the file and position.
 *  - `*.tmp` files (an index or checkpoint write, a spare segment, never log data) are deleted once
 *    the log opened; a refused open leaves them, like every other file, as it found them.
 */
import { readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { CorruptLogError } from '../errors.js';
import type { CheckpointFile } from './checkpoint-file.js';
import { LogSegment, parseSegmentFileName } from './log-segment.js';
import { type Crc32cFunction, loadSegmentFromIndexes, scanSegment } from './segment-scan.js';

export interface RecoveryCheckpoint {
  version: 1;
  /** Every offset below this one was on disk (fdatasync'd) when the checkpoint was written. */
  recoveryPoint: number;
  /** True only when written by a clean close, after which no append happened. */
  cleanShutdown: boolean;
}

export const recoveryCheckpointFileName = 'recovery-point.checkpoint';

export interface TruncationReport {
  file: string;
  position: number;
  reason: string;
  /** Offset the log ends at after the cut. */
  truncatedToOffset: number;
  /** Later segment files deleted because they followed the cut. */
  deletedSegments: string[];
}

export interface RecoveryReport {
  cleanShutdown: boolean;
  /** Recovery point read from the checkpoint (0 when there was none). */
  recoveryPoint: number;
  checkpointProblem: string | null;
  segmentCount: number;
  segmentsScanned: number;
  bytesVerified: number;
  indexesRebuilt: string[];
  truncation: TruncationReport | null;
  durationMs: number;
}

export interface LoadedLog {
  segments: LogSegment[];
  report: RecoveryReport;
}

export interface LoadOptions {
  directory: string;
  segmentBytes: number;
  indexIntervalBytes: number;
  crc32c: Crc32cFunction;
}

/**
 * Base offsets of the segment files, ascending, and the names of the `*.tmp` files: writes that
 * never completed (an index or checkpoint being replaced, a spare segment being prepared,
 * spare-segment.ts). Those hold no log data and are deleted once the log has been opened.
 */
function listDirectory(directory: string): { baseOffsets: number[]; temporaryNames: string[] } {
  const baseOffsets: number[] = [];
  const temporaryNames: string[] = [];
  for (const name of readdirSync(directory)) {
    if (name.endsWith('.tmp')) {
      temporaryNames.push(name);
      continue;
    }
    const baseOffset = parseSegmentFileName(name);
    if (baseOffset !== null) baseOffsets.push(baseOffset);
  }
  return { baseOffsets: baseOffsets.sort((a, b) => a - b), temporaryNames };
}

export function loadLog(options: LoadOptions, checkpoint: CheckpointFile<RecoveryCheckpoint>): LoadedLog {
  // Real time, not the injected clock: only measured for the report, it decides nothing.
  const startedAt = performance.now();
  const { directory, segmentBytes, indexIntervalBytes, crc32c } = options;
  const read = checkpoint.read();
  const checkpointProblem = read.status === 'corrupt' ? read.reason : null;
  const cleanShutdown = read.status === 'ok' && read.value.cleanShutdown;
  const recoveryPoint = read.status === 'ok' ? read.value.recoveryPoint : 0;
  const report: RecoveryReport = {
    cleanShutdown,
    recoveryPoint,
    checkpointProblem,
    segmentCount: 0,
    segmentsScanned: 0,
    bytesVerified: 0,
    indexesRebuilt: [],
    truncation: null,
    durationMs: 0,
  };

  const { baseOffsets, temporaryNames } = listDirectory(directory);
  const segments: LogSegment[] = [];
  try {
    for (let i = 0; i < baseOffsets.length; i++) {
      const baseOffset = baseOffsets[i]!;
      const isLast = i === baseOffsets.length - 1;
      const nextBaseOffset = isLast ? Number.POSITIVE_INFINITY : baseOffsets[i + 1]!;
      const segment = LogSegment.open(directory, baseOffset, isLast, segmentBytes, indexIntervalBytes);
      segments.push(segment);
      const fileBytes = segment.fileBytesAtOpen;
      const previous = segments.length > 1 ? segments[segments.length - 2]! : null;
      if (previous && previous.nextOffset !== baseOffset) {
        throw new CorruptLogError(
          segment.logPath,
          0,
          `segment starts at offset ${baseOffset} but the previous one ends at ${previous.nextOffset}`,
        );
      }
      const mustScan = !cleanShutdown && nextBaseOffset > recoveryPoint;
      if (!mustScan) {
        // Sealed (or cleanly closed) and wholly before the recovery point: trust the indexes.
        const problem = loadSegmentFromIndexes(segment, fileBytes);
        if (problem === null) continue;
        report.indexesRebuilt.push(segment.indexPath);
        const scan = scanSegment(segment, fileBytes, Number.POSITIVE_INFINITY, crc32c);
        // Zeros after whole batches are a sealed segment left preallocated by a crash during a
        // roll, as long as it holds every offset up to the next segment; anything else is damage.
        const untrimmed = scan.stop?.kind === 'end' && !isLast && segment.nextOffset === nextBaseOffset;
        if (scan.stop !== null && !untrimmed) {
          throw new CorruptLogError(segment.logPath, scan.stop.position, scan.stop.reason);
        }
        if (!isLast) segment.completeRecoveredSeal();
        continue;
      }
      report.segmentsScanned++;
      const scan = scanSegment(segment, fileBytes, recoveryPoint, crc32c);
      report.bytesVerified += scan.bytesVerified;
      report.indexesRebuilt.push(segment.indexPath);
      const stop = scan.stop;
      const cutHere = stop !== null && stop.kind === 'invalid';
      const endsEarly = stop !== null && !isLast && segment.nextOffset !== nextBaseOffset;
      // Wherever the data ends (even at an all-zero header), it may not end before the recovery
      // point: that data was acknowledged as durable.
      const endsBeforeRecoveryPoint = (cutHere || endsEarly || isLast) && segment.nextOffset < recoveryPoint;
      if (endsBeforeRecoveryPoint) {
        throw new CorruptLogError(
          segment.logPath,
          stop?.position ?? segment.sizeBytes,
          `${stop?.reason ?? 'end of segment'} (offset ${segment.nextOffset} is before the recovery point ${recoveryPoint})`,
        );
      }
      if (!cutHere && !endsEarly) {
        // A sealed segment restored by a scan: write its indexes, and trim it if a crash during
        // a roll left it preallocated.
        if (!isLast) segment.completeRecoveredSeal();
        continue;
      }
      const position = stop!.position;
      // A torn or damaged tail: everything from here on is cut.
      const deleted: string[] = [];
      for (let j = i + 1; j < baseOffsets.length; j++) {
        const later = LogSegment.open(directory, baseOffsets[j]!, false, segmentBytes, indexIntervalBytes);
        deleted.push(later.logPath);
        later.delete();
      }
      if (!segment.isWritable) segment.reopenWritable(segmentBytes);
      report.truncation = {
        file: segment.logPath,
        position,
        reason: stop!.reason,
        truncatedToOffset: segment.nextOffset,
        deletedSegments: deleted,
      };
      break;
    }

    if (segments.length === 0) {
      segments.push(LogSegment.create(directory, recoveryPoint, segmentBytes, indexIntervalBytes));
    }
    const last = segments[segments.length - 1]!;
    if (!cleanShutdown) {
      // Whatever follows the valid data (a torn batch, stale bytes) is zeroed so that it can never
      // be read back as data after a later crash.
      last.zeroRange(last.sizeBytes, last.mappedBytes);
    }
  } catch (error) {
    // Leave every file exactly as found: sealing here would trim data the failed open did not read.
    for (const segment of segments) segment.abandon();
    throw error;
  }
  // Only after a successful open: a refused open leaves every file as it found it.
  for (const name of temporaryNames) {
    try {
      unlinkSync(join(directory, name));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  report.segmentCount = segments.length;
  report.durationMs = performance.now() - startedAt;
  return { segments, report };
}
