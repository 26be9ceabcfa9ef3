/**
 * Consumer groups (group mode) against a broker in a CHILD process (`spillway broker`, stopped by PID).
 *
 * Cases:
 *  - consume with commits: N messages of 100 B (1M; quick 50k) in a topic of 8 partitions, read by one
 *    group member in this process that acks every message (the finished prefix is committed every
 *    100 ms, one COMMIT_OFFSETS frame for all partitions). msg/s from the first message to the last,
 *    and the commit frames it took. 3 runs (quick 1), median.
 *  - rebalance after a SIGKILL: 4 members, each a process of its own (bench/group-member-child.ts),
 *    on a topic of 8 partitions while this process produces 2,000 msg/s over every partition. One
 *    member is SIGKILLed; its connection closes, the broker removes it at once (no session timeout)
 *    and hands its partitions to the others, which start from the group's last commit. Measured: from
 *    the kill (wall clock, same machine) to the moment the last of its partitions is consumed by
 *    another member (its first message there). 3 runs (quick 1), median. Target < 500 ms.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Spillway } from '../../src/client/index.js';
import { findRepositoryRoot } from '../harness.js';
import { canConnect, freePort, ServerProcess } from '../peers/server-process.js';
import { type BenchContext, type BenchRow, type BenchSuite, median } from '../report.js';

const suiteName = 'groups';
const root = findRepositoryRoot();
const cli = path.join(root, 'dist', 'src', 'cli', 'main.js');
const memberScript = path.join(root, 'dist', 'bench', 'group-member-child.js');

async function startBroker(
  context: BenchContext,
  name: string,
): Promise<{ server: ServerProcess; url: string }> {
  const port = await freePort();
  const server = await ServerProcess.start({
    name: 'spillway broker',
    command: process.execPath,
    args: [cli, 'broker', '--data-dir', path.join(context.scratchDir, name), '--port', String(port)],
    logFile: path.join(context.scratchDir, `${name}.log`),
    ready: () => canConnect(port),
    startTimeoutMs: 15_000,
    stopTimeoutMs: 10_000,
  });
  return { server, url: `ws://127.0.0.1:${port}` };
}

async function consumeWithCommits(
  context: BenchContext,
  run: number,
  count: number,
): Promise<{ rate: number; commits: number }> {
  const { server, url } = await startBroker(context, `consume-${run}`);
  try {
    const sw = await Spillway.connect(url);
    await sw.admin.createTopic('t', { partitions: 8, segmentBytes: 64 * 1024 * 1024 });
    const producer = sw.producer({ lingerMs: 1 });
    const value = Buffer.alloc(100, 0x61);
    const window: Array<Promise<unknown>> = [];
    for (let i = 0; i < count; i++) {
      window.push(producer.send('t', { value }));
      if (window.length >= 20_000) await Promise.all(window.splice(0));
    }
    await Promise.all(window);
    await producer.close();
    const consumer = sw.consumer({ group: 'bench', topics: ['t'], from: 'earliest' });
    let taken = 0;
    let startedAt = 0;
    for await (const message of consumer) {
      if (taken === 0) startedAt = performance.now();
      await message.ack();
      if (++taken === count) break;
    }
    const seconds = (performance.now() - startedAt) / 1000;
    const commits = consumer.stats.commits;
    await sw.close();
    return { rate: count / seconds, commits };
  } finally {
    await server.stop();
  }
}

interface Member {
  child: ChildProcess;
  lines: string[];
  ready: Promise<void>;
}

function startMember(url: string): Member {
  const child = spawn(process.execPath, [memberScript, url, 'rebalance', 't'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: string[] = [];
  let pending = '';
  const ready = new Promise<void>((resolve, reject) => {
    child.once('exit', () => reject(new Error('a group member exited before it was ready')));
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      const parts = (pending + chunk).split('\n');
      pending = parts.pop()!;
      for (const line of parts) {
        if (line === 'ready') resolve();
        else lines.push(line);
      }
    });
  });
  ready.catch(() => undefined);
  return { child, lines, ready };
}

function stopMember(member: Member, signal: NodeJS.Signals): void {
  if (member.child.exitCode === null && member.child.signalCode === null)
    process.kill(member.child.pid!, signal);
}

async function rebalanceAfterKill(context: BenchContext, run: number): Promise<number> {
  const { server, url } = await startBroker(context, `rebalance-${run}`);
  const members: Member[] = [];
  try {
    const sw = await Spillway.connect(url);
    await sw.admin.createTopic('t', { partitions: 8 });
    for (let i = 0; i < 4; i++) {
      members.push(startMember(url));
      await members[i]!.ready;
    }
    const producer = sw.producer({ lingerMs: 0 });
    let producing = true;
    const production = (async () => {
      let i = 0;
      while (producing) {
        // 2,000 msg/s: one message to each partition every 4 ms.
        await Promise.all(
          Array.from({ length: 8 }, (_, partition) => producer.send('t', { partition, value: String(i++) })),
        );
        await sleep(4);
      }
    })();
    // Settle: every partition consumed by someone.
    const deadline = performance.now() + 15_000;
    while (members.reduce((sum, m) => sum + m.lines.length, 0) < 8 && performance.now() < deadline)
      await sleep(10);
    const group = await sw.admin.describeGroup('rebalance');
    const victimSession = group.members[0]!;
    const victimPartitions = victimSession.assigned.map((p) => p.partition);
    const victim = members.find(
      (m) =>
        m.child.pid !== undefined &&
        m.lines.some((line) => victimPartitions.includes(Number(line.split(' ')[0]))),
    );
    if (victim === undefined || victimPartitions.length === 0)
      throw new Error('could not find the member to kill');
    const others = members.filter((m) => m !== victim);
    const linesBefore = others.map((m) => m.lines.length);
    const killedAt = Date.now();
    stopMember(victim, 'SIGKILL');
    const takenAt = new Map<number, number>();
    const waitUntil = performance.now() + 10_000;
    while (takenAt.size < victimPartitions.length && performance.now() < waitUntil) {
      others.forEach((member, index) => {
        for (const line of member.lines.slice(linesBefore[index])) {
          const [partition, at] = line.split(' ').map(Number) as [number, number];
          if (victimPartitions.includes(partition) && at >= killedAt && !takenAt.has(partition)) {
            takenAt.set(partition, at);
          }
        }
      });
      await sleep(5);
    }
    producing = false;
    await production;
    await producer.close();
    await sw.close();
    if (takenAt.size < victimPartitions.length)
      throw new Error("the killed member's partitions were not taken over within 10 s");
    return Math.max(...takenAt.values()) - killedAt;
  } finally {
    for (const member of members) stopMember(member, 'SIGKILL');
    await server.stop();
  }
}

export const suite: BenchSuite = {
  name: suiteName,
  async run(context: BenchContext): Promise<BenchRow[]> {
    const runs = context.quick ? 1 : 3;
    const count = context.quick ? 50_000 : 1_000_000;
    const rows: BenchRow[] = [];
    const rates: number[] = [];
    const commits: number[] = [];
    for (let run = 0; run < runs; run++) {
      const result = await consumeWithCommits(context, run, count);
      rates.push(result.rate);
      commits.push(result.commits);
      context.log(
        `consume with commits run ${run + 1}: ${Math.round(result.rate)} msg/s, ${result.commits} commit frames`,
      );
    }
    rows.push({
      suite: suiteName,
      name: 'group mode consume, 1 member, ack every message, commits every 100 ms (100 B, 8 partitions)',
      value: Math.round(median(rates)),
      unit: 'msg/s',
      detail: `${count} messages, ${runs} run(s): ${rates.map((r) => Math.round(r)).join(', ')}; commit frames ${commits.join(', ')}`,
    });
    const rebalances: number[] = [];
    for (let run = 0; run < runs; run++) {
      const ms = await rebalanceAfterKill(context, run);
      rebalances.push(ms);
      context.log(`rebalance run ${run + 1}: ${ms} ms`);
    }
    const rebalance = median(rebalances);
    rows.push({
      suite: suiteName,
      name: 'rebalance: member SIGKILL -> its partitions consumed by the others (4 members, 8 partitions)',
      value: rebalance,
      unit: 'ms',
      detail: `${runs} run(s): ${rebalances.join(', ')} ms (no session timeout: the closed connection removes the member)`,
    });
    rows.push({
      suite: suiteName,
      name: 'target: rebalance < 500 ms (target / measured, >= 1 passes)',
      value: Math.round((500 / Math.max(rebalance, 1)) * 100) / 100,
      unit: 'ratio',
    });
    return rows;
  },
};
