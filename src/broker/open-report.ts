/** What `Broker.open()` found on disk and did about it: `broker.openReport`. */
import type { RecoveryReport } from '../storage/log-loader.js';
import type { StateRecoveryReport } from './state/state-log-recovery.js';

/** The recovery of one internal state log (e.g. `__metadata/0`). */
export interface StateLogRecovery {
  name: string;
  recovery: StateRecoveryReport;
}

export interface PartitionRecovery {
  topic: string;
  partition: number;
  recovery: RecoveryReport;
}

export interface BrokerOpenReport {
  dataDir: string;
  durationMs: number;
  topicCount: number;
  partitionCount: number;
  /** The recovery report of every partition log opened (user topics; internal ones in stateLogs). */
  partitions: PartitionRecovery[];
  /** How every internal state log was rebuilt: the snapshot used, changes replayed, snapshots skipped. */
  stateLogs: StateLogRecovery[];
  /**
   * Directories under `topics/` that the metadata does not name (a crash during createTopic, or
   * data put there by hand). Left untouched and ignored; createTopic of such a name moves the
   * directory aside to `<name>.orphan-<ms>` first.
   */
  orphanTopicDirectories: string[];
  /**
   * Partition directories of known topics that were missing: recreated empty. Whatever they held is
   * lost (a crash cannot cause this; removal by hand or a damaged file system can).
   */
  missingPartitionDirectories: string[];
  /**
   * Partition directories numbered beyond their topic's partition count (a crash during
   * addPartitions, before the metadata was updated, so they hold nothing acknowledged): moved aside.
   */
  strayPartitionDirectories: Array<{ from: string; to: string }>;
  /** Topic deletions a crash interrupted, completed now (directories removed, metadata updated). */
  completedDeletions: string[];
  /** One line for every finding above and for every log recovered after a crash or truncated. */
  warnings: string[];
}
