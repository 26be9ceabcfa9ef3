/**
 * Delayed messages in a cluster (docs/CLUSTER.md, "Built: delayed messages"), on three
 * `spillway broker --cluster` processes and a real etcd (session timeout 1 s). The delay service runs
 * on the leader of `__delay` (with `__delay_state`, `__delay_dead`); a delayed produce sent to the
 * target partition's leader is taken there (DELAY_SCHEDULE), and due messages fire through the
 * service's forwarder into partitions led by any broker.
 *
 * - messages into every partition (led by other brokers too) fire once each, none before its due time;
 * - the delay leader is SIGKILLed while messages are firing and others are pending: another broker
 *   leads the delay topics, recovers (fence scans through its forwarder) and every accepted message
 *   is in its partition exactly once, none early.
 * - DELAY_STATS from a client of a third broker is answered by the new delay leader.
 * About 10 s on this machine.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Spillway } from '../../src/client/index.js';
import { SpillwayError } from '../../src/errors.js';
import { originalDeliverAtHeader } from '../../src/protocol/reserved-headers.js';
import { etcdMissing, etcdSkipReason, startEtcd, type TestEtcd } from './etcd-server.js';
import { ClusterProcesses, waitFor } from './harness/cluster-processes.js';
import { readDecoded } from './harness/leader-router.js';

const topic = 'later';
const partitions = [0, 1, 2];
const delayTopics = ['__delay', '__delay_state', '__delay_dead'];

let etcd: TestEtcd;
let cluster: ClusterProcesses;

interface Fired {
  value: string;
  timestamp: number;
  dueMs: number;
}

/** Every record of topic/partition below the high watermark at `url`, with its fire time and due time. */
async function readFired(url: string, partition: number): Promise<Fired[]> {
  const { records } = await readDecoded(url, topic, partition);
  return records.map((record) => {
    const due = record.headers.find(([name]) => name === originalDeliverAtHeader)?.[1];
    return {
      value: Buffer.from(record.value ?? []).toString(),
      timestamp: record.timestamp,
      dueMs: due === undefined || due === null ? -1 : Number(Buffer.from(due).toString()),
    };
  });
}

async function leaderOf(name: string, partition = 0): Promise<number> {
  return waitFor(`a leader of ${name}/${partition}`, async () => {
    const record = (await cluster.partitions(name))[partition];
    return record !== undefined && record.leaderId > 0 ? record.leaderId : undefined;
  });
}

/** The broker leading all three delay topics (co-located), once they agree and differ from `not`. */
async function delayLeader(not = -1): Promise<number> {
  return waitFor('one leader of the delay topics', async () => {
    const leaders = await Promise.all(
      delayTopics.map(async (name) => (await cluster.partitions(name))[0]?.leaderId),
    );
    const first = leaders[0];
    return first !== undefined && first > 0 && first !== not && leaders.every((id) => id === first)
      ? first
      : undefined;
  });
}

/** Sends delayed `values` to `partition` through its leader, retrying what a leader change refuses. */
async function sendDelayed(
  partition: number,
  values: string[],
  dueMs: (index: number) => number,
): Promise<void> {
  await waitFor(
    `delayed sends to ${topic}/${partition}`,
    async () => {
      const leader = await leaderOf(topic, partition);
      const sw = await Spillway.connect(cluster.broker(leader).url, { clientId: `delay-${partition}` });
      try {
        const producer = sw.producer({ acks: 'all', lingerMs: 1 });
        await Promise.all(
          values.map((value, index) => producer.send(topic, { value, partition, deliverAt: dueMs(index) })),
        );
        await producer.close();
        return true;
      } catch (error) {
        if (error instanceof SpillwayError && error.retriable) return undefined;
        throw error;
      } finally {
        await sw.close().catch(() => undefined);
      }
    },
    20_000,
  );
}

/** Waits until every partition holds `expected` values of `prefix`, then checks once each, none early. */
async function expectFiredOnce(prefix: string, expected: number): Promise<void> {
  for (const partition of partitions) {
    const fired = await waitFor(
      `${expected} ${prefix} messages in ${topic}/${partition}`,
      async () => {
        const leader = await leaderOf(topic, partition);
        const all = await readFired(cluster.broker(leader).url, partition).catch(() => undefined);
        const mine = all?.filter((one) => one.value.startsWith(`${prefix}-${partition}-`));
        return mine !== undefined && mine.length >= expected ? mine : undefined;
      },
      25_000,
    );
    const values = fired.map((one) => one.value);
    expect(new Set(values).size, `${topic}/${partition}: no ${prefix} message twice`).toBe(values.length);
    expect(values.length).toBe(expected);
    for (const one of fired) {
      expect(one.dueMs, `${one.value} carries its due time`).toBeGreaterThan(0);
      expect(one.timestamp, `${one.value} fired at or after its due time`).toBeGreaterThanOrEqual(one.dueMs);
    }
  }
}

describe.skipIf(etcdMissing)(`delayed messages in a cluster (skipped if ${etcdSkipReason})`, () => {
  beforeAll(async () => {
    etcd = await startEtcd();
    cluster = await ClusterProcesses.start({
      etcd,
      brokerIds: [1, 2, 3],
      name: 'delay',
      sessionTimeoutMs: 1000,
      durability: 'interval',
    });
    await cluster.createTopic(topic, {
      partitions: partitions.length,
      replicationFactor: 3,
      minInSyncReplicas: 2,
      config: { durability: 'interval' },
    });
    await cluster.waitHealthy(topic, 3);
    for (const name of delayTopics) await cluster.waitHealthy(name, 3);
  }, 90_000);

  afterAll(async () => {
    await cluster?.close();
    await etcd?.close();
  });

  test('fire once into partitions led by any broker, none early; exactly once across a SIGKILL of the delay leader', async () => {
    try {
      const first = await delayLeader();
      const leaders = await Promise.all(partitions.map((partition) => leaderOf(topic, partition)));
      // The run is only meaningful when some target is led by another broker than the delay service's.
      expect(leaders.some((id) => id !== first)).toBe(true);

      const start = Date.now();
      await Promise.all(
        partitions.map((partition) =>
          sendDelayed(
            partition,
            Array.from({ length: 20 }, (_, i) => `a-${partition}-${i}`),
            () => start + 1500,
          ),
        ),
      );
      await expectFiredOnce('a', 20);

      // Due over the next 0.8-2 s (firing when the leader dies) and in 4 s (pending then).
      const now = Date.now();
      await Promise.all(
        partitions.map((partition) =>
          sendDelayed(
            partition,
            Array.from({ length: 80 }, (_, i) => `b-${partition}-${i}`),
            (i) => (i < 60 ? now + 800 + i * 20 : now + 4000),
          ),
        ),
      );
      const sentAt = Date.now();
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, now + 1200 - sentAt)));
      await cluster.kill(first);
      const second = await delayLeader(first);
      expect(second).not.toBe(first);
      await expectFiredOnce('b', 80);
      await expectFiredOnce('a', 20);
      // DELAY_STATS is routed to the delay service's broker from a client of any broker.
      const other = cluster.ids.find((id) => id !== first && id !== second)!;
      const stats = await waitFor('DELAY_STATS from the new delay leader', async () => {
        const sw = await Spillway.connect(cluster.broker(other).url);
        try {
          return await sw.admin.delayStats();
        } catch {
          return undefined;
        } finally {
          await sw.close().catch(() => undefined);
        }
      });
      expect(stats.pending).toBe(0);
      expect(stats.fired).toBeGreaterThanOrEqual(60); // at least the 4 s ones, fired by this term
    } catch (error) {
      for (const id of cluster.ids) console.log(`--- broker ${id}\n${cluster.logTail(id, 30)}`);
      throw error;
    }
  }, 90_000);
});
