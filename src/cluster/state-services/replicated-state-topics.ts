/**
 * The internal state topics that are cluster topics (docs/CLUSTER.md, "Internal state logs as
 * partitions"), grouped by the service keeping its state there. The controller creates each topic as
 * a one-partition topic replicated like any other and places the topics of one service together
 * (the same replicas in the same order; one leader preferred: partition-planner.ts), and the service
 * runs only while this broker leads every topic of its group at their current epochs
 * (service-leadership.ts).
 *
 * Contract for a new service (one line here, one `follow` line in ServiceLeadership's constructor):
 * - `topics[0]` is the group's anchor: the topic `coordinatorTopicOf` routes the service's requests to
 *   (clients find the service's broker by its leader) and whose leader the other topics follow;
 * - a topic belongs to one group only; names are the internal topics of docs/STATE.md;
 * - the service's term fence (`ServiceTerm.fence`: the sum of its topics' leader epochs) fits in a
 *   producer epoch (forwarding, src/cluster/forwarding/): at most producerEpochMax.
 *
 * Only topics whose service follows leadership are listed: a state log written locally by a service
 * that does not stop on followers would be overwritten under it by the replication follower. The
 * others (`__producer_state`, `__dedup`) stay local: their services keep nothing there in a cluster
 * (producer state and the dedup index are rebuilt from the data logs by each partition leader).
 */
import { coordinatorTopics } from '../../protocol/coordinator-routing.js';

/** One service's internal topics; `topics[0]` is its anchor. */
export interface StateServiceTopics {
  /** The service's name (logs, messages, forwarding's service name). */
  readonly service: string;
  readonly topics: readonly string[];
}

export const replicatedStateServices: readonly StateServiceTopics[] = [
  { service: 'groups', topics: [coordinatorTopics.groups] },
  // The transaction coordinator: its state log, then the half messages (cl-txn).
  { service: 'transactions', topics: [coordinatorTopics.transactions, '__txn_half'] },
  { service: 'delay', topics: [coordinatorTopics.delay, '__delay_state', '__delay_dead'] },
  // Shared and key_shared queues (s8-queues): the ack state; data partitions read locally or remotely.
  { service: 'queues', topics: [coordinatorTopics.queues] },
];

/** Every replicated internal topic, grouped per service (the controller's `internalTopics`). */
export const replicatedStateTopicGroups: readonly (readonly string[])[] = replicatedStateServices.map(
  (entry) => entry.topics,
);
