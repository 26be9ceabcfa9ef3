/**
 * The broker engine: topics of partition logs (broker-topics.ts), produce and fetch with
 * long-polling (broker-messages.ts), retention, metadata, and the open/close of all of it. It knows
 * no network: src/spillway-broker.ts (the composition root) adds `listen()`, and the server and the
 * client's in-process transport reach the engine through `BrokerApi`, one service per concern.
 *
 * On disk (topic-directories.ts has the details): `dataDir/topics/__metadata/0/` (the metadata state
 * log, metadata-store.ts) and `dataDir/topics/<name>/<partition>/` (one partition log each: a
 * PartitionLog, or what `BrokerOptions.logFactory` opens).
 *
 * Closing: `close()` rejects every later call with BROKER_CLOSING, answers waiting long-polls with
 * what is there, closes the sessions still open (their connections are dropped, their close hooks
 * run), lets in-flight produces and fetches and the running admin operation finish, then closes
 * every log (sync, clean-shutdown checkpoint).
 */
import { chmodSync, mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Clock, ClockTimer } from '../clock.js';
import { InvalidArgumentError } from '../errors.js';
import type { BrokerApi, DedupStats, StorageStats } from '../protocol/broker-api.js';
import type { ReplicationService } from '../protocol/replication-api.js';
import { fileModes, setFileModes } from '../storage/file-modes.js';
import { PartitionLog } from '../storage/partition-log.js';
import { BrokerIntegrity } from './broker-integrity.js';
import { BrokerMessages } from './broker-messages.js';
import { type BrokerOptions, type ResolvedBrokerOptions, resolveBrokerOptions } from './broker-options.js';
import { BrokerTopics, closeQuietly, openPartitions, partitionLogRequest } from './broker-topics.js';
import { DataDirectoryLock } from './data-directory-lock.js';
import { BrokerDedup, reconcileDedup } from './dedup/broker-dedup.js';
import { DedupStore, dedupTopicName } from './dedup/dedup-store.js';
import { BrokerDelay, type RecoveredDelay } from './delay/broker-delay.js';
import { DelayStore, delayDeadTopicName, delayStateTopicName, delayTopicName } from './delay/delay-store.js';
import { DiskReserve } from './disk-reserve.js';
import { ConsumerOffsetsStore, consumerOffsetsTopicName } from './groups/consumer-offsets-store.js';
import { GroupCoordinator } from './groups/group-coordinator.js';
import { Lifecycle } from './lifecycle.js';
import { MetadataStore, metadataTopicName } from './metadata-store.js';
import {
  type BrokerOpenReport,
  damageFinding,
  findingLine,
  type OpenFinding,
  type PartitionRecovery,
  recoveryFindings,
} from './open-report.js';
import type { Partition } from './partition.js';
import type { PartitionDamage } from './partition-damage.js';
import { BrokerProducers } from './producers/broker-producers.js';
import { ProducerStateStore, producerStateTopicName } from './producers/producer-state-store.js';
import { BrokerQueues } from './queues/broker-queues.js';
import { QueueStateStore, queueStateTopicName } from './queues/queue-state-store.js';
import { Scrubber, type ScrubTarget } from './scrubber.js';
import { SessionRegistry } from './session-registry.js';
import type { StateLog } from './state/state-log.js';
import { guardStateLog } from './state/state-log-guard.js';
import { internalTopic } from './state/state-log-partition.js';
import { Topic } from './topic.js';
import { reconcileTopicDirectories } from './topic-directories.js';
import { isInternalTopicName } from './topic-name.js';
import { BrokerTransactions } from './transactions/broker-transactions.js';
import { halfTopicName } from './transactions/half-log.js';
import { TransactionStore, transactionsTopicName } from './transactions/transaction-store.js';

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
  offsets: ConsumerOffsetsStore;
  queueState: QueueStateStore;
  dedupStore: DedupStore;
  transactionStore: TransactionStore;
  producerState: ProducerStateStore;
  delayStore: DelayStore;
  delayRecovered: RecoveredDelay;
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
  /** Live client sessions (protocol/session.ts); closed, hooks run, before the logs close. */
  readonly sessions: SessionRegistry;
  readonly integrity: BrokerIntegrity;
  readonly groups: GroupCoordinator;
  /** Shared and key_shared consumption (queues/broker-queues.ts), its state in `__queue_state`. */
  readonly queues: BrokerQueues;
  /** Msg-id dedup of topics with dedupWindowMs > 0 (dedup/broker-dedup.ts), its index in `__dedup`. */
  readonly dedup: BrokerDedup;
  /** Transactional messages (transactions/broker-transactions.ts), state in `__transactions` and `__txn_half`. */
  readonly transactions: BrokerTransactions;
  /** Idempotent producers (producers/broker-producers.ts), their state in `__producer_state`. */
  readonly producers: BrokerProducers;
  /** Delayed messages (delay/broker-delay.ts), kept in `__delay`, `__delay_state`, `__delay_dead`. */
  readonly delay: BrokerDelay;
  /** The broker-wide disk reserve (disk-reserve.ts). */
  readonly diskReserve: DiskReserve;
  /** The background scrub of sealed segments (scrubber.ts). */
  readonly scrubber: Scrubber;
  /**
   * Replication (src/cluster/replication/broker-replica-manager.ts), set by `BrokerReplicaManager.attach`;
   * undefined on a broker without a cluster.
   */
  replication: ReplicationService | undefined = undefined;

  private readonly lifecycle = new Lifecycle();
  private readonly metadata: MetadataStore;
  private readonly offsets: ConsumerOffsetsStore;
  private readonly queueState: QueueStateStore;
  private readonly dedupStore: DedupStore;
  private readonly transactionStore: TransactionStore;
  private readonly producerState: ProducerStateStore;
  private readonly delayStore: DelayStore;
  private readonly lock: DataDirectoryLock;
  /** The one clock of this broker (BrokerOptions.clock): every time and timer of the broker and its logs. */
  protected readonly clock: Clock;
  private retentionTimer: ClockTimer | null = null;
  private lastRetention: RetentionPassResult | null = null;
  private closePromise: Promise<void> | null = null;

  protected constructor(parts: BrokerEngineParts) {
    this.dataDir = parts.dataDir;
    this.clock = parts.options.clock;
    this.sessions = new SessionRegistry(this.clock);
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
    this.messages = new BrokerMessages(this.topics, this.lifecycle, this.clock, parts.diskReserve);
    this.scrubber = new Scrubber(() => this.scrubTargets(), {
      bytesPerSecond: parts.options.scrubBytesPerSecond,
      passIntervalMs: parts.options.scrubPassIntervalMs,
      clock: this.clock,
    });
    this.scrubber.start();
    this.integrity = new BrokerIntegrity(this.topics, this.lifecycle, parts.openReport, (record, index) =>
      partitionLogRequest(parts.options, parts.dataDir, record, index),
    );
    const metadataPartition = this.topics.partitionOf(metadataTopicName, 0);
    parts.metadata.state.onAppend = () => this.messages.wake(metadataPartition);
    this.offsets = parts.offsets;
    this.groups = new GroupCoordinator(
      this.topics,
      this.messages,
      parts.offsets,
      this.clock,
      this.lifecycle,
      parts.options.groupRetentionMs,
      !parts.options.clusterMember,
    );
    const offsetsPartition = this.topics.partitionOf(consumerOffsetsTopicName, 0);
    parts.offsets.state.onAppend = () => this.messages.wake(offsetsPartition);
    this.queueState = parts.queueState;
    this.queues = new BrokerQueues({
      topics: this.topics,
      lifecycle: this.lifecycle,
      clock: this.clock,
      store: parts.queueState,
      produce: (topic, partition, batch) => this.messages.produce(topic, partition, batch),
      retentionMs: parts.options.groupRetentionMs,
      // A cluster member serves queues only while it leads `__queue_state` (src/cluster/state-services/).
      clusterMember: parts.options.clusterMember,
    });
    this.messages.onAppended = (topic) => this.queues.appended(topic);
    const queueStatePartition = this.topics.partitionOf(queueStateTopicName, 0);
    parts.queueState.state.onAppend = () => this.messages.wake(queueStatePartition);
    this.dedupStore = parts.dedupStore;
    this.dedup = new BrokerDedup({
      store: parts.dedupStore,
      topics: this.topics,
      clock: this.clock,
      lifecycle: this.lifecycle,
      idsMax: parts.options.dedupIdsMax,
    });
    this.messages.dedup = this.dedup;
    const dedupPartition = this.topics.partitionOf(dedupTopicName, 0);
    parts.dedupStore.state.onAppend = () => this.messages.wake(dedupPartition);
    this.transactionStore = parts.transactionStore;
    this.transactions = new BrokerTransactions({
      topics: this.topics,
      lifecycle: this.lifecycle,
      clock: this.clock,
      diskReserve: parts.diskReserve,
      state: parts.transactionStore.state,
      machine: parts.transactionStore.machine,
      halves: parts.transactionStore.halves,
      // A cluster member coordinates transactions only while it leads their logs (src/cluster/state-services/).
      ...(parts.options.clusterMember ? { cluster: { store: parts.transactionStore } } : {}),
      wake: (partition) => {
        this.messages.wake(partition);
        this.messages.onAppended?.(partition.topic);
      },
    });
    const transactionsPartition = this.topics.partitionOf(transactionsTopicName, 0);
    parts.transactionStore.state.onAppend = () => this.messages.wake(transactionsPartition);
    this.producerState = parts.producerState;
    this.producers = new BrokerProducers({
      store: parts.producerState,
      topics: this.topics,
      lifecycle: this.lifecycle,
      clock: this.clock,
      idleExpiryMs: parts.options.producerIdleExpiryMs,
      producersMax: parts.options.producersMax,
      snapshotIntervalMs: parts.options.producerSnapshotIntervalMs,
    });
    this.messages.producers = this.producers;
    const producerStatePartition = this.topics.partitionOf(producerStateTopicName, 0);
    parts.producerState.state.onAppend = () => this.messages.wake(producerStatePartition);
    this.delayStore = parts.delayStore;
    const delayPartitions = new Map(
      [delayTopicName, delayDeadTopicName, delayStateTopicName].map((name) => [
        name,
        this.topics.partitionOf(name, 0),
      ]),
    );
    const wakeDelayTopic = (name: string) => this.messages.wake(delayPartitions.get(name)!);
    this.delay = new BrokerDelay(
      {
        store: parts.delayStore,
        clock: this.clock,
        lifecycle: this.lifecycle,
        diskReserve: parts.diskReserve,
        topicNamed: (name) => this.topics.topicIfExists(name),
        produce: (topic, partition, batch) => this.messages.produce(topic, partition, batch),
        onInternalAppend: (log) =>
          wakeDelayTopic(log === parts.delayStore.dead.log ? delayDeadTopicName : delayTopicName),
        transactionSettled: (id) => !parts.transactionStore.machine.live.has(id),
        transactionsKeptMax: parts.options.delayTransactionsKeptMax,
      },
      parts.delayRecovered,
    );
    parts.delayStore.state.onAppend = () => wakeDelayTopic(delayStateTopicName);
    this.topics.onTopicDeleted((topic) => this.delay.topicDeleted(topic.name));
    this.messages.scheduleDelayed = (topic, partition, batch) => this.delay.schedule(topic, partition, batch);
    this.transactions.scheduleDelayed = (topic, partition, batch, commitMs) =>
      this.delay.scheduleCommitted(topic, partition, batch, commitMs);
    this.retentionTimer = this.clock.setInterval(
      () => {
        this.lastRetention = this.applyRetention();
      },
      parts.options.retentionCheckIntervalMs,
      { unref: true },
    );
  }

  /**
   * Opens (creating it if needed) the broker in `options.dataDir`: reads the metadata, reconciles it
   * with the directories, opens (recovering) every partition log. A partition whose data is damaged
   * or missing is stopped (PARTITION_DAMAGED, `openReport.damagedPartitions`), the others serve.
   * Fails with CorruptLogError when the metadata is damaged.
   */
  static async open(options: BrokerOptions = {}): Promise<BrokerEngine> {
    return BrokerEngine.recovered(new BrokerEngine(await BrokerEngine.openParts(options)));
  }

  /**
   * Finishes the open of a constructed engine: the work recovery does through the engine itself
   * (commits a crash interrupted). Closes the engine when that fails.
   */
  protected static async recovered<Engine extends BrokerEngine>(engine: Engine): Promise<Engine> {
    try {
      await engine.transactions.recover();
    } catch (error) {
      await engine.close().catch(() => undefined);
      throw error;
    }
    return engine;
  }

  /** The opening work of `open`, for subclasses (the composition root) to construct themselves. */
  protected static async openParts(options: BrokerOptions): Promise<BrokerEngineParts> {
    // Real time, not the clock: only measured for the open report, it decides nothing.
    const startedAt = performance.now();
    const resolved = resolveBrokerOptions(options);
    const dataDir = resolve(resolved.dataDir);
    setFileModes(resolved.fileMode, resolved.directoryMode);
    mkdirSync(dataDir, { recursive: true, mode: fileModes.directory });
    // The data directory itself, even if it existed: what is below it is reachable only through it.
    try {
      chmodSync(dataDir, fileModes.directory);
    } catch (error) {
      // Not ours to change (a mount point owned by another user): its owner decides.
      if ((error as NodeJS.ErrnoException).code !== 'EPERM') throw error;
    }
    const lock = DataDirectoryLock.acquire(dataDir);
    let metadata: MetadataStore | null = null;
    let offsets: ConsumerOffsetsStore | null = null;
    let queueState: QueueStateStore | null = null;
    let dedupStore: DedupStore | null = null;
    let transactionStore: TransactionStore | null = null;
    let producerState: ProducerStateStore | null = null;
    let delayStore: DelayStore | null = null;
    try {
      const diskReserve = new DiskReserve(dataDir, resolved.diskReserveBytes);
      // Every store of broker state opens its state log with these (state/state-log-partition.ts).
      const stateLogOptions = {
        dataDir,
        tuning: resolved.stateLog,
        checkpointIntervalMs: resolved.checkpointIntervalMs,
        clock: resolved.clock,
      };
      metadata = await MetadataStore.open({
        dataDir,
        defaults: resolved.topicDefaults,
        tuning: resolved.stateLog,
        checkpointIntervalMs: resolved.checkpointIntervalMs,
        clock: resolved.clock,
      });
      // In a cluster the replication follower may write this log: nothing is written until this broker leads it.
      offsets = await ConsumerOffsetsStore.open({
        ...stateLogOptions,
        ...(resolved.clusterMember ? { writeAtOpen: false } : {}),
      });
      const records = metadata.records();
      const reconciliation = reconcileTopicDirectories(dataDir, records, resolved.clock.nowMs());
      const kept = new Set(reconciliation.topics.map((topic) => topic.name));
      for (const record of records) {
        if (!kept.has(record.name)) await metadata.deleteTopic(record.name);
      }
      const opened = await Promise.allSettled(
        reconciliation.topics.map((record) =>
          openPartitions(resolved, dataDir, record, 0, record.partitionCount, true),
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
      const internal = internalTopic(metadataTopicName, metadata.partition);
      const offsetsTopic = internalTopic(consumerOffsetsTopicName, offsets.partition);
      // In a cluster the follower may write this log: nothing is written until this broker leads it.
      queueState = await QueueStateStore.open({
        ...stateLogOptions,
        ...(resolved.clusterMember ? { writeAtOpen: false } : {}),
      });
      const queueInternal = internalTopic(queueStateTopicName, queueState.partition);
      producerState = await ProducerStateStore.open(stateLogOptions);
      delayStore = await DelayStore.open({
        ...stateLogOptions,
        segmentBytes: resolved.delaySegmentBytes,
        // In a cluster the follower may write these logs: recovered by a term of the service only.
        ...(resolved.clusterMember ? { writeAtOpen: false } : {}),
      });
      const producerInternal = internalTopic(producerStateTopicName, producerState.partition);
      dedupStore = await DedupStore.open(stateLogOptions);
      const dedupInternal = internalTopic(dedupTopicName, dedupStore.partition);
      transactionStore = await TransactionStore.open({
        dataDir,
        tuning: resolved.stateLog,
        checkpointIntervalMs: resolved.checkpointIntervalMs,
        flushIntervalMs: resolved.topicDefaults.flushIntervalMs,
        clock: resolved.clock,
        ...(resolved.clusterMember ? { writeAtOpen: false } : {}),
      });
      const transactionsInternal = internalTopic(transactionsTopicName, transactionStore.partition);
      const halfInternal = internalTopic(halfTopicName, transactionStore.halfPartition);
      const guarded = [
        {
          name: consumerOffsetsTopicName,
          partition: offsets.partition,
          state: offsets.state,
          holds: 'committed offsets and broadcast positions of consumer groups',
        },
        {
          name: queueStateTopicName,
          partition: queueState.partition,
          state: queueState.state,
          holds: 'ack state of shared and key_shared queues',
        },
        {
          name: transactionsTopicName,
          partition: transactionStore.partition,
          state: transactionStore.state,
          holds: 'open and committing transactions (their decisions and check-back clocks)',
        },
        {
          name: producerStateTopicName,
          partition: producerState.partition,
          state: producerState.state,
          holds: 'idempotent producer ids, epochs and sequences',
        },
        {
          name: delayStateTopicName,
          partition: delayStore.statePartition,
          state: delayStore.state,
          holds: 'which delayed messages fired and where firing resumes',
        },
      ];
      const guardFindings: OpenFinding[] = [];
      for (const name of resolved.resetStateLogs) {
        if (!guarded.some((log) => log.name === name)) {
          throw new InvalidArgumentError(
            `broker option resetStateLogs: '${name}' is not a state log that can be reset (${guarded.map((log) => log.name).join(', ')})`,
          );
        }
      }
      // A cluster member's replicated state logs (docs/CLUSTER.md "Internal state logs as partitions",
      // the list handed down by the cluster wiring) are not guarded: empty is what a follower that
      // truncated to follow its leader may hold (the replicas keep the state), and the guard's
      // snapshot would be a local write into a partition only its leader's service writes. A restart
      // after such a truncation refused to open.
      for (const log of guarded) {
        if (resolved.replicatedStateLogs.has(log.name)) continue;
        const finding = await guardStateLog<unknown>({
          metadata,
          ...log,
          state: log.state as StateLog<unknown>,
          resetStateLogs: resolved.resetStateLogs,
          nowMs: resolved.clock.nowMs(),
        });
        if (finding !== null) guardFindings.push(finding);
      }
      // Not guarded: a lost __dedup is rebuilt here from the data logs (every mark starts at 0).
      // Before anything is served: what a crash left appended but unindexed is indexed now. A
      // cluster member keeps no index in __dedup (each partition leader rebuilds its own).
      if (!resolved.clusterMember) await reconcileDedup(dedupStore, topics, resolved.clock.nowMs());
      const topicsByName = new Map(topics.map((topic) => [topic.name, topic]));
      const transactionMachine = transactionStore.machine;
      const delayRecovered = resolved.clusterMember
        ? BrokerDelay.notRecovered(resolved.clock)
        : await BrokerDelay.recover(
            delayStore,
            resolved.clock,
            (name) => topicsByName.get(name),
            (id) => !transactionMachine.live.has(id),
          );
      const delayInternal = [
        internalTopic(delayTopicName, delayStore.delay),
        internalTopic(delayStateTopicName, delayStore.statePartition),
        internalTopic(delayDeadTopicName, delayStore.dead),
      ];
      const partitions: PartitionRecovery[] = [];
      const damagedPartitions: PartitionDamage[] = [];
      const findings: OpenFinding[] = [
        ...metadata.notes,
        ...guardFindings,
        ...reconciliation.warnings.map((what) => ({
          severity: 'warning' as const,
          what,
          fix: 'see docs/OPERATIONS.md, "The data directory"',
        })),
        ...reconciliation.unexplained.map(({ what, fix }) => ({ severity: 'warning' as const, what, fix })),
      ];
      for (const topic of topics) {
        for (const partition of topic.partitions) {
          const damage = partition.damage;
          if (damage !== null) {
            damagedPartitions.push(damage);
            findings.push(damageFinding(damage));
            continue;
          }
          const recovery = partition.log.recovery;
          partitions.push({ topic: topic.name, partition: partition.index, recovery });
          findings.push(...recoveryFindings(topic.name, partition.index, recovery));
        }
      }
      const severityOrder = { damage: 0, warning: 1, info: 2 } as const;
      findings.sort((a, b) => severityOrder[a.severity] - severityOrder[b.severity]);
      const report: BrokerOpenReport = {
        dataDir,
        durationMs: performance.now() - startedAt,
        topicCount: topics.length,
        partitionCount: topics.reduce((sum, topic) => sum + topic.partitionCount, 0),
        partitions,
        stateLogs: [
          { name: metadata.state.name, recovery: metadata.state.recovery },
          { name: offsets.state.name, recovery: offsets.state.recovery },
          { name: queueState.state.name, recovery: queueState.state.recovery },
          { name: dedupStore.state.name, recovery: dedupStore.state.recovery },
          { name: transactionStore.state.name, recovery: transactionStore.state.recovery },
          { name: producerState.state.name, recovery: producerState.state.recovery },
          { name: delayStore.state.name, recovery: delayStore.state.recovery },
        ],
        delay: delayRecovered.report,
        damagedPartitions,
        orphanTopicDirectories: reconciliation.orphanTopicDirectories,
        missingPartitionDirectories: reconciliation.missingPartitionDirectories,
        strayPartitionDirectories: reconciliation.strayPartitionDirectories,
        completedDeletions: reconciliation.completedDeletions,
        findings,
        warnings: findings.map(findingLine),
      };
      return {
        options: resolved,
        dataDir,
        lock,
        metadata,
        offsets,
        queueState,
        dedupStore,
        producerState,
        transactionStore,
        topics: [
          internal,
          offsetsTopic,
          queueInternal,
          dedupInternal,
          producerInternal,
          transactionsInternal,
          halfInternal,
          ...delayInternal,
          ...topics,
        ],
        delayStore,
        delayRecovered,
        openReport: report,
        diskReserve,
      };
    } catch (error) {
      await dedupStore?.close().catch(() => undefined);
      await transactionStore?.close().catch(() => undefined);
      await delayStore?.close().catch(() => undefined);
      await queueState?.close().catch(() => undefined);
      await producerState?.close().catch(() => undefined);
      await metadata?.close().catch(() => undefined);
      await offsets?.close().catch(() => undefined);
      lock.release();
      throw error;
    }
  }

  /** What the msg-id dedup index holds (for metrics). */
  dedupStats(): DedupStats {
    return this.dedup.stats;
  }

  /** Disk use, the reserve and the scrub's findings (for metrics and health). */
  storageStats(): StorageStats {
    let preallocatedBytes = 0;
    for (const topic of this.topics.all()) {
      for (const partition of topic.partitions) {
        const log = partition.openLog;
        if (log instanceof PartitionLog) preallocatedBytes += log.preallocatedBytes;
      }
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
        // Segment files only (a log from another LogFactory has none); stopped partitions wait for repair.
        const log = partition.openLog;
        if (log instanceof PartitionLog) targets.push({ topic: topic.name, partition: partition.index, log });
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
   * `retentionCheckIntervalMs` by itself; callable directly (tests, operators). `nowMs`: wall time,
   * the clock's by default.
   */
  applyRetention(nowMs = this.clock.nowMs()): RetentionPassResult {
    const result: RetentionPassResult = { deletedSegments: 0, deletedBytes: 0, failures: [] };
    if (this.lifecycle.closing) return result;
    for (const topic of this.topics.all()) {
      for (const partition of topic.partitions) {
        const log = partition.openLog;
        if (log === null) continue; // stopped: its files wait for a repair
        try {
          const done = log.applyRetention(nowMs);
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
    // At once: no session opens from here on; hooks may still use the broker's state.
    this.groups.closeAll();
    const sessionsClosed = this.sessions.closeAll('the broker is closing');
    this.clock.clearTimer(this.retentionTimer);
    this.retentionTimer = null;
    await this.scrubber.stop();
    this.messages.wakeAll();
    this.queues.close();
    this.dedup.close();
    this.transactions.close();
    await sessionsClosed;
    await this.topics.idle();
    await this.lifecycle.drained();
    // The last sequence snapshots, while the partition logs are still open.
    await this.producers.close().catch(() => undefined);
    // Stops firing at once; finishes the rounds in flight and commits the clean flag meanwhile.
    const delayStopped = this.delay.stop();
    await sessionsClosed;
    await this.topics.idle();
    await this.lifecycle.drained();
    await delayStopped;
    const partitions = [...this.topics.all()]
      .filter((topic) => !isInternalTopicName(topic.name))
      .flatMap((topic) => topic.partitions);
    const outcomes = await Promise.allSettled([
      ...partitions.map((partition) => partition.openLog?.close()),
      this.metadata.close(),
      this.offsets.close(),
      this.queueState.close(),
      this.dedupStore.close(),
      this.transactionStore.close(),
      this.producerState.close(),
      this.delayStore.close(),
    ]);
    this.lock.release();
    const failure = outcomes.find((outcome) => outcome.status === 'rejected');
    if (failure !== undefined) throw failure.reason;
  }
}
