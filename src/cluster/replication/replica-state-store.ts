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
 * Writes are bounded by the state log's queued-bytes limit (a refused checkpoint is retried at the
 * next interval); one entry per partition whose HW changed, per interval.
 */
import {
  type KeyValueEntry,
  KeyValueState,
  keyValueCodec,
  msgpackValues,
} from '../../broker/state/key-value-state.js';
import type { StateLog } from '../../broker/state/state-log.js';
import {
  openStateLog,
  type StateLogPartition,
  type StateLogStoreOptions,
} from '../../broker/state/state-log-partition.js';

export const replicaStateTopicName = '__leader_epochs';

interface ReplicaStateValue {
  highWatermark: number;
}

function validate(value: unknown): ReplicaStateValue {
  const highWatermark = (value as { highWatermark?: unknown } | null)?.highWatermark;
  if (typeof highWatermark !== 'number' || !Number.isSafeInteger(highWatermark) || highWatermark < 0) {
    throw new Error(`bad replica state value ${JSON.stringify(value)}`);
  }
  return { highWatermark };
}

const replicaStateCodec = keyValueCodec(msgpackValues(validate));

const keyOf = (topic: string, partition: number): string => `${topic}/${partition}`;

export class ReplicaStateStore {
  private readonly partition: StateLogPartition;
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
    for (const [key, value] of machine.view()) this.written.set(key, value.highWatermark);
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

  /** The HW last checkpointed for this partition, or undefined. */
  highWatermarkOf(topic: string, partition: number): number | undefined {
    return this.machine.get(keyOf(topic, partition))?.highWatermark;
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
