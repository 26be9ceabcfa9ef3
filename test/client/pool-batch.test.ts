/**
 * The worker pool's packing (pool-batch.ts) without threads: records packed straight from record
 * cursors (RecordPartBuilder, the group consumer's spans) and ConsumedMessages packed by
 * packMessages unpack, as the worker sees them, to the same fields a ConsumedMessage has: keys,
 * values (null and empty kept apart), headers (null values, a repeated key's last value), offsets
 * across two batches, timestamps, delivery counts. A part owns its bytes: never a view of the fetch.
 */
import { describe, expect, test } from 'vitest';
import { type ConsumedMessage, type MessageSettler, messageAt } from '../../src/client/message.js';
import {
  type BatchPart,
  packMessages,
  RecordPartBuilder,
  unpackBatch,
  type WorkerMessage,
} from '../../src/client/pool-batch.js';
import { setBatchBaseOffset } from '../../src/format/batch-header.js';
import { encodeBatch, RecordCursor, type RecordInput } from '../../src/format/record-batch.js';

const settler: MessageSettler = {
  redelivery: 'rewind',
  ack: () => Promise.resolve(),
  nack: () => Promise.resolve(),
};

const records: RecordInput[][] = [
  [
    { key: 'k0', value: 'v0', timestamp: 1000 },
    {
      key: null,
      value: null,
      headers: [
        ['h', 'one'],
        ['n', null],
        ['h', 'two'],
      ],
      timestamp: 1001,
    },
    { key: '', value: '', headers: { e: '' }, timestamp: 1002 },
  ],
  [
    { key: 'k3', value: 'v3'.repeat(50), timestamp: 2000 },
    { key: 'k4', value: 'v4', headers: { x: 'y' }, timestamp: 2001 },
  ],
];

/** Two batches (offsets 0-2 and 3-4) behind 7 bytes of padding, as a Buffer viewing a larger buffer. */
function fetchedBody(): Buffer {
  const first = encodeBatch(records[0]!);
  const second = encodeBatch(records[1]!);
  setBatchBaseOffset(second, 3);
  const whole = Buffer.alloc(7 + first.length + second.length + 5);
  whole.set(first, 7);
  whole.set(second, 7 + first.length);
  return whole.subarray(7, 7 + first.length + second.length);
}

/** Every record of `body` in order, with a cursor positioned on it. */
function* cursors(body: Uint8Array): Generator<RecordCursor> {
  let position = 0;
  while (position < body.length) {
    const cursor = new RecordCursor(body, position);
    while (cursor.next()) yield cursor;
    position = cursor.batchEnd;
  }
}

function fields(message: WorkerMessage | ConsumedMessage): unknown {
  const headers: Record<string, string | null> = {};
  for (const [name, value] of Object.entries(message.headers)) headers[name] = value?.toString() ?? null;
  return {
    topic: message.topic,
    partition: message.partition,
    offset: message.offset,
    key: message.key?.toString() ?? null,
    value: message.value?.toString() ?? null,
    headers,
    timestamp: message.timestamp,
    deliveryCount: message.deliveryCount,
  };
}

function unpack(part: BatchPart): WorkerMessage[] {
  return unpackBatch({ module: 'file:///unused.js', stopPartitionOnFailure: true, parts: [part] });
}

describe('pool batches', () => {
  test('records packed from cursors unpack to the fields of their ConsumedMessages', () => {
    const body = fetchedBody();
    const expected: unknown[] = [];
    const builder = new RecordPartBuilder('t', 3, body, 4);
    for (const cursor of cursors(body)) {
      // Records 1 to 4: from the middle of the first batch into the second.
      if (cursor.offset === 0) continue;
      const deliveryCount = cursor.offset === 2 ? 3 : 1;
      builder.add(cursor, deliveryCount);
      expected.push(fields(messageAt('t', 3, cursor, body, deliveryCount, settler)));
    }
    expect(builder.size).toBe(4);
    const part = builder.finish();
    expect(part.data.buffer).not.toBe(body.buffer);
    expect(part.data.byteLength).toBeLessThan(body.length);
    const messages = unpack(part);
    expect(messages.map(fields)).toEqual(expected);
    expect(messages[0]!.headers).toMatchObject({ n: null });
    expect(messages[0]!.headers['h']!.toString()).toBe('two');
    expect(messages[1]!.key).not.toBeNull();
    expect(messages[1]!.key!.length).toBe(0);
  });

  test('a part of fewer records than its capacity, and ConsumedMessages packed, unpack alike', () => {
    const body = fetchedBody();
    const builder = new RecordPartBuilder('t', 0, body, 256);
    const consumed: ConsumedMessage[] = [];
    for (const cursor of cursors(body)) {
      builder.add(cursor, 1);
      consumed.push(messageAt('t', 0, cursor, body, 1, settler));
    }
    const fromCursors = unpack(builder.finish()).map(fields);
    expect(fromCursors).toEqual(consumed.map(fields));
    expect(unpack(packMessages(consumed)).map(fields)).toEqual(fromCursors);
  });
});
