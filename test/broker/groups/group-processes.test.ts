/**
 * Consumer groups end to end with real processes: a broker (`spillway broker`) and members that are
 * processes of their own (group-member-child.ts), joining, leaving (SIGTERM: commit and leave) and
 * SIGKILLed while keyed messages flow; and the broker SIGKILLed with commits in flight.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { Spillway } from '../../../src/client/index.js';
import { BrokerProcess, ensureBuilt as ensureCliBuilt, killBrokers } from '../../cli/cli-process.js';
import { ensureBuilt, repositoryRoot } from '../../kill-runner.js';

const childScript = join(repositoryRoot, 'dist/test/broker/groups/group-member-child.js');
const childSource = join(repositoryRoot, 'test/broker/groups/group-member-child.ts');
const messageCount = 100_000;
const keyCount = 500;

interface Line {
  k: string;
  v: number;
  p: number;
  o: number;
}

class Member {
  readonly lines: Line[] = [];
  readonly child: ChildProcess;
  readonly ready: Promise<void>;
  readonly exited: Promise<void>;
  private pending = '';
  stderr = '';

  constructor(
    url: string,
    group: string,
    topic: string,
    mode: string,
    readonly name: string,
  ) {
    this.child = spawn(process.execPath, [childScript, url, group, topic, mode, name], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    members.add(this);
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    this.ready = new Promise((resolve, reject) => {
      this.child.once('exit', (code, signal) =>
        reject(new Error(`${name} exited (${code}, ${signal}): ${this.stderr}`)),
      );
      this.child.stdout!.setEncoding('utf8');
      this.child.stdout!.on('data', (chunk: string) => {
        const lines = (this.pending + chunk).split('\n');
        this.pending = lines.pop()!;
        for (const text of lines) {
          const parsed = JSON.parse(text) as Line | { ready: true };
          if ('ready' in parsed) resolve();
          else this.lines.push(parsed);
        }
      });
    });
    this.ready.catch(() => undefined);
  }

  kill(signal: NodeJS.Signals): void {
    if (this.child.exitCode === null && this.child.signalCode === null) process.kill(this.child.pid!, signal);
  }
}

const members = new Set<Member>();
let directory = '';

beforeAll(() => {
  ensureCliBuilt();
  ensureBuilt(childScript, childSource);
  directory = mkdtempSync(join(tmpdir(), 'spillway-groups-'));
}, 120_000);
afterEach(() => {
  for (const member of members) member.kill('SIGKILL');
  members.clear();
  killBrokers();
});
afterAll(() => rmSync(directory, { recursive: true, force: true }));

async function waitUntil(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function produce(sw: Spillway, topic: string, from: number, to: number): Promise<void> {
  const producer = sw.producer();
  const sends: Array<Promise<unknown>> = [];
  for (let i = from; i < to; i++)
    sends.push(producer.send(topic, { key: `k${i % keyCount}`, value: String(i) }));
  await Promise.all(sends);
  await producer.close();
}

describe('consumer groups with real processes', () => {
  test(`group mode: 4 members join, one leaves, one is SIGKILLed while ${messageCount} keyed messages flow`, async () => {
    const broker = await BrokerProcess.start([
      '--data-dir',
      join(directory, 'group'),
      '--durability',
      'always',
    ]);
    const sw = await Spillway.connect(broker.url);
    await sw.admin.createTopic('orders', { partitions: 8 });
    const quarter = messageCount / 4;
    const a = new Member(broker.url, 'g', 'orders', 'group', 'a');
    const b = new Member(broker.url, 'g', 'orders', 'group', 'b');
    await Promise.all([a.ready, b.ready]);
    const all0 = [a, b];
    await produce(sw, 'orders', 0, quarter);
    const c = new Member(broker.url, 'g', 'orders', 'group', 'c');
    const d = new Member(broker.url, 'g', 'orders', 'group', 'd');
    await Promise.all([c.ready, d.ready]);
    await produce(sw, 'orders', quarter, 2 * quarter);
    await waitUntil(() => b.lines.length > 0, 10_000, 'b to process something').catch(async (error) => {
      console.log(
        JSON.stringify(await sw.admin.describeGroup('g')),
        all0.map((m) => `${m.name}: ${m.lines.length} ${m.stderr}`),
      );
      throw error;
    });
    b.kill('SIGKILL');
    await produce(sw, 'orders', 2 * quarter, 3 * quarter);
    c.kill('SIGTERM');
    await c.exited;
    await produce(sw, 'orders', 3 * quarter, messageCount);
    const all = [a, b, c, d];
    const seen = new Set<number>();
    await waitUntil(
      () => {
        for (const member of all) for (const line of member.lines) seen.add(line.v);
        return seen.size === messageCount;
      },
      20_000,
      'every message to be processed',
    );
    // At least once: every message processed.
    expect(seen.size).toBe(messageCount);
    // Duplicates only from b's unfinished work: every message processed twice was b's.
    const processedBy = new Map<number, string[]>();
    for (const member of all) {
      for (const line of member.lines) {
        const who = processedBy.get(line.v);
        if (who === undefined) processedBy.set(line.v, [member.name]);
        else who.push(member.name);
      }
    }
    const duplicates = [...processedBy.entries()].filter(([, who]) => who.length > 1);
    console.log(
      `group mode: ${messageCount} messages, processed ${all.map((m) => `${m.name}=${m.lines.length}`).join(' ')}, ${duplicates.length} duplicates (all from the SIGKILLed member's uncommitted work)`,
    );
    for (const [, who] of duplicates) {
      expect(who).toHaveLength(2);
      expect(who).toContain('b');
    }
    // Per-key order: within each member, each key's values increase; and one key stays on one partition.
    for (const member of all) {
      const last = new Map<string, number>();
      for (const line of member.lines) {
        expect(line.v, `${member.name} key ${line.k}`).toBeGreaterThan(last.get(line.k) ?? -1);
        last.set(line.k, line.v);
      }
    }
    const group = await sw.admin.describeGroup('g');
    expect(group.members.map((m) => m.memberId.split('-')[0]).sort()).toEqual(['a', 'd']);
    // a and d leave gracefully: they commit everything first, so the group has no lag.
    a.kill('SIGTERM');
    d.kill('SIGTERM');
    await Promise.all([a.exited, d.exited]);
    const after = await sw.admin.describeGroup('g');
    expect(after.lag).toBe(0);
    await sw.close();
    await broker.stop();
  }, 60_000);

  test('broadcast: every member gets every message, and resumes from its own position', async () => {
    const broker = await BrokerProcess.start([
      '--data-dir',
      join(directory, 'broadcast'),
      '--durability',
      'always',
    ]);
    const sw = await Spillway.connect(broker.url);
    await sw.admin.createTopic('news', { partitions: 4 });
    const names = ['m1', 'm2', 'm3', 'm4'];
    const first = names.map((name) => new Member(broker.url, 'b', 'news', 'broadcast', name));
    await Promise.all(first.map((member) => member.ready));
    const count = 20_000;
    await produce(sw, 'news', 0, count / 2);
    first[3]!.kill('SIGTERM');
    await first[3]!.exited;
    await produce(sw, 'news', count / 2, count);
    const again = new Member(broker.url, 'b', 'news', 'broadcast', 'm4');
    const everyone = [...first.slice(0, 3), first[3]!, again];
    await waitUntil(
      () =>
        first.slice(0, 3).every((m) => m.lines.length >= count) &&
        first[3]!.lines.length + again.lines.length >= count,
      20_000,
      'every member to get every message',
    );
    for (const member of first.slice(0, 3)) expect(new Set(member.lines.map((l) => l.v)).size).toBe(count);
    const m4 = [...first[3]!.lines, ...again.lines].map((l) => l.v);
    expect(new Set(m4).size).toBe(count);
    expect(m4.length).toBe(count); // m4 left gracefully: resumed exactly where it stopped
    for (const member of everyone) member.kill('SIGTERM');
    await Promise.all(everyone.map((m) => m.exited));
    const description = await sw.admin.describeGroup('b');
    expect(new Set(description.partitions.map((row) => row.member))).toEqual(new Set(names));
    expect(description.lag).toBe(0);
    await sw.close();
    await broker.stop();
  }, 60_000);
});

describe('the broker SIGKILLed with commits in flight (durability always)', () => {
  test('every commit the broker acknowledged is there after the restart; nothing is lost', async () => {
    const dataDir = join(directory, 'crash');
    let broker = await BrokerProcess.start(['--data-dir', dataDir, '--durability', 'always']);
    const port = broker.port;
    const producerClient = await Spillway.connect(broker.url);
    await producerClient.admin.createTopic('t', { partitions: 4 });
    const count = 40_000;
    await produce(producerClient, 't', 0, count);
    await producerClient.close();
    const sw = await Spillway.connect(broker.url, { requestTimeoutMs: 1000, reconnectBackoffMaxMs: 200 });
    const consumer = sw.consumer({
      group: 'g',
      topics: ['t'],
      from: 'earliest',
      commitIntervalMs: 1,
      requestTimeoutMs: 1000,
    });
    const acknowledged = new Map<number, number>();
    const processed = new Set<number>();
    let taken = 0;
    for await (const message of consumer) {
      processed.add(Number(message.value!.toString()));
      await message.ack();
      // Some work that lets I/O run now and then (commit answers come back), as a real handler does.
      if (taken % 50 === 0) await new Promise((resolve) => setImmediate(resolve));
      for (const row of consumer.assignment()) {
        acknowledged.set(row.partition, Math.max(acknowledged.get(row.partition) ?? -1, row.committed));
      }
      if (++taken === count / 2) {
        await broker.stop('SIGKILL'); // commits are in flight (commitIntervalMs 1)
        break;
      }
    }
    await consumer.close();
    await sw.close();
    broker = await BrokerProcess.start(['--data-dir', dataDir, '--durability', 'always'], { port });
    const admin = await Spillway.connect(broker.url);
    const group = await admin.admin.describeGroup('g');
    let committedSum = 0;
    for (const [partition, offset] of acknowledged) {
      const row = group.partitions.find((p) => p.partition === partition)!;
      expect(row.committed ?? -1, `partition ${partition}`).toBeGreaterThanOrEqual(offset);
      committedSum += row.committed ?? 0;
    }
    console.log(
      `broker SIGKILL: ${taken} processed, ${[...acknowledged.values()].reduce((a, b) => a + Math.max(b, 0), 0)} offsets acknowledged as committed, ${committedSum} found after the restart`,
    );
    // Nothing lost: the group resumes from its commits and reaches every message.
    const resumed = admin.consumer({ group: 'g', topics: ['t'], from: 'latest' });
    for await (const message of resumed) {
      processed.add(Number(message.value!.toString()));
      await message.ack();
      if (processed.size === count) break;
    }
    expect(processed.size).toBe(count);
    expect([...acknowledged.values()].some((offset) => offset > 0)).toBe(true);
    await resumed.close(); // commits everything, leaves
    const before = (await admin.admin.describeGroup('g')).partitions.map((p) => p.committed);
    expect(before.reduce((sum, offset) => sum! + offset!, 0)).toBe(count);
    await admin.close();
    // SIGTERM: a clean shutdown keeps the commits and the generation too.
    const generation = await (async () => {
      const client = await Spillway.connect(broker.url);
      const described = await client.admin.describeGroup('g');
      await client.close();
      return described.generation;
    })();
    await broker.stop('SIGTERM');
    broker = await BrokerProcess.start(['--data-dir', dataDir, '--durability', 'always'], { port });
    const last = await Spillway.connect(broker.url);
    const after = await last.admin.describeGroup('g');
    expect(after.partitions.map((p) => p.committed)).toEqual(before);
    expect(after.generation).toBe(generation);
    await last.close();
    await broker.stop();
  }, 60_000);
});
