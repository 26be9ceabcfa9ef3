/**
 * Sessions and server requests at the WebSocket and HTTP front end, with raw frames where the wire
 * matters: one session per connection or HTTP request, closed however the connection ends (client
 * close, client process killed, server close, broker close); HELLO version negotiation; the two
 * correlation id spaces; bad answers to server requests.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { encodeBatch } from '../../src/format/record-batch.js';
import { encodeFrame, type Frame, FrameFlags } from '../../src/protocol/frame.js';
import type { HelloResponse } from '../../src/protocol/messages.js';
import { Opcode } from '../../src/protocol/opcodes.js';
import type { Session, SessionService } from '../../src/protocol/session.js';
import type { Broker } from '../../src/spillway-broker.js';
import { ensureBuilt, repositoryRoot } from '../cli/cli-process.js';
import { waitFor } from '../client/helpers.js';
import {
  delegate,
  errorCode,
  metricValue,
  ok,
  startTestServer,
  TestClient,
  type TestServer,
} from './helpers.js';

const testOpcode = 100;
const childSource = join(repositoryRoot, 'test/server/session-child.ts');
const childScript = join(repositoryRoot, 'dist/test/server/session-child.js');

interface ClosedSession {
  id: number;
  kind: string;
  clientId: string | null;
}

/** Sessions of `broker` with a close hook on each, as a feature holding a resource would register. */
function observedSessions(broker: Broker): { sessions: SessionService; closed: ClosedSession[] } {
  const closed: ClosedSession[] = [];
  const sessions: SessionService = {
    open: (options) => {
      const session = broker.sessions.open(options);
      session.onClose((ended) => {
        closed.push({ id: ended.id, kind: ended.kind, clientId: ended.clientId });
      });
      return session;
    },
    list: () => broker.sessions.list(),
    get: (id) => broker.sessions.get(id),
    get count() {
      return broker.sessions.count;
    },
    get closeHookFailureCount() {
      return broker.sessions.closeHookFailureCount;
    },
    ping: (id, options) => broker.sessions.ping(id, options),
  };
  return { sessions, closed };
}

const harnesses: TestServer[] = [];
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
  for (const harness of harnesses.splice(0)) await harness.stop();
});

async function start(): Promise<{ harness: TestServer; closed: ClosedSession[] }> {
  let closed: ClosedSession[] = [];
  const harness = await startTestServer({ brokerVersion: '9.9.9-test' }, {}, (broker) => {
    const observed = observedSessions(broker);
    closed = observed.closed;
    return delegate(broker, {}, { sessions: observed.sessions });
  });
  harnesses.push(harness);
  return { harness, closed };
}

async function hello(client: TestClient, header: Record<string, unknown>): Promise<HelloResponse> {
  return ok<HelloResponse>(await client.request(Opcode.hello, header));
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
  throw new Error('expected a rejection');
}

function answerTo(request: Frame, overrides: Partial<Frame> = {}): Uint8Array {
  return encodeFrame({
    opcode: request.opcode,
    flags: FrameFlags.serverRequest | FrameFlags.response,
    correlationId: request.correlationId,
    header: { answered: true },
    ...overrides,
  });
}

describe('sessions of WebSocket connections', () => {
  it('one per connection, named by HELLO; closing the connection closes it and runs its hooks', async () => {
    const { harness, closed } = await start();
    const client = await TestClient.connect(harness.server.url);
    const answer = await hello(client, { protocolVersion: 1, protocolVersionMax: 2, clientId: 'raw-1' });
    expect(answer.protocolVersion).toBe(2);
    const session = harness.broker.sessions.get(answer.sessionId)!;
    expect(session).toMatchObject({ kind: 'websocket', clientId: 'raw-1', protocolVersion: 2 });
    const other = await TestClient.connect(harness.server.url);
    const otherAnswer = await hello(other, { protocolVersion: 2 });
    expect(otherAnswer.sessionId).not.toBe(answer.sessionId);
    expect(harness.broker.sessions.list().map((info) => info.clientId)).toEqual(['raw-1', null]);
    await client.close();
    await waitFor(() => closed.length === 1);
    expect(closed).toEqual([{ id: answer.sessionId, kind: 'websocket', clientId: 'raw-1' }]);
    expect(session.closed).toBe(true);
    expect(harness.broker.sessions.count).toBe(1);
    await other.close();
    await waitFor(() => closed.length === 2);
  });

  it('HELLO picks the highest common version; no common version is UNSUPPORTED_VERSION', async () => {
    const { harness } = await start();
    const client = await TestClient.connect(harness.server.url);
    const chosen = async (header: Record<string, unknown>) => {
      const frame = await client.request(Opcode.hello, header);
      return errorCode(frame) ?? (frame.header as HelloResponse).protocolVersion;
    };
    expect(await chosen({ protocolVersion: 1 })).toBe(1);
    expect(await chosen({ protocolVersion: 2 })).toBe(2);
    expect(await chosen({ protocolVersion: 1, protocolVersionMax: 2 })).toBe(2);
    expect(await chosen({ protocolVersion: 1, protocolVersionMax: 9 })).toBe(2);
    expect(await chosen({ protocolVersion: 0, protocolVersionMax: 1 })).toBe(1);
    expect(await chosen({ protocolVersion: 0 })).toBe('UNSUPPORTED_VERSION');
    expect(await chosen({ protocolVersion: 3, protocolVersionMax: 4 })).toBe('UNSUPPORTED_VERSION');
    expect(await chosen({ protocolVersion: 2, protocolVersionMax: 1 })).toBe('INVALID_ARGUMENT');
    await client.close();
  });

  it('a version 1 client is served as before and is never sent a server request', async () => {
    const { harness } = await start();
    const client = await TestClient.connect(harness.server.url);
    const answer = await hello(client, { protocolVersion: 1, clientId: 'old' });
    expect(answer.protocolVersion).toBe(1);
    ok(await client.request(Opcode.createTopic, { name: 'old-client' }));
    const produced = ok(
      await client.request(
        Opcode.produce,
        { topic: 'old-client', partition: 0 },
        encodeBatch([{ value: 'v1' }]),
      ),
    );
    expect(produced).toMatchObject({ baseOffset: 0 });
    const session = harness.broker.sessions.get(answer.sessionId)!;
    expect(session.canRequest).toBe(false);
    expect(await codeOf(session.request(Opcode.ping, {}))).toBe('UNSUPPORTED_VERSION');
    expect(await codeOf(harness.broker.sessions.ping(session.id))).toBe('UNSUPPORTED_VERSION');
    // Nothing arrived that the client did not ask for.
    ok(await client.request(Opcode.listTopics, {}));
    expect(client.unaddressed).toEqual([]);
    // A connection without HELLO speaks version 1 too.
    const silent = await TestClient.connect(harness.server.url);
    ok(await silent.request(Opcode.listTopics, {}));
    const silentSession = harness.broker.sessions.list().find((info) => info.id !== session.id)!;
    expect(silentSession.protocolVersion).toBe(1);
    await Promise.all([client.close(), silent.close()]);
  });

  it('server requests use their own correlation ids: equal ids of both directions do not mix', async () => {
    const { harness } = await start();
    const client = await TestClient.connect(harness.server.url);
    const { sessionId } = await hello(client, { protocolVersion: 2 });
    const session = harness.broker.sessions.get(sessionId)!;
    const asked = session.request(testOpcode, { question: 'commit?' }, Buffer.from('body'));
    const request = await client.nextUnaddressed();
    expect(request).toMatchObject({
      opcode: testOpcode,
      flags: FrameFlags.serverRequest,
      header: { question: 'commit?' },
    });
    expect(Buffer.from(request.body).toString()).toBe('body');
    // The client sends a request of its own with the same correlation id, then answers the server's.
    client.sendRaw(
      encodeFrame({ opcode: Opcode.listTopics, flags: 0, correlationId: request.correlationId, header: {} }),
    );
    const listed = await client.nextUnaddressed();
    expect(listed).toMatchObject({
      opcode: Opcode.listTopics,
      flags: FrameFlags.response,
      correlationId: request.correlationId,
    });
    client.sendRaw(answerTo(request, { header: { decision: 'commit' }, body: Buffer.from('answer') }));
    const answer = await asked;
    expect(answer.header).toEqual({ decision: 'commit' });
    expect(Buffer.from(answer.body).toString()).toBe('answer');
    expect(harness.server.metrics.serverRequestsSent).toBe(1);
    expect(harness.server.metrics.serverRequestAnswers).toBe(1);
    await client.close();
  });

  it('bad answers: another opcode, an undecodable frame, a request flagged serverRequest, an unknown id', async () => {
    const { harness } = await start();
    const client = await TestClient.connect(harness.server.url);
    const { sessionId } = await hello(client, { protocolVersion: 2 });
    const session = harness.broker.sessions.get(sessionId)!;
    const { metrics } = harness.server;

    // Answered with another opcode: the request fails PROTOCOL_ERROR; the client is not answered.
    const mismatched = session.request(testOpcode, {});
    client.sendRaw(answerTo(await client.nextUnaddressed(), { opcode: testOpcode + 1 }));
    expect(await codeOf(mismatched)).toBe('PROTOCOL_ERROR');

    // An answer whose header does not decode: the request fails at once (not by its 60 s timeout),
    // and the client gets PROTOCOL_ERROR with correlation id 0.
    const broken = session.request(testOpcode, {}, undefined, { timeoutMs: 60_000 });
    const request = await client.nextUnaddressed();
    const bytes = answerTo(request);
    bytes[12] = 0xc1; // a msgpack byte that is never valid
    client.sendRaw(bytes);
    expect(await codeOf(broken)).toBe('PROTOCOL_ERROR');
    const complaint = await client.nextUnaddressed();
    expect([complaint.correlationId, errorCode(complaint)]).toEqual([0, 'PROTOCOL_ERROR']);

    // A client may not send server requests (flags 4 or 6): PROTOCOL_ERROR with correlation id 0.
    for (const flags of [FrameFlags.serverRequest, FrameFlags.serverRequest | FrameFlags.error]) {
      client.sendRaw(encodeFrame({ opcode: Opcode.ping, flags, correlationId: 77, header: {} }));
      const refused = await client.nextUnaddressed();
      expect([refused.correlationId, errorCode(refused)]).toEqual([0, 'PROTOCOL_ERROR']);
    }

    // An answer nobody waits for is dropped without an answer, and counted.
    const droppedBefore = metrics.serverRequestAnswersDropped;
    client.sendRaw(answerTo({ ...request, correlationId: 4242 }));
    client.sendRaw(answerTo(request)); // already failed above
    ok(await client.request(Opcode.listTopics, {}));
    expect(client.unaddressed).toEqual([]);
    expect(metrics.serverRequestAnswersDropped).toBe(droppedBefore + 2);

    // Opcode 64 sent as a client request.
    expect(errorCode(await client.request(Opcode.ping, {}))).toBe('UNKNOWN_OPCODE');
    // And the session still works.
    const fine = session.request(testOpcode, {});
    client.sendRaw(answerTo(await client.nextUnaddressed()));
    expect((await fine).header).toEqual({ answered: true });
    await client.close();
  });

  it('closes when the client process is killed (SIGKILL): hooks run, pending server requests fail', async () => {
    const { harness, closed } = await start();
    const child = spawn(process.execPath, [childScript, harness.server.url, 'doomed', String(testOpcode)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let output = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    try {
      await waitFor(() => output.includes('\n') || child.exitCode !== null, 30_000);
    } catch (error) {
      throw new Error(`the child did not get ready: ${stderr}`, { cause: error });
    }
    const match = /^ready (\d+)$/m.exec(output);
    expect(match, stderr).not.toBeNull();
    const session: Session = harness.broker.sessions.get(Number(match![1]))!;
    expect(session).toMatchObject({ clientId: 'doomed', kind: 'websocket' });
    // The child takes this request and never answers it.
    const pending = codeOf(session.request(testOpcode, {}, undefined, { timeoutMs: 60_000 }));
    expect((await session.request(Opcode.ping, {})).header).toEqual({});
    child.kill('SIGKILL');
    expect(await pending).toBe('CONNECTION_CLOSED');
    await waitFor(() => closed.some((entry) => entry.clientId === 'doomed'));
    expect(session.closed).toBe(true);
    expect(harness.broker.sessions.get(session.id)).toBeUndefined();
  });

  it('server close closes every session (hooks have run when it resolves); pending requests fail', async () => {
    const { harness, closed } = await start();
    const clients = await Promise.all([1, 2, 3].map(() => TestClient.connect(harness.server.url)));
    const ids = await Promise.all(
      clients.map(
        async (client, i) => (await hello(client, { protocolVersion: 2, clientId: `c${i}` })).sessionId,
      ),
    );
    const pending = codeOf(harness.broker.sessions.get(ids[0]!)!.request(testOpcode, {}));
    await harness.server.close();
    expect(closed.map((entry) => entry.id).sort()).toEqual([...ids].sort());
    expect(await pending).toBe('CONNECTION_CLOSED');
    expect(harness.broker.sessions.count).toBe(0);
    for (const client of clients) expect((await client.closed).code).toBe(1001);
  });

  it('broker close with the server still up drops the connections (1001) and closes their sessions', async () => {
    const { harness, closed } = await start();
    const client = await TestClient.connect(harness.server.url);
    const { sessionId } = await hello(client, { protocolVersion: 2, clientId: 'left-open' });
    await harness.broker.close();
    expect(closed).toEqual([{ id: sessionId, kind: 'websocket', clientId: 'left-open' }]);
    expect((await client.closed).code).toBe(1001);
    // A new connection is refused: no session opens on a closed broker.
    await expect(TestClient.connect(harness.server.url)).rejects.toThrow(/503/);
  });
});

describe('sessions of HTTP requests', () => {
  it('each request has one, closed once it is answered; GET /v1/sessions lists the open ones', async () => {
    const { harness, closed } = await start();
    const client = await TestClient.connect(harness.server.url);
    await hello(client, { protocolVersion: 2, clientId: 'ws-client' });
    const response = await fetch(`${harness.http}/v1/sessions`);
    expect(response.status).toBe(200);
    const { sessions } = (await response.json()) as {
      sessions: Array<{ kind: string; clientId: string | null }>;
    };
    expect(sessions.map((session) => [session.kind, session.clientId])).toEqual([
      ['websocket', 'ws-client'],
      ['http', null],
    ]);
    await waitFor(() => closed.length === 1);
    expect(closed[0]!.kind).toBe('http');
    for (const path of ['/healthz', '/v1/topics', '/v1/topics/none'])
      await (await fetch(`${harness.http}${path}`)).text();
    await waitFor(() => closed.length === 4);
    expect(harness.broker.sessions.list().map((info) => info.kind)).toEqual(['websocket']);
    expect((await fetch(`${harness.http}/v1/sessions`, { method: 'POST' })).status).toBe(405);
    await client.close();
  });

  it('a request the client abandons (a long-poll) closes its session too', async () => {
    const { harness, closed } = await start();
    await harness.broker.topics.create('waiting');
    const abort = new AbortController();
    const longPoll = fetch(`${harness.http}/v1/topics/waiting/partitions/0/messages?maxWaitMs=30000`, {
      signal: abort.signal,
    }).catch(() => 'aborted');
    await waitFor(() => harness.broker.sessions.count === 1);
    abort.abort();
    expect(await longPoll).toBe('aborted');
    await waitFor(() => closed.length === 1);
    expect(harness.broker.sessions.count).toBe(0);
  });
});

describe('session metrics', () => {
  it('reports open sessions by kind', async () => {
    const { harness } = await start();
    const clients = await Promise.all([1, 2].map(() => TestClient.connect(harness.server.url)));
    const text = await (await fetch(`${harness.http}/metrics`)).text();
    expect(metricValue(text, 'spillway_sessions{kind="websocket"}')).toBe(2);
    expect(metricValue(text, 'spillway_sessions{kind="http"}')).toBe(1); // the scrape itself
    expect(metricValue(text, 'spillway_session_close_hook_failures_total')).toBe(0);
    await Promise.all(clients.map((client) => client.close()));
  });
});

beforeAll(() => {
  ensureBuilt();
  // ensureBuilt looks at src/ and bench/ only: build again if the child script is missing or older.
  if (existsSync(childScript) && statSync(childScript).mtimeMs >= statSync(childSource).mtimeMs) return;
  const build = spawnSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: repositoryRoot, encoding: 'utf8' });
  if (!existsSync(childScript))
    throw new Error(`tsc did not produce ${childScript}:\n${build.stdout}${build.stderr}`);
}, 120_000);
