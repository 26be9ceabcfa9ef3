/**
 * The idempotent producer end to end, real broker, no mocks:
 *  - a fault hook in front of the in-process broker loses requests and answers at random during
 *    100k sends with 5 batches in flight per partition: each message is in the log exactly once, in
 *    send order per partition, and every send() resolved with the offset the message really got;
 *  - the same over WebSocket through a TCP proxy that cuts connections at random (losing answers);
 *  - fencing by producerName; recovery from UNKNOWN_PRODUCER_ID (idle expiry) with a new session.
 * The SIGKILL of a broker process during the storm is in idempotent-producer-kill.test.ts.
 */
import { describe, expect, test } from 'vitest';
import { type SendResult, SpillwayError } from '../../src/client/index.js';
import { batchLengthAt } from '../../src/format/batch-header.js';
import { decodeRecords } from '../../src/format/record-batch.js';
import type { Broker } from '../../src/spillway-broker.js';
import { seededRandom } from '../kill-runner.js';
import { cuttingProxy } from './cutting-proxy.js';
import { connect, delegate, openBroker, serve } from './helpers.js';

/** Every record of a partition as [offset, value]. */
async function partitionRecords(
  broker: Broker,
  topic: string,
  partition: number,
): Promise<Array<[number, string]>> {
  const records: Array<[number, string]> = [];
  let offset = 0;
  for (;;) {
    const result = await broker.messages.fetch(topic, partition, offset, { maxBytes: 4 << 20, maxWaitMs: 0 });
    if (result.batchCount === 0) return records;
    const bytes = result.records;
    for (let position = 0; position < bytes.length; position += batchLengthAt(bytes, position)) {
      for (const record of decodeRecords(bytes, position)) {
        records.push([record.offset, Buffer.from(record.value!).toString()]);
      }
    }
    offset = result.nextOffset;
  }
}

/**
 * Sends `count` messages (value = their index, key spread over `keys`), all without awaiting; checks
 * that each partition's log holds exactly the messages sent to it, once each, in send order, at the
 * offsets their send() promises gave.
 */
async function sendAndCheck(
  broker: Broker,
  send: (index: number) => Promise<SendResult>,
  count: number,
  topic: string,
  partitions: number,
  afterFirst: () => void = () => {},
): Promise<void> {
  // The first one alone: the producer learns the partition count (a failure there fails the send).
  const sends: Array<Promise<SendResult>> = [send(0)];
  await sends[0];
  afterFirst();
  for (let i = 1; i < count; i++) sends.push(send(i));
  const results = await Promise.all(sends);
  const expected: Array<Array<[number, string]>> = Array.from({ length: partitions }, () => []);
  results.forEach((result, i) => {
    expected[result.partition]!.push([result.offset, messageValue(i)]);
  });
  for (let partition = 0; partition < partitions; partition++) {
    const records = await partitionRecords(broker, topic, partition);
    expect(records.length, `partition ${partition}`).toBe(expected[partition]!.length);
    // In send order and at the offsets answered: equal lists (so no message twice, none lost).
    expect(records).toEqual(expected[partition]);
  }
}

/** Message i's value: about 100 bytes. */
function messageValue(i: number): string {
  return `${i}:`.padEnd(100, '.');
}

describe('idempotent producer', () => {
  test('100k sends through lost requests and lost answers: each message once, in send order', async () => {
    const broker = await openBroker();
    await broker.topics.create('storm', { partitions: 4 });
    const random = seededRandom(20261206);
    let lostRequests = 0;
    let lostAnswers = 0;
    const api = delegate(broker, {
      produce: async (topic, partition, batch) => {
        if (random() < 0.03) {
          lostRequests++;
          throw new SpillwayError('CONNECTION_CLOSED', 'fault hook: request lost');
        }
        const result = await broker.messages.produce(topic, partition, batch);
        if (random() < 0.05) {
          lostAnswers++;
          throw new SpillwayError('CONNECTION_CLOSED', 'fault hook: answer lost');
        }
        return result;
      },
    });
    const sw = await connect(api);
    const producer = sw.producer({
      idempotent: true,
      batchBytes: 4096,
      retries: 1_000_000,
      retryBackoffMs: 1,
      retryBackoffMaxMs: 4,
    });
    await sendAndCheck(
      broker,
      (i) => producer.send('storm', { key: `k${i % 97}`, value: messageValue(i) }),
      100_000,
      'storm',
      4,
    );
    expect(lostRequests).toBeGreaterThan(20);
    expect(lostAnswers).toBeGreaterThan(20);
    // Lost answers of written batches came back as repeats, answered without writing.
    expect(broker.producers.stats().duplicates).toBeGreaterThan(0);
    await producer.close();
  });

  test('over WebSocket through a proxy cutting connections at random', async () => {
    const broker = await openBroker();
    await broker.topics.create('cuts', { partitions: 3 });
    const server = await serve(broker);
    const proxy = await cuttingProxy(server.port, seededRandom(7), 0.1);
    const sw = await connect(proxy.url, { reconnectBackoffMs: 1, reconnectBackoffMaxMs: 20 });
    const producer = sw.producer({
      idempotent: true,
      batchBytes: 4096,
      retries: 1_000_000,
      retryBackoffMs: 1,
      retryBackoffMaxMs: 10,
    });
    await sendAndCheck(
      broker,
      (i) => producer.send('cuts', { key: `k${i % 31}`, value: messageValue(i) }),
      50_000,
      'cuts',
      3,
      () => proxy.start(),
    );
    expect(proxy.cuts).toBeGreaterThan(5);
    expect(broker.producers.stats().duplicates).toBeGreaterThan(0);
    proxy.stop();
    await producer.close();
  });

  test('a producer registering with the same producerName fences the earlier one', async () => {
    const broker = await openBroker();
    await broker.topics.create('f');
    const sw = await connect(broker);
    const first = sw.producer({ idempotent: true, producerName: 'billing' });
    expect(await first.send('f', { value: 'a' })).toEqual({ partition: 0, offset: 0 });
    const second = sw.producer({ idempotent: true, producerName: 'billing' });
    expect(await second.send('f', { value: 'b' })).toEqual({ partition: 0, offset: 1 });
    await expect(first.send('f', { value: 'zombie' })).rejects.toMatchObject({ code: 'PRODUCER_FENCED' });
    // Fenced for good: later sends fail too, nothing written.
    await expect(first.send('f', { value: 'zombie 2' })).rejects.toMatchObject({ code: 'PRODUCER_FENCED' });
    expect(await second.send('f', { value: 'c' })).toEqual({ partition: 0, offset: 2 });
    expect((await partitionRecords(broker, 'f', 0)).map(([, value]) => value)).toEqual(['a', 'b', 'c']);
  });

  test('sends delayed messages and msgIds outside its sequences; its sequenced sends go on', async () => {
    const broker = await openBroker();
    await broker.topics.create('d', { dedupWindowMs: 60_000 });
    const sw = await connect(broker);
    const producer = sw.producer({ idempotent: true });
    expect(await producer.send('d', { value: 'a' })).toEqual({ partition: 0, offset: 0 });
    const first = await producer.send('d', { value: 'm', msgId: 'order-42' });
    // The same msgId again (a resend by the application): folded onto the first copy.
    expect(await producer.send('d', { value: 'm again', msgId: 'order-42' })).toEqual(first);
    await producer.send('d', { value: 'later', delayMs: 60_000 });
    expect(await producer.send('d', { value: 'b' })).toMatchObject({ partition: 0 });
    await producer.flush();
    expect((await partitionRecords(broker, 'd', 0)).map(([, value]) => value)).toEqual(['a', 'm', 'b']);
    expect(broker.delay.stats()).toMatchObject({ pending: 1 });
  });

  test('after its producer id expired, the producer registers again and goes on', async () => {
    const broker = await openBroker({ producerIdleExpiryMs: 40 });
    await broker.topics.create('e');
    const sw = await connect(broker);
    const producer = sw.producer({ idempotent: true });
    expect(await producer.send('e', { value: 'a' })).toEqual({ partition: 0, offset: 0 });
    const before = broker.producers.stats().expired;
    const deadline = Date.now() + 5_000;
    while (broker.producers.stats().expired === before && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(broker.producers.stats().expired).toBeGreaterThan(before);
    expect(await producer.send('e', { value: 'b' })).toEqual({ partition: 0, offset: 1 });
    expect((await partitionRecords(broker, 'e', 0)).map(([, value]) => value)).toEqual(['a', 'b']);
  });

  test('a registration that keeps failing fails the sends after deliveryTimeoutMs; a refused one at once', async () => {
    const broker = await openBroker();
    await broker.topics.create('r');
    let attempts = 0;
    const failing = {
      ...delegate(broker),
      producers: {
        initProducer: async () => {
          attempts++;
          throw new SpillwayError('BROKER_CLOSING', 'not now');
        },
      },
    };
    const sw = await connect(failing);
    const producer = sw.producer({ idempotent: true, deliveryTimeoutMs: 300, retryBackoffMs: 10 });
    await expect(producer.send('r', { value: 'a' })).rejects.toMatchObject({ code: 'BROKER_CLOSING' });
    expect(attempts).toBeGreaterThan(1);
    const refusing = {
      ...delegate(broker),
      producers: {
        initProducer: async () => {
          throw new SpillwayError('INVALID_ARGUMENT', 'no');
        },
      },
    };
    const refused = (await connect(refusing)).producer({ idempotent: true });
    await expect(refused.send('r', { value: 'b' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(broker.messages.listOffset('r', 0, 'latest')).toBe(0);
  });
});
