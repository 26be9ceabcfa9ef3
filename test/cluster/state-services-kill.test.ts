/**
 * The group coordinator's death (src/cluster/state-services/): three `spillway broker --cluster`
 * processes on a real etcd (session timeout 1 s). A group commits offsets on the coordinator (the
 * leader of `__consumer_offsets`); the coordinator is SIGKILLed; another in-sync replica leads
 * `__consumer_offsets` at a higher epoch, recovers the group from the replicated log, still has
 * every acknowledged commit, and the group continues from there.
 */
import { describe, expect, test } from 'vitest';
import { Spillway } from '../../src/client/index.js';
import type { MetadataPartition } from '../../src/protocol/cluster-metadata-api.js';
import { etcdMissing, etcdSkipReason } from './etcd-server.js';
import { useClusterProcesses } from './harness/cluster-fixture.js';
import { metadataPlacement } from './harness/placement.js';
import { waitFor } from './harness/wait-for.js';

describe.skipIf(etcdMissing)(`the group coordinator SIGKILLed (skipped if ${etcdSkipReason})`, () => {
  const fixture = useClusterProcesses({
    brokerIds: [1, 2, 3],
    name: 'kill',
    sessionTimeoutMs: 1000,
    durability: 'interval',
  });
  /** The brokers still running. */
  let live: number[] = [1, 2, 3];
  const url = (id: number): string => fixture.cluster.broker(id).url;

  async function placement(
    via: number,
    topic: string,
    accept: (partition: MetadataPartition) => boolean,
  ): Promise<MetadataPartition> {
    return metadataPlacement(url(via), topic, accept);
  }

  async function produce(via: number, values: string[]): Promise<void> {
    // A live leader: right after a kill the metadata may still name the killed broker for `events`
    // (its leadership moves in its own controller pass, after `__consumer_offsets`'s).
    const leader = await placement(via, 'events', (p) => live.includes(p.leaderId) && p.isr.length >= 2);
    const sw = await Spillway.connect(url(leader.leaderId));
    const producer = sw.producer({ acks: 'all' });
    await Promise.all(values.map((value) => producer.send('events', { value, partition: 0 })));
    await sw.close();
  }

  async function consume(member: number, count: number): Promise<string[]> {
    const sw = await Spillway.connect(url(member));
    const consumer = sw.consumer({ group: 'billing', topics: ['events'], mode: 'group', from: 'earliest' });
    const values: string[] = [];
    for await (const message of consumer) {
      values.push(Buffer.from(message.value!).toString());
      await message.ack();
      if (values.length === count) break;
    }
    await consumer.close(); // commits what was acked, answered once the in-sync replicas have it
    await sw.close();
    return values;
  }

  test('every acknowledged commit is on the new coordinator, and the group continues there', async () => {
    await fixture.cluster.createTopic('events', {
      partitions: 1,
      replicationFactor: 3,
      minInSyncReplicas: 2,
      config: { durability: 'interval' },
    });
    const offsets = await placement(
      live[0]!,
      '__consumer_offsets',
      (p) => p.leaderId > 0 && p.isr.length === 3,
    );
    const coordinator = live.find((id) => id === offsets.leaderId)!;
    const sent = Array.from({ length: 60 }, (_, i) => `m${i}`);
    await produce(coordinator, sent.slice(0, 40));
    // Right after the assignment the coordinator may still be starting (NOT_COORDINATOR until then).
    await waitFor(
      'the coordinator to serve groups',
      async () => {
        const sw = await Spillway.connect(url(coordinator));
        try {
          return await sw.admin.listGroups();
        } finally {
          await sw.close();
        }
      },
      { retryErrors: true, pollMs: 50 },
    );
    expect(await consume(coordinator, 30)).toEqual(sent.slice(0, 30));

    await fixture.cluster.kill(coordinator);
    live = live.filter((id) => id !== coordinator);
    const moved = await placement(
      live[0]!,
      '__consumer_offsets',
      (p) => p.leaderId > 0 && p.leaderId !== coordinator && p.leaderEpoch > offsets.leaderEpoch,
    );
    const successor = live.find((id) => id === moved.leaderId)!;
    const committed = await waitFor(
      'the group on the new coordinator',
      async () => {
        const sw = await Spillway.connect(url(successor));
        try {
          return (await sw.admin.describeGroup('billing')).partitions.map((p) => p.committed);
        } finally {
          await sw.close();
        }
      },
      { retryErrors: true, pollMs: 50 },
    );
    expect(committed).toEqual([30]);
    await produce(successor, sent.slice(40));
    expect(await consume(successor, 30)).toEqual(sent.slice(30));
  }, 120_000);
});
