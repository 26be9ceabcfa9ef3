/**
 * `producer.send(topic, { msgId })` against a real broker, in process and over WebSocket: a copy
 * sent again resolves with the first copy's partition and offset and is not written; a batch mixing
 * new and duplicate ids resolves each send with its own position; a bad msgId is refused before it
 * is sent (INVALID_ARGUMENT), a bad reserved header by the broker (INVALID_BATCH).
 */
import { describe, expect, test } from 'vitest';
import { connect, openBroker, serve } from './helpers.js';

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  await expect(promise).rejects.toMatchObject({ code });
}

describe('producer msgId', () => {
  for (const transport of ['in-process', 'websocket'] as const) {
    test(`duplicates resolve with the first copy, each send with its own position (${transport})`, async () => {
      const broker = await openBroker();
      const sw = await connect(transport === 'in-process' ? broker : (await serve(broker)).url);
      await sw.admin.createTopic('t', { partitions: 3, dedupWindowMs: 60_000 });
      const producer = sw.producer({ lingerMs: 5 });
      const first = await producer.send('t', { key: 'a', value: 'first', msgId: 'order-42' });
      // Another key, another partition: folded all the same.
      expect(await producer.send('t', { key: 'zzz', value: 'again', msgId: 'order-42' })).toEqual(first);
      // One batch (same partition, same linger) mixing new, duplicate and plain messages.
      const sends = [
        producer.send('t', { partition: 1, value: 'n1', msgId: 'n1' }),
        producer.send('t', { partition: 1, value: 'dup', msgId: 'order-42' }),
        producer.send('t', { partition: 1, value: 'plain' }),
        producer.send('t', { partition: 1, value: 'n1 again', msgId: 'n1' }),
        producer.send('t', { partition: 1, value: 'n2', msgId: 'n2', headers: { h: 'v' } }),
      ];
      const results = await Promise.all(sends);
      const base = results[0]!.offset;
      expect(results).toEqual([
        { partition: 1, offset: base },
        first,
        { partition: 1, offset: base + 1 },
        { partition: 1, offset: base + 0 },
        { partition: 1, offset: base + 2 },
      ]);
      const described = await sw.admin.describeTopic('t');
      const written = described.partitions.reduce((sum, p) => sum + p.logEndOffset, 0);
      expect(written).toBe(4); // first, n1, plain, n2
      const fetched = await broker.messages.fetch('t', 1, base, { maxBytes: 1 << 20, maxWaitMs: 0 });
      expect(fetched.highWatermark - base).toBe(3);
      await producer.close();
    });
  }

  test('bad msgIds are refused: by the client before sending, by the broker for a bad header', async () => {
    const broker = await openBroker();
    const sw = await connect(broker);
    await sw.admin.createTopic('t', { dedupWindowMs: 1000 });
    const producer = sw.producer();
    for (const msgId of [7, '', 'é'.repeat(129), {}]) {
      await expectCode(producer.send('t', { value: 'x', msgId: msgId as string }), 'INVALID_ARGUMENT');
    }
    await expectCode(producer.send('t', { value: 'x', headers: { 'sw-msg-id': null } }), 'INVALID_BATCH');
    expect(await producer.send('t', { value: 'x', msgId: 'é'.repeat(128) })).toEqual({
      partition: 0,
      offset: 0,
    });
    expect(await producer.send('t', { value: 'x', headers: { 'sw-msg-id': 'é'.repeat(128) } })).toEqual({
      partition: 0,
      offset: 0,
    });
  });
});
