/**
 * An IsrChanger that keeps the assignments in memory (src/cluster/partition-role.ts): the stand-in
 * for the control plane's etcd one in tests and embedded multi-broker setups. `changeIsr` applies
 * only when the leader epoch is the current one (like the etcd compare-and-swap), and tells the
 * listener, which usually hands the new assignment to every replica's ReplicaManager.
 */
import type { IsrChanger, PartitionAssignment } from '../partition-role.js';
import { partitionKey } from './replica-context.js';

export class MemoryIsrChanger implements IsrChanger {
  private readonly assignments = new Map<string, PartitionAssignment>();
  /** ISR changes applied, oldest first (tests). */
  readonly changes: PartitionAssignment[] = [];
  /** Called after each applied change. */
  onChange: ((assignment: PartitionAssignment) => void) | null = null;

  /** Records `assignment` as the current one of its partition (what the controller decided). */
  set(assignment: PartitionAssignment): void {
    this.assignments.set(partitionKey(assignment.topic, assignment.partition), cloneAssignment(assignment));
  }

  get(topic: string, partition: number): PartitionAssignment | undefined {
    const current = this.assignments.get(partitionKey(topic, partition));
    return current === undefined ? undefined : cloneAssignment(current);
  }

  async changeIsr(
    topic: string,
    partition: number,
    leaderEpoch: number,
    isr: number[],
    basis?: readonly number[],
  ): Promise<PartitionAssignment | null> {
    const current = this.assignments.get(partitionKey(topic, partition));
    if (current === undefined || current.leaderEpoch !== leaderEpoch) return null;
    if (basis !== undefined && !sameMembers(current.isr, basis)) return cloneAssignment(current);
    current.isr = [...isr];
    const changed = cloneAssignment(current);
    this.changes.push(changed);
    this.onChange?.(cloneAssignment(current));
    return changed;
  }
}

/** True when `a` and `b` hold the same broker ids (order aside). */
export function sameMembers(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((id) => b.includes(id));
}

export function cloneAssignment(assignment: PartitionAssignment): PartitionAssignment {
  return { ...assignment, replicas: [...assignment.replicas], isr: [...assignment.isr] };
}
