/**
 * A client that stops reading (its socket paused) while asking for far more data than the send
 * buffer bound: the server's buffered bytes stay bounded, FETCHes are held, and once the client reads
 * again every answer arrives, complete and in good order.
 */
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeBatch } from '../../src/format/record-batch.js';
import { frameBytesMax, inFlightRequestsPerConnectionMax, sendBufferBytesMax } from '../../src/limits.js';
import { encodeFrame, type Frame } from '../../src/protocol/frame.js';
import type { FetchResponse } from '../../src/protocol/messages.js';
import { Opcode, protocolVersion } from '../../src/protocol/opcodes.js';
import { metricValue, ok, startTestServer, TestClient, type TestServer } from './helpers.js';

let harness: TestServer;
const batchCount = 12;
const valueBytes = 100 * 1024;

beforeAll(async () => {
  harness = await startTestServer({}, { segmentBytes: 8 * 1024 * 1024 });
  await harness.broker.topics.create('bp', { partitions: 1 });
  for (let i = 0; i < batchCount; i++) {
    await harness.broker.messages.produce(
      'bp',
      0,
      encodeBatch([{ key: `k${i}`, value: 'x'.repeat(valueBytes) }]),
    );
  }
});
afterAll(async () => {
  await harness.stop();
});

function rawSocket(client: TestClient): Socket {
  return (client.socket as unknown as { _socket: Socket })._socket;
}

async function scrape(): Promise<string> {
  return (await fetch(`${harness.http}/metrics`)).text();
}

describe('backpressure', () => {
  it('holds FETCHes of a client that does not read; its send buffer stays bounded', async () => {
    const client = await TestClient.connect(harness.server.url);
    ok(await client.request(Opcode.hello, { protocolVersion }));
    rawSocket(client).pause();
    const fetchCount = 120; // ~1.2 MiB each: ~140 MiB asked for
    const answers: Array<Promise<Frame>> = [];
    for (let i = 0; i < fetchCount; i++) {
      answers.push(
        client.request(Opcode.fetch, { topic: 'bp', partition: 0, offset: 0, maxBytes: 2 * 1024 * 1024 }),
      );
    }
    let largest = 0;
    for (let sample = 0; sample < 10; sample++) {
      await new Promise((resolve) => setTimeout(resolve, 60));
      const text = await scrape();
      largest = Math.max(largest, metricValue(text, 'spillway_send_buffer_bytes_max') ?? 0);
    }
    const text = await scrape();
    // Bounded: never more than the bound plus one frame that started just under it.
    expect(largest).toBeGreaterThan(0);
    expect(largest).toBeLessThanOrEqual(sendBufferBytesMax + frameBytesMax);
    expect(metricValue(text, 'spillway_backpressure_held_total{kind="fetch"}')).toBeGreaterThan(0);
    expect(client.open).toBe(true);

    rawSocket(client).resume();
    const frames = await Promise.all(answers);
    for (const frame of frames) {
      expect(ok<FetchResponse>(frame)).toMatchObject({ batchCount, firstOffset: 0, nextOffset: batchCount });
      expect(frame.body.length).toBeGreaterThan(batchCount * valueBytes);
    }
    expect(metricValue(await scrape(), 'spillway_send_buffer_bytes_max')).toBe(0);
    await client.close();
  });

  it('disconnects (1008) a client that keeps sending past its window while never reading', async () => {
    const client = await TestClient.connect(harness.server.url);
    rawSocket(client).pause();
    // Fill the window with FETCHes that end up held, then flood: every extra request is answered
    // TOO_MANY_REQUESTS at once, into a send buffer nobody reads.
    for (let i = 0; i < inFlightRequestsPerConnectionMax; i++) {
      client.request(Opcode.fetch, { topic: 'bp', partition: 0, offset: 0, maxBytes: 2 * 1024 * 1024 });
    }
    const hello = encodeFrame({
      opcode: Opcode.hello,
      flags: 0,
      correlationId: 1,
      header: { protocolVersion },
    });
    const series = 'spillway_connections_closed_for_backpressure_total';
    let closedByServer = 0;
    for (let round = 0; round < 40 && closedByServer === 0; round++) {
      for (let i = 0; i < 10_000; i++) client.sendRaw(hello);
      await new Promise((resolve) => setTimeout(resolve, 50));
      closedByServer = metricValue(await scrape(), series) ?? 0;
    }
    expect(closedByServer).toBe(1);
    expect(metricValue(await scrape(), 'spillway_connections')).toBe(0);
    client.socket.terminate();
  });
});
