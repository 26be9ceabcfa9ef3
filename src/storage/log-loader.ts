/**
 * Opening a partition log directory: finds its segments, reads the recovery checkpoint, restores
 * every segment and recovers the tail after an unclean shutdown. Kept apart from the append path.
 *
 * The rule: recovery trims only a torn tail, never acknowledged history.
 *  - After a clean shutdown (checkpoint says so), segments are restored from their index files
 *    (rebuilt by a scan where those are missing or wrong).
 *  - After a crash, segments holding data at or past the recovery point are scanned; batches from
 *    the recovery point on have their CRC32C checked.
 *  - A torn tail is invalid bytes at the end of the LAST segment, at or past the recovery point,
 *    with no valid batch after them: it is zeroed and reported (`truncation`). Nothing else is ever
 *    cut: damage in a sealed segment, below the recovery point, or followed by valid batches, and
 *    missing data (a segment file gone, a file cut short, fewer offsets than the checkpoint
 *    recorded), make the open fail with a LogDamagedError (log-damage.ts) naming the file, the
 *    position and the offsets affected. Files are left exactly as found; an explicit repair
 *    (log-repair.ts) sets the damaged range aside into `quarantine/`.
 *  - Without a valid checkpoint (missing or damaged) every segment is scanned and CRC-checked and
 *    every valid batch is kept: the checkpoint is an optimisation, never a reason to cut.
 *  - The checkpoint also records the log start offset: a first segment starting later (a segment
 *    file lost) is damage, unless the quarantine ledger (quarantine.ts) records that range. Segments
 *    wholly below it are left by a retention a crash interrupted: kept, and reported.
 *  - `*.tmp` files (an index or checkpoint write, a spare segment, never log data) are deleted once
 *    the log opened; a refused open leaves them, like every other file, as it found them.
 */
import { readdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { CheckpointFile } from './checkpoint-file.js';
import { type LogDamage, LogDamagedError } from './log-damage.js';
import { LogSegment, parseSegmentFileName, segmentFileName } from './log-segment.js';
import { rangesCover, readQuarantinedRanges } from './quarantine.js';
import {
  type Crc32cFunction,
  findNextValidBatch,
  loadSegmentFromIndexes,
  type ScanStop,
  scanSegment,
} from './segment-scan.js';

export interface RecoveryCheckpoint {
  version: 1;
  /** Every offset below this one was on disk (fdatasync'd) when the checkpoint was written. */
  recoveryPoint: number;
  /** True only when written by a clean close, after which no append happened. */
  cleanShutdown: boolean;
  /**
   * The log start offset when written (retention writes it before deleting segments). Absent in
   * checkpoints written before it existed: then a lost first segment cannot be told from retention.
   */
  logStartOffset?: number;
}

export const recoveryCheckpointFileName = 'recovery-point.checkpoint';

export interface TruncationReport {
  file: string;
  position: number;
  reason: string;
  /** Offset the log ends at after the cut (at or past the recovery point: nothing acknowledged as durable). */
  truncatedToOffset: number;
  /** Bytes zeroed from `position` on that were not zero (what the torn write left). */
  bytesCut: number;
}

export interface RecoveryReport {
  cleanShutdown: boolean;
  /** Recovery point read from the checkpoint (0 when there was none). */
  recoveryPoint: number;
  /** Why the checkpoint could not be used: damaged, or missing beside segment files. Null when valid. */
  checkpointProblem: string | null;
  segmentCount: number;
  segmentsScanned: number;
  bytesVerified: number;
  indexesRebuilt: string[];
  truncation: TruncationReport | null;
  /** Offsets the quarantine ledger records as set aside by a repair (gaps in the log). */
  quarantinedOffsets: number;
  /** Why the quarantine ledger could not be read (then no gap is accepted). */
  quarantineProblem: string | null;
  /** Segment files wholly below the recorded log start (a retention a crash interrupted): kept. */
  retentionLeftovers: string[];
  /** No segment file existed: this open created the log's first segment (a new partition). */
  created: boolean;
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

/** Bytes of `bytes[start, end)` that are not zero (what a cut removes). */
function nonZeroBytes(bytes: Uint8Array, start: number, end: number): number {
  let count = 0;
  for (let i = start; i < end; i++) if (bytes[i] !== 0) count++;
  return count;
}

export function loadLog(options: LoadOptions, checkpoint: CheckpointFile<RecoveryCheckpoint>): LoadedLog {
  // Real time, not the injected clock: only measured for the report, it decides nothing.
  const startedAt = performance.now();
  const { directory, segmentBytes, indexIntervalBytes, crc32c } = options;
  const read = checkpoint.read();
  const valid = read.status === 'ok';
  const cleanShutdown = valid && read.value.cleanShutdown === true;
  const recoveryPoint = valid ? read.value.recoveryPoint : 0;
  const recordedStart =
    valid && typeof read.value.logStartOffset === 'number' ? read.value.logStartOffset : null;
  const quarantine = readQuarantinedRanges(directory);
  const covered = (from: number, to: number): boolean => rangesCover(quarantine.ranges, from, to);
  const { baseOffsets, temporaryNames } = listDirectory(directory);
  const report: RecoveryReport = {
    cleanShutdown,
    recoveryPoint,
    checkpointProblem:
      read.status === 'corrupt'
        ? read.reason
        : read.status === 'missing' && baseOffsets.length > 0
          ? `${recoveryCheckpointFileName} is missing`
          : null,
    segmentCount: 0,
    created: false,
    segmentsScanned: 0,
    bytesVerified: 0,
    indexesRebuilt: [],
    truncation: null,
    quarantinedOffsets: quarantine.ranges.reduce((sum, range) => sum + range.toOffset - range.fromOffset, 0),
    quarantineProblem: quarantine.problem,
    retentionLeftovers: [],
    durationMs: 0,
  };

  const segments: LogSegment[] = [];
  /** Sealed segments rebuilt by a scan: indexes written (and the file trimmed) once the open succeeds. */
  const toSeal: LogSegment[] = [];
  let truncation: { segment: LogSegment; stop: ScanStop } | null = null;
  try {
    for (let i = 0; i < baseOffsets.length; i++) {
      const baseOffset = baseOffsets[i]!;
      const isLast = i === baseOffsets.length - 1;
      const nextBaseOffset = isLast ? Number.POSITIVE_INFINITY : baseOffsets[i + 1]!;
      // Read-only until the whole log is known good: a refused open changes no file.
      const segment = LogSegment.open(directory, baseOffset, false, segmentBytes, indexIntervalBytes);
      segments.push(segment);
      const fileBytes = segment.fileBytesAtOpen;
      if (
        i === 0 &&
        recordedStart !== null &&
        baseOffset > recordedStart &&
        !covered(recordedStart, baseOffset)
      ) {
        throw new LogDamagedError({
          kind: 'missing-data',
          file: join(directory, segmentFileName(recordedStart, '.log')),
          position: 0,
          reason: `the log started at offset ${recordedStart} (checkpoint) but its first segment file starts at ${baseOffset}: segment file(s) missing`,
          fromOffset: recordedStart,
          toOffset: baseOffset,
          resume: null,
          atLogEnd: false,
        });
      }

      let stop: ScanStop | null = null;
      const mustScan = !cleanShutdown && nextBaseOffset > recoveryPoint;
      if (!mustScan) {
        // Sealed (or cleanly closed) and wholly before the recovery point: trust the indexes.
        const problem = loadSegmentFromIndexes(segment, fileBytes);
        if (problem !== null) {
          report.indexesRebuilt.push(segment.indexPath);
          stop = scanSegment(segment, fileBytes, Number.POSITIVE_INFINITY, crc32c).stop;
          if (!isLast) toSeal.push(segment);
        }
      } else {
        report.segmentsScanned++;
        const scan = scanSegment(segment, fileBytes, recoveryPoint, crc32c);
        report.bytesVerified += scan.bytesVerified;
        report.indexesRebuilt.push(segment.indexPath);
        stop = scan.stop;
        if (!isLast) toSeal.push(segment);
      }
      if (recordedStart !== null && !isLast && segment.nextOffset <= recordedStart) {
        report.retentionLeftovers.push(segment.logPath);
      }
      const end = segment.nextOffset;
      const bytes = segment.mappedView();
      const resumeAfter = (at: ScanStop): { position: number; offset: number } | null =>
        findNextValidBatch(
          bytes,
          at.position,
          Math.min(fileBytes, bytes.length),
          at.expectedOffset,
          isLast ? Number.MAX_SAFE_INTEGER : nextBaseOffset,
          crc32c,
        );

      if (!isLast) {
        if (end > nextBaseOffset) {
          throw new LogDamagedError({
            kind: 'overlap',
            file: segment.logPath,
            position: stop?.position ?? segment.sizeBytes,
            reason: `segment holds offsets up to ${end - 1} but the next segment starts at ${nextBaseOffset}`,
            fromOffset: nextBaseOffset,
            toOffset: end,
            resume: null,
            atLogEnd: false,
          });
        }
        if (stop !== null && (stop.kind === 'invalid' || end < nextBaseOffset)) {
          // Zeros after whole batches that reach the next segment are a segment left preallocated
          // by a crash during a roll (trimmed once the open succeeds); so are zeros before a gap the
          // quarantine ledger records. Anything else inside a sealed segment is damage.
          const resume = resumeAfter(stop);
          const zerosBeforeGap = stop.kind === 'end' && resume === null && covered(end, nextBaseOffset);
          if (!zerosBeforeGap) {
            throw new LogDamagedError({
              kind: 'corrupt-data',
              file: segment.logPath,
              position: stop.position,
              reason: stop.reason,
              fromOffset: stop.expectedOffset,
              toOffset: resume?.offset ?? nextBaseOffset,
              resume,
              atLogEnd: false,
            });
          }
        } else if (end < nextBaseOffset && !covered(end, nextBaseOffset)) {
          throw new LogDamagedError({
            kind: 'missing-data',
            file: join(directory, segmentFileName(end, '.log')),
            position: 0,
            reason: `no segment holds offsets ${end}..${nextBaseOffset - 1}: a segment file is missing, or ${segmentFileName(baseOffset, '.log')} was cut short`,
            fromOffset: end,
            toOffset: nextBaseOffset,
            resume: null,
            atLogEnd: false,
          });
        }
        continue;
      }

      // The last segment: its end may not be before the recovery point (acknowledged as durable),
      // and invalid bytes are a torn tail only past it with nothing valid after them.
      if (stop !== null && stop.kind === 'invalid') {
        const resume = resumeAfter(stop);
        if (stop.expectedOffset >= recoveryPoint && resume === null) {
          truncation = { segment, stop };
          continue;
        }
        throw new LogDamagedError(lastSegmentDamage(segment, stop, resume, recoveryPoint));
      }
      if (end < recoveryPoint) {
        if (stop !== null) {
          // Zeros where acknowledged batches were (the file keeps its length): damaged data.
          throw new LogDamagedError(lastSegmentDamage(segment, stop, resumeAfter(stop), recoveryPoint));
        }
        throw new LogDamagedError({
          kind: 'missing-data',
          file: segment.logPath,
          position: segment.sizeBytes,
          reason: `the log ends at offset ${end} but the checkpoint recorded everything below ${recoveryPoint} as durable: the file was cut short, or later segment files are missing`,
          fromOffset: end,
          toOffset: recoveryPoint,
          resume: null,
          atLogEnd: true,
        });
      }
    }

    if (segments.length === 0) {
      const start = recordedStart ?? recoveryPoint;
      if (recoveryPoint > start && !covered(start, recoveryPoint)) {
        throw new LogDamagedError({
          kind: 'missing-data',
          file: directory,
          position: 0,
          reason: `no segment file, but the checkpoint recorded offsets ${start}..${recoveryPoint - 1} as durable`,
          fromOffset: start,
          toOffset: recoveryPoint,
          resume: null,
          atLogEnd: true,
        });
      }
      segments.push(LogSegment.create(directory, recoveryPoint, segmentBytes, indexIntervalBytes));
      report.created = true;
    }
  } catch (error) {
    // Leave every file exactly as found.
    for (const segment of segments) segment.abandon();
    throw error;
  }

  // The open succeeds: from here on files may change.
  for (const segment of toSeal) segment.completeRecoveredSeal();
  const last = segments[segments.length - 1]!;
  if (!last.isWritable) last.reopenWritable(Math.max(segmentBytes, last.fileBytesAtOpen));
  if (truncation !== null) {
    const { segment, stop } = truncation;
    report.truncation = {
      file: segment.logPath,
      position: stop.position,
      reason: stop.reason,
      truncatedToOffset: segment.nextOffset,
      bytesCut: nonZeroBytes(segment.mappedView(), stop.position, segment.mappedBytes),
    };
  }
  if (!cleanShutdown || truncation !== null) {
    // Whatever follows the valid data (a torn batch, stale bytes) is zeroed so that it can never
    // be read back as data after a later crash.
    last.zeroRange(last.sizeBytes, last.mappedBytes);
  }
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

/** Damage in the last segment at `stop`: up to the valid data after it, or to the durable end. */
function lastSegmentDamage(
  segment: LogSegment,
  stop: ScanStop,
  resume: { position: number; offset: number } | null,
  recoveryPoint: number,
): LogDamage {
  const reason =
    stop.kind === 'end'
      ? `zeros where a batch must be (${stop.reason})`
      : stop.expectedOffset < recoveryPoint
        ? `${stop.reason} (before the recovery point ${recoveryPoint}: acknowledged as durable)`
        : `${stop.reason} (valid batches follow: not a torn write)`;
  return {
    kind: 'corrupt-data',
    file: segment.logPath,
    position: stop.position,
    reason,
    fromOffset: stop.expectedOffset,
    toOffset: resume?.offset ?? Math.max(recoveryPoint, stop.expectedOffset),
    resume,
    atLogEnd: resume === null,
  };
}
