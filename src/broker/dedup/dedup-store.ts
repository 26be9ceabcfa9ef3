/**
 * The internal state log `__dedup` (docs/STATE.md, "Msg-id dedup"): partition 0 of an internal
 * topic at `dataDir/topics/__dedup/0/`, durability `always`, holding the DedupState (dedup-state.ts):
 * the msgIds recorded per dedup topic within its window. Opened (and recovered: newest snapshot plus
 * the changes after it) with the broker, served read-only as an internal topic, closed last. A
 * missing or empty log means no msgId was recorded yet.
 */
import type { Clock } from '../../clock.js';
import { StateLog } from '../state/state-log.js';
import {
  openStateLogPartition,
  type StateLogPartition,
  type StateLogTuning,
  stateLogSnapshotBytesMinDefault,
} from '../state/state-log-partition.js';
import { type DedupEntry, DedupState, dedupCodec } from './dedup-state.js';

export const dedupTopicName = '__dedup';

export interface DedupStoreOptions {
  dataDir: string;
  tuning?: StateLogTuning;
  checkpointIntervalMs?: number;
  clock?: Clock;
}

export class DedupStore {
  readonly partition: StateLogPartition;
  readonly state: StateLog<DedupEntry>;
  readonly machine: DedupState;

  private constructor(partition: StateLogPartition, state: StateLog<DedupEntry>, machine: DedupState) {
    this.partition = partition;
    this.state = state;
    this.machine = machine;
  }

  static async open(options: DedupStoreOptions): Promise<DedupStore> {
    const partition = await openStateLogPartition({
      dataDir: options.dataDir,
      name: dedupTopicName,
      ...(options.tuning !== undefined ? { tuning: options.tuning } : {}),
      ...(options.clock !== undefined ? { clock: options.clock } : {}),
      ...(options.checkpointIntervalMs !== undefined
        ? { checkpointIntervalMs: options.checkpointIntervalMs }
        : {}),
    });
    try {
      const machine = new DedupState();
      const clock = options.clock;
      const state = StateLog.open({
        name: `${dedupTopicName}/0`,
        log: partition.log,
        machine,
        codec: dedupCodec,
        snapshotBytesMin: options.tuning?.snapshotBytesMin ?? stateLogSnapshotBytesMinDefault,
        ...(clock !== undefined ? { nowMs: () => clock.nowMs() } : {}),
      });
      return new DedupStore(partition, state, machine);
    } catch (error) {
      await partition.log.close().catch(() => undefined);
      throw error;
    }
  }

  /** Finishes what is in flight, then closes the log. */
  async close(): Promise<void> {
    await this.state.close();
    await this.partition.log.close();
  }
}
