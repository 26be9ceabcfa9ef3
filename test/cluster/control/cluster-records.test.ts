/**
 * The etcd key layout and record codecs (cluster-records.ts): keys parse to what they name and
 * nothing else; decoders accept exactly what the encoder writes and refuse everything else (another
 * program's value, a newer version, a broken invariant such as a leader outside the ISR); and the
 * `--cluster` address parser.
 */
import { describe, expect, test } from 'vitest';
import { parseEtcdAddress } from '../../../src/cluster/control/cluster-options.js';
import {
  brokerKey,
  decodeBroker,
  decodeController,
  decodeControllerEpoch,
  decodePartition,
  decodeTopic,
  encodeRecord,
  parseKey,
  partitionKey,
  topicKey,
} from '../../../src/cluster/control/cluster-records.js';

describe('keys', () => {
  test('each key parses to what it names', () => {
    expect(parseKey(brokerKey(7))).toEqual({ kind: 'broker', brokerId: 7 });
    expect(parseKey('controller')).toEqual({ kind: 'controller' });
    expect(parseKey('controller-epoch')).toEqual({ kind: 'controller-epoch' });
    expect(parseKey(topicKey('a.b-c_d'))).toEqual({ kind: 'topic', topic: 'a.b-c_d' });
    expect(parseKey(partitionKey('orders', 12))).toEqual({
      kind: 'partition',
      topic: 'orders',
      partition: 12,
    });
  });

  test.each([
    'brokers/',
    'brokers/-1',
    'brokers/01',
    'brokers/1.5',
    'brokers/99999999999',
    'topics/',
    'topics/a/b',
    'partitions/orders',
    'partitions/orders/',
    'partitions/orders/x',
    'partitions/or ders/1',
    'partitions/orders/5000',
    'controllers',
    '',
  ])('%s is not a key of the layout', (key) => {
    expect(parseKey(key)).toBeUndefined();
  });
});

describe('records', () => {
  const partition = { replicas: [1, 2, 3], leaderId: 2, leaderEpoch: 4, isr: [2, 3], controllerEpoch: 1 };
  const topic = {
    partitions: 3,
    replicationFactor: 3,
    minInSyncReplicas: 2,
    createdAtMs: 1,
    config: { durability: 'always', retentionMs: 5 },
  };

  test('what is encoded decodes to the same record', () => {
    const broker = { brokerId: 3, url: 'ws://127.0.0.1:7070', registeredAtMs: 5 };
    expect(decodeBroker(encodeRecord(broker))).toEqual(broker);
    expect(decodeController(encodeRecord({ brokerId: 3, controllerEpoch: 2 }))).toEqual({
      brokerId: 3,
      controllerEpoch: 2,
    });
    expect(decodeControllerEpoch(encodeRecord({ controllerEpoch: 9 }))).toEqual({ controllerEpoch: 9 });
    expect(decodeTopic(encodeRecord(topic))).toEqual(topic);
    expect(decodePartition(encodeRecord(partition))).toEqual(partition);
    expect(decodePartition(encodeRecord({ ...partition, leaderId: -1 }))).toEqual({
      ...partition,
      leaderId: -1,
    });
  });

  test.each([
    ['not JSON', '{'],
    ['an array', '[]'],
    ['no version', JSON.stringify(partition)],
    ['a newer version', JSON.stringify({ ...partition, version: 2 })],
    ['an extra field', encodeRecord({ ...partition, extra: 1 })],
    ['a missing field', encodeRecord({ ...partition, isr: undefined })],
    ['a leader outside the ISR', encodeRecord({ ...partition, leaderId: 1 })],
    ['an ISR member outside the replicas', encodeRecord({ ...partition, isr: [2, 9] })],
    ['an empty ISR', encodeRecord({ ...partition, isr: [] })],
    ['a repeated replica', encodeRecord({ ...partition, replicas: [1, 1, 2] })],
    ['a negative epoch', encodeRecord({ ...partition, leaderEpoch: -1 })],
    ['a fractional broker id', encodeRecord({ ...partition, replicas: [1.5, 2, 3] })],
  ])('a partition value with %s is refused', (_what, text) => {
    expect(decodePartition(text)).toBeUndefined();
  });

  test.each([
    ['minInSyncReplicas above replicationFactor', { ...topic, minInSyncReplicas: 4 }],
    ['no partitions', { ...topic, partitions: 0 }],
    ['partitions in the local config', { ...topic, config: { partitions: 3 } }],
    ['a nested local config', { ...topic, config: { durability: { x: 1 } } }],
  ])('a topic value with %s is refused', (_what, record) => {
    expect(decodeTopic(encodeRecord(record))).toBeUndefined();
  });

  test('a broker value must advertise a ws:// or wss:// URL', () => {
    expect(decodeBroker(encodeRecord({ brokerId: 1, url: 'http://x:1', registeredAtMs: 0 }))).toBeUndefined();
    expect(decodeBroker(encodeRecord({ brokerId: 1, url: 'wss://x:1', registeredAtMs: 0 }))).toBeDefined();
    expect(decodeController(encodeRecord({ brokerId: 1, controllerEpoch: 0 }))).toBeUndefined();
  });
});

describe('parseEtcdAddress', () => {
  test('one or several host:port pairs', () => {
    expect(parseEtcdAddress('etcd://127.0.0.1:2379')).toEqual(['http://127.0.0.1:2379']);
    expect(parseEtcdAddress('etcd://a:1,b.example:2,[::1]:3')).toEqual([
      'http://a:1',
      'http://b.example:2',
      'http://[::1]:3',
    ]);
  });

  test.each([
    'http://127.0.0.1:2379',
    'etcd://',
    'etcd://host',
    'etcd://host:0',
    'etcd://host:65536',
    'etcd://host:1,',
    'etcd://ho st:1',
  ])('%s is INVALID_ARGUMENT', (address) => {
    expect(() => parseEtcdAddress(address)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});
