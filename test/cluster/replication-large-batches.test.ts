/**
 * Replication of large batches (docs/CLUSTER-REPLICATION.md, "The copies"): REPLICA_FETCH answers of
 * 16 KiB and more, which the leader writes outside the cork straight from its log, mixed on the same
 * connections with small answers written corked (small batches, OFFSET_FOR_LEADER_EPOCH), across a
 * leader change; followers receive the bodies (past the WebSocket reader's 64 KiB scratch buffer)
 * into reused buffers. Three in-process brokers, durability `always`; about 5 s.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { PartitionAssignment } from '../../src/cluster/partition-role.js';
import { encodeBatch } from '../../src/format/record-batch.js';
import { batchOf } from '../broker/helpers.js';
import { eventually, logBytes, TestCluster } from './replication-helpers.js';

let cluster: TestCluster | null = null;
afterEach(async () => {
  await cluster?.close();
  cluster = null;
});

const topic = 'large';

function assignment(leaderId: number, leaderEpoch: number): PartitionAssignment {
  return {
    topic,
    partition: 0,
    replicas: [1, 2, 3],
    leaderId,
    leaderEpoch,
    isr: [1, 2, 3],
    minInSyncReplicas: 3,
  };
}

/** A batch of `count` records of `bytes` bytes each, every byte derived from the tag (no two alike). */
function largeBatch(tag: number, count: number, bytes: number): Uint8Array {
  return encodeBatch(
    Array.from({ length: count }, (_, i) => {
      const value = Buffer.alloc(bytes);
      for (let at = 0; at < bytes; at += 4) value.writeUInt32LE((tag * 7919 + i * 104_729 + at) >>> 0, at);
      return { key: `k${tag}/${i}`, value, timestamp: 1_700_000_000_000 + tag };
    }),
  );
}

describe('replication of large batches', () => {
  it('copies large and small batches byte-identical to every follower across a leader change, into reused receive buffers', async () => {
    const c = await TestCluster.start({ broker: { durability: 'always', segmentBytes: 1024 * 1024 } });
    cluster = c;
    await c.createTopic(topic, { durability: 'always' });
    await c.assign(assignment(1, 1));
    const logEnd = (id: number): number => c.node(id).broker.topics.partitionOf(topic, 0).log.logEndOffset;
    const produceRound = async (leaderId: number, round: number): Promise<void> => {
      const leader = c.node(leaderId).broker;
      // Three at once (answers of several batches), a large one and a small one alternating.
      const results = await Promise.all(
        [0, 1, 2].map((k) =>
          leader.messages.produce(
            topic,
            0,
            (round + k) % 2 === 0
              ? largeBatch(round * 3 + k, 1 + k, 48 * 1024)
              : batchOf(`s${round}/${k}`, 2),
            { acks: 'all' },
          ),
        ),
      );
      // acks 'all' with minInSyncReplicas 3: both followers hold every acknowledged batch.
      const last = Math.max(...results.map((result) => result.lastOffset));
      for (const id of [1, 2, 3]) expect(logEnd(id)).toBeGreaterThan(last);
    };
    for (let round = 0; round < 15; round++) await produceRound(1, round);
    // Broker 2 leads at epoch 2 (everything was replicated: nobody truncates), broker 1 follows.
    await c.assign(assignment(2, 2));
    for (let round = 15; round < 30; round++) await produceRound(2, round);
    await eventually(() => logEnd(1) === logEnd(2) && logEnd(3) === logEnd(2), 'caught up');
    const bytes = logBytes(c.node(2).broker, topic);
    expect(bytes.length).toBeGreaterThan(30 * 48 * 1024);
    expect(logBytes(c.node(1).broker, topic).equals(bytes)).toBe(true);
    expect(logBytes(c.node(3).broker, topic).equals(bytes)).toBe(true);
    // Each follower got dozens of answers; one or two buffers served them all.
    for (const id of [1, 3]) {
      const created = c.node(id).manager!.receiveBuffersCreated;
      expect(created).toBeGreaterThan(0);
      expect(created).toBeLessThanOrEqual(2);
    }
  });
});
