/**
 * Group membership across a coordinator failover (src/broker/groups/group-coordinator.ts, docs/
 * CLUSTER.md "Group membership across a coordinator failover"): three `spillway broker --cluster`
 * processes on a real etcd (session timeout 1 s). A group consumer acks every message while a
 * producer (acks 'all') writes steadily; it commits only every 5 s, so most of what it acked is not
 * committed when the group coordinator's broker (the leader of `__consumer_offsets`) is SIGKILLed:
 * once while another broker leads the data partition, once (a fresh cluster) when the coordinator
 * leads it too (the data partition fails over as well, and the new coordinator's replica may show
 * less than the consumer read for a moment). The new coordinator restored the member: the consumer
 * keeps its member id, its generation and its partition with its position (it joined once), so no
 * message is delivered twice and none is lost.
 */
import { describe, expect, test } from 'vitest';
import { Spillway } from '../../src/client/index.js';
import type { MetadataPartition } from '../../src/protocol/cluster-metadata-api.js';
import { etcdMissing, etcdSkipReason } from './etcd-server.js';
import { useClusterProcesses } from './harness/cluster-fixture.js';
import { retrying, waitFor } from './harness/wait-for.js';

const cases = [
  { name: 'the coordinator (another broker leads the data partition)', coordinatorLeads: false },
  { name: 'the coordinator leading the data partition too', coordinatorLeads: true },
];

describe.skipIf(etcdMissing).each(cases)(
  `a group consumer across a SIGKILL of $name (skipped if ${etcdSkipReason})`,
  ({ coordinatorLeads }) => {
    const fixture = useClusterProcesses({
      brokerIds: [1, 2, 3],
      name: 'groups',
      sessionTimeoutMs: 1000,
      durability: 'interval',
    });
    const url = (id: number): string => fixture.cluster.broker(id).url;

    test('no message twice, none lost; the member keeps its id, generation and partition', async () => {
      const admin = await Spillway.connect(url(1));
      const placed = async (topic: string): Promise<MetadataPartition> =>
        waitFor(
          `${topic} in sync on three brokers`,
          async () => {
            const partition = (await admin.admin.metadata([topic])).partitions[0];
            return partition !== undefined && partition.leaderId > 0 && partition.isr.length === 3
              ? partition
              : undefined;
          },
          retrying,
        );
      const coordinatorId = (await placed('__consumer_offsets')).leaderId;
      // A data partition led by the coordinator or not, as the case asks (placement spreads leaders).
      let topic = '';
      let data: MetadataPartition | undefined;
      for (let attempt = 0; attempt < 8 && data === undefined; attempt++) {
        topic = `steady-${attempt}`;
        await admin.admin.createTopic(topic, { partitions: 1, replicationFactor: 3, minInSyncReplicas: 2 });
        const partition = await placed(topic);
        if ((partition.leaderId === coordinatorId) === coordinatorLeads) data = partition;
      }
      await admin.close();
      expect(data, `a data partition ${coordinatorLeads ? '' : 'not '}led by the coordinator`).toBeDefined();
      // The clients connect to a broker that lives: the data leader when it is not the coordinator.
      const leader = fixture.cluster.ids.find(
        (id) => id !== coordinatorId && (coordinatorLeads || id === data!.leaderId),
      )!;

      const producing = await Spillway.connect(url(leader), { clientId: 'producer' });
      const grouped = await Spillway.connect(url(leader), { clientId: 'steady-consumer' });
      const producer = producing.producer({ acks: 'all' });
      // The coordinator may not have created the new topic locally yet (UNKNOWN_TOPIC): try again.
      const consumer = await waitFor(
        'the consumer to join',
        async () => {
          const candidate = grouped.consumer({
            group: 'steady',
            topics: [topic],
            from: 'earliest',
            commitIntervalMs: 5_000,
            maxWaitMs: 100,
          });
          return candidate.ready().then(
            () => candidate,
            async () => {
              await candidate.close();
              return undefined;
            },
          );
        },
        retrying,
      );
      const read: number[] = [];
      const values = new Set<string>();
      const reading = (async () => {
        for await (const message of consumer) {
          read.push(message.offset);
          values.add(message.value?.toString('utf8') ?? '');
          await message.ack();
        }
      })().catch((error: unknown) => error);
      const memberBefore = consumer.member;
      const generationBefore = consumer.generation;

      const total = 600;
      const killAt = 200;
      const acked: number[] = [];
      let killedAtMs = 0;
      for (let sent = 0; sent < total; sent += 10) {
        if (sent === killAt) {
          // Most of what the consumer acked since its first commit is not committed yet (every 5 s).
          await waitFor(
            'the consumer to read what was sent',
            async () => (read.length >= sent ? true : undefined),
            retrying,
          );
          await fixture.cluster.kill(coordinatorId);
          killedAtMs = Date.now();
        }
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) => producer.send(topic, { value: `v${sent + i}` })),
        );
        for (const result of results) acked.push(result.offset);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const missing = (): number => {
        const seen = new Set(read);
        return acked.filter((offset) => !seen.has(offset)).length;
      };
      await waitFor(
        'the consumer to read every acknowledged message',
        async () => (missing() === 0 ? true : undefined),
        retrying,
      ).catch(() => undefined);
      const assignment = consumer.assignment();
      const successor = await waitFor(
        'the new coordinator',
        async () => {
          const sw = await Spillway.connect(url(leader));
          try {
            const partition = (await sw.admin.metadata(['__consumer_offsets'])).partitions[0];
            return partition !== undefined && partition.leaderId > 0 && partition.leaderId !== coordinatorId
              ? partition.leaderId
              : undefined;
          } finally {
            await sw.close();
          }
        },
        retrying,
      );
      await producing.close();
      await grouped.close();
      expect(await reading).toBeUndefined();

      expect(missing(), `acknowledged offsets not read (of ${acked.length})`).toBe(0);
      expect(read.length - new Set(read).size, 'offsets read twice').toBe(0);
      expect(read, 'offsets in order').toEqual([...read].sort((a, b) => a - b));
      expect(consumer.stats.joins, 'joins (1: the membership survived)').toBe(1);
      expect(consumer.member).toBe(memberBefore);
      expect(consumer.generation).toBe(generationBefore);
      expect(assignment.map((held) => held.partition)).toEqual([0]);
      console.log(
        `coordinator broker ${coordinatorId} (${coordinatorLeads ? 'leading' : 'not leading'} ${topic}) SIGKILLed ${Date.now() - killedAtMs} ms before the end; broker ` +
          `${successor} coordinates now; ${read.length} offsets read (${values.size} distinct values: more offsets are the ` +
          `producer's resends) for ${acked.length} acknowledged; ` +
          `member ${memberBefore} generation ${generationBefore}, ${consumer.stats.commits} commits`,
      );
    }, 90_000);
  },
);
