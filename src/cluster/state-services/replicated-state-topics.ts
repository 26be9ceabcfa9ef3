/**
 * The internal state topics that are cluster topics (docs/CLUSTER.md, "Internal state logs as
 * partitions"): the controller creates each as a one-partition topic replicated like any other, and
 * the service keeping its state there runs on the partition's leader only (service-leadership.ts).
 *
 * Only topics whose service follows leadership are listed: a state log written locally by a service
 * that does not stop on followers would be overwritten under it by the replication follower. The
 * others (`__queue_state`, `__transactions`, `__txn_half`, `__producer_state`, `__dedup`, `__delay`,
 * `__delay_state`, `__delay_dead`) stay local, and their services are refused in cluster mode.
 */
import { coordinatorTopics } from '../../protocol/coordinator-routing.js';

export const replicatedStateTopics: readonly string[] = [coordinatorTopics.groups];
