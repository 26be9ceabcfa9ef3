/**
 * Delayed messages (src/broker/delay/): what scheduling costs, how late firing is, and the broker's
 * memory with a million pending.
 *
 * Schedule rate: a broker in this process (topic `interval`, 4 partitions), one in-process client
 * producer (lingerMs 1), N messages of 100 B sent without awaiting each, plain and delayed (due an
 * hour ahead, so nothing fires) alternated in the same run; msg/s until the last ack. Target:
 * delayed >= 0.5x plain.
 *
 * Firing lateness at 10k due/s: messages due evenly over 3 s at 10,000 per second (4 partitions),
 * scheduled beforehand; a consumer in the same process long-polls the topic. Lateness = when the
 * consumer got it (Date.now()) minus its due time; also the broker's own figure (append acknowledged
 * minus due time, DelayStats.lateness). Target: p99 <= 10 ms.
 *
 * RSS with 1M pending: `spillway broker` as a child process; 1,000,000 delayed messages of 64 B due
 * evenly over the next year are produced over WebSocket; the child's VmRSS (and its anonymous part,
 * RssAnon: heap and arrays, vs RssFile: mapped log pages) is read from /proc, then again after a
 * restart (the wheel rebuilt from `__delay`). Target: <= 100 MiB.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import * as path from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Spillway } from '../../src/client/index.js';
import { Broker } from '../../src/spillway-broker.js';
import { type BenchContext, type BenchRow, type BenchSuite, median } from '../report.js';

const suiteName = 'delay';
const partitions = 4;

interface Parameters {
  runs: number;
  scheduleMessages: number;
  firingSeconds: number;
  dueRatePerSecond: number;
  pendingMessages: number;
}
const fullParameters: Parameters = {
  runs: 3,
  scheduleMessages: 200_000,
  firingSeconds: 3,
  dueRatePerSecond: 10_000,
  pendingMessages: 1_000_000,
};
const quickParameters: Parameters = {
  runs: 1,
  scheduleMessages: 20_000,
  firingSeconds: 1,
  dueRatePerSecond: 2_000,
  pendingMessages: 20_000,
};

let directoryNumber = 0;

async function openBroker(context: BenchContext): Promise<Broker> {
  return Broker.open({
    dataDir: path.join(context.scratchDir, `delay-${directoryNumber++}`),
    durability: 'interval',
    segmentBytes: 256 * 1024 * 1024,
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function percentile(sorted: readonly number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))] ?? 0;
}

/** msg/s of `messages` sends (delayed or not) through one in-process producer. */
async function scheduleRun(context: BenchContext, messages: number, delayed: boolean): Promise<number> {
  const broker = await openBroker(context);
  try {
    await broker.topics.create('s', { partitions, durability: 'interval' });
    const sw = await Spillway.connect(broker);
    const producer = sw.producer({ lingerMs: 1 });
    const value = 'v'.repeat(100);
    const deliverAt = Date.now() + 3_600_000;
    const started = performance.now();
    const sends: Array<Promise<unknown>> = [];
    for (let i = 0; i < messages; i++) {
      sends.push(
        producer.send(
          's',
          delayed ? { value, partition: i % partitions, deliverAt } : { value, partition: i % partitions },
        ),
      );
      if (i % 10_000 === 9_999) await yieldToEventLoop();
    }
    await Promise.all(sends);
    const rate = messages / ((performance.now() - started) / 1000);
    await producer.close();
    await sw.close();
    return rate;
  } finally {
    await broker.close();
  }
}

interface Lateness {
  consumer: number[];
  brokerP50: number;
  brokerP99: number;
}

async function firingRun(context: BenchContext, parameters: Parameters): Promise<Lateness> {
  const broker = await openBroker(context);
  try {
    await broker.topics.create('f', { partitions, durability: 'interval' });
    const sw = await Spillway.connect(broker);
    const producer = sw.producer({ lingerMs: 1 });
    const total = parameters.firingSeconds * parameters.dueRatePerSecond;
    const start = Date.now() + 1500;
    const sends: Array<Promise<unknown>> = [];
    for (let i = 0; i < total; i++) {
      const deliverAt = start + Math.floor((i * 1000) / parameters.dueRatePerSecond);
      sends.push(producer.send('f', { value: String(deliverAt), partition: i % partitions, deliverAt }));
    }
    await Promise.all(sends);
    await producer.close();
    const consumer = sw.consumer({ topics: ['f'], from: 'earliest', maxWaitMs: 500 });
    const lateness: number[] = [];
    const deadline = Date.now() + parameters.firingSeconds * 1000 + 15_000;
    for await (const message of consumer) {
      lateness.push(Date.now() - Number(message.value!.toString()));
      if (lateness.length >= total || Date.now() > deadline) break;
    }
    await consumer.close();
    const stats = broker.delay.stats();
    await sw.close();
    lateness.sort((a, b) => a - b);
    return { consumer: lateness, brokerP50: stats.lateness.p50Ms, brokerP99: stats.lateness.p99Ms };
  } finally {
    await broker.close();
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function repositoryRoot(): string {
  let directory = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(directory, 'package.json'))) directory = path.dirname(directory);
  return directory;
}

/** `spillway broker` as a child; resolves once it listens. */
async function startBrokerChild(dataDir: string, port: number): Promise<ChildProcess> {
  const cli = path.join(repositoryRoot(), 'dist', 'src', 'cli', 'main.js');
  const child = spawn(process.execPath, [cli, 'broker', '--data-dir', dataDir, '--port', String(port)], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const expected = `spillway listening on ws://127.0.0.1:${port}`;
  let stdout = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('broker child did not start within 60 s')), 60_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
      if (stdout.includes(expected)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', () => reject(new Error(`broker child exited: ${stdout}`)));
  });
  child.removeAllListeners('exit');
  child.stdout!.resume();
  return child;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

/** MiB of VmRSS, RssAnon and RssFile of process `pid`. */
function rssOf(pid: number): { rss: number; anon: number; file: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string): number =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
  return { rss: kib('VmRSS') / 1024, anon: kib('RssAnon') / 1024, file: kib('RssFile') / 1024 };
}

interface PendingMemory {
  produced: { rss: number; anon: number; file: number };
  restarted: { rss: number; anon: number; file: number };
  pending: number;
  wheelBytes: number;
  produceSeconds: number;
}

async function pendingRun(context: BenchContext, messages: number): Promise<PendingMemory> {
  const dataDir = path.join(context.scratchDir, `delay-pending-${directoryNumber++}`);
  const port = await freePort();
  let child = await startBrokerChild(dataDir, port);
  try {
    let sw = await Spillway.connect(`ws://127.0.0.1:${port}`);
    await sw.admin.createTopic('p', { partitions, durability: 'interval' });
    const producer = sw.producer({ lingerMs: 5, batchBytes: 256 * 1024 });
    const now = Date.now();
    const yearMs = 365 * 86_400_000;
    const value = 'v'.repeat(64);
    const started = performance.now();
    let sends: Array<Promise<unknown>> = [];
    for (let i = 0; i < messages; i++) {
      const deliverAt = now + 60_000 + Math.floor((i / messages) * yearMs);
      sends.push(producer.send('p', { value, partition: i % partitions, deliverAt }));
      if (sends.length >= 50_000) {
        await Promise.all(sends);
        sends = [];
      }
    }
    await Promise.all(sends);
    await producer.close();
    const produceSeconds = (performance.now() - started) / 1000;
    await sleep(2000);
    const produced = rssOf(child.pid!);
    await sw.close();
    await stopChild(child);
    child = await startBrokerChild(dataDir, port);
    await sleep(2000);
    const restarted = rssOf(child.pid!);
    sw = await Spillway.connect(`ws://127.0.0.1:${port}`);
    const stats = await sw.admin.delayStats();
    await sw.close();
    return { produced, restarted, pending: stats.pending, wheelBytes: stats.wheelBytes, produceSeconds };
  } finally {
    await stopChild(child);
  }
}

const mib = (value: number) => Number(value.toFixed(1));

export const suite: BenchSuite = {
  name: suiteName,
  async run(context: BenchContext): Promise<BenchRow[]> {
    const parameters = context.quick ? quickParameters : fullParameters;
    const rows: BenchRow[] = [];
    const plain: number[] = [];
    const delayed: number[] = [];
    for (let i = 0; i < parameters.runs; i++) {
      plain.push(await scheduleRun(context, parameters.scheduleMessages, false));
      delayed.push(await scheduleRun(context, parameters.scheduleMessages, true));
      context.log(`delay: plain ${Math.round(plain[i]!)} msg/s, delayed ${Math.round(delayed[i]!)} msg/s`);
    }
    const runs = (values: number[]) => values.map((v) => Math.round(v)).join('/');
    rows.push({
      suite: suiteName,
      name: 'plain produce, 100 B, in-process producer',
      value: Math.round(median(plain)),
      unit: 'msg/s',
      detail: `${parameters.scheduleMessages} messages, ${partitions} partitions, interval; runs ${runs(plain)}`,
    });
    rows.push({
      suite: suiteName,
      name: 'delayed produce (due in 1 h), 100 B, same run',
      value: Math.round(median(delayed)),
      unit: 'msg/s',
      detail: `ratio to plain ${(median(delayed) / median(plain)).toFixed(2)} (target >= 0.5); runs ${runs(delayed)}`,
    });
    const consumerP50: number[] = [];
    const consumerP99: number[] = [];
    const brokerP50: number[] = [];
    const brokerP99: number[] = [];
    let consumerMax = 0;
    for (let i = 0; i < parameters.runs; i++) {
      const lateness = await firingRun(context, parameters);
      consumerP50.push(percentile(lateness.consumer, 0.5));
      consumerP99.push(percentile(lateness.consumer, 0.99));
      consumerMax = Math.max(consumerMax, lateness.consumer[lateness.consumer.length - 1] ?? 0);
      brokerP50.push(lateness.brokerP50);
      brokerP99.push(lateness.brokerP99);
      context.log(
        `delay: lateness p50 ${consumerP50[i]} ms, p99 ${consumerP99[i]} ms (broker append p99 ${lateness.brokerP99} ms), ${lateness.consumer.length} messages`,
      );
    }
    rows.push({
      suite: suiteName,
      name: `firing lateness at ${parameters.dueRatePerSecond} due/s, consumer-visible, p99`,
      value: median(consumerP99),
      unit: 'ms',
      detail: `p50 ${median(consumerP50)} ms, max ${consumerMax} ms; broker-side (append acked - due) p50 ${median(brokerP50)} ms, p99 ${median(brokerP99)} ms; runs p99 ${consumerP99.join('/')}; target p99 <= 10 ms`,
    });
    const memory: PendingMemory[] = [];
    for (let i = 0; i < parameters.runs; i++) {
      const result = await pendingRun(context, parameters.pendingMessages);
      memory.push(result);
      context.log(
        `delay: ${result.pending} pending: RSS ${mib(result.produced.rss)} MiB after producing (anon ${mib(result.produced.anon)}), ${mib(result.restarted.rss)} MiB after restart (anon ${mib(result.restarted.anon)})`,
      );
    }
    const pick = (f: (m: PendingMemory) => number) => mib(median(memory.map(f)));
    rows.push({
      suite: suiteName,
      name: `broker RSS with ${parameters.pendingMessages} pending over a year, after a restart`,
      value: pick((m) => m.restarted.rss),
      unit: 'MiB',
      detail: `anon ${pick((m) => m.restarted.anon)} MiB + mapped file ${pick((m) => m.restarted.file)} MiB; right after producing: ${pick((m) => m.produced.rss)} MiB (anon ${pick((m) => m.produced.anon)}); wheel arrays ${pick((m) => m.wheelBytes / 1048576)} MiB; produce ${pick((m) => m.produceSeconds)} s; target <= 100 MiB`,
    });
    return rows;
  },
};
