/**
 * The broker engine: topics of partition logs (broker-topics.ts), produce and fetch with
 * long-polling (broker-messages.ts), retention, metadata, and the open/close of all of it. It knows
 * no network: src/spillway-broker.ts (the composition root) adds `listen()`, and the server and the
 * client's in-process transport reach the engine through `BrokerApi`, one service per concern.
 *
 * On disk (topic-directories.ts has the details): `dataDir/metadata.json` (metadata-store.ts) and
 * `dataDir/topics/<name>/<partition>/` (one PartitionLog each).
 *
 * Closing: `close()` rejects every later call with BROKER_CLOSING, answers waiting long-polls with
 * what is there, lets in-flight produces and fetches and the running admin operation finish, then
 * closes every log (sync, clean-shutdown checkpoint).
 */
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { BrokerApi, StorageStats } from '../protocol/broker-api.js';
import { BrokerMessages } from './broker-messages.js';
import { type BrokerOptions, type ResolvedBrokerOptions, resolveBrokerOptions } from './broker-options.js';
import { BrokerTopics, closeQuietly, openPartitions } from './broker-topics.js';
import { DataDirectoryLock } from './data-directory-lock.js';
import { DiskReserve } from './disk-reserve.js';
import { Lifecycle } from './lifecycle.js';
import { MetadataStore } from './metadata-store.js';
import type { BrokerOpenReport, PartitionRecovery } from './open-report.js';
import type { Partition } from './partition.js';
import { Scrubber, type ScrubTarget } from './scrubber.js';
import { Topic } from './topic.js';
import { reconcileTopicDirectories } from './topic-directories.js';

/** What one retention pass did (`BrokerEngine.applyRetention`). */
export interface RetentionPassResult {
  deletedSegments: number;
  deletedBytes: number;
  /** Partitions whose retention failed (e.g. an I/O error deleting a file); the others went on. */
  failures: Array<{ topic: string; partition: number; error: unknown }>;
}

/** What `BrokerEngine.openParts` prepared: everything a constructed engine serves. */
export interface BrokerEngineParts {
  options: ResolvedBrokerOptions;
  dataDir: string;
  lock: DataDirectoryLock;
  metadata: MetadataStore;
  topics: Topic[];
  openReport: BrokerOpenReport;
  diskReserve: DiskReserve;
}

export class BrokerEngine implements BrokerApi {
  /** Absolute path of the data directory. */
  readonly dataDir: string;
  /** What opening found on disk and did about it. */
  readonly openReport: BrokerOpenReport;
  readonly topics: BrokerTopics;
  readonly messages: BrokerMessages;
  /** The broker-wide disk reserve (disk-reserve.ts). */
  readonly diskReserve: DiskReserve;
  /** The background scrub of sealed segments (scrubber.ts). */
  readonly scrubber: Scrubber;

  private readonly lifecycle = new Lifecycle();
  private readonly metadata: MetadataStore;
  private readonly lock: DataDirectoryLock;
  private retentionTimer: NodeJS.Timeout | null = null;
  private lastRetention: RetentionPassResult | null = null;
  private closePromise: Promise<void> | null = null;

  protected constructor(parts: BrokerEngineParts) {
    this.dataDir = parts.dataDir;
    this.lock = parts.lock;
    this.metadata = parts.metadata;
    this.openReport = parts.openReport;
    this.diskReserve = parts.diskReserve;
    this.topics = new BrokerTopics(
      parts.options,
      parts.dataDir,
      this.lifecycle,
      parts.metadata,
      parts.topics,
      parts.diskReserve,
    );
    this.messages = new BrokerMessages(this.topics, this.lifecycle, parts.diskReserve);
    this.scrubber = new Scrubber(() => this.scrubTargets(), {
      bytesPerSecond: parts.options.scrubBytesPerSecond,
      passIntervalMs: parts.options.scrubPassIntervalMs,
    });
    this.scrubber.start();
    this.retentionTimer = setInterval(() => {
      this.lastRetention = this.applyRetention();
    }, parts.options.retentionCheckIntervalMs);
    this.retentionTimer.unref();
  }

  /**
   * Opens (creating it if needed) the broker in `options.dataDir`: reads the metadata, reconciles it
   * with the directories, opens (recovering) every partition log. Fails with CorruptLogError when the
   * metadata or acknowledged log data is damaged.
   */
  static async open(options: BrokerOptions = {}): Promise<BrokerEngine> {
    return new BrokerEngine(await BrokerEngine.openParts(options));
  }

  /** The opening work of `open`, for subclasses (the composition root) to construct themselves. */
  protected static async openParts(options: BrokerOptions): Promise<BrokerEngineParts> {
    const startedAt = performance.now();
    const resolved = resolveBrokerOptions(options);
    const dataDir = resolve(resolved.dataDir);
    mkdirSync(dataDir, { recursive: true });
    const lock = DataDirectoryLock.acquire(dataDir);
    try {
      const diskReserve = new DiskReserve(dataDir, resolved.diskReserveBytes);
      const metadata = new MetadataStore(dataDir);
      const records = metadata.load(resolved.topicDefaults);
      const reconciliation = reconcileTopicDirectories(dataDir, records);
      if (reconciliation.metadataChanged) metadata.saveSync(reconciliation.topics);
      const opened = await Promise.allSettled(
        reconciliation.topics.map((record) =>
          openPartitions(resolved, dataDir, record, 0, record.partitionCount),
        ),
      );
      const failure = opened.find((outcome) => outcome.status === 'rejected');
      if (failure !== undefined) {
        for (const outcome of opened) if (outcome.status === 'fulfilled') await closeQuietly(outcome.value);
        throw failure.reason;
      }
      const topics = opened.map(
        (outcome, i) =>
          new Topic(reconciliation.topics[i]!, (outcome as PromiseFulfilledResult<Partition[]>).value),
      );
      const partitions: PartitionRecovery[] = [];
      const warnings = [...reconciliation.warnings];
      for (const topic of topics) {
        for (const partition of topic.partitions) {
          const recovery = partition.log.recovery;
          partitions.push({ topic: topic.name, partition: partition.index, recovery });
          const where = `${topic.name}/${partition.index}`;
          if (recovery.checkpointProblem !== null) {
            warnings.push(`${where}: recovery checkpoint unreadable (${recovery.checkpointProblem})`);
          }
          if (!recovery.cleanShutdown && recovery.segmentsScanned > 0) {
            warnings.push(
              `${where}: recovered after an unclean shutdown (${recovery.segmentsScanned} segment(s), ${recovery.bytesVerified} bytes verified)`,
            );
          }
          const cut = recovery.truncation;
          if (cut !== null) {
            warnings.push(
              `${where}: torn tail cut in ${cut.file} at position ${cut.position} (${cut.reason}); log now ends at offset ${cut.truncatedToOffset}`,
            );
          }
        }
      }
      const report: BrokerOpenReport = {
        dataDir,
        durationMs: performance.now() - startedAt,
        topicCount: topics.length,
        partitionCount: partitions.length,
        partitions,
        orphanTopicDirectories: reconciliation.orphanTopicDirectories,
        missingPartitionDirectories: reconciliation.missingPartitionDirectories,
        strayPartitionDirectories: reconciliation.strayPartitionDirectories,
        completedDeletions: reconciliation.completedDeletions,
        warnings,
      };
      return { options: resolved, dataDir, lock, metadata, topics, openReport: report, diskReserve };
    } catch (error) {
      lock.release();
      throw error;
    }
  }

  /** Disk use, the reserve and the scrub's findings (for metrics and health). */
  storageStats(): StorageStats {
    let preallocatedBytes = 0;
    for (const topic of this.topics.all()) {
      for (const partition of topic.partitions) preallocatedBytes += partition.log.preallocatedBytes;
    }
    const scrub = this.scrubber.stats;
    return {
      disk: this.diskReserve.stats,
      preallocatedBytes,
      scrub: {
        bytesPerSecond: scrub.bytesPerSecond,
        passesCompleted: scrub.passesCompleted,
        bytesScrubbed: scrub.bytesScrubbed,
        batchesScrubbed: scrub.batchesScrubbed,
        segmentsScrubbed: scrub.segmentsScrubbed,
        damageFound: scrub.damageFound,
        findings: scrub.findings,
      },
    };
  }

  /** Every partition served now, for the scrub. */
  private scrubTargets(): ScrubTarget[] {
    if (this.lifecycle.closing) return [];
    const targets: ScrubTarget[] = [];
    for (const topic of this.topics.all()) {
      if (topic.deleted) continue;
      for (const partition of topic.partitions) {
        targets.push({ topic: topic.name, partition: partition.index, log: partition.log });
      }
    }
    return targets;
  }

  /** What the last timed retention pass did (failures included), null before the first one. */
  get lastRetentionPass(): RetentionPassResult | null {
    return this.lastRetention;
  }

  /** Fetches long-polling right now (for metrics). */
  get waitingFetchCount(): number {
    return this.messages.waitingFetchCount;
  }

  /** True once `close()` was called: every later call fails with BROKER_CLOSING. */
  get closed(): boolean {
    return this.lifecycle.closing;
  }

  /**
   * Deletes, in every partition, whole sealed segments past the topic's retention limits. Runs every
   * `retentionCheckIntervalMs` by itself; callable directly (tests, operators).
   */
  applyRetention(nowMs = Date.now()): RetentionPassResult {
    const result: RetentionPassResult = { deletedSegments: 0, deletedBytes: 0, failures: [] };
    if (this.lifecycle.closing) return result;
    for (const topic of this.topics.all()) {
      for (const partition of topic.partitions) {
        try {
          const done = partition.log.applyRetention(nowMs);
          result.deletedSegments += done.deletedSegments;
          result.deletedBytes += done.deletedBytes;
        } catch (error) {
          result.failures.push({ topic: topic.name, partition: partition.index, error });
        }
      }
    }
    return result;
  }

  /**
   * Stops accepting calls (they fail with BROKER_CLOSING), answers waiting long-polls, waits for
   * in-flight produces, fetches and the running admin operation, then closes every log cleanly.
   * Idempotent: later calls return the same promise.
   */
  close(): Promise<void> {
    if (this.closePromise === null) {
      this.lifecycle.startClosing();
      this.closePromise = this.closeNow();
    }
    return this.closePromise;
  }

  /** Throws BROKER_CLOSING once close() was called. */
  protected assertOpen(): void {
    this.lifecycle.assertOpen();
  }

  private async closeNow(): Promise<void> {
    if (this.retentionTimer !== null) clearInterval(this.retentionTimer);
    this.retentionTimer = null;
    await this.scrubber.stop();
    this.messages.wakeAll();
    await this.topics.idle();
    await this.lifecycle.drained();
    const partitions = [...this.topics.all()].flatMap((topic) => topic.partitions);
    const outcomes = await Promise.allSettled(partitions.map((partition) => partition.log.close()));
    await this.metadata.idle();
    this.lock.release();
    const failure = outcomes.find((outcome) => outcome.status === 'rejected');
    if (failure !== undefined) throw failure.reason;
  }
}
