/**
 * Where a broker in a cluster registers named idempotent producers (docs/CLUSTER.md, "Built:
 * idempotent producers"): implemented by the cluster layer (src/cluster/state-services/
 * producer-names.ts, a registry in etcd); the broker layer knows only this interface.
 *
 * Contracts: `register(name)` resolves to the name's producer id and an epoch higher than every
 * epoch the cluster handed out for that id before (two registrations of one name, on any brokers,
 * never get the same (id, epoch)); it rejects with a typed error (CLUSTER_UNAVAILABLE). `epochOf`
 * answers from memory: the newest epoch of a named producer id this broker has seen registered
 * (its own registrations at once, the others' through a watch), or undefined (not a named id, or
 * not seen): a partition leader refuses a batch with an older epoch (PRODUCER_FENCED).
 */
import type { InitProducerResult } from '../../protocol/producer-api.js';

export interface ProducerNameRegistry {
  register(name: string): Promise<InitProducerResult>;
  epochOf(producerId: number): number | undefined;
}
