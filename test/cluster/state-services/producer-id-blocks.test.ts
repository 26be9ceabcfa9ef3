/**
 * Producer id blocks claimed in a real etcd by compare-and-swap (src/cluster/state-services/
 * producer-id-blocks.ts): four claimers (as four brokers) with small blocks, racing, hand out ids that
 * are all different; a claimer started again (a broker restarted) continues past every block claimed;
 * a key this version cannot read and an unreachable etcd are typed errors.
 */
import { describe, expect, test } from 'vitest';
import { connectEtcd } from '../../../src/cluster/control/etcd-call.js';
import {
  ProducerIdBlocks,
  producerIdBlockKey,
  producerIdNamespace,
} from '../../../src/cluster/state-services/producer-id-blocks.js';
import { etcdMissing, etcdSkipReason } from '../etcd-server.js';
import { useEtcd } from '../harness/cluster-fixture.js';

describe.skipIf(etcdMissing)(`producer id blocks in etcd (skipped if ${etcdSkipReason})`, () => {
  const fixture = useEtcd();

  test('racing claimers hand out distinct ids; a restarted one continues past every claimed block', async () => {
    const clients = Array.from({ length: 4 }, () => connectEtcd(fixture.etcd.url));
    try {
      const blocks = clients.map(
        (client) => new ProducerIdBlocks(client.namespace(producerIdNamespace('race')), 7),
      );
      const ids = await Promise.all(
        blocks.flatMap((block) => Array.from({ length: 50 }, () => block.nextProducerId())),
      );
      expect(new Set(ids).size).toBe(ids.length);
      // Each claimer used its own blocks: 50 ids in blocks of 7 is 8 blocks each, whatever the races.
      for (const block of blocks) expect(block.claims).toBe(8);
      const restarted = new ProducerIdBlocks(clients[0]!.namespace(producerIdNamespace('race')), 7);
      expect(await restarted.nextProducerId()).toBe(4 * 8 * 7);
      // Another cluster's ids are its own.
      const other = new ProducerIdBlocks(clients[1]!.namespace(producerIdNamespace('other')), 7);
      expect(await other.nextProducerId()).toBe(0);
      // A value this version cannot read: CLUSTER_UNAVAILABLE, not retriable.
      const broken = clients[2]!.namespace(producerIdNamespace('broken'));
      await broken.put(producerIdBlockKey).value('{"version":1}');
      await expect(new ProducerIdBlocks(broken, 7).nextProducerId()).rejects.toMatchObject({
        code: 'CLUSTER_UNAVAILABLE',
        retriable: false,
      });
    } finally {
      for (const client of clients) client.close();
    }
  }, 30_000);

  test('etcd unreachable: CLUSTER_UNAVAILABLE (retriable)', async () => {
    const client = connectEtcd('etcd://127.0.0.1:1');
    try {
      await expect(
        new ProducerIdBlocks(client.namespace(producerIdNamespace('none'))).nextProducerId(),
      ).rejects.toMatchObject({ code: 'CLUSTER_UNAVAILABLE', retriable: true });
    } finally {
      client.close();
    }
  }, 30_000);
});
