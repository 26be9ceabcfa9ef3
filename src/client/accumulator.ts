/**
 * The producer's record accumulator: per partition, one open batch being filled (a BatchBuilder
 * taken from a small pool, so builders exist only for partitions being filled) and a queue of
 * sealed batches waiting for an in-flight slot. Records are written straight into the builder.
 *
 * Settling: each batch has one promise, `acked`, settled once from one place (the ack, or the
 * error that ended the retries). A record's send() promise is `acked.then(nextRecordResult)`, with
 * one shared reaction function: per record only that derived promise and its reaction exist while
 * the batch is unacknowledged (no closure, no resolve/reject functions; measured: resolve and
 * reject functions kept per record cost ~2.5x the memory, and the scavenges copying those
 * long-lived objects cost more than the one extra microtask per record). V8 runs a promise's
 * reactions in the order they were added, so the n-th call of nextRecordResult is record n:
 * { partition, offset: baseOffset + n }. A failed batch rejects every send with its error.
 *
 * A batch is sealed (the bytes the transport sends, and resends on retry; the builder goes back to
 * the pool) when it reaches its target size, or before a record that would take it past
 * (judged from the record's least size: multi-byte text may still pass it by one record; a record
 * is never split, and one larger than batchBytes travels alone), or when the producer takes it to
 * send: after `lingerMs` (0: at the next setImmediate, so everything sent in the same tick shares
 * a batch) or at once while flushing. An open batch whose partition has no free in-flight slot
 * stays open and keeps growing: under load, batches fill up instead of queueing small.
 *
 * Target size: `batchBytes`; with `adaptive`, a batch whose records are large grows to hold
 * producerBatchRecordsTarget records of the largest size appended to it, up to
 * max(batchBytes, producerAdaptiveBatchBytesMax): 16 KiB records travel 15 to a 256 KiB batch, 100 B
 * ones in batchBytes. CRC32C of sealed batches: client-crc32c.ts (native when registered).
 *
 * sendBatch: while `collector` is set, append() adds records without a send() promise and hands
 * each record's batch to the collector (send-batch-collector.ts), which waits for `ProducerBatch.acked`
 * as a whole. A batch holds only tracked or only untracked records (record n's result is the n-th
 * reaction): an open batch of the other kind is sealed first.
 *
 * Sealing without a copy: a batch that fills at least half of its builder's buffer takes the buffer
 * itself (BatchBuilder.finishDetach) and the builder continues in another one; a smaller batch is
 * copied out, so a batch never holds more than twice its bytes: below spareBatchBufferBytesMin
 * into Buffer's shared pool, larger ones into a buffer of their own. With `recycle` (the transport
 * is done with a body once its answer came: the broker has its own copy), the buffer of a batch
 * acknowledged on its first attempt (a detached builder buffer, or the own buffer a batch was
 * copied into) goes to the spare buffers (spare-batch-buffers.ts, bounded) that the next seals
 * continue in or copy into: no allocation, zero-fill or garbage per batch at a steady rate, also
 * for one-record batches (a latency producer at 16 KiB). A batch that failed or was sent more than
 * once is never recycled (a timed-out send may still sit in a socket's queue). No caller ever sees
 * a batch's bytes, so a recycled buffer cannot show other bytes to anyone.
 *
 * Memory: `bufferedBytes` counts every byte of open and sealed batches not yet settled (acked or
 * failed for good); the producer makes send() wait while it is above `bufferMemoryBytes`.
 * Single-threaded; callbacks (`onSendable`) run synchronously from append() or the linger timer.
 */
import { assert } from '../assert.js';
import { BatchBuilder, type FinishOptions, type RecordInput } from '../format/record-batch.js';
import { batchBytesMax, producerAdaptiveBatchBytesMax, producerBatchRecordsTarget } from '../limits.js';
import { clientCrc32c } from './client-crc32c.js';
import type { RecordPositions } from './msg-id-send.js';
import type { SendResult } from './producer.js';
import type { SendBatchCollector } from './send-batch-collector.js';
import { SpareBatchBuffers, spareBatchBufferBytesMin } from './spare-batch-buffers.js';

/**
 * The reaction every send() promise of a batch has on the batch's ack: one shared function, no
 * closure per record. Reactions run in the order they were added, which is record order, so the
 * n-th call is record n.
 */
function nextRecordResult(batch: ProducerBatch): SendResult {
  const record = batch.resultsMade++;
  const positions = batch.positions;
  if (positions !== null)
    return { partition: positions.partitions[record]!, offset: positions.offsets[record]! };
  return { partition: batch.queue.partition, offset: batch.baseOffset + record };
}

function ignore(): void {}

/** One batch on its way: open (builder set), then sealed (bytes set) until acked or failed. */
export class ProducerBatch {
  readonly queue: PartitionQueue;
  /** Order of the batch in its partition (retries go back in this order). */
  readonly sequence: number;
  readonly createdAtMs: number;
  /** When the linger of this open batch ends (ms since the epoch); 0: at the next tick. */
  lingerDeadlineMs: number;
  lingerExpired = false;
  builder: BatchBuilder | null;
  /** The sealed batch, owned by this object. */
  bytes: Uint8Array | null = null;
  /**
   * The sealed batch is a view at offset 0 of a buffer of its own (a builder's former buffer, see
   * finishDetach, or the buffer it was copied into), counted whole: recyclable once acked.
   */
  ownsBuffer = false;
  recordCount = 0;
  /** Bytes counted in the accumulator's bufferedBytes for this batch. */
  accountedBytes = 0;
  attempts = 0;
  settled = false;
  /** The broker's baseOffset once acked. */
  baseOffset = -1;
  /** Per-record positions when the broker answered some record with its first copy (msg-id dedup). */
  positions: RecordPositions | null = null;
  /** Records whose send() result was made (see nextRecordResult). */
  resultsMade = 0;
  /** Records whose send() promise was made, or appended untracked (sendBatch). */
  tracked = 0;
  /** Size at which the batch is sealed (batchBytes, or more for large records when adaptive). */
  targetBytes: number;
  /** Its records were appended for sendBatch (no send() promise each). */
  untracked = false;
  /** Settles once: with this batch once acked, or with the error that ended the retries. */
  readonly acked: Promise<ProducerBatch>;
  private resolveAcked!: (batch: ProducerBatch) => void;
  private rejectAcked!: (error: unknown) => void;

  constructor(
    queue: PartitionQueue,
    sequence: number,
    builder: BatchBuilder,
    nowMs: number,
    lingerDeadlineMs: number,
    targetBytes: number,
  ) {
    this.queue = queue;
    this.targetBytes = targetBytes;
    this.sequence = sequence;
    this.builder = builder;
    this.createdAtMs = nowMs;
    this.lingerDeadlineMs = lingerDeadlineMs;
    this.acked = new Promise<ProducerBatch>((resolve, reject) => {
      this.resolveAcked = resolve;
      this.rejectAcked = reject;
    });
  }

  /** The send() promise of the record just appended (record `tracked`). */
  track(): Promise<SendResult> {
    this.tracked++;
    return this.acked.then(nextRecordResult);
  }

  /** Resolves once the batch is settled, acked or failed: what flush() waits for. */
  whenSettled(): Promise<void> {
    return this.acked.then(ignore, ignore);
  }

  /** Resolves record i with { partition, offset: baseOffset + i }, or with positions[i] when given. */
  resolve(baseOffset: number, positions: RecordPositions | null = null): void {
    this.checkTracked();
    this.baseOffset = baseOffset;
    this.positions = positions;
    this.resolveAcked(this);
  }

  /** Rejects every record's send() with `error`. */
  reject(error: unknown): void {
    this.checkTracked();
    this.rejectAcked(error);
  }

  private checkTracked(): void {
    assert(
      this.tracked === this.recordCount,
      () => `ProducerBatch: ${this.tracked} sends tracked for ${this.recordCount} records at settle`,
    );
    this.settled = true;
  }
}

/** The batches of one partition: the open one and the sealed ones waiting to be sent, in order. */
export class PartitionQueue {
  readonly topic: string;
  readonly partition: number;
  /** The produce request header of this partition, made once (`acks` only when the producer sets it). */
  readonly requestHeader: { topic: string; partition: number; acks?: 'all' | 'leader' };
  open: ProducerBatch | null = null;
  /** Sealed batches not in flight, by sequence (a retried batch goes back before later ones). */
  readonly ready: ProducerBatch[] = [];
  inFlight = 0;
  /** Bytes of this partition's batches in flight. */
  inFlightBytes = 0;
  /** Set while a failed batch of this partition waits for its retry backoff: nothing is sent meanwhile. */
  paused = false;
  nextSequence = 0;
  /** Batch attributes of this queue's batches (BatchAttributes.delayed for delayed messages). */
  readonly attributes: number;
  /**
   * True for the queues an idempotent producer keeps outside its sequences (delayed messages, and
   * messages with a msgId): their batches carry no producer id, sequence or epoch.
   */
  readonly unsequenced: boolean;

  constructor(
    topic: string,
    partition: number,
    attributes = 0,
    unsequenced = false,
    acks?: 'all' | 'leader',
  ) {
    this.topic = topic;
    this.partition = partition;
    this.attributes = attributes;
    this.unsequenced = unsequenced;
    this.requestHeader = acks === undefined ? { topic, partition } : { topic, partition, acks };
  }
}

export interface AccumulatorOptions {
  batchBytes: number;
  /** Grow batches of large records past batchBytes (see the file header). */
  adaptive: boolean;
  lingerMs: number;
  /** Called when a partition may have something to send (a batch sealed or its linger ended). */
  onSendable: (queue: PartitionQueue) => void;
  /** Called when a batch of the partition is sealed (the producer moves its sticky partition on). */
  onSealed: (queue: PartitionQueue) => void;
  /**
   * Reuse the buffers of acknowledged batches (see the file header): only when the transport no
   * longer reads a body once its answer came and the broker keeps none of the caller's bytes.
   */
  recycle?: boolean;
  /** Header fields of a batch being sealed (the idempotent producer's sequences, idempotence.ts). */
  sealFields?: (batch: ProducerBatch, recordCount: number) => FinishOptions | undefined;
}

/** Builders kept for reuse when no partition is filling them. */
const builderPoolSizeMax = 64;

export class Accumulator {
  readonly batchBytes: number;
  readonly lingerMs: number;
  private readonly adaptive: boolean;
  /** Largest target an adaptive batch takes. */
  private readonly targetBytesMax: number;
  private readonly onSendable: (queue: PartitionQueue) => void;
  private readonly onSealed: (queue: PartitionQueue) => void;
  private readonly sealFields: AccumulatorOptions['sealFields'];
  private readonly builderPool: BatchBuilder[] = [];
  /** Buffers of acknowledged batches, for the next seals; null without `recycle`. */
  private readonly spares: SpareBatchBuffers | null;
  /** Partitions with an open batch (visited by the linger timer and by flush). */
  private readonly openQueues = new Set<PartitionQueue>();
  /** Batches not settled yet (open, ready, in flight or waiting for a retry). */
  readonly unsettled = new Set<ProducerBatch>();
  private bufferedByteCount = 0;
  /** The send() promise appendRecord made for append() (handed over at once, then null). */
  private lastPromise: Promise<SendResult> | null = null;
  /** Set by the producer during a sendBatch() call: append() reports records to it, untracked. */
  collector: SendBatchCollector | null = null;
  /** While > 0 every open batch is sendable at once (flush). */
  private flushing = 0;
  private lingerTimer: NodeJS.Timeout | null = null;
  private lingerImmediate: NodeJS.Immediate | null = null;
  /** When the pending linger timer fires (ms since the epoch). */
  private lingerTimerAtMs = 0;

  constructor(options: AccumulatorOptions) {
    this.batchBytes = options.batchBytes;
    this.lingerMs = options.lingerMs;
    this.adaptive = options.adaptive;
    this.targetBytesMax = Math.max(options.batchBytes, producerAdaptiveBatchBytesMax);
    this.onSendable = options.onSendable;
    this.onSealed = options.onSealed;
    this.sealFields = options.sealFields;
    this.spares = options.recycle === true ? new SpareBatchBuffers() : null;
  }

  get bufferedBytes(): number {
    return this.bufferedByteCount;
  }

  /**
   * Appends a record to the open batch of `queue` (opening one if needed). Returns its send()
   * promise, settled with its batch (see the file header). Throws what BatchBuilder.append throws
   * (the record is then not added and no promise made). `leastBytes`, a lower
   * bound of the record's size (its key and value lengths), seals the open batch first when the
   * record cannot fit in it within batchBytes: a large record does not drag a batch past its size.
   */
  append(queue: PartitionQueue, record: RecordInput, leastBytes: number): Promise<SendResult> {
    const collector = this.collector;
    if (collector !== null) {
      const batch = this.appendRecord(queue, record, leastBytes, false);
      collector.add(batch, batch.tracked - 1);
      return collector.promise;
    }
    this.appendRecord(queue, record, leastBytes, true);
    const promise = this.lastPromise!;
    this.lastPromise = null;
    return promise;
  }

  private appendRecord(
    queue: PartitionQueue,
    record: RecordInput,
    leastBytes: number,
    tracked: boolean,
  ): ProducerBatch {
    const target = this.targetFor(leastBytes);
    if (queue.open !== null) {
      const open = queue.open;
      if (target > open.targetBytes) open.targetBytes = target;
      if (open.builder!.sizeBytes + leastBytes > open.targetBytes || open.untracked === tracked) {
        this.seal(queue);
        this.onSendable(queue);
      }
    }
    let batch = queue.open ?? this.openBatch(queue, target);
    let builder = batch.builder!;
    let before = builder.sizeBytes;
    let appended: boolean;
    let sealed = false;
    try {
      appended = builder.append(record);
      if (!appended) {
        // The batch cannot take it (largest batch or record count): seal it and start another.
        this.seal(queue);
        sealed = true;
        batch = this.openBatch(queue, target);
        builder = batch.builder!;
        before = builder.sizeBytes;
        appended = builder.append(record);
        // append() throws for a record no batch can hold, so an empty one takes any other.
        assert(appended, 'Accumulator: a record did not fit an empty batch');
      }
    } catch (error) {
      if (builder.recordCount === 0) this.discardEmpty(queue);
      throw error;
    }
    const grown = builder.sizeBytes - before;
    batch.accountedBytes += grown;
    this.bufferedByteCount += grown;
    // Tracked before a seal, which may send the batch (and an in-process ack may settle it).
    if (tracked) {
      this.lastPromise = batch.track();
    } else {
      batch.untracked = true;
      batch.tracked++;
    }
    if (builder.sizeBytes >= batch.targetBytes) {
      this.seal(queue);
      sealed = true;
    }
    if (sealed) this.onSendable(queue);
    return batch;
  }

  /** The target size of a batch holding records of at least `leastBytes`. */
  private targetFor(leastBytes: number): number {
    if (!this.adaptive) return this.batchBytes;
    // Room for the records' own overhead (lengths, varints) and the batch header.
    const wanted = (leastBytes + 32) * producerBatchRecordsTarget + 128;
    return wanted <= this.batchBytes ? this.batchBytes : Math.min(wanted, this.targetBytesMax);
  }

  /**
   * The next batch `queue` may send: the first ready one, else the open one if its linger ended
   * (or a flush is running), sealed now. Null when there is none.
   */
  takeSendable(queue: PartitionQueue): ProducerBatch | null {
    if (queue.ready.length > 0) return queue.ready.shift()!;
    const open = queue.open;
    if (open !== null && (open.lingerExpired || this.flushing > 0)) {
      this.seal(queue);
      return queue.ready.shift()!;
    }
    return null;
  }

  /** Puts a batch that failed back among the ready ones, before the later batches of its partition. */
  requeue(batch: ProducerBatch): void {
    const ready = batch.queue.ready;
    let index = ready.length;
    while (index > 0 && ready[index - 1]!.sequence > batch.sequence) index--;
    ready.splice(index, 0, batch);
  }

  /** Ends a batch for good with the broker's ack: frees its bytes, resolves its records' sends. */
  resolve(batch: ProducerBatch, baseOffset: number, positions: RecordPositions | null = null): void {
    if (batch.settled) return;
    this.keepSpare(batch);
    this.release(batch);
    batch.resolve(baseOffset, positions);
  }

  /** Ends a batch for good with the error that ended its retries: frees its bytes, rejects its sends. */
  reject(batch: ProducerBatch, error: unknown): void {
    if (batch.settled) return;
    this.release(batch);
    batch.reject(error);
  }

  /** Keeps the buffer of a batch acknowledged on its first attempt for the next seals (see the header). */
  private keepSpare(batch: ProducerBatch): void {
    const bytes = batch.bytes;
    if (this.spares === null || !batch.ownsBuffer || bytes === null || batch.attempts > 1) return;
    this.spares.give(Buffer.from(bytes.buffer, 0, bytes.buffer.byteLength));
  }

  /** Free spare buffers and their bytes (tests; 0 without `recycle`). */
  get spareBuffers(): { count: number; bytes: number } {
    return { count: this.spares?.count ?? 0, bytes: this.spares?.freeBytes ?? 0 };
  }

  private release(batch: ProducerBatch): void {
    this.bufferedByteCount -= batch.accountedBytes;
    batch.accountedBytes = 0;
    batch.bytes = null;
    this.unsettled.delete(batch);
  }

  /** Makes every open batch sendable until endFlush(), and tells the producer about each. */
  beginFlush(): void {
    this.flushing++;
    for (const queue of this.openQueues) this.onSendable(queue);
  }

  endFlush(): void {
    this.flushing--;
  }

  /** Stops the linger timer (the producer is closed). */
  stop(): void {
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    if (this.lingerImmediate) clearImmediate(this.lingerImmediate);
    this.lingerTimer = null;
    this.lingerImmediate = null;
  }

  private openBatch(queue: PartitionQueue, targetBytes: number): ProducerBatch {
    const builder =
      this.builderPool.pop() ??
      new BatchBuilder({ initialBytes: Math.min(this.batchBytes, batchBytesMax), crc32c: clientCrc32c });
    const nowMs = Date.now();
    const immediate = this.lingerMs === 0 || this.flushing > 0;
    const batch = new ProducerBatch(
      queue,
      queue.nextSequence++,
      builder,
      nowMs,
      immediate ? 0 : nowMs + this.lingerMs,
      targetBytes,
    );
    // The header is counted from the start: an open batch holds it.
    batch.accountedBytes = builder.sizeBytes;
    this.bufferedByteCount += builder.sizeBytes;
    queue.open = batch;
    this.openQueues.add(queue);
    this.unsettled.add(batch);
    this.scheduleLinger(batch.lingerDeadlineMs);
    return batch;
  }

  /** Finishes the open batch of `queue` into owned bytes and moves it to the ready queue. */
  private seal(queue: PartitionQueue): void {
    const batch = queue.open!;
    const builder = batch.builder!;
    const fields = {
      ...(queue.unsequenced ? undefined : this.sealFields?.(batch, builder.recordCount)),
      attributes: queue.attributes,
    };
    const capacity = builder.capacityBytes;
    let held: number;
    if (2 * builder.sizeBytes >= capacity) {
      batch.bytes = builder.finishDetach(fields, this.spares?.take(capacity));
      batch.ownsBuffer = true;
      held = capacity;
    } else {
      const view = builder.finish(fields);
      const length = view.length;
      let copy: Buffer;
      if (length < spareBatchBufferBytesMin) {
        copy = Buffer.allocUnsafe(length); // a slice of Buffer's shared pool
        held = length;
      } else {
        const spares = this.spares;
        copy =
          spares === null
            ? Buffer.allocUnsafeSlow(length)
            : (spares.take(length) ?? Buffer.allocUnsafeSlow(SpareBatchBuffers.sizeFor(length)));
        batch.ownsBuffer = true;
        held = copy.length;
      }
      copy.set(view);
      batch.bytes = copy.length === length ? copy : copy.subarray(0, length);
    }
    batch.recordCount = builder.recordCount;
    // A batch in a buffer of its own holds all of it: counted as such.
    const grown = held - batch.accountedBytes;
    batch.accountedBytes += grown;
    this.bufferedByteCount += grown;
    builder.reset();
    batch.builder = null;
    if (this.builderPool.length < builderPoolSizeMax) this.builderPool.push(builder);
    queue.open = null;
    this.openQueues.delete(queue);
    queue.ready.push(batch);
    this.onSealed(queue);
  }

  /** Drops an open batch that holds no record (its first append threw). */
  private discardEmpty(queue: PartitionQueue): void {
    const batch = queue.open;
    if (batch === null || batch.builder === null || batch.builder.recordCount !== 0) return;
    this.bufferedByteCount -= batch.accountedBytes;
    batch.builder.reset();
    if (this.builderPool.length < builderPoolSizeMax) this.builderPool.push(batch.builder);
    batch.builder = null;
    queue.open = null;
    queue.nextSequence--;
    this.openQueues.delete(queue);
    this.unsettled.delete(batch);
    // No record was added, so no send() promise was made: nothing to reject.
  }

  private scheduleLinger(deadlineMs: number): void {
    if (deadlineMs === 0) {
      this.lingerImmediate ??= setImmediate(this.onLingerTick);
      return;
    }
    if (this.lingerTimer !== null && this.lingerTimerAtMs <= deadlineMs) return;
    if (this.lingerTimer !== null) clearTimeout(this.lingerTimer);
    this.lingerTimerAtMs = deadlineMs;
    this.lingerTimer = setTimeout(this.onLingerTick, Math.max(0, deadlineMs - Date.now()));
  }

  private readonly onLingerTick = (): void => {
    this.lingerImmediate = null;
    if (this.lingerTimer !== null) clearTimeout(this.lingerTimer);
    this.lingerTimer = null;
    // Timers may fire up to a millisecond early against Date.now(): allow for it.
    const nowMs = Date.now() + 1;
    let nextDeadlineMs = Number.POSITIVE_INFINITY;
    for (const queue of this.openQueues) {
      const batch = queue.open!;
      if (batch.lingerDeadlineMs <= nowMs) {
        batch.lingerExpired = true;
        this.onSendable(queue);
      } else if (batch.lingerDeadlineMs < nextDeadlineMs) {
        nextDeadlineMs = batch.lingerDeadlineMs;
      }
    }
    if (nextDeadlineMs !== Number.POSITIVE_INFINITY) this.scheduleLinger(nextDeadlineMs);
  };
}
