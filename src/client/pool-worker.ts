/**
 * The worker thread entry of consumer.run({ worker }) (worker-pool.ts starts it in a piscina pool;
 * it must be compiled .js: Node 20 cannot run TypeScript in a worker). Kept small on purpose.
 *
 * runBatch(task): imports the user's module once per thread, takes its exported `handler` function,
 * and calls it for each message of the batch in order, awaiting each call (one message at a time in
 * this thread: the main thread puts a partition's or key's messages in one batch at a time, so they
 * run in order). The pool hands a thread its next task while one runs (so it never waits for the
 * main thread between two); tasks run one after the other, in the order they came. A handler that returns (or resolves) handled the message; one that throws (or
 * rejects) failed it: its error text goes back, and with `stopPartitionOnFailure` the rest of that
 * partition's messages in the batch are skipped (they come again after the rewind). A module that
 * cannot be imported or has no `handler` function answers `fatal` (consumer.run then rejects).
 */
import {
  type BatchResult,
  type BatchTask,
  batchStatus,
  unpackBatch,
  type WorkerMessage,
} from './pool-batch.js';

type Handler = (message: WorkerMessage) => unknown;

const handlers = new Map<string, Promise<Handler | string>>();

function loadHandler(url: string): Promise<Handler | string> {
  let loading = handlers.get(url);
  if (loading === undefined) {
    loading = import(url).then(
      (module: Record<string, unknown>) => {
        const handler = module['handler'];
        return typeof handler === 'function'
          ? (handler as Handler)
          : `worker module ${url} has no exported function 'handler'`;
      },
      (error: unknown) => `worker module ${url} could not be loaded: ${errorText(error)}`,
    );
    handlers.set(url, loading);
  }
  return loading;
}

function errorText(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}

function partitionIdOf(message: WorkerMessage): string {
  return `${message.partition}\u0000${message.topic}`;
}

/** The task running in this thread: the next one starts when it ends (one message at a time). */
let running: Promise<unknown> = Promise.resolve();

/** Runs `task` once the tasks given to this thread before it have finished. */
export function runBatch(task: BatchTask): Promise<BatchResult> {
  const run = running.then(() => runTask(task));
  running = run.catch(() => undefined);
  return run;
}

async function runTask(task: BatchTask): Promise<BatchResult> {
  const handler = await loadHandler(task.module);
  let count = 0;
  for (const part of task.parts) count += part.count;
  const status = new Uint8Array(count);
  if (typeof handler === 'string') return { status, errors: [], fatal: handler };
  const errors: BatchResult['errors'] = [];
  const messages = unpackBatch(task);
  let stopped: Set<string> | null = null;
  for (let index = 0; index < messages.length; index++) {
    if (stopped?.has(partitionIdOf(messages[index]!))) {
      status[index] = batchStatus.skipped;
      continue;
    }
    try {
      const result = handler(messages[index]!);
      if (
        result !== null &&
        typeof result === 'object' &&
        typeof (result as Promise<unknown>).then === 'function'
      )
        await result;
    } catch (error) {
      status[index] = batchStatus.failed;
      errors.push({ index, error: errorText(error) });
      if (task.stopPartitionOnFailure) {
        stopped ??= new Set();
        stopped.add(partitionIdOf(messages[index]!));
      }
    }
  }
  return { status, errors };
}
