/**
 * The leader epoch history of one partition replica (Kafka's leader epoch cache, KIP-101/KIP-279):
 * for each leader epoch the offset at which its leader started appending. A leader records its own
 * epoch at its log end when it becomes leader; a follower records the entries the leader sends with
 * each REPLICA_FETCH as it appends (a batch header has no room for the epoch: every byte after
 * baseOffset and batchLength is inside the CRC, so the history travels beside the batches). The
 * history is what a replica rejoining after a leader change compares with the new leader's to find
 * where their logs diverge (`endOffsetFor`), never the high watermark.
 *
 * Local, per replica, durable with the partition: file `leader-epoch.checkpoint` in the partition's
 * directory (a CheckpointFile: JSON `{"version":1,"entries":[[epoch,startOffset],...]}`, CRC32C,
 * tmp + fsync + rename + fsync dir), rewritten at each change, which happens only at leader changes
 * and truncations. Not a state log: a state log is a partition, and partitions replicate, while this
 * history is each replica's own account of its own log and differs between replicas exactly when it
 * matters (divergent tails). It lives and dies with the partition's directory (topic deletion, repair).
 *
 * Invariants: epochs strictly increase, start offsets never decrease; at most leaderEpochEntriesMax
 * entries (the oldest go first). At open, entries starting past the log end (the log lost a tail in
 * a crash) are dropped.
 */
import { join } from 'node:path';
import { InvalidArgumentError } from '../../errors.js';
import { leaderEpochEntriesMax } from '../../limits.js';
import { CheckpointFile } from '../../storage/checkpoint-file.js';

export const leaderEpochFileName = 'leader-epoch.checkpoint';

export interface LeaderEpochEntry {
  epoch: number;
  startOffset: number;
}

interface LeaderEpochFile {
  version: 1;
  entries: Array<[number, number]>;
}

/** Answer of `endOffsetFor`: both -1 when no epoch of the history is <= the one asked about. */
export interface EpochEndOffset {
  epoch: number;
  endOffset: number;
}

export class LeaderEpochHistory {
  private readonly file: CheckpointFile<LeaderEpochFile> | null;
  private readonly list: LeaderEpochEntry[];

  private constructor(file: CheckpointFile<LeaderEpochFile> | null, entries: LeaderEpochEntry[]) {
    this.file = file;
    this.list = entries;
  }

  /** An empty history kept in memory only (tests of the lookup rules). */
  static inMemory(): LeaderEpochHistory {
    return new LeaderEpochHistory(null, []);
  }

  /**
   * Reads the history of the partition whose directory is `directory` and whose log ends at
   * `logEndOffset`. A damaged file is an error (CORRUPT_LOG would hide nothing: the caller decides);
   * a missing one is an empty history.
   */
  static open(directory: string, logEndOffset: number): LeaderEpochHistory {
    const file = new CheckpointFile<LeaderEpochFile>(join(directory, leaderEpochFileName));
    const read = file.read();
    let entries: LeaderEpochEntry[] = [];
    if (read.status === 'corrupt') {
      throw new InvalidArgumentError(`leader epoch history ${file.path} is damaged: ${read.reason}`);
    }
    if (read.status === 'ok') {
      entries = read.value.entries.map(([epoch, startOffset]) => ({ epoch, startOffset }));
    }
    const history = new LeaderEpochHistory(file, entries);
    if (entries.some((entry) => entry.startOffset > logEndOffset)) history.truncateFromEnd(logEndOffset + 1);
    return history;
  }

  get entries(): readonly LeaderEpochEntry[] {
    return this.list;
  }

  /** The newest epoch, -1 when the history is empty. */
  get latestEpoch(): number {
    return this.list.length === 0 ? -1 : this.list[this.list.length - 1]!.epoch;
  }

  /**
   * Records that epoch `epoch` starts at `startOffset`. The latest epoch again: nothing. An older
   * epoch, or a start offset before the latest entry's: INVALID_ARGUMENT (the caller's bug or a
   * stale request). An entry at the same start offset as the latest is replaced (that epoch wrote
   * nothing).
   */
  assign(epoch: number, startOffset: number): void {
    const latest = this.list[this.list.length - 1];
    if (latest !== undefined) {
      if (epoch === latest.epoch) return;
      if (epoch < latest.epoch) {
        throw new InvalidArgumentError(`leader epoch ${epoch} is older than the latest ${latest.epoch}`);
      }
      if (startOffset < latest.startOffset) {
        throw new InvalidArgumentError(
          `epoch ${epoch} cannot start at ${startOffset}, before epoch ${latest.epoch}'s start ${latest.startOffset}`,
        );
      }
      if (startOffset === latest.startOffset) this.list.pop();
    }
    this.list.push({ epoch, startOffset });
    if (this.list.length > leaderEpochEntriesMax)
      this.list.splice(0, this.list.length - leaderEpochEntriesMax);
    this.persist();
  }

  /**
   * KIP-279: the largest epoch <= `epoch` and where it ends: the start offset of the next epoch of
   * the history, or `logEndOffset` when it is the latest. {-1, -1} when every epoch is newer (or the
   * history is empty).
   */
  endOffsetFor(epoch: number, logEndOffset: number): EpochEndOffset {
    let index = -1;
    for (let i = this.list.length - 1; i >= 0; i--) {
      if (this.list[i]!.epoch <= epoch) {
        index = i;
        break;
      }
    }
    if (index < 0) return { epoch: -1, endOffset: -1 };
    const next = this.list[index + 1];
    return {
      epoch: this.list[index]!.epoch,
      endOffset: next === undefined ? logEndOffset : next.startOffset,
    };
  }

  /** The epoch in force at `offset` (-1: before the first entry). */
  epochAt(offset: number): number {
    let epoch = -1;
    for (const entry of this.list) {
      if (entry.startOffset > offset) break;
      epoch = entry.epoch;
    }
    return epoch;
  }

  /** Entries covering [from, to): the one in force at `from` and every later one starting before `to`. */
  entriesCovering(from: number, to: number): Array<[number, number]> {
    const covering: Array<[number, number]> = [];
    for (let i = 0; i < this.list.length; i++) {
      const entry = this.list[i]!;
      const next = this.list[i + 1];
      if (next !== undefined && next.startOffset <= from) continue;
      if (entry.startOffset >= to && covering.length > 0) break;
      covering.push([entry.epoch, entry.startOffset]);
    }
    return covering;
  }

  /** After the log was truncated to `offset`: drops the entries starting at or after it. */
  truncateFromEnd(offset: number): void {
    const before = this.list.length;
    while (this.list.length > 0 && this.list[this.list.length - 1]!.startOffset >= offset) this.list.pop();
    if (this.list.length !== before) this.persist();
  }

  private persist(): void {
    this.file?.writeSync({ version: 1, entries: this.list.map((entry) => [entry.epoch, entry.startOffset]) });
  }
}
