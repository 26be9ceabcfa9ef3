/**
 * consumer.run({ worker }) over record spans: the worker pool's path when the consumer hands out
 * runs of records already packed for a worker (the group consumer's `nextSpan`, group-consumer.ts),
 * the ordering is 'partition' and there is no idempotency store. Same contract as the message path
 * (consumer-run.ts, worker-pool.ts), without a ConsumedMessage, a Buffer or a promise per message in
 * this thread: the consumer packs each span straight from the fetched record batches
 * (pool-batch.ts RecordPartBuilder), the worker decodes the messages, the answer is settled per
 * span (a range ack of the handled prefix, a nack of the failed message).
 *
 * Lanes: one per partition; a lane holds its spans in offset order and has at most one task in
 * flight, so a partition's messages run one at a time, in order; different partitions run in
 * parallel in different threads. A task takes whole spans from ready lanes, up to `batchMessages`
 * messages (a span is at most that long). At most `pool.tasksMax` tasks are in flight.
 *
 * Failure: the worker stops the partition at a throwing handler (the rest of that partition in the
 * task comes back skipped); the handled messages before it are acked, the failed one is nacked (the
 * partition rewinds to it: group mode), and the lane's queued spans are dropped (they are delivered
 * again from the consumer after the rewind).
 *
 * Bounded: at most `pendingMessagesMax` messages taken from the consumer and not settled; the run
 * asks the consumer for at most that much room (and at most batchMessages) per span.
 *
 * Lifetime: as the message path: resolves once the consumer is closed and every task in flight has
 * been settled (queued spans are dropped unsettled), the pool destroyed; rejects after closing the
 * consumer when the consumer fails or the worker module cannot be used.
 */
import type { CheckedRunOptions, RunSummary } from './consumer-run.js';
import { batchStatus, type RecordSpan } from './pool-batch.js';
import { startPool, type WorkerPool } from './worker-pool.js';

/** A consumer that can hand out record spans. */
export interface SpanConsumer {
  /** The next span of at most `max` messages; done once the consumer is closed. */
  nextSpan(max: number): Promise<IteratorResult<RecordSpan, undefined>>;
  close(): Promise<void>;
}

class SpanLane {
  readonly key: string;
  queue: RecordSpan[] = [];
  head = 0;
  busy = false;
  ready = false;
  /** Messages queued in the lane. */
  messages = 0;

  constructor(key: string) {
    this.key = key;
  }

  get size(): number {
    return this.queue.length - this.head;
  }
}

export class SpanRunner {
  private readonly consumer: SpanConsumer;
  private readonly options: CheckedRunOptions;
  private readonly lanes = new Map<string, SpanLane>();
  private readyLanes: SpanLane[] = [];
  private readyHead = 0;
  private pool: WorkerPool | null = null;
  /** Messages queued (not yet in a task) and pending (taken, not settled). */
  private queued = 0;
  private pending = 0;
  private peakPending = 0;
  private handled = 0;
  private failed = 0;
  private dropped = 0;
  private tasks = 0;
  private scheduled = false;
  private consumerEnded = false;
  private failure: { error: unknown } | null = null;
  private capacityWaiter: (() => void) | null = null;
  private idleWaiter: (() => void) | null = null;

  constructor(consumer: SpanConsumer, options: CheckedRunOptions) {
    this.consumer = consumer;
    this.options = options;
  }

  async run(): Promise<RunSummary> {
    let pool: WorkerPool;
    try {
      pool = await startPool(this.options.worker, this.options.threads);
    } catch (error) {
      await this.consumer.close();
      throw error;
    }
    this.pool = pool;
    const limit = this.options.pendingMessagesMax;
    const batchMessages = this.options.batchMessages;
    try {
      while (this.failure === null) {
        if (this.pending >= limit) {
          await new Promise<void>((wake) => {
            this.capacityWaiter = wake;
          });
          continue;
        }
        const result = await this.consumer.nextSpan(Math.min(batchMessages, limit - this.pending));
        if (result.done) break;
        this.enqueue(result.value);
      }
    } catch (error) {
      this.fail(error);
    }
    this.consumerEnded = true;
    this.dropQueued();
    if (this.tasks > 0) {
      await new Promise<void>((wake) => {
        this.idleWaiter = wake;
      });
    }
    const threads = await pool.shutdown();
    if (this.failure !== null) {
      await this.consumer.close();
      throw this.failure.error;
    }
    return {
      handled: this.handled,
      failed: this.failed,
      dropped: this.dropped,
      skipped: 0,
      peakPendingMessages: this.peakPending,
      ...threads,
    };
  }

  private enqueue(span: RecordSpan): void {
    this.pending += span.count;
    if (this.pending > this.peakPending) this.peakPending = this.pending;
    this.queued += span.count;
    const key = `${span.topic}\u0000${span.partition}`;
    let lane = this.lanes.get(key);
    if (lane === undefined) {
      lane = new SpanLane(key);
      this.lanes.set(key, lane);
    }
    lane.queue.push(span);
    lane.messages += span.count;
    this.markReady(lane);
    this.pump();
  }

  private markReady(lane: SpanLane): void {
    if (lane.ready || lane.busy || lane.size === 0) return;
    lane.ready = true;
    this.readyLanes.push(lane);
  }

  /** Deferred so that what the consumer has buffered is queued first and goes in full batches. */
  private pump(): void {
    if (this.scheduled || this.consumerEnded) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.dispatch();
    });
  }

  private dispatch(): void {
    const pool = this.pool;
    if (pool === null || this.consumerEnded) return;
    const batchMessages = this.options.batchMessages;
    while (this.tasks < pool.tasksMax && this.queued > 0) {
      const free = pool.tasksMax - this.tasks;
      const size = Math.min(batchMessages, Math.max(1, Math.ceil(this.queued / free)));
      const taken = this.take(size);
      if (taken === null) return;
      this.tasks++;
      void this.runTask(pool, taken.spans, taken.lanes);
    }
  }

  /** Whole spans from ready lanes, about `size` messages; their lanes busy until released. */
  private take(size: number): { spans: RecordSpan[]; lanes: SpanLane[] } | null {
    const spans: RecordSpan[] = [];
    const lanes: SpanLane[] = [];
    let messages = 0;
    while (messages < size && this.readyHead < this.readyLanes.length) {
      const lane = this.readyLanes[this.readyHead]!;
      this.readyHead++;
      lane.ready = false;
      if (lane.size === 0) {
        if (!lane.busy) this.lanes.delete(lane.key);
        continue;
      }
      while (lane.size > 0) {
        const span = lane.queue[lane.head]!;
        if (messages > 0 && messages + span.count > size) break;
        lane.queue[lane.head] = undefined as unknown as RecordSpan;
        lane.head++;
        lane.messages -= span.count;
        messages += span.count;
        spans.push(span);
      }
      if (lane.size === 0) {
        lane.queue = [];
        lane.head = 0;
      }
      lane.busy = true;
      lanes.push(lane);
    }
    if (this.readyHead > 1024 && this.readyHead * 2 > this.readyLanes.length) {
      this.readyLanes = this.readyLanes.slice(this.readyHead);
      this.readyHead = 0;
    }
    if (spans.length === 0) return null;
    this.queued -= messages;
    return { spans, lanes };
  }

  private async runTask(pool: WorkerPool, spans: RecordSpan[], lanes: SpanLane[]): Promise<void> {
    let result: Awaited<ReturnType<WorkerPool['run']>> | null = null;
    try {
      result = await pool.run(
        spans.map((span) => span.part),
        true,
      );
    } catch (error) {
      this.fail(error);
    }
    this.tasks--;
    let index = 0;
    let errorAt = 0;
    for (const span of spans) {
      if (result === null) {
        this.dropped += span.count;
        this.finished(span.count);
        continue;
      }
      const status = result.status;
      let handled = 0;
      while (handled < span.count && status[index + handled] === batchStatus.handled) handled++;
      if (handled > 0) span.settler.ackRange(span.firstOffset, span.firstOffset + handled);
      this.handled += handled;
      if (handled < span.count) {
        // The worker stopped this partition at a failure: the rest of the span was skipped.
        if (status[index + handled] === batchStatus.failed) {
          let error = 'failed';
          while (errorAt < result.errors.length && result.errors[errorAt]!.index < index + handled) errorAt++;
          if (result.errors[errorAt]?.index === index + handled) error = result.errors[errorAt]!.error;
          this.failed++;
          span.settler.nackAt(span.firstOffset + handled, error);
          this.dropped += span.count - handled - 1;
          this.dropLane(`${span.topic}\u0000${span.partition}`);
        } else {
          this.dropped += span.count - handled;
        }
      }
      index += span.count;
      this.finished(span.count);
    }
    for (const lane of lanes) {
      lane.busy = false;
      if (lane.size === 0) this.lanes.delete(lane.key);
      else this.markReady(lane);
    }
    if (this.tasks === 0 && this.idleWaiter !== null) {
      const wake = this.idleWaiter;
      this.idleWaiter = null;
      wake();
    }
    this.dispatch();
  }

  /** After a rewinding nack: the lane's queued spans come again from the consumer. */
  private dropLane(key: string): void {
    const lane = this.lanes.get(key);
    if (lane === undefined || lane.size === 0) return;
    const removed = lane.messages;
    lane.queue = [];
    lane.head = 0;
    lane.messages = 0;
    this.queued -= removed;
    this.dropped += removed;
    this.finished(removed);
  }

  private dropQueued(): void {
    let removed = 0;
    for (const lane of this.lanes.values()) {
      removed += lane.messages;
      lane.queue = [];
      lane.head = 0;
      lane.messages = 0;
      lane.ready = false;
    }
    this.readyLanes = [];
    this.readyHead = 0;
    this.queued -= removed;
    this.dropped += removed;
    this.finished(removed);
  }

  private finished(count: number): void {
    this.pending -= count;
    if (this.pending < this.options.pendingMessagesMax) this.wakeCapacity();
  }

  private fail(error: unknown): void {
    if (this.failure !== null) return;
    this.failure = { error };
    this.wakeCapacity();
    this.consumer.close().catch(() => undefined);
  }

  private wakeCapacity(): void {
    const wake = this.capacityWaiter;
    this.capacityWaiter = null;
    wake?.();
  }
}
