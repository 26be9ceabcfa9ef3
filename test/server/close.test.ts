/**
 * Graceful close: stop accepting, end long-polls, let in-flight requests finish, refuse new ones with
 * BROKER_CLOSING, then close every WebSocket with 1001.
 */
import { describe, expect, it } from 'vitest';
import { encodeBatch } from '../../src/format/record-batch.js';
import type { Frame } from '../../src/protocol/frame.js';
import type { FetchResponse } from '../../src/protocol/messages.js';
import { Opcode, protocolVersion } from '../../src/protocol/opcodes.js';
import { delegate, errorCode, ok, startTestServer, TestClient } from './helpers.js';

const produceDelayMs = 300;

describe('server close', () => {
  it('finishes in-flight requests, ends long-polls, refuses new work, closes with 1001', async () => {
    const harness = await startTestServer({}, {}, (broker) =>
      delegate(broker, {
        produce: async (topic, partition, lent) => {
          // The server lends the batch for the synchronous part of the call only (MessageService.produce).
          const batch = lent.slice();
          await new Promise((resolve) => setTimeout(resolve, produceDelayMs));
          return broker.messages.produce(topic, partition, batch);
        },
      }),
    );
    try {
      await harness.broker.topics.create('closing', { partitions: 1 });
      const client = await TestClient.connect(harness.server.url);
      const idle = await TestClient.connect(`${harness.server.url}/v1/ws`);
      const longPoll = client.request(Opcode.fetch, {
        topic: 'closing',
        partition: 0,
        offset: 0,
        maxWaitMs: 30_000,
      });
      const httpLongPoll = fetch(`${harness.http}/v1/topics/closing/partitions/0/messages?maxWaitMs=30000`);
      const produce = client.request(
        Opcode.produce,
        { topic: 'closing', partition: 0 },
        encodeBatch([{ value: 'v' }]),
      );
      // Close only once both long-polls wait and the produce is in flight (a fixed sleep was too short
      // on a loaded machine: the HTTP long-poll then came after the close and got 503).
      const waitUntil = Date.now() + 10_000;
      while (harness.broker.messages.waitingFetchCount < 2 && Date.now() < waitUntil) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      expect(harness.broker.messages.waitingFetchCount).toBe(2);
      await new Promise((resolve) => setTimeout(resolve, 50));

      const started = Date.now();
      const closed = harness.server.close();
      // While closing: new requests are refused (the delayed produce keeps close() waiting).
      const refused: Frame = await client.request(Opcode.hello, { protocolVersion });
      expect(errorCode(refused)).toBe('BROKER_CLOSING');
      await closed;
      const elapsed = Date.now() - started;
      expect(elapsed).toBeLessThan(produceDelayMs + 2000);

      // The long-poll ended early with what was there (nothing, then maybe the produced batch).
      const polled = await longPoll;
      expect(ok<FetchResponse>(polled).firstOffset).toBe(0);
      const httpAnswer = await httpLongPoll;
      expect(httpAnswer.status).toBe(200);
      expect(await httpAnswer.json()).toMatchObject({ nextOffset: expect.any(Number) });
      // The in-flight produce finished and was acknowledged.
      expect(ok(await produce)).toMatchObject({ partition: 0, baseOffset: 0 });

      expect(await client.closed).toEqual({ code: 1001, reason: 'server closing' });
      expect(await idle.closed).toEqual({ code: 1001, reason: 'server closing' });
      await expect(TestClient.connect(harness.server.url)).rejects.toThrow();
      await expect(fetch(`${harness.http}/healthz`)).rejects.toThrow();
      // close() is idempotent.
      await harness.server.close();
    } finally {
      await harness.stop();
    }
  });

  it('closes promptly with nothing in flight, and the broker stays usable', async () => {
    const harness = await startTestServer();
    try {
      const client = await TestClient.connect(harness.server.url);
      const started = Date.now();
      await harness.server.close();
      expect(Date.now() - started).toBeLessThan(500);
      expect((await client.closed).code).toBe(1001);
      expect(harness.broker.topics.list()).toEqual([]);
      // A new server on the same broker.
      const again = await harness.broker.listen({ port: 0 });
      const other = await TestClient.connect(again.url);
      expect(ok(await other.request(Opcode.hello, { protocolVersion }))).toMatchObject({ protocolVersion });
      await again.close();
    } finally {
      await harness.stop();
    }
  });
});
