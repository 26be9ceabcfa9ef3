/**
 * `BrokerApi.queues`: shared and key_shared consumption (competing consumers with per-message
 * acknowledgement), as the protocol layer and the HTTP API see it. The broker implements it in
 * src/broker/queues/broker-queues.ts; docs/PROTOCOL.md ("Queues") has the semantics.
 */
import type { Session } from './session.js';

export type QueueMode = 'shared' | 'key_shared';

/** Per-group settings a receive carries (the group keeps those of its latest receive). */
export interface QueueSettings {
  /** A delivery not acked within this is delivered again (deliveryCount + 1). Default 30 000. */
  ackTimeoutMs?: number;
  /** After this many failed deliveries the message goes to the dead-letter topic. Default 16. */
  maxDeliveries?: number;
  /** Delay before a nacked message comes again, by delivery count (the last value repeats). */
  retryBackoffMs?: number[];
  /** Where dead letters go. Default `<topic>.dlq` (created on demand, 1 partition). */
  deadLetterTopic?: string;
}

export interface ReceiveRequest extends QueueSettings {
  group: string;
  topic: string;
  mode: QueueMode;
  /** Most messages answered. */
  max: number;
  /** Long-poll: wait up to this long for a first message. */
  waitMs: number;
  /** Bytes of batches read per partition, about (a whole batch is always read). */
  maxBytes?: number;
  signal?: AbortSignal;
}

/**
 * The messages handed out from one partition, as parallel lists (no object per message): offset i
 * was delivered for the deliveryCounts[i]-th time (1 the first time) under lease leases[i] (what a
 * receipt is made of: `QueueService.receipt`).
 */
export interface ReceivedPartition {
  partition: number;
  /** Whole batches holding the delivered offsets (and other records to skip). */
  records: Uint8Array[];
  offsets: number[];
  deliveryCounts: number[];
  leases: number[];
}

export interface ReceiveResult {
  topic: string;
  partitions: ReceivedPartition[];
}

export interface SettleResult {
  /** Deliveries settled by this call (acked, or nacked: scheduled again or dead-lettered). */
  settled: number;
  /** Offsets that were not awaiting a settlement (already settled, never delivered, given again). */
  ignored: number;
}

export interface NackSettings {
  /** Delay before the message comes again; default: the group's retryBackoffMs schedule. */
  delayMs?: number;
  /** Why it failed: kept for the dead-letter headers. */
  error?: string;
}

export interface QueuePartitionDescription {
  partition: number;
  /** Visible end offset of the partition (what a receive may hand out up to). */
  logEndOffset: number;
  /** Every offset below is settled. */
  ackFloor: number;
  /** Settled [from, to) ranges above the floor. */
  settledRanges: number;
  inFlight: number;
  /** Waiting for a retry time. */
  scheduled: number;
  /** Ready to be delivered again (timed out, released, retry time reached). */
  ready: number;
  /** Next offset never handed out since the broker started. */
  cursor: number;
  /** Visible end offset of the partition minus the floor. */
  backlog: number;
  /**
   * Messages below the visible end not yet settled (acked or dead-lettered): the backlog minus the
   * settled ones above the floor. In flight, ready, scheduled and never handed out ones all count.
   */
  lag: number;
  /**
   * Unsettled messages given up because the partition no longer held them (retention deleted them
   * before they were acked): settled without delivery. Durable (`__queue_state`).
   */
  skippedByRetention: number;
}

export interface QueueGroupDescription {
  group: string;
  topic: string;
  mode: QueueMode;
  /** Sessions receiving for the group (key_shared members). */
  members: number[];
  settings: Required<QueueSettings>;
  partitions: QueuePartitionDescription[];
}

export interface QueueService {
  receive(session: Session, request: ReceiveRequest): Promise<ReceiveResult>;
  /** Settles `ranges` ([from, to) pairs) of each partition. Resolves once the acks are durable. */
  ack(
    group: string,
    topic: string,
    partitions: ReadonlyArray<{ partition: number; ranges: number[] }>,
  ): Promise<SettleResult>;
  /** Fails the given in-flight offsets: scheduled again, or dead-lettered after maxDeliveries. */
  nack(
    group: string,
    topic: string,
    partitions: ReadonlyArray<{ partition: number; offsets: number[] }>,
    settings: NackSettings,
  ): Promise<SettleResult>;
  /**
   * Acks by receipts (HTTP). All or nothing: RECEIPT_INVALID when one is malformed or of another
   * group, RECEIPT_EXPIRED when one's delivery is no longer awaiting it (deadline passed, settled).
   */
  ackReceipts(group: string, receipts: readonly string[]): Promise<SettleResult>;
  nackReceipts(group: string, receipts: readonly string[], settings: NackSettings): Promise<SettleResult>;
  /** The receipt of a delivery: opaque, bound to the group and this delivery; expires with it. */
  receipt(group: string, partition: number, offset: number, lease: number): string;
  /** Queue groups (all, or of one group name). */
  describe(group?: string): QueueGroupDescription[];
}

/** One row of a group list for a queue group: what `spillway group list` and `GET /v1/groups` show. */
export interface QueueGroupSummary {
  group: string;
  mode: QueueMode;
  topic: string;
  memberCount: number;
  /** Sum of the partitions' backlog (visible end minus the ack floor). */
  backlog: number;
  /** Sum of the partitions' lag (messages not yet settled). */
  lag: number;
  /** Sum of the partitions' deliveries awaiting an ack. */
  inFlight: number;
}

export function queueGroupSummary(queue: QueueGroupDescription): QueueGroupSummary {
  return {
    group: queue.group,
    mode: queue.mode,
    topic: queue.topic,
    memberCount: queue.members.length,
    backlog: queue.partitions.reduce((sum, partition) => sum + partition.backlog, 0),
    lag: queue.partitions.reduce((sum, partition) => sum + partition.lag, 0),
    inFlight: queue.partitions.reduce((sum, partition) => sum + partition.inFlight, 0),
  };
}
