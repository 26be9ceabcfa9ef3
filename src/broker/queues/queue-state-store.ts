/**
 * The internal state log `__queue_state` (docs/STATE.md): partition 0 of an internal topic at
 * `dataDir/topics/__queue_state/0/`, durability `always`, holding the QueueStateMachine
 * (queue-state.ts): the ack state of every queue partition. Opened (and recovered: newest snapshot
 * plus the changes after it) with the broker, served read-only as an internal topic, closed last.
 * A missing or empty log means no queue group has consumed yet.
 *
 * In a cluster (docs/CLUSTER.md "Built: shared and key_shared queues") the queue service runs only
 * on the leader of `__queue_state`: `detach` stops writing at once when it stops leading, `reopen`
 * recovers the state again from the log as replication left it when it leads again.
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
  private stateLog: StateLog<QueueEntry>;
  private stateMachine: QueueStateMachine;

  private constructor(partition: StateLogPartition, state: StateLog<QueueEntry>, machine: QueueStateMachine) {
    this.partition = partition;
    this.stateLog = state;
    this.stateMachine = machine;
  }

  static async open(options: QueueStateStoreOptions): Promise<QueueStateStore> {
    const machine = new QueueStateMachine();
    const { partition, state } = await openStateLog(options, queueStateTopicName, machine, queueStateCodec);
    return new QueueStateStore(partition, state, machine);
  }

  /** The running state log (a new one after `reopen`). */
  get state(): StateLog<QueueEntry> {
    return this.stateLog;
  }

  /** The machine of the running state log (a new one after `reopen`). */
  get machine(): QueueStateMachine {
    return this.stateMachine;
  }

  /** Stops writing at once: queued commits and every later one reject with `error`. */
  detach(error: unknown): void {
    this.stateLog.detach(error);
  }

  /**
   * Recovers the state again from the partition log as it is now (snapshot + replay: what the
   * replication follower copied meanwhile) into a new machine and writes through a new state log
   * with the hooks of the old one (which is detached). Throws CorruptLogError when it cannot.
   */
  reopen(): void {
    const machine = new QueueStateMachine();
    this.stateLog = this.stateLog.reopen(machine);
    this.stateMachine = machine;
  }

  /** Finishes what is in flight, then closes the log. */
  async close(): Promise<void> {
    await this.stateLog.close();
    await this.partition.log.close();
  }
}
