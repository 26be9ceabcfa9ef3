/**
 * The two internal logs of transactions, opened (and recovered) with the broker, served read-only as
 * internal topics, closed last:
 *  - `__transactions` (a state log, durability `always`, state/state-log.ts): the
 *    TransactionStateMachine (transaction-state.ts), snapshot + replay;
 *  - `__txn_half` (a partition log, durability `interval`, half-log.ts): the half messages.
 * Missing or empty logs mean no transaction was ever begun.
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
}

export class TransactionStore {
  readonly partition: StateLogPartition;
  readonly state: StateLog<TransactionEntry>;
  readonly machine: TransactionStateMachine;
  readonly halfPartition: StateLogPartition;
  readonly halves: HalfLog;

  private constructor(
    partition: StateLogPartition,
    state: StateLog<TransactionEntry>,
    machine: TransactionStateMachine,
    halfPartition: StateLogPartition,
  ) {
    this.partition = partition;
    this.state = state;
    this.machine = machine;
    this.halfPartition = halfPartition;
    this.halves = new HalfLog(halfPartition.log);
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
