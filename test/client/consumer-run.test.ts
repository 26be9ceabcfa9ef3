/**
 * consumer.run({ handler }) in this thread and consumer.run({ worker }) in a piscina pool, over the
 * log consumer with a real broker. The pool's worker modules are written as .mjs files into a
 * temporary directory; they record what they handle by appending JSON lines to a file.
 * The pool runs the compiled worker entry (dist/src/client/pool-worker.js): build first.
 */
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, test } from 'vitest';
import type { ConsumedMessage, RunSummary, Spillway } from '../../src/client/index.js';
import { SpillwayError } from '../../src/errors.js';
import { connect, deferred, onCleanup, openBroker, sleep, waitFor } from './helpers.js';

interface Seen {
  partition: number;
  offset: number;
  key: string | null;
  value: string;
  deliveryCount: number;
  thread?: number;
}

async function setup(partitions: number): Promise<Spillway> {
  const broker = await openBroker();
  const sw = await connect(broker);
  await sw.admin.createTopic('t', { partitions });
  return sw;
}

/** `perPartition` messages in each partition; message i of partition p has key `k${i % keys}` and value `p-i`. */
async function produce(sw: Spillway, partitions: number, perPartition: number, keys: number): Promise<void> {
  const producer = sw.producer({ lingerMs: 1 });
  const sends: Array<Promise<unknown>> = [];
  for (let index = 0; index < perPartition; index++) {
    for (let partition = 0; partition < partitions; partition++) {
      sends.push(
        producer.send('t', {
          partition,
          key: `k${index % keys}`,
          value: `${partition}-${index}`,
          headers: { h: `${index}` },
        }),
      );
    }
  }
  await Promise.all(sends);
  await producer.close();
}

/** Checks that within each group (by `groupOf`) the successful handlings came in offset order, each once. */
function expectOrdered(seen: Seen[], groupOf: (entry: Seen) => string): void {
  const groups = new Map<string, number[]>();
  for (const entry of seen) {
    const group = groupOf(entry);
    const offsets = groups.get(group) ?? [];
    groups.set(group, offsets);
    offsets.push(entry.offset);
  }
  for (const [group, offsets] of groups) {
    const sorted = [...offsets].sort((a, b) => a - b);
    expect({ group, offsets }).toEqual({ group, offsets: sorted });
    expect(new Set(offsets).size).toBe(offsets.length);
  }
}

function record(message: ConsumedMessage): Seen {
  return {
    partition: message.partition,
    offset: message.offset,
    key: message.key?.toString() ?? null,
    value: message.value!.toString(),
    deliveryCount: message.deliveryCount,
  };
}

function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

async function rejection(promise: Promise<unknown>): Promise<SpillwayError> {
  const error = await promise.then(
    () => null,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(SpillwayError);
  return error as SpillwayError;
}

describe('consumer.run({ handler })', () => {
  test("ordering 'partition': one message per partition at a time, in order, partitions in parallel", async () => {
    const sw = await setup(4);
    await produce(sw, 4, 150, 5);
    const consumer = sw.consumer({ topics: ['t'], from: 'earliest' });
    const seen: Seen[] = [];
    const running = new Map<number, number>();
    let maxRunning = 0;
    let maxPerPartition = 0;
    let inFlight = 0;
    const summary = await consumer.run({
      concurrency: 8,
      handler: async (message) => {
        inFlight++;
        maxRunning = Math.max(maxRunning, inFlight);
        const here = (running.get(message.partition) ?? 0) + 1;
        running.set(message.partition, here);
        maxPerPartition = Math.max(maxPerPartition, here);
        for (let index = 0; index < message.offset % 3; index++) await tick();
        seen.push(record(message));
        running.set(message.partition, here - 1);
        inFlight--;
        if (seen.length === 600) void consumer.close();
      },
    });
    expect(seen).toHaveLength(600);
    expectOrdered(seen, (entry) => `${entry.partition}`);
    expect(maxPerPartition).toBe(1);
    expect(maxRunning).toBeGreaterThan(1);
    expect(maxRunning).toBeLessThanOrEqual(4);
    expect(summary).toMatchObject({ handled: 600, failed: 0, threadsStarted: 0 });
  });

  test("ordering 'key': one message per key at a time, in order; keys of a partition in parallel", async () => {
    const sw = await setup(2);
    await produce(sw, 2, 200, 6);
    const consumer = sw.consumer({ topics: ['t'], from: 'earliest' });
    const seen: Seen[] = [];
    const running = new Map<string, number>();
    let maxPerKey = 0;
    let maxInPartition0 = 0;
    let inPartition0 = 0;
    const summary = await consumer.run({
      concurrency: 8,
      ordering: 'key',
      handler: async (message) => {
        const key = `${message.partition}/${message.key}`;
        const here = (running.get(key) ?? 0) + 1;
        running.set(key, here);
        maxPerKey = Math.max(maxPerKey, here);
        if (message.partition === 0) maxInPartition0 = Math.max(maxInPartition0, ++inPartition0);
        for (let index = 0; index < message.offset % 4; index++) await tick();
        seen.push(record(message));
        if (message.partition === 0) inPartition0--;
        running.set(key, here - 1);
        if (seen.length === 400) void consumer.close();
      },
    });
    expect(summary.handled).toBe(400);
    expectOrdered(seen, (entry) => `${entry.partition}/${entry.key}`);
    expect(maxPerKey).toBe(1);
    expect(maxInPartition0).toBeGreaterThan(1);
  });

  test("ordering 'none': up to concurrency at once", async () => {
    const sw = await setup(1);
    await produce(sw, 1, 100, 1);
    const consumer = sw.consumer({ topics: ['t'], from: 'earliest' });
    let inFlight = 0;
    let maxRunning = 0;
    let handled = 0;
    await consumer.run({
      concurrency: 8,
      ordering: 'none',
      handler: async () => {
        maxRunning = Math.max(maxRunning, ++inFlight);
        await tick();
        inFlight--;
        if (++handled === 100) void consumer.close();
      },
    });
    expect(maxRunning).toBe(8);
  });

  test('a throwing handler nacks its message: the partition rewinds and it comes again, in order', async () => {
    const sw = await setup(2);
    await produce(sw, 2, 50, 3);
    const consumer = sw.consumer({ topics: ['t'], from: 'earliest', maxWaitMs: 50 });
    const handled: Seen[] = [];
    const failures: Seen[] = [];
    const summary = await consumer.run({
      concurrency: 4,
      handler: async (message) => {
        await tick();
        if (message.partition === 0 && message.offset === 20 && message.deliveryCount === 1) {
          failures.push(record(message));
          throw new Error('flaky');
        }
        handled.push(record(message));
        if (handled.length === 100) void consumer.close();
      },
    });
    expect(failures).toMatchObject([{ partition: 0, offset: 20, deliveryCount: 1 }]);
    expectOrdered(handled, (entry) => `${entry.partition}`);
    expect(handled.filter((entry) => entry.partition === 0).map((entry) => entry.offset)).toEqual(
      Array.from({ length: 50 }, (_, index) => index),
    );
    expect(handled.find((entry) => entry.partition === 0 && entry.offset === 20)!.deliveryCount).toBe(2);
    expect(summary.failed).toBe(1);
    expect(summary.handled).toBe(100);
  });

  test('a slow handler holds back the consumer: pending messages stay within the bound', async () => {
    const sw = await setup(2);
    await produce(sw, 2, 150, 2);
    const consumer = sw.consumer({ topics: ['t'], from: 'earliest', maxBytes: 4096 });
    let handled = 0;
    const summary = await consumer.run({
      concurrency: 3,
      pendingMessagesMax: 10,
      handler: async () => {
        await sleep(1);
        if (++handled === 300) void consumer.close();
      },
    });
    expect(summary.handled).toBe(300);
    expect(summary.peakPendingMessages).toBe(10);
  });

  test('closing the consumer: run waits for the running handler, drops what is queued, then resolves', async () => {
    const sw = await setup(1);
    await produce(sw, 1, 20, 1);
    const consumer = sw.consumer({ topics: ['t'], from: 'earliest' });
    const release = deferred();
    const started = deferred();
    let finished = false;
    let calls = 0;
    const running = consumer.run({
      handler: async (message) => {
        calls++;
        started.resolve();
        if (message.offset === 0) await release.promise;
        finished = true;
      },
    });
    let resolved = false;
    void running.then(() => {
      resolved = true;
    });
    await started.promise;
    await waitFor(() => consumer.assignment()[0]!.position === 20);
    await sleep(20);
    await consumer.close();
    await sleep(20);
    expect(resolved).toBe(false);
    release.resolve();
    const summary = await running;
    expect(finished).toBe(true);
    expect(calls).toBe(1);
    expect(summary).toMatchObject({ handled: 1, failed: 0 });
    expect(summary.dropped).toBeGreaterThan(0);
  });

  test('options are checked; one run at a time; a consumer failure rejects run', async () => {
    const sw = await setup(1);
    const consumer = sw.consumer({ topics: ['t'], from: 'earliest' });
    const handler = (): void => undefined;
    for (const options of [
      {},
      { handler, worker: 'x.js' },
      { handler, concurrency: 0 },
      { handler, threads: 2 },
      { handler, ordering: 'random' as 'none' },
      { handler, pendingMessagesMax: 0 },
      { worker: 'x.js', concurrency: 2 },
      { worker: new URL('https://example.invalid/x.js') },
    ]) {
      expect((await rejection(consumer.run(options))).code).toBe('INVALID_ARGUMENT');
    }
    const running = consumer.run({ handler });
    expect((await rejection(consumer.run({ handler }))).code).toBe('INVALID_ARGUMENT');
    await consumer.close();
    expect(await running).toMatchObject({ handled: 0 });
    const unknown = sw.consumer({ topics: ['nope'], from: 'earliest' });
    expect((await rejection(unknown.run({ handler }))).code).toBe('UNKNOWN_TOPIC');
  });
});

describe('consumer.run({ worker }) on piscina', () => {
  function workerModule(body: string): { url: URL; log: string } {
    const directory = mkdtempSync(join(tmpdir(), 'spillway-pool-'));
    onCleanup(() => rmSync(directory, { recursive: true, force: true }));
    const log = join(directory, 'seen.jsonl');
    writeFileSync(log, '');
    const path = join(directory, 'handler.mjs');
    writeFileSync(
      path,
      `import { appendFileSync } from 'node:fs';
import { threadId } from 'node:worker_threads';
const log = ${JSON.stringify(log)};
function record(message) {
  appendFileSync(log, JSON.stringify({ partition: message.partition, offset: message.offset,
    key: message.key === null ? null : message.key.toString(), value: message.value.toString(),
    deliveryCount: message.deliveryCount, thread: threadId, header: message.headers.h?.toString(),
    timestamp: message.timestamp, topic: message.topic }) + '\\n');
}
${body}
`,
    );
    return { url: pathToFileURL(path), log };
  }

  function readSeen(log: string): Seen[] {
    // Only complete lines: a worker may be in the middle of appending one.
    const lines = readFileSync(log, 'utf8').split('\n');
    lines.pop();
    return lines.map((line) => JSON.parse(line) as Seen);
  }

  async function runUntil(
    sw: Spillway,
    log: string,
    count: number,
    options: Parameters<ReturnType<Spillway['consumer']>['run']>[0],
    group?: string,
  ): Promise<{ summary: RunSummary; seen: Seen[] }> {
    const consumer =
      group === undefined
        ? sw.consumer({ topics: ['t'], from: 'earliest', maxWaitMs: 50 })
        : sw.consumer({ group, topics: ['t'], from: 'earliest', maxWaitMs: 50 });
    const running = consumer.run(options);
    let failure: unknown = null;
    running.catch((error: unknown) => {
      failure = error;
    });
    await waitFor(() => failure !== null || readSeen(log).length >= count, 30_000);
    await consumer.close();
    const summary = await running;
    return { summary, seen: readSeen(log) };
  }

  test("ordering 'partition' under 4 threads: each partition in order, partitions spread over threads", async () => {
    const sw = await setup(6);
    await produce(sw, 6, 200, 5);
    const { url, log } = workerModule('export async function handler(message) { record(message); }');
    const { summary, seen } = await runUntil(sw, log, 1200, { worker: url, threads: 4, batchMessages: 16 });
    expect(seen).toHaveLength(1200);
    expectOrdered(seen, (entry) => `${entry.partition}`);
    expect(new Set(seen.map((entry) => entry.thread)).size).toBeGreaterThan(1);
    expect(summary).toMatchObject({ handled: 1200, failed: 0, threadsStarted: 4, threadsExited: 4 });
    const first = seen.find((entry) => entry.partition === 2 && entry.offset === 7) as Seen & {
      header: string;
      topic: string;
      timestamp: number;
    };
    expect(first).toMatchObject({ topic: 't', key: 'k2', value: '2-7', header: '7', deliveryCount: 1 });
    expect(first.timestamp).toBeGreaterThan(0);
  });

  test("ordering 'key' under 4 threads: each key of each partition in order", async () => {
    const sw = await setup(3);
    await produce(sw, 3, 300, 7);
    // A synchronous handler that takes longer for some keys, so keys overtake each other.
    const { url, log } = workerModule(
      `export function handler(message) {
  const until = Date.now() + (message.key === 'k3' ? 1 : 0);
  while (Date.now() < until);
  record(message);
}`,
    );
    const { summary, seen } = await runUntil(sw, log, 900, {
      worker: url.href,
      threads: 4,
      ordering: 'key',
      batchMessages: 8,
    });
    expect(summary.handled).toBe(900);
    expectOrdered(seen, (entry) => `${entry.partition}/${entry.key}`);
    expect(new Set(seen.map((entry) => entry.thread)).size).toBeGreaterThan(1);
  });

  test('a throwing worker nacks that message: its partition rewinds and it is handled again', async () => {
    const sw = await setup(2);
    await produce(sw, 2, 100, 3);
    const { url, log } = workerModule(
      `export async function handler(message) {
  if (message.value.toString() === '1-40' && message.deliveryCount === 1) throw new Error('bad message 1-40');
  record(message);
}`,
    );
    const { summary, seen } = await runUntil(sw, log, 200, { worker: url, threads: 4, batchMessages: 10 });
    expect(summary.failed).toBe(1);
    expect(summary.handled).toBe(200);
    expectOrdered(seen, (entry) => `${entry.partition}`);
    expect(seen.filter((entry) => entry.partition === 1).map((entry) => entry.offset)).toEqual(
      Array.from({ length: 100 }, (_, index) => index),
    );
    expect(seen.find((entry) => entry.value === '1-40')!.deliveryCount).toBe(2);
  });

  test('a slow worker holds back the consumer: pending messages stay within the bound', async () => {
    const sw = await setup(4);
    await produce(sw, 4, 100, 4);
    const { url, log } = workerModule(
      `export async function handler(message) {
  await new Promise((resolve) => setTimeout(resolve, 1));
  record(message);
}`,
    );
    const { summary, seen } = await runUntil(sw, log, 400, {
      worker: url,
      threads: 2,
      batchMessages: 4,
      pendingMessagesMax: 24,
    });
    expect(seen).toHaveLength(400);
    expect(summary.peakPendingMessages).toBeLessThanOrEqual(24);
    expect(summary.peakPendingMessages).toBeGreaterThanOrEqual(8);
  });

  test('closing the consumer shuts the pool down: its threads exit before run resolves', async () => {
    const sw = await setup(1);
    const { url, log } = workerModule('export function handler(message) { record(message); }');
    const consumer = sw.consumer({ topics: ['t'], from: 'earliest', maxWaitMs: 20 });
    const running = consumer.run({ worker: url, threads: 3 });
    await produce(sw, 1, 5, 1);
    await waitFor(() => readSeen(log).length === 5, 30_000);
    await consumer.close();
    expect(await running).toMatchObject({ handled: 5, threadsStarted: 3, threadsExited: 3 });
    appendFileSync(log, '');
  });

  test('group mode through the pool: handled messages are committed, a failure rewinds and comes again', async () => {
    const broker = await openBroker();
    const sw = await connect(broker);
    await sw.admin.createTopic('t', { partitions: 3 });
    await produce(sw, 3, 100, 4);
    const { url, log } = workerModule(
      `export function handler(message) {
  if (message.value.toString() === '2-50' && message.deliveryCount === 1) throw new Error('once');
  record(message);
}`,
    );
    const consumer = sw.consumer({ group: 'g', topics: ['t'], from: 'earliest', commitIntervalMs: 5 });
    const running = consumer.run({ worker: url, threads: 4, batchMessages: 16 });
    await waitFor(
      () =>
        consumer.assignment().length === 3 &&
        consumer.assignment().every((partition) => partition.committable === 100),
      30_000,
    );
    await consumer.close();
    const summary = await running;
    expect(summary).toMatchObject({ handled: 300, failed: 1, threadsStarted: 4, threadsExited: 4 });
    const seen = readSeen(log);
    expectOrdered(seen, (entry) => `${entry.partition}`);
    expect(seen.find((entry) => entry.value === '2-50')!.deliveryCount).toBe(2);
    const description = await sw.admin.describeGroup('g');
    expect(description.partitions.map((partition) => partition.committed)).toEqual([100, 100, 100]);
  });

  test("group mode, ordering 'partition' under 4 threads (spans packed from the fetched batches): in order, every field right", async () => {
    const sw = await setup(6);
    await produce(sw, 6, 200, 5);
    const { url, log } = workerModule('export async function handler(message) { record(message); }');
    const { summary, seen } = await runUntil(
      sw,
      log,
      1200,
      { worker: url, threads: 4, batchMessages: 16 },
      'g',
    );
    expect(seen).toHaveLength(1200);
    expectOrdered(seen, (entry) => `${entry.partition}`);
    expect(new Set(seen.map((entry) => entry.thread)).size).toBeGreaterThan(1);
    expect(summary).toMatchObject({
      handled: 1200,
      failed: 0,
      dropped: 0,
      threadsStarted: 4,
      threadsExited: 4,
    });
    for (const entry of seen as Array<Seen & { header: string; topic: string; timestamp: number }>) {
      expect(entry).toMatchObject({
        topic: 't',
        key: `k${entry.offset % 5}`,
        value: `${entry.partition}-${entry.offset}`,
        header: `${entry.offset}`,
        deliveryCount: 1,
      });
      expect(entry.timestamp).toBeGreaterThan(0);
    }
  });

  test('group mode: a slow worker holds back the consumer: pending messages stay within the bound', async () => {
    const sw = await setup(4);
    await produce(sw, 4, 100, 4);
    const { url, log } = workerModule(
      `export async function handler(message) {
  await new Promise((resolve) => setTimeout(resolve, 1));
  record(message);
}`,
    );
    const { summary, seen } = await runUntil(
      sw,
      log,
      400,
      { worker: url, threads: 2, batchMessages: 4, pendingMessagesMax: 24 },
      'g',
    );
    expect(seen).toHaveLength(400);
    expectOrdered(seen, (entry) => `${entry.partition}`);
    expect(summary.peakPendingMessages).toBeLessThanOrEqual(24);
    expect(summary.peakPendingMessages).toBeGreaterThanOrEqual(8);
  });

  test('a worker module without a handler export, or missing, rejects run with INVALID_ARGUMENT', async () => {
    const sw = await setup(1);
    await produce(sw, 1, 3, 1);
    const { url } = workerModule('export function notTheHandler() {}');
    const consumer = sw.consumer({ topics: ['t'], from: 'earliest' });
    const error = await rejection(consumer.run({ worker: url, threads: 1 }));
    expect(error.code).toBe('INVALID_ARGUMENT');
    expect(error.message).toMatch(/no exported function 'handler'/);
    const missing = sw.consumer({ topics: ['t'], from: 'earliest' });
    expect((await rejection(missing.run({ worker: '/nonexistent/handler.mjs' }))).code).toBe(
      'INVALID_ARGUMENT',
    );
  });
});
