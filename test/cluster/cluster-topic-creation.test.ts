/**
 * A topic used right after its creation in a cluster (docs/CLUSTER.md, "Topics"), on three
 * `spillway broker --cluster` processes and a real etcd. CREATE_TOPIC answers once the receiving
 * broker's view of etcd shows every partition led; the leaders may not have applied their
 * assignments yet (a broker holding the topic in its view of the records but not locally answers
 * NOT_LEADER, src/broker/broker-topics.ts `useClusterRecords`), and the client's brokers may see the
 * topic a watch notification later (the client retries UNKNOWN_TOPIC of a topic no METADATA lists for
 * `clientUnknownTopicWaitMs`, src/client/cluster-transport.ts).
 *
 * - topics created one after the other through one broker, each produced to (every partition) and
 *   read back at once through clients of the other brokers: no error reaches the application;
 * - a topic that does not exist still fails with UNKNOWN_TOPIC, within the client's bound.
 * About 6 s on this machine.
 */
import { describe, expect, test } from 'vitest';
import { Spillway } from '../../src/client/index.js';
import { clientUnknownTopicWaitMs } from '../../src/limits.js';
import { etcdMissing, etcdSkipReason } from './etcd-server.js';
import { useClusterProcesses } from './harness/cluster-fixture.js';

const topics = 8;
const partitions = 3;

describe.skipIf(etcdMissing)(`a topic used right after its creation (skipped if ${etcdSkipReason})`, () => {
  const fixture = useClusterProcesses({
    brokerIds: [1, 2, 3],
    name: 'creation',
    sessionTimeoutMs: 1000,
    durability: 'none',
  });

  test('create, then produce and fetch at once through other brokers: no error reaches the application', async () => {
    const url = (id: number): string => fixture.cluster.broker(id).url;
    const admin = await Spillway.connect(url(1), { clientId: 'creator' });
    const producing = await Spillway.connect(url(2), { clientId: 'producer' });
    const reading = await Spillway.connect(url(3), { clientId: 'reader' });
    try {
      const producer = producing.producer({ acks: 'all', lingerMs: 0 });
      for (let index = 0; index < topics; index++) {
        const topic = `fresh-${index}`;
        // Replication factor 2 of 3: one broker holds no replica of each partition (NOT_LEADER there).
        await admin.admin.createTopic(topic, { partitions, replicationFactor: 2, minInSyncReplicas: 1 });
        const sent = await Promise.all(
          Array.from({ length: partitions }, (_, partition) =>
            producer.send(topic, { value: `${topic}/${partition}`, partition }),
          ),
        );
        expect(sent.map((result) => result.partition)).toEqual([0, 1, 2]);
        // Read back through a client of a third broker (a FETCH that reaches a follower sees what it
        // copied so far: the consumer polls until each partition's message is there).
        const consumer = reading.consumer({ topics: [topic], from: 'earliest', maxWaitMs: 100 });
        const values: string[] = [];
        for await (const message of consumer) {
          values.push(message.value?.toString('utf8') ?? '');
          if (values.length === partitions) break;
        }
        await consumer.close();
        expect(values.sort()).toEqual([`${topic}/0`, `${topic}/1`, `${topic}/2`]);
      }

      // A topic that does not exist: UNKNOWN_TOPIC, within the bound of the retries for unlisted topics.
      const startedMs = Date.now();
      await expect(producer.send('never-created', { value: 'x' })).rejects.toMatchObject({
        code: 'UNKNOWN_TOPIC',
      });
      await expect(reading.admin.listOffset('never-created', 0, 'latest')).rejects.toMatchObject({
        code: 'UNKNOWN_TOPIC',
      });
      // Two requests, each given up after at most clientUnknownTopicWaitMs (plus a loaded machine's slack).
      expect(Date.now() - startedMs).toBeLessThan(2 * clientUnknownTopicWaitMs + 5_000);
      await producer.close();
    } finally {
      await Promise.allSettled([admin.close(), producing.close(), reading.close()]);
    }
  }, 90_000);
});
