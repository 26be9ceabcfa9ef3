/**
 * A ReplicaManager that records every call the control plane makes (the data plane's side of the
 * seam, src/cluster/partition-role.ts) and checks what the seam promises: per partition, the leader
 * epoch never goes back, and a second call at one epoch changes the ISR only.
 */
import type {
  BrokerEndpoint,
  PartitionAssignment,
  ReplicaManager,
} from '../../../src/cluster/partition-role.js';

export type RecordedCall =
  | { kind: 'apply'; assignment: PartitionAssignment; endpoints: Map<number, BrokerEndpoint> }
  | { kind: 'remove'; topic: string; partition: number };

export class RecordingReplicaManager implements ReplicaManager {
  readonly calls: RecordedCall[] = [];
  readonly current = new Map<string, PartitionAssignment>();
  readonly violations: string[] = [];
  /** When set, applyAssignment throws this many more times (to test retries). */
  failNext = 0;
  closed = false;

  async applyAssignment(
    assignment: PartitionAssignment,
    endpoints: ReadonlyMap<number, BrokerEndpoint>,
  ): Promise<void> {
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error('injected applyAssignment failure');
    }
    const id = `${assignment.topic}/${assignment.partition}`;
    const previous = this.current.get(id);
    if (previous !== undefined) {
      if (assignment.leaderEpoch < previous.leaderEpoch) {
        this.violations.push(
          `${id}: epoch went back from ${previous.leaderEpoch} to ${assignment.leaderEpoch}`,
        );
      } else if (
        assignment.leaderEpoch === previous.leaderEpoch &&
        (assignment.leaderId !== previous.leaderId || assignment.replicas.join() !== previous.replicas.join())
      ) {
        this.violations.push(`${id}: leader or replicas changed at epoch ${assignment.leaderEpoch}`);
      }
    }
    this.current.set(id, { ...assignment });
    this.calls.push({ kind: 'apply', assignment: { ...assignment }, endpoints: new Map(endpoints) });
  }

  async removePartition(topic: string, partition: number): Promise<void> {
    this.current.delete(`${topic}/${partition}`);
    this.calls.push({ kind: 'remove', topic, partition });
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
