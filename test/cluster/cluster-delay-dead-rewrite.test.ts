/**
 * The delay service's dead letters and its forward rewrite in a cluster (docs/CLUSTER.md, "Built:
 * delayed messages"; docs/STATE.md "Delayed messages"), on three `spillway broker --cluster`
 * processes and a real etcd, `__delay` in 64 KiB segments (config `delaySegmentBytes`). The delay
 * service runs on the leader of `__delay`; the targets are led by any broker.
 *
 * - dead letters: messages due into a topic deleted before they are due, and into one deleted and
 *   created again, go to `__delay_dead` with their reason and target (as on one broker), replicated
 *   to every replica of `__delay_dead`; the topic created again holds none of them, nor its old data.
 * - rewrite: a year-ahead and an hour-ahead message in `__delay`'s first segment and ~1 MiB of short
 *   delays behind them: the leader's `__delay` stays a few segments (the far messages are moved to
 *   the log end), and so do the followers' replicas; after a SIGKILL of the delay leader the new
 *   one holds exactly the two far messages pending and every short message was fired once.
 * About 20 s on this machine.
 */
import { describe, expect, test } from 'vitest';
import { Spillway } from '../../src/client/index.js';
import { SpillwayError } from '../../src/errors.js';
import type { DelayStats } from '../../src/protocol/delay-api.js';
import { delayDeadReasonHeader, delayTargetHeader } from '../../src/protocol/reserved-headers.js';
import { etcdMissing, etcdSkipReason } from './etcd-server.js';
import { useClusterProcesses } from './harness/cluster-fixture.js';
import { readDecoded } from './harness/leader-router.js';
import { retrying, waitFor } from './harness/wait-for.js';

const segmentBytes = 64 * 1024;
const delayTopics = ['__delay', '__delay_state', '__delay_dead'];
const text = (bytes: Uint8Array | null | undefined): string => Buffer.from(bytes ?? []).toString();

describe.skipIf(etcdMissing)(
  `delay dead letters and rewrite in a cluster (skipped if ${etcdSkipReason})`,
  () => {
    const fixture = useClusterProcesses({
      brokerIds: [1, 2, 3],
      name: 'delay-dead',
      sessionTimeoutMs: 1000,
      durability: 'interval',
      config: { delaySegmentBytes: segmentBytes },
    });
    const url = (id: number): string => fixture.cluster.broker(id).url;

    /** The broker leading all three delay topics once they agree (and differ from `not`). */
    const delayLeader = (not = -1): Promise<number> =>
      waitFor(
        'one leader of the delay topics',
        async () => {
          // The controller may not have created the delay topics yet (UNKNOWN_TOPIC): not yet.
          const leaders = await Promise.all(
            delayTopics.map(async (name) => (await fixture.cluster.partitions(name))[0]?.leaderId),
          );
          const first = leaders[0];
          return first !== undefined && first > 0 && first !== not && leaders.every((id) => id === first)
            ? first
            : undefined;
        },
        retrying,
      );

    /** DELAY_STATS through a client of broker `via` (routed to the delay service). */
    const delayStats = (via: number): Promise<DelayStats> =>
      waitFor(
        'DELAY_STATS',
        async () => {
          const sw = await Spillway.connect(url(via));
          try {
            return await sw.admin.delayStats();
          } finally {
            await sw.close().catch(() => undefined);
          }
        },
        retrying,
      );

    /** Sends `messages` through a client of `via`, retrying what a leader change refuses. */
    const send = async (
      via: number,
      messages: Array<{ topic: string; partition: number; value: string; deliverAt?: number }>,
    ): Promise<void> => {
      const sw = await Spillway.connect(url(via), { clientId: 'delay-sender' });
      try {
        const producer = sw.producer({ acks: 'all', lingerMs: 1 });
        await Promise.all(
          messages.map(({ topic, ...message }) =>
            producer.send(topic, message).catch((error: unknown) => {
              if (error instanceof SpillwayError && error.retriable) return producer.send(topic, message);
              throw error;
            }),
          ),
        );
        await producer.close();
      } finally {
        await sw.close();
      }
    };

    test('due into a deleted topic, or one created again: __delay_dead on every replica, with the reason', async () => {
      const delay = await delayLeader();
      const other = fixture.cluster.ids.find((id) => id !== delay)!;
      const sw = await Spillway.connect(url(other));
      try {
        for (const topic of ['gone', 'again']) {
          await sw.admin.createTopic(topic, { partitions: 3, replicationFactor: 2, minInSyncReplicas: 1 });
        }
        const leaders = (await fixture.cluster.partitions('gone')).map((record) => record?.leaderId);
        expect(
          leaders.some((id) => id !== delay),
          'a target led by another broker',
        ).toBe(true);
        const dueMs = Date.now() + 3000;
        await send(other, [
          ...[0, 1, 2].flatMap((partition) => [
            { topic: 'gone', partition, value: `gone-${partition}`, deliverAt: dueMs },
            { topic: 'again', partition, value: `again-${partition}`, deliverAt: dueMs },
            // Plain data of the first `again`: the topic created again must not show it.
            { topic: 'again', partition, value: `old-${partition}` },
          ]),
        ]);
        await sw.admin.deleteTopic('gone');
        await sw.admin.deleteTopic('again');
        await sw.admin.createTopic('again', { partitions: 3, replicationFactor: 2, minInSyncReplicas: 1 });

        const deadLeader = (await fixture.cluster.partitions('__delay_dead'))[0]!;
        const dead = await waitFor(
          'six dead letters',
          async () => {
            const { records } = await readDecoded(url(deadLeader.leaderId), '__delay_dead', 0);
            return records.length >= 6 ? records : undefined;
          },
          { ...retrying, boundMs: 20_000 },
        );
        const header = (record: (typeof dead)[number], name: string): string =>
          text(record.headers.find(([key]) => key === name)?.[1]);
        expect(
          dead
            .map((record) => [
              text(record.value),
              header(record, delayDeadReasonHeader),
              header(record, delayTargetHeader),
            ])
            .sort(),
        ).toEqual([
          ['again-0', 'the target topic was deleted and created again', 'again/0'],
          ['again-1', 'the target topic was deleted and created again', 'again/1'],
          ['again-2', 'the target topic was deleted and created again', 'again/2'],
          ['gone-0', 'the target topic was deleted', 'gone/0'],
          ['gone-1', 'the target topic was deleted', 'gone/1'],
          ['gone-2', 'the target topic was deleted', 'gone/2'],
        ]);
        // Replicated: every replica of __delay_dead serves the same six (up to its high watermark).
        for (const replica of deadLeader.replicas) {
          const copy = await waitFor(
            `__delay_dead on broker ${replica}`,
            async () => {
              const { records } = await readDecoded(url(replica), '__delay_dead', 0);
              return records.length >= 6 ? records : undefined;
            },
            retrying,
          );
          expect(copy.map((record) => text(record.value)).sort()).toEqual(
            dead.map((record) => text(record.value)).sort(),
          );
        }
        // The topic created again: nothing fired into it, none of the first topic's data.
        const again = await fixture.cluster.waitHealthy('again', 2);
        for (const [partition, record] of again.entries()) {
          const { records } = await readDecoded(url(record.leaderId), 'again', partition);
          expect(
            records.map((one) => text(one.value)),
            `again/${partition}`,
          ).toEqual([]);
        }
        const stats = await delayStats(other);
        expect(stats.pending).toBe(0);
      } catch (error) {
        for (const id of fixture.cluster.ids)
          console.log(`--- broker ${id}\n${fixture.cluster.logTail(id, 30)}`);
        throw error;
      } finally {
        await sw.close();
      }
    }, 90_000);

    test('the rewrite keeps __delay a few segments on the leader and the followers; exactly once across a SIGKILL', async () => {
      const delay = await delayLeader();
      const others = fixture.cluster.ids.filter((id) => id !== delay);
      const admin = await Spillway.connect(url(others[0]!));
      await admin.admin.createTopic('soon', { partitions: 3, replicationFactor: 3, minInSyncReplicas: 2 });
      await admin.close();
      const placed = await fixture.cluster.waitHealthy('soon', 3);
      // The short delays go to a partition another broker leads (fired through the forwarder).
      const partition = placed.findIndex((record) => record.leaderId !== delay);
      expect(partition).toBeGreaterThanOrEqual(0);
      const t0 = Date.now();
      await send(others[0]!, [
        { topic: 'soon', partition, value: 'year', deliverAt: t0 + 365 * 86_400_000 },
        { topic: 'soon', partition, value: 'hour', deliverAt: t0 + 3_600_000 },
      ]);
      const filler = 'x'.repeat(500);
      let sent = 0;
      // ~1.2 MiB of messages due 200 ms ahead (19 segments' worth), 40 per send.
      for (let round = 0; round < 60; round++) {
        const dueMs = Date.now() + 200;
        await send(
          others[round % others.length]!,
          Array.from({ length: 40 }, (_, i) => ({
            topic: 'soon',
            partition,
            value: `short-${round}-${i}-${filler}`,
            deliverAt: dueMs,
          })),
        );
        sent += 40;
      }
      const sizes = async (id: number): Promise<number> => {
        const sw = await Spillway.connect(url(id));
        try {
          return (await sw.admin.describeTopic('__delay')).partitions[0]!.sizeBytes;
        } finally {
          await sw.close();
        }
      };
      // Every short message fired (read from the partition: DELAY_STATS counts per term, and under
      // load the service may move), then the cleanup (once a second) with its rewrite cut __delay
      // down on the delay leader: without the rewrite the year-ahead message would pin its first
      // segment and every one behind it.
      const leaderOfSoon = (): Promise<number> =>
        waitFor(
          'a leader of soon',
          async () => {
            const record = (await fixture.cluster.partitions('soon'))[partition];
            return record !== undefined && record.leaderId > 0 && fixture.cluster.running(record.leaderId)
              ? record.leaderId
              : undefined;
          },
          retrying,
        );
      const shortOnes = (values: string[]): number =>
        values.filter((value) => value.startsWith('short-')).length;
      await waitFor(
        'every short message fired',
        async () => {
          const { records } = await readDecoded(url(await leaderOfSoon()), 'soon', partition);
          return shortOnes(records.map((record) => text(record.value))) >= sent ? true : undefined;
        },
        { ...retrying, pollMs: 200, boundMs: 30_000 },
      );
      let last: DelayStats | undefined;
      let current = delay;
      const settled = await waitFor(
        '__delay cut down on the delay leader',
        async () => {
          current = await delayLeader();
          last = await delayStats(current);
          return last.pending === 2 && last.delayLogBytes < 6 * segmentBytes ? last : undefined;
        },
        { ...retrying, pollMs: 200, boundMs: 30_000 },
      ).catch((error: unknown) => {
        console.log(`--- broker ${current} (delay leader)\n${fixture.cluster.logTail(current, 60)}`);
        throw new Error(`${String(error)}; the last DELAY_STATS: ${JSON.stringify(last)}`);
      });
      expect(settled).toMatchObject({ pending: 2, later: 1, withinHour: 1 });
      // The followers' replicas of __delay are cut down as the leader's is.
      for (const id of fixture.cluster.ids.filter((one) => one !== current)) {
        const bytes = await waitFor(
          `broker ${id}'s replica of __delay cut down`,
          async () => {
            const size = await sizes(id);
            return size < 6 * segmentBytes ? size : undefined;
          },
          { ...retrying, boundMs: 15_000 },
        ).catch(async () => sizes(id));
        expect(bytes, `broker ${id}'s replica of __delay`).toBeLessThan(6 * segmentBytes);
      }

      await fixture.cluster.kill(current);
      const next = await delayLeader(current);
      const stats = await waitFor(
        'the new delay leader recovered',
        async () => {
          const candidate = await delayStats(next);
          return candidate.pending === 2 ? candidate : undefined;
        },
        { ...retrying, boundMs: 30_000 },
      );
      expect(stats).toMatchObject({ pending: 2, later: 1, withinHour: 1, nextDueMs: t0 + 3_600_000 });
      // Every short message once in its partition (read from its leader now), the far ones not yet.
      const leader = await leaderOfSoon();
      const { records } = await readDecoded(url(leader), 'soon', partition);
      const values = records.map((record) => text(record.value));
      expect(new Set(values).size, 'no message twice').toBe(values.length);
      expect(shortOnes(values)).toBe(sent);
      expect(values.filter((value) => value === 'year' || value === 'hour')).toEqual([]);
    }, 120_000);
  },
);
