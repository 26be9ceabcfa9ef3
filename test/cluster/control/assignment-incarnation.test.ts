/**
 * The assignment watcher across a topic deleted and created again (src/cluster/control/
 * assignment-watcher.ts), on a real etcd with records written by hand: when no pass saw the topic
 * absent (the new record replaced the old one between two passes, as under load), the partitions
 * applied for the earlier incarnation are removed before the new one's are applied — even at the
 * same epoch and placement, which the watcher otherwise skips as already applied — and the topic is
 * prepared again.
 */
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { AssignmentWatcher } from '../../../src/cluster/control/assignment-watcher.js';
import {
  brokerKey,
  clusterNamespace,
  encodeRecord,
  type PartitionRecord,
  partitionKey,
  type TopicRecord,
  topicKey,
} from '../../../src/cluster/control/cluster-records.js';
import { etcdMissing, etcdSkipReason, startEtcd, type TestEtcd } from '../etcd-server.js';
import { RecordingReplicaManager } from './recording-replica-manager.js';

describe.skipIf(etcdMissing)(`assignments of a topic created again (skipped if ${etcdSkipReason})`, () => {
  let etcd: TestEtcd;
  let client: Etcd3;
  beforeAll(async () => {
    etcd = await startEtcd();
    client = new Etcd3({ hosts: etcd.clientUrl });
  });
  afterAll(async () => {
    client?.close();
    await etcd?.close();
  });

  test('an earlier incarnation is removed first, then the new one applied and prepared', async () => {
    const namespace = client.namespace(clusterNamespace('incarnation'));
    await namespace
      .put(brokerKey(1))
      .value(encodeRecord({ brokerId: 1, url: 'ws://127.0.0.1:1', registeredAtMs: 1 }));
    const topic = (createdAtMs: number): TopicRecord => ({
      partitions: 1,
      replicationFactor: 1,
      minInSyncReplicas: 1,
      createdAtMs,
      config: {},
    });
    const partition: PartitionRecord = {
      replicas: [1],
      leaderId: 1,
      leaderEpoch: 0,
      isr: [1],
      controllerEpoch: 1,
    };
    await namespace.put(topicKey('t')).value(encodeRecord(topic(1000)));
    await namespace.put(partitionKey('t', 0)).value(encodeRecord(partition));

    const manager = new RecordingReplicaManager();
    const prepared: number[] = [];
    const watcher = new AssignmentWatcher(namespace, 1, manager, async (_name, record) => {
      prepared.push(record.createdAtMs);
    });
    await watcher.pass();
    await watcher.pass(); // nothing changed: nothing called
    expect(manager.calls.map((call) => call.kind)).toEqual(['apply']);

    // Deleted and created again between two passes: the same placement and epoch, a later record.
    await namespace.put(topicKey('t')).value(encodeRecord(topic(2000)));
    await watcher.pass();
    expect(manager.calls.map((call) => call.kind)).toEqual(['apply', 'remove', 'apply']);
    expect(prepared).toEqual([1000, 2000]);
    await watcher.pass();
    expect(manager.calls).toHaveLength(3);
  });
});
