/**
 * Opcodes of the wire protocol (docs/PROTOCOL.md). Numbers are part of the format: never reuse one.
 * 1-63: requests a client sends; 64-127: requests the server sends (FrameFlags.serverRequest, from
 * protocol version 2); 128-255: unassigned.
 */
export const Opcode = {
  hello: 1,
  createTopic: 2,
  deleteTopic: 3,
  listTopics: 4,
  describeTopic: 5,
  addPartitions: 6,
  produce: 10,
  fetch: 11,
  listOffset: 12,
  /** Transactions, protocol/transaction-api.ts. */
  txnBegin: 20,
  txnSend: 21,
  txnEnd: 22,
  txnList: 23,
  txnRegister: 24,
  txnIds: 25,
  /** Idempotent producer: a producer id and epoch (protocol/producer-api.ts). */
  initProducer: 13,
  /** Delayed messages: pending by horizon, next due, counters (protocol/delay-api.ts). */
  delayStats: 26,
  integrityReport: 30,
  repairPartition: 31,
  /** Consumer groups (group and broadcast mode), protocol/group-api.ts. */
  joinGroup: 40,
  heartbeat: 41,
  leaveGroup: 42,
  releasePartitions: 43,
  commitOffsets: 44,
  groupFetch: 45,
  listGroups: 46,
  describeGroup: 47,
  queueReceive: 50,
  queueAck: 51,
  queueNack: 52,
  queueDescribe: 53,
  /**
   * Cluster control plane (docs/CLUSTER.md): 70-79 are its numbers (client -> broker metadata, broker
   * -> broker control calls). METADATA: which broker leads which partition (protocol/cluster-metadata-api.ts).
   */
  metadata: 70,
  /**
   * Forwarding (broker -> broker, cluster admin; protocol/forwarding-api.ts): a service on one broker
   * appends into / scans a data partition another broker leads; DELAY_SCHEDULE: a delayed produce
   * taken by a partition leader to the delay service's broker.
   */
  forwardProduce: 75,
  forwardScan: 76,
  delaySchedule: 77,
  /**
   * A transaction coordinator hands a committed transaction's delayed batch (stamped with the
   * transaction id and the half's index) to the delay service's broker (docs/CLUSTER.md).
   */
  delayScheduleCommitted: 73,
  /** Server -> client: liveness check; the client answers `{}` by itself. */
  ping: 64,
  /** Server -> client: is this transaction to be committed? (check-back; answered by a transactional producer). */
  txnCheck: 65,
  /**
   * Replication data plane (80-89, broker -> broker, sent like client requests despite the range:
   * session 4 gave 70-79 to the cluster control plane and 80-89 to replication; protocol/replication-api.ts).
   */
  replicaFetch: 80,
  offsetForLeaderEpoch: 81,
} as const;

export type OpcodeName = keyof typeof Opcode;

const names = new Map<number, OpcodeName>(
  Object.entries(Opcode).map(([name, code]) => [code, name as OpcodeName]),
);

export function opcodeName(opcode: number): OpcodeName | undefined {
  return names.get(opcode);
}

/** Highest protocol version spoken by this code; HELLO negotiates it. */
export const protocolVersion = 2;
/** Lowest protocol version spoken by this code (version 1: no server requests). */
export const protocolVersionMin = 1;
/** First protocol version with server requests (FrameFlags.serverRequest). */
export const serverRequestsProtocolVersion = 2;

/**
 * The version a broker picks in HELLO: the highest version both sides speak, the client speaking
 * [clientMin, clientMax]; null when the ranges do not meet.
 */
export function negotiateProtocolVersion(clientMin: number, clientMax: number): number | null {
  const chosen = Math.min(clientMax, protocolVersion);
  return chosen >= Math.max(clientMin, protocolVersionMin) ? chosen : null;
}
