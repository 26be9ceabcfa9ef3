import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type PeerWorkload, peersSuiteName, runPeers, selectPeers } from '../../bench/peers/index.js';
import { findExecutable } from '../../bench/peers/install.js';
import { indexedPayload, LatencyPayloads, payloadIndex, payloadPool } from '../../bench/peers/payload.js';
import { RedisStreamsPeer } from '../../bench/peers/redis.js';

const temporaryDirectories: string[] = [];
function temporaryDirectory(): string {
  const directory = mkdtempSync(path.join(tmpdir(), 'spillway-peers-test-'));
  temporaryDirectories.push(directory);
  return directory;
}
afterEach(() => {
  for (const directory of temporaryDirectories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const redisMissing = findExecutable('redis-server') === undefined;
const skipReason = 'redis-server not installed (run `node dist/bench/peers/install.js redis` as root)';

const tinyWorkload: PeerWorkload = {
  runs: 1,
  messages: 2000,
  messageBytes: 100,
  producers: 1,
  consumers: 1,
  phaseDurationMsMax: 5000,
  latencyRatePerSecond: 400,
  latencyDurationMs: 500,
};

describe('peer payloads', () => {
  it('are the same bytes on every call (fixed seed), distinct within the pool, of the size asked', () => {
    const first = payloadPool(100);
    const second = payloadPool(100);
    expect(first.length).toBeGreaterThan(1);
    expect(first.every((payload, index) => payload.equals(second[index]!))).toBe(true);
    expect(first.every((payload) => payload.length === 100)).toBe(true);
    expect(new Set(first.map((payload) => payload.toString('hex'))).size).toBe(first.length);
  });

  it('carry their index for latency runs without changing the pool', () => {
    const pool = payloadPool(16);
    const before = Buffer.from(pool[7]!);
    const payload = indexedPayload(pool, 70_000 * pool.length + 7);
    expect(payloadIndex(payload)).toBe(70_000 * pool.length + 7);
    expect(payload.subarray(4).equals(pool[7]!.subarray(4))).toBe(true);
    expect(pool[7]!.equals(before)).toBe(true);
    expect(() => payloadPool(3)).toThrow(RangeError);
  });
});

describe('latency payloads', () => {
  it('are made up front, carry their index, and reuse a slot only when its last message is done', () => {
    const pool = payloadPool(64);
    const payloads = new LatencyPayloads(pool, 4);
    const done = new Set<number>();
    const taken = Array.from({ length: 4 }, (_, index) =>
      payloads.take(index, (earlier) => done.has(earlier)),
    );
    for (const [index, payload] of taken.entries()) {
      expect(payload.equals(indexedPayload(pool, index))).toBe(true);
    }
    // Message 4 would take message 0's slot: still in flight, so it gets a copy of its own.
    const copy = payloads.take(4, (earlier) => done.has(earlier));
    expect(copy.equals(indexedPayload(pool, 4))).toBe(true);
    expect(copy.buffer).not.toBe(taken[0]!.buffer);
    expect(taken[0]!.equals(indexedPayload(pool, 0))).toBe(true);
    expect(payloads.copies).toBe(1);
    // Message 1 is done: message 5 reuses its slot (the same bytes in memory), rewritten.
    done.add(1);
    const reused = payloads.take(5, (earlier) => done.has(earlier));
    expect(reused).toBe(taken[1]);
    expect(reused.equals(indexedPayload(pool, 5))).toBe(true);
    expect(payloads.copies).toBe(1);
  });
});

describe('findExecutable', () => {
  it('finds a program on the PATH by absolute path and reports a missing one as undefined', () => {
    expect(findExecutable('sh')).toMatch(/^\/.*\/sh$/);
    expect(findExecutable('spillway-no-such-program')).toBeUndefined();
  });
});

describe('selectPeers', () => {
  it('takes ids and prefixes, in the fixed order, and rejects unknown names', () => {
    expect(selectPeers(['redis'])).toEqual(['redis-everysec', 'redis-always']);
    expect(selectPeers(['rabbitmq-quorum', 'nats-default'])).toEqual(['nats-default', 'rabbitmq-quorum']);
    expect(selectPeers(undefined).length).toBe(5);
    expect(() => selectPeers(['kafka'])).toThrow(/unknown peer 'kafka'/);
  });
});

describe.skipIf(redisMissing)(`redis peer (skipped if ${skipReason})`, () => {
  it('starts, produces, consumes, measures latency, and its server process is gone after stop', async () => {
    const peer = new RedisStreamsPeer('everysec');
    let pid: number | undefined;
    try {
      await peer.start(temporaryDirectory());
      pid = peer.pid;
      expect(pid).toBeDefined();
      expect(isAlive(pid!)).toBe(true);
      expect(peer.version).toMatch(/^redis \d+\./);
      const produced = await peer.produce({
        messages: 2000,
        messageBytes: 100,
        producers: 2,
        durationMsMax: 5000,
      });
      expect(produced.acked).toBe(2000);
      expect(produced.messagesPerSecond).toBeGreaterThan(0);
      expect(produced.bytesPerSecond).toBeCloseTo(produced.messagesPerSecond * 100, 0);
      const consumed = await peer.consume({ messages: 2000, consumers: 2, durationMsMax: 5000 });
      expect(consumed.received).toBe(2000);
      // Queue mode: one XACK per entry (a new group over the same stream).
      const queued = await peer.consume({ messages: 2000, consumers: 2, durationMsMax: 5000, ack: 'each' });
      expect(queued.received).toBe(2000);
      const latency = await peer.endToEndLatency({ ratePerSecond: 400, durationMs: 500, messageBytes: 100 });
      expect(latency.lost).toBe(0);
      // The warm-up round trips ran before the clock and none of them counted as a measured message.
      expect(latency.warmUpRoundTrips).toBeGreaterThan(0);
      expect(latency.measured).toBeGreaterThan(0);
      expect(latency.p50Us).toBeGreaterThan(0);
      expect(latency.p50Us).toBeLessThanOrEqual(latency.p99Us);
      expect(latency.p99Us).toBeLessThanOrEqual(latency.p999Us);
    } finally {
      await peer.stop();
    }
    expect(isAlive(pid!)).toBe(false);
    expect(peer.pid).toBeUndefined();
    await peer.stop(); // a second stop is harmless
  });

  it('runPeers returns well-formed rows of the peers suite', async () => {
    const lines: string[] = [];
    const rows = await runPeers({
      scratchDir: temporaryDirectory(),
      quick: true,
      peers: ['redis-always'],
      log: (line) => lines.push(line),
      workload: tinyWorkload,
    });
    expect(rows.map((row) => row.name)).toEqual([
      'redis-streams aof (appendfsync always) produce 100B 1 producer',
      'redis-streams aof (appendfsync always) produce 100B 1 producer, bandwidth',
      'redis-streams aof (appendfsync always) consume 100B 1 consumer',
      'redis-streams aof (appendfsync always) consume 100B 1 consumer, bandwidth',
      'redis-streams aof (appendfsync always) end-to-end latency p50 100B',
      'redis-streams aof (appendfsync always) end-to-end latency p99 100B',
      'redis-streams aof (appendfsync always) end-to-end latency p99.9 100B',
    ]);
    for (const row of rows) {
      expect(row.suite).toBe(peersSuiteName);
      expect(Number.isFinite(row.value), row.name).toBe(true);
      expect(row.value, row.name).toBeGreaterThan(0);
      expect(['msg/s', 'MB/s', 'µs']).toContain(row.unit);
    }
    expect(rows[0]!.detail).toContain('fsynced before replies');
    expect(lines.some((line) => line.includes('stopped'))).toBe(true);
  });
});
