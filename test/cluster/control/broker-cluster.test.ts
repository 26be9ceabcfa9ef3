/**
 * `Broker.open({ cluster })` (spillway-broker.ts, src/cluster/control/broker-cluster.ts) with a real
 * etcd and real brokers on disk: a topic created in the cluster is created locally on each replica
 * (partition count and config from etcd) before the data plane (a RecordingReplicaManager) is told its
 * role; more partitions in etcd grow the local topic; closing the broker leaves the cluster at once
 * and closes the ReplicaManager. Bad cluster options refuse the open before
 * the data directory is touched; `spillway broker` checks its cluster flags (exit 2).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { brokerKey, clusterNamespace } from '../../../src/cluster/control/cluster-records.js';
import { Broker } from '../../../src/spillway-broker.js';
import { ensureBuilt, runCli } from '../../cli/cli-process.js';
import { etcdMissing, etcdSkipReason, startEtcd, type TestEtcd } from '../etcd-server.js';
import { RecordingReplicaManager } from './recording-replica-manager.js';

const waitBoundMs = 20_000;

async function waitFor(what: string, probe: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + waitBoundMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

let directory: string;
beforeAll(() => {
  directory = mkdtempSync(join(tmpdir(), 'spillway-broker-cluster-'));
});
afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

describe('cluster options are checked before the broker opens anything', () => {
  const base = { etcd: 'etcd://127.0.0.1:2379', brokerId: 1, advertise: 'ws://127.0.0.1:7070' };
  test.each([
    [{ ...base, etcd: 'http://127.0.0.1:2379' }, /etcd:\/\/host:port/],
    [{ ...base, etcd: 'etcd://127.0.0.1:99999' }, /host:port/],
    [{ ...base, brokerId: -1 }, /brokerId/],
    [{ ...base, brokerId: 1.5 }, /brokerId/],
    [{ ...base, advertise: 'http://127.0.0.1:7070' }, /advertise/],
    [{ ...base, name: 'a/b' }, /name/],
    [{ ...base, sessionTimeoutMs: 10 }, /sessionTimeoutMs/],
  ])('%o is refused', async (cluster, message) => {
    const dataDir = join(directory, `refused-${Math.random().toString(36).slice(2)}`);
    await expect(Broker.open({ dataDir, cluster })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message,
    });
    expect(existsSync(dataDir)).toBe(false);
  });
});

describe('spillway broker cluster flags', () => {
  beforeAll(() => ensureBuilt());
  test.each([
    [['--broker-id', '1'], /go with --cluster/],
    [['--advertise', 'ws://127.0.0.1:1'], /go with --cluster/],
    [['--cluster', 'etcd://127.0.0.1:2379'], /needs --broker-id/],
    [['--cluster', 'etcd://127.0.0.1:2379', '--broker-id', 'x'], /--broker-id must be an integer/],
    [['--cluster', 'http://127.0.0.1:2379', '--broker-id', '1'], /etcd:\/\/host:port/],
    [['--cluster', 'etcd://127.0.0.1:2379', '--broker-id', '1', '--host', '0.0.0.0'], /needs --advertise/],
    [['--cluster', 'etcd://127.0.0.1:2379', '--broker-id', '1', '--advertise', 'tcp://x:1'], /advertise/],
  ])('%o is bad usage (exit 2)', async (flags, message) => {
    const result = await runCli(['broker', '--data-dir', join(directory, 'cli'), ...flags]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toContain('usage: spillway broker');
  });
});

describe.skipIf(etcdMissing)(`a broker in a cluster on a real etcd (skipped if ${etcdSkipReason})`, () => {
  let etcd: TestEtcd;
  let admin: Etcd3;
  beforeAll(async () => {
    etcd = await startEtcd();
    admin = new Etcd3({ hosts: etcd.clientUrl });
  });
  afterAll(async () => {
    admin?.close();
    await etcd?.close();
  });

  test('assigned topics are created locally before the data plane hears of them; close leaves at once', async () => {
    const managers = new Map<number, RecordingReplicaManager>();
    const brokers: Broker[] = [];
    const logs: string[] = [];
    for (const brokerId of [1, 2]) {
      const manager = new RecordingReplicaManager();
      managers.set(brokerId, manager);
      brokers.push(
        await Broker.open({
          dataDir: join(directory, `broker-${brokerId}`),
          cluster: {
            etcd: etcd.url,
            brokerId,
            advertise: `ws://127.0.0.1:${7100 + brokerId}`,
            name: 'brokers',
            sessionTimeoutMs: 1000,
            log: (line) => logs.push(line),
            replicaManager: (broker, isrChanger) => {
              expect(broker).toBeInstanceOf(Broker);
              expect(typeof isrChanger.changeIsr).toBe('function');
              // What the data plane relies on: the local partition exists when it is told its role.
              return {
                applyAssignment: async (assignment, endpoints) => {
                  const local = broker.topics.describe(assignment.topic);
                  expect(local.partitionCount).toBeGreaterThan(assignment.partition);
                  await manager.applyAssignment(assignment, endpoints);
                },
                removePartition: (topic, partition) => manager.removePartition(topic, partition),
                close: () => manager.close(),
              };
            },
          },
        }),
      );
    }
    const [first, second] = brokers as [Broker, Broker];
    const clusterAdmin = first.cluster?.node.admin;
    expect(clusterAdmin).toBeDefined();
    await clusterAdmin?.createTopic('events', {
      partitions: 2,
      replicationFactor: 2,
      minInSyncReplicas: 2,
      config: { durability: 'always', retentionMs: 60_000 },
    });
    for (const [brokerId, manager] of managers) {
      await waitFor(`broker ${brokerId} to apply both partitions`, () => manager.current.size === 2);
      for (const assignment of manager.current.values()) {
        expect(assignment.minInSyncReplicas).toBe(2);
        expect([...assignment.replicas].sort()).toEqual([1, 2]);
      }
    }
    for (const broker of brokers) {
      const local = broker.topics.describe('events');
      expect(local.partitionCount).toBe(2);
      expect(local.config).toMatchObject({ durability: 'always', retentionMs: 60_000 });
    }

    await clusterAdmin?.addPartitions('events', 1);
    await waitFor('the local topics to grow', () =>
      brokers.every((broker) => broker.topics.describe('events').partitionCount === 3),
    );

    const namespace = admin.namespace(clusterNamespace('brokers'));
    expect(await namespace.get(brokerKey(2)).exists()).toBe(true);
    await second.close();
    // Revoked on close, not left to expire: the registration is gone as soon as close resolves.
    expect(await namespace.get(brokerKey(2)).exists()).toBe(false);
    expect(managers.get(2)?.closed).toBe(true);
    await first.close();
    expect(await namespace.get(brokerKey(1)).exists()).toBe(false);
    expect(logs.some((line) => line.includes('elected'))).toBe(true);
  });
});
