/**
 * The leader epoch history of one partition replica (Kafka's leader epoch cache, KIP-101/KIP-279):
 * for each leader epoch the offset at which its leader started appending. A leader records its own
 * epoch at its log end when it becomes leader; a follower records the entries the leader sends with
 * each REPLICA_FETCH as it appends (a batch header has no room for the epoch: every byte after
 * baseOffset and batchLength is inside the CRC, so the history travels beside the batches). The
 * history is what a replica rejoining after a leader change compares with the new leader's to find
 * where their logs diverge (`endOffsetFor`), never the high watermark.
 *
 * Durable in this broker's local state log `__leader_epochs` (replica-state-store.ts: key
 * `epochs/<topic>/<partition>`, the whole entry list, with the creation time of the topic's local
 * incarnation), recovered by snapshot + replay with the rest of the replica state. Each change
 * (`assign`, `truncateFromEnd`) applies in memory at once and returns the commit of the new list:
 * the callers await it where the order with the log matters (docs/CLUSTER-REPLICATION.md, "Leader
 * epochs and truncation"):
 *   - a leader's epoch is durable before its first produce is admitted, a follower's new epoch before
 *     the first batch of that epoch is appended: after a crash the log holds no record of an epoch
 *     the recovered history lacks (as with the side file, written synchronously);
 *   - a follower's truncation commits the shortened history first, then truncates the log: a crash
 *     between them leaves a history that ends earlier than the log, which only makes the next
 *     truncation cut more (the leader sends it again), never one naming an epoch whose records were
 *     cut.
 * Commits of one history reach the log in call order (one state log, one queue), so the latest list
 * written is the one recovered.
 *
 * Format before session 6: the file `leader-epoch.checkpoint` in the partition's directory
 * (CheckpointFile JSON `{"version":1,"entries":[[epoch,startOffset],...]}` + CRC32C). `open` migrates
 * it once: the entries are committed to the state log (durable: it syncs every commit), then the file
 * is deleted and the directory synced. A crash before the commit leaves the file (migrated again); a
 * crash after it leaves both, and the state log's entry wins (the file is deleted then). A damaged
 * file with no entry in the state log is an error, as before.
 *
 * Invariants: epochs strictly increase, start offsets never decrease; at most leaderEpochEntriesMax
 * entries (the oldest go first). At open, entries starting at or past the log end are dropped (no
 * record of them is in the log: a crash took the tail, the epoch wrote nothing, or the log was emptied
 * by a repair), and an entry of another incarnation of the topic (deleted and created again under the
 * same name) is ignored.
 */
import { existsSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError } from '../../errors.js';
import { leaderEpochEntriesMax } from '../../limits.js';
import { CheckpointFile, fsyncDirectorySync } from '../../storage/checkpoint-file.js';

/** The side file of the format before session 6 (migrated into `__leader_epochs` at open). */
export const leaderEpochFileName = 'leader-epoch.checkpoint';

/** Where a history is kept: the replica state store, or a test's stand-in. */
export interface LeaderEpochStore {
  /** The stored entries of this partition's incarnation `createdAtMs`, or undefined. */
  epochHistoryOf(topic: string, partition: number, createdAtMs: number): Array<[number, number]> | undefined;
  /** Stores `entries` as the whole history; resolves once durable, rejects when not written. */
  putEpochHistory(
    topic: string,
    partition: number,
    createdAtMs: number,
    entries: Array<[number, number]>,
  ): Promise<void>;
}

export interface LeaderEpochHistoryOpenOptions {
  store: LeaderEpochStore;
  topic: string;
  partition: number;
  /** Creation time of the topic's local incarnation (Topic.createdAtMs). */
  createdAtMs: number;
  /** The partition's directory (where a side file of the old format may be). */
  directory: string;
  logEndOffset: number;
}

export interface LeaderEpochEntry {
  epoch: number;
  startOffset: number;
}

interface LeaderEpochFile {
  version: 1;
  entries: Array<[number, number]>;
}

const resolved: Promise<void> = Promise.resolve();

/** Answer of `endOffsetFor`: both -1 when no epoch of the history is <= the one asked about. */
export interface EpochEndOffset {
  epoch: number;
  endOffset: number;
}

export class LeaderEpochHistory {
  private readonly persistTo: ((entries: Array<[number, number]>) => Promise<void>) | null;
  private readonly list: LeaderEpochEntry[];

  private constructor(
    persistTo: ((entries: Array<[number, number]>) => Promise<void>) | null,
    entries: LeaderEpochEntry[],
  ) {
    this.persistTo = persistTo;
    this.list = entries;
  }

  /** An empty history kept in memory only (tests of the lookup rules). */
  static inMemory(): LeaderEpochHistory {
    return new LeaderEpochHistory(null, []);
  }

  /**
   * Reads the history of a partition from `options.store` (migrating a side file of the old format,
   * see the header); entries starting at or past `logEndOffset` are dropped (and that is committed). A
   * damaged side file with nothing in the store is an error (the caller decides); neither: empty.
   */
  static async open(options: LeaderEpochHistoryOpenOptions): Promise<LeaderEpochHistory> {
    const { store, topic, partition, createdAtMs, directory, logEndOffset } = options;
    const put = (entries: Array<[number, number]>): Promise<void> =>
      store.putEpochHistory(topic, partition, createdAtMs, entries);
    const file = new CheckpointFile<LeaderEpochFile>(join(directory, leaderEpochFileName));
    const stored = store.epochHistoryOf(topic, partition, createdAtMs);
    const read = file.read();
    let entries: Array<[number, number]> = [];
    if (stored !== undefined) entries = stored;
    else if (read.status === 'corrupt') {
      throw new InvalidArgumentError(`leader epoch history ${file.path} is damaged: ${read.reason}`);
    } else if (read.status === 'ok') {
      entries = read.value.entries;
      // Durable in the state log before the file goes.
      await put(entries);
    }
    if (read.status !== 'missing' || existsSync(`${file.path}.tmp`)) {
      for (const path of [file.path, `${file.path}.tmp`]) {
        try {
          unlinkSync(path);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        }
      }
      fsyncDirectorySync(directory);
    }
    const history = new LeaderEpochHistory(
      put,
      entries.map(([epoch, startOffset]) => ({ epoch, startOffset })),
    );
    // An epoch starting at or past the log end has no record in this log (Kafka's truncateFromEnd at
    // load): a crash took the tail, or the epoch began and wrote nothing, or the log was emptied.
    if (history.list.some((entry) => entry.startOffset >= logEndOffset)) {
      await history.truncateFromEnd(logEndOffset);
    }
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
   * stale request), thrown at once. An entry at the same start offset as the latest is replaced
   * (that epoch wrote nothing). Returns the commit of the new history (resolved at once when nothing
   * changed); the history in memory has changed already.
   */
  assign(epoch: number, startOffset: number): Promise<void> {
    const latest = this.list[this.list.length - 1];
    if (latest !== undefined) {
      if (epoch === latest.epoch) return resolved;
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
    return this.persist();
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

  /**
   * Before the log is truncated to `offset`: drops the entries starting at or after it. Returns the
   * commit (resolved at once when nothing changed).
   */
  truncateFromEnd(offset: number): Promise<void> {
    const before = this.list.length;
    while (this.list.length > 0 && this.list[this.list.length - 1]!.startOffset >= offset) this.list.pop();
    return this.list.length === before ? resolved : this.persist();
  }

  private persist(): Promise<void> {
    if (this.persistTo === null) return resolved;
    return this.persistTo(this.list.map((entry) => [entry.epoch, entry.startOffset]));
  }
}
