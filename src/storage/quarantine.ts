/**
 * The quarantine of a partition log: `<partition dir>/quarantine/`, where an explicit repair
 * (log-repair.ts) moves damaged data out of the log. Nothing there is ever deleted by Spillway; an
 * operator may inspect, keep or remove it.
 *
 * Layout:
 *
 *   quarantine/ranges.checkpoint             the ledger: every offset range set aside (CheckpointFile,
 *                                            crash-safe, CRC line); the loader accepts a gap in the
 *                                            log's offsets only where the ledger covers it
 *   quarantine/<segment>.log.<ms>            the original segment file a range was cut from
 *   quarantine/<segment>.index.<ms>, ...     its index files (derived data, moved with it)
 *   quarantine/*.partial                     a repair step being written (a crash leaves it; the
 *                                            next repair writes it again)
 *
 * One repair step for damaged bytes at position P of segment F, valid data resuming at position P2
 * with offset R (any part may be absent):
 *   1. write F[P2, end) to `<R>.log.partial` and F[0, P) to `<F>.head.partial`, fsync each;
 *   2. copy F to `quarantine/<F>.<ms>` (fsync), or, when P = 0, it is renamed there in step 5;
 *   3. record the range in the ledger;
 *   4. rename the rest to `<R>.log` in the partition directory; start an empty segment at the
 *      durable end when the damage reached the end of the log (offsets are never given out twice);
 *   5. move F's index files to quarantine, then replace F by its head (rename), or move F itself;
 *   6. fsync both directories.
 * At every point the partition directory holds either F or its replacement, and the quarantine a
 * full copy of F once F was replaced: a crash in the middle leaves a log that the next open finds
 * damaged in the same place, and repairing again completes the step.
 */
import {
  closeSync,
  existsSync,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { CorruptLogError } from '../errors.js';
import { CheckpointFile, fsyncDirectorySync } from './checkpoint-file.js';
import { fileModes } from './file-modes.js';
import type { LogDamage, LogDamageKind } from './log-damage.js';
import { parseSegmentFileName, segmentFileName } from './log-segment.js';

export const quarantineDirectoryName = 'quarantine';
const ledgerFileName = 'ranges.checkpoint';
const copyChunkBytes = 1024 * 1024;

/** One range of offsets set aside by a repair. */
export interface QuarantinedRange {
  /** First offset set aside. */
  fromOffset: number;
  /** Offset after the last one set aside. */
  toOffset: number;
  kind: LogDamageKind;
  reason: string;
  /** Name of the segment file the damage was in or before. */
  file: string;
  /** Byte position of the damage in that file. */
  position: number;
  /** Names, inside quarantine/, of the files moved there by this step. */
  movedFiles: string[];
  atMs: number;
}

interface Ledger {
  version: 1;
  ranges: QuarantinedRange[];
}

export function quarantineDirectory(logDirectory: string): string {
  return join(logDirectory, quarantineDirectoryName);
}

function ledgerFile(logDirectory: string): CheckpointFile<Ledger> {
  return new CheckpointFile<Ledger>(join(quarantineDirectory(logDirectory), ledgerFileName));
}

/** The ranges recorded for the log in `logDirectory`, and a problem when the ledger is unreadable. */
export function readQuarantinedRanges(logDirectory: string): {
  ranges: QuarantinedRange[];
  problem: string | null;
} {
  const read = ledgerFile(logDirectory).read();
  if (read.status === 'missing') return { ranges: [], problem: null };
  if (read.status === 'corrupt') return { ranges: [], problem: read.reason };
  if (!Array.isArray(read.value.ranges)) return { ranges: [], problem: 'ledger without ranges' };
  return { ranges: read.value.ranges, problem: null };
}

/** True when every offset of [from, to) lies in some recorded range. */
export function rangesCover(ranges: readonly QuarantinedRange[], from: number, to: number): boolean {
  if (to <= from) return true;
  const sorted = [...ranges].sort((a, b) => a.fromOffset - b.fromOffset);
  let covered = from;
  for (const range of sorted) {
    if (range.fromOffset > covered) break;
    if (range.toOffset > covered) covered = range.toOffset;
    if (covered >= to) return true;
  }
  return covered >= to;
}

/** A name inside quarantine/ that does not exist yet: `<name>.<ms>`, the number raised if needed. */
function freshName(quarantine: string, name: string, nowMs: number): string {
  let stamp = nowMs;
  while (existsSync(join(quarantine, `${name}.${stamp}`))) stamp++;
  return `${name}.${stamp}`;
}

/** Writes bytes [start, end) of the file open on `sourceFd` to a new file `target`, fsynced. */
function copyRange(sourceFd: number, start: number, end: number, target: string): void {
  const fd = openSync(target, 'w', fileModes.file);
  try {
    const buffer = Buffer.allocUnsafe(Math.min(copyChunkBytes, Math.max(1, end - start)));
    let position = start;
    while (position < end) {
      const read = readSync(sourceFd, buffer, 0, Math.min(buffer.length, end - position), position);
      if (read === 0) break;
      let written = 0;
      while (written < read) written += writeSync(fd, buffer, written, read - written);
      position += read;
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function renameIfExists(from: string, to: string): boolean {
  try {
    renameSync(from, to);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

/** Creates an empty segment file at `baseOffset` unless one exists (the loader preallocates it). */
function createEmptySegment(logDirectory: string, baseOffset: number): void {
  const path = join(logDirectory, segmentFileName(baseOffset, '.log'));
  if (existsSync(path)) return;
  const fd = openSync(path, 'w', fileModes.file);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Sets the damaged range of `damage` aside (see the header for the steps) and records it in the
 * ledger. Returns the recorded range. Throws for damage that cannot be repaired automatically.
 */
export function quarantineDamage(logDirectory: string, damage: LogDamage, nowMs: number): QuarantinedRange {
  if (damage.kind === 'overlap') {
    throw new CorruptLogError(
      damage.file,
      damage.position,
      `${damage.reason}: two segments hold the same offsets, which a repair cannot settle; move the wrong one out of the directory by hand`,
    );
  }
  const quarantine = quarantineDirectory(logDirectory);
  if (!existsSync(quarantine)) {
    mkdirSync(quarantine, { mode: fileModes.directory });
    fsyncDirectorySync(logDirectory);
  }
  const range: QuarantinedRange = {
    fromOffset: damage.fromOffset,
    toOffset: damage.toOffset,
    kind: damage.kind,
    reason: damage.reason,
    file: basename(damage.file),
    position: damage.position,
    movedFiles: [],
    atMs: nowMs,
  };
  const isSegment = damage.kind === 'corrupt-data' && parseSegmentFileName(basename(damage.file)) !== null;
  const moves: Array<() => void> = [];
  if (isSegment) {
    const file = damage.file;
    const name = basename(file);
    const baseOffset = parseSegmentFileName(name)!;
    const sourceFd = openSync(file, 'r');
    let restPartial: string | null = null;
    let headPartial: string | null = null;
    const original = freshName(quarantine, name, nowMs);
    try {
      const end = fstatSync(sourceFd).size;
      if (damage.resume !== null) {
        restPartial = join(quarantine, `${segmentFileName(damage.resume.offset, '.log')}.partial`);
        copyRange(sourceFd, damage.resume.position, end, restPartial);
      }
      if (damage.position > 0) {
        headPartial = join(quarantine, `${name}.head.partial`);
        copyRange(sourceFd, 0, damage.position, headPartial);
        copyRange(sourceFd, 0, end, join(quarantine, original));
      }
    } finally {
      closeSync(sourceFd);
    }
    range.movedFiles.push(original);
    if (restPartial !== null) {
      const target = join(logDirectory, segmentFileName(damage.resume!.offset, '.log'));
      moves.push(() => renameSync(restPartial!, target));
    }
    moves.push(() => {
      for (const suffix of ['.index', '.timeindex'] as const) {
        const indexName = segmentFileName(baseOffset, suffix);
        const moved = freshName(quarantine, indexName, nowMs);
        if (renameIfExists(join(logDirectory, indexName), join(quarantine, moved))) {
          range.movedFiles.push(moved);
        }
      }
      if (headPartial !== null) renameSync(headPartial, file);
      else renameSync(file, join(quarantine, original));
    });
  }
  if (damage.atLogEnd && damage.resume === null && damage.toOffset > damage.fromOffset) {
    moves.push(() => createEmptySegment(logDirectory, damage.toOffset));
  }
  const ledger = ledgerFile(logDirectory);
  const { ranges } = readQuarantinedRanges(logDirectory);
  // A repeated step (a crash interrupted the previous one) replaces its record.
  const others = ranges.filter(
    (other) => !(other.fromOffset === range.fromOffset && other.file === range.file),
  );
  ledger.writeSync({ version: 1, ranges: [...others, range] });
  for (const move of moves) move();
  fsyncDirectorySync(quarantine);
  fsyncDirectorySync(logDirectory);
  return range;
}
