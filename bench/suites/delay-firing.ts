/**
 * Firing lateness of delayed messages (src/broker/delay/), on its own and side by side with another
 * build: messages due evenly over `firingSeconds` at `dueRatePerSecond` (4 partitions, `interval`),
 * scheduled beforehand (first due 1.5 s after the last send is issued); a consumer in the same
 * process long-polls the topic. Lateness = when the consumer got it (Date.now()) minus its due time;
 * also the broker's own figure (append acknowledged minus due time, DelayStats.lateness), and the
 * event loop's own delay over the same firing window (perf_hooks monitorEventLoopDelay, 1 ms
 * resolution): what the machine's load adds whatever the broker does. Target: p99 <= 10 ms.
 *
 * `SPILLWAY_BENCH_BASELINE=/path/to/other/worktree` (built: its dist/ is imported) runs the same
 * measurement on that build too, alternating baseline / this build, run by run.
 */

import * as path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { Spillway } from '../../src/client/index.js';
import { Broker } from '../../src/spillway-broker.js';
import { type BenchContext, type BenchRow, type BenchSuite, median } from '../report.js';

const suiteName = 'delay-firing';
const partitions = 4;

interface Build {
  name: string;
  Broker: typeof Broker;
  Spillway: typeof Spillway;
}

export interface FiringResult {
  consumer: number[];
  brokerP50: number;
  brokerP99: number;
  loopP50: number;
  loopP99: number;
  /** CPU time of this process (broker and consumer) per message over the firing window, µs. */
  cpuMicrosPerMessage: number;
}

function percentile(sorted: readonly number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))] ?? 0;
}

let directoryNumber = 0;

/** One firing run on `build`: `seconds` × `rate` messages due evenly, read back by a consumer. */
export async function firingRun(
  context: BenchContext,
  build: Pick<Build, 'Broker' | 'Spillway'>,
  seconds: number,
  rate: number,
): Promise<FiringResult> {
  const broker = await build.Broker.open({
    dataDir: path.join(context.scratchDir, `delay-firing-${process.pid}-${directoryNumber++}`),
    durability: 'interval',
    segmentBytes: 256 * 1024 * 1024,
  });
  try {
    await broker.topics.create('f', { partitions, durability: 'interval' });
    const sw = await build.Spillway.connect(broker);
    const producer = sw.producer({ lingerMs: 1 });
    const total = seconds * rate;
    const start = Date.now() + 1500;
    const sends: Array<Promise<unknown>> = [];
    for (let i = 0; i < total; i++) {
      const deliverAt = start + Math.floor((i * 1000) / rate);
      sends.push(producer.send('f', { value: String(deliverAt), partition: i % partitions, deliverAt }));
    }
    await Promise.all(sends);
    await producer.close();
    const consumer = sw.consumer({ topics: ['f'], from: 'earliest', maxWaitMs: 500 });
    const lateness: number[] = [];
    const deadline = Date.now() + seconds * 1000 + 15_000;
    // The event loop's delay over the firing window only (the sends before it are not measured).
    const loop = monitorEventLoopDelay({ resolution: 1 });
    let cpuAtStart = process.cpuUsage();
    const startMonitor = setTimeout(
      () => {
        loop.enable();
        cpuAtStart = process.cpuUsage();
      },
      Math.max(0, start - Date.now()),
    );
    for await (const message of consumer) {
      lateness.push(Date.now() - Number(message.value!.toString()));
      if (lateness.length >= total || Date.now() > deadline) break;
    }
    clearTimeout(startMonitor);
    loop.disable();
    const cpu = process.cpuUsage(cpuAtStart);
    await consumer.close();
    const stats = broker.delay.stats();
    await sw.close();
    lateness.sort((a, b) => a - b);
    return {
      consumer: lateness,
      brokerP50: stats.lateness.p50Ms,
      brokerP99: stats.lateness.p99Ms,
      // Delay beyond the monitor's own 1 ms resolution, in ms.
      loopP50: Math.max(0, loop.percentile(50) / 1e6 - 1),
      loopP99: Math.max(0, loop.percentile(99) / 1e6 - 1),
      cpuMicrosPerMessage: (cpu.user + cpu.system) / Math.max(1, lateness.length),
    };
  } finally {
    await broker.close();
  }
}

async function loadBuild(root: string): Promise<Build> {
  const dist = path.join(root, 'dist', 'src');
  const brokerModule = (await import(pathToFileURL(path.join(dist, 'spillway-broker.js')).href)) as {
    Broker: typeof Broker;
  };
  const clientModule = (await import(pathToFileURL(path.join(dist, 'client', 'index.js')).href)) as {
    Spillway: typeof Spillway;
  };
  return { name: path.basename(root), Broker: brokerModule.Broker, Spillway: clientModule.Spillway };
}

const round1 = (value: number) => Math.round(value * 10) / 10;

export const suite: BenchSuite = {
  name: suiteName,
  async run(context: BenchContext): Promise<BenchRow[]> {
    const runs = context.quick ? 1 : 3;
    const seconds = context.quick ? 1 : 3;
    const rate = context.quick ? 2_000 : 10_000;
    const builds: Build[] = [];
    const baseline = process.env['SPILLWAY_BENCH_BASELINE'];
    if (baseline !== undefined && baseline !== '') builds.push(await loadBuild(path.resolve(baseline)));
    builds.push({ name: 'this build', Broker, Spillway });
    const results = new Map<Build, FiringResult[]>(builds.map((build) => [build, []]));
    for (let i = 0; i < runs; i++) {
      for (const build of builds) {
        const result = await firingRun(context, build, seconds, rate);
        results.get(build)!.push(result);
        context.log(
          `delay-firing ${build.name}: lateness p50 ${percentile(result.consumer, 0.5)} ms, p99 ${percentile(result.consumer, 0.99)} ms; broker p99 ${result.brokerP99} ms; event loop delay p50 ${round1(result.loopP50)} ms, p99 ${round1(result.loopP99)} ms; CPU ${round1(result.cpuMicrosPerMessage)} µs/message; ${result.consumer.length} messages`,
        );
      }
    }
    const rows: BenchRow[] = [];
    for (const build of builds) {
      const list = results.get(build)!;
      const p99s = list.map((result) => percentile(result.consumer, 0.99));
      rows.push({
        suite: suiteName,
        name: `firing lateness at ${rate} due/s, consumer-visible, p99 (${build.name})`,
        value: median(p99s),
        unit: 'ms',
        detail: `p50 ${median(list.map((result) => percentile(result.consumer, 0.5)))} ms; broker-side p50 ${median(list.map((result) => result.brokerP50))} ms, p99 ${median(list.map((result) => result.brokerP99))} ms; event-loop delay in the same runs p50 ${round1(median(list.map((result) => result.loopP50)))} ms, p99 ${round1(median(list.map((result) => result.loopP99)))} ms; CPU (broker + consumer) ${round1(median(list.map((result) => result.cpuMicrosPerMessage)))} µs per message; runs p99 ${p99s.join('/')}; target p99 <= 10 ms`,
      });
    }
    return rows;
  },
};
