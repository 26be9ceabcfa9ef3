import { describe, expect, test } from 'vitest';
import type { ConsumedMessage, Consumer } from '../../src/client/index.js';
import { ReceiveBufferPool } from '../../src/client/receive-buffer-pool.js';
import { SpillwayError } from '../../src/errors.js';
import { receiveBufferBytesMin, receiveBuffersKept } from '../../src/limits.js';
import { connect, openBroker, serve } from './helpers.js';

/** 20 KiB of bytes particular to `index`. */
function payloadOf(index: number): Buffer {
  const bytes = Buffer.allocUnsafe(20 * 1024);
  for (let position = 0; position < bytes.length; position++)
    bytes[position] = (position * 7 + index * 13) & 0xff;
  return bytes;
}

const count = 40;

/** A broker behind a WebSocket server holding `count` messages of 20 KiB in topic 't', and a client of it. */
async function setup() {
  const broker = await openBroker();
  const server = await serve(broker);
  const client = await connect(server.url);
  await client.admin.createTopic('t', { partitions: 1 });
  const producer = client.producer();
  await Promise.all(
    Array.from({ length: count }, (_, index) => producer.send('t', { value: payloadOf(index) })),
  );
  return client;
}

/** Takes `count` messages, checking each value when taken (before the next one is asked for). */
async function takeChecked(consumer: Consumer): Promise<ConsumedMessage[]> {
  const messages: ConsumedMessage[] = [];
  for await (const message of consumer) {
    expect(Buffer.from(message.value!).equals(payloadOf(message.offset))).toBe(true);
    messages.push(message);
    if (messages.length === count) break;
  }
  return messages;
}

describe('receive buffers', () => {
  test('the pool lends buffers of the size asked for, detaches them on release, keeps a bounded number', () => {
    const pool = new ReceiveBufferPool();
    const lent = Array.from({ length: receiveBuffersKept + 3 }, (_, index) => pool.take(1000 + index));
    expect(lent.map((buffer) => buffer.length)).toEqual(lent.map((_, index) => 1000 + index));
    expect(lent[0]!.buffer.byteLength).toBe(receiveBufferBytesMin);
    expect(pool.take(receiveBufferBytesMin + 1).buffer.byteLength).toBe(2 * receiveBufferBytesMin);
    const view = lent[0]!.subarray(10, 20);
    view.fill(7);
    expect(pool.owns(view)).toBe(true);
    pool.release(view);
    expect([view.length, lent[0]!.length, pool.owns(lent[0]!)]).toEqual([0, 0, false]);
    pool.release(lent[0]!); // twice: nothing more
    const foreign = Buffer.alloc(100, 1);
    pool.release(foreign);
    expect(foreign.length).toBe(100);
    for (const buffer of lent.slice(1)) pool.release(buffer);
    expect(pool.freeBuffers).toBe(receiveBuffersKept);
    const reused = pool.take(5000);
    expect([reused.length, pool.freeBuffers]).toEqual([5000, receiveBuffersKept - 1]);
    // A buffer its holder detached itself (transferred elsewhere) is not reused, and no error.
    structuredClone(reused.buffer, { transfer: [reused.buffer as ArrayBuffer] });
    pool.release(reused);
    expect(pool.freeBuffers).toBe(receiveBuffersKept - 1);
  });

  test('a small answer never takes a free buffer more than twice its size; the smallest fitting one is reused', () => {
    const pool = new ReceiveBufferPool();
    const big = pool.take(8 * receiveBufferBytesMin);
    const small = pool.take(receiveBufferBytesMin);
    const medium = pool.take(2 * receiveBufferBytesMin);
    for (const buffer of [big, small, medium]) pool.release(buffer);
    expect(pool.freeBuffers).toBe(3);
    // 1,000 bytes: only the smallest (receiveBufferBytesMin) qualifies.
    expect(pool.take(1000).buffer.byteLength).toBe(receiveBufferBytesMin);
    // Just over receiveBufferBytesMin: the 2x one fits, the 8x one is too large.
    expect(pool.take(receiveBufferBytesMin + 1).buffer.byteLength).toBe(2 * receiveBufferBytesMin);
    // Nothing free fits 100 bytes within 2x (the 8x one is left): a new minimal buffer.
    expect(pool.take(100).buffer.byteLength).toBe(receiveBufferBytesMin);
    expect(pool.freeBuffers).toBe(1);
    expect(pool.take(5 * receiveBufferBytesMin).buffer.byteLength).toBe(8 * receiveBufferBytesMin);
    expect(pool.freeBuffers).toBe(0);
  });

  test('by default a message kept across later fetches keeps its bytes', async () => {
    const client = await setup();
    // 64 KiB per fetch: the 40 messages come in many answers.
    const consumer = client.consumer({ topics: ['t'], from: 'earliest', maxBytes: 64 * 1024 });
    const messages = await takeChecked(consumer);
    for (const message of messages) {
      expect(Buffer.from(message.value!).equals(payloadOf(message.offset))).toBe(true);
    }
  });

  test('with reuseReceiveBuffers a kept value reads as empty once its buffer is reused, never as other bytes', async () => {
    const client = await setup();
    const consumer = client.consumer({
      topics: ['t'],
      from: 'earliest',
      maxBytes: 64 * 1024,
      reuseReceiveBuffers: true,
    });
    const messages = await takeChecked(consumer);
    let emptied = 0;
    for (const message of messages) {
      if (message.value!.length === 0) emptied++;
      else expect(Buffer.from(message.value!).equals(payloadOf(message.offset))).toBe(true);
    }
    expect(emptied).toBeGreaterThan(0);
    const runner = client.consumer({ topics: ['t'], from: 'earliest', reuseReceiveBuffers: true });
    const error = await runner.run({ handler: () => undefined }).then(
      () => null,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(SpillwayError);
    expect((error as SpillwayError).code).toBe('INVALID_ARGUMENT');
    await runner.close();
    expect(() => client.consumer({ topics: ['t'], reuseReceiveBuffers: 1 as unknown as boolean })).toThrow(
      /reuseReceiveBuffers must be a boolean/,
    );
  });

  test('with reuseReceiveBuffers, answers of one 20 KiB message (read whole with their frame) go into reused buffers too', async () => {
    const client = await setup();
    const consumer = client.consumer({ topics: ['t'], from: 'latest', reuseReceiveBuffers: true });
    await consumer.ready();
    const producer = client.producer({ lingerMs: 0 });
    const kept: ConsumedMessage[] = [];
    const rounds = 12;
    for (let round = 0; round < rounds; round++) {
      // One message per answer: the consumer's fetch waits for it.
      const taken = consumer.next();
      await producer.send('t', { value: payloadOf(count + round) });
      const next = await taken;
      expect(next.done).toBe(false);
      const message = next.value as ConsumedMessage;
      expect(Buffer.from(message.value!).equals(payloadOf(message.offset))).toBe(true);
      kept.push(message);
    }
    await consumer.close();
    let emptied = 0;
    for (const message of kept) {
      if (message.value!.length === 0) emptied++;
      else expect(Buffer.from(message.value!).equals(payloadOf(message.offset))).toBe(true);
    }
    // Every answer but the last was given back (and its views emptied) when the next was taken.
    expect(emptied).toBeGreaterThanOrEqual(rounds - 1);
  });
});
