/**
 * Queues end to end with real processes: a broker process (`spillway broker`), consumer processes
 * (queue-consumer-child.ts), SIGKILL of a consumer and of the broker.
 *  - key_shared, 4 consumers, one SIGKILLed mid-stream: every message is processed at least once,
 *    per key the members' runs never overlap (one member at a time, in order), each member sees a
 *    key's offsets in increasing order, and duplicates come only from the killed member's unacked work
 *    (counted and printed).
 *  - The broker SIGKILLed with acks in flight, durability `always`: after the restart nothing whose ack
 *    was confirmed is delivered again, and every message not confirmed is delivered (nothing lost).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { Spillway } from '../../../src/client/index.js';
import type { ConsumedMessage } from '../../../src/client/message.js';
import { BrokerProcess, ensureBuilt, repositoryRoot } from '../../cli/cli-process.js';

const childScript = join(repositoryRoot, 'dist', 'test', 'broker', 'queues', 'queue-consumer-child.js');
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Line {
  t: 'ready' | 'p' | 'a';
  p: number;
  o: number;
  k?: string | null;
  n?: number;
}

class ConsumerProcess {
  readonly lines: Line[] = [];
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  private readyResolve: (() => void) | null = null;
  readonly ready: Promise<void>;

  constructor(
    readonly name: string,
    url: string,
    group: string,
    topic: string,
    mode: string,
    extra: string[] = [],
  ) {
    this.ready = new Promise((resolve) => {
      this.readyResolve = resolve;
    });
    this.child = spawn(process.execPath, [childScript, url, group, topic, mode, ...extra], {
      cwd: repositoryRoot,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    createInterface({ input: this.child.stdout! }).on('line', (text) => {
      const line = JSON.parse(text) as Line;
      if (line.t === 'ready') this.readyResolve?.();
      else this.lines.push(line);
    });
    cleanups.push(async () => {
      if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
      await this.exited;
    });
  }

  get processed(): Line[] {
    return this.lines.filter((line) => line.t === 'p');
  }

  async stop(signal: NodeJS.Signals): Promise<void> {
    this.child.kill(signal);
    await this.exited;
  }
}

function temporaryDirectory(): string {
  const path = mkdtempSync(join(tmpdir(), 'spillway-queues-'));
  cleanups.push(() => rmSync(path, { recursive: true, force: true }));
  return path;
}

async function until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('queues with real processes', () => {
  it('key_shared, 4 consumers, one SIGKILLed: at least once, one member per key at a time, in order', async () => {
    ensureBuilt();
    const broker = await BrokerProcess.start([
      '--data-dir',
      temporaryDirectory(),
      '--durability',
      'interval',
    ]);
    cleanups.push(() => void broker.stop('SIGKILL'));
    const sw = await Spillway.connect(broker.url);
    cleanups.push(() => sw.close());
    const partitions = 4;
    const keys = 64;
    const total = 12_000;
    await sw.admin.createTopic('orders', { partitions });
    // c3, the one to be killed, stops acking after 300 messages (its work hangs), then dies.
    const consumers = ['c0', 'c1', 'c2', 'c3'].map(
      (name) =>
        new ConsumerProcess(
          name,
          broker.url,
          'billing',
          'orders',
          'key_shared',
          name === 'c3' ? ['300'] : [],
        ),
    );
    await Promise.all(consumers.map((consumer) => consumer.ready));
    const producer = sw.producer({ lingerMs: 2 });
    const keyOf = new Map<string, string>();
    const sends: Array<Promise<unknown>> = [];
    for (let i = 0; i < total; i++) {
      const key = `key-${i % keys}`;
      sends.push(
        producer.send('orders', { key, value: `v${i}` }).then(({ partition, offset }) => {
          keyOf.set(`${partition}/${offset}`, key);
        }),
      );
      if (i % 500 === 499) await new Promise((resolve) => setTimeout(resolve, 40));
    }
    const victim = consumers[3]!;
    await until(
      () => victim.processed.length >= 400 && victim.lines.some((line) => line.t === 'a'),
      15_000,
      'the victim to process 400 messages and see acks confirmed',
    );
    await victim.stop('SIGKILL');
    await Promise.all(sends);
    const seen = (): Set<string> => {
      const ids = new Set<string>();
      for (const consumer of consumers) for (const line of consumer.processed) ids.add(`${line.p}/${line.o}`);
      return ids;
    };
    // Done when every message's ack was confirmed by some member (the victim's unacked work included:
    // it must come again to the others and be acked there).
    const acked = (): Set<string> => {
      const ids = new Set<string>();
      for (const consumer of consumers) {
        for (const line of consumer.lines) if (line.t === 'a') ids.add(`${line.p}/${line.o}`);
      }
      return ids;
    };
    await until(() => acked().size === total, 20_000, 'every message to be acked');
    const survivors = consumers.slice(0, 3);
    await Promise.all(survivors.map((consumer) => consumer.stop('SIGTERM')));

    // At least once (processed and acked), and each processing is of the right key.
    expect(seen().size).toBe(total);
    expect(acked().size).toBe(total);
    for (const consumer of consumers)
      for (const line of consumer.processed) expect(line.k).toBe(keyOf.get(`${line.p}/${line.o}`));
    // Duplicates: only messages the victim processed without a confirmed ack.
    const victimAcked = new Set(
      victim.lines.filter((line) => line.t === 'a').map((line) => `${line.p}/${line.o}`),
    );
    const victimProcessed = new Set(victim.processed.map((line) => `${line.p}/${line.o}`));
    const count = new Map<string, number>();
    for (const consumer of consumers)
      for (const line of consumer.processed)
        count.set(`${line.p}/${line.o}`, (count.get(`${line.p}/${line.o}`) ?? 0) + 1);
    const duplicates = [...count].filter(([, n]) => n > 1).map(([id]) => id);
    for (const id of duplicates) {
      expect(victimProcessed.has(id)).toBe(true);
      expect(victimAcked.has(id)).toBe(false);
    }
    console.log(
      `key_shared: ${total} messages, ${duplicates.length} duplicate(s), all from the killed member's ${victimProcessed.size - victimAcked.size} unacked of ${victimProcessed.size} processed`,
    );
    // Per member, a key's offsets come in increasing order; per key, the members' runs do not overlap
    // (the killed member's unacked tail excepted: it is what comes again).
    const runs = new Map<string, Array<{ member: string; min: number; max: number }>>();
    for (const consumer of consumers) {
      const last = new Map<string, number>();
      for (const line of consumer.processed) {
        const key = `${line.p}|${line.k}`;
        const previous = last.get(key);
        if (previous !== undefined) expect(line.o).toBeGreaterThan(previous);
        last.set(key, line.o);
        const acked = consumer !== victim || victimAcked.has(`${line.p}/${line.o}`);
        if (!acked) continue;
        let list = runs.get(key);
        if (list === undefined) {
          list = [];
          runs.set(key, list);
        }
        const run = list.find((entry) => entry.member === consumer.name);
        if (run === undefined) list.push({ member: consumer.name, min: line.o, max: line.o });
        else run.max = line.o;
      }
    }
    for (const list of runs.values()) {
      list.sort((a, b) => a.min - b.min);
      for (let i = 1; i < list.length; i++) expect(list[i]!.min).toBeGreaterThan(list[i - 1]!.max);
    }
  }, 60_000);

  it('broker SIGKILL with acks in flight (always): nothing confirmed comes again, nothing unconfirmed is lost', async () => {
    ensureBuilt();
    const dataDir = temporaryDirectory();
    let broker = await BrokerProcess.start(['--data-dir', dataDir, '--durability', 'always']);
    const port = broker.port;
    cleanups.push(() => void broker.stop('SIGKILL'));
    const total = 5000;
    {
      const sw = await Spillway.connect(broker.url);
      await sw.admin.createTopic('jobs', { partitions: 2 });
      const producer = sw.producer();
      await Promise.all(
        Array.from({ length: total }, (_, i) => producer.send('jobs', { key: `k${i % 10}`, value: `v${i}` })),
      );
      await sw.close();
    }
    const confirmed = new Set<string>();
    const ackSent = new Set<string>();
    const sw = await Spillway.connect(broker.url, { reconnectBackoffMs: 50 });
    const consumer = sw.consumer({ group: 'g', topics: ['jobs'], mode: 'shared', maxMessages: 100 });
    let taken = 0;
    for (;;) {
      const next = await consumer.next();
      const message = next.value as ConsumedMessage;
      taken++;
      const id = `${message.partition}/${message.offset}`;
      ackSent.add(id);
      message.ack().then(
        () => confirmed.add(id),
        () => undefined,
      );
      if (taken === 2000) break;
      if (taken % 50 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    await broker.stop('SIGKILL');
    await consumer.close().catch(() => undefined);
    await sw.close().catch(() => undefined);
    const confirmedAtKill = new Set(confirmed);
    broker = await BrokerProcess.start(['--data-dir', dataDir, '--durability', 'always'], { port });
    const after = await Spillway.connect(broker.url);
    const again = after.consumer({ group: 'g', topics: ['jobs'], mode: 'shared', maxWaitMs: 200 });
    const redelivered = new Set<string>();
    for (;;) {
      const message = await Promise.race([
        again.next().then((next) => next.value as ConsumedMessage),
        new Promise<null>((resolve) => setTimeout(() => resolve(null), 2000)),
      ]);
      if (message === null) break;
      redelivered.add(`${message.partition}/${message.offset}`);
      void message.ack();
    }
    await again.close();
    cleanups.push(() => after.close());
    // Confirmed acks are never delivered again.
    for (const id of confirmedAtKill) expect(redelivered.has(id)).toBe(false);
    // Every message never acked is delivered after the restart; an ack sent but not confirmed may
    // have become durable (then not delivered again) or not (then delivered again).
    let unconfirmedDurable = 0;
    let unconfirmedAgain = 0;
    for (let partition = 0; partition < 2; partition++) {
      const end = (await after.admin.describeTopic('jobs')).partitions[partition]!.logEndOffset;
      for (let offset = 0; offset < end; offset++) {
        const id = `${partition}/${offset}`;
        if (confirmedAtKill.has(id)) continue;
        if (!ackSent.has(id)) expect(redelivered.has(id)).toBe(true);
        else if (redelivered.has(id)) unconfirmedAgain++;
        else unconfirmedDurable++;
      }
    }
    expect(confirmedAtKill.size + redelivered.size + unconfirmedDurable).toBe(total);
    console.log(
      `broker SIGKILL: ${confirmedAtKill.size} acks confirmed before the kill, ${ackSent.size - confirmedAtKill.size} unconfirmed (${unconfirmedDurable} had become durable, ${unconfirmedAgain} delivered again), ${redelivered.size} delivered after the restart`,
    );
  }, 60_000);
});
