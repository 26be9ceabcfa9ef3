/**
 * Msg-id dedup in a cluster (docs/CLUSTER.md, "Built: msg-id dedup"), on three
 * `spillway broker --cluster` processes and a real etcd (session timeout 1 s): each partition's
 * leader keeps the partition's msgId index and a new leader rebuilds it from the replicated log.
 *
 * - copies of acknowledged msgIds sent again to the leader are answered with the first copy's
 *   position and not written;
 * - after the leader of partition 0 is SIGKILLed, copies sent to the new leader are still folded
 *   (its index was rebuilt from its own replica of the log), and new msgIds are written once;
 * - every live replica holds each msgId once; a copy sent to the other partition is written there
 *   (in a cluster a msgId is recognised within its partition: the documented scope).
 */
import { beforeAll, describe, expect, test } from 'vitest';
import { Spillway } from '../../src/client/index.js';
import type { Producer, SendResult } from '../../src/client/producer.js';
import type { PartitionRecord } from '../../src/cluster/control/cluster-records.js';
import { etcdMissing, etcdSkipReason } from './etcd-server.js';
import { useClusterProcesses } from './harness/cluster-fixture.js';
import type { ClusterProcesses } from './harness/cluster-processes.js';
import { readPartition } from './harness/leader-router.js';
import { waitFor } from './harness/wait-for.js';

const topic = 'dd';
const partitions = [0, 1];
const count = 400;

/** Sends msgIds m<from>..m<to - 1>, message i to partition i % 2 with value `prefix` + i. */
function sendAll(producer: Producer, from: number, to: number, prefix: string): Promise<SendResult[]> {
  const sends: Array<Promise<SendResult>> = [];
  for (let i = from; i < to; i++) {
    sends.push(producer.send(topic, { value: `${prefix}${i}`, msgId: `m${i}`, partition: i % 2 }));
  }
  return Promise.all(sends);
}

describe.skipIf(etcdMissing)(`msg-id dedup in a cluster (skipped if ${etcdSkipReason})`, () => {
  const fixture = useClusterProcesses({ brokerIds: [1, 2, 3], name: 'dedup', sessionTimeoutMs: 1000 });
  let cluster: ClusterProcesses;
  beforeAll(async () => {
    cluster = fixture.cluster;
    await cluster.createTopic(topic, {
      partitions: partitions.length,
      replicationFactor: 3,
      minInSyncReplicas: 2,
      config: { durability: 'always', dedupWindowMs: 600_000 },
    });
    await cluster.waitHealthy(topic, 3);
    // Every leader serves the topic (the assignment in etcd can be ahead of a broker applying it).
    for (const partition of partitions) {
      await waitFor(`the leader of ${topic}/${partition} to serve it`, async () => {
        const record = (await cluster.partitions(topic))[partition];
        if (record === undefined || record.leaderId < 0) return undefined;
        return readPartition(cluster.broker(record.leaderId).url, topic, partition).catch(() => undefined);
      });
    }
  }, 90_000);

  test('copies folded by each leader and by a new leader after a SIGKILL; each msgId once on every replica', async () => {
    const before = (await cluster.partitions(topic))[0] as PartitionRecord;
    const leaderId = before.leaderId;
    const sw = await Spillway.connect(cluster.broker(leaderId).url, { clientId: 'dedup' });
    const producer = sw.producer({ acks: 'all', lingerMs: 1 });
    const first = await sendAll(producer, 0, count, 'v').catch((error: unknown) => {
      for (const id of cluster.ids) console.log(`--- broker ${id}\n${cluster.logTail(id, 30)}`);
      throw error;
    });
    expect(new Set(first.map((result) => `${result.partition}/${result.offset}`)).size).toBe(count);

    // Copies on the same leaders: answered with the first positions.
    const copies = await sendAll(producer, 0, count, 'copy');
    expect(copies).toEqual(first);

    // The leader of partition 0 dies; the new one rebuilds its index from its replica of the log.
    await cluster.kill(leaderId);
    const after = await waitFor('a new leader of dd/0', async () => {
      const record = (await cluster.partitions(topic))[0];
      return record !== undefined && record.leaderId > 0 && record.leaderId !== leaderId ? record : undefined;
    });
    expect(after.leaderEpoch).toBeGreaterThan(before.leaderEpoch);
    const againCopies = await sendAll(producer, 0, count, 'late');
    expect(againCopies).toEqual(first);
    // New msgIds after the failover are written once, and their copies folded.
    const fresh = await sendAll(producer, count, count + 100, 'v');
    expect(await sendAll(producer, count, count + 100, 'copy')).toEqual(fresh);

    // A msgId sent to the other partition is not recognised there (per-partition scope in a cluster).
    const crossed = await producer.send(topic, { value: 'crossed', msgId: 'm0', partition: 1 });
    expect(crossed.partition).toBe(1);
    expect(crossed.offset).not.toBe(first[0]!.offset);
    await producer.close();
    await sw.close();

    const live = cluster.ids.filter((id) => id !== leaderId);
    for (const partition of partitions) {
      const expected = [...first, ...fresh].filter((result) => result.partition === partition);
      const last = Math.max(...expected.map((result) => result.offset), partition === 1 ? crossed.offset : 0);
      for (const id of live) {
        const read = await waitFor(`broker ${id} to serve ${topic}/${partition} up to ${last}`, async () => {
          const answer = await readPartition(cluster.broker(id).url, topic, partition).catch(() => undefined);
          return answer !== undefined && answer.highWatermark > last ? answer : undefined;
        });
        const values = read.records.map((record) => record.value);
        const bad = read.records.filter(
          (record) => !record.value.startsWith('v') && record.value !== 'crossed',
        );
        if (bad.length > 0) {
          console.log(
            `broker ${id} p${partition} leader before ${leaderId} after ${after.leaderId}: ${bad.length} copies, first at ${bad[0]!.offset} (${bad[0]!.value}); first results ${JSON.stringify(first.slice(0, 4))}; log size ${read.records.length}`,
          );
          for (const one of cluster.ids) console.log(`--- broker ${one}\n${cluster.logTail(one, 30)}`);
        }
        expect(values.filter((value) => value.startsWith('copy') || value.startsWith('late'))).toEqual([]);
        expect(values.filter((value) => value.startsWith('v'))).toHaveLength(expected.length);
        expect(new Set(values).size, `broker ${id} p${partition}: no value twice`).toBe(values.length);
        for (const result of expected) {
          const record = read.records.find((one) => one.offset === result.offset);
          expect(record?.value.startsWith('v'), `broker ${id} ${partition}/${result.offset}`).toBe(true);
        }
        if (partition === 1) expect(values.filter((value) => value === 'crossed')).toHaveLength(1);
      }
    }
  }, 90_000);
});
