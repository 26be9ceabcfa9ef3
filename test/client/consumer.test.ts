import { getEventListeners } from 'node:events';
import { describe, expect, test } from 'vitest';
import { type ConsumedMessage, type Consumer, type Spillway, SpillwayError } from '../../src/client/index.js';
import { BrokerClosingError } from '../../src/errors.js';
import { encodeBatch } from '../../src/format/record-batch.js';
import type { FetchOptions, MessageService } from '../../src/protocol/broker-api.js';
import type { Broker } from '../../src/spillway-broker.js';
import { connect, delegate, openBroker, sleep, waitFor } from './helpers.js';

/** Takes `count` messages from the consumer (without closing it). */
async function take(consumer: Consumer, count: number): Promise<ConsumedMessage[]> {
  const messages: ConsumedMessage[] = [];
  while (messages.length < count) {
    const result = await consumer.next();
    if (result.done) break;
    messages.push(result.value);
  }
  return messages;
}

async function produceValues(sw: Spillway, topic: string, values: string[], partition = 0): Promise<void> {
  const producer = sw.producer();
  await Promise.all(values.map((value) => producer.send(topic, { partition, value })));
}

async function setup(overrides: (broker: Broker) => Partial<MessageService> = () => ({})) {
  const broker = await openBroker();
  const fetches: Array<{ topic: string; partition: number; offset: number; options: FetchOptions }> = [];
  const extra = overrides(broker);
  const api = delegate(broker, {
    ...extra,
    fetch: (topic, partition, offset, options) => {
      fetches.push({ topic, partition, offset, options });
      return extra.fetch
        ? extra.fetch(topic, partition, offset, options)
        : broker.messages.fetch(topic, partition, offset, options);
    },
  });
  const sw = await connect(api);
  return { broker, api, sw, fetches };
}

describe('consumer', () => {
  test('yields messages with their fields; Buffers convert to text', async () => {
    const { sw } = await setup();
    await sw.admin.createTopic('t');
    const producer = sw.producer();
    await producer.send('t', {
      key: 'k1',
      value: 'hello',
      headers: { h: 'v', bytes: new Uint8Array([1, 2]), none: null },
      timestamp: 1234,
    });
    await producer.send('t', { value: new Uint8Array([0, 255]) });
    await producer.send('t', { key: null, value: null });
    const consumer = sw.consumer({ topics: ['t'], from: 'earliest' });
    const [first, second, third] = await take(consumer, 3);
    expect(first).toMatchObject({ topic: 't', partition: 0, offset: 0, timestamp: 1234, deliveryCount: 1 });
    expect(first!.key!.toString()).toBe('k1');
    expect(first!.value!.toString()).toBe('hello');
    expect(first!.headers['h']!.toString()).toBe('v');
    expect([...first!.headers['bytes']!]).toEqual([1, 2]);
    expect(first!.headers['none']).toBeNull();
    expect(second!.key).toBeNull();
    expect([...second!.value!]).toEqual([0, 255]);
    expect(Buffer.isBuffer(second!.value)).toBe(true);
    expect(third!.value).toBeNull();
    expect(third!.headers).toEqual({});
    expect(first!.toJSON()).toEqual({
      topic: 't',
      partition: 0,
      offset: 0,
      key: 'k1',
      value: 'hello',
      headers: { h: 'v', bytes: '\u0001\u0002', none: null },
      timestamp: 1234,
      deliveryCount: 1,
    });
    await consumer.close();
  });

  test("from 'earliest', 'latest', { offset } and { timestamp }", async () => {
    const { sw } = await setup();
    await sw.admin.createTopic('t');
    const producer = sw.producer();
    for (let i = 0; i < 10; i++) await producer.send('t', { value: `v${i}`, timestamp: 1000 + i * 10 });
    const values = (messages: ConsumedMessage[]) => messages.map((message) => message.value!.toString());

    const earliest = sw.consumer({ topics: ['t'], from: 'earliest' });
    expect(values(await take(earliest, 3))).toEqual(['v0', 'v1', 'v2']);
    const fromOffset = sw.consumer({ topics: ['t'], from: { offset: 7 } });
    expect(values(await take(fromOffset, 3))).toEqual(['v7', 'v8', 'v9']);
    const fromTime = sw.consumer({ topics: ['t'], from: { timestamp: 1045 } });
    expect(values(await take(fromTime, 2))).toEqual(['v5', 'v6']);

    const latest = sw.consumer({ topics: ['t'] });
    await latest.ready();
    expect(latest.assignment()).toEqual([{ topic: 't', partition: 0, position: 10 }]);
    await producer.send('t', { value: 'new' });
    expect(values(await take(latest, 1))).toEqual(['new']);
    await Promise.all([earliest.close(), fromOffset.close(), fromTime.close(), latest.close()]);
  });

  test('skips the records below the offset asked for in a batch that starts earlier', async () => {
    const { sw, fetches } = await setup();
    await sw.admin.createTopic('t');
    // One tick: one batch of 10 records.
    await produceValues(
      sw,
      't',
      Array.from({ length: 10 }, (_, i) => `v${i}`),
    );
    const consumer = sw.consumer({ topics: ['t'], from: { offset: 6 } });
    const messages = await take(consumer, 4);
    expect(messages.map((message) => message.offset)).toEqual([6, 7, 8, 9]);
    expect(fetches[0]!.offset).toBe(6);
    await consumer.close();
  });

  test('reads every partition of every topic, or only the partitions given, each in order', async () => {
    const { sw } = await setup();
    await sw.admin.createTopic('a', { partitions: 3 });
    await sw.admin.createTopic('b', { partitions: 2 });
    const producer = sw.producer();
    const sends = [];
    for (let i = 0; i < 300; i++) {
      sends.push(producer.send('a', { key: `k${i % 17}`, value: `a${i}` }));
      sends.push(producer.send('b', { key: `k${i % 5}`, value: `b${i}` }));
    }
    await Promise.all(sends);
    const all = sw.consumer({ topics: ['a', 'b'], from: 'earliest', maxBytes: 1024 });
    const messages = await take(all, 600);
    const last = new Map<string, number>();
    for (const message of messages) {
      const where = `${message.topic}/${message.partition}`;
      expect(message.offset).toBe((last.get(where) ?? -1) + 1);
      last.set(where, message.offset);
    }
    expect(last.size).toBe(5);
    await all.close();

    const some = sw.consumer({ topics: ['a'], partitions: [2], from: 'earliest' });
    const fromTwo = await take(some, 5);
    expect(fromTwo.every((message) => message.partition === 2)).toBe(true);
    await some.close();
  });

  test('a long-poll answers as soon as a message arrives', async () => {
    const { sw } = await setup();
    await sw.admin.createTopic('t');
    const consumer = sw.consumer({ topics: ['t'], maxWaitMs: 10_000 });
    await consumer.ready();
    const next = consumer.next();
    await sleep(50);
    const started = Date.now();
    await sw.producer().send('t', { value: 'ping' });
    const result = await next;
    expect(result.done).toBe(false);
    expect(Date.now() - started).toBeLessThan(1000);
    await consumer.close();
  });

  test('fetches reuse one abort signal per partition until a rewind aborts one; no listener is left on it', async () => {
    const { sw } = await setup();
    await sw.admin.createTopic('t');
    const consumer = sw.consumer({ topics: ['t'], from: 'earliest', maxWaitMs: 10_000 });
    const reader = () =>
      (consumer as unknown as { readers: Array<{ fetchController: AbortController | null }> }).readers[0]!;
    const producer = sw.producer();
    let controller: AbortController | null = null;
    let last: ConsumedMessage | undefined;
    // One message per fetch: each next() waits in a long-poll the send answers.
    for (let index = 0; index < 6; index++) {
      const next = consumer.next();
      await sleep(5);
      await producer.send('t', { value: `v${index}` });
      const result = await next;
      last = result.value as ConsumedMessage;
      expect(Buffer.from(last.value!).toString()).toBe(`v${index}`);
      controller ??= reader().fetchController;
      expect(reader().fetchController).toBe(controller);
    }
    await sleep(20); // the next long-poll is in flight
    expect(getEventListeners(controller!.signal, 'abort').length).toBeLessThanOrEqual(1);
    // A nack rewinds: the fetch in flight is aborted, the message comes again, under a new signal.
    await last!.nack();
    const again = await consumer.next();
    expect([again.value?.offset, again.value?.deliveryCount]).toEqual([5, 2]);
    expect(controller!.signal.aborted).toBe(true);
    expect(reader().fetchController).not.toBe(controller);
    await consumer.close();
  });

  test('a partition is not fetched while its buffered bytes exceed the bound', async () => {
    const { sw, fetches } = await setup();
    await sw.admin.createTopic('t');
    const producer = sw.producer({ batchBytes: 16 * 1024 });
    await Promise.all(
      Array.from({ length: 2000 }, (_, i) => producer.send('t', { value: `${i}`.padEnd(1000, '.') })),
    );
    const consumer = sw.consumer({
      topics: ['t'],
      from: 'earliest',
      maxBytes: 32 * 1024,
      partitionBufferBytesMax: 64 * 1024,
    });
    await take(consumer, 1);
    await sleep(200);
    // 64 KiB of 32 KiB answers: a few fetches, not the 2 MB of the partition.
    expect(fetches.length).toBeLessThanOrEqual(4);
    const rest = await take(consumer, 1999);
    expect(rest.map((message) => message.offset)).toEqual(Array.from({ length: 1999 }, (_, i) => i + 1));
    await consumer.close();
  });

  test('breaking out of for-await closes the consumer and stops fetching', async () => {
    const { sw, fetches } = await setup();
    await sw.admin.createTopic('t');
    await produceValues(sw, 't', ['a', 'b', 'c']);
    const consumer = sw.consumer({ topics: ['t'], from: 'earliest', maxWaitMs: 20 });
    let seen = 0;
    for await (const message of consumer) {
      seen++;
      if (message.offset === 1) break;
    }
    expect(seen).toBe(2);
    const fetchCount = fetches.length;
    await sleep(100);
    expect(fetches.length).toBe(fetchCount);
    expect(await consumer.next()).toEqual({ done: true, value: undefined });
  });

  test('close ends a pending next() and a long-poll at once', async () => {
    const { sw } = await setup();
    await sw.admin.createTopic('t');
    const consumer = sw.consumer({ topics: ['t'], maxWaitMs: 30_000 });
    await consumer.ready();
    const pending = consumer.next();
    await sleep(20);
    const started = Date.now();
    await consumer.close();
    expect(await pending).toEqual({ done: true, value: undefined });
    expect(Date.now() - started).toBeLessThan(500);
  });

  test('a corrupt batch is an error, not skipped', async () => {
    const { sw } = await setup((broker) => ({
      fetch: async (topic, partition, offset, options) => {
        const result = await broker.messages.fetch(topic, partition, offset, options);
        if (result.records.length === 0) return result;
        const records = Uint8Array.from(result.records);
        records[records.length - 3]! ^= 0x40;
        return { ...result, records };
      },
    }));
    await sw.admin.createTopic('t');
    await produceValues(sw, 't', ['a', 'b']);
    const consumer = sw.consumer({ topics: ['t'], from: 'earliest' });
    const error = await consumer.next().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(SpillwayError);
    expect((error as SpillwayError).code).toBe('CORRUPT_BATCH');
    expect(await consumer.next()).toEqual({ done: true, value: undefined });
  });

  test('a corrupt batch after good ones in the same answer: the good messages, then the error', async () => {
    const { sw } = await setup((broker) => ({
      fetch: async (topic, partition, offset, options) => {
        const result = await broker.messages.fetch(topic, partition, offset, options);
        if (result.records.length === 0) return result;
        const records = Uint8Array.from(result.records);
        records[records.length - 3]! ^= 0x40;
        return { ...result, records };
      },
    }));
    await sw.admin.createTopic('t');
    // Two batches: the second (last in the answer) gets corrupted.
    await produceValues(sw, 't', ['a', 'b', 'c']);
    await produceValues(sw, 't', ['d']);
    const consumer = sw.consumer({ topics: ['t'], from: 'earliest' });
    await consumer.ready();
    await sleep(20);
    const values: string[] = [];
    let error: unknown = null;
    try {
      for await (const message of consumer) values.push(message.value!.toString());
    } catch (caught) {
      error = caught;
    }
    expect(values).toEqual(['a', 'b', 'c']);
    expect((error as SpillwayError).code).toBe('CORRUPT_BATCH');
    expect(await consumer.next()).toEqual({ done: true, value: undefined });
  });

  test('a truncated answer is an error too', async () => {
    const { sw } = await setup((broker) => ({
      fetch: async (topic, partition, offset, options) => {
        const result = await broker.messages.fetch(topic, partition, offset, options);
        return { ...result, records: result.records.subarray(0, Math.max(0, result.records.length - 1)) };
      },
    }));
    await sw.admin.createTopic('t');
    await produceValues(sw, 't', ['a']);
    const consumer = sw.consumer({ topics: ['t'], from: 'earliest' });
    await expect(consumer.next()).rejects.toMatchObject({ code: 'CORRUPT_BATCH' });
  });

  test('a retriable fetch error is retried; another is thrown after the messages already fetched', async () => {
    let failuresLeft = 2;
    const { sw, fetches } = await setup((broker) => ({
      fetch: async (topic, partition, offset, options) => {
        if (failuresLeft > 0) {
          failuresLeft--;
          throw new BrokerClosingError();
        }
        return broker.messages.fetch(topic, partition, offset, options);
      },
    }));
    await sw.admin.createTopic('t');
    await produceValues(sw, 't', ['a', 'b']);
    const consumer = sw.consumer({ topics: ['t'], from: 'earliest', retryBackoffMs: 5 });
    expect((await take(consumer, 2)).map((message) => message.value!.toString())).toEqual(['a', 'b']);
    expect(fetches.length).toBeGreaterThanOrEqual(3);
    await consumer.close();

    const beyond = sw.consumer({ topics: ['t'], from: { offset: 50 } });
    await expect(beyond.next()).rejects.toMatchObject({ code: 'OFFSET_OUT_OF_RANGE' });
    await expect(sw.consumer({ topics: ['missing'] }).next()).rejects.toMatchObject({
      code: 'UNKNOWN_TOPIC',
    });
    await expect(sw.consumer({ topics: ['t'], partitions: [3] }).next()).rejects.toMatchObject({
      code: 'UNKNOWN_PARTITION',
    });
  });

  test('options are checked: a queue mode needs a group, a mode must be known', async () => {
    const { sw } = await setup();
    expect(() => sw.consumer({ topics: ['t'], mode: 'shared' } as never)).toThrow(SpillwayError);
    expect(() => sw.consumer({ topics: ['t'], group: 'g', mode: 'fanout' } as never)).toThrow(SpillwayError);
    expect(() => sw.consumer({ topics: [] })).toThrow(SpillwayError);
    expect(() => sw.consumer({ topics: ['t'], from: 'middle' as 'earliest' })).toThrow(SpillwayError);
    expect(() => sw.consumer({ topics: ['t'], maxWaitMs: -1 })).toThrow(SpillwayError);
  });

  test('batches from another producer (encoded by hand) decode the same', async () => {
    const { broker, sw } = await setup();
    await sw.admin.createTopic('t');
    await broker.messages.produce(
      't',
      0,
      encodeBatch([
        { key: 'a', value: 'one', timestamp: 5 },
        { key: null, value: 'two', headers: [['x', 'y']], timestamp: 3 },
      ]),
    );
    const consumer = sw.consumer({ topics: ['t'], from: 'earliest' });
    const messages = await take(consumer, 2);
    expect(
      messages.map((message) => [
        message.offset,
        message.key?.toString() ?? null,
        message.value!.toString(),
        message.timestamp,
      ]),
    ).toEqual([
      [0, 'a', 'one', 5],
      [1, null, 'two', 3],
    ]);
    expect(messages[1]!.headers['x']!.toString()).toBe('y');
    await consumer.close();
    await waitFor(() => true);
  });
});
