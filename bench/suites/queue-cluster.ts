/**
 * Queues in a cluster (docs/CLUSTER.md "Built: shared and key_shared queues"): messages acked per
 * second through a shared queue group on three `spillway broker --cluster` processes and a private
 * etcd (test/cluster/etcd-server.ts), all on this machine. A topic of 3 partitions (RF 3,
 * minInSyncReplicas 2, durability `none`; their leaders spread over the brokers, so the queue service
 * on the leader of `__queue_state` reads two of them from other brokers through its remote readers)
 * holds N messages of 100 B (produced first, acks 'all'); C clients (connected to any broker: the
 * cluster client routes the queue requests to the queue service) consume with `mode: 'shared'` and
 * ack each message without awaiting. Time from the consumers' start to the last ack confirmed
 * (acks are on the in-sync replicas of `__queue_state`, durability `always`, before they are
 * confirmed). A new group per run; median of the runs. The single-broker figure is the `queues`
 * suite (in one process, no network): compare with care.
 * Skipped with an 'unavailable' row when etcd is not installed.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Etcd3 } from 'etcd3';
import { Spillway } from '../../src/client/index.js';
import type { QueueConsumer } from '../../src/client/queue-consumer.js';
import { ClusterAdmin } from '../../src/cluster/control/cluster-admin.js';
import { clusterNamespace } from '../../src/cluster/control/cluster-records.js';
import { etcdMissing, etcdSkipReason, startEtcd } from '../../test/cluster/etcd-server.js';
import { startConfiguredBroker } from '../peers/cluster-broker.js';
import { freePort, type ServerProcess } from '../peers/server-process.js';
import { type BenchContext, type BenchRow, type BenchSuite, median } from '../report.js';

const suiteName = 'queue-cluster';
const clusterName = 'bench-queue-cluster';
const topic = 'qc';
const partitions = 3;
const consumers = 2;
const waitBoundMs = 60_000;
const value = 'x'.repeat(100);

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits until every partition of `names` has a leader and 3 replicas in sync; returns the leaders. */
async function waitPlaced(url: string, names: string[]): Promise<Map<string, number>> {
  const deadline = performance.now() + waitBoundMs;
  for (;;) {
    const sw = await Spillway.connect(url, { connectTimeoutMs: 1000 }).catch(() => undefined);
    try {
      const metadata = await sw?.admin.metadata(names);
      const found = metadata?.partitions ?? [];
      const expected = names.reduce((sum, name) => sum + (name === topic ? partitions : 1), 0);
      if (found.length === expected && found.every((p) => p.leaderId > 0 && p.isr.length === 3)) {
        return new Map(found.map((p) => [`${p.topic}/${p.partition}`, p.leaderId]));
      }
    } catch {
      // not yet
    } finally {
      await sw?.close().catch(() => undefined);
    }
    if (performance.now() > deadline) throw new Error(`${suiteName}: timed out waiting for ${names} placed`);
    await sleep(100);
  }
}

async function fill(url: string, messages: number): Promise<void> {
  const sw = await Spillway.connect(url);
  try {
    const producer = sw.producer({ acks: 'all', lingerMs: 5 });
    const window = 20_000;
    for (let sent = 0; sent < messages; sent += window) {
      const count = Math.min(window, messages - sent);
      await Promise.all(
        Array.from({ length: count }, (_, index) =>
          producer.send(topic, { value, partition: (sent + index) % partitions }),
        ),
      );
    }
    await producer.close();
  } finally {
    await sw.close();
  }
}

/** Takes messages until the consumer is closed, acking each without awaiting. */
async function drain(consumer: QueueConsumer, onAcked: () => void): Promise<void> {
  for (;;) {
    const next = await consumer.next();
    if (next.done) return;
    next.value.ack().then(onAcked, () => undefined);
  }
}

async function consumeRun(urls: string[], group: string, messages: number): Promise<number> {
  const clients = await Promise.all(
    Array.from({ length: consumers }, (_, index) => Spillway.connect(urls[index % urls.length]!)),
  );
  try {
    let acked = 0;
    let allAcked: () => void = () => undefined;
    const done = new Promise<void>((resolve) => {
      allAcked = resolve;
    });
    const startedAt = performance.now();
    const queueConsumers = clients.map(
      (client) =>
        client.consumer({
          group,
          topics: [topic],
          mode: 'shared',
          maxMessages: 2000,
          bufferMessagesMax: 8192,
          maxWaitMs: 20,
        }) as QueueConsumer,
    );
    const loops = queueConsumers.map((consumer) =>
      drain(consumer, () => {
        if (++acked === messages) allAcked();
      }),
    );
    await done;
    const seconds = (performance.now() - startedAt) / 1000;
    await Promise.all(queueConsumers.map((consumer) => consumer.close()));
    await Promise.all(loops);
    return messages / seconds;
  } finally {
    await Promise.all(clients.map((client) => client.close().catch(() => undefined)));
  }
}

async function run(context: BenchContext): Promise<BenchRow[]> {
  if (etcdMissing) {
    return [
      { suite: suiteName, name: 'queue-cluster: unavailable', value: 0, unit: 'n/a', detail: etcdSkipReason },
    ];
  }
  const messages = context.quick ? 20_000 : 200_000;
  const runs = context.quick ? 1 : 3;
  const etcd = await startEtcd();
  const brokers: ServerProcess[] = [];
  const client = new Etcd3({ hosts: etcd.clientUrl });
  try {
    const urls: string[] = [];
    for (const id of [1, 2, 3]) {
      const port = await freePort();
      const dataDir = mkdtempSync(path.join(context.scratchDir, `queue-cluster-${id}-`));
      const url = `ws://127.0.0.1:${port}`;
      const configFile = path.join(dataDir, 'broker.json');
      writeFileSync(
        configFile,
        JSON.stringify({
          dataDir: path.join(dataDir, 'data'),
          host: '127.0.0.1',
          port,
          durability: 'none',
          cluster: etcd.url,
          brokerId: id,
          clusterName,
          clusterSessionTimeoutMs: 1000,
        }),
      );
      brokers.push(
        await startConfiguredBroker(
          id,
          url,
          configFile,
          path.join(context.scratchDir, `queue-cluster-${id}.log`),
        ),
      );
      urls.push(url);
    }
    const admin = new ClusterAdmin(client.namespace(clusterNamespace(clusterName)));
    await admin.createTopic(topic, {
      partitions,
      replicationFactor: 3,
      minInSyncReplicas: 2,
      config: { durability: 'none' },
    });
    const leaders = await waitPlaced(urls[0]!, [topic, '__queue_state']);
    await fill(urls[0]!, messages);
    const rates: number[] = [];
    for (let index = 0; index < runs; index++) {
      const rate = await consumeRun(urls, `bench-${index}`, messages);
      context.log(`${suiteName}: ${consumers} consumers: ${Math.round(rate)} msg/s acked`);
      rates.push(rate);
    }
    const queueLeader = leaders.get('__queue_state/0');
    const dataLeaders = Array.from({ length: partitions }, (_, p) => leaders.get(`${topic}/${p}`)).join(',');
    return [
      {
        suite: suiteName,
        name: `shared, per-message ack, 100 B, ${consumers} consumers, 3 brokers`,
        value: Math.round(median(rates)),
        unit: 'msg/s',
        detail: `${messages} messages, ${partitions} partitions RF 3 (leaders ${dataLeaders}; queue service on broker ${queueLeader}); runs ${rates.map((rate) => Math.round(rate)).join('/')}`,
      },
    ];
  } finally {
    client.close();
    for (const broker of brokers) await broker.stop().catch(() => undefined);
    await etcd.close();
  }
}

export const suite: BenchSuite = { name: suiteName, run };
