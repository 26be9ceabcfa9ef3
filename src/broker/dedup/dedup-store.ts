/**
 * The internal state log `__dedup` (docs/STATE.md, "Msg-id dedup"): partition 0 of an internal
 * topic at `dataDir/topics/__dedup/0/`, durability `always`, holding the DedupState (dedup-state.ts):
 * the msgIds recorded per dedup topic within its window. Opened (and recovered: newest snapshot plus
 * the changes after it) with the broker, served read-only as an internal topic, closed last. A
 * missing or empty log means no msgId was recorded yet.
 */
import type { StateLog } from '../state/state-log.js';
import {
  openStateLog,
  type StateLogPartition,
  type StateLogStoreOptions,
} from '../state/state-log-partition.js';
import { type DedupEntry, DedupState, dedupCodec } from './dedup-state.js';

export const dedupTopicName = '__dedup';

export type DedupStoreOptions = StateLogStoreOptions;

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
    const machine = new DedupState();
    const { partition, state } = await openStateLog(options, dedupTopicName, machine, dedupCodec);
    return new DedupStore(partition, state, machine);
  }

  /** Finishes what is in flight, then closes the log. */
  async close(): Promise<void> {
    await this.state.close();
    await this.partition.log.close();
  }
}
