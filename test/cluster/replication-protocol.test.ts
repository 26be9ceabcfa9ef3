/**
 * The wire side of replication: the request parsers refuse bad input with INVALID_ARGUMENT, a broker
 * without replication refuses the opcodes and ignores `acks`, and the client producer's `acks`
 * reaches a replicated leader over WebSocket.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Spillway } from '../../src/client/spillway.js';
import { WebSocketTransport } from '../../src/client/websocket-transport.js';
import { Opcode } from '../../src/protocol/opcodes.js';
import {
  parseOffsetForLeaderEpoch,
  parseProduceOptions,
  parseReplicaFetch,
} from '../../src/protocol/replication-messages.js';
import { openBroker, temporaryDirectory, thrownCode } from '../broker/helpers.js';
import { eventually, TestCluster } from './replication-helpers.js';

let cluster: TestCluster | null = null;
afterEach(async () => {
  await cluster?.close();
  cluster = null;
});

const fetchHeader = {
  topic: 't',
  partition: 0,
  replicaId: 2,
  leaderEpoch: 1,
  fetchOffset: 0,
  durableOffset: 0,
  highWatermark: 0,
};

describe('replication requests', () => {
  it('parse strictly', () => {
    expect(parseReplicaFetch(fetchHeader)).toMatchObject({ maxWaitMs: 0, maxBytes: 1024 * 1024 });
    for (const bad of [
      { ...fetchHeader, replicaId: -1 },
      { ...fetchHeader, leaderEpoch: 2 ** 31 },
      { ...fetchHeader, fetchOffset: 1.5 },
      { ...fetchHeader, maxWaitMs: 10_001 },
      { ...fetchHeader, topic: '' },
      { ...fetchHeader, durableOffset: undefined },
      [],
    ]) {
      expect(thrownCode(() => parseReplicaFetch(bad))).toBe('INVALID_ARGUMENT');
    }
    expect(
      parseOffsetForLeaderEpoch({ topic: 't', partition: 0, replicaId: 1, leaderEpoch: 3, epoch: -1 }),
    ).toEqual({
      topic: 't',
      partition: 0,
      replicaId: 1,
      leaderEpoch: 3,
      epoch: -1,
    });
    expect(
      thrownCode(() =>
        parseOffsetForLeaderEpoch({ topic: 't', partition: 0, replicaId: 1, leaderEpoch: 3, epoch: -2 }),
      ),
    ).toBe('INVALID_ARGUMENT');
    expect(parseProduceOptions({ topic: 't', partition: 0 })).toBeUndefined();
    expect(parseProduceOptions({ acks: 'leader', leaderEpoch: 7 })).toEqual({
      acks: 'leader',
      leaderEpoch: 7,
    });
    expect(thrownCode(() => parseProduceOptions({ acks: 'none' }))).toBe('INVALID_ARGUMENT');
    expect(thrownCode(() => parseProduceOptions({ leaderEpoch: -1 }))).toBe('INVALID_ARGUMENT');
  });

  it('a broker without replication refuses REPLICA_FETCH and OFFSET_FOR_LEADER_EPOCH and ignores acks', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('t');
    const server = await broker.listen({ host: '127.0.0.1', port: 0 });
    const transport = await WebSocketTransport.connect(server.url);
    try {
      await expect(transport.request(Opcode.replicaFetch, fetchHeader)).rejects.toMatchObject({
        code: 'UNKNOWN_OPCODE',
      });
      await expect(
        transport.request(Opcode.offsetForLeaderEpoch, {
          topic: 't',
          partition: 0,
          replicaId: 1,
          leaderEpoch: 1,
          epoch: 1,
        }),
      ).rejects.toMatchObject({ code: 'UNKNOWN_OPCODE' });
      expect(broker.topics.partitionOf('t', 0).replica).toBeNull();
      const sw = await Spillway.connect(server.url);
      try {
        const producer = sw.producer({ acks: 'all' });
        await expect(producer.send('t', { value: 'single' })).resolves.toMatchObject({ offset: 0 });
        await producer.close();
        expect(() => sw.producer({ acks: 'some' as 'all' })).toThrow(/acks/);
      } finally {
        await sw.close();
      }
    } finally {
      await transport.close();
    }
  });

  it("the client producer's acks reach the leader: all is refused below minInSyncReplicas, leader is taken; a follower answers NOT_LEADER", async () => {
    cluster = await TestCluster.start({ brokers: 2 });
    await cluster.createTopic('t');
    await cluster.assign({
      topic: 't',
      partition: 0,
      replicas: [1, 2],
      leaderId: 1,
      leaderEpoch: 1,
      isr: [1],
      minInSyncReplicas: 2,
    });
    // Keep broker 2 out of the ISR: it does not follow.
    await cluster.node(2).manager!.removePartition('t', 0);
    const sw = await Spillway.connect(cluster.node(1).url);
    try {
      const all = sw.producer({ acks: 'all', retries: 0 });
      await expect(all.send('t', { value: 'a' })).rejects.toMatchObject({ code: 'NOT_ENOUGH_REPLICAS' });
      const leaderOnly = sw.producer({ acks: 'leader' });
      await expect(leaderOnly.send('t', { value: 'b' })).resolves.toMatchObject({ offset: 0 });
      await leaderOnly.close();
      await all.close().catch(() => undefined);
    } finally {
      await sw.close();
    }
    const follower = await Spillway.connect(cluster.node(2).url);
    try {
      const producer = follower.producer({ acks: 'leader', retries: 0 });
      await expect(producer.send('t', { value: 'c' })).rejects.toMatchObject({ code: 'NOT_LEADER' });
      await producer.close().catch(() => undefined);
    } finally {
      await follower.close();
    }
    await eventually(
      () => cluster!.node(1).broker.topics.partitionOf('t', 0).visibleEndOffset === 1,
      'HW 1 with ISR [1]',
    );
  });
});
