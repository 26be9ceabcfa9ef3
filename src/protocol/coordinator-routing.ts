/**
 * Which internal topic's leader serves a request, in a cluster (docs/CLUSTER.md, "Internal state logs
 * as partitions"). Each service keeps its state in a one-partition internal topic; the broker leading
 * that partition runs the service, and a request for it sent elsewhere fails with NOT_COORDINATOR.
 * A client routes such a request to the leader METADATA names for `coordinatorTopicOf(opcode)`,
 * partition 0. Opcodes not listed are data requests (routed by their partition's leader) or are
 * answered by any broker (HELLO, METADATA, topic admin).
 *
 * The names are the internal topic names of the stores (duplicated here as strings: protocol/ does not
 * import broker/; test/protocol/coordinator-routing.test.ts checks they match).
 */
import { Opcode } from './opcodes.js';

export const coordinatorTopics = {
  groups: '__consumer_offsets',
  queues: '__queue_state',
  transactions: '__transactions',
  producers: '__producer_state',
  delay: '__delay',
} as const;

export type CoordinatorTopic = (typeof coordinatorTopics)[keyof typeof coordinatorTopics];

const byOpcode = new Map<number, CoordinatorTopic>([
  [Opcode.joinGroup, coordinatorTopics.groups],
  [Opcode.heartbeat, coordinatorTopics.groups],
  [Opcode.leaveGroup, coordinatorTopics.groups],
  [Opcode.releasePartitions, coordinatorTopics.groups],
  [Opcode.commitOffsets, coordinatorTopics.groups],
  [Opcode.groupFetch, coordinatorTopics.groups],
  [Opcode.listGroups, coordinatorTopics.groups],
  [Opcode.describeGroup, coordinatorTopics.groups],
  [Opcode.queueReceive, coordinatorTopics.queues],
  [Opcode.queueAck, coordinatorTopics.queues],
  [Opcode.queueNack, coordinatorTopics.queues],
  [Opcode.queueDescribe, coordinatorTopics.queues],
  [Opcode.txnBegin, coordinatorTopics.transactions],
  [Opcode.txnSend, coordinatorTopics.transactions],
  [Opcode.txnEnd, coordinatorTopics.transactions],
  [Opcode.txnList, coordinatorTopics.transactions],
  [Opcode.txnRegister, coordinatorTopics.transactions],
  [Opcode.txnIds, coordinatorTopics.transactions],
  [Opcode.initProducer, coordinatorTopics.producers],
  [Opcode.delayStats, coordinatorTopics.delay],
]);

/** The internal topic whose partition 0 leader serves this opcode in a cluster, or undefined. */
export function coordinatorTopicOf(opcode: number): CoordinatorTopic | undefined {
  return byOpcode.get(opcode);
}

/**
 * A cluster broker's check of coordinator requests (`BrokerApi.coordinators`, src/cluster/state-services/):
 * throws NOT_COORDINATOR when this broker does not run the service of `coordinatorTopicOf(opcode)`,
 * or a non-retriable error for a service that does not run in a cluster yet. Absent on a single
 * broker: nothing is checked.
 */
export interface CoordinatorGate {
  check(opcode: number): void;
}
