/**
 * The broker end to end over WebSocket on 127.0.0.1: the broker runs in a CHILD process started by
 * this suite (`node dist/src/cli/main.js broker --data-dir <scratch> --port <free>`), so the broker
 * and the clients use separate cores, as in a deployment; it is stopped by PID (SIGTERM, SIGKILL
 * after a timeout) at the end, also after a failure.
 *
 * Cases (all topics 8 partitions, 64 MiB segments, deleted after their case):
 *  - produce: 100 B and 1 KiB values, keyless (the producer's sticky partitioning), durability
 *    `none`, `interval` (200 ms) and `always`, with 1 and 4 producers. The 4 producers are 4
 *    clients (4 WebSocket connections) in THIS process, not child processes: on this 2-core machine
 *    the broker child takes one core and this process the other. Sends are pipelined: sendBatch
 *    calls of 250 messages, each producer keeping at most `windowMessages` unacknowledged. Producer
 *    settings: those of the compare suite (bench/spillway-producer.ts, stated in the rows). Bounded
 *    by a message count (1M of 100 B, 250k of 1 KiB; quick: 20k / 5k) and a time cap (10 s, `always`
 *    6 s); what was acknowledged by the cap counts. msg/s and MB/s of values (decimal MB), first
 *    send to last acknowledgement. Each case runs 3 times on a fresh topic (1 in quick mode): rows
 *    are medians, the detail gives the spread. One unreported warm-up run comes first.
 *  - consume: one client reads back everything the produce case stored, from `earliest`, all 8
 *    partitions (long-poll fetches of 1 MiB); every value's size is checked. msg/s.
 *  - end-to-end latency: one producer client (lingerMs 0) and one consumer client (from `latest`,
 *    on another connection), 100 B values sent open-loop at 1k and 5k msg/s to an `interval` topic.
 *    Each value holds its index and the send time (performance.now(), same process: one clock);
 *    latency = consume time − send time, in hdr-histogram-js (µs), after a warm-up of 10 %.
 *  - targets (the broker issue's): produce 100 B `none` >= 1M msg/s, `always` >= 500k msg/s;
 *    consume >= 2M msg/s; p99 <= 2 ms at 5k msg/s with `interval`. Rows 'target: ...' give
 *    measured ÷ target (throughput) or target ÷ measured (latency): >= 1 is a pass.
 *
 * Profiling: SPILLWAY_BENCH_BROKER_CPU_PROF=<dir> starts the broker child with
 * `--cpu-prof --cpu-prof-dir <dir>` (written when it exits after SIGTERM); profile the client side
 * with `node --cpu-prof dist/bench/main.js --suite broker`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as hdr from 'hdr-histogram-js';
import { Spillway } from '../../src/client/index.js';
import type { Durability } from '../../src/protocol/types.js';
import { findRepositoryRoot } from '../harness.js';
import { payloadPool } from '../peers/payload.js';
import { type BenchContext, type BenchRow, type BenchSuite, median } from '../report.js';
import {
  produceWithSendBatch,
  spillwayProducerOptions,
  spillwayProducerSettings,
} from '../spillway-producer.js';

const suiteName = 'broker';
const partitions = 8;
const segmentBytes = 64 * 1024 * 1024;
const durabilityModes: readonly Durability[] = ['none', 'interval', 'always'];

interface Sizes {
  /** Messages of a produce case, by value size. */
  produceMessages: { 100: number; 1024: number };
  /** Runs of each produce/consume case (medians are reported). */
  runs: number;
  /** Time cap of each produce and each consume phase. */
  phaseMsMax: number;
  /** Time cap of the `always` produce cases (slower: fdatasync rounds). */
  alwaysPhaseMsMax: number;
  latencyRates: readonly number[];
  latencyDurationMs: number;
}

function sizes(quick: boolean): Sizes {
  return quick
    ? {
        produceMessages: { 100: 20_000, 1024: 5_000 },
        runs: 1,
        phaseMsMax: 2_000,
        alwaysPhaseMsMax: 1_000,
        latencyRates: [1000, 5000],
        latencyDurationMs: 500,
      }
    : {
        produceMessages: { 100: 1_000_000, 1024: 250_000 },
        runs: 3,
        phaseMsMax: 10_000,
        alwaysPhaseMsMax: 6_000,
        latencyRates: [1000, 5000],
        latencyDurationMs: 5_000,
      };
}

/** Unacknowledged sends per producer: about 8 MiB of values, and at least a few batches' worth. */
function windowMessages(valueBytes: number): number {
  return Math.max(4096, Math.floor((8 * 1024 * 1024) / valueBytes));
}

const producerOptions = spillwayProducerOptions;

const targets = {
  produceNoneMessagesPerSecond: 1_000_000,
  produceAlwaysMessagesPerSecond: 500_000,
  consumeMessagesPerSecond: 2_000_000,
  latencyP99Us: 2_000,
  latencyRate: 5000,
} as const;

// ---------------------------------------------------------------------------------------------
// The broker child

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A `spillway broker` child process (also used by the security suite, with extra arguments). */
export class BrokerChild {
  private constructor(
    private readonly child: ChildProcess,
    readonly url: string,
    private readonly logFile: string,
    private readonly exited: Promise<string>,
  ) {}

  static async start(
    scratchDir: string,
    log: (message: string) => void,
    extraArgs: readonly string[] = [],
    scheme: 'ws' | 'wss' = 'ws',
  ): Promise<BrokerChild> {
    const cli = path.join(findRepositoryRoot(), 'dist', 'src', 'cli', 'main.js');
    if (!existsSync(cli)) throw new Error(`${cli} is missing: build first (npx tsc -p tsconfig.json)`);
    const port = await freePort();
    const logFile = path.join(scratchDir, 'broker.log');
    const profileDirectory = process.env['SPILLWAY_BENCH_BROKER_CPU_PROF'];
    const nodeArgs = profileDirectory ? ['--cpu-prof', '--cpu-prof-dir', profileDirectory] : [];
    const args = [
      ...nodeArgs,
      cli,
      'broker',
      '--data-dir',
      path.join(scratchDir, 'data'),
      '--port',
      `${port}`,
      ...extraArgs,
    ];
    const logFd = openSync(logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', logFd] });
    } finally {
      closeSync(logFd);
    }
    const exited = new Promise<string>((resolve) => {
      child.once('exit', (code, signal) =>
        resolve(signal === null ? `exit code ${code}` : `signal ${signal}`),
      );
    });
    const expected = `spillway listening on ${scheme}://127.0.0.1:${port}`;
    const broker = new BrokerChild(child, `${scheme}://127.0.0.1:${port}`, logFile, exited);
    let stdout = '';
    const ready = new Promise<boolean>((resolve) => {
      child.stdout!.on('data', (chunk: Buffer) => {
        stdout += chunk.toString('utf8');
        if (stdout.includes(`${expected}\n`)) resolve(true);
      });
      void exited.then(() => resolve(false));
    });
    const started = await Promise.race([ready, sleep(15_000, undefined, { ref: false }).then(() => false)]);
    if (!started) {
      await broker.stop();
      throw new Error(`broker child did not start (${stdout.trim()}); log:\n${broker.logTail()}`);
    }
    log(`broker child pid ${child.pid} listening on ${broker.url}${profileDirectory ? ' (cpu-prof)' : ''}`);
    return broker;
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** SIGTERM, SIGKILL after 20 s; resolves with how it ended. */
  async stop(): Promise<string> {
    const running = (): boolean => this.child.exitCode === null && this.child.signalCode === null;
    if (running()) this.child.kill('SIGTERM');
    const ended = await Promise.race([
      this.exited,
      sleep(20_000, undefined, { ref: false }).then(() => null),
    ]);
    if (ended !== null) return ended;
    if (running()) this.child.kill('SIGKILL');
    return `SIGKILL after a SIGTERM timeout (${await this.exited})`;
  }

  logTail(lines = 10): string {
    try {
      return readFileSync(this.logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Load

interface ProduceOutcome {
  acked: number;
  elapsedMs: number;
}

/**
 * One producer: `count` sends of pool values with at most `window` unacknowledged, none issued past
 * `deadline` (performance.now() ms). Resolves once every issued send is acknowledged; rejects on the
 * first failed send.
 */
async function produceLoop(
  sw: Spillway,
  topic: string,
  pool: readonly Buffer[],
  count: number,
  window: number,
  deadline: number,
): Promise<number> {
  const producer = sw.producer(producerOptions);
  try {
    return await produceWithSendBatch(producer, topic, pool, count, window, deadline);
  } finally {
    await producer.close();
  }
}

async function produceCase(
  clients: readonly Spillway[],
  topic: string,
  valueBytes: number,
  count: number,
  phaseMsMax: number,
): Promise<ProduceOutcome> {
  const pool = payloadPool(valueBytes);
  const window = windowMessages(valueBytes);
  const perProducer = Math.ceil(count / clients.length);
  const started = performance.now();
  const deadline = started + phaseMsMax;
  const acked = await Promise.all(
    clients.map((sw) => produceLoop(sw, topic, pool, perProducer, window, deadline)),
  );
  return { acked: acked.reduce((sum, n) => sum + n, 0), elapsedMs: performance.now() - started };
}

/** Reads `expected` messages of `topic` from earliest; checks every value's size. */
async function consumeCase(
  sw: Spillway,
  topic: string,
  valueBytes: number,
  expected: number,
  phaseMsMax: number,
): Promise<ProduceOutcome> {
  const consumer = sw.consumer({ topics: [topic], from: 'earliest', maxWaitMs: 100 });
  const timer = setTimeout(() => void consumer.close(), phaseMsMax);
  let seen = 0;
  let wrongSize = 0;
  const started = performance.now();
  try {
    for await (const message of consumer) {
      if (message.value?.length !== valueBytes) wrongSize++;
      if (++seen >= expected) break;
    }
  } finally {
    clearTimeout(timer);
    await consumer.close();
  }
  const elapsedMs = performance.now() - started;
  if (wrongSize > 0) throw new Error(`consume ${topic}: ${wrongSize} values of the wrong size`);
  return { acked: seen, elapsedMs };
}

interface LatencyOutcome {
  p50Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
  measured: number;
  lost: number;
  sendLagMaxMs: number;
}

/** Latency value: index (uint32 BE) at 0, send time (float64 LE, performance.now() ms) at 4. */
const latencyValueBytes = 100;

async function latencyCase(
  producerClient: Spillway,
  consumerClient: Spillway,
  topic: string,
  ratePerSecond: number,
  durationMs: number,
): Promise<LatencyOutcome> {
  const total = Math.max(10, Math.floor((ratePerSecond * durationMs) / 1000));
  const warmUp = Math.floor(total / 10);
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000 });
  const received = new Uint8Array(total);
  let receivedCount = 0;
  let unexpected = 0;
  let allReceived: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    allReceived = resolve;
  });
  const consumer = consumerClient.consumer({ topics: [topic], from: 'latest' });
  await consumer.ready();
  const consuming = (async () => {
    for await (const message of consumer) {
      const now = performance.now();
      const value = message.value!;
      const index = value.readUInt32BE(0);
      if (index >= total || received[index] === 1) {
        unexpected++;
        continue;
      }
      received[index] = 1;
      receivedCount++;
      if (index >= warmUp) {
        const latencyUs = Math.round((now - value.readDoubleLE(4)) * 1000);
        histogram.recordValue(Math.min(60_000_000, Math.max(1, latencyUs)));
      }
      if (receivedCount === total) allReceived();
    }
  })();
  const producer = producerClient.producer({ lingerMs: 0 });
  const template = payloadPool(latencyValueBytes)[0]!;
  let sendFailure: unknown;
  let sendLagMaxMs = 0;
  try {
    const intervalMs = 1000 / ratePerSecond;
    const start = performance.now();
    let sent = 0;
    while (sent < total && sendFailure === undefined) {
      const due = Math.min(total, Math.floor((performance.now() - start) / intervalMs) + 1);
      for (let burst = 0; sent < due && burst < 1000; burst++) {
        sendLagMaxMs = Math.max(sendLagMaxMs, performance.now() - (start + sent * intervalMs));
        const value = Buffer.from(template);
        value.writeUInt32BE(sent, 0);
        value.writeDoubleLE(performance.now(), 4);
        producer.send(topic, { value }).catch((error: unknown) => {
          sendFailure ??= error;
        });
        sent++;
      }
      await sleep(Math.max(0, start + sent * intervalMs - performance.now()));
    }
    await Promise.race([done, sleep(5000, undefined, { ref: false })]);
    if (sendFailure !== undefined) throw sendFailure;
    if (unexpected > 0) throw new Error(`latency: ${unexpected} unexpected or repeated messages`);
    if (histogram.totalCount === 0) throw new Error(`latency: none of ${total} messages received`);
    return {
      p50Us: histogram.getValueAtPercentile(50),
      p99Us: histogram.getValueAtPercentile(99),
      p999Us: histogram.getValueAtPercentile(99.9),
      maxUs: histogram.maxValue,
      measured: histogram.totalCount,
      lost: total - receivedCount,
      sendLagMaxMs,
    };
  } finally {
    histogram.destroy();
    await producer.close().catch(() => undefined);
    await consumer.close();
    await consuming.catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// The suite

const mb = (bytes: number): number => bytes / 1e6;

/** 'min–max' of a list, rounded for a detail column. */
function spread(values: readonly number[]): string {
  const format = (value: number): string =>
    value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toPrecision(3);
  return `${format(Math.min(...values))}–${format(Math.max(...values))}`;
}

function sizeName(valueBytes: number): string {
  return valueBytes === 1024 ? '1 KiB' : `${valueBytes} B`;
}

async function run(context: BenchContext): Promise<BenchRow[]> {
  const size = sizes(context.quick);
  const rows: BenchRow[] = [];
  const row = (name: string, value: number, unit: string, detail?: string): void => {
    rows.push(
      detail === undefined
        ? { suite: suiteName, name, value, unit }
        : { suite: suiteName, name, value, unit, detail },
    );
  };
  const broker = await BrokerChild.start(context.scratchDir, context.log);
  const clients: Spillway[] = [];
  const bestProduce = new Map<string, { value: number; detail: string }>();
  let bestConsume = { value: 0, detail: '' };
  let latencyAtTarget: LatencyOutcome | undefined;
  try {
    for (let i = 0; i < 4; i++) clients.push(await Spillway.connect(broker.url, { clientId: `bench-${i}` }));
    const admin = clients[0]!.admin;
    let topicNumber = 0;
    /** One produce + consume run on a fresh topic, deleted afterwards. */
    const runOnce = async (
      valueBytes: 100 | 1024,
      durability: Durability,
      producers: number,
      count: number,
    ) => {
      const topic = `bench-${topicNumber++}`;
      await admin.createTopic(topic, { partitions, durability, segmentBytes });
      try {
        const capMs = durability === 'always' ? size.alwaysPhaseMsMax : size.phaseMsMax;
        const produced = await produceCase(clients.slice(0, producers), topic, valueBytes, count, capMs);
        await sleep(0);
        const consumed = await consumeCase(clients[0]!, topic, valueBytes, produced.acked, size.phaseMsMax);
        return { produced, consumed, capped: produced.acked < count };
      } finally {
        await admin.deleteTopic(topic);
      }
    };
    // Unreported warm-up: JIT of both processes, the first segment files, connections.
    await runOnce(100, 'none', 4, Math.min(200_000, size.produceMessages[100]));

    for (const valueBytes of [100, 1024] as const) {
      for (const durability of durabilityModes) {
        for (const producers of [1, 4]) {
          const count = size.produceMessages[valueBytes];
          const label = `${sizeName(valueBytes)}, ${durability}, ${producers} producer${producers > 1 ? 's' : ''}`;
          const produceRates: number[] = [];
          const consumeRates: number[] = [];
          const notes: string[] = [];
          for (let attempt = 0; attempt < size.runs; attempt++) {
            const { produced, consumed, capped } = await runOnce(valueBytes, durability, producers, count);
            produceRates.push(produced.acked / (produced.elapsedMs / 1000));
            consumeRates.push(consumed.acked / (consumed.elapsedMs / 1000));
            notes.push(
              `${produced.acked.toLocaleString('en-US')}${capped ? ' (time cap)' : ''} in ${produced.elapsedMs.toFixed(0)} ms`,
            );
            if (consumed.acked < produced.acked) {
              throw new Error(
                `${label}: consumed ${consumed.acked} of ${produced.acked} within the time cap`,
              );
            }
          }
          const perSecond = median(produceRates);
          const consumedPerSecond = median(consumeRates);
          const clientsNote = producers > 1 ? `${producers} client connections in one process, ` : '';
          const detail = `${clientsNote}median of ${size.runs} (${spread(produceRates)}); ${notes.join(', ')}; window ${windowMessages(valueBytes).toLocaleString('en-US')} messages per producer; ${spillwayProducerSettings}`;
          row(`produce ${label}`, perSecond, 'msg/s', detail);
          row(
            `produce ${label}, MB/s`,
            mb(perSecond * valueBytes),
            'MB/s',
            `values only, ${spread(produceRates.map((r) => mb(r * valueBytes)))}`,
          );
          const consumeDetail = `1 consumer, 8 partitions, from earliest, median of ${size.runs} (${spread(consumeRates)}), ${mb(consumedPerSecond * valueBytes).toFixed(1)} MB/s`;
          row(`consume ${label} (its data)`, consumedPerSecond, 'msg/s', consumeDetail);
          context.log(
            `${label}: produce ${Math.round(perSecond)} msg/s, consume ${Math.round(consumedPerSecond)} msg/s`,
          );
          if (valueBytes === 100) {
            const best = bestProduce.get(durability);
            if (best === undefined || perSecond > best.value) {
              bestProduce.set(durability, { value: perSecond, detail: `${label}, ${detail}` });
            }
            if (consumedPerSecond > bestConsume.value) {
              bestConsume = { value: consumedPerSecond, detail: `${label}'s data, ${consumeDetail}` };
            }
          }
        }
      }
    }

    for (const rate of size.latencyRates) {
      const topic = `bench-latency-${rate}`;
      await admin.createTopic(topic, { partitions, durability: 'interval', segmentBytes });
      const outcome = await latencyCase(clients[0]!, clients[1]!, topic, rate, size.latencyDurationMs);
      const detail = `${outcome.measured} measured, ${outcome.lost} lost, interval (200 ms), 100 B, send lag max ${outcome.sendLagMaxMs.toFixed(1)} ms`;
      row(`e2e latency ${rate} msg/s interval: p50`, outcome.p50Us, 'µs', detail);
      row(`e2e latency ${rate} msg/s interval: p99`, outcome.p99Us, 'µs', detail);
      row(
        `e2e latency ${rate} msg/s interval: p99.9`,
        outcome.p999Us,
        'µs',
        `max ${outcome.maxUs} µs; ${detail}`,
      );
      context.log(`latency ${rate}/s: p50 ${outcome.p50Us} p99 ${outcome.p99Us} p99.9 ${outcome.p999Us} µs`);
      if (rate === targets.latencyRate) latencyAtTarget = outcome;
      await admin.deleteTopic(topic);
    }
  } finally {
    await Promise.allSettled(clients.map((sw) => sw.close()));
    const how = await broker.stop();
    context.log(`broker child stopped (${how})`);
  }

  const verdict = (ratio: number): string => (ratio >= 1 ? 'pass' : 'miss');
  const none = bestProduce.get('none');
  if (none !== undefined) {
    const ratio = none.value / targets.produceNoneMessagesPerSecond;
    row(
      'target: produce 100 B none ÷ 1M msg/s',
      ratio,
      'ratio',
      `${verdict(ratio)}; best of 1 and 4 producers, ${none.detail}`,
    );
  }
  const always = bestProduce.get('always');
  if (always !== undefined) {
    const ratio = always.value / targets.produceAlwaysMessagesPerSecond;
    row(
      'target: produce 100 B always ÷ 500k msg/s',
      ratio,
      'ratio',
      `${verdict(ratio)}; best of 1 and 4 producers, ${always.detail}`,
    );
  }
  if (bestConsume.value > 0) {
    const ratio = bestConsume.value / targets.consumeMessagesPerSecond;
    row(
      'target: consume 100 B ÷ 2M msg/s',
      ratio,
      'ratio',
      `${verdict(ratio)}; best case, ${bestConsume.detail}`,
    );
  }
  if (latencyAtTarget !== undefined) {
    const ratio = targets.latencyP99Us / latencyAtTarget.p99Us;
    row(
      'target: 2 ms ÷ p99 at 5k msg/s interval',
      ratio,
      'ratio',
      `${verdict(ratio)}; p99 ${latencyAtTarget.p99Us} µs`,
    );
  }
  return rows;
}

export const suite: BenchSuite = { name: suiteName, run };
