/**
 * What `Broker.open()` found on disk and did about it: `broker.openReport`. `spillway broker`
 * prints one line per finding and a summary at start; GET /v1/health/details and `spillway doctor`
 * serve it (with what happened since: repairs).
 */
import type { RecoveryReport } from '../storage/log-loader.js';
import type { StateRecoveryReport } from './state/state-log-recovery.js';

/** The recovery of one internal state log (e.g. `__metadata/0`). */
export interface StateLogRecovery {
  name: string;
  recovery: StateRecoveryReport;
}

import type { DelayRecoveryReport } from './delay/broker-delay.js';
import type { PartitionDamage } from './partition-damage.js';

export interface PartitionRecovery {
  topic: string;
  partition: number;
  recovery: RecoveryReport;
}

/**
 * One thing the open found. `damage`: a partition is stopped until repaired; `warning`: something
 * was wrong and has been dealt with (nothing acknowledged lost) or needs a look; `info`: normal
 * after a crash or a repair.
 */
export interface OpenFinding {
  severity: 'damage' | 'warning' | 'info';
  /** Absent for findings about the data directory as a whole. */
  topic?: string;
  partition?: number;
  /** What was found, one line. */
  what: string;
  /** What the operator can do about it ('nothing to do' when nothing is needed). */
  fix: string;
}

export interface BrokerOpenReport {
  dataDir: string;
  durationMs: number;
  topicCount: number;
  partitionCount: number;
  /** The recovery report of every partition log opened (user topics; stopped partitions have none; internal ones in stateLogs). */
  partitions: PartitionRecovery[];
  /** How every internal state log was rebuilt: the snapshot used, changes replayed, snapshots skipped. */
  stateLogs: StateLogRecovery[];
  /** What recovering the delayed messages did (delay/broker-delay.ts). */
  delay?: DelayRecoveryReport;
  /** Partitions stopped because their data is damaged or missing: they answer PARTITION_DAMAGED. */
  damagedPartitions: PartitionDamage[];
  /**
   * Directories under `topics/` that the metadata does not name (a crash during createTopic, or
   * data put there by hand). Left untouched and ignored; createTopic of such a name moves the
   * directory aside to `<name>.orphan-<ms>` first.
   */
  orphanTopicDirectories: string[];
  /**
   * Partition directories of known topics that were missing: those partitions are stopped (a crash
   * cannot cause this; removal by hand or a damaged file system can). Never recreated silently.
   */
  missingPartitionDirectories: string[];
  /**
   * Partition directories numbered beyond their topic's partition count (a crash during
   * addPartitions, before the metadata was updated, so they hold nothing acknowledged): moved aside.
   */
  strayPartitionDirectories: Array<{ from: string; to: string }>;
  /** Topic deletions a crash interrupted, completed now (directories removed, metadata updated). */
  completedDeletions: string[];
  /** Everything above worth a line, with how to fix it. */
  findings: OpenFinding[];
  /** One line per finding (`findings` as text). */
  warnings: string[];
}

/** `topic/partition: what` or just `what`. */
export function findingLine(finding: OpenFinding): string {
  const where = finding.topic === undefined ? '' : `${finding.topic}/${finding.partition}: `;
  return `${finding.severity}: ${where}${finding.what}`;
}

/** The findings a partition's recovery report gives. */
export function recoveryFindings(topic: string, partition: number, recovery: RecoveryReport): OpenFinding[] {
  const findings: OpenFinding[] = [];
  const add = (severity: OpenFinding['severity'], what: string, fix: string): void => {
    findings.push({ severity, topic, partition, what, fix });
  };
  if (recovery.checkpointProblem !== null) {
    add(
      'warning',
      `recovery checkpoint unusable (${recovery.checkpointProblem}): every segment was scanned and CRC-checked, every valid batch kept`,
      'nothing to do: a new checkpoint was written',
    );
  }
  if (!recovery.cleanShutdown && recovery.segmentsScanned > 0 && recovery.checkpointProblem === null) {
    add(
      'info',
      `recovered after an unclean shutdown (${recovery.segmentsScanned} segment(s) scanned, ${recovery.bytesVerified} bytes CRC-checked)`,
      'nothing to do',
    );
  }
  const cut = recovery.truncation;
  if (cut !== null) {
    const durable =
      recovery.checkpointProblem === null
        ? 'at or past the durable point (nothing acknowledged as durable was cut)'
        : 'the durable point is unknown without a checkpoint: the cut batch may have been acknowledged';
    add(
      'warning',
      `torn tail cut in ${cut.file} at position ${cut.position} (${cut.reason}): ${cut.bytesCut} non-zero bytes zeroed; the log ends at offset ${cut.truncatedToOffset}, ${durable}`,
      'nothing to do: a write interrupted by a crash (the invalid bytes after the last valid batch are zeroed)',
    );
  }
  if (recovery.quarantineProblem !== null) {
    add(
      'warning',
      `quarantine ledger unreadable (${recovery.quarantineProblem})`,
      'a repair rewrites it; the files in quarantine/ are kept',
    );
  }
  if (recovery.quarantinedOffsets > 0) {
    add(
      'info',
      `${recovery.quarantinedOffsets} offset(s) were set aside into quarantine/ by an earlier repair`,
      'inspect quarantine/ and delete it when no longer needed',
    );
  }
  if (recovery.retentionLeftovers.length > 0) {
    add(
      'info',
      `${recovery.retentionLeftovers.length} segment(s) below the recorded log start kept (a retention pass a crash interrupted)`,
      'nothing to do: the next retention pass deletes them',
    );
  }
  if (recovery.cleanShutdown && recovery.indexesRebuilt.length > 0) {
    add('info', `${recovery.indexesRebuilt.length} index file(s) rebuilt`, 'nothing to do');
  }
  return findings;
}

/** The finding of a stopped partition. */
export function damageFinding(damage: PartitionDamage): OpenFinding {
  const fix =
    damage.kind === 'missing-directory'
      ? `restore ${damage.directory} from a backup and run 'spillway repair ${damage.topic} ${damage.partition}', or run it as is to start the partition empty`
      : damage.kind === 'overlap'
        ? `move the wrong segment file out of ${damage.directory} by hand, then 'spillway repair ${damage.topic} ${damage.partition}'`
        : `restore the missing or damaged file from a backup, or run 'spillway repair ${damage.topic} ${damage.partition}' to set the damaged range aside into ${damage.directory}/quarantine/`;
  return {
    severity: 'damage',
    topic: damage.topic,
    partition: damage.partition,
    what: `stopped: ${damage.summary}`,
    fix,
  };
}

/** `N topics, M partitions opened in X ms: D damaged (stopped), W warnings`. */
export function reportSummary(report: BrokerOpenReport): string {
  const count = (severity: OpenFinding['severity']): number =>
    report.findings.filter((finding) => finding.severity === severity).length;
  return (
    `opened ${report.dataDir}: ${report.topicCount} topic(s), ${report.partitionCount} partition(s) in ${Math.round(report.durationMs)} ms; ` +
    `${report.damagedPartitions.length} partition(s) stopped for damage, ${count('warning')} warning(s), ${count('info')} note(s)`
  );
}
