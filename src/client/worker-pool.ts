/**
 * consumer.run({ worker, threads, ordering }): the handler runs in a piscina pool of `threads`
 * worker threads (loaded only when asked for: importing the client does not load piscina).
 *
 * The worker module's contract (any ES module Node can import, compiled .js):
 *   export async function handler(message: WorkerMessage): Promise<void>   // or a plain function
 * `message` is plain data — topic, partition, offset, key, value (Buffer | null, viewing the batch's
 * bytes), headers (Record<string, Buffer | null>), timestamp, deliveryCount — not a ConsumedMessage:
 * the worker does not ack. Returning (or resolving) means handled: the main thread acks it.
 * Throwing (or rejecting) means failed: the main thread nacks it with the error's message (in log
 * and group modes the partition rewinds to it; in shared modes it takes the retry/dead-letter path).
 * The module is imported once per thread; module-level state lives per thread, and the thread's
 * event loop keeps running between batches (piscina `atomics: 'async'`), so its timers and sockets work.
 *
 * Scheduling (see consumer-run.ts for lanes): messages go to workers in batches of up to
 * `batchMessages`, packed into transferred buffers (pool-batch.ts), not one task per message. A
 * batch takes whole runs of queued messages from ready lanes, and a lane stays busy until its batch
 * is back, so a partition's (or key's) messages run one at a time in order while different lanes
 * run in parallel in different threads. At most 2 tasks per thread are in flight (one running, the
 * next already handed to the thread, so it does not wait for this thread between two); the runner's
 * pendingMessagesMax bounds what is taken from the consumer, so a slow handler stops the fetches. When a batch is back its handled messages are
 * acked and its failed ones nacked (the settler of the consumer's mode turns that into commits of
 * the contiguous finished prefix or per-message acks). On run's end (consumer closed) the pool
 * waits for the batches in flight, then is destroyed (its threads exit).
 *
 * The group consumer with ordering 'partition' and no idempotency store takes another path to the
 * same pool (pool-span-run.ts): runs of records packed straight from the fetched record batches, with
 * no ConsumedMessage per message in this thread. startPool is shared by both.
 *
 * With an idempotency store, the main thread checks and claims each message's key before its batch
 * goes to a worker (recorded ones are acked as duplicates and not sent) and records the handled ones
 * when the batch is back, before they are acked (idempotency/idempotency-guard.ts).
 *
 * The worker entry is pool-worker.js next to this module; from TypeScript sources (tests) the
 * compiled dist/src/client/pool-worker.js is used, so build first (`npx tsc -p tsconfig.json`).
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError, SpillwayError } from '../errors.js';
import type { RunExecutor, RunScheduler } from './consumer-run.js';
import type { GuardedOutcome } from './idempotency/idempotency-guard.js';
import type { ConsumedMessage } from './message.js';
import { type BatchPart, type BatchResult, batchStatus, packMessages, partBuffers } from './pool-batch.js';

/** Tasks in flight per thread: one running and one ready to start. */
const tasksPerThread = 2;

/** A started piscina pool running the worker module's handler over packed batches. */
export interface WorkerPool {
  /** Most tasks in flight: tasksPerThread per thread. */
  readonly tasksMax: number;
  /**
   * Runs `parts` (transferred: unusable here afterwards) in a thread. Throws INTERNAL when the thread
   * failed, INVALID_ARGUMENT when the module cannot be used.
   */
  run(parts: BatchPart[], stopPartitionOnFailure: boolean): Promise<BatchResult>;
  /** Destroys the pool (its threads exit). */
  shutdown(): Promise<{ threadsStarted: number; threadsExited: number }>;
}

function workerEntry(): string {
  const here = import.meta.url;
  const entry = here.endsWith('.ts')
    ? new URL('../../dist/src/client/pool-worker.js', here)
    : new URL('./pool-worker.js', here);
  const path = fileURLToPath(entry);
  if (!existsSync(path)) {
    throw new InvalidArgumentError(
      `the worker pool's entry ${path} is missing: build the project (tsc) first`,
    );
  }
  return path;
}

/** Starts `threads` threads running `moduleUrl`'s handler (see the header). */
export async function startPool(moduleUrl: string | null, threads: number): Promise<WorkerPool> {
  if (moduleUrl === null) throw new InvalidArgumentError('startWorkerPool needs a worker module');
  if (!existsSync(fileURLToPath(moduleUrl)))
    throw new InvalidArgumentError(`run option worker: ${fileURLToPath(moduleUrl)} does not exist`);
  const filename = workerEntry();
  const { Piscina } = await import('piscina');
  const pool = new Piscina({
    filename,
    name: 'runBatch',
    minThreads: threads,
    maxThreads: threads,
    // The next task is already in the thread when one ends (pool-worker.ts runs them one at a time).
    concurrentTasksPerWorker: tasksPerThread,
    idleTimeout: 60_000,
    // No wait/run time histograms: they cost on every task and nothing reads them.
    recordTiming: false,
    // Between batches a thread keeps running its event loop (the handler module's timers and
    // sockets work); 'sync' would freeze the thread until the next batch.
    atomics: 'async',
  });
  const counts = { threadsStarted: 0, threadsExited: 0 };
  pool.on('workerCreate', () => {
    counts.threadsStarted++;
  });
  pool.on('workerDestroy', () => {
    counts.threadsExited++;
  });
  return {
    tasksMax: threads * tasksPerThread,
    async run(parts, stopPartitionOnFailure) {
      const task = { module: moduleUrl, stopPartitionOnFailure, parts };
      let result: BatchResult;
      try {
        result = await pool.run(task, { name: 'runBatch', transferList: partBuffers(parts) });
      } catch (error) {
        const text = error instanceof Error ? error.message : String(error);
        throw new SpillwayError('INTERNAL', `a worker thread failed running a batch: ${text}`);
      }
      if (result.fatal !== undefined) throw new InvalidArgumentError(result.fatal);
      return result;
    },
    async shutdown() {
      await pool.destroy();
      return { ...counts };
    },
  };
}

/** The executor of a run over ConsumedMessages (any consumer, any ordering): see the header. */
export async function startWorkerPool(scheduler: RunScheduler): Promise<RunExecutor> {
  const pool = await startPool(scheduler.options.worker, scheduler.options.threads);
  const tasksMax = pool.tasksMax;
  const batchMessages = scheduler.options.batchMessages;
  let tasks = 0;
  let scheduled = false;
  let idleWaiter: (() => void) | null = null;

  const dispatch = (): void => {
    while (tasks < tasksMax && scheduler.queuedCount > 0) {
      const free = tasksMax - tasks;
      const size = Math.min(batchMessages, Math.max(1, Math.ceil(scheduler.queuedCount / free)));
      const taken = scheduler.take(size);
      if (taken === null) return;
      tasks++;
      void runBatch(taken.messages, taken.lanes);
    }
  };

  /** Runs `messages` in a worker: an outcome per message; throws when the pool or the module fails. */
  const runInPool = async (messages: ConsumedMessage[]): Promise<GuardedOutcome[]> => {
    const result = await pool.run([packMessages(messages)], scheduler.rewinds);
    const errors = new Map(result.errors.map((failure) => [failure.index, failure.error]));
    return messages.map((_, index): GuardedOutcome => {
      const outcome = result.status[index];
      if (outcome === batchStatus.handled) return { error: null };
      if (outcome === batchStatus.failed) return { error: errors.get(index) ?? 'failed' };
      return 'skipped';
    });
  };

  /** One task: the batch in a worker (behind the idempotency guard when the run has a store), then settled. */
  const runBatch = async (messages: ConsumedMessage[], lanes: Parameters<RunScheduler['release']>[0]) => {
    let outcomes: GuardedOutcome[] | null = null;
    let failure: unknown = null;
    try {
      outcomes =
        scheduler.guard === null
          ? await runInPool(messages)
          : await scheduler.guard.handleBatch(messages, runInPool, scheduler.rewinds);
    } catch (error) {
      failure = error;
    }
    tasks--;
    scheduler.release(lanes);
    if (outcomes === null) {
      scheduler.fail(failure);
      for (const message of messages) scheduler.settle(message, 'skipped');
    } else {
      for (let index = 0; index < messages.length; index++)
        scheduler.settle(messages[index]!, outcomes[index] ?? 'skipped');
    }
    done();
  };

  const done = (): void => {
    if (tasks === 0 && idleWaiter !== null) {
      const wake = idleWaiter;
      idleWaiter = null;
      wake();
    }
    dispatch();
  };

  return {
    pump(): void {
      // Deferred so that what the consumer has buffered is queued first and goes in full batches.
      if (scheduled) return;
      scheduled = true;
      setImmediate(() => {
        scheduled = false;
        dispatch();
      });
    },
    idle(): Promise<void> {
      if (tasks === 0) return Promise.resolve();
      return new Promise<void>((wake) => {
        idleWaiter = wake;
      });
    },
    shutdown() {
      return pool.shutdown();
    },
  };
}
