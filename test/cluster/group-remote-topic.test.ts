/**
 * A consumer group on a topic its coordinator holds no replica of (three brokers in one process on
 * a real etcd, topics with replicationFactor 1). The coordinator plans the group's partitions from
 * the cluster's records (BrokerTopics.partitionCount), not from a local copy it does not have; it
 * answers GROUP_FETCH with a FETCH on the partition's leader and bounds commits by that leader's high
 * watermark (src/cluster/remote-reads/leader-fetch.ts). Checked: JOIN is answered, the member reads
 * every message, the committed offsets are there for the next member, a partition added online
 * reaches a member that stays (the coordinator hears of the record's growth: without that hook the
 * member never gets it), and a topic the cluster does not have is UNKNOWN_TOPIC. Before: JOIN got NOT_LEADER until the client's reroute timeout; with
 * the JOIN alone fixed, GROUP_FETCH waited for ever; with the reads fixed, commits failed (NOT_LEADER)
 * and the next member began at the start again.
 */
import { describe, expect, test } from 'vitest';
import { Spillway } from '../../src/client/index.js';
import { etcdMissing, etcdSkipReason } from './etcd-server.js';
import { InProcessCluster, useEtcd } from './harness/cluster-fixture.js';
import { metadataPlacement } from './harness/placement.js';
import { waitFor } from './harness/wait-for.js';

describe.skipIf(etcdMissing)(
  `a group on a topic its coordinator does not hold (skipped if ${etcdSkipReason})`,
  () => {
    const fixture = useEtcd();

    test('JOIN, consume and commit through a coordinator without a replica of the topic', async () => {
      const cluster = await InProcessCluster.start({
        etcd: fixture.etcd,
        brokerIds: [1, 2, 3],
        name: 'group-remote',
        durability: 'none',
      });
      fixture.onClose(() => cluster.close());
      const [first] = cluster.members;
      const offsets = await metadataPlacement(
        first!.url,
        '__consumer_offsets',
        (p) => p.leaderId > 0 && p.isr.length === 3,
      );
      const coordinator = cluster.members.find((m) => m.id === offsets.leaderId)!;
      await waitFor('the coordinator to start', () =>
        coordinator.broker.cluster!.services.leads('__consumer_offsets') ? true : undefined,
      );
      // Three one-replica topics land on three brokers' least loaded spots: take one the coordinator
      // does not hold.
      const names = ['far-a', 'far-b', 'far-c'];
      for (const name of names)
        await first!.broker.cluster!.node.admin.createTopic(name, { partitions: 1, replicationFactor: 1 });
      const placements = await Promise.all(
        names.map((name) => metadataPlacement(first!.url, name, (p) => p.leaderId > 0)),
      );
      const far = placements.find((p) => !p.replicas.includes(coordinator.id));
      if (far === undefined)
        throw new Error(`every test topic has a replica on the coordinator ${coordinator.id}`);
      const topic = far.topic;
      await waitFor('the topic applied on its leader', () =>
        cluster.members.find((m) => m.id === far.leaderId)!.broker.topics.topicIfExists(topic) !== undefined
          ? true
          : undefined,
      );
      expect(coordinator.broker.topics.topicIfExists(topic)).toBeUndefined();

      const leaderOf = async (partition: number): Promise<number | undefined> => {
        const description = await first!.broker.cluster!.node.admin.describe(topic);
        const leader = description.partitions[partition]?.leaderId;
        return leader !== undefined && leader > 0 ? leader : undefined;
      };
      const producerClient = await Spillway.connect(first!.url);
      const producer = producerClient.producer({ acks: 'all' });
      const values = Array.from({ length: 20 }, (_, i) => `v${i}`);
      await Promise.all(values.map((value) => producer.send(topic, { value })));

      /** A new member of the group 'far-readers', connected to the coordinator. */
      const joinReaders = async () => {
        const sw = await Spillway.connect(coordinator.url, { rerouteTimeoutMs: 10_000 });
        return {
          sw,
          consumer: sw.consumer({ group: 'far-readers', topics: [topic], mode: 'group', from: 'earliest' }),
        };
      };
      const consume = async (count: number): Promise<string[]> => {
        const { sw, consumer } = await joinReaders();
        const seen: string[] = [];
        try {
          for await (const message of consumer) {
            seen.push(Buffer.from(message.value!).toString());
            await message.ack();
            if (seen.length === count) break;
          }
        } finally {
          await consumer.close(); // commits what was acked
          await sw.close();
        }
        return seen;
      };
      expect(await consume(10)).toEqual(values.slice(0, 10));
      // The next member of the group starts at the committed offset.
      expect(await consume(10)).toEqual(values.slice(10));

      // Partitions added online reach a member that stays: the coordinator hears of the record's growth.
      const { sw: member, consumer: stays } = await joinReaders();
      await stays.ready();
      await first!.broker.cluster!.node.admin.addPartitions(topic, 1);
      await waitFor('the new partition led', () => leaderOf(1));
      await producer.send(topic, { value: 'in-the-new-partition', partition: 1 });
      for await (const message of stays) {
        await message.ack();
        if (message.partition === 1) {
          expect(Buffer.from(message.value!).toString()).toBe('in-the-new-partition');
          break;
        }
      }
      await stays.close();
      await member.close();

      const unknown = await Spillway.connect(coordinator.url, { rerouteTimeoutMs: 10_000 });
      const consumer = unknown.consumer({ group: 'nobody', topics: ['no-such-topic'], mode: 'group' });
      await expect(consumer.ready()).rejects.toMatchObject({ code: 'UNKNOWN_TOPIC' });
      await consumer.close().catch(() => {});
      await unknown.close();
      await producerClient.close();
    }, 120_000);
  },
);
