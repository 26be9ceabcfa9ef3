/**
 * The group coordinator's death (src/cluster/state-services/): three `spillway broker --cluster`
 * processes on a real etcd (session timeout 1 s). A group commits offsets on the coordinator (the
 * leader of `__consumer_offsets`); the coordinator is SIGKILLed; another in-sync replica leads
 * `__consumer_offsets` at a higher epoch, recovers the group from the replicated log, still has
 * every acknowledged commit, and the group continues from there.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { canConnect, freePort, ServerProcess } from '../../bench/peers/server-process.js';
import { Spillway } from '../../src/client/index.js';
import { ClusterAdmin } from '../../src/cluster/control/cluster-admin.js';
import { clusterNamespace } from '../../src/cluster/control/cluster-records.js';
import { connectEtcd } from '../../src/cluster/control/etcd-call.js';
import type { MetadataPartition } from '../../src/protocol/cluster-metadata-api.js';
import { etcdMissing, etcdSkipReason, startEtcd, type TestEtcd } from './etcd-server.js';

const waitBoundMs = 30_000;
const cli = join(import.meta.dirname, '../../dist/src/cli/main.js');

async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + waitBoundMs;
  for (;;) {
    // Failed attempts (a connection refused, NOT_COORDINATOR while the service moves) are tried again.
    const value = await Promise.resolve()
      .then(probe)
      .catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

interface Member {
  id: number;
  url: string;
  process: ServerProcess;
}

let directory: string;
beforeAll(() => {
  directory = mkdtempSync(join(tmpdir(), 'spillway-state-kill-'));
});
afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

describe.skipIf(etcdMissing)(`the group coordinator SIGKILLed (skipped if ${etcdSkipReason})`, () => {
  let etcd: TestEtcd;
  const members: Member[] = [];
  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    for (const member of members) await member.process.stop().catch(() => undefined);
    await etcd?.close();
  });

  async function placement(
    member: Member,
    topic: string,
    accept: (partition: MetadataPartition) => boolean,
  ): Promise<MetadataPartition> {
    return waitFor(`${topic}/0 placed`, async () => {
      const sw = await Spillway.connect(member.url);
      try {
        const metadata = await sw.admin.metadata([topic]);
        const partition = metadata.partitions.find((p) => p.topic === topic && p.partition === 0);
        return partition !== undefined && accept(partition) ? partition : undefined;
      } finally {
        await sw.close();
      }
    });
  }

  async function produce(via: Member, values: string[]): Promise<void> {
    const leader = await placement(via, 'events', (p) => p.leaderId > 0 && p.isr.length >= 2);
    const sw = await Spillway.connect(members.find((m) => m.id === leader.leaderId)!.url);
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
    await consumer.close(); // commits what was acked, answered once the in-sync replicas have it
    await sw.close();
    return values;
  }

  test('every acknowledged commit is on the new coordinator, and the group continues there', async () => {
    const config = join(directory, 'cluster.json');
    writeFileSync(config, JSON.stringify({ clusterSessionTimeoutMs: 1000, clusterName: 'kill' }));
    await Promise.all(
      [1, 2, 3].map(async (id) => {
        const port = await freePort();
        const process = await ServerProcess.start({
          name: `broker ${id}`,
          command: 'node',
          args: [
            cli,
            'broker',
            ...['--data-dir', join(directory, `broker-${id}`), '--host', '127.0.0.1', '--port', `${port}`],
            ...[
              '--durability',
              'interval',
              '--cluster',
              etcd.url,
              '--broker-id',
              `${id}`,
              '--config',
              config,
            ],
          ],
          logFile: join(directory, `broker-${id}.log`),
          ready: () => canConnect(port),
          startTimeoutMs: 20_000,
          stopTimeoutMs: 5_000,
        });
        members.push({ id, url: `ws://127.0.0.1:${port}`, process });
      }),
    );
    const client = connectEtcd(etcd.url);
    try {
      await new ClusterAdmin(client.namespace(clusterNamespace('kill'))).createTopic('events', {
        partitions: 1,
        replicationFactor: 3,
        minInSyncReplicas: 2,
        config: { durability: 'interval' },
      });
    } finally {
      client.close();
    }
    const offsets = await placement(
      members[0]!,
      '__consumer_offsets',
      (p) => p.leaderId > 0 && p.isr.length === 3,
    );
    const coordinator = members.find((m) => m.id === offsets.leaderId)!;
    const sent = Array.from({ length: 60 }, (_, i) => `m${i}`);
    await produce(coordinator, sent.slice(0, 40));
    // Right after the assignment the coordinator may still be starting (NOT_COORDINATOR until then).
    await waitFor('the coordinator to serve groups', async () => {
      const sw = await Spillway.connect(coordinator.url);
      try {
        return await sw.admin.listGroups();
      } finally {
        await sw.close();
      }
    });
    expect(await consume(coordinator, 30)).toEqual(sent.slice(0, 30));

    process.kill(coordinator.process.pid, 'SIGKILL');
    await coordinator.process.stop();
    members.splice(members.indexOf(coordinator), 1);
    const moved = await placement(
      members[0]!,
      '__consumer_offsets',
      (p) => p.leaderId > 0 && p.leaderId !== coordinator.id && p.leaderEpoch > offsets.leaderEpoch,
    );
    const successor = members.find((m) => m.id === moved.leaderId)!;
    const committed = await waitFor('the group on the new coordinator', async () => {
      const sw = await Spillway.connect(successor.url);
      try {
        return (await sw.admin.describeGroup('billing')).partitions.map((p) => p.committed);
      } finally {
        await sw.close();
      }
    });
    expect(committed).toEqual([30]);
    await produce(successor, sent.slice(40));
    expect(await consume(successor, 30)).toEqual(sent.slice(30));
  }, 120_000);
});
