/**
 * The cluster client's routing decisions (src/client/request-route.ts) and leader table
 * (src/client/leader-table.ts): which broker a request goes to, which errors send it again, the
 * backoff, and what METADATA answers make of the table. Pure functions and one small class: no broker.
 * The same routing with real brokers and a leader SIGKILL: test/cluster/cluster-client.test.ts.
 */
import { describe, expect, test } from 'vitest';
import { LeaderTable } from '../../src/client/leader-table.js';
import { requestRoute, reroutable, rerouteBackoffMs } from '../../src/client/request-route.js';
import { SpillwayError } from '../../src/errors.js';
import { clientRerouteBackoffMsMax, clientRerouteBackoffMsMin, metadataTopicsMax } from '../../src/limits.js';
import type { ClusterMetadata } from '../../src/protocol/cluster-metadata-api.js';
import { coordinatorTopics } from '../../src/protocol/coordinator-routing.js';
import { Opcode } from '../../src/protocol/opcodes.js';

describe('requestRoute', () => {
  test('data requests go to their partition', () => {
    for (const opcode of [Opcode.produce, Opcode.fetch, Opcode.listOffset]) {
      expect(requestRoute(opcode, { topic: 'orders', partition: 3, offset: 0 })).toEqual({
        kind: 'partition',
        topic: 'orders',
        partition: 3,
      });
    }
    // A header naming no partition goes to any broker, which refuses it with its own error.
    expect(requestRoute(Opcode.produce, { topic: 'orders' })).toEqual({ kind: 'any' });
    expect(requestRoute(Opcode.fetch, null)).toEqual({ kind: 'any' });
  });

  test('service requests go to the leader of their internal topic (coordinator-routing.ts)', () => {
    expect(requestRoute(Opcode.joinGroup, { group: 'g' })).toEqual({
      kind: 'coordinator',
      topic: coordinatorTopics.groups,
    });
    expect(requestRoute(Opcode.groupFetch, {})).toEqual({
      kind: 'coordinator',
      topic: coordinatorTopics.groups,
    });
    expect(requestRoute(Opcode.queueReceive, {})).toEqual({
      kind: 'coordinator',
      topic: coordinatorTopics.queues,
    });
    expect(requestRoute(Opcode.txnBegin, {})).toEqual({
      kind: 'coordinator',
      topic: coordinatorTopics.transactions,
    });
    expect(requestRoute(Opcode.initProducer, {})).toEqual({
      kind: 'coordinator',
      topic: coordinatorTopics.producers,
    });
    expect(requestRoute(Opcode.delayStats, {})).toEqual({
      kind: 'coordinator',
      topic: coordinatorTopics.delay,
    });
  });

  test('admin and metadata go to any broker', () => {
    for (const opcode of [
      Opcode.hello,
      Opcode.createTopic,
      Opcode.deleteTopic,
      Opcode.listTopics,
      Opcode.describeTopic,
      Opcode.addPartitions,
      Opcode.metadata,
      Opcode.integrityReport,
    ]) {
      expect(requestRoute(opcode, { name: 'orders' })).toEqual({ kind: 'any' });
    }
  });
});

describe('reroutable', () => {
  test('wrong broker and lost connections are sent again; other errors reach the caller', () => {
    expect(reroutable(new SpillwayError('NOT_LEADER', 'x'))).toBe(true);
    expect(reroutable(new SpillwayError('FENCED_LEADER_EPOCH', 'x'))).toBe(true);
    expect(reroutable(new SpillwayError('NOT_COORDINATOR', 'x'))).toBe(true);
    expect(reroutable(new SpillwayError('CONNECTION_CLOSED', 'lost', { retriable: true }))).toBe(true);
    // The caller closed the client: not sent again, unless the router closed that connection itself.
    expect(reroutable(new SpillwayError('CONNECTION_CLOSED', 'closed', { retriable: false }))).toBe(false);
    expect(reroutable(new SpillwayError('CONNECTION_CLOSED', 'closed', { retriable: false }), true)).toBe(
      true,
    );
    for (const code of ['TIMEOUT', 'NOT_ENOUGH_REPLICAS', 'UNKNOWN_TOPIC', 'INVALID_ARGUMENT'] as const) {
      expect(reroutable(new SpillwayError(code, 'x'))).toBe(false);
    }
    expect(reroutable(new Error('not a SpillwayError'))).toBe(false);
  });

  test('the backoff doubles from 50 ms to 1 s', () => {
    const waits = [1, 2, 3, 4, 5, 6, 7, 40].map((attempt) =>
      rerouteBackoffMs(attempt, clientRerouteBackoffMsMin, clientRerouteBackoffMsMax),
    );
    expect(waits).toEqual([50, 100, 200, 400, 800, 1000, 1000, 1000]);
  });
});

const metadata = (partitions: ClusterMetadata['partitions'], brokers = [1, 2, 3]): ClusterMetadata => ({
  cluster: true,
  brokerId: 1,
  controllerId: 1,
  brokers: brokers.map((brokerId) => ({ brokerId, url: `ws://127.0.0.1:${7000 + brokerId}` })),
  partitions,
});

const partition = (name: string, index: number, leaderId: number, leaderEpoch: number) => ({
  topic: name,
  partition: index,
  leaderId,
  leaderEpoch,
  replicas: [1, 2, 3],
  isr: [1, 2, 3],
});

describe('LeaderTable', () => {
  test('leaders and epochs per partition; offline, unlisted and dead-broker leaders are unknown', () => {
    const table = new LeaderTable();
    expect(table.knows('orders')).toBe(false);
    table.update(
      metadata([partition('orders', 0, 2, 5), partition('orders', 1, -1, 7), partition('orders', 2, 4, 1)]),
      ['orders', 'empty'],
    );
    expect(table.knows('orders')).toBe(true);
    expect(table.knows('empty')).toBe(true); // asked: answered with no partitions (not a cluster topic)
    expect(table.leaderOf('orders', 0)).toEqual({ leaderId: 2, leaderEpoch: 5 });
    expect(table.leaderOf('orders', 1)).toBeUndefined(); // offline
    expect(table.leaderOf('orders', 2)).toBeUndefined(); // broker 4 is not live
    expect(table.leaderOf('orders', 3)).toBeUndefined();
    expect(table.listed('orders', 0)).toBe(true);
    expect(table.listed('orders', 1)).toBe(false);
    expect(table.urlOf(2)).toBe('ws://127.0.0.1:7002');
    // An answer for other topics keeps what was known of these; a new answer replaces a topic's leaders.
    table.update(metadata([partition('other', 0, 3, 0)]), ['other']);
    expect(table.leaderOf('orders', 0)).toEqual({ leaderId: 2, leaderEpoch: 5 });
    table.update(metadata([partition('orders', 0, 3, 6)], [1, 3]), ['orders']);
    expect(table.leaderOf('orders', 0)).toEqual({ leaderId: 3, leaderEpoch: 6 });
    expect(table.urlOf(2)).toBeUndefined();
  });

  test('a refresh asks for every known topic plus the new ones, at most metadataTopicsMax', () => {
    const table = new LeaderTable();
    table.update(metadata([]), ['a', 'b']);
    expect(table.topicsToAsk(['c', 'a']).sort()).toEqual(['a', 'b', 'c']);
    const many = Array.from({ length: metadataTopicsMax + 10 }, (_, i) => `t${i}`);
    table.update(metadata([]), many);
    const asked = table.topicsToAsk(['new']);
    expect(asked).toHaveLength(metadataTopicsMax);
    expect(asked.at(-1)).toBe('new');
    expect(table.knows('a')).toBe(false); // the oldest were dropped
  });
});
