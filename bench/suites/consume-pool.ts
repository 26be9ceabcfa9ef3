/**
 * consumer.run over the log consumer: a no-op handler in the calling thread (`run({ handler })`)
 * against the same no-op handler in the piscina worker pool (`run({ worker, threads: 2 })`), in the
 * same run on the same data, to show what the pool costs (packing batches, transferring them, the
 * threads) and what it brings.
 *
 * Setup: a broker in this process (durability none, in the scratch directory; `Spillway.connect(broker)`,
 * no network), a topic of 4 partitions holding N messages of 100 B (keys `k<i mod 1000>`), produced
 * once. Each case starts a consumer from 'earliest' and a run, and times from run() until the Nth
 * message was handled (handler mode: counted in the handler; pool: the worker module bench/pool/no-op-handler.ts
 * reports its count over a BroadcastChannel every 2 ms), then closes the consumer. Pool start-up
 * (threads, module import) is inside the time. Median of 3 runs (1 quick), N = 1M (100k quick).
 *
 * The same two in group mode (a group consumer, one member, fresh group per run: acks feed the
 * committed contiguous prefix, commits batched). Issue 10's target: group mode through the pool,
 * no-op handler, 2 threads >= 1M msg/s.
 */
import * as path from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { BroadcastChannel } from 'node:worker_threads';
import type { RunOptions } from '../../src/client/consumer-run.js';
import { Spillway } from '../../src/client/index.js';
import { Broker } from '../../src/spillway-broker.js';
import { poolBenchChannel } from '../pool/no-op-handler.js';
import { type BenchContext, type BenchRow, type BenchSuite, median } from '../report.js';

const suiteName = 'consume-pool';
const topic = 'pool-bench';
const partitions = 4;

function workerModule(): URL {
  const here = import.meta.url;
  return here.endsWith('.ts')
    ? new URL('../../dist/bench/pool/no-op-handler.js', here)
    : new URL('../pool/no-op-handler.js', here);
}

async function produce(sw: Spillway, count: number): Promise<void> {
  const producer = sw.producer({ lingerMs: 1, batchBytes: 256 * 1024 });
  const value = new Uint8Array(100).fill(0x61);
  let window: Array<Promise<unknown>> = [];
  for (let index = 0; index < count; index++) {
    window.push(producer.send(topic, { key: `k${index % 1000}`, value }));
    if (window.length === 20_000) {
      await Promise.all(window);
      window = [];
    }
  }
  await Promise.all(window);
  await producer.close();
}

/** Seconds from run() until `count` messages were handled. */
let groupNumber = 0;

async function timeRun(sw: Spillway, count: number, options: RunOptions, group = false): Promise<number> {
  const consumer = group
    ? sw.consumer({ group: `pool-bench-${groupNumber++}`, topics: [topic], from: 'earliest' })
    : sw.consumer({ topics: [topic], from: 'earliest' });
  await consumer.ready();
  let handled = 0;
  let reached: () => void = () => undefined;
  const allHandled = new Promise<void>((resolve) => {
    reached = resolve;
  });
  const count1 = (delta: number): void => {
    handled += delta;
    if (handled >= count) reached();
  };
  let channel: BroadcastChannel | null = null;
  let runOptions = options;
  if (options.handler !== undefined) {
    runOptions = { ...options, handler: () => count1(1) };
  } else {
    channel = new BroadcastChannel(poolBenchChannel);
    channel.onmessage = (event) => count1((event as MessageEvent).data as number);
  }
  const started = process.hrtime.bigint();
  const running = consumer.run(runOptions);
  let failure: unknown = null;
  running.catch((error: unknown) => {
    failure = error;
    reached();
  });
  await allHandled;
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  channel?.close();
  await consumer.close();
  await running.catch(() => undefined);
  if (failure !== null) throw failure;
  return seconds;
}

async function run(context: BenchContext): Promise<BenchRow[]> {
  const count = context.quick ? 100_000 : 1_000_000;
  const runs = context.quick ? 1 : 3;
  const broker = await Broker.open({
    dataDir: path.join(context.scratchDir, 'consume-pool'),
    durability: 'none',
  });
  const rows: BenchRow[] = [];
  try {
    const sw = await Spillway.connect(broker);
    await sw.admin.createTopic(topic, { partitions });
    context.log(`consume-pool: producing ${count} messages of 100 B`);
    await produce(sw, count);
    const worker = workerModule();
    const cases: Array<{ name: string; options: RunOptions; group?: boolean }> = [
      {
        name: 'run({handler}) no-op, concurrency 1, ordering partition',
        options: { handler: () => undefined },
      },
      {
        name: 'run({handler}) no-op, concurrency 64, ordering key',
        options: { handler: () => undefined, concurrency: 64, ordering: 'key' },
      },
      { name: 'pool no-op, 2 threads, ordering partition', options: { worker, threads: 2 } },
      { name: 'pool no-op, 2 threads, ordering key', options: { worker, threads: 2, ordering: 'key' } },
      { name: 'pool no-op, 2 threads, ordering none', options: { worker, threads: 2, ordering: 'none' } },
      {
        name: 'group mode: run({handler}) no-op, concurrency 1, ordering partition',
        options: { handler: () => undefined },
        group: true,
      },
      {
        name: 'group mode: pool no-op, 2 threads, ordering partition',
        options: { worker, threads: 2 },
        group: true,
      },
    ];
    // Unreported warm-up of both paths (JIT, page cache).
    await timeRun(sw, Math.min(count, 50_000), cases[0]!.options);
    await timeRun(sw, Math.min(count, 50_000), cases[2]!.options);
    const rates = new Map<string, number>();
    for (const { name, options, group } of cases) {
      const samples: number[] = [];
      for (let index = 0; index < runs; index++) {
        samples.push(count / (await timeRun(sw, count, options, group)));
        await yieldToEventLoop();
      }
      const rate = median(samples);
      rates.set(name, rate);
      context.log(`consume-pool: ${name}: ${Math.round(rate)} msg/s`);
      rows.push({
        suite: suiteName,
        name,
        value: Math.round(rate),
        unit: 'msg/s',
        detail: `${count} msgs of 100 B, 4 partitions, in-process broker; median of ${runs} (${samples.map((sample) => Math.round(sample)).join(', ')})`,
      });
    }
    const handlerRate = rates.get(cases[0]!.name)!;
    const poolRate = rates.get(cases[2]!.name)!;
    rows.push({
      suite: suiteName,
      name: 'pool (2 threads, partition) / run({handler}) (concurrency 1, partition)',
      value: Math.round((poolRate / handlerRate) * 1000) / 1000,
      unit: 'x',
      detail: 'throughput ratio, no-op handler: below 1 is the pool overhead for a handler that does nothing',
    });
    const groupHandlerRate = rates.get(cases[5]!.name)!;
    const groupPoolRate = rates.get(cases[6]!.name)!;
    rows.push({
      suite: suiteName,
      name: 'group mode: pool (2 threads) / run({handler}) (concurrency 1)',
      value: Math.round((groupPoolRate / groupHandlerRate) * 1000) / 1000,
      unit: 'x',
      detail: 'throughput ratio in group mode (acks feed the committed prefix), no-op handler',
    });
    await sw.close();
  } finally {
    await broker.close();
  }
  return rows;
}

export const suite: BenchSuite = { name: suiteName, run };
