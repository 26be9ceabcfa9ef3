/**
 * Large produces over a real WebSocket server, where neither side copies a batch on its way: the
 * client seals batches in their builder's buffer and reuses the buffers of acknowledged ones
 * (accumulator.ts), sends bodies of 8 KiB and more as their own fragment (websocket-transport.ts),
 * and the server lends PRODUCE bodies to produce without copying them (connection.ts). Every value
 * is distinct, so a buffer reused too early, or a lent body read after the message callback, shows
 * as a wrong value, a CRC failure or an error answer. The paths that may wait before appending
 * (idempotent, delayed, msg-id dedup) get copies and must still store the right bytes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type Consumer, Spillway } from '../../src/client/index.js';
import { startTestServer, type TestServer } from './helpers.js';

const valueBytes = 16 * 1024;

/** A 16 KiB value whose every byte depends on `index`. */
function valueNumbered(index: number): Uint8Array {
  const value = new Uint8Array(valueBytes);
  for (let i = 0; i < valueBytes; i += 4) {
    value[i] = index & 0xff;
    value[i + 1] = (index >> 8) & 0xff;
    value[i + 2] = i & 0xff;
    value[i + 3] = 0xa5;
  }
  return value;
}

async function readValues(client: Spillway, topic: string, count: number): Promise<Uint8Array[]> {
  const consumer: Consumer = client.consumer({ topics: [topic], partitions: [0], from: { offset: 0 } });
  const values: Uint8Array[] = [];
  try {
    for await (const message of consumer) {
      values.push(new Uint8Array(message.value ?? new Uint8Array(0)));
      if (values.length >= count) break;
    }
  } finally {
    await consumer.close();
  }
  return values;
}

let harness: TestServer | undefined;
let client: Spillway | undefined;

afterEach(async () => {
  await client?.close();
  await harness?.stop();
  client = undefined;
  harness = undefined;
});

describe('16 KiB produce over WebSocket without copies', () => {
  it('stores every value of many batches whose buffers are reused', async () => {
    harness = await startTestServer({}, { segmentBytes: 8 * 1024 * 1024 });
    client = await Spillway.connect(harness.server.url);
    await client.admin.createTopic('big', { partitions: 1 });
    // Small in-flight bounds: acknowledged buffers come back and are sealed into again.
    const producer = client.producer({ lingerMs: 0, inFlightBytesPerPartitionMax: 512 * 1024 });
    const count = 1200;
    const calls: Array<Promise<unknown>> = [];
    for (let first = 0; first < count; first += 100) {
      const chunk = Array.from({ length: 100 }, (_, i) => ({ value: valueNumbered(first + i) }));
      calls.push(producer.sendBatch('big', chunk));
    }
    await Promise.all(calls);
    const values = await readValues(client, 'big', count);
    expect(values.length).toBe(count);
    const wrong = values.flatMap((value, index) =>
      Buffer.from(value).equals(Buffer.from(valueNumbered(index))) ? [] : [index],
    );
    expect(wrong).toEqual([]);
  });

  it('stores the right bytes on the paths that copy: idempotent, delayed, msg-id dedup', async () => {
    harness = await startTestServer();
    client = await Spillway.connect(harness.server.url);
    await client.admin.createTopic('idem', { partitions: 1 });
    await client.admin.createTopic('later', { partitions: 1 });
    await client.admin.createTopic('dedup', { partitions: 1, dedupWindowMs: 60_000 });
    const idempotent = client.producer({ lingerMs: 0, idempotent: true });
    await idempotent.sendBatch(
      'idem',
      Array.from({ length: 40 }, (_, i) => ({ value: valueNumbered(i) })),
    );
    const plain = client.producer({ lingerMs: 0 });
    await Promise.all(
      Array.from({ length: 4 }, (_, i) => plain.send('later', { value: valueNumbered(100 + i), delayMs: 1 })),
    );
    await plain.sendBatch(
      'dedup',
      Array.from({ length: 6 }, (_, i) => ({ value: valueNumbered(200 + (i % 3)), msgId: `m${i % 3}` })),
    );
    const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));
    const idem = await readValues(client, 'idem', 40);
    expect(idem.filter((value, i) => !same(value, valueNumbered(i))).length).toBe(0);
    const fired = await readValues(client, 'later', 4);
    expect(fired.map((value) => value[0]).sort()).toEqual([100, 101, 102, 103]);
    expect(fired.filter((value) => !same(value, valueNumbered(value[0]!))).length).toBe(0);
    const deduplicated = await readValues(client, 'dedup', 3);
    expect(deduplicated.map((value, i) => same(value, valueNumbered(200 + i)))).toEqual([true, true, true]);
  });
});
