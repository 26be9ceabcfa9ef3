/**
 * `IsrChanger` over etcd (docs/CLUSTER.md, "Partition state: compare-and-swap on mod revisions"):
 * the partition's leader changes its ISR with one transaction that holds only if the partition key
 * is unchanged since it was read (mod revision) and this broker's registration is still attached to
 * its current session lease. Before writing, the record read must show this broker as leader at
 * `leaderEpoch`; otherwise the request is stale and resolves null (the leader waits for its new
 * assignment). A refused transaction is read and decided again, up to `attemptsMax` times (each
 * refusal means the key changed: another ISR change, or the controller's decision). A decision for
 * another epoch or leader ends the loop with null; an ISR the controller changed at the same epoch
 * (a dead follower removed) differs from the leader's `basis`: the stored assignment is returned
 * unwritten, so a leader never writes back a follower the controller took out.
 *
 * An ISR that is not a subset of the replicas, is empty, repeats a broker, or lacks the leader is
 * INVALID_ARGUMENT. Unreachable etcd: CLUSTER_UNAVAILABLE.
 */
import type { Namespace } from 'etcd3';
import { ClusterUnavailableError, InvalidArgumentError } from '../../errors.js';
import type { IsrChanger, PartitionAssignment } from '../partition-role.js';
import { sameMembers } from '../replication/memory-isr-changer.js';
import { brokerKey, decodePartition, encodeRecord, partitionKey } from './cluster-records.js';
import { etcdCall } from './etcd-call.js';

/** Refused transactions in a row before giving up with CLUSTER_UNAVAILABLE (a key changing that often is a bug). */
const attemptsMax = 16;

export class EtcdIsrChanger implements IsrChanger {
  constructor(
    private readonly namespace: Namespace,
    private readonly brokerId: number,
    /** The lease id of the broker's current session, undefined between sessions. */
    private readonly lease: () => string | undefined,
  ) {}

  async changeIsr(
    topic: string,
    partition: number,
    leaderEpoch: number,
    isr: number[],
    basis?: readonly number[],
  ): Promise<PartitionAssignment | null> {
    const key = partitionKey(topic, partition);
    for (let attempt = 0; attempt < attemptsMax; attempt++) {
      const lease = this.lease();
      if (lease === undefined) return null; // between sessions: not a live member, so not a leader
      const response = await etcdCall(`read ${key}`, () => this.namespace.get(key).exec());
      const kv = response.kvs[0];
      if (kv === undefined) return null; // the partition is gone
      const record = decodePartition(kv.value.toString('utf8'));
      if (record === undefined) return null;
      if (record.leaderEpoch !== leaderEpoch || record.leaderId !== this.brokerId) return null;
      if (basis !== undefined && !sameMembers(record.isr, basis)) {
        return {
          topic,
          partition,
          replicas: [...record.replicas],
          leaderId: record.leaderId,
          leaderEpoch,
          isr: [...record.isr],
        };
      }
      checkIsr(isr, record.replicas, this.brokerId, key);
      const next = { ...record, isr: [...isr] };
      const written = await etcdCall(`change the ISR of ${key}`, () =>
        this.namespace
          .if(key, 'Mod', '==', kv.mod_revision)
          .and(brokerKey(this.brokerId), 'Lease', '==', lease)
          .then(this.namespace.put(key).value(encodeRecord(next)))
          .commit(),
      );
      if (written.succeeded) {
        return {
          topic,
          partition,
          replicas: [...next.replicas],
          leaderId: next.leaderId,
          leaderEpoch,
          isr: [...isr],
        };
      }
      // Refused: the partition changed (decide again), or this broker's registration is not on its
      // current lease (its session was lost: it is no longer a live member, so no longer a leader).
      const registration = await etcdCall(`read ${brokerKey(this.brokerId)}`, () =>
        this.namespace.get(brokerKey(this.brokerId)).exec(),
      );
      if (registration.kvs[0]?.lease !== lease) return null;
    }
    throw new ClusterUnavailableError(
      `${key} kept changing: the ISR change was refused ${attemptsMax} times`,
    );
  }
}

function checkIsr(isr: number[], replicas: number[], leaderId: number, key: string): void {
  const valid =
    Array.isArray(isr) &&
    isr.length > 0 &&
    new Set(isr).size === isr.length &&
    isr.every((id) => replicas.includes(id)) &&
    isr.includes(leaderId);
  if (!valid) {
    throw new InvalidArgumentError(
      `ISR ${JSON.stringify(isr)} of ${key} must be distinct replicas of [${replicas.join(', ')}] including the leader ${leaderId}`,
    );
  }
}
