/**
 * The internal state log `__queue_state` (docs/STATE.md): partition 0 of an internal topic at
 * `dataDir/topics/__queue_state/0/`, durability `always`, holding the QueueStateMachine
 * (queue-state.ts): the ack state of every queue partition. Opened (and recovered: newest snapshot
 * plus the changes after it) with the broker, served read-only as an internal topic, closed last.
 * A missing or empty log means no queue group has consumed yet.
 */
import type { StateLog } from '../state/state-log.js';
import {
  openStateLog,
  type StateLogPartition,
  type StateLogStoreOptions,
} from '../state/state-log-partition.js';
import { type QueueEntry, QueueStateMachine, queueStateCodec } from './queue-state.js';

export const queueStateTopicName = '__queue_state';

export type QueueStateStoreOptions = StateLogStoreOptions;

export class QueueStateStore {
  readonly partition: StateLogPartition;
  readonly state: StateLog<QueueEntry>;
  readonly machine: QueueStateMachine;

  private constructor(partition: StateLogPartition, state: StateLog<QueueEntry>, machine: QueueStateMachine) {
    this.partition = partition;
    this.state = state;
    this.machine = machine;
  }

  static async open(options: QueueStateStoreOptions): Promise<QueueStateStore> {
    const machine = new QueueStateMachine();
    const { partition, state } = await openStateLog(options, queueStateTopicName, machine, queueStateCodec);
    return new QueueStateStore(partition, state, machine);
  }

  /** Finishes what is in flight, then closes the log. */
  async close(): Promise<void> {
    await this.state.close();
    await this.partition.log.close();
  }
}
