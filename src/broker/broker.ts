/**
 * The broker engine: topics of partition logs, produce, fetch with long-polling, offsets by time,
 * retention, and their metadata. `Broker.open()` returns it; the network server (`listen`) and the
 * client's in-process transport are front ends of it and reach it through `BrokerApi`.
 *
 * On disk (topic-directories.ts has the details): `dataDir/metadata.json` (metadata-store.ts) and
 * `dataDir/topics/<name>/<partition>/` (one PartitionLog each).
 *
 * Concurrency: one event loop. produce and fetch run concurrently with everything; topic
 * administration (create, delete, add partitions) is serialized, one operation at a time, so the
 * metadata file and the directories change in one order. Every step that changes the disk is ordered
 * so that a crash between two steps is either invisible or completed at the next open:
 *  - createTopic:   open the logs (directories), fsync the parents, write metadata, then serve.
 *  - addPartitions: open the new logs, fsync the topic directory, write metadata, then serve them.
 *  - deleteTopic:   stop serving, close the logs, rename to `<name>.deleted-<ms>`, write metadata,
 *                   remove the renamed directory.
 *
 * Visibility: a consumer sees what was appended, except with durability `always`, where it sees only
 * what is on disk (Partition.visibleEndOffset), so nothing it read can be lost in a crash.
 *
 * Closing: `close()` rejects every later call with BROKER_CLOSING, answers waiting long-polls with
 * what is there, closes the sessions still open (their connections are dropped, their close hooks
 * run), lets in-flight produces and fetches and the running admin operation finish, then closes
 * every log (sync, clean-shutdown checkpoint).
 */

import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import {
  BrokerClosingError,
  InvalidArgumentError,
  InvalidBatchError,
  storageErrorFrom,
  TopicExistsError,
  UnknownPartitionError,
  UnknownTopicError,
} from '../errors.js';
import { BatchAttributes } from '../format/batch-header.js';
import { validateBatch } from '../format/record-batch.js';
import {
  fetchMaxBytesMax,
  fetchMaxWaitMsMax,
  fetchWaitersPerPartitionMax,
  fetchWaitersTotalMax,
  partitionCountMax,
  topicCountMax,
} from '../limits.js';
import { crc32c as nativeCrc32c } from '../native.js';
import type {
  BrokerApi,
  FetchOptions,
  FetchResult,
  OffsetSpec,
  ProduceResult,
  TopicConfig,
  TopicDescription,
} from '../protocol/broker-api.js';
import { fsyncDirectorySync } from '../storage/checkpoint-file.js';
import { PartitionLog } from '../storage/partition-log.js';
import { type BrokerOptions, type ResolvedBrokerOptions, resolveBrokerOptions } from './broker-options.js';
import { DataDirectoryLock } from './data-directory-lock.js';
import { FetchWaiters } from './fetch-waiters.js';
import { MetadataStore, type TopicRecord } from './metadata-store.js';
import type { BrokerOpenReport, PartitionRecovery } from './open-report.js';
import { Partition } from './partition.js';
import { SessionRegistry } from './session-registry.js';
import { Topic } from './topic.js';
import { resolveTopicConfig } from './topic-config.js';
import {
  asidePath,
  partitionDirectory,
  reconcileTopicDirectories,
  topicDirectory,
  topicsDirectory,
} from './topic-directories.js';
import { validateTopicName } from './topic-name.js';

/** The network front end started by `Broker.listen` (src/server/server.ts implements it). */
export interface BrokerServer {
  host: string;
  port: number;
  /** `ws://host:port`. */
  url: string;
  /** Stops accepting, finishes in-flight requests, closes connections. The broker stays open. */
  close(): Promise<void>;
}

export interface ListenOptions {
  host?: string;
  port?: number;
}

/** What src/server/server.ts must export for `Broker.listen`. */
interface ServerModule {
  startServer(broker: Broker, options: ListenOptions): Promise<BrokerServer>;
}

/** What one retention pass did (`Broker.applyRetention`). */
export interface RetentionPassResult {
  deletedSegments: number;
  deletedBytes: number;
  /** Partitions whose retention failed (e.g. an I/O error deleting a file); the others went on. */
  failures: Array<{ topic: string; partition: number; error: unknown }>;
}

/** Attribute bits of features the broker does not serve yet. */
const unsupportedAttributes: ReadonlyArray<readonly [number, string]> = [
  [BatchAttributes.transactional, 'transactional'],
  [BatchAttributes.control, 'control'],
  [BatchAttributes.delayed, 'delayed'],
];

/** record-batch's Crc32cFunction takes only the bytes; the native one takes optional ranges too. */
const crc32cOfBytes = (bytes: Uint8Array): number => nativeCrc32c(bytes);

/** Data directories open in this process (two brokers on one directory would corrupt it). */

function checkInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

interface ResolvedFetchOptions {
  maxBytes: number;
  maxWaitMs: number;
  minBytes: number;
  signal: AbortSignal | undefined;
}

function resolveFetchOptions(options: FetchOptions): ResolvedFetchOptions {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('fetch options must be an object');
  }
  const signal = options.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new InvalidArgumentError('fetch option signal must be an AbortSignal');
  }
  return {
    maxBytes: checkInteger('fetch option maxBytes', options.maxBytes, 1, fetchMaxBytesMax),
    maxWaitMs: checkInteger('fetch option maxWaitMs', options.maxWaitMs, 0, fetchMaxWaitMsMax),
    minBytes: checkInteger('fetch option minBytes', options.minBytes ?? 1, 1, fetchMaxBytesMax),
    signal,
  };
}

/** Closes every log, waiting for all, ignoring errors (used to undo a half-done operation). */
async function closeQuietly(partitions: Partition[]): Promise<void> {
  await Promise.allSettled(partitions.map((partition) => partition.log.close()));
}

export class Broker implements BrokerApi {
  /** Absolute path of the data directory. */
  readonly dataDir: string;
  /** What opening found on disk and did about it. */
  readonly openReport: BrokerOpenReport;
  /** Live client sessions (protocol/session.ts); closed, hooks run, before the logs close. */
  readonly sessions = new SessionRegistry();

  private readonly options: ResolvedBrokerOptions;
  private readonly metadata: MetadataStore;
  private readonly topics = new Map<string, Topic>();
  private readonly waiters = new FetchWaiters<Partition>(fetchWaitersPerPartitionMax, fetchWaitersTotalMax);
  private readonly lock: DataDirectoryLock;
  /** Tail of the queue of topic administration operations. */
  private adminQueue: Promise<void> = Promise.resolve();
  private retentionTimer: NodeJS.Timeout | null = null;
  private lastRetention: RetentionPassResult | null = null;
  private closing = false;
  private closePromise: Promise<void> | null = null;
  /** produce and fetch calls not yet settled. */
  private inFlightRequests = 0;
  private onRequestsDrained: (() => void) | null = null;

  private constructor(
    options: ResolvedBrokerOptions,
    dataDir: string,
    lock: DataDirectoryLock,
    metadata: MetadataStore,
    topics: Topic[],
    openReport: BrokerOpenReport,
  ) {
    this.options = options;
    this.dataDir = dataDir;
    this.lock = lock;
    this.metadata = metadata;
    for (const topic of topics) this.topics.set(topic.name, topic);
    this.openReport = openReport;
    this.retentionTimer = setInterval(() => {
      this.lastRetention = this.applyRetention();
    }, options.retentionCheckIntervalMs);
    this.retentionTimer.unref();
  }

  /**
   * Opens (creating it if needed) the broker in `options.dataDir`: reads the metadata, reconciles it
   * with the directories, opens (recovering) every partition log. Fails with CorruptLogError when the
   * metadata file or acknowledged log data is damaged.
   */
  static async open(options: BrokerOptions = {}): Promise<Broker> {
    const startedAt = performance.now();
    const resolved = resolveBrokerOptions(options);
    const dataDir = resolve(resolved.dataDir);
    mkdirSync(dataDir, { recursive: true });
    const lock = DataDirectoryLock.acquire(dataDir);
    try {
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
      return new Broker(resolved, dataDir, lock, metadata, topics, report);
    } catch (error) {
      lock.release();
      throw error;
    }
  }

  /** What the last timed retention pass did (failures included), null before the first one. */
  get lastRetentionPass(): RetentionPassResult | null {
    return this.lastRetention;
  }

  /** Fetches long-polling right now (for metrics). */
  get waitingFetchCount(): number {
    return this.waiters.waitingCount;
  }

  /** True once `close()` was called: every later call fails with BROKER_CLOSING. */
  get closed(): boolean {
    return this.closing;
  }

  /**
   * Starts the network front end (src/server/server.ts, loaded on first use so that an embedded
   * broker without a network does not load uWebSockets.js).
   */
  async listen(options: ListenOptions = {}): Promise<BrokerServer> {
    this.assertOpen();
    // A variable, not a literal: the server module is optional at compile time.
    const specifier = '../server/server.js';
    const module = (await import(specifier)) as Partial<ServerModule>;
    if (typeof module.startServer !== 'function') {
      throw new Error(`${specifier} does not export startServer(broker, options)`);
    }
    return module.startServer(this, options);
  }

  async createTopic(name: string, config?: TopicConfig): Promise<TopicDescription> {
    this.assertOpen();
    validateTopicName(name);
    const resolved = resolveTopicConfig(config, this.options.topicDefaults);
    if (this.topics.has(name)) throw new TopicExistsError(name);
    return this.administer(async () => {
      if (this.topics.has(name)) throw new TopicExistsError(name);
      if (this.topics.size >= topicCountMax) {
        throw new InvalidArgumentError(`the broker already holds the maximum of ${topicCountMax} topics`);
      }
      const directory = topicDirectory(this.dataDir, name);
      // A directory the metadata does not know (open reported it): keep its content, out of the way.
      if (existsSync(directory)) renameSync(directory, asidePath(directory, 'orphan'));
      const record: TopicRecord = {
        name,
        partitionCount: resolved.partitions,
        createdAtMs: Date.now(),
        config: resolved,
      };
      let partitions: Partition[];
      try {
        partitions = await openPartitions(this.options, this.dataDir, record, 0, record.partitionCount);
      } catch (error) {
        rmSync(directory, { recursive: true, force: true });
        throw error;
      }
      try {
        fsyncDirectorySync(directory);
        fsyncDirectorySync(topicsDirectory(this.dataDir));
        await this.metadata.save([...this.topicRecords(), record]);
      } catch (error) {
        await closeQuietly(partitions);
        rmSync(directory, { recursive: true, force: true });
        throw storageErrorFrom(`creating topic '${name}'`, error);
      }
      const topic = new Topic(record, partitions);
      this.topics.set(name, topic);
      return topic.describe();
    });
  }

  async deleteTopic(name: string): Promise<void> {
    this.assertOpen();
    this.topicNamed(name);
    return this.administer(async () => {
      const topic = this.topicNamed(name);
      // From here on the topic is gone for every request; those waiting wake and fail.
      topic.deleted = true;
      this.topics.delete(name);
      for (const partition of topic.partitions) this.waiters.wake(partition);
      await closeQuietly(topic.partitions);
      const directory = topicDirectory(this.dataDir, name);
      const aside = asidePath(directory, 'deleted');
      try {
        if (existsSync(directory)) {
          renameSync(directory, aside);
          fsyncDirectorySync(topicsDirectory(this.dataDir));
        }
        await this.metadata.save(this.topicRecords());
      } catch (error) {
        // The topic is gone from memory; the next open completes what is left (topic-directories.ts).
        throw storageErrorFrom(`deleting topic '${name}'`, error);
      }
      await rm(aside, { recursive: true, force: true });
    });
  }

  listTopics(): TopicDescription[] {
    this.assertOpen();
    return [...this.topics.values()]
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((topic) => topic.describe());
  }

  describeTopic(name: string): TopicDescription {
    this.assertOpen();
    return this.topicNamed(name).describe();
  }

  /** Adds `count` partitions (not: grows to `count`); existing partitions are untouched. */
  async addPartitions(name: string, count: number): Promise<TopicDescription> {
    this.assertOpen();
    checkInteger('partition count to add', count, 1, partitionCountMax);
    const checkRoom = (topic: Topic): void => {
      if (topic.partitionCount + count > partitionCountMax) {
        throw new InvalidArgumentError(
          `topic '${name}' has ${topic.partitionCount} partitions: adding ${count} would exceed the limit of ${partitionCountMax}`,
        );
      }
    };
    checkRoom(this.topicNamed(name));
    return this.administer(async () => {
      const topic = this.topicNamed(name);
      checkRoom(topic);
      const from = topic.partitionCount;
      const to = from + count;
      for (let index = from; index < to; index++) {
        // Left by an addPartitions a crash interrupted (holds nothing acknowledged): keep it aside.
        const directory = partitionDirectory(this.dataDir, name, index);
        if (existsSync(directory)) renameSync(directory, asidePath(directory, 'stray'));
      }
      const record = topic.record(to);
      let added: Partition[];
      try {
        added = await openPartitions(this.options, this.dataDir, record, from, to);
      } catch (error) {
        for (let index = from; index < to; index++) {
          rmSync(partitionDirectory(this.dataDir, name, index), { recursive: true, force: true });
        }
        throw error;
      }
      try {
        fsyncDirectorySync(topicDirectory(this.dataDir, name));
        await this.metadata.save(this.topicRecords().map((other) => (other.name === name ? record : other)));
      } catch (error) {
        await closeQuietly(added);
        for (const partition of added) rmSync(partition.log.directory, { recursive: true, force: true });
        throw storageErrorFrom(`adding partitions to topic '${name}'`, error);
      }
      topic.addPartitions(added);
      return topic.describe();
    });
  }

  async produce(topic: string, partition: number, batch: Uint8Array): Promise<ProduceResult> {
    this.assertOpen();
    const target = this.partitionOf(topic, partition);
    if (!(batch instanceof Uint8Array)) throw new InvalidArgumentError('batch must be a Uint8Array');
    const fields = validateBatch(batch, { crc32c: crc32cOfBytes, baseOffset: 0 });
    if (fields.batchLength !== batch.length) {
      throw new InvalidBatchError(
        `${batch.length} bytes given for a batch of ${fields.batchLength}: produce takes exactly one batch`,
      );
    }
    for (const [bit, feature] of unsupportedAttributes) {
      if ((fields.attributes & bit) !== 0) {
        throw new InvalidBatchError(`${feature} batches are not supported yet`);
      }
    }
    this.inFlightRequests++;
    try {
      const appended = await target.log.append(batch);
      // Long-polls on this partition read again (with `always`, now that the batch is on disk).
      this.waiters.wake(target);
      return {
        partition,
        baseOffset: appended.baseOffset,
        lastOffset: appended.lastOffset,
        durability: appended.durability,
      };
    } finally {
      this.requestSettled();
    }
  }

  async fetch(topic: string, partition: number, offset: number, options: FetchOptions): Promise<FetchResult> {
    this.assertOpen();
    const owner = this.topicNamed(topic);
    const target = this.partitionOf(topic, partition);
    const { maxBytes, maxWaitMs, minBytes, signal } = resolveFetchOptions(options);
    if (!Number.isSafeInteger(offset))
      throw new InvalidArgumentError(`offset must be an integer, got ${offset}`);
    this.inFlightRequests++;
    try {
      const deadline = performance.now() + maxWaitMs;
      for (;;) {
        if (owner.deleted) throw new UnknownTopicError(topic);
        const result = target.read(offset, maxBytes);
        // Enough bytes, or as many whole batches as maxBytes allows while more are there.
        const enough =
          result.records.length >= minBytes ||
          (result.batchCount > 0 && result.nextOffset < result.highWatermark);
        const remainingMs = deadline - performance.now();
        if (enough || remainingMs <= 0 || this.closing || signal?.aborted) return result;
        const reason = await this.waiters.wait(target, Math.ceil(remainingMs), signal);
        if (reason !== 'data') {
          if (owner.deleted) throw new UnknownTopicError(topic);
          return target.read(offset, maxBytes);
        }
      }
    } finally {
      this.requestSettled();
    }
  }

  listOffset(topic: string, partition: number, spec: OffsetSpec): number {
    this.assertOpen();
    const target = this.partitionOf(topic, partition);
    const end = target.visibleEndOffset;
    if (spec === 'earliest') return target.log.logStartOffset;
    if (spec === 'latest') return end;
    if (typeof spec === 'object' && spec !== null && 'timestamp' in spec) {
      const timestamp = checkInteger('timestamp', spec.timestamp, 0, Number.MAX_SAFE_INTEGER);
      return Math.min(target.log.offsetForTime(timestamp) ?? end, end);
    }
    throw new InvalidArgumentError(
      `offset spec must be 'earliest', 'latest' or { timestamp }, got ${JSON.stringify(spec)}`,
    );
  }

  /**
   * Deletes, in every partition, whole sealed segments past the topic's retention limits. Runs every
   * `retentionCheckIntervalMs` by itself; callable directly (tests, operators).
   */
  applyRetention(nowMs = Date.now()): RetentionPassResult {
    const result: RetentionPassResult = { deletedSegments: 0, deletedBytes: 0, failures: [] };
    if (this.closing) return result;
    for (const topic of this.topics.values()) {
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
      this.closing = true;
      this.closePromise = this.closeNow();
    }
    return this.closePromise;
  }

  private async closeNow(): Promise<void> {
    // At once: no session opens from here on; hooks may still use the broker's state.
    const sessionsClosed = this.sessions.closeAll('the broker is closing');
    if (this.retentionTimer !== null) clearInterval(this.retentionTimer);
    this.retentionTimer = null;
    this.waiters.wakeAll('close');
    await sessionsClosed;
    await this.adminQueue;
    if (this.inFlightRequests > 0) {
      await new Promise<void>((resolve) => {
        this.onRequestsDrained = resolve;
      });
    }
    const partitions = [...this.topics.values()].flatMap((topic) => topic.partitions);
    const outcomes = await Promise.allSettled(partitions.map((partition) => partition.log.close()));
    await this.metadata.idle();
    this.lock.release();
    const failure = outcomes.find((outcome) => outcome.status === 'rejected');
    if (failure !== undefined) throw failure.reason;
  }

  private assertOpen(): void {
    if (this.closing) throw new BrokerClosingError();
  }

  private requestSettled(): void {
    this.inFlightRequests--;
    if (this.inFlightRequests === 0 && this.onRequestsDrained !== null) {
      const drained = this.onRequestsDrained;
      this.onRequestsDrained = null;
      drained();
    }
  }

  /**
   * Runs `operation` after every admin operation queued before it. An operation accepted before
   * close() still runs (close waits for the queue); calls after close() never get here.
   */
  private administer<T>(operation: () => Promise<T>): Promise<T> {
    const run = this.adminQueue.then(operation);
    this.adminQueue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private topicRecords(): TopicRecord[] {
    return [...this.topics.values()].map((topic) => topic.record());
  }

  private topicNamed(name: string): Topic {
    if (typeof name !== 'string') throw new InvalidArgumentError('topic must be a string');
    const topic = this.topics.get(name);
    if (topic === undefined) throw new UnknownTopicError(name);
    return topic;
  }

  private partitionOf(topicName: string, partition: number): Partition {
    const topic = this.topicNamed(topicName);
    if (typeof partition !== 'number' || !Number.isSafeInteger(partition)) {
      throw new InvalidArgumentError(`partition must be an integer, got ${String(partition)}`);
    }
    const target = topic.partitions[partition];
    if (partition < 0 || target === undefined) {
      throw new UnknownPartitionError(topicName, partition, topic.partitionCount);
    }
    return target;
  }
}

/** Opens the logs of partitions [from, to) of `record` in parallel; on any failure closes the others. */
async function openPartitions(
  options: ResolvedBrokerOptions,
  dataDir: string,
  record: TopicRecord,
  from: number,
  to: number,
): Promise<Partition[]> {
  const { config } = record;
  const indexes = Array.from({ length: to - from }, (_, i) => from + i);
  const outcomes = await Promise.allSettled(
    indexes.map((index) =>
      PartitionLog.open({
        directory: partitionDirectory(dataDir, record.name, index),
        durability: config.durability,
        flushIntervalMs: config.flushIntervalMs,
        segmentBytes: config.segmentBytes,
        retentionMs: config.retentionMs,
        retentionBytes: config.retentionBytes,
        segmentMs: options.segmentMs,
        indexIntervalBytes: options.indexIntervalBytes,
        checkpointIntervalMs: options.checkpointIntervalMs,
      }),
    ),
  );
  const logs: PartitionLog[] = [];
  let failure: unknown = null;
  for (const outcome of outcomes) {
    if (outcome.status === 'fulfilled') logs.push(outcome.value);
    else failure ??= outcome.reason;
  }
  if (failure !== null) {
    await Promise.allSettled(logs.map((log) => log.close()));
    throw storageErrorFrom(`opening partition logs of topic '${record.name}'`, failure);
  }
  return logs.map((log, i) => new Partition(record.name, from + i, log, config.durability));
}
