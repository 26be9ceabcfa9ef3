/**
 * `spillway backlog drain` against a broker child process, with a large backlog: the drain process is
 * stopped with SIGINT (it commits what it copied, exit 130), run again and SIGKILLed in the middle,
 * then run a third time: every backlog message is in the target exactly once, with
 * its key, headers and timestamp, per-key order kept, and the group's committed offsets at the end.
 * The lag figures of `spillway group describe`, GET /v1/groups, GET /v1/groups/G and /metrics are
 * checked before (the backlog) and after (0).
 *
 * Size: SPILLWAY_DRAIN_TEST_MESSAGES (default 200,000, which fits the time on 2 busy cores; the
 * benchmark `--suite drain` drains 1M).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseDrainSource } from '../../src/client/backlog-drain.js';
import { Spillway } from '../../src/client/index.js';
import { partitionForKey } from '../../src/protocol/partitioner.js';
import { drainSourceHeader } from '../../src/protocol/reserved-headers.js';
import { BrokerProcess, cliPath, ensureBuilt, killBrokers, repositoryRoot, runCli } from './cli-process.js';

const count = Number(process.env['SPILLWAY_DRAIN_TEST_MESSAGES'] ?? 200_000);
const keyCount = 5_000;
const sourcePartitions = 4;
const targetPartitions = 12;
const consumedFirst = Math.floor(count / 10);
const baseTimestamp = 1_700_000_000_000;

let directory: string;
let broker: BrokerProcess;
let drainChild: ChildProcess | null = null;

beforeAll(async () => {
  ensureBuilt();
  directory = mkdtempSync(join(tmpdir(), 'spillway-cli-drain-'));
  broker = await BrokerProcess.start(['--data-dir', directory]);
}, 120_000);
afterAll(async () => {
  if (drainChild?.pid !== undefined && drainChild.exitCode === null && drainChild.signalCode === null)
    process.kill(drainChild.pid, 'SIGKILL');
  await broker?.stop();
  killBrokers();
  rmSync(directory, { recursive: true, force: true });
});

/** Message i: key k(i % keyCount) (every 10th unkeyed), value v<i>, header seq=i, timestamp base + i. */
const keyOf = (i: number): string | null => (i % 10 === 9 ? null : `k${i % keyCount}`);

async function lagFigures(
  sw: Spillway,
  group: string,
): Promise<{ cli: number; http: number; httpList: number; metrics: number }> {
  const http = `http://127.0.0.1:${broker.port}`;
  const cli = JSON.parse((await runCli(['group', 'describe', group, '--broker', broker.url])).stdout) as {
    lag: number;
    partitions: Array<{ lag: number }>;
  };
  expect(cli.partitions.reduce((sum, row) => sum + row.lag, 0)).toBe(cli.lag);
  const described = (await (await fetch(`${http}/v1/groups/${group}`)).json()) as { lag: number };
  const listed = (await (await fetch(`${http}/v1/groups`)).json()) as {
    groups: Array<{ group: string; lag: number }>;
  };
  const metrics = await (await fetch(`${http}/metrics`)).text();
  let metricsLag = 0;
  for (const match of metrics.matchAll(
    new RegExp(`^spillway_group_lag\\{group="${group}",topic="src",partition="\\d+"\\} (\\d+)$`, 'gm'),
  )) {
    metricsLag += Number(match[1]);
  }
  const sum = new RegExp(`^spillway_group_lag_sum\\{group="${group}",mode="group"\\} (\\d+)$`, 'm').exec(
    metrics,
  );
  expect(Number(sum?.[1])).toBe(metricsLag);
  expect((await sw.admin.describeGroup(group)).lag).toBe(cli.lag);
  return {
    cli: cli.lag,
    http: described.lag,
    httpList: listed.groups.find((row) => row.group === group)!.lag,
    metrics: metricsLag,
  };
}

it('refuses bad usage (exit 2) and a group with a live member (exit 1, GROUP_NOT_EMPTY)', async () => {
  const url = ['--broker', broker.url];
  expect((await runCli(['backlog', 'drain', 'x', '--into', 'y', '--partitions', '2', ...url])).code).toBe(2);
  expect((await runCli(['backlog', 'drain', 'x', '--group', 'g', '--partitions', '2', ...url])).code).toBe(2);
  expect((await runCli(['backlog', 'drain', 'x', '--group', 'g', '--into', 'y', ...url])).code).toBe(2);
  expect(
    (await runCli(['backlog', 'drain', 'x', '--group', 'g', '--into', 'y', '--partitions', '0', ...url]))
      .code,
  ).toBe(2);
  expect((await runCli(['backlog', 'move', 'x', ...url])).code).toBe(2);
  const sw = await Spillway.connect(broker.url);
  try {
    await sw.admin.createTopic('busy-src', { partitions: 2 });
    const member = sw.consumer({ group: 'busy', topics: ['busy-src'], from: 'earliest' });
    await member.ready();
    const refused = await runCli([
      'backlog',
      'drain',
      'busy-src',
      '--group',
      'busy',
      '--into',
      'busy-tmp',
      '--partitions',
      '4',
      ...url,
    ]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^spillway backlog: GROUP_NOT_EMPTY: group 'busy' has 1 live member/);
    expect((await sw.admin.listTopics()).some((topic) => topic.name === 'busy-tmp')).toBe(false);
    await member.close();
  } finally {
    await sw.close();
  }
});

it(`drains a backlog of ${count.toLocaleString('en-US')} messages, stopped with Ctrl-C, then SIGKILLed, then resumed: exactly once, per-key order, offsets at the end`, async () => {
  const sw = await Spillway.connect(broker.url);
  try {
    await sw.admin.createTopic('src', { partitions: sourcePartitions, durability: 'interval' });
    const producer = sw.producer({ lingerMs: 2 });
    let window: Array<Promise<unknown>> = [];
    for (let i = 0; i < count; i++) {
      window.push(
        producer.send('src', {
          key: keyOf(i),
          value: `v${i}`,
          headers: { seq: String(i) },
          timestamp: baseTimestamp + i,
        }),
      );
      if (window.length >= 20_000) {
        await Promise.all(window);
        window = [];
      }
    }
    await Promise.all(window);
    await producer.close();

    // The group worked off 10%, then stopped.
    const consumer = sw.consumer({ group: 'billing', topics: ['src'], from: 'earliest' });
    let taken = 0;
    for await (const message of consumer) {
      await message.ack();
      if (++taken === consumedFirst) break;
    }
    const backlog = count - consumedFirst;
    expect(await lagFigures(sw, 'billing')).toEqual({
      cli: backlog,
      http: backlog,
      httpList: backlog,
      metrics: backlog,
    });
    const sourceEnds = (await sw.admin.describeTopic('src')).partitions.map((p) => p.logEndOffset);
    const committedBefore = (await sw.admin.describeGroup('billing')).partitions.map((p) => p.committed ?? 0);

    // Runs of the drain command as a child process, stopped by `signal` once `fraction` of the
    // backlog is in the target.
    const args = [
      cliPath,
      'backlog',
      'drain',
      'src',
      '--group',
      'billing',
      '--into',
      'wide',
      '--partitions',
      String(targetPartitions),
      '--broker',
      broker.url,
    ];
    const stopAt = async (
      fraction: number,
      signal: NodeJS.Signals,
    ): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; inTarget: number }> => {
      const child = spawn(process.execPath, args, { cwd: repositoryRoot, stdio: ['ignore', 'pipe', 'pipe'] });
      drainChild = child;
      let stdout = '';
      child.stdout!.on('data', (chunk: Buffer) => {
        stdout += chunk.toString('utf8');
      });
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        child.once('close', (code, signal) => resolve({ code, signal })),
      );
      let inTarget = 0;
      const deadline = Date.now() + 120_000;
      for (;;) {
        expect(Date.now(), 'the drain made no progress').toBeLessThan(deadline);
        expect(child.exitCode, 'the drain ended before it was stopped').toBeNull();
        if ((await sw.admin.listTopics()).some((topic) => topic.name === 'wide')) {
          const wide = await sw.admin.describeTopic('wide');
          inTarget = wide.partitions.reduce((sum, p) => sum + p.logEndOffset, 0);
          if (inTarget >= backlog * fraction) break;
        }
        await sleep(10);
      }
      process.kill(child.pid!, signal);
      return { ...(await exited), stdout, inTarget };
    };
    const committedSum = async (): Promise<number> =>
      (await sw.admin.describeGroup('billing')).partitions.reduce((sum, p) => sum + (p.committed ?? 0), 0);

    // First run: Ctrl-C at 20%. It commits what it copied and says so.
    const interrupted = await stopAt(0.2, 'SIGINT');
    expect(interrupted.code).toBe(130);
    const first = JSON.parse(interrupted.stdout) as { copied: number; interrupted: boolean; skipped: number };
    expect(first).toMatchObject({ interrupted: true, skipped: 0 });
    expect(await committedSum()).toBe(consumedFirst + first.copied);
    const wideAfterInterrupt = await sw.admin.describeTopic('wide');
    expect(wideAfterInterrupt.partitions.reduce((sum, p) => sum + p.logEndOffset, 0)).toBe(first.copied);

    // Second run: SIGKILLed once about 50% of the backlog is in the target.
    const killed = await stopAt(0.5, 'SIGKILL');
    expect(killed).toMatchObject({ code: null, signal: 'SIGKILL' });
    const copiedAtKill = killed.inTarget;
    const committedAtKill = await committedSum();
    expect(committedAtKill - consumedFirst).toBeLessThan(backlog);

    // Third run: resumes, copies the rest.
    const last = await runCli(args.slice(1), { timeoutMs: 300_000 });
    expect(last.stderr).toBe('');
    expect(last.code).toBe(0);
    const summary = JSON.parse(last.stdout) as {
      total: number;
      copied: number;
      skipped: number;
      interrupted: boolean;
    };
    expect(summary.interrupted).toBe(false);
    expect(summary.total).toBe(count - committedAtKill);
    expect(summary.copied + summary.skipped).toBe(summary.total);
    console.log(
      `drain test: ${count} messages, backlog ${backlog}; Ctrl-C after ${first.copied} copied; killed with ${copiedAtKill} in the target and ${committedAtKill - consumedFirst} committed; the resume skipped ${summary.skipped} and copied ${summary.copied}`,
    );

    // The target: every backlog message once, content kept, per-key order.
    const wide = await sw.admin.describeTopic('wide');
    expect(wide.partitionCount).toBe(targetPartitions);
    expect(wide.config.durability).toBe('interval');
    const ends = wide.partitions.map((p) => p.logEndOffset);
    expect(ends.reduce((sum, end) => sum + end, 0)).toBe(backlog);
    const seen = sourceEnds.map((end) => new Uint8Array(end));
    const lastSeqOfKey = new Map<string, number>();
    let pending = ends.filter((end) => end > 0).length;
    let read = 0;
    const reader = sw.consumer({ topics: ['wide'], from: 'earliest', maxWaitMs: 50 });
    for await (const message of reader) {
      const source = parseDrainSource(message.headers[drainSourceHeader]?.toString() ?? '')!;
      expect(source.topic).toBe('src');
      expect(source.offset).toBeGreaterThanOrEqual(committedBefore[source.partition]!);
      expect(seen[source.partition]![source.offset], 'copied twice').toBe(0);
      seen[source.partition]![source.offset] = 1;
      const seq = Number(message.headers['seq']!.toString());
      if (message.value!.toString() !== `v${seq}`) expect(message.value!.toString()).toBe(`v${seq}`);
      if (message.timestamp !== baseTimestamp + seq) expect(message.timestamp).toBe(baseTimestamp + seq);
      const key = keyOf(seq);
      expect(message.key?.toString() ?? null).toBe(key);
      if (key !== null) {
        if (message.partition !== partitionForKey(key, targetPartitions))
          expect(message.partition).toBe(partitionForKey(key, targetPartitions));
        const last = lastSeqOfKey.get(key) ?? -1;
        if (seq <= last) expect(seq, `order of key ${key}`).toBeGreaterThan(last);
        lastSeqOfKey.set(key, seq);
      }
      read++;
      if (message.offset === ends[message.partition]! - 1 && --pending === 0) break;
    }
    await reader.close();
    expect(read).toBe(backlog);
    for (let partition = 0; partition < sourcePartitions; partition++) {
      const copied = seen[partition]!.reduce((sum, flag) => sum + flag, 0);
      expect(copied).toBe(sourceEnds[partition]! - committedBefore[partition]!);
    }

    // The group's offsets are at the end: no lag anywhere.
    const offsets = (await sw.admin.describeGroup('billing')).partitions.map((p) => p.committed);
    expect(offsets).toEqual(sourceEnds);
    expect(await lagFigures(sw, 'billing')).toEqual({ cli: 0, http: 0, httpList: 0, metrics: 0 });
  } finally {
    await sw.close();
  }
}, 300_000);
