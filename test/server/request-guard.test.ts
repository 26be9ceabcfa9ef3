/**
 * The checks made before any request runs (request-guard.ts) and the HTTP memory bounds
 * (http-budget.ts): cross-site WebSocket hijacking (a foreign Origin), DNS rebinding (a foreign Host
 * on a loopback broker), form CSRF (text/plain bodies), deep JSON, slow and parallel uploads,
 * connections per address and connections that never say HELLO. Real server, real sockets.
 */
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ManualClock } from '../../src/clock.js';
import { Opcode, protocolVersion } from '../../src/protocol/opcodes.js';
import type { ServerOptions } from '../../src/server/server.js';
import { metricValue, ok, startTestServer, TestClient, type TestServer } from './helpers.js';

let harness: TestServer | undefined;

afterEach(async () => {
  await harness?.stop();
  harness = undefined;
});

async function start(options: ServerOptions = {}): Promise<TestServer> {
  harness = await startTestServer(options);
  return harness;
}

interface RawAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  json: { error?: { code: string; message: string } } & Record<string, unknown>;
}

/** An HTTP request with exactly these headers (fetch would not let us set Host or Origin). */
function raw(
  server: TestServer,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: string,
): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const outgoing = httpRequest(
      { host: server.server.host, port: server.server.port, method, path, headers, agent: false },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: RawAnswer['json'] = {};
          try {
            json = text === '' ? {} : JSON.parse(text);
          } catch {
            json = {};
          }
          resolve({ status: response.statusCode ?? 0, headers: response.headers, json });
        });
      },
    );
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}

/** Opens a WebSocket with these headers: 'open', or the status and error code of the refusal. */
function upgrade(
  server: TestServer,
  headers: Record<string, string>,
  origin?: string,
): Promise<{ opened: WebSocket } | { status: number; code: string }> {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(server.server.url, { headers, ...(origin !== undefined ? { origin } : {}) });
    socket.once('open', () => resolve({ opened: socket }));
    socket.once('error', reject);
    socket.once('unexpected-response', (_request, response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error: { code: string } };
        resolve({ status: response.statusCode ?? 0, code: body.error.code });
      });
    });
  });
}

describe('Origin and Host checks', () => {
  it('refuses a WebSocket upgrade from a foreign web page origin (403 ORIGIN_NOT_ALLOWED)', async () => {
    const server = await start();
    expect(await upgrade(server, {}, 'http://evil.example')).toEqual({
      status: 403,
      code: 'ORIGIN_NOT_ALLOWED',
    });
    const metrics = await raw(server, 'GET', '/metrics', {});
    expect(metrics.status).toBe(200);
    // A program (no Origin) still connects.
    const program = await upgrade(server, {});
    expect('opened' in program).toBe(true);
    if ('opened' in program) program.opened.close();
  });

  it('accepts an allowed origin, and refuses the others', async () => {
    const server = await start({ allowedOrigins: ['https://app.example:8443'] });
    const allowed = await upgrade(server, {}, 'https://app.example:8443');
    expect('opened' in allowed).toBe(true);
    if ('opened' in allowed) allowed.opened.close();
    expect(await upgrade(server, {}, 'https://app.example')).toEqual({
      status: 403,
      code: 'ORIGIN_NOT_ALLOWED',
    });
    const http = await raw(server, 'GET', '/v1/topics', { origin: 'https://app.example:8443' });
    expect(http.status).toBe(200);
  });

  it('refuses a rebinding Host on a loopback broker, accepts localhost and configured names', async () => {
    const server = await start({ allowedHosts: ['broker.internal'] });
    const port = server.server.port;
    expect(await upgrade(server, { host: `evil.example:${port}` })).toEqual({
      status: 403,
      code: 'HOST_NOT_ALLOWED',
    });
    const rebound = await raw(server, 'DELETE', '/v1/topics/x', { host: `evil.example:${port}` });
    expect(rebound.status).toBe(403);
    expect(rebound.json.error?.code).toBe('HOST_NOT_ALLOWED');
    for (const host of [
      `localhost:${port}`,
      `127.0.0.1:${port}`,
      `[::1]:${port}`,
      `broker.internal:${port}`,
    ]) {
      expect((await raw(server, 'GET', '/v1/topics', { host })).status, host).toBe(200);
    }
    // The name decides, not the port (a local proxy or tunnel may front the broker on another port).
    expect((await raw(server, 'GET', '/v1/topics', { host: `localhost:${port + 1}` })).status).toBe(200);
    expect((await raw(server, 'GET', '/v1/topics', { host: 'evil.example' })).status).toBe(403);
  });

  it('refuses HTTP requests from a foreign origin before they run', async () => {
    const server = await start();
    const answer = await raw(
      server,
      'POST',
      '/v1/topics',
      { origin: 'http://evil.example', 'content-type': 'application/json' },
      JSON.stringify({ name: 'csrf' }),
    );
    expect(answer.status).toBe(403);
    expect(answer.json.error?.code).toBe('ORIGIN_NOT_ALLOWED');
    expect(server.broker.topics.list().map((topic) => topic.name)).not.toContain('csrf');
    const metrics = await raw(server, 'GET', '/metrics', {});
    expect(metrics.status).toBe(200);
  });

  it('accepts only application/json where JSON is expected (a form cannot create or produce)', async () => {
    const server = await start();
    for (const contentType of [
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
    ]) {
      const answer = await raw(
        server,
        'POST',
        '/v1/topics',
        { 'content-type': contentType },
        '{"name":"form"}',
      );
      expect(answer.status, contentType).toBe(415);
      expect(answer.json.error?.code).toBe('INVALID_ARGUMENT');
    }
    expect(server.broker.topics.list().map((topic) => topic.name)).not.toContain('form');
    const created = await raw(
      server,
      'POST',
      '/v1/topics',
      { 'content-type': 'application/json; charset=utf-8' },
      '{"name":"json"}',
    );
    expect(created.status).toBe(201);
  });
});

describe('HTTP bodies', () => {
  it('refuses JSON nested deeper than jsonDepthMax with 400 without parsing it', async () => {
    const server = await start();
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    const answer = await raw(server, 'POST', '/v1/topics', { 'content-type': 'application/json' }, deep);
    expect(answer.status).toBe(400);
    expect(answer.json.error?.message).toMatch(/deeper than 64/);
    // Brackets inside strings do not count.
    const inString = JSON.stringify({ name: 'brackets', description: '[[[['.repeat(100) });
    const created = await raw(server, 'POST', '/v1/topics', { 'content-type': 'application/json' }, inString);
    expect(created.json.error?.message ?? '').not.toMatch(/deeper/);
  });

  it('times out a body that does not arrive (408), on the server clock', async () => {
    const clock = new ManualClock();
    const server = await start({ clock, httpBodyTimeoutMs: 5_000 });
    const socket = connect(server.server.port, server.server.host);
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.write(
      `POST /v1/topics HTTP/1.1\r\nhost: 127.0.0.1:${server.server.port}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"name":`,
    );
    // Wait until the server has the request (its metrics show the bytes held), then let time pass.
    for (let attempt = 0; attempt < 200; attempt++) {
      if (server.server.metrics.httpBudget!.receivingBytes > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(server.server.metrics.httpBudget!.receivingBytes).toBe(8);
    clock.advance(5_000);
    await closed;
    const text = Buffer.concat(received).toString('utf8');
    expect(text).toMatch(/^HTTP\/1\.1 408/);
    expect(text).toContain('"TIMEOUT"');
    expect(server.server.metrics.httpBudget!.receivingBytes).toBe(0);
  });

  it('bounds the bytes of all bodies being received together (503 BACKPRESSURE past the budget)', async () => {
    const server = await start({ httpBodyBudgetBytes: 1024 * 1024 });
    const sockets = [];
    const answers: Array<Promise<string>> = [];
    // Three uploads of 600 KiB each, none finished: the budget holds one and a bit.
    for (let index = 0; index < 3; index++) {
      const socket = connect(server.server.port, server.server.host);
      sockets.push(socket);
      const received: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => received.push(chunk));
      // The answer comes before the close (uWS closes once the client stops sending).
      answers.push(
        new Promise((resolve) =>
          socket.on('data', () => {
            const text = Buffer.concat(received).toString('utf8');
            if (text.includes('"error"')) resolve(text);
          }),
        ),
      );
      socket.write(
        `POST /v1/topics HTTP/1.1\r\nhost: 127.0.0.1:${server.server.port}\r\ncontent-type: application/json\r\ncontent-length: ${2 * 1024 * 1024}\r\n\r\n`,
      );
      socket.write(Buffer.alloc(600 * 1024, 0x20));
    }
    // At least one upload is refused, and the bytes held never pass the budget.
    const first = await Promise.race(answers);
    expect(first).toMatch(/^HTTP\/1\.1 503/);
    expect(first).toContain('"BACKPRESSURE"');
    expect(server.server.metrics.httpBudget!.receivingBytes).toBeLessThanOrEqual(1024 * 1024);
    for (const socket of sockets) socket.destroy();
    for (let attempt = 0; attempt < 200 && server.server.metrics.httpBudget!.receivingBytes > 0; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(server.server.metrics.httpBudget!.receivingBytes).toBe(0);
    const metrics = await raw(server, 'GET', '/metrics', {});
    expect(metrics.status).toBe(200);
  });
});

describe('WebSocket connections', () => {
  it('limits connections per source address (503 past maxConnectionsPerAddress)', async () => {
    const server = await start({ maxConnectionsPerAddress: 2 });
    const first = await TestClient.connect(server.server.url);
    const second = await TestClient.connect(server.server.url);
    await expect(TestClient.connect(server.server.url)).rejects.toThrow(/HTTP 503/);
    await first.close();
    // A slot is free again once one closes.
    for (let attempt = 0; attempt < 200 && server.server.metrics.connectionsOpen > 1; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const third = await TestClient.connect(server.server.url);
    await third.close();
    await second.close();
  });

  it('closes a connection that says no HELLO within the handshake timeout (1008), not one that did', async () => {
    const clock = new ManualClock();
    const server = await start({ clock, handshakeTimeoutMs: 10_000 });
    const silent = await TestClient.connect(server.server.url);
    const polite = await TestClient.connect(server.server.url);
    ok(await polite.request(Opcode.hello, { protocolVersion, clientId: 'polite' }));
    clock.advance(10_000);
    expect(await silent.closed).toMatchObject({ code: 1008, reason: expect.stringMatching(/no HELLO/) });
    expect(polite.open).toBe(true);
    ok(await polite.request(Opcode.listTopics, {}));
    const metrics = await raw(server, 'GET', '/metrics', {});
    expect(metrics.status).toBe(200);
    await polite.close();
    const text = await (await fetch(`${server.http}/metrics`)).text();
    expect(metricValue(text, 'spillway_connections_closed_for_handshake_timeout_total')).toBe(1);
  });
});
