/**
 * The seam between the cluster control plane (src/cluster/control/, etcd) and the replication data
 * plane (src/cluster/replication/). The data plane owns this file; it is only extended compatibly.
 *
 * - The control plane decides who leads which partition at which epoch and who is in sync, and calls
 *   `ReplicaManager.applyAssignment` whenever etcd says something changed.
 * - The data plane makes the local partition a leader or a follower accordingly, and its leader calls
 *   `IsrChanger.changeIsr` to shrink or expand the in-sync replica set.
 */

export interface BrokerEndpoint {
  brokerId: number;
  /** ws://host:port (or wss://) where the broker's WebSocket protocol listens. */
  url: string;
}

export interface PartitionAssignment {
  topic: string;
  partition: number;
  replicas: number[];
  leaderId: number;
  leaderEpoch: number;
  isr: number[];
  /**
   * Compatible extension (data plane): the topic's minInSyncReplicas; `acks: 'all'` produces are
   * refused with NOT_ENOUGH_REPLICAS while the ISR is smaller. Absent: 1.
   */
  minInSyncReplicas?: number;
}

/** Implemented by the data plane; the control plane calls it whenever etcd says something changed. */
export interface ReplicaManager {
  /** Become leader or follower (or stop) for this partition at this epoch; idempotent per epoch. */
  applyAssignment(
    assignment: PartitionAssignment,
    endpoints: ReadonlyMap<number, BrokerEndpoint>,
  ): Promise<void>;
  /** The partition is no longer on this broker. */
  removePartition(topic: string, partition: number): Promise<void>;
  close(): Promise<void>;
}

/** Implemented by the control plane; the data plane's leader calls it to shrink/expand the ISR. */
export interface IsrChanger {
  /**
   * CAS in etcd: applies only if leaderEpoch is still current; resolves with the new assignment or
   * null if stale. `basis`, when given, is the ISR the leader decided from: if the stored ISR is not
   * that set any more (the controller removed a dead follower at the same epoch), nothing is written
   * and the stored assignment is returned — the leader takes it and decides again.
   */
  changeIsr(
    topic: string,
    partition: number,
    leaderEpoch: number,
    isr: number[],
    basis?: readonly number[],
  ): Promise<PartitionAssignment | null>;
}
