/**
 * The sequence state of idempotent producers on one partition: per producer id, its epoch, the last
 * sequence it wrote and the sequences and offsets of its last `producerBatchesRememberedMax` batches,
 * so that a retried batch is recognised and answered with its original offsets.
 *
 * Rules (`check`), for a batch of producer P, epoch E, sequences S..L (L = S + recordCount - 1, mod 2^31):
 *  - P has no state here, or state of an older epoch: S must be 0 (its first batch in the epoch);
 *  - S..L equals one of P's remembered batches: a duplicate (answered, not written);
 *  - S follows P's last sequence: appended;
 *  - anything else: OUT_OF_ORDER_SEQUENCE. A producer whose last sequence is unknown (its batches
 *    were lost from the log, see `restore`) takes any S.
 *
 * Where it comes from after a restart: a sequence snapshot in `__producer_state` (the state as of
 * an offset `u` of the partition; batches the log lost since are dropped from it), then the
 * batch headers of the partition from `u` (or its end, if shorter) to its end (every idempotent batch carries producerId,
 * epoch and baseSequence). The batch is the only write of a produce: the dedup information is as
 * durable as the batch itself, and a crash can never separate the two.
 */
import { OutOfOrderSequenceError } from '../../errors.js';
import { BatchHeader, batchLengthAt, batchRecordCountAt } from '../../format/batch-header.js';
import { readInt64LE } from '../../format/int64.js';
import { producerBatchesRememberedMax, producerSequenceMax } from '../../limits.js';
import type { ProduceResult } from '../../protocol/broker-api.js';
import type { LogStore } from '../../storage/log-store.js';
import type { SequenceSnapshot, SnapshotProducer } from './producer-state-store.js';

/** Bytes of the log one read of a replay takes (whole batches; only their headers are looked at). */
const replayReadBytes = 1 << 20;
/**
 * The same for a slice (`replaySlice` with a finite batchesMax): a slice ends after the read that
 * reaches batchesMax, so it may go past it by one read's batches (64 KiB: ~800 of the smallest).
 */
const sliceReadBytes = 64 * 1024;

/** The sequence after `sequence` (sequences wrap from 2^31 - 1 to 0). */
export function nextSequence(sequence: number): number {
  return sequence === producerSequenceMax ? 0 : sequence + 1;
}

/** The sequence before `sequence`; -1 before 0 (nothing written yet in the epoch). */
export function previousSequence(sequence: number): number {
  return sequence === 0 ? -1 : sequence - 1;
}

/** The sequence of the last record of a batch of `recordCount` records starting at `baseSequence`. */
export function lastSequenceOf(baseSequence: number, recordCount: number): number {
  return (baseSequence + recordCount - 1) % (producerSequenceMax + 1);
}

/** One remembered batch: its sequences and offsets; `result` while its append is not answered yet. */
export interface RememberedBatch {
  baseSequence: number;
  lastSequence: number;
  baseOffset: number;
  lastOffset: number;
  result: Promise<ProduceResult> | null;
}

/** One producer on one partition. */
export interface ProducerOnPartition {
  epoch: number;
  /** -1: unknown (any next sequence is taken). */
  lastSequence: number;
  /** Oldest first, at most producerBatchesRememberedMax. */
  batches: RememberedBatch[];
}

export class PartitionSequences {
  readonly topic: string;
  readonly partition: number;
  readonly topicCreatedAtMs: number;
  readonly producers = new Map<number, ProducerOnPartition>();
  /** Changed since the last sequence snapshot. */
  dirty = false;
  /** A sequence snapshot of this partition is durable: idempotent batches may be appended. */
  marked: boolean;
  /** The snapshot that marks it, while being written. */
  marking: Promise<void> | null = null;
  /** Producers without state here take any sequence (the partition's state could not be rebuilt). */
  readonly lenient: boolean;
  /**
   * Cluster mode: the partition's replication role (`Partition.replica`) this state was rebuilt
   * for; a new leadership has a new role object, and the state is rebuilt from the log again.
   */
  leadership: object | null = null;

  constructor(topic: string, partition: number, topicCreatedAtMs: number, marked: boolean, lenient = false) {
    this.topic = topic;
    this.partition = partition;
    this.topicCreatedAtMs = topicCreatedAtMs;
    this.marked = marked;
    this.lenient = lenient;
  }

  /**
   * The remembered batch a batch repeats, or null when it is to be appended. Throws
   * OUT_OF_ORDER_SEQUENCE. The epoch has been checked against the producer's current one.
   */
  check(
    producerId: number,
    epoch: number,
    baseSequence: number,
    lastSequence: number,
  ): RememberedBatch | null {
    const state = this.producers.get(producerId);
    if (state === undefined || state.epoch !== epoch) {
      if (baseSequence === 0 || (state === undefined && this.lenient)) return null;
      throw new OutOfOrderSequenceError(
        `${this.where(producerId, epoch)}: first batch must have sequence 0, got ${baseSequence}`,
      );
    }
    for (const batch of state.batches) {
      if (batch.baseSequence === baseSequence) {
        if (batch.lastSequence === lastSequence) return batch;
        break;
      }
    }
    if (state.lastSequence === -1 || baseSequence === nextSequence(state.lastSequence)) return null;
    throw new OutOfOrderSequenceError(
      `${this.where(producerId, epoch)}: expected sequence ${nextSequence(state.lastSequence)}, got ${baseSequence}..${lastSequence}` +
        ' (a retry older than the last 5 batches, or a gap: an earlier batch was not written)',
    );
  }

  /** Records an appended batch (at run time and when reading the log back). */
  record(producerId: number, epoch: number, batch: RememberedBatch): void {
    let state = this.producers.get(producerId);
    if (state === undefined || state.epoch !== epoch) {
      state = { epoch, lastSequence: -1, batches: [] };
      this.producers.set(producerId, state);
    }
    state.lastSequence = batch.lastSequence;
    state.batches.push(batch);
    if (state.batches.length > producerBatchesRememberedMax) state.batches.shift();
    this.dirty = true;
  }

  /** Forgets the last batch recorded for `producerId` (its append failed before writing). */
  unrecord(producerId: number, batch: RememberedBatch, before: ProducerOnPartition | undefined): void {
    const state = this.producers.get(producerId);
    if (state === undefined || state.batches[state.batches.length - 1] !== batch) return;
    if (before === undefined) this.producers.delete(producerId);
    else this.producers.set(producerId, before);
  }

  /** Everything below `upTo` as a snapshot value (batches still being appended lie above it). */
  snapshot(upTo: number): SequenceSnapshot {
    const producers: SnapshotProducer[] = [];
    for (const [producerId, state] of this.producers) {
      const flat: number[] = [];
      let last = state.lastSequence;
      for (const batch of state.batches) {
        if (batch.lastOffset >= upTo) {
          // Recorded after upTo was read (not the case when both are taken in one turn): keep it out.
          last = flat.length > 0 ? flat[flat.length - 3]! : -1;
          break;
        }
        flat.push(batch.baseSequence, batch.lastSequence, batch.baseOffset, batch.lastOffset);
      }
      producers.push([producerId, state.epoch, last, flat]);
    }
    return { c: this.topicCreatedAtMs, u: upTo, p: producers };
  }

  /**
   * Loads a snapshot, keeping only producers `known` holds and batches below `logEnd`: the snapshot
   * may cover batches that were appended but not on disk when the machine went down (never
   * acknowledged under `always`); the producer's last sequence is then the one before the first
   * batch lost, so a resend of that batch is taken again.
   */
  restore(
    snapshot: SequenceSnapshot,
    logEnd: number,
    known: (producerId: number) => number | undefined,
  ): void {
    for (const [producerId, epoch, last, flat] of snapshot.p) {
      if (known(producerId) === undefined) continue;
      const batches: RememberedBatch[] = [];
      let lastSequence = last;
      for (let i = 0; i + 3 < flat.length; i += 4) {
        if (flat[i + 3]! >= logEnd) {
          lastSequence = previousSequence(flat[i]!);
          break;
        }
        batches.push({
          baseSequence: flat[i]!,
          lastSequence: flat[i + 1]!,
          baseOffset: flat[i + 2]!,
          lastOffset: flat[i + 3]!,
          result: null,
        });
      }
      // Lost from sequence 0 on: nothing of this epoch is left, its next batch starts at 0 again.
      if (lastSequence === -1 && batches.length === 0 && last !== -1) continue;
      this.producers.set(producerId, { epoch, lastSequence, batches });
    }
  }

  /**
   * Reads the batch headers of `log` from `from` (a batch boundary) to its end and records every
   * idempotent batch of a producer `known` holds (a batch of another epoch than the one recorded
   * starts that epoch's state). Returns the number of batches read.
   */
  replay(log: LogStore, from: number, known: (producerId: number) => number | undefined): number {
    let offset = from;
    let batches = 0;
    for (;;) {
      const step = this.replaySlice(log, offset, Number.POSITIVE_INFINITY, known);
      batches += step.batches;
      if (step.next <= offset || step.next >= log.logEndOffset) return batches;
      offset = step.next;
    }
  }

  /**
   * `replay` of about `batchesMax` batch headers (whole reads of the log: it may go past it by one
   * read's batches): from `from` (or the log start, if the log no longer has it) towards the
   * log's end now. Returns the batches read and the offset to go on from (at or past the end: done).
   */
  replaySlice(
    log: LogStore,
    from: number,
    batchesMax: number,
    known: (producerId: number) => number | undefined,
  ): { batches: number; next: number } {
    const start = Math.max(from, log.logStartOffset);
    let offset = start;
    const end = log.logEndOffset;
    const readBytes = batchesMax === Number.POSITIVE_INFINITY ? replayReadBytes : sliceReadBytes;
    let batches = 0;
    while (offset < end && batches < batchesMax) {
      const read = log.read(offset, readBytes, end);
      if (read.batchCount === 0) return { batches, next: end };
      const bytes = read.bytes;
      let position = 0;
      for (let i = 0; i < read.batchCount; i++) {
        const length = batchLengthAt(bytes, position);
        const producerId = readInt64LE(bytes, position + BatchHeader.producerId);
        if (producerId >= 0 && known(producerId) !== undefined) {
          const baseOffset = readInt64LE(bytes, position + BatchHeader.baseOffset);
          const count = batchRecordCountAt(bytes, position);
          if (baseOffset >= start) {
            const view = new DataView(bytes.buffer, bytes.byteOffset + position, BatchHeader.size);
            const epoch = view.getInt16(BatchHeader.producerEpoch, true);
            const baseSequence = view.getInt32(BatchHeader.baseSequence, true);
            this.record(producerId, epoch, {
              baseSequence,
              lastSequence: lastSequenceOf(baseSequence, count),
              baseOffset,
              lastOffset: baseOffset + count - 1,
              result: null,
            });
          }
        }
        batches++;
        position += length;
      }
      if (read.nextOffset <= offset) return { batches, next: end };
      offset = read.nextOffset;
    }
    return { batches, next: offset };
  }

  /**
   * Keeps the state of the `max` producers whose last remembered batch is the newest (a partition
   * rebuilt from a long log may have seen more producers than a broker holds).
   */
  keepNewest(max: number): void {
    if (this.producers.size <= max) return;
    const lastOffset = (state: ProducerOnPartition): number =>
      state.batches[state.batches.length - 1]?.lastOffset ?? -1;
    const byAge = [...this.producers.entries()].sort((a, b) => lastOffset(a[1]) - lastOffset(b[1]));
    for (const [producerId] of byAge.slice(0, byAge.length - max)) this.producers.delete(producerId);
  }

  /** Drops a producer's state (expired or evicted). */
  forget(producerId: number): void {
    if (this.producers.delete(producerId)) this.dirty = true;
  }

  private where(producerId: number, epoch: number): string {
    return `producer ${producerId} epoch ${epoch} on ${this.topic}/${this.partition}`;
  }
}
