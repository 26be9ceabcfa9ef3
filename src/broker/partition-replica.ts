/**
 * What replication (src/cluster/replication/, docs/CLUSTER-REPLICATION.md) adds to a partition the
 * broker serves: `Partition.replica`, null on a broker without replication, where nothing changes.
 * The broker layer knows only this interface; the cluster layer implements it (leader or follower).
 */
import type { ProduceOptions } from '../protocol/replication-api.js';

export interface PartitionReplica {
  /**
   * Offset below which every in-sync replica has the data (under the topic's durability): consumers
   * see nothing at or past it (Partition.visibleEndOffset).
   */
  readonly highWatermark: number;
  /**
   * Called before a produce is appended: throws NOT_LEADER (this broker does not lead the
   * partition), FENCED_LEADER_EPOCH / NOT_LEADER (the producer's epoch is stale / newer), or
   * NOT_ENOUGH_REPLICAS (acks 'all' and the in-sync set is smaller than minInSyncReplicas).
   */
  admitProduce(options: ProduceOptions | undefined): void;
  /** Called after the local append of a produce: followers waiting in REPLICA_FETCH read it. */
  appended(): void;
  /**
   * Resolves when the produce whose records end before `endOffset` may be acknowledged: at once for
   * acks 'leader', once the high watermark reaches it for acks 'all'. Rejects with TIMEOUT after the
   * replication timeout, NOT_ENOUGH_REPLICAS when the ISR shrank below the minimum meanwhile, or
   * NOT_LEADER when the broker stopped leading before it was replicated.
   */
  replicated(endOffset: number, options: ProduceOptions | undefined): Promise<void>;
}
