/**
 * Queues in a cluster when their messages go away under them (docs/PROTOCOL.md "Queues", Semantics:
 * Retention, Topic deleted): three brokers in one process on a real etcd. A one-replica topic led by
 * another broker than the queue service's (read through a remote reader) has 64 KiB segments and
 * retentionBytes 64 KiB:
 * - retention on its leader deletes unacked messages: the queue skips them (counted in
 *   `skippedByRetention`) and delivers everything from the leader's log start on;
 * - the topic is deleted in the cluster: receives answer UNKNOWN_TOPIC and the group's reader stops;
 *   created again with the name, the group starts afresh (offset 0, delivery count 1), not from the
 *   old floor.
 * About 5 s.
 */
import { describe, expect, test } from 'vitest';
import { assignReplicas } from '../../src/cluster/control/partition-planner.js';
import { encodeBatch } from '../../src/format/record-batch.js';
import type { ReceiveRequest } from '../../src/protocol/queue-api.js';
import { etcdMissing, etcdSkipReason } from './etcd-server.js';
import { InProcessCluster, type InProcessMember as Member, useEtcd } from './harness/cluster-fixture.js';
import { metadataPlacement } from './harness/placement.js';
import { waitFor } from './harness/wait-for.js';

const padding = 'p'.repeat(1000);

describe.skipIf(etcdMissing)(
  `queues under retention and topic deletion (skipped if ${etcdSkipReason})`,
  () => {
    const fixture = useEtcd();

    test('a remote partition: retention skips what is gone; a deleted topic answers UNKNOWN_TOPIC, created again it starts afresh', async () => {
      const cluster = await InProcessCluster.start({
        etcd: fixture.etcd,
        brokerIds: [1, 2, 3],
        name: 'queue-retention',
        durability: 'none',
      });
      fixture.onClose(() => cluster.close());
      const members = cluster.members;
      const queueState = await metadataPlacement(members[0]!.url, '__queue_state', (p) => p.leaderId > 0);
      const service = members.find((m) => m.id === queueState.leaderId)!;
      await waitFor('the queue service to start', () =>
        service.broker.cluster!.services.leads('__queue_state') ? true : undefined,
      );
      // A topic whose one replica is on another broker: the queue service reads it remotely.
      let n = 0;
      while (assignReplicas(`q-${n}`, 0, 1, [1, 2, 3])?.[0] === service.id) n++;
      const topic = `q-${n}`;
      const create = async (): Promise<Member> => {
        await members[0]!.broker.cluster!.node.admin.createTopic(topic, {
          partitions: 1,
          replicationFactor: 1,
          minInSyncReplicas: 1,
          config: { segmentBytes: 64 * 1024, retentionBytes: 64 * 1024 },
        });
        const placed = await metadataPlacement(members[0]!.url, topic, (p) => p.leaderId > 0);
        expect(placed.leaderId).not.toBe(service.id);
        return members.find((m) => m.id === placed.leaderId)!;
      };
      const leader = await create();
      const produce = async (from: number, to: number): Promise<void> => {
        const one = (offset: number) =>
          leader.broker.messages.produce(topic, 0, encodeBatch([{ value: `v${offset}${padding}` }]));
        // The leader may not have applied its new partition yet (UNKNOWN_TOPIC for a moment).
        await waitFor('the first produce', () => one(from).then(() => true), { retryErrors: true });
        for (let offset = from + 1; offset < to; offset++) await one(offset);
      };
      const session = service.broker.sessions.open({ kind: 'in-process', transport: null });
      const request = (overrides: Partial<ReceiveRequest> = {}): ReceiveRequest => ({
        group: 'g',
        topic,
        mode: 'shared',
        max: 1000,
        waitMs: 200,
        ackTimeoutMs: 600_000,
        ...overrides,
      });
      const receive = async (overrides: Partial<ReceiveRequest> = {}): Promise<number[]> =>
        (await service.broker.queues.receive(session, request(overrides))).partitions.flatMap(
          (p) => p.offsets,
        );

      // 20 delivered, never acked; then retention deletes them and more on the leader.
      await produce(0, 100);
      const first: number[] = [];
      await waitFor('20 deliveries', async () => {
        first.push(...(await receive({ max: 20 - first.length })));
        return first.length >= 20 ? true : undefined;
      });
      expect(first).toEqual(Array.from({ length: 20 }, (_, i) => i));
      await produce(100, 300);
      expect(leader.broker.applyRetention().deletedSegments).toBeGreaterThan(0);
      const logStart = leader.broker.topics.describe(topic).partitions[0]!.logStartOffset;
      expect(logStart).toBeGreaterThan(20);
      // The reader hears of the new log start with its next FETCH answer (one more message): until then
      // what it cached before may still be delivered (it was read before retention deleted it).
      await produce(300, 301);
      await waitFor('the skip', () =>
        service.broker.queues.describe('g')[0]!.partitions[0]!.skippedByRetention > 0 ? true : undefined,
      );
      const rest: number[] = [];
      await waitFor('the rest from the log start', async () => {
        const got = await receive();
        rest.push(...got);
        if (got.length > 0)
          await service.broker.queues.ack('g', topic, [
            { partition: 0, ranges: got.flatMap((offset) => [offset, offset + 1]) },
          ]);
        return rest.length > 0 && rest.at(-1) === 300 ? true : undefined;
      });
      expect(rest).toEqual(Array.from({ length: 301 - logStart }, (_, i) => logStart + i));
      expect(service.broker.queues.describe('g')[0]!.partitions[0]).toMatchObject({
        ackFloor: 301,
        inFlight: 0,
        skippedByRetention: logStart,
      });
      const sources = service.broker.cluster!.services.queueSources;
      expect(sources.readers).toBe(1);

      // The topic is deleted in the cluster: UNKNOWN_TOPIC, the reader stops.
      await members[0]!.broker.cluster!.node.admin.deleteTopic(topic);
      await waitFor('UNKNOWN_TOPIC', async () => {
        const code = await receive().then(
          () => undefined,
          (error: { code?: string }) => error.code,
        );
        return code === 'UNKNOWN_TOPIC' ? true : undefined;
      });
      expect(service.broker.queues.describe('g')).toEqual([]);
      expect(sources.readers).toBe(0);

      // Created again with the name: another topic, with none of the old one's data (the old local
      // partitions are removed first: its offsets start at 0 again); the group starts afresh from the
      // partition's log start (delivery counts 1), not from its old floor (301).
      const again = await create();
      expect(again.id).toBe(leader.id);
      await waitFor('the new topic known to the queue service', () =>
        service.broker.cluster!.services.queueSources.partitionCount(topic) === 1 ? true : undefined,
      );
      await produce(301, 304);
      const start = leader.broker.topics.describe(topic).partitions[0]!.logStartOffset;
      const fresh: Array<[number, number]> = [];
      await waitFor('the new topic consumed', async () => {
        const result = await service.broker.queues.receive(session, request()).catch(() => null);
        for (const partition of result?.partitions ?? [])
          partition.offsets.forEach((offset, i) => {
            fresh.push([offset, partition.deliveryCounts[i]!]);
          });
        return fresh.length >= 3 ? true : undefined;
      });
      expect(start).toBe(0);
      expect(fresh).toEqual(Array.from({ length: 3 }, (_, i) => [i, 1]));
    }, 60_000);
  },
);
