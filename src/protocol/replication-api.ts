/**
 * The replication data plane as the protocol layer sees it (docs/CLUSTER-REPLICATION.md): what a
 * leader answers to its followers. Implemented by src/cluster/replication/broker-replica-manager.ts;
 * present on a broker only when replication is wired (`BrokerApi.replication`), otherwise the
 * opcodes are refused with UNKNOWN_OPCODE.
 *
 * Ownership: `replicaFetch` returns views of mapped segments (like FETCH), valid while referenced.
 */

/** How a producer wants its batch acknowledged in a cluster. */
export type Acks = 'all' | 'leader';
export const acksValues: readonly Acks[] = ['all', 'leader'];

/** Produce options a cluster looks at (a single broker ignores them). */
export interface ProduceOptions {
  /** `all` (default in a cluster): on every in-sync replica; `leader`: appended by the leader. */
  acks?: Acks;
  /** The leader epoch the producer believes current: another one is refused (FENCED_LEADER_EPOCH / NOT_LEADER). */
  leaderEpoch?: number;
}

/** REPLICA_FETCH (80): a follower pulls batches from the leader and reports its own log. */
export interface ReplicaFetchRequest {
  topic: string;
  partition: number;
  /** The follower's broker id. */
  replicaId: number;
  /** The leader epoch the follower follows. */
  leaderEpoch: number;
  /** The follower's log end offset: where it wants to continue (everything below is on it). */
  fetchOffset: number;
  /** The follower's durable offset (what `always` durability counts). */
  durableOffset: number;
  /** The high watermark the follower knows: the leader answers at once when its own is higher. */
  highWatermark: number;
  maxBytes: number;
  /** Long-poll when there is nothing new. */
  maxWaitMs: number;
}

export interface ReplicaFetchResult {
  /** Whole batches from fetchOffset, unchanged (their baseOffset is the leader's offset). */
  records: Uint8Array;
  batchCount: number;
  /** Offset after the last record returned. */
  nextOffset: number;
  logStartOffset: number;
  logEndOffset: number;
  highWatermark: number;
  /**
   * The leader's epoch history entries [epoch, startOffset] that cover [fetchOffset, nextOffset):
   * the one in force at fetchOffset and every later one starting before nextOffset. The follower
   * records them as it appends, so its history matches the leader's for what it copied.
   */
  epochs: Array<[number, number]>;
}

/** OFFSET_FOR_LEADER_EPOCH (81): where the leader's log of `epoch` ends (KIP-101/KIP-279). */
export interface OffsetForLeaderEpochRequest {
  topic: string;
  partition: number;
  replicaId: number;
  /** The leader epoch the requester follows (fencing, as in REPLICA_FETCH). */
  leaderEpoch: number;
  /** The epoch asked about: the requester's latest. */
  epoch: number;
}

export interface OffsetForLeaderEpochResult {
  /** The largest epoch of the leader's history <= the one asked about; -1 when there is none. */
  epoch: number;
  /**
   * The start offset of the leader's first epoch after `epoch`, or its log end when `epoch` is its
   * latest; -1 when `epoch` is -1.
   */
  endOffset: number;
}

/** What a leader knows of one follower (metrics). */
export interface FollowerStats {
  brokerId: number;
  inSync: boolean;
  /** The leader's log end minus the follower's (as of its last fetch). */
  lagOffsets: number;
  /** How long since the follower was last caught up with the leader's log end (0: caught up now). */
  lagMs: number;
}

/** One replicated partition on this broker (metrics: docs/CLUSTER-REPLICATION.md "Metrics"). */
export interface ReplicaPartitionStats {
  topic: string;
  partition: number;
  role: 'leader' | 'follower';
  leaderEpoch: number;
  highWatermark: number;
  logEndOffset: number;
  /** Leader: the in-sync replica set size (itself included); follower: 0 (the leader knows). */
  isrSize: number;
  /** The replica set size. */
  replicaCount: number;
  /** Leader only: each follower; empty on a follower. */
  followers: FollowerStats[];
}

export interface ReplicationService {
  replicaFetch(request: ReplicaFetchRequest, signal?: AbortSignal): Promise<ReplicaFetchResult>;
  offsetForLeaderEpoch(request: OffsetForLeaderEpochRequest): OffsetForLeaderEpochResult;
  /** The partitions this broker leads or follows now, read at scrape time. */
  stats(): ReplicaPartitionStats[];
}
