/**
 * The client side of the idempotent producer (docs/PROTOCOL.md, "Idempotent PRODUCE"): the producer
 * id and epoch from INIT_PRODUCER, and the per-partition sequences stamped into each batch header.
 *
 * Sessions: one producer id and epoch is a session. Batches sealed while a session holds get its
 * fields and the partition's next sequences at seal (so the batch's CRC32C is computed once).
 * Batches sealed before the first session, or left unacknowledged when a session ends (the broker
 * dropped the producer, or a batch failed for good and left a gap), are stamped again, in partition
 * order, when the next session starts (`stampReady`), with a fresh CRC32C; the producer starts a
 * session only while nothing is in flight, so no batch of the old session can land after one of the
 * new. Within a session a batch keeps its sequences for every resend: the broker answers a repeat
 * with its original offsets.
 *
 * What a failure means (`classify`):
 *  - PRODUCER_FENCED: fatal, another instance took over the producer name;
 *  - UNKNOWN_PRODUCER_ID: a new session is needed; the batch goes again in it;
 *  - OUT_OF_ORDER_SEQUENCE while an earlier batch of the partition is unacknowledged: that one goes
 *    first, then this one again; otherwise the batch fails and a new session starts for the rest.
 * Single-threaded.
 */
import { SpillwayError } from '../errors.js';
import { BatchHeader } from '../format/batch-header.js';
import { crc32c } from '../format/crc32c.js';
import { writeInt64LE } from '../format/int64.js';
import type { FinishOptions } from '../format/record-batch.js';
import { producerNameLengthMax, producerSequenceMax } from '../limits.js';
import { Opcode } from '../protocol/opcodes.js';
import type { PartitionQueue, ProducerBatch } from './accumulator.js';
import type { Transport } from './transport.js';
import { integerOf } from './wire.js';

/** Where a batch stands in the sessions. */
interface Stamp {
  session: number;
  baseSequence: number;
}

/** What the producer does with a failed idempotent batch. */
export type IdempotentFailure =
  /** Send it again (after the partition's earlier batches), not counted as a retry. */
  | 'resend'
  /** The producer's usual retry rules (retriable or not). */
  | 'usual'
  /** Fail the batch; the rest of the partition goes in a new session. */
  | 'fail';

const emptyBody = new Uint8Array(0);

export function checkProducerName(name: unknown): string | undefined {
  if (name === undefined) return undefined;
  if (typeof name !== 'string' || name.length === 0 || name.length > producerNameLengthMax) {
    throw new SpillwayError(
      'INVALID_ARGUMENT',
      `producer option producerName must be a string of 1 to ${producerNameLengthMax} characters`,
    );
  }
  return name;
}

export class IdempotentSequencer {
  private readonly transport: Transport;
  private readonly name: string | undefined;
  private producerId = -1;
  private epoch = -1;
  /** The current session (0: none yet); bumped with each INIT_PRODUCER answer. */
  private session = 0;
  /** A new session is wanted (first use, or the last one ended). */
  private stale = true;
  private registering: Promise<void> | null = null;
  /** Set once fenced (or registration failed for good): every later batch fails with it. */
  fatal: SpillwayError | null = null;
  private readonly stamps = new WeakMap<ProducerBatch, Stamp>();
  /** Per partition: batches sent and not settled, oldest first (settled ones dropped lazily). */
  private readonly outstanding = new WeakMap<PartitionQueue, ProducerBatch[]>();
  private readonly nextSequences = new WeakMap<PartitionQueue, { session: number; sequence: number }>();

  constructor(transport: Transport, name: string | undefined) {
    this.transport = transport;
    this.name = name;
  }

  /** Batches may be sent now (a session holds). */
  get ready(): boolean {
    return !this.stale && this.fatal === null;
  }

  /** The current producer id and epoch (-1 before the first session). */
  get identity(): { producerId: number; producerEpoch: number } {
    return { producerId: this.producerId, producerEpoch: this.epoch };
  }

  /** The sequences of a batch sealed now, if a session holds (called by the accumulator at seal). */
  sealFields(batch: ProducerBatch, recordCount: number): FinishOptions | undefined {
    if (!this.ready) return undefined;
    const baseSequence = this.takeSequences(batch.queue, recordCount);
    this.stamps.set(batch, { session: this.session, baseSequence });
    return { producerId: this.producerId, producerEpoch: this.epoch, baseSequence };
  }

  /** True when `batch` carries the current session's fields. */
  isCurrent(batch: ProducerBatch): boolean {
    return this.stamps.get(batch)?.session === this.session;
  }

  /** Called when `batch` goes out (first send or resend). */
  noteSent(batch: ProducerBatch): void {
    if (batch.attempts !== 1) return;
    let list = this.outstanding.get(batch.queue);
    if (list === undefined) {
      list = [];
      this.outstanding.set(batch.queue, list);
    }
    list.push(batch);
  }

  /**
   * May `queue` send its next batch? A resend always may; a first send only within `windowBatches`
   * batches of the oldest batch of the partition not acknowledged yet, so that whatever the broker
   * wrote past that one, it still remembers it when it comes again.
   */
  mayTake(queue: PartitionQueue, windowBatches: number): boolean {
    const list = this.outstanding.get(queue);
    if (list === undefined) return true;
    while (list.length > 0 && list[0]!.settled) list.shift();
    if (list.length === 0) return true;
    const next = queue.ready[0] ?? queue.open;
    if (next === null || next === undefined || next.attempts > 0) return true;
    return next.sequence - list[0]!.sequence < windowBatches;
  }

  /** Asks for a new session: no batch is sent until it starts (`register`). */
  endSession(): void {
    this.stale = true;
  }

  /**
   * Registers (INIT_PRODUCER) for a new session; resolves once it holds (or fatal is set). The
   * caller starts it only while nothing is in flight, then stamps its ready batches (`stampReady`).
   */
  register(): Promise<void> {
    this.registering ??= this.transport
      .request(Opcode.initProducer, this.name === undefined ? {} : { name: this.name }, emptyBody)
      .then(
        (response) => {
          this.producerId = integerOf(response.header, 'producerId', 'INIT_PRODUCER');
          this.epoch = integerOf(response.header, 'producerEpoch', 'INIT_PRODUCER');
          this.session++;
          this.stale = false;
        },
        (error: unknown) => {
          if (!(error instanceof SpillwayError) || !error.retriable) {
            this.fatal =
              error instanceof SpillwayError
                ? error
                : new SpillwayError('INTERNAL', `INIT_PRODUCER failed: ${String(error)}`);
          }
          throw error;
        },
      )
      .finally(() => {
        this.registering = null;
      });
    return this.registering;
  }

  /**
   * Stamps the sealed batches of `queue` that are not of the current session, in order, with new
   * sequences (the partition's sequences restart at 0 in a new session). Nothing is in flight.
   */
  stampReady(queue: PartitionQueue, ready: readonly ProducerBatch[]): void {
    if (!this.ready) return;
    for (const batch of ready) {
      if (this.isCurrent(batch) || batch.bytes === null) continue;
      const baseSequence = this.takeSequences(queue, batch.recordCount);
      this.stamps.set(batch, { session: this.session, baseSequence });
      restampBatch(batch.bytes, this.producerId, this.epoch, baseSequence);
    }
  }

  /** What to do with a batch that failed with `error`; `earlierUnacked`: an earlier batch of its partition is not acknowledged. */
  classify(batch: ProducerBatch, error: unknown, earlierUnacked: boolean): IdempotentFailure {
    const code = error instanceof SpillwayError ? error.code : undefined;
    if (code === 'PRODUCER_FENCED') {
      this.fatal = error as SpillwayError;
      return 'fail';
    }
    if (code === 'UNKNOWN_PRODUCER_ID' || code === 'OUT_OF_ORDER_SEQUENCE') {
      // Stamped in an older session: it goes again in the current one.
      if (!this.isCurrent(batch)) return 'resend';
      if (code === 'UNKNOWN_PRODUCER_ID') {
        this.endSession();
        return 'resend';
      }
      if (earlierUnacked) return 'resend';
      this.endSession();
      return 'fail';
    }
    return 'usual';
  }

  /** The next `recordCount` sequences of `queue` in the current session (they start at 0 in each). */
  private takeSequences(queue: PartitionQueue, recordCount: number): number {
    const next = this.nextSequences.get(queue);
    const base = next !== undefined && next.session === this.session ? next.sequence : 0;
    this.nextSequences.set(queue, {
      session: this.session,
      sequence: (base + recordCount) % (producerSequenceMax + 1),
    });
    return base;
  }
}

/** Writes producer id, epoch and base sequence into a sealed batch and computes its CRC32C again. */
export function restampBatch(
  bytes: Uint8Array,
  producerId: number,
  epoch: number,
  baseSequence: number,
): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  writeInt64LE(bytes, producerId, BatchHeader.producerId);
  view.setInt16(BatchHeader.producerEpoch, epoch, true);
  view.setInt32(BatchHeader.baseSequence, baseSequence, true);
  view.setUint32(BatchHeader.crc, crc32c(bytes.subarray(BatchHeader.crcStart)) >>> 0, true);
}
