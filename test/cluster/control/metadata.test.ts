/**
 * METADATA (opcode 70) through the real dispatch: a single broker answers `cluster: false`; bad
 * requests are INVALID_ARGUMENT; in a cluster (real etcd, in-process client) the answer lists the live
 * brokers, the controller and the named topics' partitions with leaders and epochs, and follows a
 * leader failover.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Spillway } from '../../../src/client/index.js';
import { Opcode } from '../../../src/protocol/opcodes.js';
import { Broker } from '../../../src/spillway-broker.js';
import { etcdMissing, etcdSkipReason, startEtcd, type TestEtcd } from '../etcd-server.js';
import { waitFor, whenBrokersLive } from '../harness/wait-for.js';
import { RecordingReplicaManager } from './recording-replica-manager.js';

let directory: string;
beforeAll(() => {
  directory = mkdtempSync(join(tmpdir(), 'spillway-metadata-'));
});
afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

test('a single broker answers cluster: false; malformed requests are INVALID_ARGUMENT', async () => {
  const broker = await Broker.open({ dataDir: join(directory, 'single') });
  const sw = await Spillway.connect(broker);
  try {
    expect(await sw.admin.metadata(['anything'])).toEqual({
      cluster: false,
      brokerId: null,
      controllerId: null,
      brokers: [],
      partitions: [],
    });
    await expect(sw.admin.metadata([])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const transport = (
      sw as unknown as { transport: { request(opcode: number, header: unknown): Promise<unknown> } }
    ).transport;
    await expect(transport.request(Opcode.metadata, { topics: 'x' })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(transport.request(Opcode.metadata, { topics: [7] })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
  } finally {
    await sw.close();
    await broker.close();
  }
});

describe.skipIf(etcdMissing)(`METADATA in a cluster on a real etcd (skipped if ${etcdSkipReason})`, () => {
  let etcd: TestEtcd;
  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    await etcd?.close();
  });

  test('leaders, epochs and live brokers, and the new leader after a failover', async () => {
    const brokers: Broker[] = [];
    for (const brokerId of [1, 2]) {
      brokers.push(
        await Broker.open({
          dataDir: join(directory, `cluster-${brokerId}`),
          cluster: {
            etcd: etcd.url,
            brokerId,
            advertise: `ws://127.0.0.1:${7200 + brokerId}`,
            name: 'metadata',
            sessionTimeoutMs: 1000,
            log: () => {},
            replicaManager: () => new RecordingReplicaManager(),
          },
        }),
      );
    }
    const [first, second] = brokers as [Broker, Broker];
    const sw = await Spillway.connect(first);
    try {
      await whenBrokersLive(() =>
        first.cluster!.node.admin.createTopic('m', { partitions: 2, replicationFactor: 2 }),
      );
      // Under load the controller's 1 s session may lapse for a moment (controllerId null): wait for
      // an answer with both partitions led, both brokers and a controller.
      const metadata = await waitFor(
        'both partitions, both brokers and a controller in the metadata',
        async () => {
          const answer = await sw.admin.metadata(['m']);
          return answer.partitions.length === 2 &&
            answer.partitions.every((partition) => partition.leaderId > 0) &&
            answer.brokers.length === 2 &&
            answer.controllerId !== null
            ? answer
            : undefined;
        },
      );
      expect(metadata).toMatchObject({ cluster: true, brokerId: 1 });
      expect([1, 2]).toContain(metadata.controllerId);
      expect(metadata.brokers.sort((a, b) => a.brokerId - b.brokerId)).toEqual([
        { brokerId: 1, url: 'ws://127.0.0.1:7201' },
        { brokerId: 2, url: 'ws://127.0.0.1:7202' },
      ]);
      for (const partition of metadata.partitions) {
        expect(partition).toMatchObject({ topic: 'm', leaderEpoch: 0 });
        expect(partition.isr).toContain(partition.leaderId);
      }

      // Broker 2 leaves: every partition is led by broker 1; the epoch rises where the leader
      // changed, and stays where only the follower left the ISR.
      await second.close();
      const after = await waitFor('broker 1 to lead everything', async () => {
        const answer = await sw.admin.metadata(['m']);
        return answer.brokers.length === 1 &&
          answer.controllerId === 1 &&
          answer.partitions.length === 2 &&
          answer.partitions.every((partition) => partition.leaderId === 1 && partition.isr.join() === '1')
          ? answer
          : undefined;
      });
      for (const partition of after.partitions) {
        const before = metadata.partitions.find((p) => p.partition === partition.partition);
        const previous = before?.leaderEpoch ?? 0;
        if (before?.leaderId === 1) expect(partition.leaderEpoch).toBe(previous);
        else expect(partition.leaderEpoch).toBeGreaterThan(previous);
      }
    } finally {
      await sw.close();
      for (const broker of brokers) await broker.close();
    }
  });
});
