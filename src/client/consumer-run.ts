/**
 * consumer.run(options): runs a handler over a consumer's messages and settles each one, either in
 * the calling thread (`handler`, up to `concurrency` calls at once) or in a piscina pool of worker
 * threads (`worker`, `threads`: worker-pool.ts). Works over any consumer that is an async iterator
 * of ConsumedMessage with close(); the message's settler decides what ack/nack mean in its mode.
 *
 * Ordering (`ordering`, default 'partition'): messages go into lanes. 'partition': one lane per
 * partition; 'key': one lane per (partition, key) — a key's messages live in one partition when
 * the producer partitions by key — and keyless messages share their partition's lane; 'none': no
 * lanes. A lane has at most one message (handler) or one batch (worker pool) running at a time, in
 * offset order; different lanes run in parallel.
 *
 * Settling: a handler that returns/resolves acks its message; one that throws/rejects nacks it with
 * the error's text (`nack({ error })`). When the consumer's nack rewinds the partition (settler
 * redelivery 'rewind': log and group modes), the messages of that partition held here after the
 * nacked one are dropped unhandled (they come again from the consumer, in order); with ordering
 * 'key' or 'none', those of them already running in other lanes finish and come again too (handled
 * twice: at-least-once). A handler failing
 * every time is retried as the mode retries: forever in log mode (no dead letters without a queue
 * mode), up to maxDeliveries then dead-lettered in shared modes.
 *
 * Bounded: at most `pendingMessagesMax` messages are taken from the consumer and not yet settled
 * (queued + running); when that many are pending the runner stops pulling, so a slow handler holds
 * back the consumer, whose own buffer bound then stops its fetches.
 *
 * Lifetime: run resolves (with a RunSummary) once the consumer is closed (consumer.close(), or
 * leaving the iteration) and every running handler/batch has finished and been settled; the
 * messages still queued are dropped unsettled. It rejects, after closing the consumer and waiting
 * for what runs, when the consumer fails (its error), when settling fails while the consumer is
 * open (that error), or when the worker module cannot be used (INVALID_ARGUMENT). One run per
 * consumer at a time; iterating the consumer yourself while it runs takes messages from the runner.
 *
 * Record spans: with `worker`, ordering 'partition', no idempotency store and a consumer that offers
 * `nextSpan` (the group consumer), the run goes through pool-span-run.ts instead of the lanes below:
 * the same contract (order per partition, handled prefix acked, a failure nacked and its partition's
 * queued messages dropped, the pendingMessagesMax bound), settled per run of records rather than per
 * message, with no ConsumedMessage made in this thread.
 *
 * Idempotency (`idempotency: store`, optional `idempotencyKey`; docs/IDEMPOTENCY.md): a message whose
 * idempotency key the store has recorded is acked without running the handler (counted in
 * `skipped`); the key is recorded after the handler succeeds; a failed handler records nothing.
 * Two deliveries of one key never run at once in this run (idempotency/idempotency-guard.ts). With
 * `worker` the check and the record happen in this thread around each batch; the handler context
 * (the store's transaction) exists only with `handler`.
 */
import { availableParallelism } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { InvalidArgumentError } from '../errors.js';
import { runBatchMessagesMax, runConcurrencyMax, runQueuedMessagesMax, runThreadsMax } from '../limits.js';
import { errorText, IdempotencyGuard } from './idempotency/idempotency-guard.js';
import { defaultIdempotencyKey, type IdempotencyKeyFunction } from './idempotency/idempotency-key.js';
import type { IdempotencyStore, RunContext } from './idempotency/idempotency-store.js';
import type { ConsumedMessage, MessageSettler } from './message.js';
import type { SpanConsumer } from './pool-span-run.js';

export type RunOrdering = 'partition' | 'key' | 'none';

/**
 * What a calling-thread handler is: resolve = ack, throw/reject = nack with the error text. The
 * context holds the idempotency key (null without a store) and what the store adds.
 */
export type MessageHandler<Extra extends object = object> = (
  message: ConsumedMessage,
  context: RunContext<Extra>,
) => unknown;

export interface RunOptions<Extra extends object = object> {
  /** Runs in this thread. Exactly one of handler and worker. */
  handler?: MessageHandler<Extra>;
  /** Skips messages whose idempotency key the store recorded; records it after success. */
  idempotency?: IdempotencyStore<Extra>;
  /** With idempotency: the key of a message. Default: its msgId, else topic/partition/offset. */
  idempotencyKey?: IdempotencyKeyFunction;
  /**
   * A module (file URL, or path resolved from the working directory) exporting
   * `handler(message: WorkerMessage)`, run in worker threads: see worker-pool.ts.
   */
  worker?: URL | string;
  /** handler: calls running at once. Default 1. */
  concurrency?: number;
  /** worker: threads in the pool. Default min(4, available parallelism). */
  threads?: number;
  /** worker: most messages handed to a thread in one task. Default 256. */
  batchMessages?: number;
  /** Default 'partition'. */
  ordering?: RunOrdering;
  /**
   * Most messages taken from the consumer and not yet settled. Default: handler
   * max(1024, 4 * concurrency); worker 4 * threads * batchMessages.
   */
  pendingMessagesMax?: number;
}

export interface RunSummary {
  /** Messages whose handler succeeded (acked). */
  handled: number;
  /** Handler failures (nacked). */
  failed: number;
  /** Messages dropped unhandled: behind a rewinding nack, or queued at close. */
  dropped: number;
  /** With idempotency: duplicates acked without running the handler (their key was recorded). */
  skipped: number;
  /** Most messages pending (queued + running) at once: never above pendingMessagesMax. */
  peakPendingMessages: number;
  /** worker: threads the pool started and threads that had exited when run resolved. */
  threadsStarted: number;
  threadsExited: number;
}

/** The consumer as the runner sees it. */
export interface RunnableConsumer {
  next(): Promise<IteratorResult<ConsumedMessage, undefined>>;
  close(): Promise<void>;
  /**
   * Optional (the group consumer): record spans packed for the worker pool, used with `worker`,
   * ordering 'partition' and no idempotency store (pool-span-run.ts).
   */
  nextSpan?: SpanConsumer['nextSpan'];
}

export interface CheckedRunOptions {
  handler: MessageHandler | null;
  idempotency: IdempotencyStore | null;
  idempotencyKey: IdempotencyKeyFunction;
  /** file: URL of the worker module. */
  worker: string | null;
  concurrency: number;
  threads: number;
  batchMessages: number;
  ordering: RunOrdering;
  pendingMessagesMax: number;
}

function integerOption(value: unknown, name: string, min: number, max: number, fallback: number): number {
  const resolved = value ?? fallback;
  if (typeof resolved !== 'number' || !Number.isSafeInteger(resolved) || resolved < min || resolved > max) {
    throw new InvalidArgumentError(
      `run option ${name} must be an integer in [${min}, ${max}], got ${String(value)}`,
    );
  }
  return resolved;
}

export function checkRunOptions<Extra extends object>(options: RunOptions<Extra>): CheckedRunOptions {
  if (options === null || typeof options !== 'object')
    throw new InvalidArgumentError('run options must be an object');
  const { handler, worker } = options;
  if ((handler === undefined) === (worker === undefined))
    throw new InvalidArgumentError(
      'run takes exactly one of handler (this thread) and worker (worker threads)',
    );
  if (handler !== undefined && typeof handler !== 'function')
    throw new InvalidArgumentError('run option handler must be a function');
  let workerUrl: string | null = null;
  if (worker !== undefined) {
    if (worker instanceof URL) {
      if (worker.protocol !== 'file:')
        throw new InvalidArgumentError('run option worker must be a file: URL or a path');
      workerUrl = worker.href;
    } else if (typeof worker === 'string' && worker.length > 0) {
      workerUrl = worker.startsWith('file:')
        ? worker
        : pathToFileURL(isAbsolute(worker) ? worker : resolve(worker)).href;
    } else {
      throw new InvalidArgumentError('run option worker must be a file: URL or a path');
    }
    if (options.concurrency !== undefined)
      throw new InvalidArgumentError('run option concurrency is for handler; worker takes threads');
  } else if (options.threads !== undefined || options.batchMessages !== undefined) {
    throw new InvalidArgumentError(
      'run options threads and batchMessages are for worker; handler takes concurrency',
    );
  }
  const { idempotency, idempotencyKey } = options;
  if (
    idempotency !== undefined &&
    (idempotency === null ||
      typeof idempotency !== 'object' ||
      typeof idempotency.seen !== 'function' ||
      typeof idempotency.record !== 'function')
  )
    throw new InvalidArgumentError(
      'run option idempotency must be a store (memoryStore(), sqliteStore(...), redisStore(...))',
    );
  if (idempotencyKey !== undefined) {
    if (typeof idempotencyKey !== 'function')
      throw new InvalidArgumentError('run option idempotencyKey must be a function of the message');
    if (idempotency === undefined)
      throw new InvalidArgumentError('run option idempotencyKey needs an idempotency store');
  }
  const ordering = options.ordering ?? 'partition';
  if (ordering !== 'partition' && ordering !== 'key' && ordering !== 'none')
    throw new InvalidArgumentError("run option ordering must be 'partition', 'key' or 'none'");
  const concurrency = integerOption(options.concurrency, 'concurrency', 1, runConcurrencyMax, 1);
  const threads = integerOption(
    options.threads,
    'threads',
    1,
    runThreadsMax,
    Math.min(4, availableParallelism()),
  );
  const batchMessages = integerOption(options.batchMessages, 'batchMessages', 1, runBatchMessagesMax, 256);
  const pendingDefault =
    workerUrl === null
      ? Math.max(1024, 4 * concurrency)
      : Math.min(runQueuedMessagesMax, 4 * threads * batchMessages);
  const pendingMessagesMax = integerOption(
    options.pendingMessagesMax,
    'pendingMessagesMax',
    1,
    runQueuedMessagesMax,
    pendingDefault,
  );
  return {
    // The context's type is the store's: checked together by RunOptions<Extra>.
    handler: (handler as MessageHandler | undefined) ?? null,
    idempotency: (idempotency as IdempotencyStore | undefined) ?? null,
    idempotencyKey: idempotencyKey ?? defaultIdempotencyKey,
    worker: workerUrl,
    concurrency,
    threads,
    batchMessages,
    ordering,
    pendingMessagesMax,
  };
}

/** A lane: messages that run one at a time, in order. */
class Lane {
  readonly key: string;
  queue: ConsumedMessage[] = [];
  head = 0;
  busy = false;
  ready = false;

  constructor(key: string) {
    this.key = key;
  }

  get size(): number {
    return this.queue.length - this.head;
  }
}

/** What the worker pool executor uses of the runner. */
export interface RunScheduler {
  readonly options: CheckedRunOptions;
  readonly rewinds: boolean;
  /** The run's idempotency guard (null without a store). */
  readonly guard: IdempotencyGuard<object> | null;
  /** Queued messages not yet taken. */
  readonly queuedCount: number;
  /** Up to `max` queued messages, their lanes marked busy until release(). */
  take(max: number): { messages: ConsumedMessage[]; lanes: Lane[] } | null;
  release(lanes: readonly Lane[]): void;
  /**
   * Settles a finished message (error null: ack; 'duplicate': ack, counted as skipped), or drops
   * it unsettled ('skipped').
   */
  settle(message: ConsumedMessage, outcome: { error: string | null } | 'duplicate' | 'skipped'): void;
  fail(error: unknown): void;
}

/** The executor of one run: handler calls in this thread, or the worker pool. */
export interface RunExecutor {
  /** Called when messages were queued or capacity freed: start what can start. */
  pump(): void;
  /** Resolves when nothing runs. */
  idle(): Promise<void>;
  /** Stops (after idle): for the pool, destroys the threads. */
  shutdown(): Promise<{ threadsStarted: number; threadsExited: number }>;
}

const laneKeyNone = '';

export class Runner implements RunScheduler {
  readonly options: CheckedRunOptions;
  readonly rewinds: boolean;
  readonly guard: IdempotencyGuard<object> | null;
  private readonly consumer: RunnableConsumer;
  private readonly lanes = new Map<string, Lane>();
  private readyLanes: Lane[] = [];
  private readyHead = 0;
  private queued = 0;
  private pending = 0;
  private peakPending = 0;
  private handled = 0;
  private failed = 0;
  private dropped = 0;
  private skipped = 0;
  private failure: { error: unknown } | null = null;
  private consumerEnded = false;
  private capacityWaiter: (() => void) | null = null;
  /** ack/nack promises not yet settled, and who waits for them to be none. */
  private settling = 0;
  private settledWaiter: (() => void) | null = null;
  private executor: RunExecutor | null = null;

  constructor(
    consumer: RunnableConsumer,
    options: CheckedRunOptions,
    settler: Pick<MessageSettler, 'redelivery'>,
  ) {
    this.consumer = consumer;
    this.options = options;
    this.rewinds = settler.redelivery === 'rewind';
    this.guard =
      options.idempotency === null ? null : new IdempotencyGuard(options.idempotency, options.idempotencyKey);
  }

  get queuedCount(): number {
    return this.queued;
  }

  async run(makeExecutor: (scheduler: RunScheduler) => Promise<RunExecutor>): Promise<RunSummary> {
    let executor: RunExecutor;
    try {
      await this.options.idempotency?.open?.();
      executor = await makeExecutor(this);
    } catch (error) {
      await this.consumer.close();
      throw error;
    }
    this.executor = executor;
    const limit = this.options.pendingMessagesMax;
    try {
      while (this.failure === null) {
        if (this.pending >= limit) {
          await new Promise<void>((wake) => {
            this.capacityWaiter = wake;
          });
          continue;
        }
        const result = await this.consumer.next();
        if (result.done) break;
        this.enqueue(result.value);
        executor.pump();
      }
    } catch (error) {
      this.fail(error);
    }
    this.consumerEnded = true;
    this.dropQueued();
    await executor.idle();
    if (this.settling > 0) {
      await new Promise<void>((wake) => {
        this.settledWaiter = wake;
      });
    }
    const threads = await executor.shutdown();
    if (this.failure !== null) {
      await this.consumer.close();
      throw this.failure.error;
    }
    return {
      handled: this.handled,
      failed: this.failed,
      dropped: this.dropped,
      skipped: this.skipped,
      peakPendingMessages: this.peakPending,
      ...threads,
    };
  }

  private laneKeyOf(message: ConsumedMessage): string {
    const ordering = this.options.ordering;
    if (ordering === 'none') return laneKeyNone;
    const partitionKey = `${message.topic}\u0000${message.partition}`;
    if (ordering === 'partition' || message.key === null) return partitionKey;
    return `${partitionKey}\u0000${message.key.toString('latin1')}`;
  }

  private enqueue(message: ConsumedMessage): void {
    this.pending++;
    if (this.pending > this.peakPending) this.peakPending = this.pending;
    this.queued++;
    const key = this.laneKeyOf(message);
    let lane = this.lanes.get(key);
    if (lane === undefined) {
      lane = new Lane(key);
      this.lanes.set(key, lane);
    }
    lane.queue.push(message);
    this.markReady(lane);
  }

  private markReady(lane: Lane): void {
    // The 'none' lane is never busy: anything queued may start.
    if (lane.ready || lane.size === 0 || (lane.busy && lane.key !== laneKeyNone)) return;
    lane.ready = true;
    this.readyLanes.push(lane);
  }

  take(max: number): { messages: ConsumedMessage[]; lanes: Lane[] } | null {
    const messages: ConsumedMessage[] = [];
    const lanes: Lane[] = [];
    while (messages.length < max && this.readyHead < this.readyLanes.length) {
      const lane = this.readyLanes[this.readyHead]!;
      if (lane.size === 0) {
        // Emptied by a rewind's drop after it became ready.
        lane.ready = false;
        this.readyHead++;
        if (!lane.busy && lane.key !== laneKeyNone) this.lanes.delete(lane.key);
        continue;
      }
      const room = max - messages.length;
      const count = Math.min(room, lane.size);
      for (let index = 0; index < count; index++) {
        messages.push(lane.queue[lane.head]!);
        lane.queue[lane.head] = undefined as unknown as ConsumedMessage;
        lane.head++;
      }
      if (lane.head === lane.queue.length) {
        lane.queue = [];
        lane.head = 0;
      }
      if (lane.key === laneKeyNone) {
        if (lane.size > 0) break;
        lane.ready = false;
        this.readyHead++;
        continue;
      }
      lane.ready = false;
      lane.busy = true;
      lanes.push(lane);
      this.readyHead++;
    }
    if (this.readyHead > 1024 && this.readyHead * 2 > this.readyLanes.length) {
      this.readyLanes = this.readyLanes.slice(this.readyHead);
      this.readyHead = 0;
    }
    if (messages.length === 0) return null;
    this.queued -= messages.length;
    return { messages, lanes };
  }

  release(lanes: readonly Lane[]): void {
    for (const lane of lanes) {
      lane.busy = false;
      if (lane.size === 0) this.lanes.delete(lane.key);
      else this.markReady(lane);
    }
  }

  settle(message: ConsumedMessage, outcome: { error: string | null } | 'duplicate' | 'skipped'): void {
    if (outcome === 'skipped') {
      this.dropped++;
      this.finished(1);
      return;
    }
    let settlement: Promise<void>;
    if (outcome === 'duplicate') {
      this.skipped++;
      settlement = message.ack();
    } else if (outcome.error === null) {
      this.handled++;
      settlement = message.ack();
    } else {
      this.failed++;
      settlement = message.nack({ error: outcome.error });
      if (this.rewinds) this.dropAfter(message);
    }
    this.finished(1);
    this.settling++;
    settlement.then(this.onSettled, this.onSettleFailed);
  }

  private readonly onSettled = (): void => {
    if (--this.settling === 0 && this.settledWaiter !== null) this.settledWaiter();
  };

  private readonly onSettleFailed = (error: unknown): void => {
    // Once the consumer is closed, settling may fail (nothing comes again): not an error of the run.
    if (!this.consumerEnded) this.fail(error);
    this.onSettled();
  };

  fail(error: unknown): void {
    if (this.failure !== null) return;
    this.failure = { error };
    this.wakeCapacity();
    // Ends the pull loop: next() answers done once the consumer is closed.
    this.consumer.close().catch(() => undefined);
  }

  /** After a rewinding nack: drops the queued messages of that partition after the nacked one. */
  private dropAfter(nacked: ConsumedMessage): void {
    let dropped = 0;
    for (const lane of this.lanes.values()) {
      let removed = 0;
      const kept: ConsumedMessage[] = [];
      for (let index = lane.head; index < lane.queue.length; index++) {
        const message = lane.queue[index]!;
        if (
          message.partition === nacked.partition &&
          message.topic === nacked.topic &&
          message.offset > nacked.offset
        ) {
          removed++;
        } else {
          kept.push(message);
        }
      }
      if (removed === 0) continue;
      lane.queue = kept;
      lane.head = 0;
      this.queued -= removed;
      dropped += removed;
    }
    if (dropped === 0) return;
    this.dropped += dropped;
    // Lanes left empty are removed when released (busy) or skipped when taken (ready).
    this.finished(dropped);
  }

  private dropQueued(): void {
    let removed = 0;
    for (const lane of this.lanes.values()) {
      removed += lane.size;
      lane.queue = [];
      lane.head = 0;
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
    if (!this.consumerEnded && this.queued > 0) this.executor?.pump();
  }

  private wakeCapacity(): void {
    const wake = this.capacityWaiter;
    this.capacityWaiter = null;
    wake?.();
  }
}

/** Runs `options.handler` in this thread, up to `concurrency` calls at once. */
const noIdempotencyContext: RunContext = Object.freeze({ idempotencyKey: null });

class HandlerExecutor implements RunExecutor {
  private readonly scheduler: RunScheduler;
  private readonly handler: MessageHandler;
  private readonly guard: IdempotencyGuard<object> | null;
  private readonly concurrency: number;
  private running = 0;
  private idleWaiter: (() => void) | null = null;

  constructor(scheduler: RunScheduler, handler: MessageHandler) {
    this.scheduler = scheduler;
    this.handler = handler;
    this.guard = scheduler.guard;
    this.concurrency = scheduler.options.concurrency;
  }

  pump(): void {
    while (this.running < this.concurrency) {
      const taken = this.scheduler.take(1);
      if (taken === null) return;
      this.running++;
      void this.call(taken.messages[0]!, taken.lanes);
    }
  }

  private async call(message: ConsumedMessage, lanes: Lane[]): Promise<void> {
    let outcome: { error: string | null } | 'duplicate' = { error: null };
    try {
      if (this.guard === null) await this.handler(message, noIdempotencyContext);
      else if ((await this.guard.handle(message, this.handler)) === 'duplicate') outcome = 'duplicate';
    } catch (thrown) {
      outcome = { error: errorText(thrown) };
    }
    this.running--;
    this.scheduler.release(lanes);
    this.scheduler.settle(message, outcome);
    if (this.running === 0 && this.idleWaiter !== null) {
      const wake = this.idleWaiter;
      this.idleWaiter = null;
      wake();
    }
    this.pump();
  }

  idle(): Promise<void> {
    if (this.running === 0) return Promise.resolve();
    return new Promise<void>((wake) => {
      this.idleWaiter = wake;
    });
  }

  shutdown(): Promise<{ threadsStarted: number; threadsExited: number }> {
    return Promise.resolve({ threadsStarted: 0, threadsExited: 0 });
  }
}

const runningConsumers = new WeakSet<RunnableConsumer>();

/** consumer.run(options) of every consumer kind: see the header. */
export async function runConsumer<Extra extends object>(
  consumer: RunnableConsumer,
  options: RunOptions<Extra>,
  settler: Pick<MessageSettler, 'redelivery'>,
): Promise<RunSummary> {
  const checked = checkRunOptions(options);
  if (runningConsumers.has(consumer))
    throw new InvalidArgumentError('this consumer is already running (one run at a time)');
  runningConsumers.add(consumer);
  try {
    if (
      checked.worker !== null &&
      checked.ordering === 'partition' &&
      checked.idempotency === null &&
      consumer.nextSpan !== undefined
    ) {
      // Loaded only here, like the pool: spans packed straight from the fetched batches.
      const { SpanRunner } = await import('./pool-span-run.js');
      const spans: SpanConsumer = {
        nextSpan: consumer.nextSpan.bind(consumer),
        close: () => consumer.close(),
      };
      return await new SpanRunner(spans, checked).run();
    }
    const runner = new Runner(consumer, checked, settler);
    return await runner.run(async (scheduler) => {
      if (checked.handler !== null) return new HandlerExecutor(scheduler, checked.handler);
      // Loaded only here: the client does not load piscina unless a worker pool is asked for.
      const { startWorkerPool } = await import('./worker-pool.js');
      return startWorkerPool(scheduler);
    });
  } finally {
    runningConsumers.delete(consumer);
  }
}
