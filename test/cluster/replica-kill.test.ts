/**
 * Three brokers as child processes on loopback, replicating one partition with durability `always`;
 * the test is the controller (an in-memory IsrChanger, leaders elected from the ISR only). Each
 * round produces with acks 'all' from four concurrent connections, SIGKILLs the leader mid-stream,
 * elects another member of the ISR at the next epoch and restarts the killed broker as a follower,
 * which truncates its tail by epoch and catches up. At the end every acknowledged record is at its
 * acknowledged offset on every broker, no value appears twice, and the three logs are identical.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketTransport } from '../../src/client/websocket-transport.js';
import type { PartitionAssignment } from '../../src/cluster/partition-role.js';
import { MemoryIsrChanger } from '../../src/cluster/replication/memory-isr-changer.js';
import { Opcode } from '../../src/protocol/opcodes.js';
import { batchOf, recordsOf, temporaryDirectory } from '../broker/helpers.js';
import { ensureBuilt, repositoryRoot } from '../kill-runner.js';

const script = join(repositoryRoot, 'dist/test/cluster/replica-child.js');
const topic = 'kills';

interface Line {
  listening?: string;
  done?: number;
  failed?: number;
  code?: string;
  message?: string;
  changeIsr?: number;
  partition?: number;
  leaderEpoch?: number;
  isr?: number[];
}

class ChildBroker {
  readonly id: number;
  readonly directory: string;
  url = '';
  stderr = '';
  private child: ChildProcess | null = null;
  private seq = 0;
  private readonly waiting = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
  private readonly controller: Controller;

  constructor(id: number, directory: string, controller: Controller) {
    this.id = id;
    this.directory = directory;
    this.controller = controller;
  }

  get alive(): boolean {
    return this.child !== null;
  }

  start(): Promise<void> {
    const child = spawn(process.execPath, [script, this.directory, String(this.id)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child = child;
    let pending = '';
    return new Promise((resolve, reject) => {
      child.stdout!.setEncoding('utf8');
      child.stdout!.on('data', (chunk: string) => {
        const lines = (pending + chunk).split('\n');
        pending = lines.pop()!;
        for (const text of lines) {
          const line = JSON.parse(text) as Line;
          if (line.listening !== undefined) {
            this.url = line.listening;
            resolve();
          } else if (line.done !== undefined) {
            this.waiting.get(line.done)?.resolve();
          } else if (line.failed !== undefined) {
            this.waiting.get(line.failed)?.reject(new Error(`${line.code}: ${line.message}`));
          } else if (line.changeIsr !== undefined) {
            void this.controller.isr
              .changeIsr(topic, line.partition!, line.leaderEpoch!, line.isr!)
              .then((assignment) => this.send({ isrResult: line.changeIsr, assignment }));
          }
        }
      });
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (chunk: string) => {
        this.stderr += chunk;
      });
      child.on('exit', () => {
        if (this.child === child) this.child = null;
        for (const waiter of this.waiting.values()) waiter.reject(new Error(`broker ${this.id} exited`));
        this.waiting.clear();
        reject(new Error(`broker ${this.id} exited before listening:\n${this.stderr}`));
      });
    });
  }

  send(line: unknown): void {
    this.child?.stdin?.write(`${JSON.stringify(line)}\n`);
  }

  command(fields: Record<string, unknown>): Promise<void> {
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      this.waiting.set(seq, { resolve, reject });
      this.send({ seq, ...fields });
    });
  }

  kill(): Promise<void> {
    const child = this.child;
    if (child === null) return Promise.resolve();
    return new Promise((resolve) => {
      child.on('exit', () => resolve());
      child.kill('SIGKILL');
    });
  }
}

class Controller {
  readonly isr = new MemoryIsrChanger();
  brokers: ChildBroker[] = [];

  constructor() {
    this.isr.onChange = (assignment) => {
      void this.broadcast(assignment).catch(() => undefined);
    };
  }

  endpoints(): Array<[number, string]> {
    return this.brokers.map((broker) => [broker.id, broker.url]);
  }

  async assign(assignment: PartitionAssignment): Promise<void> {
    this.isr.set(assignment);
    await this.broadcast(assignment);
  }

  async broadcast(assignment: PartitionAssignment): Promise<void> {
    const endpoints = this.endpoints();
    await Promise.all(
      this.brokers
        .filter((broker) => broker.alive)
        .map((broker) => broker.command({ assign: assignment, endpoints })),
    );
  }

  current(): PartitionAssignment {
    return this.isr.get(topic, 0)!;
  }
}

let controller: Controller | null = null;
afterEach(async () => {
  for (const broker of controller?.brokers ?? []) await broker.kill();
  controller = null;
});

async function eventually(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 3000; i++) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`still not true after 30 s: ${what}`);
}

/** Every record of the partition below the broker's high watermark, by offset. */
async function readAll(
  url: string,
): Promise<{ values: Map<number, string>; bytes: Buffer; highWatermark: number }> {
  const transport = await WebSocketTransport.connect(url);
  try {
    const values = new Map<number, string>();
    const chunks: Buffer[] = [];
    let offset = 0;
    let highWatermark = 0;
    for (;;) {
      const answer = await transport.request(Opcode.fetch, {
        topic,
        partition: 0,
        offset,
        maxBytes: 1 << 20,
      });
      const header = answer.header as { nextOffset: number; highWatermark: number };
      highWatermark = header.highWatermark;
      for (const record of recordsOf(answer.body)) values.set(record.offset, record.value);
      chunks.push(Buffer.from(answer.body));
      if (header.nextOffset >= header.highWatermark || answer.body.length === 0) break;
      offset = header.nextOffset;
    }
    return { values, bytes: Buffer.concat(chunks), highWatermark };
  } finally {
    await transport.close();
  }
}

describe('replication under SIGKILL of the leader', () => {
  it('loses no record acknowledged with acks all across three leader kills', async () => {
    ensureBuilt(script, join(repositoryRoot, 'test/cluster/replica-child.ts'));
    const c = new Controller();
    controller = c;
    c.brokers = [1, 2, 3].map((id) => new ChildBroker(id, temporaryDirectory(), c));
    await Promise.all(c.brokers.map((broker) => broker.start()));
    for (const broker of c.brokers)
      await broker.command({ createTopic: topic, config: { durability: 'always' } });
    await c.assign({
      topic,
      partition: 0,
      replicas: [1, 2, 3],
      leaderId: 1,
      leaderEpoch: 1,
      isr: [1, 2, 3],
      minInSyncReplicas: 2,
    });

    const acked = new Map<number, string>();
    let sent = 0;
    for (let round = 0; round < 3; round++) {
      const leader = c.brokers.find((broker) => broker.id === c.current().leaderId)!;
      const transport = await WebSocketTransport.connect(leader.url, { requestTimeoutMs: 15_000 });
      const ackedThisRound = { count: 0 };
      let stop = false;
      const producers = Array.from({ length: 4 }, async () => {
        while (!stop) {
          const value = `v${sent++}`;
          try {
            const answer = await transport.request(
              Opcode.produce,
              { topic, partition: 0, acks: 'all' },
              batchOf(value),
            );
            acked.set((answer.header as { baseOffset: number }).baseOffset, `${value}/0`);
            ackedThisRound.count++;
          } catch {
            return; // The leader died: this send is not acknowledged (it may or may not be there).
          }
        }
      });
      await eventually(() => ackedThisRound.count >= 60, 'acks this round');
      await leader.kill();
      stop = true;
      await Promise.all(producers);
      await transport.close();
      // The controller elects another member of the ISR at the next epoch.
      const current = c.current();
      const isr = current.isr.filter((id) => id !== leader.id);
      expect(isr.length).toBeGreaterThan(0);
      await c.assign({ ...current, leaderId: isr[0]!, leaderEpoch: current.leaderEpoch + 1, isr });
      // The killed broker comes back as a follower, truncates by epoch and catches up.
      await leader.start();
      await c.broadcast(c.current());
      await eventually(() => c.current().isr.length === 3, `ISR full again after round ${round}`);
    }

    // One last acknowledged batch: then the leader's high watermark covers everything before it.
    const leader = c.brokers.find((broker) => broker.id === c.current().leaderId)!;
    const transport = await WebSocketTransport.connect(leader.url);
    const last = await transport.request(
      Opcode.produce,
      { topic, partition: 0, acks: 'all' },
      batchOf('last'),
    );
    await transport.close();
    const end = (last.header as { lastOffset: number }).lastOffset + 1;
    const logs = [];
    for (const broker of c.brokers) {
      await eventually(
        async () => (await readAll(broker.url)).highWatermark >= end,
        `broker ${broker.id} HW`,
      );
      logs.push(await readAll(broker.url));
    }
    if (process.env.REPLICA_KILL_DEBUG) for (const broker of c.brokers) console.log(broker.id, broker.stderr);
    expect(acked.size).toBeGreaterThanOrEqual(180);
    for (const log of logs) {
      for (const [offset, value] of acked) expect(log.values.get(offset), `offset ${offset}`).toBe(value);
      const values = [...log.values.values()];
      expect(new Set(values).size).toBe(values.length);
      expect(log.bytes.equals(logs[0]!.bytes)).toBe(true);
    }
  }, 120_000);
});
