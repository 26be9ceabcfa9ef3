/**
 * The controller's decisions, as pure functions of a partition's record and the set of live brokers
 * (docs/CLUSTER.md, "What the controller does"). No I/O: the controller reads a snapshot, asks these
 * what each partition should become, and writes the answers with compare-and-swap.
 *
 * Rules (Kafka's ZooKeeper-era controller, unclean election off):
 * - the leader is always an ISR member; a new leader is chosen from the live ISR only, first in
 *   `replicas` order (the preferred order);
 * - a change of leader (or to no leader) bumps `leaderEpoch` by one; a dead follower leaving the ISR
 *   does not (the leader and its log go on; as KRaft's partition epoch vs leader epoch): the
 *   leader's own ISR changes are compared with the ISR they were decided from (IsrChanger `basis`),
 *   so one cannot put back a follower the controller just removed;
 * - the ISR is never emptied: with no live ISR member the leader becomes `noLeader` (-1) and the ISR
 *   stays as it was (those replicas have every acknowledged write);
 * - a dead follower leaves the ISR (not the last member).
 *
 * Co-location of one service's internal topics (docs/CLUSTER.md, "Internal state logs as
 * partitions"; the groups of state-services/replicated-state-topics.ts): a service runs only on a
 * broker leading every topic of its group, so the controller makes them converge on one leader.
 * Each group has an anchor (its first topic); the other topics' partition 0
 * - is created with the anchor's replicas in the same order (`colocatedPartitionRecord`), led by the
 *   anchor's leader when that is a live replica;
 * - when its leader is elected, takes the anchor's leader if it is in the live ISR (`planPartition`'s
 *   `preferredLeader`), else the usual first live ISR member in replicas order;
 * - while its leader lives but differs from the anchor's, moves to the anchor's leader once that is
 *   in its ISR (a clean election: the new leader has every acknowledged write; epoch + 1, as
 *   Kafka's preferred-replica election).
 * The anchor itself follows the plain rules.
 */
import { noLeader, type PartitionRecord } from './cluster-records.js';

/**
 * Replicas for the partitions of a new topic: `replicationFactor` distinct brokers from `liveBrokerIds`
 * (sorted here), round-robin from a start that depends on the topic name, so leaders (the first
 * replica) spread over the brokers across partitions and topics. Undefined when fewer brokers live.
 */
export function assignReplicas(
  topic: string,
  partition: number,
  replicationFactor: number,
  liveBrokerIds: Iterable<number>,
): number[] | undefined {
  const brokers = [...liveBrokerIds].sort((a, b) => a - b);
  if (brokers.length < replicationFactor || replicationFactor < 1) return undefined;
  const start = (topicHash(topic) + partition) % brokers.length;
  const replicas: number[] = [];
  for (let index = 0; index < replicationFactor; index++) {
    replicas.push(brokers[(start + index) % brokers.length] as number);
  }
  return replicas;
}

/** The record of a partition just created: the first replica leads, every replica is in sync (empty logs). */
export function newPartitionRecord(replicas: number[], controllerEpoch: number): PartitionRecord {
  return {
    replicas: [...replicas],
    leaderId: replicas[0] as number,
    leaderEpoch: 0,
    isr: [...replicas],
    controllerEpoch,
  };
}

/**
 * The record of a new partition of a co-located topic whose group's anchor partition is `anchor`:
 * the anchor's replicas in its order, the live ones in sync (the log is empty), led by the anchor's
 * leader when it is one of them, else by the first live replica. Undefined when no replica lives.
 */
export function colocatedPartitionRecord(
  anchor: PartitionRecord,
  live: ReadonlySet<number>,
  controllerEpoch: number,
): PartitionRecord | undefined {
  const isr = anchor.replicas.filter((id) => live.has(id));
  const first = isr[0];
  if (first === undefined) return undefined;
  const leaderId = isr.includes(anchor.leaderId) ? anchor.leaderId : first;
  return { replicas: [...anchor.replicas], leaderId, leaderEpoch: 0, isr, controllerEpoch };
}

/**
 * What the partition should become given the live brokers, or undefined when it is fine as it is.
 * `controllerEpoch` is stamped on the answer. `preferredLeader` (a co-located topic: its anchor's
 * leader) is elected when it is in the live ISR, and a live leader moves to it the same way.
 */
export function planPartition(
  current: PartitionRecord,
  live: ReadonlySet<number>,
  controllerEpoch: number,
  preferredLeader: number = noLeader,
): PartitionRecord | undefined {
  const liveIsr = current.isr.filter((id) => live.has(id));
  const leaderAlive = current.leaderId !== noLeader && live.has(current.leaderId);
  const preferred =
    preferredLeader !== noLeader && liveIsr.includes(preferredLeader) ? preferredLeader : noLeader;
  if (leaderAlive && preferred !== noLeader && preferred !== current.leaderId) {
    // Co-location: the leader moves to the anchor's (in sync, so it has every acknowledged write).
    const isr = current.replicas.filter((id) => liveIsr.includes(id));
    return { ...current, leaderId: preferred, isr, leaderEpoch: current.leaderEpoch + 1, controllerEpoch };
  }
  if (leaderAlive) {
    // Rule 4: dead followers leave the ISR (the leader is alive, so the ISR stays non-empty). The
    // epoch stays: services that run for a leader's term (group coordinator) and producers holding
    // the epoch go on undisturbed.
    if (liveIsr.length === current.isr.length) return undefined;
    return { ...current, isr: liveIsr, controllerEpoch };
  }
  // Rules 2 and 3: the leader is dead or there is none; elect from the live ISR in replicas order.
  const leaderId = preferred !== noLeader ? preferred : current.replicas.find((id) => liveIsr.includes(id));
  if (leaderId === undefined) {
    if (current.leaderId === noLeader) return undefined; // offline already, nothing new
    return { ...current, leaderId: noLeader, leaderEpoch: current.leaderEpoch + 1, controllerEpoch };
  }
  const isr = current.replicas.filter((id) => liveIsr.includes(id));
  return { ...current, leaderId, isr, leaderEpoch: current.leaderEpoch + 1, controllerEpoch };
}

/** FNV-1a of the topic name: a stable spread of each topic's first leader, not a security hash. */
function topicHash(topic: string): number {
  let hash = 0x811c9dc5;
  for (let index = 0; index < topic.length; index++) {
    hash ^= topic.charCodeAt(index);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}
