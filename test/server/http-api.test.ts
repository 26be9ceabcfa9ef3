import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { batchLengthAt } from '../../src/format/batch-header.js';
import { decodeRecords } from '../../src/format/record-batch.js';
import { httpBodyBytesMax } from '../../src/limits.js';
import { partitionForKey } from '../../src/protocol/partitioner.js';
import { metricValue, startTestServer, type TestServer } from './helpers.js';

let harness: TestServer;

beforeAll(async () => {
  harness = await startTestServer();
});
afterAll(async () => {
  await harness.stop();
});

interface Answer {
  status: number;
  json: unknown;
  text: string;
  headers: Headers;
}

async function call(method: string, path: string, body?: unknown): Promise<Answer> {
  const init: RequestInit = { method };
  if (body !== undefined) {
    init.body = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
    init.headers = { 'content-type': 'application/json' };
  }
  const response = await fetch(`${harness.http}${path}`, init);
  const text = await response.text();
  let json: unknown;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, json, text, headers: response.headers };
}

function expectError(answer: Answer, status: number, code: string): void {
  expect({
    status: answer.status,
    code: (answer.json as { error?: { code?: string } })?.error?.code,
  }).toEqual({
    status,
    code,
  });
  expect((answer.json as { error: { message: string } }).error.message).toEqual(expect.any(String));
}

describe('HTTP API', () => {
  it('GET /healthz answers 200 ok', async () => {
    const answer = await call('GET', '/healthz');
    expect(answer.status).toBe(200);
    expect(answer.text).toBe('ok');
    expectError(await call('POST', '/healthz', {}), 405, 'INVALID_ARGUMENT');
  });

  it('manages topics: create (201), list, describe, delete (204)', async () => {
    const created = await call('POST', '/v1/topics', {
      name: 'http-admin',
      partitions: 3,
      retentionMs: 60_000,
    });
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({
      name: 'http-admin',
      partitionCount: 3,
      config: { retentionMs: 60_000 },
    });
    expectError(await call('POST', '/v1/topics', { name: 'http-admin' }), 409, 'TOPIC_EXISTS');
    const listed = await call('GET', '/v1/topics');
    expect(listed.status).toBe(200);
    expect((listed.json as { topics: Array<{ name: string }> }).topics.map((t) => t.name)).toContain(
      'http-admin',
    );
    const described = await call('GET', '/v1/topics/http-admin');
    expect(described.status).toBe(200);
    expect(described.json).toMatchObject({ name: 'http-admin', partitions: [{}, {}, {}] });
    expect((await call('DELETE', '/v1/topics/http-admin')).status).toBe(204);
    expectError(await call('GET', '/v1/topics/http-admin'), 404, 'UNKNOWN_TOPIC');
    expectError(await call('DELETE', '/v1/topics/http-admin'), 404, 'UNKNOWN_TOPIC');
    expectError(await call('PUT', '/v1/topics/http-admin'), 405, 'INVALID_ARGUMENT');
  });

  it('hides internal topics from the list unless ?internal=true; they describe but refuse writes', async () => {
    const names = async (query: string): Promise<string[]> =>
      ((await call('GET', `/v1/topics${query}`)).json as { topics: Array<{ name: string }> }).topics.map(
        (topic) => topic.name,
      );
    expect(await names('')).not.toContain('__metadata');
    expect(await names('?internal=false')).not.toContain('__metadata');
    expect(await names('?internal=true')).toContain('__metadata');
    expectError(await call('GET', '/v1/topics?internal=yes'), 400, 'INVALID_ARGUMENT');
    expectError(await call('GET', '/v1/topics?colour=red'), 400, 'INVALID_ARGUMENT');
    expect((await call('GET', '/v1/topics/__metadata')).json).toMatchObject({
      name: '__metadata',
      partitionCount: 1,
      config: { durability: 'always' },
    });
    expectError(await call('POST', '/v1/topics', { name: '__mine' }), 400, 'INVALID_TOPIC_NAME');
    expectError(await call('POST', '/v1/topics', { name: 'x.deleted-17' }), 400, 'INVALID_TOPIC_NAME');
    expectError(await call('DELETE', '/v1/topics/__metadata'), 400, 'INVALID_ARGUMENT');
    expectError(
      await call('POST', '/v1/topics/__metadata/messages', { messages: [{ value: 'x' }] }),
      400,
      'INVALID_ARGUMENT',
    );
  });

  it('rejects bad input with 400', async () => {
    expectError(await call('POST', '/v1/topics', '{"name": '), 400, 'INVALID_ARGUMENT');
    expectError(await call('POST', '/v1/topics', ''), 400, 'INVALID_ARGUMENT');
    expectError(await call('POST', '/v1/topics', '[1,2]'), 400, 'INVALID_ARGUMENT');
    expectError(await call('POST', '/v1/topics', { partitions: 1 }), 400, 'INVALID_ARGUMENT');
    expectError(await call('POST', '/v1/topics', { name: 'x', colour: 'red' }), 400, 'INVALID_ARGUMENT');
    expectError(await call('POST', '/v1/topics', { name: 'x', partitions: 'many' }), 400, 'INVALID_ARGUMENT');
    expectError(await call('POST', '/v1/topics', { name: 'bad/name' }), 400, 'INVALID_TOPIC_NAME');
    expectError(await call('GET', '/v1/topics/%E0%A4%A'), 400, 'INVALID_ARGUMENT');
    expectError(await call('GET', '/v1/nothing-here'), 404, 'INVALID_ARGUMENT');
  });

  it('creates a topic with a dedup window (at most 7 days) and folds msgId duplicates', async () => {
    const refused = await call('POST', '/v1/topics', { name: 'http-dedup', dedupWindowMs: 604_800_001 });
    expectError(refused, 400, 'INVALID_ARGUMENT');
    expect((refused.json as { error: { message: string } }).error.message).toMatch(
      /dedupWindowMs must be an integer in \[0, 604800000\]/,
    );
    expectError(await call('GET', '/v1/topics/http-dedup'), 404, 'UNKNOWN_TOPIC');
    const created = await call('POST', '/v1/topics', {
      name: 'http-dedup',
      partitions: 2,
      dedupWindowMs: 60_000,
    });
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({ config: { dedupWindowMs: 60_000 } });
    const first = await call('POST', '/v1/topics/http-dedup/messages', {
      messages: [
        { value: 'a', msgId: 'a', partition: 0 },
        { value: 'b', msgId: 'b', partition: 1 },
      ],
    });
    expect(first.json).toEqual({
      offsets: [
        { partition: 0, offset: 0 },
        { partition: 1, offset: 0 },
      ],
    });
    const second = await call('POST', '/v1/topics/http-dedup/messages', {
      messages: [
        { value: 'b again', msgId: 'b', partition: 0 },
        { value: 'c', msgId: 'c', partition: 0 },
        { value: 'plain', partition: 0 },
        { value: 'a again', msgId: 'a', partition: 1 },
      ],
    });
    expect(second.json).toEqual({
      offsets: [
        { partition: 1, offset: 0 },
        { partition: 0, offset: 1 },
        { partition: 0, offset: 2 },
        { partition: 0, offset: 0 },
      ],
    });
    const fetched = await call('GET', '/v1/topics/http-dedup/partitions/0/messages?offset=0');
    expect((fetched.json as { messages: Array<{ value: string }> }).messages.map((m) => m.value)).toEqual([
      'a',
      'c',
      'plain',
    ]);
    const send = (message: unknown) =>
      call('POST', '/v1/topics/http-dedup/messages', { messages: [message] });
    for (const msgId of [5, '', 'x'.repeat(257), null, ['a']]) {
      expectError(await send({ value: 'x', msgId }), 400, 'INVALID_ARGUMENT');
    }
    expectError(
      await send({ value: 'x', msgId: 'm', headers: { 'sw-msg-id': 'n' } }),
      400,
      'INVALID_ARGUMENT',
    );
    // The reserved header set by hand means the same; a bad one is refused by the broker.
    expectError(await send({ value: 'x', headers: { 'sw-msg-id': '' } }), 400, 'INVALID_BATCH');
    expect((await call('DELETE', '/v1/topics/http-dedup')).status).toBe(204);
  });

  it('produces and fetches messages: keys by murmur2, keyless round-robin, explicit partitions', async () => {
    expect((await call('POST', '/v1/topics', { name: 'http-msgs', partitions: 4 })).status).toBe(201);
    const produced = await call('POST', '/v1/topics/http-msgs/messages', {
      messages: [
        { key: 'user-1', value: 'a', headers: { trace: 't1', none: null } },
        { key: 'user-2', value: 'b' },
        { key: 'user-1', value: 'c' },
        { value: 'd', partition: 3 },
        { value: 'e' },
        { value: 'f' },
      ],
    });
    expect(produced.status).toBe(200);
    const offsets = (produced.json as { offsets: Array<{ partition: number; offset: number }> }).offsets;
    expect(offsets).toHaveLength(6);
    const user1 = partitionForKey('user-1', 4);
    expect(offsets[0]).toEqual({ partition: user1, offset: 0 });
    expect(offsets[1]!.partition).toBe(partitionForKey('user-2', 4));
    expect(offsets[2]).toEqual({
      partition: user1,
      offset: offsets[0]!.partition === offsets[1]!.partition ? 2 : 1,
    });
    expect(offsets[3]!.partition).toBe(3);
    expect(offsets[4]!.partition).not.toBe(offsets[5]!.partition); // round-robin

    const fetched = await call(
      'GET',
      `/v1/topics/http-msgs/partitions/${user1}/messages?offset=0&maxMessages=10`,
    );
    expect(fetched.status).toBe(200);
    const body = fetched.json as { messages: Array<Record<string, unknown>>; nextOffset: number };
    const user1Messages = body.messages.filter((message) => message['key'] === 'user-1');
    expect(user1Messages.map((message) => message['value'])).toEqual(['a', 'c']);
    expect(user1Messages[0]).toMatchObject({ offset: 0, headers: { trace: 't1', none: null } });
    expect(user1Messages[0]!['timestamp']).toEqual(expect.any(Number));
    expect(body.nextOffset).toBe(body.messages.length);

    // maxMessages cuts inside a batch; nextOffset continues there.
    const first = await call('GET', `/v1/topics/http-msgs/partitions/${user1}/messages?maxMessages=1`);
    expect(first.json).toMatchObject({ messages: [{ offset: 0, value: 'a' }], nextOffset: 1 });
    const rest = await call(
      'GET',
      `/v1/topics/http-msgs/partitions/${user1}/messages?offset=1&maxMessages=5`,
    );
    expect((rest.json as { messages: Array<{ offset: number }> }).messages[0]!.offset).toBe(1);
    const latest = await call('GET', `/v1/topics/http-msgs/partitions/${user1}/messages?offset=latest`);
    expect(latest.json).toMatchObject({ messages: [], nextOffset: body.nextOffset });
  });

  it('carries bytes with valueEncoding base64 both ways, and the same bytes over WebSocket', async () => {
    expect((await call('POST', '/v1/topics', { name: 'http-b64' })).status).toBe(201);
    const bytes = Buffer.from([0, 1, 2, 0xff, 0xfe]);
    const produced = await call('POST', '/v1/topics/http-b64/messages', {
      valueEncoding: 'base64',
      messages: [{ key: Buffer.from('k').toString('base64'), value: bytes.toString('base64') }],
    });
    expect(produced.json).toEqual({ offsets: [{ partition: 0, offset: 0 }] });
    const fetched = await call('GET', '/v1/topics/http-b64/partitions/0/messages?valueEncoding=base64');
    expect(fetched.json).toMatchObject({ messages: [{ key: 'aw==', value: bytes.toString('base64') }] });
    const records = (
      await harness.broker.messages.fetch('http-b64', 0, 0, { maxBytes: 1 << 20, maxWaitMs: 0 })
    ).records;
    const [record] = [...decodeRecords(records, 0)];
    expect(Buffer.from(record!.value!)).toEqual(bytes);
    expect(batchLengthAt(records, 0)).toBe(records.length);
    expectError(
      await call('POST', '/v1/topics/http-b64/messages', {
        valueEncoding: 'base64',
        messages: [{ value: '!!!' }],
      }),
      400,
      'INVALID_ARGUMENT',
    );
  });

  it('long-polls with maxWaitMs until a message arrives', async () => {
    expect((await call('POST', '/v1/topics', { name: 'http-poll' })).status).toBe(201);
    const started = Date.now();
    const polling = call('GET', '/v1/topics/http-poll/partitions/0/messages?offset=0&maxWaitMs=5000');
    await new Promise((resolve) => setTimeout(resolve, 100));
    await call('POST', '/v1/topics/http-poll/messages', { messages: [{ value: 'wake' }] });
    const answer = await polling;
    expect(answer.json).toMatchObject({ messages: [{ value: 'wake' }], nextOffset: 1 });
    expect(Date.now() - started).toBeLessThan(3000);
    const empty = await call('GET', '/v1/topics/http-poll/partitions/0/messages?offset=1&maxWaitMs=50');
    expect(empty.json).toMatchObject({ messages: [], nextOffset: 1 });
  });

  it('maps errors: unknown topic/partition 404, offset out of range 416, bad query 400, later features', async () => {
    expect((await call('POST', '/v1/topics', { name: 'http-errors', partitions: 2 })).status).toBe(201);
    expectError(
      await call('POST', '/v1/topics/nope/messages', { messages: [{ value: 'x' }] }),
      404,
      'UNKNOWN_TOPIC',
    );
    expectError(await call('GET', '/v1/topics/nope/partitions/0/messages'), 404, 'UNKNOWN_TOPIC');
    expectError(await call('GET', '/v1/topics/http-errors/partitions/7/messages'), 404, 'UNKNOWN_PARTITION');
    expectError(
      await call('GET', '/v1/topics/http-errors/partitions/0/messages?offset=99'),
      416,
      'OFFSET_OUT_OF_RANGE',
    );
    expectError(await call('GET', '/v1/topics/http-errors/partitions/x/messages'), 400, 'INVALID_ARGUMENT');
    expectError(
      await call('GET', '/v1/topics/http-errors/partitions/0/messages?offset=-1'),
      400,
      'INVALID_ARGUMENT',
    );
    expectError(
      await call('GET', '/v1/topics/http-errors/partitions/0/messages?maxMessages=0'),
      400,
      'INVALID_ARGUMENT',
    );
    expectError(
      await call('GET', '/v1/topics/http-errors/partitions/0/messages?colour=red'),
      400,
      'INVALID_ARGUMENT',
    );
    const send = (message: unknown) =>
      call('POST', '/v1/topics/http-errors/messages', { messages: [message] });
    expect(
      ((await send({ value: 'x', delayMs: -5 })).json as { error: { message: string } }).error.message,
    ).toMatch(/delayMs must be an integer/);
    expectError(await send({ value: 'x', deliverAt: 'soon' }), 400, 'INVALID_ARGUMENT');
    expectError(await send({ value: 'x', delayMs: 1, deliverAt: 1 }), 400, 'INVALID_ARGUMENT');
    const delayed = await call('POST', '/v1/topics/http-errors/messages', {
      messages: [{ value: 'soon', delayMs: 120_000 }, { value: 'now' }],
    });
    expect(delayed.status).toBe(200);
    expect((delayed.json as { offsets: Array<{ delayed?: boolean }> }).offsets.map((o) => o.delayed)).toEqual(
      [true, undefined],
    );
    const stats = await call('GET', '/v1/delay/stats');
    expect(stats.json).toMatchObject({ pending: 1, withinHour: 1 });
    expectError(await send({ value: 'x', partition: 2 }), 400, 'INVALID_ARGUMENT');
    expectError(await send({ value: 5 }), 400, 'INVALID_ARGUMENT');
    expectError(await send({ key: 'k' }), 400, 'INVALID_ARGUMENT');
    expectError(
      await call('POST', '/v1/topics/http-errors/messages', { messages: [] }),
      400,
      'INVALID_ARGUMENT',
    );
    expectError(await call('POST', '/v1/topics/http-errors/messages', 'not json'), 400, 'INVALID_ARGUMENT');
    expectError(await call('POST', '/v1/groups/g/receive', { topic: 'x' }), 404, 'UNKNOWN_TOPIC');
    expectError(await call('POST', '/v1/groups/g/ack', { receipts: [] }), 400, 'INVALID_ARGUMENT');
  });

  it('refuses a body over the limit with 413 and stays available', async () => {
    const oversize = new Uint8Array(httpBodyBytesMax + 1).fill(0x20);
    const answer = await call('POST', '/v1/topics', oversize).catch((error: unknown) => error);
    if (answer instanceof Error) {
      // The server may close before the client finished sending: a reset is acceptable too.
      expect(answer.message).toMatch(/fetch failed|socket|reset/i);
    } else {
      expectError(answer as Answer, 413, 'INVALID_ARGUMENT');
    }
    expect((await call('GET', '/healthz')).status).toBe(200);
    // Without a content-length (chunked): counted while reading.
    const chunk = new Uint8Array(1024 * 1024).fill(0x20);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent > httpBodyBytesMax + chunk.length) return controller.close();
        sent += chunk.length;
        controller.enqueue(chunk);
      },
    });
    const chunked = await fetch(`${harness.http}/v1/topics`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: stream,
      duplex: 'half',
    } as RequestInit).then(
      async (response) => ({ status: response.status, text: await response.text() }),
      (error: Error) => ({ status: 0, text: error.message }),
    );
    if (chunked.status !== 0) {
      expect(chunked.status).toBe(413);
      expect(JSON.parse(chunked.text)).toMatchObject({ error: { code: 'INVALID_ARGUMENT' } });
    }
    expect((await call('GET', '/healthz')).status).toBe(200);
  });

  it('counts msg-id dedup in /metrics: ids held and duplicates answered', async () => {
    const created = await call('POST', '/v1/topics', {
      name: 'http-dedup',
      partitions: 1,
      dedupWindowMs: 60_000,
    });
    expect(created.status).toBe(201);
    const before = metricValue((await call('GET', '/metrics')).text, 'spillway_dedup_duplicates_total');
    for (let copy = 0; copy < 3; copy++) {
      const sent = await call('POST', '/v1/topics/http-dedup/messages', {
        messages: [{ value: 'a', msgId: 'm-1' }],
      });
      expect(sent.status).toBe(200);
    }
    const text = (await call('GET', '/metrics')).text;
    expect(before).toBeTypeOf('number');
    expect(metricValue(text, 'spillway_dedup_duplicates_total')).toBe(before! + 2);
    expect(metricValue(text, 'spillway_dedup_ids')).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, 'spillway_dedup_topics')).toBeGreaterThanOrEqual(1);
  });

  it('serves Prometheus metrics: connections, requests, bytes, partition offsets', async () => {
    expect((await call('POST', '/v1/topics', { name: 'http-metrics', partitions: 2 })).status).toBe(201);
    await call('POST', '/v1/topics/http-metrics/messages', { messages: [{ value: 'a', partition: 1 }] });
    const answer = await call('GET', '/metrics');
    expect(answer.status).toBe(200);
    expect(answer.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = answer.text;
    expect(text).toMatch(/^# HELP spillway_connections /m);
    expect(metricValue(text, 'spillway_connections')).toBe(0);
    expect(metricValue(text, 'spillway_partition_log_end_offset{topic="http-metrics",partition="1"}')).toBe(
      1,
    );
    expect(metricValue(text, 'spillway_partition_log_end_offset{topic="http-metrics",partition="0"}')).toBe(
      0,
    );
    expect(metricValue(text, 'spillway_http_requests_total{route="produce",status="200"}')).toBeGreaterThan(
      0,
    );
    expect(metricValue(text, 'spillway_received_bytes_total{transport="http"}')).toBeGreaterThan(0);
    // Every sample line is `name{labels} number`.
    for (const line of text.split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      expect(line).toMatch(/^[a-z_]+(\{[^}]*\})? -?\d+(\.\d+)?(e[+-]?\d+)?$/);
    }
  });
});
