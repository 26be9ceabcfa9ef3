/**
 * Sessions and server requests end to end through the Spillway client, over both transports (a real
 * broker, a real server for WebSocket): the same tests, the same answers.
 */
import { describe, expect, it } from 'vitest';
import { ServerRequestHandlers } from '../../src/client/server-requests.js';
import { SpillwayError } from '../../src/errors.js';
import { serverRequestsPerSessionMax } from '../../src/limits.js';
import { type Frame, FrameFlags } from '../../src/protocol/frame.js';
import { Opcode, protocolVersion } from '../../src/protocol/opcodes.js';
import { connect, deferred, openBroker, serve, waitFor } from './helpers.js';

/** An opcode of the server-request range no feature uses: the tests' own. */
const testOpcode = 100;

type TransportKind = 'websocket' | 'in-process';

async function setup(kind: TransportKind, clientId = `client-${kind}`) {
  const broker = await openBroker();
  const target = kind === 'websocket' ? (await serve(broker)).url : broker;
  const client = await connect(target, { clientId });
  const sessionId = client.broker.sessionId;
  expect(sessionId).not.toBeNull();
  const session = broker.sessions.get(sessionId!);
  expect(session).toBeDefined();
  return { broker, client, session: session!, target };
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof SpillwayError) return error.code;
    throw error;
  }
  throw new Error('expected a rejection');
}

describe.each(['websocket', 'in-process'] as const)('sessions over %s', (kind) => {
  it('one session per client, named by its client id, version 2, closed (hooks run) by client.close()', async () => {
    const { broker, client, session } = await setup(kind, 'billing-1');
    expect(client.broker.protocolVersion).toBe(protocolVersion);
    // In-process clients are trusted: principal 'internal'; no auth file here: WebSocket sessions carry none.
    expect(session).toMatchObject({ kind, clientId: 'billing-1', protocolVersion: 2 });
    expect(session.principal?.name ?? null).toBe(kind === 'in-process' ? 'internal' : null);
    expect(session.canRequest).toBe(true);
    expect(broker.sessions.list().filter((info) => info.clientId === 'billing-1')).toHaveLength(1);
    const released: number[] = [];
    session.onClose((closed) => void released.push(closed.id));
    await client.admin.createTopic('t');
    await client.close();
    await waitFor(() => released.length > 0);
    expect(released).toEqual([session.id]);
    expect(session.closed).toBe(true);
    expect(session.signal.aborted).toBe(true);
    expect(broker.sessions.get(session.id)).toBeUndefined();
  });

  it('broker.close() ends the session: hooks run, the client hears of it, later requests fail', async () => {
    const { broker, client, session } = await setup(kind);
    const released: number[] = [];
    session.onClose((closed) => void released.push(closed.id));
    const lost = deferred<SpillwayError>();
    // The transport is internal; its loss shows as a rejected request or a disconnect listener.
    (client as unknown as { transport: { onDisconnect(listener: (error: SpillwayError) => void): void } })[
      'transport'
    ].onDisconnect((error) => lost.resolve(error));
    await broker.close();
    expect(released).toEqual([session.id]);
    expect((await lost.promise).code).toBe('CONNECTION_CLOSED');
    // WebSocket: the server is still up but the upgrade is refused (no session opens): the client
    // cannot connect. In process: the broker refuses to open a session.
    expect(await codeOf(client.admin.listTopics())).toBe(
      kind === 'websocket' ? 'CONNECTION_CLOSED' : 'BROKER_CLOSING',
    );
  });

  it('PING: answered by the client itself; sessions.ping resolves with the round trip', async () => {
    const { broker, session } = await setup(kind);
    const answer = await session.request(Opcode.ping, {});
    expect(answer).toMatchObject({
      opcode: Opcode.ping,
      flags: FrameFlags.serverRequest | FrameFlags.response,
      header: {},
    });
    expect(await broker.sessions.ping(session.id)).toBeGreaterThanOrEqual(0);
  });

  it('a registered handler answers with its header and body; the request sees them', async () => {
    const { client, session } = await setup(kind);
    const asked: Array<{ header: unknown; body: string }> = [];
    const unregister = client.onServerRequest(testOpcode, async (request) => {
      asked.push({ header: request.header, body: Buffer.from(request.body).toString() });
      return {
        header: { decision: 'commit', n: (request.header as { n: number }).n },
        body: Buffer.from('ok'),
      };
    });
    const answers = await Promise.all(
      [1, 2, 3].map((n) => session.request(testOpcode, { n }, Buffer.from(`q${n}`))),
    );
    expect(answers.map((answer: Frame) => answer.header)).toEqual([
      { decision: 'commit', n: 1 },
      { decision: 'commit', n: 2 },
      { decision: 'commit', n: 3 },
    ]);
    expect(answers.map((answer) => Buffer.from(answer.body).toString())).toEqual(['ok', 'ok', 'ok']);
    expect(asked.map((request) => request.body).sort()).toEqual(['q1', 'q2', 'q3']);
    // Unregistered: NO_HANDLER again.
    unregister();
    expect(await codeOf(session.request(testOpcode, {}))).toBe('NO_HANDLER');
  });

  it('an opcode without a handler is answered NO_HANDLER; a throwing handler HANDLER_FAILED', async () => {
    const { client, session } = await setup(kind);
    const noHandler = await session.request(testOpcode + 1, {}).catch((error: unknown) => error);
    expect(noHandler).toMatchObject({ code: 'NO_HANDLER', retriable: false });
    client.onServerRequest(testOpcode, () => {
      throw new Error('the database is down');
    });
    const failed = await session.request(testOpcode, {}).catch((error: unknown) => error);
    expect(failed).toMatchObject({ code: 'HANDLER_FAILED', retriable: true });
    expect((failed as Error).message).toContain('the database is down');
    client.onServerRequest(testOpcode + 2, () => ({ header: [1, 2] as unknown as Record<string, unknown> }));
    expect(await codeOf(session.request(testOpcode + 2, {}))).toBe('HANDLER_FAILED');
    // The connection is fine after all that.
    expect(await client.admin.listTopics()).toEqual([]);
  });

  it('times out with TIMEOUT when the handler does not answer in time', async () => {
    const { client, session } = await setup(kind);
    const release = deferred();
    client.onServerRequest(testOpcode, async () => {
      await release.promise;
      return { header: {} };
    });
    const error = await session
      .request(testOpcode, {}, undefined, { timeoutMs: 20 })
      .catch((caught) => caught);
    expect(error).toMatchObject({ code: 'TIMEOUT' });
    // The late answer arrives and is dropped; the session goes on.
    release.resolve();
    expect((await session.request(Opcode.ping, {})).header).toEqual({});
    expect(session.pendingRequestCount).toBe(0);
  });

  it('fails pending requests with CONNECTION_CLOSED when the client closes', async () => {
    const { client, session } = await setup(kind);
    const started = deferred();
    client.onServerRequest(testOpcode, () => {
      started.resolve();
      return new Promise(() => undefined); // never answers
    });
    const pending = codeOf(session.request(testOpcode, {}));
    await started.promise;
    await client.close();
    expect(await pending).toBe('CONNECTION_CLOSED');
    expect(await codeOf(session.request(Opcode.ping, {}))).toBe('CONNECTION_CLOSED');
  });

  it(`bounds requests awaiting answers at ${serverRequestsPerSessionMax} per session`, async () => {
    const { client, session } = await setup(kind);
    const release = deferred();
    let running = 0;
    client.onServerRequest(testOpcode, async () => {
      running++;
      await release.promise;
      return { header: { done: true } };
    });
    const pending = Array.from({ length: serverRequestsPerSessionMax }, () =>
      session.request(testOpcode, {}),
    );
    expect(await codeOf(session.request(testOpcode, {}))).toBe('TOO_MANY_REQUESTS');
    await waitFor(() => running === serverRequestsPerSessionMax);
    release.resolve();
    const answers = await Promise.all(pending);
    expect(answers.every((answer) => (answer.header as { done: boolean }).done)).toBe(true);
    expect(session.pendingRequestCount).toBe(0);
  });

  it('one handler per opcode; PING cannot be replaced', async () => {
    const { client } = await setup(kind);
    client.onServerRequest(testOpcode, () => undefined);
    expect(() => client.onServerRequest(testOpcode, () => undefined)).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
    expect(() => client.onServerRequest(Opcode.ping, () => undefined)).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
  });
});

describe('server requests and requests together', () => {
  it('client requests and server requests interleave on one connection without mixing ids', async () => {
    const { broker, client, session } = await setup('websocket');
    await client.admin.createTopic('mixed', { partitions: 2 });
    const producer = client.producer({ lingerMs: 0 });
    let asked = 0;
    client.onServerRequest(testOpcode, async (request) => {
      asked++;
      // A handler may itself use the connection.
      await producer.send('mixed', { value: `from-handler-${(request.header as { n: number }).n}` });
      return { header: { n: (request.header as { n: number }).n } };
    });
    const serverRequests = Array.from({ length: 20 }, (_, n) => session.request(testOpcode, { n }));
    const sends = Array.from({ length: 50 }, (_, n) => producer.send('mixed', { value: `plain-${n}` }));
    const answers = await Promise.all(serverRequests);
    await Promise.all(sends);
    expect(answers.map((answer) => (answer.header as { n: number }).n)).toEqual(
      Array.from({ length: 20 }, (_, n) => n),
    );
    expect(asked).toBe(20);
    const total = broker.topics
      .describe('mixed')
      .partitions.reduce((sum, partition) => sum + partition.logEndOffset, 0);
    expect(total).toBe(70);
  });
});

describe('ServerRequestHandlers', () => {
  it(`answers TOO_MANY_REQUESTS past ${serverRequestsPerSessionMax} handlers running at once`, async () => {
    const handlers = new ServerRequestHandlers();
    const release = deferred();
    handlers.register(testOpcode, async () => {
      await release.promise;
      return undefined;
    });
    const request = (correlationId: number): Frame => ({
      opcode: testOpcode,
      flags: FrameFlags.serverRequest,
      correlationId,
      header: {},
      body: new Uint8Array(0),
    });
    const running = Array.from({ length: serverRequestsPerSessionMax }, (_, i) =>
      handlers.answer(request(i + 1)),
    );
    const refused = await handlers.answer(request(1000));
    expect(refused).toMatchObject({
      correlationId: 1000,
      flags: FrameFlags.serverRequest | FrameFlags.response | FrameFlags.error,
      header: { code: 'TOO_MANY_REQUESTS' },
    });
    // PING is answered whatever runs.
    expect((await handlers.answer({ ...request(1001), opcode: Opcode.ping })).flags).toBe(
      FrameFlags.serverRequest | FrameFlags.response,
    );
    release.resolve();
    const answers = await Promise.all(running);
    expect(answers.every((answer) => answer.flags === (FrameFlags.serverRequest | FrameFlags.response))).toBe(
      true,
    );
    expect(() => handlers.register(-1, () => undefined)).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
  });
});
