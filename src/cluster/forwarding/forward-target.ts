/**
 * The receiving side of forwarding (FORWARD_PRODUCE 75, FORWARD_SCAN 76; `BrokerApi.forwarding`):
 * what a partition's leader does for a service running on another broker — or on itself, through the
 * forwarder's local shortcut, which calls the same methods. Contract of the whole module: forwarder.ts.
 *
 * Fencing, checked in the turn the batch reaches the partition's append (or the scan takes its end):
 * a request of a service term older than the newest this broker knows is refused with SERVICE_FENCED.
 * The newest known is the largest of
 * 1. every fence this broker accepted from the service (a scan or a forward; memory, per service);
 * 2. `currentFence(service)`: the service's fence from this broker's view of etcd (the sum of the
 *    leader epochs of its internal topics, state-services/replicated-state-topics.ts). etcd is read
 *    whole per pass, in revision order: a broker that became leader of the partition after the
 *    service's new term was elected knows that term's fence, so a failover of this side does not
 *    forget it;
 * 3. the epoch of the service's last batch in the partition (the idempotent producer state, rebuilt
 *    from the batch headers by each new leader: PRODUCER_FENCED there is reported as SERVICE_FENCED).
 *
 * The append is the produce path (acks 'all'): validation, the idempotent producer's sequence check
 * (a resend is answered with its first offsets), the leader check (NOT_LEADER), then the answer once
 * the in-sync replicas have the batch. The batch must be the service's (its producerId, its fence as
 * producerEpoch): else INVALID_BATCH. Internal topics are refused (only their own service writes them).
 *
 * A scan first records the fence (no batch of an older term is appended afterwards), takes the log
 * end, waits until the in-sync replicas hold everything before it (acks 'all': nothing it reports can
 * vanish in a failover of this side), then returns the service's batches from `fromOffset`, bounded
 * per answer (`maxBytes` of matches, forwardScanReadBytesMax read).
 */
import { InvalidBatchError, SpillwayError } from '../../errors.js';
import { BatchAttributes, BatchHeader, batchLengthAt, readBatchHeader } from '../../format/batch-header.js';
import { readInt64LE } from '../../format/int64.js';
import { validateBatch } from '../../format/record-batch.js';
import { forwardScanReadBytesMax, producerEpochMax } from '../../limits.js';
import { crc32c } from '../../native.js';
import type { ProduceResult } from '../../protocol/broker-api.js';
import type {
  DelayScheduleCommittedRequest,
  DelayScheduleRequest,
  ForwardFence,
  ForwardingService,
  ForwardProduceRequest,
  ForwardScanRequest,
  ForwardScanResult,
} from '../../protocol/forwarding-api.js';
import type { ProduceOptions } from '../../protocol/replication-api.js';
import { forwardingProducerId } from './forwarding-services.js';

/** What of the broker a forward target uses. */
export interface ForwardTargetBroker {
  readonly messages: {
    produce(
      topic: string,
      partition: number,
      batch: Uint8Array,
      options?: ProduceOptions,
    ): Promise<ProduceResult>;
  };
  readonly topics: {
    partitionOf(
      topic: string,
      partition: number,
    ): {
      readonly log: {
        readonly logStartOffset: number;
        readonly logEndOffset: number;
        read(
          offset: number,
          maxBytes: number,
          maxOffset?: number,
        ): { bytes: Uint8Array; batchCount: number; nextOffset: number };
      };
      readonly replica: {
        admitProduce(options: ProduceOptions | undefined): void;
        replicated(endOffset: number, options: ProduceOptions | undefined): Promise<void>;
      } | null;
    };
  };
}

/** What of the broker's delay service (BrokerDelay) a forward target hands requests to. */
export interface ForwardedDelayService {
  /** DELAY_SCHEDULE: NOT_COORDINATOR while no term of the service runs here. */
  scheduleHere(topic: string, partition: number, batch: Uint8Array): Promise<ProduceResult>;
  /** DELAY_SCHEDULE_COMMITTED: idempotent per (transaction id, index); NOT_COORDINATOR as above. */
  scheduleCommittedHere(
    topic: string,
    partition: number,
    batch: Uint8Array,
    commitMs: number,
  ): Promise<ProduceResult>;
}

const acksAll: ProduceOptions = { acks: 'all' };

export class ForwardTarget implements ForwardingService {
  /** Per service, the newest fence accepted here. */
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly broker: ForwardTargetBroker,
    /** The service's fence as this broker's view of the cluster has it (0 when unknown). */
    private readonly currentFence: (service: string) => number = () => 0,
  ) {}

  /**
   * This broker's delay service, taking what reached it from other brokers: DELAY_SCHEDULE (a delayed
   * batch produced there) and DELAY_SCHEDULE_COMMITTED (a committed transaction's delayed batch, from
   * the coordinator). Set by service-leadership.ts; null: both refused (INVALID_ARGUMENT).
   */
  delay: ForwardedDelayService | null = null;

  delaySchedule(request: DelayScheduleRequest, batch: Uint8Array): Promise<ProduceResult> {
    try {
      return this.delayService('DELAY_SCHEDULE').scheduleHere(request.topic, request.partition, batch);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  delayScheduleCommitted(request: DelayScheduleCommittedRequest, batch: Uint8Array): Promise<ProduceResult> {
    try {
      const delay = this.delayService('DELAY_SCHEDULE_COMMITTED');
      // One whole batch, CRC checked, with the stamp's transactional bit and the delayed attribute.
      const fields = validateBatch(batch, { crc32c: (bytes) => crc32c(bytes), baseOffset: 0 });
      const wanted = BatchAttributes.delayed | BatchAttributes.transactional;
      if (fields.batchLength !== batch.length || (fields.attributes & wanted) !== wanted) {
        throw new InvalidBatchError(
          'DELAY_SCHEDULE_COMMITTED takes one delayed batch stamped by a transaction commit',
        );
      }
      return delay.scheduleCommittedHere(request.topic, request.partition, batch, request.commitMs);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** The delay service taking `request` here; INVALID_ARGUMENT when none runs in this cluster. */
  private delayService(request: string): ForwardedDelayService {
    if (this.delay === null) {
      throw new SpillwayError(
        'INVALID_ARGUMENT',
        `${request}: the delay service does not run in this cluster`,
      );
    }
    return this.delay;
  }

  /** The newest fence of `service` known here (tests, messages). */
  knownFence(service: string): number {
    return Math.max(this.seen.get(service) ?? 0, this.currentFence(service));
  }

  forwardProduce(request: ForwardProduceRequest, batch: Uint8Array): Promise<ProduceResult> {
    const producerId = this.admit(request);
    if (batch.length < BatchHeader.size) {
      throw new InvalidBatchError(
        `a forwarded batch of ${batch.length} bytes is shorter than a batch header`,
      );
    }
    const fields = readBatchHeader(batch);
    if (fields.producerId !== producerId || fields.producerEpoch !== request.fence) {
      throw new InvalidBatchError(
        `a batch forwarded by service ${request.service} must carry its producer id ${producerId} and its fence ${request.fence} as epoch (got ${fields.producerId}, ${fields.producerEpoch})`,
      );
    }
    // No await before the produce: the fence check and the append's sequence check share one turn.
    return this.broker.messages
      .produce(request.topic, request.partition, batch, acksAll)
      .catch((error: unknown) => {
        throw fencedFrom(error, request);
      });
  }

  async forwardScan(request: ForwardScanRequest): Promise<ForwardScanResult> {
    const producerId = this.admit(request);
    const target = this.broker.topics.partitionOf(request.topic, request.partition);
    target.replica?.admitProduce(acksAll);
    const endOffset = target.log.logEndOffset;
    await target.replica?.replicated(endOffset, acksAll);
    const log = target.log;
    let offset = Math.max(request.fromOffset, log.logStartOffset);
    const found: Uint8Array[] = [];
    let foundBytes = 0;
    let readBytes = 0;
    while (offset < endOffset && foundBytes < request.maxBytes && readBytes < forwardScanReadBytesMax) {
      const read = log.read(offset, 1 << 20, endOffset);
      if (read.batchCount === 0 || read.nextOffset <= offset) break;
      readBytes += read.bytes.length;
      let position = 0;
      for (let index = 0; index < read.batchCount; index++) {
        const length = batchLengthAt(read.bytes, position);
        const baseOffset = readInt64LE(read.bytes, position + BatchHeader.baseOffset);
        if (
          baseOffset >= offset &&
          readInt64LE(read.bytes, position + BatchHeader.producerId) === producerId
        ) {
          // Full: the next request starts at this batch.
          if (found.length > 0 && foundBytes + length > request.maxBytes) {
            return { nextOffset: baseOffset, endOffset, batches: concat(found, foundBytes) };
          }
          found.push(read.bytes.slice(position, position + length));
          foundBytes += length;
        }
        position += length;
      }
      offset = read.nextOffset;
    }
    return { nextOffset: Math.min(offset, endOffset), endOffset, batches: concat(found, foundBytes) };
  }

  /** SERVICE_FENCED for a term older than the newest known; records a newer one. Returns the producer id. */
  private admit(request: ForwardFence): number {
    const producerId = forwardingProducerId(request.service);
    const known = this.knownFence(request.service);
    if (request.fence < known) {
      throw new SpillwayError(
        'SERVICE_FENCED',
        `service ${request.service} term ${request.fence} was fenced by term ${known} (a newer leader of its internal topics runs)`,
      );
    }
    if (request.fence > producerEpochMax) {
      throw new SpillwayError(
        'SERVICE_FENCED',
        `service ${request.service} term ${request.fence} passes the producer epoch range (${producerEpochMax}): it cannot forward`,
      );
    }
    this.seen.set(request.service, request.fence);
    return producerId;
  }
}

/** PRODUCER_FENCED of the service's producer id (the partition's batches are of a newer term) as SERVICE_FENCED. */
function fencedFrom(error: unknown, request: ForwardProduceRequest): unknown {
  if (error instanceof SpillwayError && error.code === 'PRODUCER_FENCED') {
    return new SpillwayError(
      'SERVICE_FENCED',
      `service ${request.service} term ${request.fence}: ${request.topic}/${request.partition} holds a batch of a newer term (${error.message})`,
    );
  }
  return error;
}

function concat(parts: Uint8Array[], bytes: number): Uint8Array {
  if (parts.length === 1) return parts[0] as Uint8Array;
  const out = new Uint8Array(bytes);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
