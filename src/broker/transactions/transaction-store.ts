/**
 * The two internal logs of transactions, opened (and recovered) with the broker, served read-only as
 * internal topics, closed last:
 *  - `__transactions` (a state log, durability `always`, state/state-log.ts): the
 *    TransactionStateMachine (transaction-state.ts), snapshot + replay;
 *  - `__txn_half` (a partition log, durability `interval`, half-log.ts): the half messages.
 * Missing or empty logs mean no transaction was ever begun.
 *
 * In a cluster both are partitions of replicated internal topics (src/cluster/state-services/): the
 * store opens without writing (`writeAtOpen` false), `detach` stops every write at once when this
 * broker stops leading them, and `reopen` recovers the state again from the log as the replication
 * follower left it (a new state log and machine, with the old one's hooks).
 */
import type { Clock } from '../../clock.js';
import { PartitionLog } from '../../storage/partition-log.js';
import type { StateLog } from '../state/state-log.js';
import {
  openStateLog,
  type StateLogPartition,
  type StateLogTuning,
  stateLogDirectory,
} from '../state/state-log-partition.js';
import { HalfLog, halfTopicName } from './half-log.js';
import { type TransactionEntry, TransactionStateMachine, transactionCodec } from './transaction-state.js';

export const transactionsTopicName = '__transactions';
/** Segments of `__txn_half`: a half batch (up to transactionHalfBatchBytesMax) must fit one. */
export const halfSegmentBytes = 64 * 1024 * 1024;

export interface TransactionStoreOptions {
  dataDir: string;
  tuning?: StateLogTuning;
  checkpointIntervalMs?: number;
  /** fdatasync period of `__txn_half` (halves of `interval` topics). */
  flushIntervalMs: number;
  clock?: Clock;
  /** False (a cluster member): the open writes nothing to `__transactions`. Default true. */
  writeAtOpen?: boolean;
}

export class TransactionStore {
  readonly partition: StateLogPartition;
  readonly halfPartition: StateLogPartition;
  readonly halves: HalfLog;
  private stateLog: StateLog<TransactionEntry>;
  private stateMachine: TransactionStateMachine;

  private constructor(
    partition: StateLogPartition,
    state: StateLog<TransactionEntry>,
    machine: TransactionStateMachine,
    halfPartition: StateLogPartition,
  ) {
    this.partition = partition;
    this.stateLog = state;
    this.stateMachine = machine;
    this.halfPartition = halfPartition;
    this.halves = new HalfLog(halfPartition.log);
  }

  /** The running state log (a new one after `reopen`). */
  get state(): StateLog<TransactionEntry> {
    return this.stateLog;
  }

  /** The machine of the running state log. */
  get machine(): TransactionStateMachine {
    return this.stateMachine;
  }

  /** Refuses every later write to `__transactions` at once (queued ones reject with `error`). */
  detach(error: unknown): void {
    this.stateLog.detach(error);
  }

  /**
   * Recovers the state again from `__transactions` as it is now (snapshot + replay) into a new
   * machine, written through a new state log with the old one's hooks. Call after `detach`.
   */
  reopen(): void {
    const machine = new TransactionStateMachine();
    this.stateLog = this.stateLog.reopen(machine);
    this.stateMachine = machine;
  }

  static async open(options: TransactionStoreOptions): Promise<TransactionStore> {
    const common = {
      ...(options.clock !== undefined ? { clock: options.clock } : {}),
      ...(options.checkpointIntervalMs !== undefined
        ? { checkpointIntervalMs: options.checkpointIntervalMs }
        : {}),
    };
    const machine = new TransactionStateMachine();
    const { partition, state } = await openStateLog(
      options,
      transactionsTopicName,
      machine,
      transactionCodec,
    );
    let halfLog: PartitionLog | null = null;
    try {
      const directory = stateLogDirectory(options.dataDir, halfTopicName);
      halfLog = await PartitionLog.open({
        directory,
        durability: 'interval',
        flushIntervalMs: options.flushIntervalMs,
        segmentBytes: halfSegmentBytes,
        spareSegment: false,
        ...common,
      });
      return new TransactionStore(partition, state, machine, {
        log: halfLog,
        directory,
        segmentBytes: halfSegmentBytes,
      });
    } catch (error) {
      await halfLog?.close().catch(() => undefined);
      await partition.log.close().catch(() => undefined);
      throw error;
    }
  }

  /** Finishes what is in flight, then closes both logs. */
  async close(): Promise<void> {
    try {
      await this.state.close();
      await this.partition.log.close();
    } finally {
      await this.halves.log.close();
    }
  }
}
