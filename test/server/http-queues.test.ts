/** HTTP receive / ack / nack (shared mode) against a real broker and server. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './helpers.js';

let harness: TestServer;

beforeAll(async () => {
  harness = await startTestServer();
});
afterAll(async () => {
  await harness.stop();
});

interface Answer {
  status: number;
  json: Record<string, unknown> & { error?: { code: string; message: string } };
}

async function post(path: string, body: unknown): Promise<Answer> {
  const response = await fetch(`${harness.http}${path}`, {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json' },
  });
  return { status: response.status, json: (await response.json()) as Answer['json'] };
}

interface HttpMessage {
  topic: string;
  partition: number;
  offset: number;
  key: string | null;
  value: string;
  headers: Record<string, string>;
  deliveryCount: number;
  receipt: string;
}

async function receive(group: string, body: Record<string, unknown>): Promise<HttpMessage[]> {
  const answer = await post(`/v1/groups/${group}/receive`, body);
  expect(answer.status).toBe(200);
  return answer.json['messages'] as HttpMessage[];
}

describe('HTTP queue API', () => {
  it('receives with receipts, acks, nacks with a delay; stale and foreign receipts are typed errors', async () => {
    expect((await post('/v1/topics', { name: 'hq', partitions: 2 })).status).toBe(201);
    const produced = await post('/v1/topics/hq/messages', {
      messages: [
        { key: 'a', value: 'one' },
        { key: 'b', value: 'two' },
        { key: 'c', value: 'three' },
      ],
    });
    expect(produced.status).toBe(200);

    const first = await receive('billing', { topic: 'hq', max: 10, waitMs: 1000 });
    expect(first.map((m) => m.value).sort()).toEqual(['one', 'three', 'two']);
    expect(first.every((m) => m.deliveryCount === 1 && typeof m.receipt === 'string')).toBe(true);
    // Everything is in flight: nothing more to hand out.
    expect(await receive('billing', { topic: 'hq', max: 10, waitMs: 0 })).toEqual([]);

    const byValue = (value: string) => first.find((message) => message.value === value);
    const [one, two, three] = [byValue('one'), byValue('two'), byValue('three')];
    const ack = await post('/v1/groups/billing/ack', { receipts: [one!.receipt] });
    expect(ack).toEqual({ status: 200, json: { settled: 1, ignored: 0 } });
    // Acked: its receipt is stale now.
    const stale = await post('/v1/groups/billing/ack', { receipts: [one!.receipt] });
    expect(stale.status).toBe(409);
    expect(stale.json.error!.code).toBe('RECEIPT_EXPIRED');
    // A receipt of another group.
    const foreign = await post('/v1/groups/other/ack', { receipts: [two!.receipt] });
    expect(foreign.status).toBe(400);
    expect(foreign.json.error!.code).toBe('RECEIPT_INVALID');
    const malformed = await post('/v1/groups/billing/nack', { receipts: ['nope'] });
    expect(malformed.json.error!.code).toBe('RECEIPT_INVALID');

    const nack = await post('/v1/groups/billing/nack', {
      receipts: [three!.receipt],
      delayMs: 0,
      error: 'boom',
    });
    expect(nack).toEqual({ status: 200, json: { settled: 1, ignored: 0 } });
    const again = await receive('billing', { topic: 'hq', max: 10, waitMs: 1000 });
    expect(again.map((m) => [m.value, m.deliveryCount])).toEqual([['three', 2]]);
    expect(
      (await post('/v1/groups/billing/ack', { receipts: [again[0]!.receipt, two!.receipt] })).json,
    ).toEqual({
      settled: 2,
      ignored: 0,
    });
    expect(await receive('billing', { topic: 'hq', max: 10, waitMs: 0 })).toEqual([]);
    // The queue gauges: everything acked, nothing in flight.
    const metrics = await (await fetch(`${harness.http}/metrics`)).text();
    const floors = metrics
      .split('\n')
      .filter((line) => line.startsWith('spillway_queue_ack_floor{group="billing",topic="hq"'));
    expect(floors.reduce((sum, line) => sum + Number(line.split(' ')[1]), 0)).toBe(3);
    expect(metrics).toMatch(/spillway_queue_in_flight\{group="billing",topic="hq",partition="0"\} 0/);
    // The group list and describe show queue groups too.
    const listed = (await (await fetch(`${harness.http}/v1/groups`)).json()) as { groups: unknown[] };
    expect(listed.groups).toContainEqual({
      group: 'billing',
      mode: 'shared',
      topic: 'hq',
      memberCount: 0,
      backlog: 0,
      lag: 0,
      inFlight: 0,
    });
    const described = (await (await fetch(`${harness.http}/v1/groups/billing`)).json()) as Record<
      string,
      unknown
    >;
    expect(described).toMatchObject({ group: 'billing', mode: 'shared', queues: [{ topic: 'hq' }] });
    expect((await fetch(`${harness.http}/v1/groups/nobody`)).status).toBe(404);
  });

  it('a receipt is useless after its ack timeout: the message comes again with a new one', async () => {
    expect((await post('/v1/topics', { name: 'hq-timeout', partitions: 1 })).status).toBe(201);
    await post('/v1/topics/hq-timeout/messages', { messages: [{ value: 'slow' }] });
    const [first] = await receive('t', { topic: 'hq-timeout', max: 1, waitMs: 1000, ackTimeoutMs: 50 });
    const [second] = await receive('t', { topic: 'hq-timeout', max: 1, waitMs: 5000, ackTimeoutMs: 50 });
    expect(second!.offset).toBe(first!.offset);
    expect(second!.deliveryCount).toBe(2);
    const late = await post('/v1/groups/t/ack', { receipts: [first!.receipt] });
    expect(late.json.error!.code).toBe('RECEIPT_EXPIRED');
  });

  it('refuses bad requests with typed errors', async () => {
    await post('/v1/topics', { name: 'hq-bad', partitions: 1 });
    expect((await post('/v1/groups/g/receive', { topic: 'hq-bad', max: 0 })).json.error!.code).toBe(
      'INVALID_ARGUMENT',
    );
    expect((await post('/v1/groups/g/receive', { topic: 'hq-bad', bogus: 1 })).json.error!.code).toBe(
      'INVALID_ARGUMENT',
    );
    expect((await post('/v1/groups/g/ack', {})).json.error!.code).toBe('INVALID_ARGUMENT');
    expect((await post('/v1/groups/g/receive', { topic: '__metadata' })).json.error!.code).toBe(
      'INVALID_ARGUMENT',
    );
  });
});
