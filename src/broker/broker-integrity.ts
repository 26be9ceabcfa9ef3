/**
 * The integrity service of a broker: what the open found on disk (open-report.ts), which
 * partitions are stopped now, and the explicit repair of a stopped partition.
 *
 * Repair runs in the topic administration queue (never beside a delete of the same topic), on a
 * partition that has no open log: it sets every damaged range aside into the partition's
 * `quarantine/` (storage/log-repair.ts; moved or copied, never deleted), opens the log and serves
 * it again. A missing partition directory is created anew: the partition restarts empty at 0.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { InvalidArgumentError } from '../errors.js';
import type { IntegrityReport, IntegrityService, RepairResult } from '../protocol/broker-api.js';
import { fsyncDirectorySync } from '../storage/checkpoint-file.js';
import { fileModes } from '../storage/file-modes.js';
import { repairPartitionLog } from '../storage/log-repair.js';
import type { LogOpenRequest } from '../storage/log-store.js';
import { quarantineDirectory } from '../storage/quarantine.js';
import type { BrokerTopics } from './broker-topics.js';
import type { Lifecycle } from './lifecycle.js';
import type { TopicRecord } from './metadata-store.js';
import { type BrokerOpenReport, reportSummary } from './open-report.js';
import type { PartitionDamage } from './partition-damage.js';

export class BrokerIntegrity implements IntegrityService {
  private readonly topics: BrokerTopics;
  private readonly lifecycle: Lifecycle;
  private readonly openReport: BrokerOpenReport;
  private readonly logOptions: (record: TopicRecord, index: number) => LogOpenRequest;
  private readonly repairs: RepairResult[] = [];

  constructor(
    topics: BrokerTopics,
    lifecycle: Lifecycle,
    openReport: BrokerOpenReport,
    logOptions: (record: TopicRecord, index: number) => LogOpenRequest,
  ) {
    this.topics = topics;
    this.lifecycle = lifecycle;
    this.openReport = openReport;
    this.logOptions = logOptions;
  }

  /** Partitions stopped now. */
  damagedPartitions(): PartitionDamage[] {
    const damaged: PartitionDamage[] = [];
    for (const topic of this.topics.all()) {
      for (const partition of topic.partitions) {
        if (partition.damage !== null) damaged.push(partition.damage);
      }
    }
    return damaged;
  }

  report(): IntegrityReport {
    this.lifecycle.assertOpen();
    const damagedPartitions = this.damagedPartitions();
    return {
      status: damagedPartitions.length > 0 ? 'degraded' : 'ok',
      summary: `${reportSummary(this.openReport)}; ${damagedPartitions.length} stopped now, ${this.repairs.length} repair(s) since`,
      openDurationMs: this.openReport.durationMs,
      findings: this.openReport.findings,
      damagedPartitions,
      repairs: [...this.repairs],
    };
  }

  async repair(topicName: string, index: number): Promise<RepairResult> {
    this.lifecycle.assertOpen();
    this.topics.partitionOf(topicName, index);
    return this.topics.administer(async () => {
      const topic = this.topics.topicNamed(topicName);
      const partition = this.topics.partitionOf(topicName, index);
      if (partition.damage === null) {
        throw new InvalidArgumentError(
          `partition ${topicName}/${index} is not stopped: nothing to repair (see spillway doctor)`,
        );
      }
      const options = this.logOptions(topic.record(), index);
      const directory = options.directory;
      const recreatedEmpty = !existsSync(directory);
      if (recreatedEmpty) {
        mkdirSync(directory, { recursive: true, mode: fileModes.directory });
        fsyncDirectorySync(dirname(directory));
      }
      const atMs = options.clock.nowMs();
      const { log, setAside } = await repairPartitionLog(options, atMs);
      partition.resume(log);
      const result: RepairResult = {
        topic: topicName,
        partition: index,
        quarantineDirectory: quarantineDirectory(directory),
        setAside,
        recreatedEmpty,
        logStartOffset: log.logStartOffset,
        logEndOffset: log.logEndOffset,
        atMs,
      };
      this.repairs.push(result);
      return result;
    });
  }
}
