/**
 * Recovery of a state log (state-log.ts has the log layout): rebuilds the machine from the newest
 * usable snapshot and the changes after it. Kept apart from the running state log, as the partition
 * log keeps its loader apart.
 *
 * Two passes over the log, from its start:
 *  1. Find the snapshots: a snapshot is usable when its begin marker, all its entries and its end
 *     marker are there and every batch of it passes its CRC32C. A snapshot cut short (the broker was
 *     killed while writing it) or damaged is skipped, and reported. A change batch that fails its CRC
 *     is remembered: it is harmless below the snapshot chosen, fatal above it.
 *  2. Reset the machine, apply the entries of the newest usable snapshot (none: start from an empty
 *     machine at the log start, which must then be offset 0), then every change after it, in order.
 *     Control batches outside the chosen snapshot (other snapshots) are skipped.
 *
 * Why this is safe: the state log deletes segments only below the older of its two newest complete
 * snapshots, so when the newest one is damaged, the one before and every change since are still in
 * the log.
 */
import { CorruptLogError } from '../../errors.js';
import {
  BatchAttributes,
  BatchHeader,
  batchBaseOffset,
  batchLengthAt,
  batchRecordCountAt,
  checkBatchHeader,
} from '../../format/batch-header.js';
import { RecordCursor, verifyBatchCrc } from '../../format/record-batch.js';
import { crc32c as nativeCrc32c } from '../../native.js';
import type { LogStore } from '../../storage/log-store.js';
import type { EntryCodec, StateMachine } from './state-machine.js';

/**
 * The header that marks the two control records framing a snapshot: name `snapshot`, value `begin`
 * or `end` (UTF-8). Entry records carry no header.
 */
export const snapshotMarkerHeader = 'snapshot';
export type SnapshotMarkerKind = 'begin' | 'end';

/** Bytes read from the log at a time while recovering (at least one whole batch is returned). */
const recoveryReadBytes = 4 * 1024 * 1024;

/** A snapshot found in the log. Offsets: begin marker `beginOffset`, end marker `endOffset`. */
export interface SnapshotExtent {
  beginOffset: number;
  endOffset: number;
  entryCount: number;
  /** Bytes of the batches that hold it. */
  bytes: number;
}

export interface StateRecoveryReport {
  /** Begin offset of the snapshot recovery started from, null when it replayed from the log start. */
  snapshotOffset: number | null;
  /** Entries applied from that snapshot. */
  snapshotEntries: number;
  /** Changes applied after it. */
  changesReplayed: number;
  /** Bytes of the log after the snapshot used (or from the start): what replay read. */
  replayedBytes: number;
  /** Usable snapshots in the log, oldest first. */
  snapshots: SnapshotExtent[];
  /** Snapshots skipped, each with the reason (cut short, damaged). */
  skippedSnapshots: Array<{ beginOffset: number; reason: string }>;
  /** Change batches that failed their CRC below the snapshot used (harmless, reported). */
  damagedBatchesBelowSnapshot: Array<{ baseOffset: number; lastOffset: number }>;
  logStartOffset: number;
  logEndOffset: number;
  durationMs: number;
}

interface BatchView {
  bytes: Uint8Array;
  position: number;
  baseOffset: number;
  lastOffset: number;
  length: number;
  control: boolean;
  crcOk: boolean;
}

const crc32cOfBytes = (bytes: Uint8Array): number => nativeCrc32c(bytes);

const empty = new Uint8Array(0);

/**
 * Every batch of the log from `from`, in order, with its CRC checked when `verify` (pass 2 reads
 * what pass 1 verified).
 */
function* batchesOf(log: LogStore, where: string, from: number, verify: boolean): Generator<BatchView> {
  let offset = from;
  const end = log.logEndOffset;
  while (offset < end) {
    const read = log.read(offset, recoveryReadBytes);
    if (read.batchCount === 0) {
      throw new CorruptLogError(where, 0, `no batch readable at offset ${offset} below the log end ${end}`);
    }
    let position = 0;
    for (let i = 0; i < read.batchCount; i++) {
      const bytes = read.bytes;
      const problem = checkBatchHeader(bytes, position, bytes.length - position);
      if (problem !== null) throw new CorruptLogError(where, 0, `batch at offset ${offset}: ${problem}`);
      const length = batchLengthAt(bytes, position);
      const baseOffset = batchBaseOffset(bytes, position);
      const count = batchRecordCountAt(bytes, position);
      const attributes =
        bytes[position + BatchHeader.attributes]! | (bytes[position + BatchHeader.attributes + 1]! << 8);
      yield {
        bytes,
        position,
        baseOffset,
        lastOffset: baseOffset + count - 1,
        length,
        control: (attributes & BatchAttributes.control) !== 0,
        crcOk: !verify || verifyBatchCrc(bytes, position, crc32cOfBytes),
      };
      position += length;
      offset = baseOffset + count;
    }
  }
}

const textDecoder = new TextDecoder();

/** The snapshot marker a control record holds (its header says which), or null for an entry record. */
function markerKindOf(cursor: RecordCursor, where: string): SnapshotMarkerKind | null {
  if (cursor.headerCount === 0) return null;
  const headers = cursor.headers();
  const [name, value] = headers[0]!;
  const kind = value === null ? '' : textDecoder.decode(value);
  if (headers.length !== 1 || name !== snapshotMarkerHeader || (kind !== 'begin' && kind !== 'end')) {
    throw new CorruptLogError(where, 0, `unknown control record at offset ${cursor.offset}`);
  }
  return kind;
}

/** Pass 1's bookkeeping: the snapshot being read, and those found complete or skipped. */
class SnapshotScan {
  readonly complete: SnapshotExtent[] = [];
  readonly skipped: Array<{ beginOffset: number; reason: string }> = [];
  /** The offset ranges intact end markers claim, whether or not their snapshot was read whole. */
  readonly endMarkers: Array<{ beginOffset: number; endOffset: number }> = [];
  private open: {
    beginOffset: number;
    entryCount: number;
    seen: number;
    bytes: number;
    damaged: boolean;
  } | null = null;

  begin(beginOffset: number, entryCount: number): void {
    this.open = { beginOffset, entryCount, seen: 0, bytes: 0, damaged: false };
  }

  entry(): void {
    if (this.open !== null) this.open.seen++;
  }

  addBytes(bytes: number): void {
    if (this.open !== null) this.open.bytes += bytes;
  }

  /** True when `batch` lies inside the open snapshot, which is then damaged. */
  takeDamage(batch: BatchView): boolean {
    const open = this.open;
    if (open === null) return false;
    if (batch.baseOffset <= open.beginOffset || batch.lastOffset > open.beginOffset + open.entryCount + 1)
      return false;
    open.damaged = true;
    open.bytes += batch.length;
    return true;
  }

  end(marker: SnapshotMarker, offset: number, batchBytes: number): void {
    if (marker.beginOffset !== undefined && offset - marker.beginOffset === marker.entryCount + 1) {
      this.endMarkers.push({ beginOffset: marker.beginOffset, endOffset: offset });
    }
    const open = this.open;
    if (open === null || marker.beginOffset !== open.beginOffset) return;
    if (open.damaged) {
      this.skip('damaged: a batch of it fails its CRC32C');
    } else if (open.seen !== open.entryCount || marker.entryCount !== open.entryCount) {
      this.skip(`incomplete: ${open.seen} of ${open.entryCount} entries`);
    } else {
      this.complete.push({
        beginOffset: open.beginOffset,
        endOffset: offset,
        entryCount: open.entryCount,
        bytes: open.bytes + batchBytes,
      });
      this.open = null;
    }
  }

  /** Gives up on the open snapshot (if any) for `reason`. */
  skip(reason: string): void {
    if (this.open !== null) {
      const why = this.open.damaged ? 'damaged: a batch of it fails its CRC32C' : reason;
      this.skipped.push({ beginOffset: this.open.beginOffset, reason: why });
    }
    this.open = null;
  }
}

export interface SnapshotMarker {
  version: number;
  entryCount: number;
  /** In the end marker: the offset of the begin marker. */
  beginOffset?: number;
}

/**
 * Rebuilds `machine` from `log`. Throws CorruptLogError when the state cannot be rebuilt: damage in a
 * change above the newest usable snapshot, an entry the machine or codec refuses, or a log whose start
 * was deleted with no usable snapshot left.
 */
export function recoverState<Entry>(
  log: LogStore,
  where: string,
  machine: StateMachine<Entry>,
  codec: EntryCodec<Entry>,
  decodeMarker: (bytes: Uint8Array) => SnapshotMarker,
): StateRecoveryReport {
  // Real time, not the broker's clock: only measured for the report, it decides nothing.
  const startedAt = performance.now();
  const logStartOffset = log.logStartOffset;
  const logEndOffset = log.logEndOffset;
  const snapshots: SnapshotExtent[] = [];
  const skippedSnapshots: Array<{ beginOffset: number; reason: string }> = [];
  const damagedChanges: Array<{ baseOffset: number; lastOffset: number }> = [];

  // Pass 1: snapshots and damage.
  const scan = new SnapshotScan();
  const damagedBatches = new Set<number>();
  for (const batch of batchesOf(log, where, logStartOffset, true)) {
    if (!batch.crcOk) {
      damagedBatches.add(batch.baseOffset);
      // Inside a snapshot whose begin marker was read: the snapshot is damaged, nothing else is.
      // Anywhere else it may hold changes (the control bit itself may be what flipped).
      if (!scan.takeDamage(batch)) {
        damagedChanges.push({ baseOffset: batch.baseOffset, lastOffset: batch.lastOffset });
      }
      continue;
    }
    if (!batch.control) {
      scan.skip('cut short: changes follow its last entry');
      continue;
    }
    const cursor = new RecordCursor(batch.bytes, batch.position);
    while (cursor.next()) {
      const kind = markerKindOf(cursor, where);
      if (kind === 'begin') {
        scan.skip('cut short: another snapshot begins');
        scan.begin(cursor.offset, decodeMarker(cursor.value() ?? empty).entryCount);
      } else if (kind === 'end') {
        scan.end(decodeMarker(cursor.value() ?? empty), cursor.offset, batch.length);
      } else {
        scan.entry();
      }
    }
    scan.addBytes(batch.length);
  }
  scan.skip('cut short: the log ends inside it');
  snapshots.push(...scan.complete);
  skippedSnapshots.push(...scan.skipped);
  // A damaged batch inside the range an intact end marker claims (its begin marker may be what was
  // damaged) belongs to that snapshot, which is then not usable; it holds no changes.
  for (let i = damagedChanges.length - 1; i >= 0; i--) {
    const damage = damagedChanges[i]!;
    const owner = scan.endMarkers.find(
      (range) => damage.baseOffset >= range.beginOffset && damage.lastOffset <= range.endOffset,
    );
    if (owner === undefined) continue;
    damagedChanges.splice(i, 1);
    if (!skippedSnapshots.some((skipped) => skipped.beginOffset === owner.beginOffset)) {
      skippedSnapshots.push({
        beginOffset: owner.beginOffset,
        reason: 'damaged: a batch of it fails its CRC32C',
      });
    }
  }
  skippedSnapshots.sort((a, b) => a.beginOffset - b.beginOffset);

  const chosen = snapshots.length > 0 ? snapshots[snapshots.length - 1]! : null;
  const replayFrom = chosen?.beginOffset ?? logStartOffset;
  const fatal = damagedChanges.find((damage) => damage.lastOffset >= replayFrom);
  if (fatal !== undefined) {
    throw new CorruptLogError(
      where,
      0,
      `the change batch at offsets ${fatal.baseOffset}..${fatal.lastOffset} fails its CRC32C and no usable snapshot follows it`,
    );
  }
  if (chosen === null && logStartOffset !== 0) {
    throw new CorruptLogError(
      where,
      0,
      `the log starts at offset ${logStartOffset} but holds no usable snapshot: the state before it is lost`,
    );
  }

  // Pass 2: replay.
  machine.reset();
  let snapshotEntries = 0;
  let changesReplayed = 0;
  let replayedBytes = 0;
  for (const batch of batchesOf(log, where, replayFrom, false)) {
    // Damage pass 1 found here lies in a skipped snapshot (damaged changes here were fatal above).
    if (damagedBatches.has(batch.baseOffset)) continue;
    const cursor = new RecordCursor(batch.bytes, batch.position);
    if (batch.control) {
      if (chosen === null || batch.baseOffset > chosen.endOffset) continue;
      while (cursor.next()) {
        if (cursor.offset <= chosen.beginOffset || cursor.offset >= chosen.endOffset) continue;
        applyEntry(machine, codec, where, cursor);
        snapshotEntries++;
      }
      continue;
    }
    replayedBytes += batch.length;
    while (cursor.next()) {
      applyEntry(machine, codec, where, cursor);
      changesReplayed++;
    }
  }
  return {
    snapshotOffset: chosen?.beginOffset ?? null,
    snapshotEntries,
    changesReplayed,
    replayedBytes,
    snapshots,
    skippedSnapshots,
    damagedBatchesBelowSnapshot: damagedChanges,
    logStartOffset,
    logEndOffset,
    durationMs: performance.now() - startedAt,
  };
}

function applyEntry<Entry>(
  machine: StateMachine<Entry>,
  codec: EntryCodec<Entry>,
  where: string,
  cursor: RecordCursor,
): void {
  try {
    machine.apply(codec.decode(cursor), cursor.offset);
  } catch (error) {
    throw new CorruptLogError(
      where,
      0,
      `entry at offset ${cursor.offset} is invalid: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}
