/**
 * The services that forward into data partitions, and the producer id each one writes under
 * (forwarder.ts explains why forwarding rides on the idempotent producer's header fields).
 *
 * The ids are the top of the safe-integer range (at or above serviceProducerIdMin): producer ids
 * handed to clients come from etcd blocks counting up from 0 (producer-id-blocks.ts, 1,000 per
 * claim) and never get near them, and in a cluster a client PRODUCE naming one is refused
 * (INVALID_BATCH, protocol/dispatch.ts), so only FORWARD_PRODUCE (cluster admin) writes under them.
 *
 * To add a service (cl-txn: `transactions`): one line, a new id below the last. Never reuse an id.
 */
import { InvalidArgumentError } from '../../errors.js';

export const forwardingProducerIds: ReadonlyMap<string, number> = new Map([
  ['delay', Number.MAX_SAFE_INTEGER],
  ['transactions', Number.MAX_SAFE_INTEGER - 1],
  // The queue service's dead letters (s8-queues, docs/CLUSTER.md "Built: shared and key_shared queues").
  ['queues', Number.MAX_SAFE_INTEGER - 2],
]);

/** The producer id of service `service`; INVALID_ARGUMENT for a service that does not forward. */
export function forwardingProducerId(service: string): number {
  const id = forwardingProducerIds.get(service);
  if (id === undefined)
    throw new InvalidArgumentError(`no forwarding service named ${JSON.stringify(service)}`);
  return id;
}
