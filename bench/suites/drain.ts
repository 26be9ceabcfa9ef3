/**
 * Backlog drain (client/backlog-drain.ts) against a broker in a CHILD process (`spillway broker`,
 * stopped by PID), the drain in this process over WebSocket (what `spillway backlog drain` does).
 *
 * Case: a backlog of N messages of 100 B (1M; quick 50k), keyed over 10,000 keys (every 10th
 * unkeyed), in a topic of 4 partitions, durability interval; group G has committed nothing. The
 * drain copies it into a new topic of 16 partitions (same durability) and commits G's offsets.
 * msg/s = messages copied / the drain's wall time (from the call to its return: group check, target
 * creation, end offsets, the copy, the final commit and check). 3 runs (quick 1), each on a fresh
 * broker, median.
 */
import * as path from 'node:path';
import { drainBacklog } from '../../src/client/backlog-drain.js';
import { Spillway } from '../../src/client/index.js';
import { findRepositoryRoot } from '../harness.js';
import { canConnect, freePort, ServerProcess } from '../peers/server-process.js';
import { type BenchContext, type BenchRow, type BenchSuite, median } from '../report.js';

const suiteName = 'drain';
const root = findRepositoryRoot();
const cli = path.join(root, 'dist', 'src', 'cli', 'main.js');

async function drainOnce(context: BenchContext, run: number, count: number): Promise<number> {
  const port = await freePort();
  const name = `drain-${run}`;
  const server = await ServerProcess.start({
    name: 'spillway broker',
    command: process.execPath,
    args: [cli, 'broker', '--data-dir', path.join(context.scratchDir, name), '--port', String(port)],
    logFile: path.join(context.scratchDir, `${name}.log`),
    ready: () => canConnect(port),
    startTimeoutMs: 15_000,
    stopTimeoutMs: 10_000,
  });
  try {
    const sw = await Spillway.connect(`ws://127.0.0.1:${port}`);
    await sw.admin.createTopic('src', { partitions: 4, durability: 'interval' });
    const producer = sw.producer({ lingerMs: 1 });
    const value = Buffer.alloc(100, 0x61);
    let window: Array<Promise<unknown>> = [];
    for (let i = 0; i < count; i++) {
      window.push(producer.send('src', { key: i % 10 === 9 ? null : `key-${i % 10_000}`, value }));
      if (window.length >= 20_000) {
        await Promise.all(window);
        window = [];
      }
    }
    await Promise.all(window);
    await producer.close();
    const result = await drainBacklog(sw, { source: 'src', group: 'g', into: 'wide', partitions: 16 });
    await sw.close();
    if (result.copied !== count || result.interrupted)
      throw new Error(`the drain copied ${result.copied} of ${count}`);
    return count / (result.durationMs / 1000);
  } finally {
    await server.stop();
  }
}

export const suite: BenchSuite = {
  name: suiteName,
  async run(context: BenchContext): Promise<BenchRow[]> {
    const count = context.quick ? 50_000 : 1_000_000;
    const runs = context.quick ? 1 : 3;
    const rates: number[] = [];
    for (let run = 0; run < runs; run++) {
      rates.push(await drainOnce(context, run, count));
      context.log(`drain run ${run + 1}/${runs}: ${Math.round(rates.at(-1)!)} msg/s`);
    }
    return [
      {
        suite: suiteName,
        name: `backlog drain, ${count.toLocaleString('en-US')} msg of 100 B, 4 -> 16 partitions, over WebSocket`,
        value: median(rates),
        unit: 'msg/s',
        detail: `runs: ${rates.map((rate) => Math.round(rate)).join(', ')} msg/s`,
      },
    ];
  },
};
