/**
 * This broker's own replica state, kept in the internal state log `__leader_epochs` (the name
 * reserved for it in session 4; docs/CLUSTER-REPLICATION.md "Where the replica state lives"):
 * partition 0 of a local internal topic at `dataDir/topics/__leader_epochs/0/`, durability
 * `always`, a key -> value state machine (src/broker/state/key-value-state.ts) recovered by snapshot
 * + replay like every state log. It is not a cluster topic and is never replicated: what it holds is
 * each replica's account of its own partitions.
 *
 * Holds now: per replicated partition (key `<topic>/<partition>`) the high watermark this replica
 * last knew (Kafka's replication-offset-checkpoint), written every `checkpointIntervalMs` by the
 * replica manager when it changed and when a role stops. A restarted broker starts each partition's
 * HW from it (capped by its log end) instead of the log start, so a restarted leader shows its
 * consumers what was already replicated without waiting for its followers' first fetch. A record is
 * a lower bound of what every ISR member had when it was written, so starting from it never shows
 * consumers more than the ISR had. The log missing or empty: every HW starts at the log start (the
 * behaviour before checkpoints, safe).
 *
 * Holds too, per replicated partition (key `epochs/<topic>/<partition>`; topic names have no `/`),
 * its leader epoch history (leader-epoch-history.ts): the whole entry list `[[epoch, startOffset],
 * ...]` (at most leaderEpochEntriesMax) and the creation time of the topic's local incarnation, so
 * the history of a topic deleted and created again is not taken for the new one's. Written only at
 * leader changes and truncations; each write is awaited by the role that made it. A topic deleted
 * on this broker loses both keys (`forgetTopic`).
 *
 * Writes are bounded by the state log's queued-bytes limit (a refused checkpoint is retried at the
 * next interval); one entry per partition whose HW changed, per interval.
 */
import {
  type KeyValueEntry,
  KeyValueState,
  keyValueCodec,
  msgpackValues,
} from '../../broker/state/key-value-state.js';
import type { StateLog, StateLogStats } from '../../broker/state/state-log.js';
import {
  openStateLog,
  type StateLogPartition,
  type StateLogStoreOptions,
} from '../../broker/state/state-log-partition.js';
import { leaderEpochEntriesMax } from '../../limits.js';
import type { LeaderEpochStore } from './leader-epoch-history.js';

export const replicaStateTopicName = '__leader_epochs';

/** A checkpointed HW, or a leader epoch history (`epochs/` keys). */
type ReplicaStateValue = { highWatermark: number } | { createdAtMs: number; epochs: Array<[number, number]> };

const isOffset = (value: unknown): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

function validate(value: unknown): ReplicaStateValue {
  const fields = (value ?? {}) as { highWatermark?: unknown; createdAtMs?: unknown; epochs?: unknown };
  if (isOffset(fields.highWatermark)) return { highWatermark: fields.highWatermark };
  const epochs = fields.epochs;
  if (
    isOffset(fields.createdAtMs) &&
    Array.isArray(epochs) &&
    epochs.length <= leaderEpochEntriesMax &&
    epochs.every((entry) => Array.isArray(entry) && entry.length === 2 && entry.every(isOffset))
  ) {
    return { createdAtMs: fields.createdAtMs, epochs: epochs as Array<[number, number]> };
  }
  throw new Error(`bad replica state value ${JSON.stringify(value)}`);
}

const replicaStateCodec = keyValueCodec(msgpackValues(validate));

const keyOf = (topic: string, partition: number): string => `${topic}/${partition}`;
const epochsKeyOf = (topic: string, partition: number): string => `epochs/${topic}/${partition}`;

export class ReplicaStateStore implements LeaderEpochStore {
  /** The state log's partition (served as the internal topic `__leader_epochs`). */
  readonly partition: StateLogPartition;
  private readonly state: StateLog<KeyValueEntry<ReplicaStateValue>>;
  private readonly machine: KeyValueState<ReplicaStateValue>;
  /** The HW last committed (or being committed) per key: unchanged ones are not written again. */
  private readonly written = new Map<string, number>();

  private constructor(
    partition: StateLogPartition,
    state: StateLog<KeyValueEntry<ReplicaStateValue>>,
    machine: KeyValueState<ReplicaStateValue>,
  ) {
    this.partition = partition;
    this.state = state;
    this.machine = machine;
    for (const [key, value] of machine.view()) {
      if ('highWatermark' in value) this.written.set(key, value.highWatermark);
    }
  }

  static async open(options: StateLogStoreOptions): Promise<ReplicaStateStore> {
    const machine = new KeyValueState<ReplicaStateValue>();
    const { partition, state } = await openStateLog(
      options,
      replicaStateTopicName,
      machine,
      replicaStateCodec,
    );
    return new ReplicaStateStore(partition, state, machine);
  }

  /** What the state log did since it was opened (snapshots written, log start). */
  get stats(): StateLogStats {
    return this.state.stats;
  }

  /** The HW last checkpointed for this partition, or undefined. */
  highWatermarkOf(topic: string, partition: number): number | undefined {
    const value = this.machine.get(keyOf(topic, partition));
    return value !== undefined && 'highWatermark' in value ? value.highWatermark : undefined;
  }

  epochHistoryOf(topic: string, partition: number, createdAtMs: number): Array<[number, number]> | undefined {
    const value = this.machine.get(epochsKeyOf(topic, partition));
    if (value === undefined || !('epochs' in value) || value.createdAtMs !== createdAtMs) return undefined;
    return value.epochs.map(([epoch, startOffset]) => [epoch, startOffset]);
  }

  async putEpochHistory(
    topic: string,
    partition: number,
    createdAtMs: number,
    entries: Array<[number, number]>,
  ): Promise<void> {
    await this.state.commit({
      op: 'put',
      key: epochsKeyOf(topic, partition),
      value: { createdAtMs, epochs: entries },
    });
  }

  /** A topic deleted on this broker: drops the HW and history of each of its partitions. */
  async forgetTopic(topic: string, partitionCount: number): Promise<void> {
    const commits: Array<Promise<number>> = [];
    for (let partition = 0; partition < partitionCount; partition++) {
      for (const key of [keyOf(topic, partition), epochsKeyOf(topic, partition)]) {
        this.written.delete(key);
        if (this.machine.get(key) !== undefined) commits.push(this.state.commit({ op: 'delete', key }));
      }
    }
    await Promise.all(commits);
  }

  /** Records `highWatermark` unless it is what was recorded last; rejects when the log refused it. */
  async checkpoint(topic: string, partition: number, highWatermark: number): Promise<void> {
    const key = keyOf(topic, partition);
    if (this.written.get(key) === highWatermark) return;
    this.written.set(key, highWatermark);
    try {
      await this.state.commit({ op: 'put', key, value: { highWatermark } });
    } catch (error) {
      // Written again at the next checkpoint.
      if (this.written.get(key) === highWatermark) this.written.delete(key);
      throw error;
    }
  }

  /** Finishes what is in flight, then closes the log. */
  async close(): Promise<void> {
    await this.state.close();
    await this.partition.log.close();
  }
}
