/**
 * What one producer.sendBatch() call waits for: the batch and index of each of its records, in record
 * order (two arrays, no object per record), and the distinct batches they went into. `result()`
 * resolves once every one of those batches was acknowledged, with each record's { partition, offset }
 * in record order, or rejects with the error of the first batch that failed for good.
 * Single-threaded; filled synchronously by the accumulator during the call, then read once.
 */
import type { ProducerBatch } from './accumulator.js';
import type { SendResult } from './producer.js';

/** What append() returns for a record taken by a collector: unused by the caller, never rejected. */
const untrackedRecordResult: Promise<SendResult> = Promise.resolve({ partition: -1, offset: -1 });

export class SendBatchCollector {
  /** The promise the accumulator's append() returns for records of this call (ignored). */
  readonly promise = untrackedRecordResult;
  private readonly batchOf: Array<ProducerBatch | undefined> = [];
  /** Index of the record in its batch; for a pending record -(its position in `pending`) - 1. */
  private readonly indexOf: number[] = [];
  private readonly batches: ProducerBatch[] = [];
  private readonly seen = new Set<ProducerBatch>();
  /** Promises of records that could not go straight into a batch (e.g. waiting for a metadata refresh). */
  private readonly pending: Array<Promise<SendResult>> = [];

  /** The next record went into `batch` as its record `index`. */
  add(batch: ProducerBatch, index: number): void {
    this.batchOf.push(batch);
    this.indexOf.push(index);
    if (!this.seen.has(batch)) {
      this.seen.add(batch);
      this.batches.push(batch);
    }
  }

  /** The next record settles through its own promise (it is not in a batch yet). */
  addPending(promise: Promise<SendResult>): void {
    this.batchOf.push(undefined);
    this.indexOf.push(-this.pending.length - 1);
    this.pending.push(promise);
  }

  get count(): number {
    return this.batchOf.length;
  }

  async result(): Promise<SendResult[]> {
    const [, pendingResults] = await Promise.all([
      Promise.all(this.batches.map((batch) => batch.acked)),
      Promise.all(this.pending),
    ]);
    const results = new Array<SendResult>(this.batchOf.length);
    for (let record = 0; record < results.length; record++) {
      const batch = this.batchOf[record];
      const index = this.indexOf[record]!;
      const positions = batch?.positions ?? null;
      results[record] =
        batch === undefined
          ? pendingResults[-index - 1]!
          : positions !== null
            ? // Msg-id dedup answered some record of the batch with its first copy's position.
              { partition: positions.partitions[index]!, offset: positions.offsets[index]! }
            : { partition: batch.queue.partition, offset: batch.baseOffset + index };
    }
    return results;
  }
}
