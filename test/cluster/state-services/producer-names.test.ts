/**
 * The producer name registry in a real etcd (src/cluster/state-services/producer-names.ts): two
 * registries (as two brokers) racing on one name hand out one id and distinct epochs, and each sees
 * the other's registrations through its watch; the name cap holds until names unused for the
 * retention can be swept; a name at the largest epoch moves to a new id; a record this version
 * cannot read and an unreachable etcd are typed errors.
 */
import { describe, expect, test } from 'vitest';
import { connectEtcd } from '../../../src/cluster/control/etcd-call.js';
import {
  ProducerIdBlocks,
  producerIdNamespace,
} from '../../../src/cluster/state-services/producer-id-blocks.js';
import {
  decodeNameCount,
  ProducerNames,
  producerNameCountKey,
  producerNameKey,
} from '../../../src/cluster/state-services/producer-names.js';
import { producerEpochMax } from '../../../src/limits.js';
import { etcdMissing, etcdSkipReason } from '../etcd-server.js';
import { useEtcd } from '../harness/cluster-fixture.js';
import { waitFor } from '../harness/wait-for.js';

describe.skipIf(etcdMissing)(`producer names in etcd (skipped if ${etcdSkipReason})`, () => {
  const fixture = useEtcd();

  test('racing registrations of one name: one id, distinct epochs; each broker sees the newest epoch', async () => {
    const clients = [connectEtcd(fixture.etcd.url), connectEtcd(fixture.etcd.url)];
    const registries = clients.map((client) => {
      const namespace = client.namespace(producerIdNamespace('race'));
      return new ProducerNames(namespace, new ProducerIdBlocks(namespace, 10));
    });
    try {
      for (const registry of registries) registry.start();
      await Promise.all(registries.map((registry) => registry.ready()));
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => registries[i % 2]!.register('svc')),
      );
      expect(new Set(results.map((result) => result.producerId)).size).toBe(1);
      const epochs = results.map((result) => result.producerEpoch).sort((a, b) => a - b);
      expect(epochs).toEqual(Array.from({ length: 20 }, (_, i) => i));
      const { producerId } = results[0]!;
      for (const registry of registries) {
        await waitFor('the newest epoch through the watch', () =>
          registry.epochOf(producerId) === 19 ? true : undefined,
        );
      }
      // A plain (unnamed) id is unknown to the registry: nothing to fence it by.
      expect(registries[0]!.epochOf(producerId + 1)).toBeUndefined();
      // A registry started later loads what is there.
      const late = new ProducerNames(
        clients[0]!.namespace(producerIdNamespace('race')),
        new ProducerIdBlocks(clients[0]!.namespace(producerIdNamespace('race')), 10),
      );
      late.start();
      await late.ready();
      expect(late.epochOf(producerId)).toBe(19);
      expect(late.size).toBe(1);
      await late.close();
    } finally {
      for (const registry of registries) await registry.close();
      for (const client of clients) client.close();
    }
  }, 30_000);

  test('at most namesMax names; names unused for the retention are swept to make room', async () => {
    const client = connectEtcd(fixture.etcd.url);
    const namespace = client.namespace(producerIdNamespace('cap'));
    let nowMs = 1_000_000;
    const registry = new ProducerNames(namespace, new ProducerIdBlocks(namespace, 10), {
      namesMax: 3,
      retentionMs: 60_000,
      now: () => nowMs,
    });
    try {
      for (const name of ['a', 'b', 'c']) await registry.register(name);
      // Registering a known name again needs no room.
      expect(await registry.register('a')).toMatchObject({ producerEpoch: 1 });
      await expect(registry.register('d')).rejects.toMatchObject({
        code: 'CLUSTER_UNAVAILABLE',
        retriable: false,
      });
      // 'a' is used again later than 'b' and 'c': only those two are past the retention.
      nowMs += 40_000;
      await registry.register('a');
      nowMs += 30_000;
      const d = await registry.register('d');
      expect(d.producerEpoch).toBe(0);
      expect(registry.counts.swept).toBe(2);
      const count = await namespace.get(producerNameCountKey).string();
      expect(decodeNameCount(count ?? '')).toBe(2);
      expect(await namespace.get(producerNameKey('b')).string()).toBeNull();
      expect(await registry.register('a')).toMatchObject({ producerEpoch: 3 });
      // A swept name registered again is a new producer (new id, epoch 0).
      const b = await registry.register('b');
      expect(b.producerEpoch).toBe(0);
      expect(decodeNameCount((await namespace.get(producerNameCountKey).string()) ?? '')).toBe(3);
    } finally {
      await registry.close();
      client.close();
    }
  }, 30_000);

  test('the largest epoch moves the name to a new id; unreadable records and no etcd are typed errors', async () => {
    const client = connectEtcd(fixture.etcd.url);
    const namespace = client.namespace(producerIdNamespace('edge'));
    const registry = new ProducerNames(namespace, new ProducerIdBlocks(namespace, 10));
    try {
      const first = await registry.register('old');
      await namespace
        .put(producerNameKey('old'))
        .value(JSON.stringify({ version: 1, ...first, producerEpoch: producerEpochMax, usedAtMs: 1 }));
      const moved = await registry.register('old');
      expect(moved.producerEpoch).toBe(0);
      expect(moved.producerId).not.toBe(first.producerId);
      await namespace.put(producerNameKey('bad')).value('{"version":1}');
      await expect(registry.register('bad')).rejects.toMatchObject({
        code: 'CLUSTER_UNAVAILABLE',
        retriable: false,
      });
    } finally {
      await registry.close();
      client.close();
    }
    const nowhere = connectEtcd('etcd://127.0.0.1:1');
    try {
      const none = nowhere.namespace(producerIdNamespace('none'));
      await expect(new ProducerNames(none, new ProducerIdBlocks(none)).register('x')).rejects.toMatchObject({
        code: 'CLUSTER_UNAVAILABLE',
        retriable: true,
      });
    } finally {
      nowhere.close();
    }
  }, 30_000);
});
