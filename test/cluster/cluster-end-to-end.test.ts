/**
 * The control plane and the data plane together (the default `Broker.open({ cluster })` wiring):
 * three brokers on a real etcd, a topic created in the cluster with replicationFactor 3 and
 * minInSyncReplicas 2; a client producing with `acks: 'all'` to the leader METADATA names; the
 * leader broker closed (its etcd session revoked); the controller elects a new leader from the ISR
 * with a higher epoch; the client produces to it; the new leader and the surviving follower hold
 * every acknowledged message once, in order, byte for byte the same log.
 */
import { describe, expect, test } from 'vitest';
import { Spillway } from '../../src/client/index.js';
import { readAll } from '../broker/helpers.js';
import { etcdMissing, etcdSkipReason } from './etcd-server.js';
import { InProcessCluster, type InProcessMember as Member, useEtcd } from './harness/cluster-fixture.js';
import { metadataPlacement } from './harness/placement.js';
import { waitFor, whenBrokersLive } from './harness/wait-for.js';

describe.skipIf(etcdMissing)(
  `a replicated topic across a leader change (skipped if ${etcdSkipReason})`,
  () => {
    const fixture = useEtcd();

    test('acks all survive the leader leaving; the new leader comes from the ISR with a higher epoch', async () => {
      const cluster = await InProcessCluster.start({
        etcd: fixture.etcd,
        brokerIds: [1, 2, 3],
        name: 'e2e',
        durability: 'interval',
      });
      fixture.onClose(() => cluster.close());
      const members = cluster.members;
      // Under load a broker's 1 s session may lapse for a moment: wait for its three brokers.
      await whenBrokersLive(() =>
        members[0]!.broker.cluster!.node.admin.createTopic('orders', {
          partitions: 1,
          replicationFactor: 3,
          minInSyncReplicas: 2,
          config: { durability: 'interval' },
        }),
      );

      const placed = await metadataPlacement(
        members[0]!.url,
        'orders',
        (partition) => partition.leaderId > 0 && partition.isr.length === 3,
      );

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
      await cluster.leave(leader);
      const survivors = [...members];
      const moved = await metadataPlacement(
        survivors[0]!.url,
        'orders',
        (partition) =>
          partition.leaderId > 0 &&
          partition.leaderId !== leader.id &&
          partition.leaderEpoch > placed.leaderEpoch &&
          partition.isr.length >= 2,
      );
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
