import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batchLengthAt } from '../../src/format/batch-header.js';
import { decodeRecords, encodeBatch } from '../../src/format/record-batch.js';
import { inFlightRequestsPerConnectionMax } from '../../src/limits.js';
import { encodeFrame, type Frame, FrameFlags } from '../../src/protocol/frame.js';
import type { FetchResponse, HelloResponse } from '../../src/protocol/messages.js';
import { Opcode, protocolVersion } from '../../src/protocol/opcodes.js';
import {
  errorCode,
  isError,
  metricValue,
  ok,
  startTestServer,
  TestClient,
  type TestServer,
} from './helpers.js';

let harness: TestServer;

beforeAll(async () => {
  harness = await startTestServer({ brokerVersion: '9.9.9-test' });
});
afterAll(async () => {
  await harness.stop();
});

function values(records: Uint8Array): Array<[number, string]> {
  const out: Array<[number, string]> = [];
  for (let position = 0; position < records.length; position += batchLengthAt(records, position)) {
    for (const record of decodeRecords(records, position)) {
      out.push([record.offset, Buffer.from(record.value!).toString()]);
    }
  }
  return out;
}

function batch(prefix: string, count: number): Uint8Array {
  return encodeBatch(Array.from({ length: count }, (_, i) => ({ key: `k${i}`, value: `${prefix}${i}` })));
}

describe('WebSocket protocol', () => {
  it('answers HELLO with the broker version and limits, on / and /v1/ws', async () => {
    for (const path of ['/', '/v1/ws']) {
      const client = await TestClient.connect(`${harness.server.url}${path}`);
      const answer = await client.request(Opcode.hello, { protocolVersion, clientId: 'test' });
      expect(answer.opcode).toBe(Opcode.hello);
      expect(answer.flags).toBe(FrameFlags.response);
      expect(ok<HelloResponse>(answer)).toEqual({
        protocolVersion,
        brokerVersion: '9.9.9-test',
        frameBytesMax: expect.any(Number),
        inFlightRequestsMax: inFlightRequestsPerConnectionMax,
        sessionId: expect.any(Number),
      });
      const wrong = await client.request(Opcode.hello, { protocolVersion: 99 });
      expect(errorCode(wrong)).toBe('UNSUPPORTED_VERSION');
      await client.close();
    }
    expect(harness.server.url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);
    expect(harness.server.port).toBeGreaterThan(0);
  });

  it('creates a topic, produces and fetches the same bytes back', async () => {
    const client = await TestClient.connect(harness.server.url);
    const created = ok(
      await client.request(Opcode.createTopic, { name: 'ws-basic', config: { partitions: 2 } }),
    );
    expect(created).toMatchObject({ name: 'ws-basic', partitionCount: 2 });
    expect(errorCode(await client.request(Opcode.createTopic, { name: 'ws-basic' }))).toBe('TOPIC_EXISTS');

    const sent = batch('v', 3);
    const produced = ok(await client.request(Opcode.produce, { topic: 'ws-basic', partition: 1 }, sent));
    expect(produced).toMatchObject({ partition: 1, baseOffset: 0, lastOffset: 2 });
    ok(await client.request(Opcode.produce, { topic: 'ws-basic', partition: 1 }, batch('w', 2)));

    const fetched = await client.request(Opcode.fetch, { topic: 'ws-basic', partition: 1, offset: 0 });
    expect(ok<FetchResponse>(fetched)).toMatchObject({ batchCount: 2, firstOffset: 0, nextOffset: 5 });
    expect(values(fetched.body)).toEqual([
      [0, 'v0'],
      [1, 'v1'],
      [2, 'v2'],
      [3, 'w0'],
      [4, 'w1'],
    ]);
    // The first batch comes back byte for byte, except the offset the broker wrote.
    expect(Buffer.from(fetched.body.subarray(8, sent.length))).toEqual(Buffer.from(sent.subarray(8)));

    const listed = ok<{ topics: Array<{ name: string }> }>(await client.request(Opcode.listTopics, {}));
    expect(listed.topics.map((topic) => topic.name)).toContain('ws-basic');
    const offset = ok(
      await client.request(Opcode.listOffset, { topic: 'ws-basic', partition: 1, spec: 'latest' }),
    );
    expect(offset).toEqual({ offset: 5 });
    expect(ok(await client.request(Opcode.addPartitions, { name: 'ws-basic', count: 1 }))).toMatchObject({
      partitionCount: 3,
    });
    ok(await client.request(Opcode.deleteTopic, { name: 'ws-basic' }));
    expect(errorCode(await client.request(Opcode.describeTopic, { name: 'ws-basic' }))).toBe('UNKNOWN_TOPIC');
    await client.close();
  });

  it('answers errors with the request opcode and correlation id, and keeps the connection', async () => {
    const client = await TestClient.connect(harness.server.url);
    const unknownTopic = await client.request(Opcode.fetch, { topic: 'nope', partition: 0, offset: 0 });
    expect(unknownTopic.opcode).toBe(Opcode.fetch);
    expect(unknownTopic.flags).toBe(FrameFlags.response | FrameFlags.error);
    expect(unknownTopic.header).toEqual({
      code: 'UNKNOWN_TOPIC',
      message: expect.any(String),
      retriable: false,
    });
    expect(errorCode(await client.request(200, {}))).toBe('UNKNOWN_OPCODE');
    expect(errorCode(await client.request(Opcode.fetch, { topic: 'nope' }))).toBe('INVALID_ARGUMENT');
    expect(errorCode(await client.request(Opcode.listTopics, {}, new Uint8Array(3)))).toBe('PROTOCOL_ERROR');
    expect(
      errorCode(await client.request(Opcode.produce, { topic: 'x', partition: 0 }, new Uint8Array(9))),
    ).toMatch(/UNKNOWN_TOPIC|INVALID_BATCH/);
    // A frame with reserved bits set: answered by the correlation id it carries.
    const bad = encodeFrame({
      opcode: Opcode.hello,
      flags: 0,
      correlationId: 777,
      header: { protocolVersion },
    });
    bad[2] = 1;
    client.sendRaw(bad);
    const answer = await client.nextUnaddressed();
    expect(answer).toMatchObject({ opcode: Opcode.hello, correlationId: 777 });
    expect(errorCode(answer)).toBe('PROTOCOL_ERROR');
    // Too short to hold a correlation id: correlation id 0.
    client.sendRaw(new Uint8Array([1, 2, 3]));
    const short = await client.nextUnaddressed();
    expect(short.correlationId).toBe(0);
    expect(errorCode(short)).toBe('PROTOCOL_ERROR');
    // A text frame: correlation id 0, a clear message, the connection stays.
    client.sendRaw('hello?');
    const text = await client.nextUnaddressed();
    expect(text.correlationId).toBe(0);
    expect((text.header as { message: string }).message).toMatch(/text frames/);
    // A response sent as a request.
    const response = encodeFrame({
      opcode: Opcode.listTopics,
      flags: FrameFlags.response,
      correlationId: 5,
      header: {},
    });
    client.sendRaw(response);
    expect(errorCode(await client.nextUnaddressed())).toBe('PROTOCOL_ERROR');
    expect(client.open).toBe(true);
    expect(ok(await client.request(Opcode.hello, { protocolVersion }))).toMatchObject({ protocolVersion });
    await client.close();
  });

  it('pipelines: many requests in flight at once, each answered by its correlation id', async () => {
    const client = await TestClient.connect(harness.server.url);
    ok(await client.request(Opcode.createTopic, { name: 'ws-pipeline', config: { partitions: 4 } }));
    const produces: Array<Promise<Frame>> = [];
    for (let i = 0; i < 400; i++) {
      produces.push(
        client.request(Opcode.produce, { topic: 'ws-pipeline', partition: i % 4 }, batch(`p${i}-`, 2)),
      );
    }
    const answers = await Promise.all(produces);
    const offsetsByPartition = new Map<number, number[]>();
    answers.forEach((answer, i) => {
      const result = ok<{ partition: number; baseOffset: number }>(answer);
      expect(result.partition).toBe(i % 4);
      offsetsByPartition.set(result.partition, [
        ...(offsetsByPartition.get(result.partition) ?? []),
        result.baseOffset,
      ]);
    });
    for (const offsets of offsetsByPartition.values()) {
      expect([...offsets].sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i * 2));
    }
    // Mixed opcodes in flight together, including long-polls that a later produce wakes.
    const longPoll = client.request(Opcode.fetch, {
      topic: 'ws-pipeline',
      partition: 0,
      offset: 200,
      maxWaitMs: 5000,
    });
    const quick = await Promise.all(
      Array.from({ length: 50 }, () => client.request(Opcode.describeTopic, { name: 'ws-pipeline' })),
    );
    for (const answer of quick) expect(ok(answer)).toMatchObject({ name: 'ws-pipeline' });
    ok(await client.request(Opcode.produce, { topic: 'ws-pipeline', partition: 0 }, batch('late', 1)));
    const woken = await longPoll;
    expect(values(woken.body)).toEqual([[200, 'late0']]);
    await client.close();
  });

  it(`answers TOO_MANY_REQUESTS past ${inFlightRequestsPerConnectionMax} requests in flight`, async () => {
    const client = await TestClient.connect(harness.server.url);
    ok(await client.request(Opcode.createTopic, { name: 'ws-window', config: { partitions: 2 } }));
    const longPolls: Array<Promise<Frame>> = [];
    for (let i = 0; i < inFlightRequestsPerConnectionMax; i++) {
      longPolls.push(
        client.request(Opcode.fetch, { topic: 'ws-window', partition: i % 2, offset: 0, maxWaitMs: 20_000 }),
      );
    }
    const refused = await client.request(Opcode.hello, { protocolVersion });
    expect(errorCode(refused)).toBe('TOO_MANY_REQUESTS');
    expect((refused.header as { retriable: boolean }).retriable).toBe(true);
    // Data wakes the long-polls; then the window is free again.
    const other = await TestClient.connect(harness.server.url);
    ok(await other.request(Opcode.produce, { topic: 'ws-window', partition: 0 }, batch('x', 1)));
    ok(await other.request(Opcode.produce, { topic: 'ws-window', partition: 1 }, batch('y', 1)));
    const answers = await Promise.all(longPolls);
    expect(answers.every((answer) => !isError(answer) && answer.body.length > 0)).toBe(true);
    expect(ok(await client.request(Opcode.hello, { protocolVersion }))).toMatchObject({ protocolVersion });
    await Promise.all([client.close(), other.close()]);
  });

  it('ends long-polls when their connection closes', async () => {
    const series = 'spillway_requests_total{opcode="fetch",code="OK"}';
    const fetchesAnswered = async () =>
      metricValue(await (await fetch(`${harness.http}/metrics`)).text(), series) ?? 0;
    const client = await TestClient.connect(harness.server.url);
    ok(await client.request(Opcode.createTopic, { name: 'ws-abandon' }));
    const before = await fetchesAnswered();
    void client.request(Opcode.fetch, { topic: 'ws-abandon', partition: 0, offset: 0, maxWaitMs: 30_000 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await fetchesAnswered()).toBe(before);
    await client.close();
    // The long-poll ends promptly (its connection's signal was aborted), not after 30 s.
    const started = Date.now();
    while ((await fetchesAnswered()) === before && Date.now() - started < 5000) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(await fetchesAnswered()).toBe(before + 1);
    expect(Date.now() - started).toBeLessThan(1000);
  });
});

describe('connection limit', () => {
  it('refuses upgrades past maxConnections with HTTP 503', async () => {
    const limited = await startTestServer({ maxConnections: 2 });
    try {
      const first = await TestClient.connect(limited.server.url);
      const second = await TestClient.connect(limited.server.url);
      await expect(TestClient.connect(limited.server.url)).rejects.toThrow(/503/);
      await first.close();
      // The slot is free again once the close event ran.
      await new Promise((resolve) => setTimeout(resolve, 50));
      const third = await TestClient.connect(limited.server.url);
      expect(ok(await third.request(Opcode.hello, { protocolVersion }))).toMatchObject({ protocolVersion });
      await Promise.all([second.close(), third.close()]);
    } finally {
      await limited.stop();
    }
  });
});
