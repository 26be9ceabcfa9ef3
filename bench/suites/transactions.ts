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
 * plain msg/s ÷ transactional msg/s. Target: >= 20 000 transactions/s of 1 message.
 */
import * as path from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { Spillway } from '../../src/client/index.js';
import { Broker } from '../../src/spillway-broker.js';
import { type BenchContext, type BenchRow, type BenchSuite, median } from '../report.js';

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
    return rows;
  },
};
