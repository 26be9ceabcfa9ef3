/**
 * A broker process (`spillway broker`, a child) restarted under a WebSocket client:
 *  - SIGTERM (graceful): everything produced to `interval` and `always` topics of several partitions
 *    is there after the restart on the same port, in order, at the offsets the producer was given;
 *  - SIGKILL while an `always` topic is being written: every acknowledged message is there after the
 *    restart, at its acknowledged offset; what else is there is only messages that were sent (their
 *    acknowledgement was lost with the connection), and every partition's offsets are contiguous.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ConsumedMessage, Spillway } from '../../src/client/index.js';
import { BrokerProcess, ensureBuilt, killBrokers } from '../cli/cli-process.js';

let directory: string;

beforeAll(() => {
  ensureBuilt();
  directory = mkdtempSync(join(tmpdir(), 'spillway-restart-'));
});

afterAll(() => {
  killBrokers();
  rmSync(directory, { recursive: true, force: true });
});

/** Where a value was acknowledged: `${partition}/${offset}` → value. */
type Placement = Map<string, string>;

/**
 * Reads every message of `topic` from the earliest offset until each partition reaches the
 * logEndOffset the broker reports now (bounded by `timeoutMs`). Returns them by partition, in the
 * order received; throws if a partition's offsets are not 0, 1, 2, ...
 */
async function consumeAll(sw: Spillway, topic: string, timeoutMs = 20_000): Promise<ConsumedMessage[][]> {
  const description = await sw.admin.describeTopic(topic);
  const ends = description.partitions.map((partition) => partition.logEndOffset);
  const total = ends.reduce((sum, end) => sum + end, 0);
  const byPartition: ConsumedMessage[][] = ends.map(() => []);
  if (total === 0) return byPartition;
  const consumer = sw.consumer({ topics: [topic], from: 'earliest', maxWaitMs: 100 });
  const timer = setTimeout(() => void consumer.close(), timeoutMs);
  let seen = 0;
  try {
    for await (const message of consumer) {
      const list = byPartition[message.partition]!;
      if (message.offset !== list.length) {
        throw new Error(
          `${topic}/${message.partition}: offset ${message.offset} after ${list.length} messages`,
        );
      }
      list.push(message);
      if (++seen === total) break;
    }
  } finally {
    clearTimeout(timer);
    await consumer.close();
  }
  expect(byPartition.map((list) => list.length)).toEqual(ends);
  return byPartition;
}

/** Every acknowledged placement holds its value in `consumed`. */
function expectAllPlaced(placement: Placement, consumed: ConsumedMessage[][]): void {
  let missing = 0;
  let wrong = 0;
  for (const [position, value] of placement) {
    const [partition, offset] = position.split('/').map(Number) as [number, number];
    const message = consumed[partition]?.[offset];
    if (message === undefined) missing++;
    else if (message.value?.toString() !== value) wrong++;
  }
  expect({ missing, wrong }).toEqual({ missing: 0, wrong: 0 });
}

describe('broker process restart', () => {
  it('SIGTERM, then a start on the same port: interval and always topics whole, in order, same offsets', async () => {
    const dataDir = join(directory, 'graceful');
    let broker = await BrokerProcess.start(['--data-dir', dataDir, '--flush-interval-ms', '100']);
    const port = broker.port;
    const sw = await Spillway.connect(broker.url, { reconnectBackoffMs: 20 });
    const placements = new Map<string, Placement>();
    try {
      await sw.admin.createTopic('interval-topic', { partitions: 4, durability: 'interval' });
      await sw.admin.createTopic('always-topic', { partitions: 3, durability: 'always' });
      const producer = sw.producer({ lingerMs: 1 });
      for (const [topic, count] of [
        ['interval-topic', 20_000],
        ['always-topic', 5_000],
      ] as const) {
        const values = Array.from({ length: count }, (_, i) => `${topic}-${i}`);
        const sends = values.map((value, i) => producer.send(topic, { key: `key-${i % 37}`, value }));
        const acks = await Promise.all(sends);
        placements.set(topic, new Map(acks.map((ack, i) => [`${ack.partition}/${ack.offset}`, values[i]!])));
        expect(placements.get(topic)!.size).toBe(count);
      }
      await producer.close();
    } finally {
      await sw.close();
    }

    expect(await broker.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(broker.stderr).toContain('shutting down');
    broker = await BrokerProcess.start(['--data-dir', dataDir], { port });
    const again = await Spillway.connect(broker.url);
    try {
      for (const [topic, placement] of placements) {
        const consumed = await consumeAll(again, topic);
        expect(consumed.reduce((sum, list) => sum + list.length, 0)).toBe(placement.size);
        expectAllPlaced(placement, consumed);
        // Keyed messages keep their order per key.
        const lastIndexOfKey = new Map<string, number>();
        for (const list of consumed) {
          for (const message of list) {
            const index = Number(message.value!.toString().split('-').pop());
            const key = message.key!.toString();
            expect(index).toBeGreaterThan(lastIndexOfKey.get(key) ?? -1);
            lastIndexOfKey.set(key, index);
          }
        }
      }
    } finally {
      await again.close();
      expect((await broker.stop('SIGTERM')).code).toBe(0);
    }
  });

  it('SIGKILL while producing to an always topic: every acknowledged message is there after the restart', async () => {
    const dataDir = join(directory, 'killed');
    let broker = await BrokerProcess.start(['--data-dir', dataDir]);
    const port = broker.port;
    const sw = await Spillway.connect(broker.url, { requestTimeoutMs: 5000 });
    const placement: Placement = new Map();
    const sent = new Set<string>();
    let failed = 0;
    try {
      await sw.admin.createTopic('always-killed', { partitions: 4, durability: 'always' });
      // No retries: a send whose connection dies fails instead of being sent again after the restart.
      const producer = sw.producer({ lingerMs: 1, retries: 0, deliveryTimeoutMs: 10_000 });
      const windowMax = 2000;
      const sendsMax = 200_000;
      let inFlight = 0;
      let killed = false;
      let next = 0;
      const deadline = performance.now() + 10_000;
      const settled: Array<Promise<void>> = [];
      // Keep `windowMax` sends in flight; kill the broker once 3000 are acknowledged (mid-stream).
      while (!killed && next < sendsMax && performance.now() < deadline) {
        while (inFlight < windowMax && next < sendsMax) {
          const value = `v-${next}`;
          sent.add(value);
          inFlight++;
          settled.push(
            producer.send('always-killed', { key: `key-${next % 53}`, value }).then(
              (ack) => {
                inFlight--;
                placement.set(`${ack.partition}/${ack.offset}`, value);
              },
              () => {
                inFlight--;
                failed++;
              },
            ),
          );
          next++;
        }
        await new Promise((resolve) => setTimeout(resolve, 1));
        if (placement.size >= 3000) {
          process.kill(broker.pid, 'SIGKILL');
          killed = true;
        }
      }
      expect(killed).toBe(true);
      expect((await broker.stop('SIGKILL')).signal).toBe('SIGKILL');
      await Promise.all(settled);
      await producer.close().catch(() => undefined);
    } finally {
      await sw.close();
    }
    expect(placement.size).toBeGreaterThanOrEqual(3000);
    expect(placement.size + failed).toBe(sent.size);

    broker = await BrokerProcess.start(['--data-dir', dataDir], { port });
    const again = await Spillway.connect(broker.url);
    try {
      const consumed = await consumeAll(again, 'always-killed');
      expectAllPlaced(placement, consumed);
      // Anything beyond the acknowledged messages was sent by us (acknowledgement lost), once.
      const values = consumed.flat().map((message) => message.value!.toString());
      expect(values.filter((value) => !sent.has(value))).toEqual([]);
      expect(new Set(values).size).toBe(values.length);
      expect(values.length).toBeGreaterThanOrEqual(placement.size);
      console.log(`acked ${placement.size}, failed ${failed}, stored ${values.length}`);
    } finally {
      await again.close();
      expect((await broker.stop('SIGTERM')).code).toBe(0);
    }
  });
});
