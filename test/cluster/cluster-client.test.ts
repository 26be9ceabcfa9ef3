/**
 * The client in a cluster (src/client/cluster-transport.ts) and topic admin through etcd
 * (src/cluster/control/cluster-topics.ts), on three `spillway broker --cluster` processes and a real
 * etcd (session timeout 1 s):
 *
 * - topics created with the CLI and the client on any broker, with `--replication-factor` /
 *   `--min-insync`, described the same by every broker (leaders, ISR); bad placement is a typed error.
 * - a producer with `acks: 'all'`, a log consumer and a group consumer ride through a SIGKILL of the
 *   partition's leader: no send rejects, every acknowledged message is read once, in order, at its
 *   acknowledged offset, by both consumers.
 */
import { describe, expect, test } from 'vitest';
import { Spillway } from '../../src/client/index.js';
import type { SendResult } from '../../src/client/producer.js';
import { runCli } from '../cli/cli-process.js';
import { etcdMissing, etcdSkipReason } from './etcd-server.js';
import { useClusterProcesses } from './harness/cluster-fixture.js';
import { retrying, waitFor } from './harness/wait-for.js';

interface Member {
  id: number;
  url: string;
}

describe.skipIf(etcdMissing)(`clients and admin in a cluster (skipped if ${etcdSkipReason})`, () => {
  // The CLI's default durability (interval), as a broker started without --durability.
  const fixture = useClusterProcesses({
    brokerIds: [1, 2, 3],
    name: 'client',
    sessionTimeoutMs: 1000,
    durability: 'interval',
  });
  const members: Member[] = [1, 2, 3].map((id) => ({
    id,
    get url(): string {
      return fixture.cluster.broker(id).url;
    },
  }));

  test('topic create with the CLI and the client on any broker; every broker describes it', async () => {
    const created = await runCli(
      [
        'topic',
        'create',
        'cli-made',
        '--partitions',
        '3',
        '--replication-factor',
        '3',
        '--min-insync',
        '2',
        '--broker',
        members[1]!.url,
      ],
      { timeoutMs: 30_000 },
    );
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    const description = JSON.parse(created.stdout) as {
      replicationFactor: number;
      minInSyncReplicas: number;
      partitions: Array<{ leaderId: number; replicas: number[]; isr: number[] }>;
    };
    expect(description.replicationFactor).toBe(3);
    expect(description.minInSyncReplicas).toBe(2);
    expect(description.partitions).toHaveLength(3);
    for (const partition of description.partitions) {
      expect(partition.replicas.sort()).toEqual([1, 2, 3]);
      expect(partition.replicas).toContain(partition.leaderId);
    }

    // The client, on another broker: a second topic with the default placement; the first, seen from here.
    const sw = await Spillway.connect(members[2]!.url);
    try {
      const made = await sw.admin.createTopic('client-made', { partitions: 2, replicationFactor: 2 });
      expect(made.replicationFactor).toBe(2);
      expect(made.minInSyncReplicas).toBe(2);
      expect(made.partitions.every((p) => p.leaderId !== undefined && p.leaderId > 0)).toBe(true);
      const seen = await waitFor(
        'broker 3 to see cli-made',
        async () => {
          const topic = await sw.admin.describeTopic('cli-made');
          return topic.partitions.every((p) => (p.leaderId ?? -1) > 0) ? topic : undefined;
        },
        retrying,
      );
      expect(seen.replicationFactor).toBe(3);
      expect((await sw.admin.listTopics()).map((topic) => topic.name)).toEqual(
        expect.arrayContaining(['cli-made', 'client-made']),
      );
      // Typed errors: an existing topic (created on another broker), more replicas than brokers.
      await expect(sw.admin.createTopic('cli-made')).rejects.toMatchObject({ code: 'TOPIC_EXISTS' });
      await expect(sw.admin.createTopic('too-wide', { replicationFactor: 4 })).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
      });
      await expect(
        sw.admin.createTopic('bad-min', { replicationFactor: 2, minInSyncReplicas: 3 }),
      ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(sw.admin.createTopic('bad-rf', { replicationFactor: 0 })).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
      });
      const wide = await runCli(
        ['topic', 'create', 'cli-wide', '--replication-factor', '5', '--broker', members[0]!.url],
        { timeoutMs: 30_000 },
      );
      expect(wide.code).toBe(1);
      expect(wide.stderr).toMatch(/replicationFactor 5 exceeds the 3 live brokers/);

      // Deleted through one broker, gone from the others' view.
      await sw.admin.deleteTopic('client-made');
      const other = await Spillway.connect(members[0]!.url);
      try {
        await waitFor(
          'broker 1 to forget client-made',
          async () =>
            (await other.admin.listTopics()).some((topic) => topic.name === 'client-made') ? undefined : true,
          retrying,
        );
        await expect(other.admin.describeTopic('client-made')).rejects.toMatchObject({
          code: 'UNKNOWN_TOPIC',
        });
      } finally {
        await other.close();
      }
    } finally {
      await sw.close();
    }
  }, 90_000);

  test('producer (acks all), log consumer and group consumer ride through a leader SIGKILL', async () => {
    const admin = await Spillway.connect(members[0]!.url);
    await admin.admin.createTopic('ride', { partitions: 1, replicationFactor: 3, minInSyncReplicas: 2 });
    const placed = await waitFor(
      'all three replicas in sync',
      async () => {
        const partition = (await admin.admin.metadata(['ride'])).partitions[0];
        return partition !== undefined && partition.leaderId > 0 && partition.isr.length === 3
          ? partition
          : undefined;
      },
      retrying,
    );
    // Where the group's coordinator runs (the leader of __consumer_offsets): when it is the broker
    // killed below, the new coordinator restores the group consumer's membership (printed at the end;
    // test/cluster/group-failover.test.ts makes that case on purpose).
    const coordinatorId = await waitFor(
      'the group coordinator placed',
      async () => {
        const partition = (await admin.admin.metadata(['__consumer_offsets'])).partitions[0];
        return partition !== undefined && partition.leaderId > 0 ? partition.leaderId : undefined;
      },
      retrying,
    );
    await admin.close();
    const leader = members.find((member) => member.id === placed.leaderId)!;
    const other = members.find((member) => member !== leader)!;

    // The producer and the log consumer connect to the leader itself (the broker that dies); the
    // group consumer to another one (its requests go to the coordinator wherever it runs).
    const producing = await Spillway.connect(leader.url, { clientId: 'producer' });
    const grouped = await Spillway.connect(other.url, { clientId: 'group' });
    const producer = producing.producer({ acks: 'all' });
    const logConsumer = producing.consumer({ topics: ['ride'], from: 'earliest', maxWaitMs: 100 });
    const groupConsumer = grouped.consumer({ group: 'riders', topics: ['ride'], from: 'earliest' });

    const total = 1200;
    const killAt = 400;
    const acked: Array<{ value: string; result: SendResult }> = [];
    const logRead: Array<{ offset: number; value: string }> = [];
    const groupRead: Array<{ offset: number; value: string }> = [];
    // Readers run until their clients close; the test waits until both have read every acknowledged
    // offset (a reader may see the last record before the producer's acknowledgement of it arrives).
    const readAll = async (
      consumer: AsyncIterable<{ offset: number; value: Buffer | null; ack?: () => Promise<void> }>,
      into: Array<{ offset: number; value: string }>,
    ): Promise<void> => {
      for await (const message of consumer) {
        into.push({ offset: message.offset, value: message.value?.toString('utf8') ?? '' });
        await message.ack?.();
      }
    };
    const logReading = readAll(logConsumer, logRead).catch((error: unknown) => error);
    const groupReading = readAll(groupConsumer, groupRead).catch((error: unknown) => error);

    let killedAtMs = 0;
    let firstAfterKillMs = 0;
    for (let sent = 0; sent < total; sent += 20) {
      if (sent === killAt) {
        await fixture.cluster.kill(leader.id);
        killedAtMs = Date.now();
      }
      // 20 sends in one batch, then the next: order between batches is the send order.
      const values = Array.from({ length: 20 }, (_, i) => `v${sent + i}`);
      const results = await Promise.all(values.map((value) => producer.send('ride', { value })));
      if (killedAtMs > 0 && firstAfterKillMs === 0) firstAfterKillMs = Date.now();
      for (const [i, value] of values.entries()) acked.push({ value, result: results[i]! });
    }
    const missing = (read: Array<{ offset: number }>): number => {
      const seen = new Set(read.map((entry) => entry.offset));
      return acked.filter((entry) => !seen.has(entry.result.offset)).length;
    };
    const readDeadline = Date.now() + 30_000;
    while (missing(logRead) > 0 || missing(groupRead) > 0) {
      if (Date.now() > readDeadline) {
        await producing.close();
        await grouped.close();
        throw new Error(
          `consumers did not read everything in 30 s: log consumer ${logRead.length} read, ` +
            `${missing(logRead)} acknowledged missing; group consumer ${groupRead.length} read, ` +
            `${missing(groupRead)} missing (group coordinator broker ${coordinatorId}, killed ${leader.id})`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await producing.close();
    await grouped.close();
    expect(await logReading).toBeUndefined();
    expect(await groupReading).toBeUndefined();

    const repeats = (read: Array<{ offset: number }>): string => {
      const seen = new Set<number>();
      const again = read.filter((entry) => seen.has(entry.offset) || !seen.add(entry.offset));
      return again.length === 0
        ? 'none'
        : `${again.length} (offsets ${again[0]!.offset}..${again.at(-1)!.offset}, at read index ${read.indexOf(again[0]!)})`;
    };
    console.log(
      `leader ${leader.id} SIGKILLed, group coordinator on broker ${coordinatorId}: offsets read again by ` +
        `the log consumer ${repeats(logRead)}, by the group consumer ${repeats(groupRead)}`,
    );

    // Every acknowledged message once, in send order, at its acknowledged offset.
    expect(acked).toHaveLength(total);
    const offsets = acked.map((entry) => entry.result.offset);
    expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
    expect(new Set(offsets).size).toBe(total);
    for (const [name, read] of [
      ['log consumer', logRead],
      ['group consumer', groupRead],
    ] as const) {
      const byOffset = new Map(read.map((entry) => [entry.offset, entry.value]));
      expect(byOffset.size, `${name}: no offset read twice`).toBe(read.length);
      expect(
        read.map((entry) => entry.offset),
        `${name}: offsets in order`,
      ).toEqual([...read.map((e) => e.offset)].sort((a, b) => a - b));
      for (const { value, result } of acked) expect(byOffset.get(result.offset)).toBe(value);
    }
    console.log(
      `leader ${leader.id} SIGKILLed: first acknowledged batch after it in ${firstAfterKillMs - killedAtMs} ms; ` +
        `${logRead.length - total} extra records read by the log consumer, ${groupRead.length - total} by the ` +
        `group consumer (group coordinator on broker ${coordinatorId})`,
    );
  }, 90_000);
});
