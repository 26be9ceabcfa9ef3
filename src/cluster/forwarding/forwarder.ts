/**
 * Forwarding: a service running on broker A (the delay firer, a transaction coordinator) appends
 * batches into data partitions that broker B leads, and scans them for its own batches (docs/CLUSTER.md,
 * "Built: a service writing into a partition another broker leads"). One `Forwarder` per service
 * term (followed-services.ts `ServiceTerm`); the receiving side is forward-target.ts.
 *
 * Contract (what a service may rely on):
 * - `append(topic, partition, batch)` resolves with the batch's offsets once the partition's in-sync
 *   replicas hold it (acks 'all'), written **at most once** whatever is resent: after a timeout, a
 *   lost connection, or a leader change of the target (B) — the resend is recognised and answered
 *   with the first offsets. It retries every retriable error (NOT_LEADER, NOT_ENOUGH_REPLICAS,
 *   TIMEOUT, CONNECTION_CLOSED, ...) with backoff, re-reading who leads the partition, until it
 *   succeeds or the term ends. Non-retriable errors (UNKNOWN_TOPIC, UNKNOWN_PARTITION, INVALID_BATCH,
 *   ...) reject it: the batch was not written.
 * - **Local shortcut**: when this broker leads the partition, the same checks run in process (no
 *   request); the route is decided per attempt, so a move either way is followed.
 * - **Fenced by the term**: every append and scan carries the term's fence; once B knows a newer term
 *   (it scanned or appended for it, etcd says so, or the partition holds its batches) the request is
 *   refused with SERVICE_FENCED, this forwarder closes, and every pending and later call rejects with
 *   SERVICE_FENCED. `close()` (the service stopping) does the same at once.
 * - **Order and bounds**: appends to one partition are sent one at a time, in call order (a second
 *   waits for the first's answer); at most forwardInFlightMax partitions at once; at most
 *   forwardQueuedMax calls waiting (one more: TOO_MANY_REQUESTS, retriable). The forwarder owns the
 *   batch from the call on (it stamps the header; the caller must not reuse the bytes).
 * - `logEnd(topic, partition)`: the same fencing, then the partition's log end once replicated (a
 *   fence offset: the service's later batches lie at or after it).
 * - `scan(topic, partition, fromOffset, onBatch)`: first fences older terms on the partition's leader
 *   (no batch of an older term is appended there afterwards), then hands every batch of this service
 *   at or after `fromOffset` to `onBatch` in log order, each already on the in-sync replicas; resolves
 *   with the log end it scanned to. This is what exactly-once after A's failover rests on: the new
 *   term scans each target from the service's durable fence offset for its references (in the
 *   batches' record headers: `sw-delay-ref`, transaction stamps) before appending anything there.
 *
 * Why the idempotent producer's fields instead of a mechanism of its own: a forwarded batch is an
 * idempotent batch — producerId = the service's (forwarding-services.ts), producerEpoch = the term's
 * fence, baseSequence = this forwarder's sequence for the partition (from 0 in each term). The
 * partition leader's existing check (src/broker/producers, run in the turn of the append) then gives
 * everything the contract needs: a resend is answered with its first offsets, a batch of an older
 * epoch than the partition's last is PRODUCER_FENCED, and because the three fields travel in the
 * batch header that followers copy unchanged, a new leader of B rebuilds the same state from its log
 * (docs/CLUSTER.md, "Built: idempotent producers"). A parallel table of service references on B would
 * need a replicated store and a rebuild of its own, for no more than this. The service's own
 * reference (a delay ref, a transaction stamp) stays in record headers, for the scan. Limits: a term
 * fence above producerEpochMax (32,767 leader changes of the service's topics summed) cannot forward
 * (SERVICE_FENCED); when the partition no longer holds any batch of the service (retention deleted
 * them) and its leader changed, the state is gone: the forwarder restarts that partition at sequence
 * 0 (UNKNOWN_PRODUCER_ID), which the leader takes.
 *
 * Single-threaded (one event loop).
 */
import type { Transport } from '../../client/transport.js';
import { type Clock, type ClockTimer, systemClock } from '../../clock.js';
import { SpillwayError } from '../../errors.js';
import { BatchHeader, batchLengthAt } from '../../format/batch-header.js';
import { writeInt64LE } from '../../format/int64.js';
import {
  forwardInFlightMax,
  forwardQueuedMax,
  forwardRequestTimeoutMs,
  forwardRetryMsMax,
  forwardRetryMsMin,
  forwardScanBytesMax,
  producerEpochMax,
  producerSequenceMax,
} from '../../limits.js';
import { crc32c } from '../../native.js';
import type { ProduceResult } from '../../protocol/broker-api.js';
import type { ForwardingService, ForwardScanResult } from '../../protocol/forwarding-api.js';
import { Opcode } from '../../protocol/opcodes.js';
import { forwardingProducerId } from './forwarding-services.js';

/** Where a partition's leader is, as this broker knows it now. */
export interface ForwardRoute {
  brokerId: number;
  /** Its WebSocket URL (unused when it is this broker). */
  url: string;
}

export interface ForwarderOptions {
  service: string;
  /** The term's fence (ServiceTerm.fence). */
  fence: number;
  /** This broker's id: a route to it is the local shortcut. */
  brokerId: number;
  /** This broker's receiving side (forward-target.ts). */
  local: ForwardingService;
  /** The partition's leader now, or undefined while none is known. */
  route(topic: string, partition: number): ForwardRoute | undefined;
  /** A connection to another broker (shared, reopened by its transport). */
  connect(url: string): Promise<Transport>;
  clock?: Clock;
}

/** The offsets of an appended (or recognised) batch. */
export type ForwardResult = Pick<ProduceResult, 'partition' | 'baseOffset' | 'lastOffset'>;

interface Lane {
  /** Sequence of the next batch (this term). */
  sequence: number;
  tail: Promise<void>;
}

const noop = (): void => undefined;

export class Forwarder {
  readonly service: string;
  readonly fence: number;
  private readonly producerId: number;
  private readonly options: ForwarderOptions;
  private readonly clock: Clock;
  private readonly lanes = new Map<string, Lane>();
  private waiting = 0;
  private inFlight = 0;
  private readonly slotWaiters: Array<() => void> = [];
  private closedBy: SpillwayError | null = null;
  private readonly sleepers = new Set<{ timer: ClockTimer; wake: () => void }>();

  constructor(options: ForwarderOptions) {
    this.options = options;
    this.service = options.service;
    this.fence = options.fence;
    this.producerId = forwardingProducerId(options.service);
    this.clock = options.clock ?? systemClock;
    if (!Number.isSafeInteger(options.fence) || options.fence < 0 || options.fence > producerEpochMax) {
      this.closedBy = new SpillwayError(
        'SERVICE_FENCED',
        `service ${options.service} term fence ${options.fence} is outside [0, ${producerEpochMax}]: it cannot forward`,
      );
    }
  }

  /** True once the term ended (closed, or fenced by a newer term). */
  get closed(): boolean {
    return this.closedBy !== null;
  }

  /** Appends `batch` to topic/partition (see the file header). */
  append(topic: string, partition: number, batch: Uint8Array): Promise<ForwardResult> {
    if (this.closedBy !== null) return Promise.reject(this.closedBy);
    if (this.waiting >= forwardQueuedMax) {
      return Promise.reject(
        new SpillwayError(
          'TOO_MANY_REQUESTS',
          `service ${this.service}: ${this.waiting} forwards waiting already`,
        ),
      );
    }
    const key = `${topic}\u0000${partition}`;
    let lane = this.lanes.get(key);
    if (lane === undefined) {
      lane = { sequence: 0, tail: Promise.resolve() };
      this.lanes.set(key, lane);
    }
    const owned = lane;
    this.waiting++;
    const run = owned.tail.then(async () => {
      this.waiting--;
      await this.slot();
      try {
        return await this.appendInLane(owned, topic, partition, batch);
      } finally {
        this.release();
      }
    });
    owned.tail = run.then(noop, noop);
    return run;
  }

  /** Scans topic/partition for this service's batches from `fromOffset` (see the file header). */
  async scan(
    topic: string,
    partition: number,
    fromOffset: number,
    onBatch: (batch: Uint8Array) => void,
  ): Promise<number> {
    let from = fromOffset;
    for (;;) {
      const answer = await this.retrying(topic, partition, (route) =>
        route.brokerId === this.options.brokerId
          ? this.options.local.forwardScan(this.scanRequest(topic, partition, from))
          : this.remoteScan(route, topic, partition, from),
      );
      const bytes = answer.batches;
      for (let position = 0; position < bytes.length; ) {
        const length = batchLengthAt(bytes, position);
        onBatch(bytes.subarray(position, position + length));
        position += length;
      }
      if (answer.nextOffset >= answer.endOffset) return answer.endOffset;
      from = answer.nextOffset;
    }
  }

  /**
   * The partition's log end on its leader, after fencing older terms there and waiting until its
   * in-sync replicas hold everything below it: a fence offset for the service's own records (every
   * batch this term appends to the partition later lies at or after it; a transaction commit's target
   * offsets, the delay firer's fences). A scan from past the end, so no batch is read.
   */
  logEnd(topic: string, partition: number): Promise<number> {
    return this.scan(topic, partition, Number.MAX_SAFE_INTEGER, () => undefined);
  }

  /** Ends the term: pending and later calls reject with SERVICE_FENCED (`why`). */
  close(why: string): void {
    if (this.closedBy === null) {
      this.closedBy = new SpillwayError(
        'SERVICE_FENCED',
        `service ${this.service} term ${this.fence} ended: ${why}`,
      );
    }
    for (const sleeper of this.sleepers) {
      sleeper.timer.cancel();
      sleeper.wake();
    }
    this.sleepers.clear();
    for (const waiter of this.slotWaiters.splice(0)) waiter();
  }

  private async appendInLane(
    lane: Lane,
    topic: string,
    partition: number,
    batch: Uint8Array,
  ): Promise<ForwardResult> {
    const recordCount = new DataView(batch.buffer, batch.byteOffset, BatchHeader.size).getInt32(
      BatchHeader.recordCount,
      true,
    );
    let stampedWith = -1;
    const header = { service: this.service, fence: this.fence, topic, partition };
    const result = await this.retrying(
      topic,
      partition,
      (route) => {
        if (stampedWith !== lane.sequence) {
          stamp(batch, this.producerId, this.fence, lane.sequence);
          stampedWith = lane.sequence;
        }
        if (route.brokerId === this.options.brokerId) return this.options.local.forwardProduce(header, batch);
        return this.remoteAppend(route, header, batch);
      },
      (error) => {
        // The partition holds no state of this service any more (its batches left the log): from 0.
        if (error.code !== 'UNKNOWN_PRODUCER_ID' || lane.sequence === 0) return false;
        lane.sequence = 0;
        return true;
      },
    );
    lane.sequence = (lane.sequence + recordCount) % (producerSequenceMax + 1);
    return { partition: result.partition, baseOffset: result.baseOffset, lastOffset: result.lastOffset };
  }

  private async remoteAppend(
    route: ForwardRoute,
    header: { service: string; fence: number; topic: string; partition: number },
    batch: Uint8Array,
  ): Promise<ForwardResult> {
    const transport = await this.options.connect(route.url);
    const answer = await transport.request(Opcode.forwardProduce, header, batch, {
      timeoutMs: forwardRequestTimeoutMs,
    });
    const fields = answer.header as Partial<ForwardResult>;
    if (typeof fields.baseOffset !== 'number' || typeof fields.lastOffset !== 'number') {
      throw new SpillwayError(
        'PROTOCOL_ERROR',
        `FORWARD_PRODUCE answer without offsets from broker ${route.brokerId}`,
      );
    }
    return { partition: header.partition, baseOffset: fields.baseOffset, lastOffset: fields.lastOffset };
  }

  private scanRequest(topic: string, partition: number, fromOffset: number) {
    return {
      service: this.service,
      fence: this.fence,
      topic,
      partition,
      fromOffset,
      maxBytes: forwardScanBytesMax,
    };
  }

  private async remoteScan(
    route: ForwardRoute,
    topic: string,
    partition: number,
    fromOffset: number,
  ): Promise<ForwardScanResult> {
    const transport = await this.options.connect(route.url);
    const answer = await transport.request(
      Opcode.forwardScan,
      this.scanRequest(topic, partition, fromOffset),
      undefined,
      {
        timeoutMs: forwardRequestTimeoutMs,
      },
    );
    const fields = answer.header as Partial<ForwardScanResult>;
    if (typeof fields.nextOffset !== 'number' || typeof fields.endOffset !== 'number') {
      throw new SpillwayError(
        'PROTOCOL_ERROR',
        `FORWARD_SCAN answer without offsets from broker ${route.brokerId}`,
      );
    }
    return { nextOffset: fields.nextOffset, endOffset: fields.endOffset, batches: answer.body };
  }

  /**
   * Runs `attempt` against the partition's current leader until it succeeds: retriable errors (and
   * no known leader) wait a backoff and try again; SERVICE_FENCED closes the forwarder; `retryAt`
   * may turn another error into an immediate retry. Rejects once the forwarder is closed.
   */
  private async retrying<T>(
    topic: string,
    partition: number,
    attempt: (route: ForwardRoute) => Promise<T>,
    retryAt: (error: SpillwayError) => boolean = () => false,
  ): Promise<T> {
    let backoff = forwardRetryMsMin;
    for (;;) {
      if (this.closedBy !== null) throw this.closedBy;
      const route = this.options.route(topic, partition);
      if (route !== undefined) {
        try {
          const result = await attempt(route);
          if (this.closedBy !== null) throw this.closedBy;
          return result;
        } catch (error) {
          if (this.closedBy !== null) throw this.closedBy;
          if (error instanceof SpillwayError) {
            if (error.code === 'SERVICE_FENCED') {
              this.close(error.message);
              throw this.closedBy ?? error;
            }
            if (retryAt(error)) continue;
            if (!error.retriable) throw error;
          } else if (route.brokerId === this.options.brokerId) {
            throw error; // not a SpillwayError in process: a fault, not something a resend mends
          }
          // Else a connection that could not open, a transport failure: retried.
        }
      }
      await this.sleep(backoff);
      backoff = Math.min(backoff * 2, forwardRetryMsMax);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const sleeper = {
        timer: this.clock.setTimeout(() => {
          this.sleepers.delete(sleeper);
          resolve();
        }, ms),
        wake: resolve,
      };
      this.sleepers.add(sleeper);
    });
  }

  private async slot(): Promise<void> {
    while (this.inFlight >= forwardInFlightMax && this.closedBy === null) {
      await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
    }
    this.inFlight++;
  }

  private release(): void {
    this.inFlight--;
    this.slotWaiters.shift()?.();
  }
}

/** Writes the service's producer id, the term's fence and `sequence` into the header; CRC again. */
function stamp(batch: Uint8Array, producerId: number, fence: number, sequence: number): void {
  const view = new DataView(batch.buffer, batch.byteOffset, BatchHeader.size);
  writeInt64LE(batch, producerId, BatchHeader.producerId);
  view.setInt16(BatchHeader.producerEpoch, fence, true);
  view.setInt32(BatchHeader.baseSequence, sequence, true);
  view.setUint32(BatchHeader.crc, crc32c(batch.subarray(BatchHeader.crcStart)) >>> 0, true);
}
