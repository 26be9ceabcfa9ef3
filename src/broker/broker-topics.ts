/**
 * The topic service of a broker: the topics it serves, their partitions, and topic administration
 * (create, delete, add partitions). It owns the metadata store and the topic directories.
 *
 * Concurrency: one event loop. Administration is serialized, one operation at a time, so the
 * metadata and the directories change in one order. Every step that changes the disk is ordered so
 * that a crash between two steps is either invisible or completed at the next open:
 *  - create:        mark the topic directory as being created (`.creating`), open the logs,
 *                   fsync the parents, record the topic, remove the mark, then serve. A crash
 *                   before the record leaves a marked directory, removed at the next open; a
 *                   failure (a full disk, out of file descriptors) removes it at once.
 *  - addPartitions: open the new logs, fsync the topic directory, record the count, then serve them.
 *  - delete:        stop serving, close the logs, rename to `<name>.deleted-<ms>`, record the
 *                   deletion, remove the renamed directory.
 * Lookups (`topicNamed`, `partitionOf`) run concurrently with everything.
 */
import { existsSync, mkdirSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  InvalidArgumentError,
  SpillwayError,
  storageErrorFrom,
  TopicExistsError,
  UnknownPartitionError,
  UnknownTopicError,
} from '../errors.js';
import { partitionCountMax, topicCountMax } from '../limits.js';
import type {
  ListTopicsOptions,
  TopicConfig,
  TopicDescription,
  TopicService,
} from '../protocol/broker-api.js';
import { fsyncDirectorySync } from '../storage/checkpoint-file.js';
import { fileModes } from '../storage/file-modes.js';
import type { LogOpenRequest, LogStore } from '../storage/log-store.js';
import { releaseSegmentSpace } from '../storage/release-space.js';
import type { ResolvedBrokerOptions } from './broker-options.js';
import type { DiskReserve } from './disk-reserve.js';
import type { Lifecycle } from './lifecycle.js';
import type { MetadataStore, TopicRecord } from './metadata-store.js';
import { Partition } from './partition.js';
import {
  damageFromError,
  isCorruptLogError,
  missingDirectoryDamage,
  type PartitionDamage,
} from './partition-damage.js';
import { Topic } from './topic.js';
import { type ResolvedTopicConfig, resolveTopicConfig } from './topic-config.js';
import {
  asidePath,
  creatingMarkerName,
  partitionDirectory,
  topicDirectory,
  topicsDirectory,
} from './topic-directories.js';
import { isInternalTopicName, validateUserTopicName } from './topic-name.js';

export function checkInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

/** Closes every log, waiting for all, ignoring errors (used to undo a half-done operation). */
export async function closeQuietly(partitions: Partition[]): Promise<void> {
  await Promise.allSettled(partitions.map((partition) => partition.openLog?.close()));
}

/** A topic or partition the cluster's records hold that this broker has not created yet (retriable). */
function notAppliedYet(what: string): SpillwayError {
  return new SpillwayError(
    'NOT_LEADER',
    `${what} exists in the cluster but this broker has not applied its assignment yet`,
  );
}

function refuseInternal(name: string, what: string): void {
  if (isInternalTopicName(name)) {
    throw new InvalidArgumentError(`topic '${name}' is internal: it cannot be ${what} by a client`);
  }
}

/** A cluster topic record's change between two reads of the records (BrokerTopics.clusterTopicsChanged). */
export interface ClusterTopicChange {
  topic: string;
  kind: 'grown' | 'deleted' | 'recreated';
}
export class BrokerTopics implements TopicService {
  private readonly options: ResolvedBrokerOptions;
  private readonly dataDir: string;
  private readonly lifecycle: Lifecycle;
  private readonly metadata: MetadataStore;
  private readonly diskReserve: DiskReserve;
  private readonly topics = new Map<string, Topic>();
  private readonly deletionListeners: Array<(topic: Topic) => void> = [];
  private readonly growthListeners: Array<(topic: Topic) => void> = [];
  /** Tail of the queue of topic administration operations. */
  private adminQueue: Promise<void> = Promise.resolve();
  /**
   * A cluster member's view of the cluster's topic records (`useClusterRecords`): the partition count
   * the records give a topic, undefined when they hold none. Null on a single broker.
   */
  private clusterPartitionCount: ((name: string) => number | undefined) | null = null;
  private readonly clusterTopicListeners: Array<(change: ClusterTopicChange) => void> = [];

  constructor(
    options: ResolvedBrokerOptions,
    dataDir: string,
    lifecycle: Lifecycle,
    metadata: MetadataStore,
    topics: Topic[],
    diskReserve: DiskReserve,
  ) {
    this.options = options;
    this.dataDir = dataDir;
    this.lifecycle = lifecycle;
    this.metadata = metadata;
    this.diskReserve = diskReserve;
    for (const topic of topics) this.topics.set(topic.name, topic);
  }

  /** The config a topic gets for what its creator leaves out (broker options). */
  get topicDefaults(): ResolvedTopicConfig {
    return this.options.topicDefaults;
  }

  /**
   * Creates topic `name`. `createdAtMs` (cluster wiring only) is the creation time to record instead
   * of now: a cluster member records the cluster topic's, so a local topic of an earlier incarnation
   * of the same name (deleted and created again) is recognised (docs/CLUSTER.md, "Topics").
   */
  async create(name: string, config?: TopicConfig, createdAtMs?: number): Promise<TopicDescription> {
    this.lifecycle.assertOpen();
    if (createdAtMs !== undefined) checkInteger('createdAtMs', createdAtMs, 0, Number.MAX_SAFE_INTEGER);
    validateUserTopicName(name);
    const resolved = resolveTopicConfig(config, this.options.topicDefaults);
    if (this.topics.has(name)) throw new TopicExistsError(name);
    return this.administer(async () => {
      if (this.topics.has(name)) throw new TopicExistsError(name);
      if (this.topics.size >= topicCountMax) {
        throw new InvalidArgumentError(`the broker already holds the maximum of ${topicCountMax} topics`);
      }
      this.diskReserve.admit(0, `creating topic '${name}'`);
      const directory = topicDirectory(this.dataDir, name);
      // A directory the metadata does not know (open reported it): keep its content, out of the way.
      if (existsSync(directory))
        renameSync(directory, asidePath(directory, 'orphan', this.options.clock.nowMs()));
      const record: TopicRecord = {
        name,
        partitionCount: resolved.partitions,
        createdAtMs: createdAtMs ?? this.options.clock.nowMs(),
        config: resolved,
      };
      const marker = join(directory, creatingMarkerName);
      let partitions: Partition[] = [];
      try {
        mkdirSync(directory, { mode: fileModes.directory });
        writeFileSync(marker, '', { mode: fileModes.file });
        fsyncDirectorySync(topicsDirectory(this.dataDir));
        partitions = await openPartitions(this.options, this.dataDir, record, 0, record.partitionCount);
        fsyncDirectorySync(directory);
        await this.metadata.putTopic(record);
      } catch (error) {
        // Nothing half-made stays: the logs are closed (their descriptors freed) and removed.
        await closeQuietly(partitions);
        rmSync(directory, { recursive: true, force: true });
        throw storageErrorFrom(`creating topic '${name}'`, error);
      }
      try {
        unlinkSync(marker);
        fsyncDirectorySync(directory);
      } catch {
        // The topic is recorded: a mark left on a known topic is removed by the next open.
      }
      const topic = new Topic(record, partitions);
      this.topics.set(name, topic);
      return topic.describe();
    });
  }

  async delete(name: string): Promise<void> {
    this.lifecycle.assertOpen();
    this.localTopic(name);
    refuseInternal(name, 'deleted');
    return this.administer(async () => {
      const topic = this.localTopic(name);
      // From here on the topic is gone for every request; those waiting wake and fail.
      topic.deleted = true;
      this.topics.delete(name);
      for (const listener of this.deletionListeners) listener(topic);
      await closeQuietly(topic.partitions);
      const directory = topicDirectory(this.dataDir, name);
      const aside = asidePath(directory, 'deleted', this.options.clock.nowMs());
      try {
        if (existsSync(directory)) {
          renameSync(directory, aside);
          fsyncDirectorySync(topicsDirectory(this.dataDir));
        }
        await this.metadata.deleteTopic(name);
      } catch (error) {
        // The topic is gone from memory; the next open completes what is left (topic-directories.ts).
        throw storageErrorFrom(`deleting topic '${name}'`, error);
      }
      // Mapped segment files keep their blocks until their maps are collected: give them back now.
      releaseSegmentSpace(aside);
      await rm(aside, { recursive: true, force: true });
      // The space is free now: writes refused for the reserve may go on at once.
      this.diskReserve.refresh();
    });
  }

  list(options: ListTopicsOptions = {}): TopicDescription[] {
    this.lifecycle.assertOpen();
    if (typeof options !== 'object' || options === null) {
      throw new InvalidArgumentError('list options must be an object');
    }
    const internal = options.internal ?? false;
    if (typeof internal !== 'boolean')
      throw new InvalidArgumentError('list option internal must be a boolean');
    return [...this.topics.values()]
      .filter((topic) => internal || !isInternalTopicName(topic.name))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((topic) => topic.describe());
  }

  describe(name: string): TopicDescription {
    this.lifecycle.assertOpen();
    return this.localTopic(name).describe();
  }

  async addPartitions(name: string, count: number): Promise<TopicDescription> {
    this.lifecycle.assertOpen();
    checkInteger('partition count to add', count, 1, partitionCountMax);
    const checkRoom = (topic: Topic): void => {
      if (topic.partitionCount + count > partitionCountMax) {
        throw new InvalidArgumentError(
          `topic '${name}' has ${topic.partitionCount} partitions: adding ${count} would exceed the limit of ${partitionCountMax}`,
        );
      }
    };
    checkRoom(this.localTopic(name));
    refuseInternal(name, 'given partitions');
    return this.administer(async () => {
      const topic = this.localTopic(name);
      checkRoom(topic);
      this.diskReserve.admit(0, `adding partitions to topic '${name}'`);
      const from = topic.partitionCount;
      const to = from + count;
      for (let index = from; index < to; index++) {
        // Left by an addPartitions a crash interrupted (holds nothing acknowledged): keep it aside.
        const directory = partitionDirectory(this.dataDir, name, index);
        if (existsSync(directory))
          renameSync(directory, asidePath(directory, 'stray', this.options.clock.nowMs()));
      }
      const record = topic.record(to);
      let added: Partition[];
      try {
        added = await openPartitions(this.options, this.dataDir, record, from, to);
      } catch (error) {
        for (let index = from; index < to; index++) {
          rmSync(partitionDirectory(this.dataDir, name, index), { recursive: true, force: true });
        }
        throw storageErrorFrom(`adding partitions to topic '${name}'`, error);
      }
      try {
        fsyncDirectorySync(topicDirectory(this.dataDir, name));
        await this.metadata.putTopic(record);
      } catch (error) {
        await closeQuietly(added);
        for (let index = from; index < to; index++) {
          rmSync(partitionDirectory(this.dataDir, name, index), { recursive: true, force: true });
        }
        throw storageErrorFrom(`adding partitions to topic '${name}'`, error);
      }
      topic.addPartitions(added);
      for (const listener of this.growthListeners) listener(topic);
      return topic.describe();
    });
  }

  /** Called with a topic right after delete() stopped serving it (its logs are still open). */
  onTopicDeleted(listener: (topic: Topic) => void): void {
    this.deletionListeners.push(listener);
  }

  /** Called with a topic right after addPartitions() started serving its new partitions. */
  onPartitionsAdded(listener: (topic: Topic) => void): void {
    this.growthListeners.push(listener);
  }

  /**
   * Cluster: `listener` hears of changes to the records of topics this broker holds no replica of
   * (its own topics' changes reach the local hooks above): partitions added, the topic deleted, or
   * deleted and created again between two reads of the records.
   */
  onClusterTopicChanged(listener: (change: ClusterTopicChange) => void): void {
    this.clusterTopicListeners.push(listener);
  }

  /** Cluster: the records changed (assignment-watcher.ts, after each read of them). */
  clusterTopicsChanged(changes: readonly ClusterTopicChange[]): void {
    for (const change of changes) {
      if (this.topics.has(change.topic)) continue;
      for (const listener of this.clusterTopicListeners) listener(change);
    }
  }

  /**
   * Serves internal topic `topic`, whose state log is opened after the broker (the replica state
   * `__leader_epochs` of a cluster member): listed with `internal: true`, described and read like the
   * others, read-only for clients.
   */
  serveInternal(topic: Topic): void {
    if (!isInternalTopicName(topic.name)) {
      throw new InvalidArgumentError(`topic '${topic.name}' is not an internal topic`);
    }
    if (this.topics.has(topic.name)) throw new TopicExistsError(topic.name);
    this.topics.set(topic.name, topic);
  }

  /** Stops serving internal topic `name` (served by `serveInternal`; its log is about to close). */
  withdrawInternal(name: string): void {
    if (isInternalTopicName(name)) this.topics.delete(name);
  }

  /** Every topic served now, internal ones included. */
  all(): IterableIterator<Topic> {
    return this.topics.values();
  }

  /** True when a topic named `name` exists (internal ones included). */
  has(name: string): boolean {
    return this.topics.has(name);
  }

  /**
   * In a cluster (set by the cluster wiring when the broker joins): `partitionCount(name)` is the
   * partition count the cluster's records (this broker's view of etcd) give topic `name`, undefined
   * when they hold no such topic. A topic (or partition) the records hold but this broker has not
   * created yet — its assignment is not applied — is then NOT_LEADER (retriable: the client refreshes
   * its metadata and sends again) instead of UNKNOWN_TOPIC / UNKNOWN_PARTITION.
   */
  useClusterRecords(partitionCount: (name: string) => number | undefined): void {
    this.clusterPartitionCount = partitionCount;
  }

  /** The topic named `name` here, or UnknownTopicError (administration and describe: local only). */
  private localTopic(name: string): Topic {
    if (typeof name !== 'string') throw new InvalidArgumentError('topic must be a string');
    const topic = this.topics.get(name);
    if (topic === undefined) throw new UnknownTopicError(name);
    return topic;
  }

  /**
   * The topic named `name`, or UnknownTopicError (NOT_LEADER in a cluster when the cluster's records
   * hold it but this broker has not created it yet: see useClusterRecords).
   */
  topicNamed(name: string): Topic {
    const topic = typeof name === 'string' ? this.topics.get(name) : undefined;
    if (topic !== undefined) return topic;
    if (typeof name === 'string' && this.clusterPartitionCount?.(name) !== undefined)
      throw notAppliedYet(name);
    return this.localTopic(name); // throws what it refuses
  }

  /**
   * The partition count of topic `name` as the cluster has it (its records: a broker that holds no
   * replica of the topic knows it too), else of the local topic; UnknownTopicError when neither has
   * it. For services that plan over a topic's partitions without reading them (group assignment).
   */
  partitionCount(name: string): number {
    const clusterCount = typeof name === 'string' ? this.clusterPartitionCount?.(name) : undefined;
    return clusterCount ?? this.localTopic(name).partitionCount;
  }

  /** The topic named `name`, or undefined (never created, or deleted). */
  topicIfExists(name: string): Topic | undefined {
    return this.topics.get(name);
  }

  /** Partition `partition` of topic `topicName`, or UnknownTopicError / UnknownPartitionError. */
  partitionOf(topicName: string, partition: number): Partition {
    const topic = this.topicNamed(topicName);
    if (typeof partition !== 'number' || !Number.isSafeInteger(partition)) {
      throw new InvalidArgumentError(`partition must be an integer, got ${String(partition)}`);
    }
    const target = topic.partitions[partition];
    if (partition < 0 || target === undefined) {
      const clusterCount = this.clusterPartitionCount?.(topicName);
      if (partition >= 0 && clusterCount !== undefined && partition < clusterCount) {
        throw notAppliedYet(`${topicName}/${partition}`);
      }
      throw new UnknownPartitionError(topicName, partition, topic.partitionCount);
    }
    return target;
  }

  /** Resolves when the running and queued administration operations have finished. */
  idle(): Promise<void> {
    return this.adminQueue;
  }

  /**
   * Runs `operation` after every admin operation queued before it. An operation accepted before
   * close() still runs (close waits for the queue); calls after close() never get here. Also used
   * by partition repair (broker-integrity.ts), which must not overlap a delete of the same topic.
   */
  administer<T>(operation: () => Promise<T>): Promise<T> {
    const run = this.adminQueue.then(operation);
    this.adminQueue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }
}

/** What the broker asks its log factory for to open partition `index` of `record`. */
export function partitionLogRequest(
  options: ResolvedBrokerOptions,
  dataDir: string,
  record: TopicRecord,
  index: number,
): LogOpenRequest {
  const { config } = record;
  return {
    topic: record.name,
    partition: index,
    directory: partitionDirectory(dataDir, record.name, index),
    durability: config.durability,
    flushIntervalMs: config.flushIntervalMs,
    segmentBytes: config.segmentBytes,
    retentionMs: config.retentionMs,
    retentionBytes: config.retentionBytes,
    segmentMs: options.segmentMs,
    indexIntervalBytes: options.indexIntervalBytes,
    checkpointIntervalMs: options.checkpointIntervalMs,
    clock: options.clock,
  };
}

/**
 * Opens the logs of partitions [from, to) of `record` in parallel, through `options.logFactory`;
 * on any failure closes the others. With `stopDamaged` (the broker's open), a partition whose
 * directory is missing or whose log is damaged (CorruptLogError) is returned stopped instead
 * (partition.ts): only that partition is out of service. Otherwise (create, addPartitions) the
 * directories are created and every failure fails the whole call.
 */
export async function openPartitions(
  options: ResolvedBrokerOptions,
  dataDir: string,
  record: TopicRecord,
  from: number,
  to: number,
  stopDamaged = false,
): Promise<Partition[]> {
  const indexes = Array.from({ length: to - from }, (_, i) => from + i);
  const outcomes = await Promise.allSettled(
    indexes.map(async (index): Promise<LogStore | PartitionDamage> => {
      const request = partitionLogRequest(options, dataDir, record, index);
      if (stopDamaged && !existsSync(request.directory)) {
        return missingDirectoryDamage(record.name, index, request.directory);
      }
      mkdirSync(request.directory, { recursive: true, mode: fileModes.directory });
      try {
        return await options.logFactory(request);
      } catch (error) {
        if (stopDamaged && isCorruptLogError(error)) {
          return damageFromError(record.name, index, request.directory, error);
        }
        throw error;
      }
    }),
  );
  const opened: Array<LogStore | PartitionDamage> = [];
  let failure: unknown = null;
  for (const outcome of outcomes) {
    if (outcome.status === 'fulfilled') opened.push(outcome.value);
    else failure ??= outcome.reason;
  }
  if (failure !== null) {
    await Promise.allSettled(opened.map((log) => ('summary' in log ? undefined : log.close())));
    throw storageErrorFrom(`opening partition logs of topic '${record.name}'`, failure);
  }
  return opened.map((log, i) => new Partition(record.name, from + i, log, record.config.durability));
}
