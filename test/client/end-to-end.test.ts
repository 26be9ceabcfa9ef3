/**
 * The client against a real broker, through the WebSocket server and in process: many keyed
 * messages produced and consumed, order and content checked per partition; and a server restart in
 * the middle of producing and consuming.
 */
import { describe, expect, test } from 'vitest';
import type { ConsumedMessage, Spillway } from '../../src/client/index.js';
import type { BrokerApi } from '../../src/protocol/broker-api.js';
import { partitionForKey } from '../../src/protocol/partitioner.js';
import { connect, openBroker, serve, sleep, tcpRelay } from './helpers.js';

const messageCount = 200_000;
const partitionCount = 8;
const keyCount = 1000;

/** Produces `messageCount` keyed messages (value `${key}:${sequence of the key}`), then consumes them all. */
async function produceAndConsume(sw: Spillway, label: string): Promise<void> {
  await sw.admin.createTopic('e2e', { partitions: partitionCount });
  const producer = sw.producer({ lingerMs: 1 });
  const started = performance.now();
  const sends = new Array<Promise<{ partition: number; offset: number }>>(messageCount);
  const perKey = new Int32Array(keyCount);
  for (let i = 0; i < messageCount; i++) {
    const key = i % keyCount;
    sends[i] = producer.send('e2e', {
      key: `key-${key}`,
      value: `key-${key}:${perKey[key]!++}`,
      headers: { n: `${i}` },
    });
  }
  const results = await Promise.all(sends);
  const producedMs = performance.now() - started;
  for (let i = 0; i < messageCount; i += 997) {
    expect(results[i]!.partition).toBe(partitionForKey(`key-${i % keyCount}`, partitionCount));
  }

  const consumer = sw.consumer({ topics: ['e2e'], from: 'earliest' });
  const consumeStarted = performance.now();
  const nextOffset = new Array<number>(partitionCount).fill(0);
  const nextSequence = new Int32Array(keyCount);
  let seen = 0;
  for await (const message of consumer) {
    checkMessage(message, nextOffset, nextSequence);
    if (++seen === messageCount) break;
  }
  const consumedMs = performance.now() - consumeStarted;
  expect(seen).toBe(messageCount);
  expect(nextOffset.reduce((sum, offset) => sum + offset, 0)).toBe(messageCount);
  expect([...nextSequence]).toEqual([...perKey]);
  // Every send's offset is that of the message consumed there.
  const description = await sw.admin.describeTopic('e2e');
  expect(description.partitions.map((partition) => partition.logEndOffset)).toEqual(nextOffset);
  console.log(
    `${label}: produced ${messageCount} keyed messages in ${producedMs.toFixed(0)} ms ` +
      `(${Math.round(messageCount / (producedMs / 1000))} msg/s), consumed in ${consumedMs.toFixed(0)} ms ` +
      `(${Math.round(messageCount / (consumedMs / 1000))} msg/s)`,
  );
  await producer.close();
}

function checkMessage(message: ConsumedMessage, nextOffset: number[], nextSequence: Int32Array): void {
  const partition = message.partition;
  if (message.offset !== nextOffset[partition]) {
    throw new Error(`partition ${partition}: offset ${message.offset}, expected ${nextOffset[partition]}`);
  }
  nextOffset[partition]!++;
  const key = message.key!.toString();
  const [valueKey, sequence] = message.value!.toString().split(':');
  const keyIndex = Number(key.slice(4));
  if (valueKey !== key || Number(sequence) !== nextSequence[keyIndex]) {
    throw new Error(
      `message ${message.offset} of partition ${partition}: ${key} -> ${message.value!.toString()}`,
    );
  }
  nextSequence[keyIndex]!++;
  if (partitionForKey(key, partitionCount) !== partition) throw new Error(`${key} in partition ${partition}`);
  if (message.headers['n'] === undefined) throw new Error('header n missing');
}

describe('end to end', () => {
  test(`${messageCount} keyed messages over WebSocket, all consumed in order`, async () => {
    const broker = await openBroker({ segmentBytes: 64 * 1024 * 1024 });
    const server = await serve(broker);
    const sw = await connect(server.url);
    await produceAndConsume(sw, 'WebSocket');
  });

  test(`${messageCount} keyed messages in process, all consumed in order`, async () => {
    const broker = await openBroker({ segmentBytes: 64 * 1024 * 1024 });
    const sw = await connect(broker as BrokerApi);
    await produceAndConsume(sw, 'in process');
  });

  test('producer and consumer ride out a server restart (reconnect, retries)', async () => {
    const broker = await openBroker();
    await broker.topics.create('r', { partitions: 2 });
    let server = await serve(broker);
    // Clients reach the server through a relay on a fixed port: the restarted server gets a new port
    // (uWS cannot listen on the old one while it is in TIME_WAIT), the clients keep their URL.
    const relay = await tcpRelay(server.port);
    const sw = await connect(relay.url, { reconnectBackoffMs: 20, reconnectBackoffMaxMs: 100 });
    const producer = sw.producer({ retryBackoffMs: 20, retryBackoffMaxMs: 100, retries: 100 });
    const consumer = sw.consumer({ topics: ['r'], from: 'earliest', maxWaitMs: 100, retryBackoffMs: 20 });
    await consumer.ready();

    const before = await Promise.all(
      Array.from({ length: 50 }, (_, i) => producer.send('r', { key: `${i}`, value: `before-${i}` })),
    );
    relay.setBackend(null);
    await server.close();
    relay.dropConnections();
    // Sends while the broker is unreachable are retried until it is back.
    const during = Promise.all(
      Array.from({ length: 50 }, (_, i) => producer.send('r', { key: `${i}`, value: `during-${i}` })),
    );
    await sleep(300);
    server = await serve(broker);
    relay.setBackend(server.port);
    const duringResults = await during;
    const after = await Promise.all(
      Array.from({ length: 50 }, (_, i) => producer.send('r', { key: `${i}`, value: `after-${i}` })),
    );

    const values = new Set<string>();
    for await (const message of consumer) {
      values.add(message.value!.toString());
      if (values.size === 150) break;
    }
    expect(values.size).toBe(150);
    for (const prefix of ['before', 'during', 'after']) {
      for (let i = 0; i < 50; i++) expect(values.has(`${prefix}-${i}`)).toBe(true);
    }
    // No duplicates: nothing was appended while the server was down.
    const ends = broker.topics.describe('r').partitions.map((partition) => partition.logEndOffset);
    expect(ends[0]! + ends[1]!).toBe(150);
    expect([...before, ...duringResults, ...after]).toHaveLength(150);
  });
});
