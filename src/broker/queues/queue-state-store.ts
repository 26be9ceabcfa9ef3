/**
 * The internal state log `__queue_state` (docs/STATE.md): partition 0 of an internal topic at
 * `dataDir/topics/__queue_state/0/`, durability `always`, holding the QueueStateMachine
 * (queue-state.ts): the ack state of every queue partition. Opened (and recovered: newest snapshot
 * plus the changes after it) with the broker, served read-only as an internal topic, closed last.
 * A missing or empty log means no queue group has consumed yet.
 */
import type { Clock } from '../../clock.js';
import { StateLog } from '../state/state-log.js';
import {
  openStateLogPartition,
  type StateLogPartition,
  type StateLogTuning,
  stateLogSnapshotBytesMinDefault,
} from '../state/state-log-partition.js';
import { type QueueEntry, QueueStateMachine, queueStateCodec } from './queue-state.js';

export const queueStateTopicName = '__queue_state';

export interface QueueStateStoreOptions {
  dataDir: string;
  tuning?: StateLogTuning;
  checkpointIntervalMs?: number;
  clock?: Clock;
}

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
    const partition = await openStateLogPartition({
      dataDir: options.dataDir,
      name: queueStateTopicName,
      ...(options.tuning !== undefined ? { tuning: options.tuning } : {}),
      ...(options.clock !== undefined ? { clock: options.clock } : {}),
      ...(options.checkpointIntervalMs !== undefined
        ? { checkpointIntervalMs: options.checkpointIntervalMs }
        : {}),
    });
    try {
      const machine = new QueueStateMachine();
      const clock = options.clock;
      const state = StateLog.open({
        name: `${queueStateTopicName}/0`,
        log: partition.log,
        machine,
        codec: queueStateCodec,
        snapshotBytesMin: options.tuning?.snapshotBytesMin ?? stateLogSnapshotBytesMinDefault,
        ...(clock !== undefined ? { nowMs: () => clock.nowMs() } : {}),
      });
      return new QueueStateStore(partition, state, machine);
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
