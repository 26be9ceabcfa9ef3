/**
 * Services following the leadership of their internal partition (src/cluster/state-services/,
 * docs/CLUSTER.md "Internal state logs as partitions"): three brokers in one process on a real etcd.
 * The controller creates `__consumer_offsets` as a cluster topic (RF 3) and METADATA names its
 * leader; group requests to another broker fail with NOT_COORDINATOR; a group commits offsets on the
 * coordinator (acknowledged once the in-sync replicas have them); the coordinator leaves; another
 * broker leads `__consumer_offsets` at a higher epoch, recovers the group from the replicated log and
 * the group continues from its committed offset there. Services not following leadership yet are
 * refused with a clear error.
 */
import { describe, expect, test } from 'vitest';
import { Spillway } from '../../src/client/index.js';
import type { MetadataPartition } from '../../src/protocol/cluster-metadata-api.js';
import { etcdMissing, etcdSkipReason } from './etcd-server.js';
import { InProcessCluster, type InProcessMember as Member, useEtcd } from './harness/cluster-fixture.js';
import { metadataPlacement } from './harness/placement.js';
import { waitFor } from './harness/wait-for.js';

describe.skipIf(etcdMissing)(
  `group coordination following __consumer_offsets (skipped if ${etcdSkipReason})`,
  () => {
    const fixture = useEtcd();
    /** The brokers still open (set by the test). */
    let members: Member[] = [];

    /** The partition as METADATA on `member` names it, once `accept` holds. */
    async function placement(
      member: Member,
      topic: string,
      accept: (partition: MetadataPartition) => boolean,
    ): Promise<MetadataPartition> {
      return metadataPlacement(member.url, topic, accept);
    }

    async function produce(member: Member, values: string[]): Promise<void> {
      // A leader among the brokers still running (METADATA may name the one that just left, for a moment).
      const leader = await placement(
        member,
        'events',
        (p) => p.leaderId > 0 && p.isr.length >= 2 && members.some((m) => m.id === p.leaderId),
      );
      const target = members.find((m) => m.id === leader.leaderId)!;
      const sw = await Spillway.connect(target.url);
      const producer = sw.producer({ acks: 'all' });
      await Promise.all(values.map((value) => producer.send('events', { value, partition: 0 })));
      await sw.close();
    }

    async function consume(member: Member, count: number): Promise<string[]> {
      const sw = await Spillway.connect(member.url);
      const consumer = sw.consumer({ group: 'billing', topics: ['events'], mode: 'group', from: 'earliest' });
      const values: string[] = [];
      for await (const message of consumer) {
        values.push(Buffer.from(message.value!).toString());
        await message.ack();
        if (values.length === count) break;
      }
      await consumer.close(); // commits what was acked
      await sw.close();
      return values;
    }

    test('offsets committed on the coordinator survive it leaving; NOT_COORDINATOR elsewhere', async () => {
      const started = Date.now();
      const mark = (what: string): void => {
        if (process.env['SPILLWAY_TEST_TRACE'] !== undefined)
          console.log(`${Date.now() - started} ms: ${what}`);
      };
      const cluster = await InProcessCluster.start({
        etcd: fixture.etcd,
        brokerIds: [1, 2, 3],
        name: 'state',
        durability: 'interval',
      });
      fixture.onClose(() => cluster.close());
      members = cluster.members;
      await members[0]!.broker.cluster!.node.admin.createTopic('events', {
        partitions: 1,
        replicationFactor: 3,
        minInSyncReplicas: 2,
        config: { durability: 'interval' },
      });
      const offsets = await placement(
        members[0]!,
        '__consumer_offsets',
        (p) => p.leaderId > 0 && p.isr.length === 3,
      );
      expect(offsets.replicas).toHaveLength(3);
      mark('__consumer_offsets placed');
      const coordinator = members.find((m) => m.id === offsets.leaderId)!;
      const others = members.filter((m) => m !== coordinator);
      await waitFor('the coordinator to start', () =>
        coordinator.broker.cluster!.services.leads('__consumer_offsets') ? true : undefined,
      );

      // Group requests are served by the coordinator only; unreplicated services are refused.
      // A client without cluster routing sees the refusal; a routed client connected to the same
      // broker is served (it sends group requests to the leader of __consumer_offsets).
      const elsewhere = await Spillway.connect(others[0]!.url, { clusterRouting: false });
      await expect(elsewhere.admin.listGroups()).rejects.toMatchObject({
        code: 'NOT_COORDINATOR',
        retriable: true,
      });
      await expect(elsewhere.admin.describeGroup('billing')).rejects.toMatchObject({
        code: 'NOT_COORDINATOR',
      });
      await elsewhere.close();
      const routed = await Spillway.connect(others[0]!.url);
      expect(Array.isArray(await routed.admin.listGroups())).toBe(true);
      await routed.close();
      mark('refusals checked');

      const sent = Array.from({ length: 60 }, (_, i) => `m${i}`);
      await produce(coordinator, sent.slice(0, 40));
      expect(await consume(coordinator, 30)).toEqual(sent.slice(0, 30));
      const before = await Spillway.connect(coordinator.url);
      const described = await before.admin.describeGroup('billing');
      expect(described.partitions.map((p) => p.committed)).toEqual([30]);
      await before.close();
      mark('30 consumed and committed');

      // The coordinator leaves: another in-sync replica of __consumer_offsets takes over.
      await cluster.leave(coordinator);
      const moved = await placement(
        others[0]!,
        '__consumer_offsets',
        (p) => p.leaderId > 0 && p.leaderId !== coordinator.id && p.leaderEpoch > offsets.leaderEpoch,
      );
      const successor = members.find((m) => m.id === moved.leaderId)!;
      mark('__consumer_offsets moved');
      await waitFor('the new coordinator to start', () =>
        successor.broker.cluster!.services.leads('__consumer_offsets') ? true : undefined,
      );
      const after = await Spillway.connect(successor.url);
      expect((await after.admin.describeGroup('billing')).partitions.map((p) => p.committed)).toEqual([30]);
      await after.close();
      mark('offsets found on the new coordinator');

      await produce(successor, sent.slice(40));
      expect(await consume(successor, 30)).toEqual(sent.slice(30));
      mark('the group continued');
    }, 90_000);
  },
);
