/**
 * The control plane against a real etcd (test/cluster/etcd-server.ts) with ClusterNodes in this
 * process, each with a RecordingReplicaManager: registration and lease expiry, controller election
 * and failover, fencing of a deposed controller, replica assignment, leader failover from the ISR
 * only, the leader's ISR changes, and convergence after an etcd restart.
 *
 * "Killing a broker's etcd session" is done the way etcd ends one: its lease is revoked by another
 * client (as when the TTL runs out), so the node learns it from etcd, not from the test.
 * Waits poll for a state with a generous bound; nothing asserts how long anything took.
 */
import { Etcd3 } from 'etcd3';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { ClusterNode } from '../../../src/cluster/control/cluster-node.js';
import {
  brokerKey,
  clusterNamespace,
  controllerKey,
  decodePartition,
  noLeader,
  type PartitionRecord,
  partitionKey,
} from '../../../src/cluster/control/cluster-records.js';
import { FencedWriter } from '../../../src/cluster/control/fenced-writer.js';
import { etcdMissing, etcdSkipReason, startEtcd, type TestEtcd } from '../etcd-server.js';
import { RecordingReplicaManager } from './recording-replica-manager.js';

const waitBoundMs = 20_000;

async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const deadline = Date.now() + waitBoundMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

if (etcdMissing) console.warn(`skipping the cluster control-plane tests: ${etcdSkipReason}`);

describe.skipIf(etcdMissing)(`cluster control plane on a real etcd (skipped if ${etcdSkipReason})`, () => {
  let etcd: TestEtcd;
  let admin: Etcd3;
  let clusterCount = 0;
  let clusterName = '';
  const nodes: ClusterNode[] = [];
  const managers = new Map<number, RecordingReplicaManager>();
  const logs: string[] = [];

  beforeAll(async () => {
    etcd = await startEtcd();
    admin = new Etcd3({ hosts: etcd.clientUrl });
  });
  afterAll(async () => {
    admin?.close();
    await etcd?.close();
  });
  afterEach(async () => {
    for (const node of nodes.splice(0)) await node.close();
    for (const manager of managers.values()) expect(manager.violations).toEqual([]);
    managers.clear();
  });

  /** Each test its own cluster name, so tests share the etcd but not keys. */
  function newCluster(): string {
    clusterCount++;
    clusterName = `test-${clusterCount}`;
    return clusterName;
  }
  const ns = () => admin.namespace(clusterNamespace(clusterName));

  async function startNode(brokerId: number): Promise<ClusterNode> {
    const manager = new RecordingReplicaManager();
    const node = await ClusterNode.start({
      etcd: etcd.url,
      brokerId,
      advertise: `ws://127.0.0.1:${7000 + brokerId}`,
      name: clusterName,
      sessionTimeoutMs: 1000,
      replicaManager: manager,
      log: (line) => logs.push(`[${brokerId}] ${line}`),
    });
    nodes.push(node);
    managers.set(brokerId, manager);
    return node;
  }

  async function readPartition(topic: string, partition: number): Promise<PartitionRecord | undefined> {
    const text = await ns().get(partitionKey(topic, partition)).string();
    return text === null ? undefined : decodePartition(text);
  }

  /** Ends a node's session the way etcd does when its TTL runs out. */
  async function killSession(node: ClusterNode): Promise<void> {
    const lease = node.leaseId;
    expect(lease).toBeDefined();
    await admin.leaseClient.leaseRevoke({ ID: lease as string });
  }

  const controllers = () => nodes.filter((node) => node.isController);

  test('a broker registers under its lease; the same id twice is refused; the key goes with the lease', async () => {
    newCluster();
    const node = await startNode(1);
    const kv = (await ns().get(brokerKey(1)).exec()).kvs[0];
    expect(kv?.lease).toBe(node.leaseId);
    expect(JSON.parse(kv?.value.toString() ?? '{}')).toMatchObject({
      brokerId: 1,
      url: 'ws://127.0.0.1:7001',
    });

    await expect(startNode(1)).rejects.toMatchObject({ code: 'BROKER_ID_IN_USE' });

    // A lease that is not kept alive expires and takes its keys: what happens to a dead broker.
    const lease = ns().lease(1);
    await lease.put(brokerKey(9)).value('{}');
    lease.release();
    expect(await ns().get(brokerKey(9)).exists()).toBe(true);
    await waitFor('the expired registration to go', async () => !(await ns().get(brokerKey(9)).exists()));

    // The node's own session ended by etcd: it registers again under a new lease.
    const oldLease = node.leaseId;
    await killSession(node);
    const newLease = await waitFor('a new session', () =>
      node.leaseId !== undefined && node.leaseId !== oldLease ? node.leaseId : undefined,
    );
    await waitFor('the registration under the new lease', async () => {
      const again = (await ns().get(brokerKey(1)).exec()).kvs[0];
      return again?.lease === newLease;
    });
  });

  test('one controller; when its session dies another takes over with a higher controller epoch', async () => {
    newCluster();
    await startNode(1);
    await startNode(2);
    await startNode(3);
    const first = await waitFor('a controller', () =>
      controllers().length === 1 ? controllers()[0] : undefined,
    );
    const firstEpoch = first.controllerEpoch;
    expect(firstEpoch).toBeGreaterThanOrEqual(1);
    const controllerValue = JSON.parse((await ns().get(controllerKey).string()) ?? '{}');
    expect(controllerValue).toMatchObject({ brokerId: first.brokerId, controllerEpoch: firstEpoch });

    await killSession(first);
    const second = await waitFor('another controller', () => {
      const active = controllers().filter((node) => node.controllerEpoch > firstEpoch);
      return active.length === 1 ? active[0] : undefined;
    });
    expect(second.controllerEpoch).toBeGreaterThan(firstEpoch);
    await waitFor('the old controller to step down', () => !first.isController || first === second);
    expect(controllers().filter((node) => node !== second && node.isController)).toEqual([]);
  });

  test("a deposed controller's write is refused by etcd (fence = the controller key's create revision)", async () => {
    newCluster();
    const a = await startNode(1);
    await waitFor('broker 1 to be controller', () => a.isController);
    await a.admin.createTopic('fenced', { partitions: 1, replicationFactor: 1 });
    const before = await waitFor('the partition', () => readPartition('fenced', 0));
    const beforeKv = (await ns().get(partitionKey('fenced', 0)).exec()).kvs[0];
    const oldFence = (await ns().get(controllerKey).exec()).kvs[0]?.create_revision as string;

    const b = await startNode(2);
    await killSession(a);
    await waitFor('broker 2 to be controller', () => b.isController);
    const stale = new FencedWriter(ns(), oldFence);
    const written = await stale.updatePartition('fenced', 0, beforeKv?.mod_revision as string, {
      ...before,
      leaderEpoch: before.leaderEpoch + 100,
    });
    expect(written).toBe(false);
    expect(await stale.createPartition('fenced', 5, before)).toBe(false);
    expect((await readPartition('fenced', 0))?.leaderEpoch).not.toBe(before.leaderEpoch + 100);
    expect(await ns().get(partitionKey('fenced', 5)).exists()).toBe(false);

    // The same write with the current fence goes through (the refusal was the fence, not the write).
    const currentFence = (await ns().get(controllerKey).exec()).kvs[0]?.create_revision as string;
    const current = (await ns().get(partitionKey('fenced', 0)).exec()).kvs[0];
    const record = decodePartition(current?.value.toString() ?? '') as PartitionRecord;
    expect(
      await new FencedWriter(ns(), currentFence).updatePartition(
        'fenced',
        0,
        current?.mod_revision as string,
        {
          ...record,
        },
      ),
    ).toBe(true);
  });

  test('new topic: replicas placed on live brokers, every replica told its assignment at epoch 0', async () => {
    newCluster();
    const node = await startNode(1);
    await startNode(2);
    await startNode(3);
    await expect(
      node.admin.createTopic('wide', { partitions: 2, replicationFactor: 4 }),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await node.admin.createTopic('orders', { partitions: 3, replicationFactor: 3, minInSyncReplicas: 2 });
    await expect(node.admin.createTopic('orders')).rejects.toMatchObject({ code: 'TOPIC_EXISTS' });
    for (let partition = 0; partition < 3; partition++) {
      const record = await waitFor(`orders/${partition}`, () => readPartition('orders', partition));
      expect([...record.replicas].sort()).toEqual([1, 2, 3]);
      expect(record).toMatchObject({ leaderId: record.replicas[0], leaderEpoch: 0, isr: record.replicas });
    }
    for (const [brokerId, manager] of managers) {
      await waitFor(`broker ${brokerId} to apply 3 partitions`, () =>
        manager.current.size === 3 ? true : undefined,
      );
      for (const assignment of manager.current.values()) expect(assignment.leaderEpoch).toBe(0);
      const apply = manager.calls.find((call) => call.kind === 'apply');
      expect(apply?.kind === 'apply' && [...apply.endpoints.keys()].sort()).toEqual([1, 2, 3]);
    }
    const description = await node.admin.describe('orders');
    expect(description.config).toMatchObject({ partitions: 3, replicationFactor: 3, minInSyncReplicas: 2 });

    await expect(node.admin.addPartitions('orders', 0)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await node.admin.addPartitions('orders', 1);
    await waitFor('orders/3', () => readPartition('orders', 3));
    await node.admin.deleteTopic('orders');
    for (const [brokerId, manager] of managers) {
      await waitFor(`broker ${brokerId} to remove the partitions`, () =>
        manager.current.size === 0 ? true : undefined,
      );
    }
    await expect(node.admin.deleteTopic('orders')).rejects.toMatchObject({ code: 'UNKNOWN_TOPIC' });
  });

  test('leader failover elects only an ISR member, bumps the epoch, and the replicas learn it', async () => {
    newCluster();
    const byId = new Map<number, ClusterNode>();
    for (const id of [1, 2, 3]) byId.set(id, await startNode(id));
    const node = byId.get(1) as ClusterNode;
    await node.admin.createTopic('pay', { partitions: 1, replicationFactor: 3 });
    const initial = await waitFor('pay/0', () => readPartition('pay', 0));
    const leader = initial.leaderId;
    const [follower, laggard] = initial.replicas.filter((id) => id !== leader) as [number, number];

    // The leader shrinks the ISR (the data plane's call): the laggard is out at the same epoch.
    const leaderNode = byId.get(leader) as ClusterNode;
    await waitFor('the leader to apply its assignment', () =>
      managers.get(leader)?.current.has('pay/0') ? true : undefined,
    );
    expect(await leaderNode.isrChanger.changeIsr('pay', 0, 0, [leader, follower])).toEqual({
      topic: 'pay',
      partition: 0,
      replicas: initial.replicas,
      leaderId: leader,
      leaderEpoch: 0,
      isr: [leader, follower],
    });
    // A change decided from an ISR that is not the stored one any more (the controller removed a
    // dead follower at the same epoch) writes nothing and answers the stored assignment.
    expect(
      await leaderNode.isrChanger.changeIsr('pay', 0, 0, [leader, follower, laggard], [leader, laggard]),
    ).toMatchObject({ leaderEpoch: 0, isr: [leader, follower] });
    expect((await readPartition('pay', 0))?.isr).toEqual([leader, follower]);
    // A follower is not leader, a stale epoch is stale: both resolve null, nothing written.
    expect(
      await (byId.get(follower) as ClusterNode).isrChanger.changeIsr('pay', 0, 0, [follower]),
    ).toBeNull();
    expect(await leaderNode.isrChanger.changeIsr('pay', 0, 7, [leader])).toBeNull();
    await expect(leaderNode.isrChanger.changeIsr('pay', 0, 0, [follower])).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(leaderNode.isrChanger.changeIsr('pay', 0, 0, [leader, 99])).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await waitFor('the ISR change to reach the laggard', () =>
      managers.get(laggard)?.current.get('pay/0')?.isr.length === 2 ? true : undefined,
    );

    // The leader's session dies: the follower (in the ISR) leads at epoch 1, never the laggard.
    await killSession(leaderNode);
    const failedOver = await waitFor('a new leader', async () => {
      const record = await readPartition('pay', 0);
      return record !== undefined && record.leaderEpoch > 0 ? record : undefined;
    });
    expect(failedOver.leaderId).toBe(follower);
    expect(failedOver.leaderEpoch).toBe(1);
    expect(failedOver.isr).not.toContain(laggard);
    for (const id of [follower, laggard]) {
      await waitFor(`broker ${id} to learn epoch 1`, () =>
        managers.get(id)?.current.get('pay/0')?.leaderEpoch === 1 ? true : undefined,
      );
      expect(managers.get(id)?.current.get('pay/0')?.leaderId).toBe(follower);
    }
    // The old leader's ISR change at its old epoch is refused now.
    expect(await leaderNode.isrChanger.changeIsr('pay', 0, 0, [leader])).toBeNull();

    // The new leader dies too: only the laggard is alive, outside the ISR: the partition goes offline.
    await (byId.get(follower) as ClusterNode).close();
    const offline = await waitFor('the partition to go offline', async () => {
      const record = await readPartition('pay', 0);
      return record?.leaderId === noLeader ? record : undefined;
    });
    expect(offline.isr).toEqual([follower]);
    // The ISR member comes back: it leads again.
    nodes.splice(nodes.indexOf(byId.get(follower) as ClusterNode), 1);
    await startNode(follower);
    const back = await waitFor('the ISR member to lead again', async () => {
      const record = await readPartition('pay', 0);
      return record?.leaderId === follower ? record : undefined;
    });
    expect(back.leaderEpoch).toBe(offline.leaderEpoch + 1);
  });

  test('an applyAssignment that throws is made again at a later pass', async () => {
    newCluster();
    const node = await startNode(1);
    const manager = managers.get(1) as RecordingReplicaManager;
    manager.failNext = 2;
    await node.admin.createTopic('retry', { partitions: 1, replicationFactor: 1 });
    await waitFor('the assignment to be applied', () => (manager.current.has('retry/0') ? true : undefined));
    expect(manager.failNext).toBe(0);
    expect(node.appliedAssignments().get('retry/0')?.leaderId).toBe(1);
  });

  test('etcd restart: sessions, controller and assignments converge, and a change made meanwhile is applied', async () => {
    newCluster();
    const byId = new Map<number, ClusterNode>();
    for (const id of [1, 2, 3]) byId.set(id, await startNode(id));
    await (byId.get(1) as ClusterNode).admin.createTopic('restart', { partitions: 3, replicationFactor: 2 });
    for (let partition = 0; partition < 3; partition++)
      await waitFor('assigned', () => readPartition('restart', partition));

    await etcd.stop();
    // A broker leaves while etcd is down: its revoke cannot reach etcd; its lease expires after the restart.
    const leaving = byId.get(3) as ClusterNode;
    await leaving.close();
    nodes.splice(nodes.indexOf(leaving), 1);
    await etcd.start();

    await waitFor('broker 3 to be gone', async () => !(await ns().get(brokerKey(3)).exists()));
    await waitFor(
      'brokers 1 and 2 registered',
      async () => (await ns().get(brokerKey(1)).exists()) && (await ns().get(brokerKey(2)).exists()),
    );
    await waitFor('exactly one controller', () => (controllers().length === 1 ? true : undefined));
    for (let partition = 0; partition < 3; partition++) {
      const record = await waitFor(`restart/${partition} led by a live broker`, async () => {
        const value = await readPartition('restart', partition);
        return value !== undefined && (value.leaderId === 1 || value.leaderId === 2) && !value.isr.includes(3)
          ? value
          : undefined;
      });
      for (const id of record.replicas.filter((replica) => replica !== 3)) {
        await waitFor(`broker ${id} to apply restart/${partition} at epoch ${record.leaderEpoch}`, () =>
          managers.get(id)?.current.get(`restart/${partition}`)?.leaderEpoch === record.leaderEpoch
            ? true
            : undefined,
        );
      }
    }
  });
});
