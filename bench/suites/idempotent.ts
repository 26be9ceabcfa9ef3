/**
 * The idempotent producer's cost: plain produce and idempotent produce (`idempotent: true`: a
 * producer id, per-partition sequences in every batch header, the broker's sequence check and
 * bookkeeping per batch) side by side in the same run, against one broker CHILD process (broker.ts's
 * BrokerChild) over WebSocket on 127.0.0.1.
 *
 * Case: 100 B values, keyless, one producer client, 8 partitions, durability `none` and `interval`,
 * lingerMs 1, batchBytes 256 KiB (the broker suite's options; idempotent producers keep their
 * default of 5 batches in flight per partition, the most they may), at most 8 MiB of values
 * unacknowledged. 1M messages per run (quick: 50k; one untimed message first, so that registering
 * the producer id and the first write to a topic are not in the rate), time cap 10 s; plain and idempotent runs
 * alternate, 3 of each (quick: 1), each on a fresh topic, after one unreported warm-up of each.
 * Rows: the medians (msg/s) and the overhead, 1 − idempotent ÷ plain (target: ≤ 10 %). On a shared
 * machine wall-clock rates are noisy, so the CPU time per message is reported too (this process's
 * process.cpuUsage() plus the broker child's utime + stime from /proc/<pid>/stat, Linux), with its
 * own overhead row: it moves much less with the load of other processes.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ProducerOptions, type SendResult, Spillway } from '../../src/client/index.js';
import type { Durability } from '../../src/protocol/types.js';
import { payloadPool } from '../peers/payload.js';
import { type BenchContext, type BenchRow, type BenchSuite, median } from '../report.js';
import { BrokerChild } from './broker.js';

const suiteName = 'idempotent';
const valueBytes = 100;
const partitions = 8;
const windowMessages = Math.floor((8 * 1024 * 1024) / valueBytes);
const baseOptions: ProducerOptions = { lingerMs: 1, batchBytes: 256 * 1024 };
const overheadTarget = 0.1;

/** Clock ticks per second of /proc/<pid>/stat times. */
function clockTicksPerSecond(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
}

/** CPU microseconds used so far by this process plus the process `pid` (null where /proc is not). */
function cpuMicros(pid: number, ticksPerSecond: number): number | null {
  const own = process.cpuUsage();
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return own.user + own.system + (ticks * 1e6) / ticksPerSecond;
  } catch {
    return null;
  }
}

/** Sends `count` values with at most `windowMessages` unacknowledged; returns [acked, elapsed ms]. */
async function produceRun(
  sw: Spillway,
  topic: string,
  options: ProducerOptions,
  count: number,
  capMs: number,
): Promise<[number, number]> {
  const pool = payloadPool(valueBytes);
  const producer = sw.producer(options);
  const ring = new Array<Promise<SendResult> | undefined>(windowMessages);
  // Steady state: the producer's registration (idempotent) and the topic's first write are done
  // once per producer and topic, not per message; one message each, untimed, takes them out.
  await producer.send(topic, { value: pool[0]! });
  const started = performance.now();
  const deadline = started + capMs;
  let sent = 0;
  try {
    while (sent < count && (sent % 1024 !== 0 || performance.now() < deadline)) {
      const slot = sent % windowMessages;
      const oldest = ring[slot];
      if (oldest !== undefined) await oldest;
      ring[slot] = producer.send(topic, { value: pool[sent % pool.length]! });
      sent++;
    }
    await Promise.all(ring.filter((promise) => promise !== undefined));
  } finally {
    await producer.close();
  }
  return [sent, performance.now() - started];
}

async function run(context: BenchContext): Promise<BenchRow[]> {
  const runs = context.quick ? 1 : 3;
  const count = context.quick ? 50_000 : 1_000_000;
  const capMs = 10_000;
  const rows: BenchRow[] = [];
  const ticksPerSecond = clockTicksPerSecond();
  const broker = await BrokerChild.start(context.scratchDir, context.log);
  try {
    const sw = await Spillway.connect(broker.url, { clientId: 'bench-idempotent' });
    try {
      let topicNumber = 0;
      /** One run: [msg/s, CPU µs per message (client + broker), or NaN without /proc]. */
      const once = async (durability: Durability, idempotent: boolean): Promise<[number, number]> => {
        const topic = `idem-${topicNumber++}`;
        await sw.admin.createTopic(topic, { partitions, durability });
        try {
          const options = idempotent ? { ...baseOptions, idempotent: true } : baseOptions;
          const cpuBefore = cpuMicros(broker.pid, ticksPerSecond);
          const [acked, elapsedMs] = await produceRun(sw, topic, options, count, capMs);
          const cpuAfter = cpuMicros(broker.pid, ticksPerSecond);
          const cpu = cpuBefore === null || cpuAfter === null ? Number.NaN : (cpuAfter - cpuBefore) / acked;
          return [acked / (elapsedMs / 1000), cpu];
        } finally {
          await sw.admin.deleteTopic(topic);
          await sleep(0);
        }
      };
      await once('none', false);
      await once('none', true);
      for (const durability of ['none', 'interval'] as const) {
        const plain: number[] = [];
        const idempotent: number[] = [];
        const plainCpu: number[] = [];
        const idempotentCpu: number[] = [];
        for (let i = 0; i < runs; i++) {
          const [plainRun, plainRunCpu] = await once(durability, false);
          const [idempotentRun, idempotentRunCpu] = await once(durability, true);
          plain.push(plainRun);
          idempotent.push(idempotentRun);
          plainCpu.push(plainRunCpu);
          idempotentCpu.push(idempotentRunCpu);
          context.log(
            `${durability} run ${i + 1}: plain ${Math.round(plainRun)}, idempotent ${Math.round(idempotentRun)} msg/s; CPU ${plainRunCpu.toFixed(2)} / ${idempotentRunCpu.toFixed(2)} µs/msg`,
          );
        }
        const plainRate = median(plain);
        const idempotentRate = median(idempotent);
        const spread = (rates: number[]): string =>
          rates.map((rate) => Math.round(rate).toLocaleString('en-US')).join(', ');
        const label = `100 B, ${durability}, 1 producer`;
        rows.push({
          suite: suiteName,
          name: `plain produce ${label}`,
          value: plainRate,
          unit: 'msg/s',
          detail: `median of ${runs} (${spread(plain)}), alternated with the idempotent runs`,
        });
        rows.push({
          suite: suiteName,
          name: `idempotent produce ${label}`,
          value: idempotentRate,
          unit: 'msg/s',
          detail: `median of ${runs} (${spread(idempotent)})`,
        });
        const overhead = 1 - idempotentRate / plainRate;
        rows.push({
          suite: suiteName,
          name: `idempotent overhead ${label}`,
          value: overhead * 100,
          unit: '%',
          detail: `1 − idempotent ÷ plain of the medians; target ≤ ${overheadTarget * 100} %: ${overhead <= overheadTarget ? 'pass' : 'miss'}`,
        });
        const cpuPlain = median(plainCpu);
        const cpuIdempotent = median(idempotentCpu);
        const cpuSpread = (values: number[]): string => values.map((value) => value.toFixed(2)).join(', ');
        rows.push({
          suite: suiteName,
          name: `CPU per message, plain ${label}`,
          value: cpuPlain,
          unit: 'µs/msg',
          detail: `client + broker process CPU time, median of ${runs} (${cpuSpread(plainCpu)})`,
        });
        rows.push({
          suite: suiteName,
          name: `CPU per message, idempotent ${label}`,
          value: cpuIdempotent,
          unit: 'µs/msg',
          detail: `client + broker process CPU time, median of ${runs} (${cpuSpread(idempotentCpu)})`,
        });
        rows.push({
          suite: suiteName,
          name: `idempotent CPU overhead ${label}`,
          value: (cpuIdempotent / cpuPlain - 1) * 100,
          unit: '%',
          detail: 'idempotent ÷ plain − 1 of the CPU medians (less sensitive to the machine load than msg/s)',
        });
      }
    } finally {
      await sw.close();
    }
  } finally {
    context.log(`broker child ${await broker.stop()}`);
  }
  return rows;
}

export const suite: BenchSuite = { name: suiteName, run };
