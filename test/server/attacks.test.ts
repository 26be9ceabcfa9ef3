/**
 * The attacks of issue 13, automated against `spillway broker` as a child process with its default
 * limits, on loopback, each a bounded loop: the attacker connects from 127.0.0.2 (its own source
 * address), a well-behaved probe client from 127.0.0.1 keeps producing and fetching meanwhile. The
 * broker's RSS is sampled from /proc throughout; its peak must stay under a ceiling, and the probe
 * must keep being answered (a liveness bound, generous: not a latency assertion). The figures are
 * printed (`attack <name>: ...`).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { type Socket, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Spillway } from '../../src/client/index.js';
import { httpSendBudgetBytesDefault } from '../../src/limits.js';
import { BrokerProcess, ensureBuilt, killBrokers } from '../cli/cli-process.js';

const attacker = '127.0.0.2';
const mib = 1024 * 1024;
/** Most the broker's RSS may grow over its resting size during any attack. */
const rssGrowthCeilingBytes = 450 * mib;

let directory: string;
let current: BrokerProcess | undefined;
/** The broker of the running attack. */
const broker = {
  get pid() {
    return current!.pid;
  },
  get port() {
    return current!.port;
  },
  get url() {
    return current!.url;
  },
};
let probe: Spillway;
let restingRss = 0;

function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs `attack` while sampling the broker's RSS every 50 ms and running the probe (a produce and a
 * fetch in a loop). Returns the peak RSS and the slowest probe round trip.
 */
async function underAttack(name: string, attack: () => Promise<void>) {
  let peak = rssBytes(broker.pid);
  let running = true;
  const sampler = (async () => {
    while (running) {
      peak = Math.max(peak, rssBytes(broker.pid));
      await sleep(50);
    }
  })();
  let slowestMs = 0;
  let rounds = 0;
  const producer = probe.producer();
  const prober = (async () => {
    while (running) {
      const started = performance.now();
      const answered = await Promise.race([
        (async () => {
          const { offset } = await producer.send('probe', { value: 'ping' });
          await probe.admin.listTopics();
          return offset;
        })(),
        sleep(20_000).then(() => -1),
      ]);
      expect(answered, `${name}: the probe got no answer within 20 s`).toBeGreaterThanOrEqual(0);
      slowestMs = Math.max(slowestMs, performance.now() - started);
      rounds++;
      await sleep(20);
    }
  })();
  try {
    await attack();
  } finally {
    running = false;
    await Promise.all([sampler, prober]);
    await producer.close();
  }
  const growth = peak - restingRss;
  process.stdout.write(
    `attack ${name}: broker RSS peak ${(peak / mib).toFixed(0)} MiB (resting ${(restingRss / mib).toFixed(0)} MiB, +${(growth / mib).toFixed(0)} MiB); probe ${rounds} rounds, slowest ${slowestMs.toFixed(0)} ms\n`,
  );
  return { peak, growth, slowestMs, rounds };
}

/** A TCP connection from the attacker's address; resolves once connected. */
function attackerSocket(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host: '127.0.0.1', port: broker.port, localAddress: attacker }, () =>
      resolve(socket),
    );
    socket.on('error', reject);
  });
}

let brokers = 0;

/**
 * A fresh broker for each attack (freed memory is not always given back to the system, so one
 * attack's peak would hide the next one's), with the probe topic and, with `fill`, 20 MiB of 1.6 KB
 * messages in topic `big`.
 */
async function freshBroker(fill = false): Promise<void> {
  await probe?.close();
  if (current !== undefined) await current.stop('SIGTERM');
  current = await BrokerProcess.start([
    '--data-dir',
    join(directory, `data-${brokers++}`),
    '--durability',
    'none',
  ]);
  probe = await Spillway.connect(broker.url);
  await probe.admin.createTopic('probe');
  if (fill) {
    await probe.admin.createTopic('big');
    const producer = probe.producer({ batchBytes: 1024 * 1024 });
    const value = 'v'.repeat(1600);
    const sends: Array<Promise<unknown>> = [];
    for (let i = 0; i < 13_000; i++) sends.push(producer.send('big', { partition: 0, value }));
    await Promise.all(sends);
    await producer.close();
  }
  await sleep(300);
  restingRss = rssBytes(broker.pid);
}

beforeAll(() => {
  ensureBuilt();
  directory = mkdtempSync(join(tmpdir(), 'spillway-attacks-'));
});

afterAll(async () => {
  await probe?.close();
  await current?.stop('SIGTERM');
  killBrokers();
  rmSync(directory, { recursive: true, force: true });
});

describe.sequential('attacks on a broker with its default limits', () => {
  it('one HTTP connection pipelining 150 large fetches and never reading', async () => {
    await freshBroker(true);
    let socket: Socket | undefined;
    const result = await underAttack('pipelined-fetches', async () => {
      socket = await attackerSocket();
      const request = `GET /v1/topics/big/partitions/0/messages?maxMessages=10000&maxBytes=16777200 HTTP/1.1\r\nhost: 127.0.0.1:${broker.port}\r\n\r\n`;
      for (let i = 0; i < 150; i++) socket.write(request);
      socket.pause(); // never read
      await sleep(3_000);
      const metrics = await (await fetch(`http://127.0.0.1:${broker.port}/metrics`)).text();
      const unsent = /^spillway_http_unsent_bytes (\d+)$/m.exec(metrics)?.[1];
      const refusals = /^spillway_http_budget_refusals_total (\d+)$/m.exec(metrics)?.[1];
      process.stdout.write(
        `attack pipelined-fetches: ${unsent} answer bytes held for the reader, ${refusals} refusals\n`,
      );
      await sleep(3_000);
    });
    socket?.destroy();
    expect(result.growth).toBeLessThan(rssGrowthCeilingBytes);
  }, 60_000);

  it('60 HTTP connections each asking for a 12 MB answer and never reading', async () => {
    await freshBroker(true);
    const sockets: Socket[] = [];
    let unsentPeak = 0;
    let refusals = 0;
    const result = await underAttack('unread-answers', async () => {
      for (let i = 0; i < 60; i++) {
        const socket = await attackerSocket();
        sockets.push(socket);
        socket.on('error', () => undefined);
        socket.write(
          `GET /v1/topics/big/partitions/0/messages?maxMessages=10000&maxBytes=16777200 HTTP/1.1\r\nhost: 127.0.0.1:${broker.port}\r\n\r\n`,
        );
        socket.pause();
      }
      for (let i = 0; i < 10; i++) {
        await sleep(400);
        const metrics = await (await fetch(`http://127.0.0.1:${broker.port}/metrics`)).text();
        unsentPeak = Math.max(unsentPeak, Number(/^spillway_http_unsent_bytes (\d+)$/m.exec(metrics)![1]));
        refusals = Number(/^spillway_http_budget_refusals_total (\d+)$/m.exec(metrics)![1]);
      }
    });
    process.stdout.write(
      `attack unread-answers: at most ${(unsentPeak / mib).toFixed(0)} MiB of answers held for readers, ${refusals} fetches refused\n`,
    );
    for (const socket of sockets) socket.destroy();
    expect(unsentPeak).toBeLessThanOrEqual(httpSendBudgetBytesDefault + 16 * mib);
    expect(refusals).toBeGreaterThan(0);
    expect(result.growth).toBeLessThan(rssGrowthCeilingBytes + httpSendBudgetBytesDefault);
  }, 120_000);

  it('WebSocket connections each holding a 16 MiB partial frame', async () => {
    await freshBroker();
    const sockets: Socket[] = [];
    const result = await underAttack('partial-frames', async () => {
      let refused = 0;
      for (let i = 0; i < 250; i++) {
        const socket = await attackerSocket();
        sockets.push(socket);
        const answer = await new Promise<string>((resolve) => {
          socket.once('data', (chunk: Buffer) => resolve(chunk.toString('latin1')));
          socket.once('close', () => resolve(''));
          socket.write(
            `GET /v1/ws HTTP/1.1\r\nhost: 127.0.0.1:${broker.port}\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n`,
          );
        });
        if (!answer.startsWith('HTTP/1.1 101')) {
          refused++;
          continue;
        }
        // A binary frame announcing 16 MiB (masked, as from a client), all but its last byte sent.
        const length = 16 * mib;
        const header = Buffer.alloc(14);
        header[0] = 0x82;
        header[1] = 0x80 | 127;
        header.writeBigUInt64BE(BigInt(length), 2);
        socket.write(header);
        socket.write(Buffer.alloc(length - 1, 0x41));
      }
      process.stdout.write(
        `attack partial-frames: ${250 - refused} connections accepted, ${refused} refused\n`,
      );
      await sleep(4_000);
    });
    for (const socket of sockets) socket.destroy();
    expect(result.growth).toBeLessThan(rssGrowthCeilingBytes);
  }, 120_000);

  it('20 uploads of 31 MB that never finish', async () => {
    await freshBroker();
    const sockets: Socket[] = [];
    const result = await underAttack('slow-uploads', async () => {
      for (let i = 0; i < 20; i++) {
        const socket = await attackerSocket();
        sockets.push(socket);
        socket.on('error', () => undefined);
        socket.write(
          `POST /v1/topics/probe/messages HTTP/1.1\r\nhost: 127.0.0.1:${broker.port}\r\ncontent-type: application/json\r\ncontent-length: ${31_000_000}\r\n\r\n`,
        );
        socket.write(Buffer.alloc(31_000_000 - 1, 0x20));
      }
      await sleep(4_000);
    });
    for (const socket of sockets) socket.destroy();
    expect(result.growth).toBeLessThan(rssGrowthCeilingBytes);
  }, 120_000);

  it('a 19 MB deeply nested JSON body', async () => {
    await freshBroker();
    const result = await underAttack('nested-json', async () => {
      const half = 9_500_000;
      const body = Buffer.concat([Buffer.alloc(half, 0x5b), Buffer.alloc(half, 0x5d)]);
      const socket = await attackerSocket();
      const answer = await new Promise<string>((resolve) => {
        let text = '';
        socket.on('data', (chunk: Buffer) => {
          text += chunk.toString('latin1');
          if (text.includes('"error"')) resolve(text);
        });
        socket.write(
          `POST /v1/topics HTTP/1.1\r\nhost: 127.0.0.1:${broker.port}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`,
        );
        socket.write(body);
      });
      expect(answer).toMatch(/^HTTP\/1\.1 400/);
      socket.destroy();
      await sleep(1_000);
    });
    expect(result.growth).toBeLessThan(rssGrowthCeilingBytes);
  }, 60_000);

  it('10,000 idle WebSocket connections from one address', async () => {
    await freshBroker();
    const sockets: Socket[] = [];
    let accepted = 0;
    const result = await underAttack('idle-connections', async () => {
      for (let i = 0; i < 10_000; i++) {
        const socket = await attackerSocket().catch(() => null);
        if (socket === null) continue;
        sockets.push(socket);
        socket.on('error', () => undefined);
        const answer = await new Promise<string>((resolve) => {
          socket.once('data', (chunk: Buffer) => resolve(chunk.toString('latin1')));
          socket.once('close', () => resolve(''));
          socket.write(
            `GET /v1/ws HTTP/1.1\r\nhost: 127.0.0.1:${broker.port}\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n`,
          );
        });
        if (answer.startsWith('HTTP/1.1 101')) accepted++;
        else socket.destroy();
      }
      // Another client (the probe's address) still gets in.
      const other = await Spillway.connect(broker.url);
      await other.admin.listTopics();
      await other.close();
    });
    process.stdout.write(`attack idle-connections: ${accepted} accepted of 10000\n`);
    expect(accepted).toBe(16);
    for (const socket of sockets) socket.destroy();
    expect(result.growth).toBeLessThan(rssGrowthCeilingBytes);
  }, 180_000);
});
