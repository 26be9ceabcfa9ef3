/**
 * The engine's API as the protocol layer sees it: what a request handler (protocol/dispatch.ts)
 * needs from a broker. src/broker/broker.ts implements it; the server and the client's in-process
 * transport reach the broker only through it, so the protocol layer never imports the broker.
 *
 * Ownership: `produce` copies the batch (the caller may reuse its buffer once the promise settles);
 * `fetch` returns views of mapped segments, valid while referenced.
 */

import type { ClusterMetadataService } from './cluster-metadata-api.js';
import type { CoordinatorGate } from './coordinator-routing.js';
import type { DelayService } from './delay-api.js';
import type { ForwardingService } from './forwarding-api.js';
import type { GroupService } from './group-api.js';
import type { ProducerService } from './producer-api.js';
import type { QueueService } from './queue-api.js';
import type { ProduceOptions, ReplicationService } from './replication-api.js';
import type { SessionService } from './session.js';
import type { TransactionService } from './transaction-api.js';
import type { Durability } from './types.js';

export interface TopicConfig {
  /** Partitions at creation: 1..partitionCountMax. Default 1. */
  partitions?: number;
  durability?: Durability;
  /** With `interval`. */
  flushIntervalMs?: number;
  /** -1: forever. */
  retentionMs?: number;
  /** Per partition; -1: no limit. */
  retentionBytes?: number;
  segmentBytes?: number;
  /**
   * Msg-id dedup window: a message whose msgId (record header `sw-msg-id`) was written to this topic
   * less than this long ago is acknowledged with the first copy's partition and offset and not
   * written again. 0 (default): disabled. At most dedupWindowMsMax (7 days).
   */
  dedupWindowMs?: number;
}

/** Every key a topic config may have: the broker and the protocol refuse any other. */
export const topicConfigKeys: ReadonlySet<string> = new Set<keyof TopicConfig>([
  'partitions',
  'durability',
  'flushIntervalMs',
  'retentionMs',
  'retentionBytes',
  'segmentBytes',
  'dedupWindowMs',
]);

/**
 * Where a topic's partitions are replicated, in a cluster (docs/CLUSTER.md, "Topics"; the CLI flags
 * `--replication-factor N --min-insync N`). A single broker accepts 1 (it is the one replica).
 */
export interface ReplicaPlacement {
  /** Replicas per partition: 1..replicationFactorMax, at most the live brokers. Default min(3, live brokers). */
  replicationFactor?: number;
  /** In-sync replicas an `acks: 'all'` produce needs: 1..replicationFactor. Default min(2, replicationFactor). */
  minInSyncReplicas?: number;
}

/** What CREATE_TOPIC takes: the topic config and, in a cluster, the replica placement. */
export type CreateTopicOptions = TopicConfig & ReplicaPlacement;

export interface PartitionDescription {
  partition: number;
  logStartOffset: number;
  logEndOffset: number;
  /** Offset below which everything is on disk (fdatasync'd). */
  durableOffset: number;
  sizeBytes: number;
  segmentCount: number;
  /**
   * Present only when the partition is stopped because its data is damaged or missing: what was
   * found (then the numbers above are 0 and requests to it fail with PARTITION_DAMAGED).
   */
  damaged?: string;
  /** In a cluster: the leader's broker id (-1: offline, no in-sync replica alive); absent on a single broker. */
  leaderId?: number;
  /** In a cluster: the partition's leader epoch. */
  leaderEpoch?: number;
  /** In a cluster: the brokers holding a replica, the preferred leader first. */
  replicas?: number[];
  /** In a cluster: the in-sync replicas. */
  isr?: number[];
}

export interface TopicDescription {
  name: string;
  partitionCount: number;
  /** In a cluster: the topic's replica placement (absent on a single broker). */
  replicationFactor?: number;
  minInSyncReplicas?: number;
  config: Required<TopicConfig>;
  createdAtMs: number;
  partitions: PartitionDescription[];
}

export interface ProduceResult {
  partition: number;
  /** First and last offset written; both -1 when nothing was (every record a msgId duplicate). */
  baseOffset: number;
  lastOffset: number;
  /** The guarantee that held when this was acknowledged. */
  durability: Durability;
  /**
   * Only when some record of the batch was a msgId duplicate (a topic with dedupWindowMs > 0): the
   * partition and offset of each record of the batch, in batch order; a duplicate has its first
   * copy's (possibly on another partition). Without them record i is at baseOffset + i.
   */
  recordPartitions?: number[];
  recordOffsets?: number[];
  /**
   * Present (true) for a delayed batch: it waits in `__delay`, and baseOffset/lastOffset are its
   * records' offsets there (each fired copy carries it in `sw-delay-ref`), not offsets of the topic.
   */
  delayed?: true;
}

export interface FetchOptions {
  /** Upper bound of bytes returned (at least one whole batch is returned even when larger). */
  maxBytes: number;
  /** Long-poll: wait up to this long for `minBytes` to be available. 0 = answer at once. */
  maxWaitMs: number;
  /** Answer as soon as this many bytes are available (default 1). */
  minBytes?: number;
  /** Aborting ends a long-poll early with whatever is there (e.g. the connection closed). */
  signal?: AbortSignal;
}

export interface FetchResult {
  topic: string;
  partition: number;
  /** Whole batches back to back (views of mapped segments); empty when nothing was available. */
  records: Uint8Array;
  batchCount: number;
  /** Base offset of the first batch returned (may be below the offset asked for). */
  firstOffset: number;
  /** Where the next fetch continues. */
  nextOffset: number;
  logStartOffset: number;
  /** The log end offset: the highest offset a consumer can read is logEndOffset - 1. */
  highWatermark: number;
}

export type OffsetSpec = 'earliest' | 'latest' | { timestamp: number };

/** Topic administration: create, delete, list, describe, add partitions. */
export interface TopicService {
  create(name: string, config?: TopicConfig): Promise<TopicDescription>;
  delete(name: string): Promise<void>;
  /** Sorted by name; internal topics (names starting with `__`) only with `{ internal: true }`. */
  list(options?: ListTopicsOptions): TopicDescription[];
  /** Any topic, internal ones included. */
  describe(name: string): TopicDescription;
  /** Adds `count` partitions (not: grows to `count`); existing partitions are untouched. */
  addPartitions(name: string, count: number): Promise<TopicDescription>;
}

export interface ListTopicsOptions {
  /** Include internal topics (names starting with `__`). Default false. */
  internal?: boolean;
}

/**
 * Topic administration of a broker in a cluster (src/cluster/control/cluster-topics.ts): the topics
 * of the cluster (etcd), created with a replica placement; descriptions carry leaders and ISRs.
 */
export interface ClusterTopicService extends TopicService {
  create(name: string, config?: CreateTopicOptions): Promise<TopicDescription>;
}

/** Messages: produce, fetch and offset lookup on partitions. */
export interface MessageService {
  /**
   * Validates (limits, structure, CRC32C natively), assigns offsets, appends, acks per durability.
   * `batch` is read only during the synchronous part of the call (up to its first await): an
   * implementation that needs the bytes later copies them first, so the caller may lend a buffer it
   * reuses at once (the server passes the socket's received message, valid only in its callback).
   */
  produce(
    topic: string,
    partition: number,
    batch: Uint8Array,
    options?: ProduceOptions,
  ): Promise<ProduceResult>;
  fetch(topic: string, partition: number, offset: number, options: FetchOptions): Promise<FetchResult>;
  /** earliest = log start, latest = log end, timestamp = first offset with a timestamp >= it (or log end). */
  listOffset(topic: string, partition: number, spec: OffsetSpec): number;
}

/** One thing the broker found when it opened its data directory (docs/OPERATIONS.md). */
export interface IntegrityFinding {
  /** `damage`: a partition is stopped; `warning`: dealt with, or worth a look; `info`: normal. */
  severity: 'damage' | 'warning' | 'info';
  topic?: string;
  partition?: number;
  what: string;
  /** What the operator can do ('nothing to do' when nothing is needed). */
  fix: string;
}

/** A partition stopped because its data on disk is damaged or missing. */
export interface DamagedPartition {
  topic: string;
  partition: number;
  directory: string;
  /** `corrupt-data`, `missing-data`, `overlap` or `missing-directory`. */
  kind: string;
  /** The file the damage is in or before (the directory when there is none). */
  file: string;
  /** Byte position in `file`. */
  position: number;
  reason: string;
  /** First offset that cannot be read (null: unknown, a whole directory lost). */
  fromOffset: number | null;
  /** Offset where readable data resumes (null: unknown). */
  toOffset: number | null;
  summary: string;
}

/** A range of offsets a repair moved out of a partition log into its `quarantine/` folder. */
export interface SetAsideRange {
  fromOffset: number;
  /** Exclusive. */
  toOffset: number;
  kind: string;
  reason: string;
  /** Segment file (name) the damage was in or before, and the byte position there. */
  file: string;
  position: number;
  /** Names, inside quarantine/, of the files moved or copied there. */
  movedFiles: string[];
  atMs: number;
}

export interface RepairResult {
  topic: string;
  partition: number;
  quarantineDirectory: string;
  /** Exactly what was set aside (empty when the log opened as it was, e.g. files restored). */
  setAside: SetAsideRange[];
  /** True when the partition directory was missing and the partition starts again empty at 0. */
  recreatedEmpty: boolean;
  logStartOffset: number;
  logEndOffset: number;
  atMs: number;
}

export interface IntegrityReport {
  /** `degraded` while some partition is stopped. */
  status: 'ok' | 'degraded';
  /** One line: topics, partitions, stopped, warnings. */
  summary: string;
  openDurationMs: number;
  /** What the open found (damage, orphans, leftovers), each with its fix. */
  findings: IntegrityFinding[];
  /** Partitions stopped now. */
  damagedPartitions: DamagedPartition[];
  /** Repairs since the broker started. */
  repairs: RepairResult[];
}

/** What the broker found on disk, and the explicit repair of a stopped partition. */
export interface IntegrityService {
  report(): IntegrityReport;
  /**
   * Sets the damaged ranges of a stopped partition aside into its quarantine/ folder (moved or
   * copied, never deleted) and serves it again. INVALID_ARGUMENT when the partition is not stopped.
   */
  repair(topic: string, partition: number): Promise<RepairResult>;
}

/**
 * The engine as front ends see it: one service per concern. A later feature (consumer groups,
 * delayed messages, transactions, producer state) adds a service here instead of growing another.
 */
/** Damage found by the scrub: one batch (CRC32C mismatch) or the rest of a segment (bad header). */
export interface ScrubFinding {
  topic: string;
  partition: number;
  /** The segment file. */
  file: string;
  /** Byte position of the damaged batch in the file. */
  position: number;
  /** First offset affected. */
  baseOffset: number;
  /** Offset after the last one affected (for a damaged header: the end of the segment). */
  nextOffset: number;
  reason: string;
  /** Wall-clock time of the first finding (epoch ms). */
  foundAtMs: number;
}

/** Disk use, the disk reserve and the scrub of a broker (metrics; docs/OPERATIONS.md). */
export interface StorageStats {
  disk: {
    /** Free space below which writes are refused with STORAGE_FULL (0: no reserve). */
    reserveBytes: number;
    /** Free bytes of the data directory's file system, as last read. */
    freeBytes: number;
    totalBytes: number;
    /** Writes refused for the reserve since open. */
    refusals: number;
  };
  /** Disk preallocated ahead of the data (active segments' growth steps, spare segments). */
  preallocatedBytes: number;
  scrub: {
    /** 0 when the background scrub is off. */
    bytesPerSecond: number;
    passesCompleted: number;
    bytesScrubbed: number;
    batchesScrubbed: number;
    segmentsScrubbed: number;
    damageFound: number;
    findings: ScrubFinding[];
  };
}

export interface BrokerApi {
  readonly topics: TopicService;
  readonly messages: MessageService;
  /** Sessions: one per client connection or HTTP request (protocol/session.ts). */
  readonly sessions: SessionService;
  readonly integrity: IntegrityService;
  /** Group mode and broadcast consumption: the group coordinator (protocol/group-api.ts). */
  readonly groups: GroupService;
  /** Shared and key_shared consumption: receive, ack, nack (protocol/queue-api.ts). */
  readonly queues: QueueService;
  /** Transactional messages: half messages, commit/rollback, check-back (protocol/transaction-api.ts). */
  readonly transactions: TransactionService;
  /** Idempotent producers: producer ids and epochs (protocol/producer-api.ts). */
  readonly producers: ProducerService;
  /** Delayed messages: their figures (protocol/delay-api.ts). Absent: DELAY_STATS is refused. */
  readonly delay?: DelayService;
  /**
   * Replication (docs/CLUSTER-REPLICATION.md): what a leader answers its followers. Absent on a
   * broker without replication: REPLICA_FETCH and OFFSET_FOR_LEADER_EPOCH are refused.
   */
  readonly replication?: ReplicationService;
  /**
   * Forwarding (docs/CLUSTER.md, "Built: a service writing into a partition another broker leads"):
   * another broker's service appending into / scanning a partition this broker leads. Absent on a
   * single broker: FORWARD_PRODUCE and FORWARD_SCAN are refused.
   */
  readonly forwarding?: ForwardingService | undefined;
  /**
   * Topic administration in a cluster: CREATE_TOPIC, DELETE_TOPIC, ADD_PARTITIONS, LIST_TOPICS and
   * DESCRIBE_TOPIC (and their HTTP routes) go here instead of `topics` (protocol/topic-admin.ts).
   */
  readonly clusterTopics?: ClusterTopicService | undefined;
  /** Cluster metadata (protocol/cluster-metadata-api.ts). Absent: METADATA answers as a single broker. */
  readonly clusterMetadata?: ClusterMetadataService | undefined;
  /**
   * In a cluster: which coordinator requests this broker serves (protocol/coordinator-routing.ts).
   * Absent (a single broker): every service is served here.
   */
  readonly coordinators?: CoordinatorGate | undefined;
  /** Disk and scrub figures (a broker engine has them; other implementations may not). */
  storageStats?(): StorageStats;
  /** Msg-id dedup index figures (a broker engine has them; other implementations may not). */
  dedupStats?(): DedupStats;
}

/** What the msg-id dedup index holds (for metrics and benchmarks). */
export interface DedupStats {
  /** Ids held in the index across all topics. */
  ids: number;
  /** Ids claimed by produces still being written. */
  claimed: number;
  /** Topics with ids in the index. */
  topics: number;
  /** Duplicates answered with their first copy since the broker opened. */
  duplicates: number;
}
