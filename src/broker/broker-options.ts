/**
 * Options of `Broker.open()`. Topic defaults (durability, flush interval, retention, segment size,
 * dedup window) apply to topics created later without those fields and are then stored with the
 * topic; the other options apply to the whole broker.
 */

import { type Clock, systemClock } from '../clock.js';
import type { ClusterOptions } from '../cluster/control/cluster-options.js';
import type { IsrChanger, ReplicaManager } from '../cluster/partition-role.js';
import { InvalidArgumentError } from '../errors.js';
import {
  checkpointIntervalMsDefault,
  checkpointIntervalMsMax,
  dedupIdsMaxDefault,
  delaySegmentBytes as delaySegmentBytesDefault,
  delayTransactionsKeptMax as delayTransactionsKeptMaxDefault,
  flushIntervalMsDefault,
  groupRetentionMsDefault,
  indexIntervalBytesDefault,
  indexIntervalBytesMax,
  producerIdleExpiryMsDefault,
  producerSnapshotIntervalMsDefault,
  producersMaxDefault,
  producersMaxMax,
  retentionCheckIntervalMsDefault,
  scrubBytesPerSecondDefault,
  scrubPassIntervalMsDefault,
  segmentBytesDefault,
  segmentBytesMax,
  segmentBytesMin,
  segmentMsDefault,
  timerDelayMsMax,
} from '../limits.js';
import type { Durability } from '../protocol/types.js';
import type { LogFactory } from '../storage/log-store.js';
import { PartitionLog } from '../storage/partition-log.js';
import type { BrokerEngine } from './broker-engine.js';
import type { StateLogTuning } from './metadata-store.js';
import { type ResolvedTopicConfig, resolveTopicConfig } from './topic-config.js';
import { isInternalTopicName } from './topic-name.js';

/**
 * Cluster membership (docs/CLUSTER.md; src/cluster/control/broker-cluster.ts). Without it (the
 * default) the broker is a single broker and nothing of the cluster is loaded.
 */
export interface BrokerClusterOptions<Engine = BrokerEngine> extends ClusterOptions {
  /**
   * Builds the replication data plane (src/cluster/replication/) for this broker with the control
   * plane's IsrChanger. Required: without a data plane the broker refuses to open in cluster mode.
   */
  replicaManager?: (broker: Engine, isrChanger: IsrChanger) => ReplicaManager;
  /** Where cluster events are logged, one line each. Default: stderr. */
  log?: (line: string) => void;
  /**
   * The token this broker presents to the other brokers (its followers' REPLICA_FETCH to leaders)
   * when they run with authentication: a principal holding cluster `admin` (docs/SECURITY.md).
   * Used by the default data plane (`replicaManager` unset). Default: none.
   */
  token?: string;
  /**
   * The internal topics whose logs the cluster replicates (`replicatedStateServices` of
   * src/cluster/state-services/replicated-state-topics.ts, handed down by `Broker.open`, which sets
   * it: the engine cannot import the cluster layer). Their state logs are not guarded at open (docs/STATE.md).
   */
  replicatedStateLogs?: readonly string[];
}

export interface BrokerOptions {
  /** Where `topics/<name>/<partition>/` (and the internal `topics/__metadata/0/`) live. Default './spillway-data'. */
  dataDir?: string;
  /** Default durability of new topics. Default 'interval'. */
  durability?: Durability;
  /** Default flush interval of new topics with durability 'interval'. Default 200 ms. */
  flushIntervalMs?: number;
  /** Default segment size of new topics. Default 256 MiB (the active segment grows to it in steps). */
  segmentBytes?: number;
  /** Default time retention of new topics; -1 (default): forever. */
  retentionMs?: number;
  /** Default size retention per partition of new topics; -1 (default): no limit. */
  retentionBytes?: number;
  /** Default msg-id dedup window of new topics; 0 (default): disabled. */
  dedupWindowMs?: number;
  /**
   * Msg ids the dedup index holds at most, all topics together; past it, produces with new msgIds
   * to dedup topics are refused with BACKPRESSURE until old ids expire. Default 10 000 000.
   */
  dedupIdsMax?: number;
  /** Time between two retention passes over every partition. Default 5 minutes. */
  retentionCheckIntervalMs?: number;
  /** Every partition log: roll the active segment once it is this old. Default 7 days. */
  segmentMs?: number;
  /** Every partition log: bytes between two sparse index entries. Default 4096. */
  indexIntervalBytes?: number;
  /** Every partition log: interval between recovery-point checkpoint writes. Default 5 s. */
  checkpointIntervalMs?: number;
  /**
   * For tests and embedding: the broker's one clock (wall time, monotonic time, timers), handed to
   * every partition log and every timed feature. Default `systemClock`; tests pass a ManualClock.
   */
  clock?: Clock;
  /**
   * For tests and embedding: opens the log of each partition (`LogStore`). Default: PartitionLog
   * (segment files). `memoryLogFactory` (storage/memory-log.ts) keeps every log in memory; a factory
   * returning FaultyLog wrappers (storage/faulty-log.ts) injects storage faults. The broker still owns
   * `dataDir`: its metadata and one (possibly empty) directory per partition. The internal state
   * logs (`__metadata`) are always PartitionLogs on disk.
   */
  logFactory?: LogFactory;
  /**
   * Internal state logs (`__metadata`): segment size (default 4 MiB) and the bytes of changes
   * between two snapshots, at least (default 1 MiB). For tuning and tests.
   */
  stateLog?: StateLogTuning;
  /**
   * Free space to keep on the data directory's file system: below it, produce, topic creation and
   * adding partitions fail with STORAGE_FULL (reads and deletions work). Default: 5% of the file
   * system, at most 1 GiB. 0: no reserve.
   */
  diskReserveBytes?: number;
  /** Rate of the background scrub of sealed segments (CRC32C re-verification). Default 16 MiB/s; 0: off. */
  scrubBytesPerSecond?: number;
  /** Pause between two scrub passes. Default 24 hours. */
  scrubPassIntervalMs?: number;
  /**
   * Permission bits of files the broker creates (storage/file-modes.ts), whatever the umask. Default
   * 0o600 (owner only). Process-wide: the last broker opened sets them.
   */
  fileMode?: number;
  /** Permission bits of directories the broker creates, and of the data directory. Default 0o700. */
  directoryMode?: number;
  /**
   * Internal state logs (e.g. `__consumer_offsets`) allowed to start empty although the broker created
   * them before and their log is now empty or missing (state/state-log-guard.ts). Without it such a
   * log refuses the open with CORRUPT_LOG. For an operator who has no backup and accepts the loss.
   */
  resetStateLogs?: string[];
  /**
   * How long a consumer group with no members keeps its committed offsets and positions before they
   * are deleted and the group is forgotten (group-coordinator.ts); a shared/key_shared queue group
   * idle this long is forgotten too, with its ack state (broker-queues.ts). Default 7 days.
   */
  groupRetentionMs?: number;
  /**
   * Idempotent producers: a producer id unused this long is dropped with its sequences (its next
   * batch gets UNKNOWN_PRODUCER_ID and the client registers again). Default 7 days.
   */
  producerIdleExpiryMs?: number;
  /** Idempotent producers held at once; one more registration drops the one idle the longest. Default 100,000. */
  producersMax?: number;
  /** How often changed partitions get a sequence snapshot in `__producer_state`. Default 5,000 ms. */
  producerSnapshotIntervalMs?: number;
  /**
   * Segment size of `__delay` and `__delay_dead` (the largest delayed batch is this). Default 32 MiB;
   * smaller ones make the forward rewrite and deletion of `__delay` finer (tests use them).
   */
  delaySegmentBytes?: number;
  /**
   * Cluster: transactions with delayed messages whose batches the delay service keeps recognising at
   * once (each for an hour after its commit); past it a new one's commit hand-over gets BACKPRESSURE
   * (retried by the coordinator). Default 100,000.
   */
  delayTransactionsKeptMax?: number;
  /** Cluster membership; absent (default): a single broker. Used by `Broker.open` (spillway-broker.ts). */
  cluster?: BrokerClusterOptions;
}

export interface ResolvedBrokerOptions {
  dataDir: string;
  /**
   * True with `cluster`: the state logs that follow leadership (`__consumer_offsets`) open without
   * writing and their services start stopped, until the cluster names this broker their leader.
   */
  clusterMember: boolean;
  /** A cluster member's replicated state logs (`BrokerClusterOptions.replicatedStateLogs`); empty alone. */
  replicatedStateLogs: ReadonlySet<string>;
  topicDefaults: ResolvedTopicConfig;
  retentionCheckIntervalMs: number;
  segmentMs: number;
  indexIntervalBytes: number;
  checkpointIntervalMs: number;
  dedupIdsMax: number;
  clock: Clock;
  logFactory: LogFactory;
  stateLog: StateLogTuning;
  /** Undefined: the default for the file system (disk-reserve.ts). */
  diskReserveBytes: number | undefined;
  scrubBytesPerSecond: number;
  scrubPassIntervalMs: number;
  fileMode: number;
  directoryMode: number;
  resetStateLogs: ReadonlySet<string>;
  groupRetentionMs: number;
  producerIdleExpiryMs: number;
  producersMax: number;
  producerSnapshotIntervalMs: number;
  delaySegmentBytes: number;
  delayTransactionsKeptMax: number;
}

/** Opens segment-file logs: the default `logFactory`. */
const openPartitionLog: LogFactory = (request) => PartitionLog.open(request);

function isClock(value: unknown): value is Clock {
  if (typeof value !== 'object' || value === null) return false;
  const clock = value as Record<string, unknown>;
  return ['nowMs', 'monotonicMs', 'setTimeout', 'setInterval', 'clearTimer'].every(
    (name) => typeof clock[name] === 'function',
  );
}

function nonNegativeInteger(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(`broker option ${name} must be an integer >= 0, got ${String(value)}`);
  }
  return value;
}

function positiveInteger(name: string, value: unknown, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new InvalidArgumentError(
      `broker option ${name} must be an integer in [1, ${max}], got ${String(value)}`,
    );
  }
  return value;
}

export function resolveBrokerOptions(options: BrokerOptions): ResolvedBrokerOptions {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('broker options must be an object');
  }
  const dataDir = options.dataDir ?? './spillway-data';
  if (typeof dataDir !== 'string' || dataDir.length === 0) {
    throw new InvalidArgumentError('broker option dataDir must be a non-empty path');
  }
  const topicDefaults = resolveTopicConfig(
    {
      durability: options.durability,
      flushIntervalMs: options.flushIntervalMs,
      segmentBytes: options.segmentBytes,
      retentionMs: options.retentionMs,
      retentionBytes: options.retentionBytes,
      dedupWindowMs: options.dedupWindowMs,
    },
    {
      partitions: 1,
      durability: 'interval',
      flushIntervalMs: flushIntervalMsDefault,
      segmentBytes: segmentBytesDefault,
      retentionMs: -1,
      retentionBytes: -1,
      dedupWindowMs: 0,
    },
    'broker option',
  );
  const clock = options.clock ?? systemClock;
  if (!isClock(clock)) {
    throw new InvalidArgumentError(
      'broker option clock must implement nowMs, monotonicMs, setTimeout, setInterval and clearTimer',
    );
  }
  const logFactory = options.logFactory ?? openPartitionLog;
  if (typeof logFactory !== 'function') {
    throw new InvalidArgumentError('broker option logFactory must be a function');
  }
  const resolved: ResolvedBrokerOptions = {
    dataDir,
    clusterMember: options.cluster !== undefined,
    replicatedStateLogs: new Set(options.cluster?.replicatedStateLogs ?? []),
    topicDefaults,
    clock,
    logFactory,
    retentionCheckIntervalMs: positiveInteger(
      'retentionCheckIntervalMs',
      options.retentionCheckIntervalMs,
      retentionCheckIntervalMsDefault,
      timerDelayMsMax,
    ),
    segmentMs: positiveInteger('segmentMs', options.segmentMs, segmentMsDefault, Number.MAX_SAFE_INTEGER),
    indexIntervalBytes: positiveInteger(
      'indexIntervalBytes',
      options.indexIntervalBytes,
      indexIntervalBytesDefault,
      indexIntervalBytesMax,
    ),
    checkpointIntervalMs: positiveInteger(
      'checkpointIntervalMs',
      options.checkpointIntervalMs,
      checkpointIntervalMsDefault,
      checkpointIntervalMsMax,
    ),
    dedupIdsMax: positiveInteger(
      'dedupIdsMax',
      options.dedupIdsMax,
      dedupIdsMaxDefault,
      Number.MAX_SAFE_INTEGER,
    ),
    stateLog: resolveStateLogTuning(options.stateLog),
    diskReserveBytes:
      options.diskReserveBytes === undefined
        ? undefined
        : nonNegativeInteger('diskReserveBytes', options.diskReserveBytes, 0),
    scrubBytesPerSecond: nonNegativeInteger(
      'scrubBytesPerSecond',
      options.scrubBytesPerSecond,
      scrubBytesPerSecondDefault,
    ),
    scrubPassIntervalMs: positiveInteger(
      'scrubPassIntervalMs',
      options.scrubPassIntervalMs,
      scrubPassIntervalMsDefault,
      timerDelayMsMax,
    ),
    fileMode: permissionMode('fileMode', options.fileMode, 0o600),
    directoryMode: permissionMode('directoryMode', options.directoryMode, 0o700),
    resetStateLogs: stateLogNames(options.resetStateLogs),
    groupRetentionMs: positiveInteger(
      'groupRetentionMs',
      options.groupRetentionMs,
      groupRetentionMsDefault,
      Number.MAX_SAFE_INTEGER,
    ),
    producerIdleExpiryMs: positiveInteger(
      'producerIdleExpiryMs',
      options.producerIdleExpiryMs,
      producerIdleExpiryMsDefault,
      Number.MAX_SAFE_INTEGER,
    ),
    producersMax: positiveInteger('producersMax', options.producersMax, producersMaxDefault, producersMaxMax),
    producerSnapshotIntervalMs: positiveInteger(
      'producerSnapshotIntervalMs',
      options.producerSnapshotIntervalMs,
      producerSnapshotIntervalMsDefault,
      timerDelayMsMax,
    ),
    delaySegmentBytes: positiveInteger(
      'delaySegmentBytes',
      options.delaySegmentBytes,
      delaySegmentBytesDefault,
      segmentBytesMax,
    ),
    delayTransactionsKeptMax: positiveInteger(
      'delayTransactionsKeptMax',
      options.delayTransactionsKeptMax,
      delayTransactionsKeptMaxDefault,
      Number.MAX_SAFE_INTEGER,
    ),
  };
  if (resolved.delaySegmentBytes < segmentBytesMin) {
    throw new InvalidArgumentError(`broker option delaySegmentBytes must be at least ${segmentBytesMin}`);
  }
  return resolved;
}

function stateLogNames(value: unknown): ReadonlySet<string> {
  if (value === undefined) return new Set();
  if (
    !Array.isArray(value) ||
    !value.every((name) => typeof name === 'string' && isInternalTopicName(name))
  ) {
    throw new InvalidArgumentError(
      `broker option resetStateLogs must be a list of internal state log names ('__...'), got ${JSON.stringify(value)}`,
    );
  }
  return new Set(value as string[]);
}

function permissionMode(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > 0o777) {
    throw new InvalidArgumentError(
      `broker option ${name} must be permission bits in [0, 0o777], got ${String(value)}`,
    );
  }
  return value;
}

function resolveStateLogTuning(tuning: unknown): StateLogTuning {
  if (tuning === undefined) return {};
  if (typeof tuning !== 'object' || tuning === null) {
    throw new InvalidArgumentError('broker option stateLog must be an object');
  }
  const { segmentBytes, snapshotBytesMin, ...rest } = tuning as Record<string, unknown>;
  const unknown = Object.keys(rest);
  if (unknown.length > 0) throw new InvalidArgumentError(`unknown broker option stateLog.${unknown[0]}`);
  const resolved: StateLogTuning = {};
  if (segmentBytes !== undefined) {
    resolved.segmentBytes = positiveInteger('stateLog.segmentBytes', segmentBytes, 0, segmentBytesMax);
    if (resolved.segmentBytes < segmentBytesMin) {
      throw new InvalidArgumentError(
        `broker option stateLog.segmentBytes must be at least ${segmentBytesMin}`,
      );
    }
  }
  if (snapshotBytesMin !== undefined) {
    resolved.snapshotBytesMin = positiveInteger('stateLog.snapshotBytesMin', snapshotBytesMin, 0, 1 << 30);
  }
  return resolved;
}
