/**
 * What the leader and follower roles of a partition (partition-leader.ts, partition-follower.ts)
 * get from the broker's replica manager (broker-replica-manager.ts): settings and a few callbacks.
 */

import type { Partition } from '../../broker/partition.js';
import type { Clock } from '../../clock.js';
import type { IsrChanger } from '../partition-role.js';
import type { ReplicaReceiveBuffers } from './replica-receive-buffers.js';

export interface ReplicaContext {
  /** This broker's id in the cluster. */
  brokerId: number;
  clock: Clock;
  isrChanger: IsrChanger;
  /** A follower that has not caught up with the leader's log end for this long leaves the ISR. */
  replicaLagTimeMs: number;
  /** An `acks: 'all'` produce not replicated within this fails with TIMEOUT. */
  replicationTimeoutMs: number;
  /** Long-poll of a follower's REPLICA_FETCH. */
  replicaFetchMaxWaitMs: number;
  /** Bytes a follower asks for per REPLICA_FETCH. */
  replicaFetchMaxBytes: number;
  /**
   * Where followers receive REPLICA_FETCH answer bodies (shared by the broker's followers): a body
   * is appended, then its buffer serves the next answer, so a stream of large answers makes no garbage.
   */
  receiveBuffers: ReplicaReceiveBuffers;
  /** Consumers' long-polls on the partition read again (the high watermark moved, or data came). */
  wakeConsumers(partition: Partition): void;
  /** Something worth an operator's attention that the data plane dealt with (retried, gave up). */
  warn(message: string): void;
}

/** The key of a partition in the manager's maps. */
export function partitionKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}
