/**
 * Authentication and authorization against a real broker and server (docs/SECURITY.md): tokens in
 * HELLO and in `Authorization: Bearer`, access rules on both transports, failed attempts
 * rate-limited and counted, per-principal connection limits and byte quotas (throttled, counted),
 * and the in-process transport trusted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Spillway } from '../../src/client/index.js';
import { ManualClock } from '../../src/clock.js';
import { SpillwayError } from '../../src/errors.js';
import { type AuthConfig, parseAuthConfig } from '../../src/server/auth/auth-file.js';
import { authFailuresBurst } from '../../src/server/auth/authenticator.js';
import { hashSecret, newToken, splitToken } from '../../src/server/auth/token-hash.js';
import { metricValue, startTestServer, type TestServer } from './helpers.js';

const tokens = {
  admin: newToken('admin'),
  orders: newToken('orders-service'),
  reader: newToken('reader'),
  limited: newToken('limited'),
};

async function authConfig(): Promise<AuthConfig> {
  const entry = async (token: string, allow: unknown[], quotas?: unknown) => ({
    name: splitToken(token)!.name,
    tokenHash: await hashSecret(splitToken(token)!.secret),
    allow,
    ...(quotas === undefined ? {} : { quotas }),
  });
  return parseAuthConfig(
    {
      principals: [
        await entry(tokens.admin, [
          { resource: 'cluster', name: '*', operations: ['admin', 'describe'] },
          { resource: 'topic', name: '*', operations: ['admin', 'produce', 'consume'] },
          { resource: 'group', name: '*', operations: ['consume'] },
        ]),
        await entry(tokens.orders, [{ resource: 'topic', name: 'orders.*', operations: ['produce'] }]),
        await entry(tokens.reader, [
          { resource: 'topic', name: 'orders.eu', operations: ['consume'] },
          { resource: 'group', name: 'billing', operations: ['consume'] },
        ]),
        await entry(
          tokens.limited,
          [{ resource: 'topic', name: 'orders.eu', operations: ['produce', 'consume'] }],
          { produceBytesPerSecond: 20_000, fetchBytesPerSecond: 20_000, maxConnections: 2 },
        ),
      ],
    },
    'test',
  );
}

async function codeOf(work: Promise<unknown>): Promise<string | null> {
  try {
    await work;
    return null;
  } catch (error) {
    return error instanceof SpillwayError ? error.code : `not a SpillwayError: ${String(error)}`;
  }
}

let server: TestServer;
let url: string;
let admin: Spillway;

beforeAll(async () => {
  server = await startTestServer({ auth: await authConfig() });
  url = server.server.url;
  admin = await Spillway.connect(url, { token: tokens.admin });
  await admin.admin.createTopic('orders.eu', { partitions: 2 });
  await admin.admin.createTopic('secret');
}, 30_000);

afterAll(async () => {
  await admin?.close();
  await server?.stop();
});

const http = (path: string, init: RequestInit & { token?: string } = {}) => {
  const headers = new Headers(init.headers);
  if (init.token !== undefined) headers.set('authorization', `Bearer ${init.token}`);
  return fetch(`${server.http}${path}`, { ...init, headers });
};

describe('WebSocket', () => {
  it('refuses HELLO without a token, or with a wrong one (UNAUTHENTICATED)', async () => {
    expect(await codeOf(Spillway.connect(url))).toBe('UNAUTHENTICATED');
    const wrongSecret = `${splitToken(tokens.orders)!.name}.${splitToken(tokens.admin)!.secret}`;
    expect(await codeOf(Spillway.connect(url, { token: wrongSecret }))).toBe('UNAUTHENTICATED');
    expect(await codeOf(Spillway.connect(url, { token: 'nobody.abc' }))).toBe('UNAUTHENTICATED');
    expect(await codeOf(Spillway.connect(url, { token: 'no-dot-at-all' }))).toBe('UNAUTHENTICATED');
  });

  it('applies the access rules of the principal to every request', async () => {
    const orders = await Spillway.connect(url, { token: tokens.orders });
    try {
      const producer = orders.producer();
      expect((await producer.send('orders.eu', { partition: 0, value: 'a' })).offset).toBeGreaterThanOrEqual(
        0,
      );
      expect(await codeOf(producer.send('secret', { value: 'b' }))).toBe('FORBIDDEN');
      await producer.close();
      expect(await codeOf(orders.admin.createTopic('orders.new'))).toBe('FORBIDDEN');
      expect(await codeOf(orders.admin.deleteTopic('orders.eu'))).toBe('FORBIDDEN');
      expect(await codeOf(orders.admin.listTopics())).toBe('FORBIDDEN');
      expect((await orders.admin.describeTopic('orders.eu')).partitionCount).toBe(2); // produce implies describe
    } finally {
      await orders.close();
    }
  });

  it('lets a reader consume its topic in its group, and nothing else', async () => {
    const reader = await Spillway.connect(url, { token: tokens.reader });
    try {
      const consumer = reader.consumer({ group: 'billing', topics: ['orders.eu'], from: 'earliest' });
      const iterator = consumer[Symbol.asyncIterator]();
      const first = await iterator.next();
      expect(first.done).toBe(false);
      await consumer.close();
      const other = reader.consumer({ group: 'other-group', topics: ['orders.eu'], from: 'earliest' });
      expect(await codeOf(other[Symbol.asyncIterator]().next())).toBe('FORBIDDEN');
      await other.close().catch(() => undefined);
      expect(await codeOf(reader.producer().send('orders.eu', { value: 'x' }))).toBe('FORBIDDEN');
    } finally {
      await reader.close();
    }
  }, 30_000);

  it('limits the connections of a principal (TOO_MANY_REQUESTS) and frees the slot on close', async () => {
    const first = await Spillway.connect(url, { token: tokens.limited });
    const second = await Spillway.connect(url, { token: tokens.limited });
    expect(await codeOf(Spillway.connect(url, { token: tokens.limited }))).toBe('TOO_MANY_REQUESTS');
    await second.close();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const third = await Spillway.connect(url, { token: tokens.limited });
    await Promise.all([first.close(), third.close()]);
  });

  it('throttles a principal over its produce quota (answers delayed, counted) without errors', async () => {
    const limited = await Spillway.connect(url, { token: tokens.limited });
    try {
      const producer = limited.producer({ lingerMs: 0 });
      const value = 'q'.repeat(10_000);
      const sends = [];
      for (let i = 0; i < 6; i++) sends.push(producer.send('orders.eu', { partition: 1, value }));
      await Promise.all(sends); // 60 KB at 20 KB/s: delayed, not refused
      await producer.close();
    } finally {
      await limited.close();
    }
    const metrics = await (await http('/metrics', { token: tokens.admin })).text();
    const series = 'spillway_quota_throttle_seconds_total{principal="limited",kind="produce"}';
    expect(metricValue(metrics, series)).toBeGreaterThan(0);
    expect(
      metricValue(metrics, 'spillway_quota_bytes_total{principal="limited",kind="produce"}'),
    ).toBeGreaterThanOrEqual(60_000);
  }, 30_000);
});

describe('HTTP', () => {
  it('answers 401 without a valid bearer token on every route but /healthz', async () => {
    expect((await http('/healthz')).status).toBe(200);
    for (const [method, path] of [
      ['GET', '/metrics'],
      ['GET', '/v1/health/details'],
      ['GET', '/v1/topics'],
      ['GET', '/v1/topics/orders.eu'],
      ['DELETE', '/v1/topics/orders.eu'],
      ['GET', '/v1/topics/orders.eu/partitions/0/messages'],
      ['GET', '/v1/sessions'],
      ['GET', '/v1/groups'],
      ['GET', '/v1/groups/billing'],
    ] as const) {
      // Only the first route also with a wrong token: failed attempts are rate-limited per address.
      for (const token of path === '/metrics' ? [undefined, 'nobody.x'] : [undefined]) {
        const answer = await http(path, { method, ...(token ? { token } : {}) });
        expect(answer.status, `${method} ${path} with ${token ?? 'no token'}`).toBe(401);
        expect(answer.headers.get('www-authenticate')).toMatch(/^Bearer/);
        expect(((await answer.json()) as { error: { code: string } }).error.code).toBe('UNAUTHENTICATED');
      }
    }
    const produce = await http('/v1/topics/orders.eu/messages', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ value: 'x' }] }),
    });
    expect(produce.status).toBe(401);
  });

  it('applies the access rules: 403 FORBIDDEN, 2xx when allowed', async () => {
    const post = (path: string, token: string, body: unknown) =>
      http(path, {
        method: 'POST',
        token,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    expect(
      (await post('/v1/topics/orders.eu/messages', tokens.orders, { messages: [{ value: 'h' }] })).status,
    ).toBe(200);
    const forbidden = await post('/v1/topics/secret/messages', tokens.orders, { messages: [{ value: 'h' }] });
    expect(forbidden.status).toBe(403);
    expect(((await forbidden.json()) as { error: { code: string } }).error.code).toBe('FORBIDDEN');
    expect((await post('/v1/topics', tokens.orders, { name: 'orders.x' })).status).toBe(403);
    expect((await http('/v1/topics', { token: tokens.orders })).status).toBe(403);
    expect((await http('/metrics', { token: tokens.reader })).status).toBe(403);
    expect((await http('/v1/topics/orders.eu/partitions/0/messages', { token: tokens.reader })).status).toBe(
      200,
    );
    expect((await http('/v1/topics/secret/partitions/0/messages', { token: tokens.reader })).status).toBe(
      403,
    );
    expect((await http('/v1/topics', { token: tokens.admin })).status).toBe(200);
    expect((await http('/v1/topics/orders.eu', { method: 'DELETE', token: tokens.reader })).status).toBe(403);
  });
});

describe('failed attempts', () => {
  it('are rate-limited per source address and counted in /metrics', async () => {
    // A server of its own: the attempts of the other tests do not share its buckets. Its clock stands
    // still, so no attempt is refilled however slowly the machine runs the loop below.
    const own = await startTestServer({ auth: await authConfig(), clock: new ManualClock(Date.now()) });
    try {
      // Verified before the failures: a remembered token is served even from a throttled address.
      const first = await fetch(`${own.http}/metrics`, {
        headers: { authorization: `Bearer ${tokens.admin}` },
      });
      expect(first.status).toBe(200);
      const codes: string[] = [];
      for (let i = 0; i < authFailuresBurst + 3; i++) {
        const answer = await fetch(`${own.http}/v1/topics`, {
          headers: { authorization: `Bearer admin.wrong-secret-${i}` },
        });
        codes.push(((await answer.json()) as { error: { code: string } }).error.code);
      }
      expect(codes[0]).toBe('UNAUTHENTICATED');
      expect(codes.at(-1)).toBe('TOO_MANY_REQUESTS');
      // Over WebSocket from the same address too.
      expect(await codeOf(Spillway.connect(own.server.url, { token: 'admin.wrong' }))).toBe(
        'TOO_MANY_REQUESTS',
      );
      const metrics = await (
        await fetch(`${own.http}/metrics`, { headers: { authorization: `Bearer ${tokens.admin}` } })
      ).text();
      expect(metricValue(metrics, 'spillway_auth_failures_total')).toBeGreaterThanOrEqual(
        authFailuresBurst - 2,
      );
      expect(metricValue(metrics, 'spillway_auth_throttled_total')).toBeGreaterThanOrEqual(2);
    } finally {
      await own.stop();
    }
  });
});

describe('in-process clients', () => {
  it('are trusted: principal internal, no token needed', async () => {
    const local = await Spillway.connect(server.broker);
    try {
      expect((await local.admin.listTopics()).map((topic) => topic.name)).toContain('secret');
    } finally {
      await local.close();
    }
  });
});
