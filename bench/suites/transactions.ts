/**
 * Transactional messages (src/broker/transactions/): transactions committed per second, and the cost
 * of a message sent inside a transaction against a plain one.
 *
 * A broker in this process, topic `orders` with 4 partitions and durability `interval` (the
 * `__transactions` state log is `always`: BEGIN and the commit decision are each made durable, shared
 * by group commit; `__txn_half` follows the topic: `interval`). 4 in-process clients, 64 loops each
 * (256 transactions in flight), each loop: beginTransaction, `size` awaited-in-parallel txn.send of
 * 100 B, commit. Transactions/s = committed transactions / wall time.
 *
 * Overhead: the same 256 loops sending `size` = 10 messages per round as plain producer.send (each
 * awaited, lingerMs 0) against the transactional rounds of 10, alternated in the same run:
 * plain msg/s ÷ transactional msg/s. Target: >= 20 000 transactions/s of 1 message. Both the
 * in-process and the WebSocket rows run one untimed warm-up of up to 5,000 transactions first.
 *
 * Over WebSocket (rows "... over WebSocket"): a `spillway broker` child process (bench/suites/broker.ts
 * BrokerChild, its own core) and ONE client connection in this process with ONE transactional
 * producer keeping 1024 transactions in flight (1024 loops of begin, `size` sends issued together,
 * commit), topic `orders` 4 partitions `interval`; then plain rounds of 10 sends on the same
 * connection. CPU per transaction of the broker child (/proc/<pid>/stat, Linux) and of this process.
 */

import { mkdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { Spillway } from '../../src/client/index.js';
import { Broker } from '../../src/spillway-broker.js';
import { type BenchContext, type BenchRow, type BenchSuite, median } from '../report.js';
import { BrokerChild } from './broker.js';

const suiteName = 'transactions';
const value = 'v'.repeat(100);
const clientsCount = 4;
const loopsPerClient = 256;

interface Parameters {
  runs: number;
  /** Rounds (transactions, or plain rounds of `size` sends) per run. */
  rounds: number;
}
const fullParameters: Parameters = { runs: 3, rounds: 20_000 };
const quickParameters: Parameters = { runs: 1, rounds: 2_000 };

let directoryNumber = 0;

type Mode = 'transactional' | 'plain';

interface RunResult {
  /** Rounds per second of wall time. */
  rate: number;
  /** CPU time of this process (user + system) per round, µs: what the rate would cost on an idle core. */
  cpuMicrosPerRound: number;
}

/** Rounds of `size` messages each, transactional (committed) or plain sends. */
async function run(context: BenchContext, mode: Mode, size: number, rounds: number): Promise<RunResult> {
  const broker = await Broker.open({
    dataDir: path.join(context.scratchDir, `transactions-${directoryNumber++}`),
    durability: 'interval',
    segmentBytes: 256 * 1024 * 1024,
  });
  broker.transactions.onLog = () => undefined;
  try {
    await broker.topics.create('orders', { partitions: 4, durability: 'interval' });
    const clients = await Promise.all(Array.from({ length: clientsCount }, () => Spillway.connect(broker)));
    let started = 0;
    const startedAt = performance.now();
    const cpuBefore = process.cpuUsage();
    const loop = async (client: Spillway): Promise<void> => {
      if (mode === 'plain') {
        const producer = client.producer({ lingerMs: 0 });
        while (started++ < rounds) {
          const sends = [];
          for (let i = 0; i < size; i++) sends.push(producer.send('orders', { value }));
          await Promise.all(sends);
        }
        return;
      }
      const producer = client.producer({ group: 'bench', checkTransaction: () => 'rollback' });
      while (started++ < rounds) {
        const txn = await producer.beginTransaction();
        const sends = [];
        for (let i = 0; i < size; i++) sends.push(txn.send('orders', { value }));
        await Promise.all(sends);
        await txn.commit();
      }
    };
    await Promise.all(
      clients.flatMap((client) => Array.from({ length: loopsPerClient }, () => loop(client))),
    );
    const seconds = (performance.now() - startedAt) / 1000;
    const cpu = process.cpuUsage(cpuBefore);
    await Promise.all(clients.map((client) => client.close()));
    return { rate: rounds / seconds, cpuMicrosPerRound: (cpu.user + cpu.system) / rounds };
  } finally {
    await broker.close();
  }
}

const socketLoops = 1024;

/** CPU time (user + system) of process `pid` so far, µs; NaN where /proc is missing. */
function processCpuMicros(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10_000; // clock ticks of 10 ms (USER_HZ 100)
  } catch {
    return Number.NaN;
  }
}

interface SocketResult extends RunResult {
  brokerCpuMicrosPerRound: number;
}

/** Rounds over one WebSocket connection to a broker child: see the header. */
async function runSocket(
  client: Spillway,
  brokerPid: number,
  mode: Mode,
  size: number,
  rounds: number,
): Promise<SocketResult> {
  let started = 0;
  const startedAt = performance.now();
  const cpuBefore = process.cpuUsage();
  const brokerBefore = processCpuMicros(brokerPid);
  if (mode === 'plain') {
    const producer = client.producer({ lingerMs: 0 });
    const loop = async (): Promise<void> => {
      while (started++ < rounds) {
        const sends = [];
        for (let i = 0; i < size; i++) sends.push(producer.send('orders', { value }));
        await Promise.all(sends);
      }
    };
    await Promise.all(Array.from({ length: socketLoops }, loop));
  } else {
    const producer = client.producer({ group: 'bench', checkTransaction: () => 'rollback' });
    const loop = async (): Promise<void> => {
      while (started++ < rounds) {
        const txn = await producer.beginTransaction();
        const sends = [];
        for (let i = 0; i < size; i++) sends.push(txn.send('orders', { value }));
        await Promise.all(sends);
        await txn.commit();
      }
    };
    await Promise.all(Array.from({ length: socketLoops }, loop));
  }
  const seconds = (performance.now() - startedAt) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  return {
    rate: rounds / seconds,
    cpuMicrosPerRound: (cpu.user + cpu.system) / rounds,
    brokerCpuMicrosPerRound: (processCpuMicros(brokerPid) - brokerBefore) / rounds,
  };
}

/** The WebSocket rows: one broker child for all runs, a fresh topic per run. */
async function socketRows(context: BenchContext, parameters: Parameters): Promise<BenchRow[]> {
  const scratch = path.join(context.scratchDir, 'transactions-ws');
  mkdirSync(scratch, { recursive: true });
  const broker = await BrokerChild.start(scratch, context.log);
  const results = { t1: [] as SocketResult[], t10: [] as SocketResult[], p10: [] as SocketResult[] };
  try {
    const client = await Spillway.connect(broker.url);
    try {
      // Warm-up (JIT, segment files), not reported.
      await client.admin.createTopic('orders', { partitions: 4, durability: 'interval' });
      await runSocket(client, broker.pid, 'transactional', 1, Math.min(parameters.rounds, 5_000));
      for (let i = 0; i < parameters.runs; i++) {
        await yieldToEventLoop();
        await client.admin.deleteTopic('orders');
        await client.admin.createTopic('orders', { partitions: 4, durability: 'interval' });
        results.t1.push(await runSocket(client, broker.pid, 'transactional', 1, parameters.rounds * 2));
        results.t10.push(
          await runSocket(client, broker.pid, 'transactional', 10, Math.ceil(parameters.rounds / 2)),
        );
        results.p10.push(await runSocket(client, broker.pid, 'plain', 10, Math.ceil(parameters.rounds / 2)));
        context.log(
          `transactions over WebSocket: ${Math.round(results.t1.at(-1)!.rate)} tx/s of 1, ${Math.round(results.t10.at(-1)!.rate)} tx/s of 10, plain rounds of 10 ${Math.round(results.p10.at(-1)!.rate)}/s`,
        );
      }
    } finally {
      await client.close();
    }
  } finally {
    await broker.stop();
  }
  const rates = (list: SocketResult[]) => list.map((result) => result.rate);
  const list = (values: number[]) => values.map((x) => Math.round(x)).join('/');
  const detail = `broker child, 1 connection, 1 transactional producer, ${socketLoops} transactions in flight, interval topic, 4 partitions, 100 B values`;
  const brokerCpu = (key: 't1' | 't10' | 'p10') =>
    median(results[key].map((result) => result.brokerCpuMicrosPerRound));
  const clientCpu = (key: 't1' | 't10' | 'p10') =>
    median(results[key].map((result) => result.cpuMicrosPerRound));
  const ratio = median(rates(results.p10)) / median(rates(results.t10));
  return [
    {
      suite: suiteName,
      name: 'transactions of 1 message committed over WebSocket',
      value: Math.round(median(rates(results.t1))),
      unit: 'tx/s',
      detail: `${detail}; runs ${list(rates(results.t1))}; target >= 20000`,
    },
    {
      suite: suiteName,
      name: 'broker CPU per transaction of 1 message over WebSocket',
      value: Math.round(brokerCpu('t1')),
      unit: 'µs',
      detail: `client ${Math.round(clientCpu('t1'))} µs; 10 messages: broker ${Math.round(brokerCpu('t10'))} µs, client ${Math.round(clientCpu('t10'))} µs; plain round of 10: broker ${Math.round(brokerCpu('p10'))} µs, client ${Math.round(clientCpu('p10'))} µs`,
    },
    {
      suite: suiteName,
      name: 'transactions of 10 messages committed over WebSocket',
      value: Math.round(median(rates(results.t10))),
      unit: 'tx/s',
      detail: `${detail}; runs ${list(rates(results.t10))}`,
    },
    {
      suite: suiteName,
      name: 'plain vs transactional message rate over WebSocket (rounds of 10 sends)',
      value: Number(ratio.toFixed(2)),
      unit: 'x',
      detail: `plain ${Math.round(median(rates(results.p10)) * 10)} msg/s vs transactional ${Math.round(median(rates(results.t10)) * 10)} msg/s (medians); plain runs ${list(rates(results.p10))}`,
    },
  ];
}

export const suite: BenchSuite = {
  name: suiteName,
  async run(context: BenchContext): Promise<BenchRow[]> {
    const parameters = context.quick ? quickParameters : fullParameters;
    const rows: BenchRow[] = [];
    const rates = { t1: [] as number[], t10: [] as number[], p10: [] as number[] };
    const cpu = { t1: [] as number[], t10: [] as number[], p10: [] as number[] };
    const record = (key: 't1' | 't10' | 'p10', result: RunResult): void => {
      rates[key].push(result.rate);
      cpu[key].push(result.cpuMicrosPerRound);
    };
    // Warm-up (JIT), not reported, as the WebSocket rows do: the first timed run was the cold one.
    await run(context, 'transactional', 1, Math.min(parameters.rounds, 5_000));
    for (let i = 0; i < parameters.runs; i++) {
      await yieldToEventLoop();
      record('t1', await run(context, 'transactional', 1, parameters.rounds));
      record('t10', await run(context, 'transactional', 10, Math.ceil(parameters.rounds / 4)));
      record('p10', await run(context, 'plain', 10, Math.ceil(parameters.rounds / 4)));
      context.log(
        `transactions: ${Math.round(rates.t1.at(-1)!)} tx/s of 1, ${Math.round(rates.t10.at(-1)!)} tx/s of 10, plain rounds of 10 ${Math.round(rates.p10.at(-1)!)}/s`,
      );
    }
    const list = (values: number[]) => values.map((rate) => Math.round(rate)).join('/');
    const detail = `interval topic, 4 partitions, 100 B values, ${clientsCount * loopsPerClient} loops over ${clientsCount} in-process clients`;
    rows.push({
      suite: suiteName,
      name: 'transactions of 1 message committed',
      value: Math.round(median(rates.t1)),
      unit: 'tx/s',
      detail: `${detail}; runs ${list(rates.t1)}; target >= 20000`,
    });
    rows.push({
      suite: suiteName,
      name: 'CPU per transaction of 1 message (broker and clients, one process)',
      value: Math.round(median(cpu.t1)),
      unit: 'µs',
      detail: `runs ${list(cpu.t1)}; 1e6 / this = transactions/s one idle core would carry; 10 messages: ${Math.round(median(cpu.t10))} µs; plain round of 10: ${Math.round(median(cpu.p10))} µs`,
    });
    rows.push({
      suite: suiteName,
      name: 'transactions of 10 messages committed',
      value: Math.round(median(rates.t10)),
      unit: 'tx/s',
      detail: `${detail}; runs ${list(rates.t10)}`,
    });
    const ratio = median(rates.p10) / median(rates.t10);
    rows.push({
      suite: suiteName,
      name: 'plain vs transactional message rate (rounds of 10 sends)',
      value: Number(ratio.toFixed(2)),
      unit: 'x',
      detail: `plain ${Math.round(median(rates.p10) * 10)} msg/s vs transactional ${Math.round(median(rates.t10) * 10)} msg/s (medians); plain runs ${list(rates.p10)}`,
    });
    rows.push(...(await socketRows(context, parameters)));
    return rows;
  },
};
