/**
 * Forwarding (docs/CLUSTER.md, "Built: a service writing into a partition another broker leads";
 * docs/PROTOCOL.md, FORWARD_PRODUCE 75 and FORWARD_SCAN 76): what a broker answers to another
 * broker's service (delay firing, transaction commits) appending into, or scanning, a data partition
 * this broker leads. Implemented by src/cluster/forwarding/forward-target.ts.
 */
import type { ProduceResult } from './broker-api.js';

/** The service's identity and term: who forwards and as of which term (its fence). */
export interface ForwardFence {
  /** The service's name (src/cluster/forwarding/forwarding-services.ts): `delay`, `transactions`. */
  service: string;
  /** The service's term fence (the sum of its internal topics' leader epochs when it started). */
  fence: number;
}

export interface ForwardProduceRequest extends ForwardFence {
  topic: string;
  partition: number;
}

export interface ForwardScanRequest extends ForwardFence {
  topic: string;
  partition: number;
  /** Scan from this offset (a batch boundary or the log start). */
  fromOffset: number;
  /** Bytes of matching batches in one answer (at least one batch). */
  maxBytes: number;
}

export interface ForwardScanResult {
  /** Where the next scan request starts; `endOffset` once everything was scanned. */
  nextOffset: number;
  /** The log end when the scan began (everything below it is on the in-sync replicas). */
  endOffset: number;
  /** The service's batches found in [fromOffset, nextOffset), whole, in log order (the answer's body). */
  batches: Uint8Array;
}

/** DELAY_SCHEDULE (77): a delayed batch for topic/partition, taken to the delay service's broker. */
export interface DelayScheduleRequest {
  topic: string;
  partition: number;
}

/**
 * DELAY_SCHEDULE_COMMITTED (73): a committed transaction's delayed batch (producerId = the transaction
 * id, baseSequence = the half's index), `sw-delay-ms` counting from `commitMs` (the decision's time).
 */
export interface DelayScheduleCommittedRequest {
  topic: string;
  partition: number;
  commitMs: number;
}

export interface ForwardingService {
  /**
   * Appends one batch of the service (producerId = the service's, producerEpoch = `fence`) with acks
   * 'all'; a repeat of a recent batch is answered with its first offsets. SERVICE_FENCED when a
   * newer term of the service is known here.
   */
  forwardProduce(request: ForwardProduceRequest, batch: Uint8Array): Promise<ProduceResult>;
  /** Fences older terms, then returns the service's batches from `fromOffset` (see ForwardScanResult). */
  forwardScan(request: ForwardScanRequest): Promise<ForwardScanResult>;
  /**
   * Schedules a client's delayed batch that reached another broker (the target partition's leader)
   * on this broker's delay service; NOT_COORDINATOR (retriable) while it does not run here.
   */
  delaySchedule(request: DelayScheduleRequest, batch: Uint8Array): Promise<ProduceResult>;
  /**
   * Schedules a committed transaction's delayed batch on this broker's delay service, idempotently per
   * (transaction id, index): a known one is answered with its first offsets. NOT_COORDINATOR
   * (retriable) while the service does not run here.
   */
  delayScheduleCommitted(request: DelayScheduleCommittedRequest, batch: Uint8Array): Promise<ProduceResult>;
}
