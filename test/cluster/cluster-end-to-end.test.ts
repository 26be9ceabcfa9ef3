/**
 * The control plane and the data plane together (the default `Broker.open({ cluster })` wiring):
 * three brokers on a real etcd, a topic created in the cluster with replicationFactor 3 and
 * minInSyncReplicas 2; a client producing with `acks: 'all'` to the leader METADATA names; the
 * leader broker closed (its etcd session revoked); the controller elects a new leader from the ISR
 * with a higher epoch; the client produces to it; the new leader and the surviving follower hold
 * every acknowledged message once, in order, byte for byte the same log.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { freePort } from '../../bench/peers/server-process.js';
import { Spillway } from '../../src/client/index.js';
import { Broker } from '../../src/spillway-broker.js';
import { readAll } from '../broker/helpers.js';
import { etcdMissing, etcdSkipReason, startEtcd, type TestEtcd } from './etcd-server.js';

const waitBoundMs = 30_000;

async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + waitBoundMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

interface Member {
  id: number;
  broker: Broker;
  url: string;
}

let directory: string;
beforeAll(() => {
  directory = mkdtempSync(join(tmpdir(), 'spillway-cluster-e2e-'));
});
afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

describe.skipIf(etcdMissing)(
  `a replicated topic across a leader change (skipped if ${etcdSkipReason})`,
  () => {
    let etcd: TestEtcd;
    const members: Member[] = [];
    beforeAll(async () => {
      etcd = await startEtcd();
    });
    afterAll(async () => {
      for (const member of members) await member.broker.close().catch(() => undefined);
      await etcd?.close();
    });

    test('acks all survive the leader leaving; the new leader comes from the ISR with a higher epoch', async () => {
      for (const id of [1, 2, 3]) {
        const port = await freePort();
        const url = `ws://127.0.0.1:${port}`;
        const broker = await Broker.open({
          dataDir: join(directory, `broker-${id}`),
          durability: 'interval',
          cluster: {
            etcd: etcd.url,
            brokerId: id,
            advertise: url,
            name: 'e2e',
            sessionTimeoutMs: 1000,
            log: () => {},
          },
        });
        await broker.listen({ host: '127.0.0.1', port });
        members.push({ id, broker, url });
      }
      await members[0]!.broker.cluster!.node.admin.createTopic('orders', {
        partitions: 1,
        replicationFactor: 3,
        minInSyncReplicas: 2,
        config: { durability: 'interval' },
      });

      const probe = await Spillway.connect(members[0]!.url);
      const placed = await waitFor('a leader with all three replicas in sync', async () => {
        const metadata = await probe.admin.metadata(['orders']);
        const partition = metadata.partitions.find((p) => p.topic === 'orders' && p.partition === 0);
        return partition !== undefined && partition.leaderId > 0 && partition.isr.length === 3
          ? partition
          : undefined;
      });
      await probe.close();

      const sent: string[] = [];
      const produceTo = async (member: Member, from: number, count: number): Promise<void> => {
        const sw = await Spillway.connect(member.url);
        const producer = sw.producer({ acks: 'all' });
        const values = Array.from({ length: count }, (_, i) => `m${from + i}`);
        const results = await Promise.all(
          values.map((value) => producer.send('orders', { value, partition: 0 })),
        );
        for (const result of results) expect(result.partition).toBe(0);
        sent.push(...values);
        await sw.close();
      };

      const leader = members.find((member) => member.id === placed.leaderId)!;
      await produceTo(leader, 0, 300);

      // The leader leaves: its session is revoked at close, the controller elects another ISR member.
      await leader.broker.close();
      const survivors = members.filter((member) => member !== leader);
      const probe2 = await Spillway.connect(survivors[0]!.url);
      const moved = await waitFor('a new leader', async () => {
        const metadata = await probe2.admin.metadata(['orders']);
        const partition = metadata.partitions.find((p) => p.topic === 'orders' && p.partition === 0);
        return partition !== undefined &&
          partition.leaderId > 0 &&
          partition.leaderId !== leader.id &&
          partition.leaderEpoch > placed.leaderEpoch &&
          partition.isr.length >= 2
          ? partition
          : undefined;
      });
      await probe2.close();
      expect(placed.isr).toContain(moved.leaderId);

      const newLeader = survivors.find((member) => member.id === moved.leaderId)!;
      const follower = survivors.find((member) => member !== newLeader)!;
      // Producing to the old leader's address is impossible (closed); to the follower: NOT_LEADER.
      // Without routing (the client sends where it is connected): NOT_LEADER from the follower.
      const wrong = await Spillway.connect(follower.url, { clusterRouting: false });
      await expect(
        wrong.producer({ acks: 'all' }).send('orders', { value: 'x', partition: 0 }),
      ).rejects.toMatchObject({
        code: expect.stringMatching(/^(NOT_LEADER|FENCED_LEADER_EPOCH)$/),
      });
      await wrong.close();
      await produceTo(newLeader, 300, 300);

      expect(await readAll(newLeader.broker, 'orders', 0)).toEqual(sent);
      await waitFor('the follower to catch up', async () =>
        (await readAll(follower.broker, 'orders', 0)).length === sent.length ? true : undefined,
      );
      expect(await readAll(follower.broker, 'orders', 0)).toEqual(sent);
    }, 90_000);
  },
);
