/**
 * The broker's sessions (src/broker/session-registry.ts, broker-session.ts) without a network: a
 * front end here is a SessionTransport that keeps the frames it was given, and the test answers them
 * as a client would. The WebSocket and in-process front ends are tested in test/server/sessions and
 * test/client/server-requests.
 */
import { describe, expect, it, vi } from 'vitest';
import { SessionRegistry } from '../../src/broker/session-registry.js';
import { SpillwayError } from '../../src/errors.js';
import {
  serverRequestsPerSessionMax,
  serverRequestTimeoutMsMax,
  sessionCloseHooksMax,
  sessionCloseHooksWaitMs,
  sessionsMax,
} from '../../src/limits.js';
import { type Frame, FrameFlags } from '../../src/protocol/frame.js';
import { Opcode, protocolVersion } from '../../src/protocol/opcodes.js';
import type { Session, SessionEndpoint, SessionTransport } from '../../src/protocol/session.js';
import { openBroker, temporaryDirectory } from './helpers.js';

/** A front end that keeps what the session sends and records disconnects. */
class RecordingTransport implements SessionTransport {
  readonly sent: Frame[] = [];
  readonly disconnects: string[] = [];
  failWith: SpillwayError | null = null;

  sendServerRequest(frame: Frame): void {
    if (this.failWith) throw this.failWith;
    this.sent.push(frame);
  }

  disconnect(reason: string): void {
    this.disconnects.push(reason);
  }
}

function answerOf(request: Frame, header: unknown = {}, error = false): Frame {
  return {
    opcode: request.opcode,
    flags: FrameFlags.serverRequest | FrameFlags.response | (error ? FrameFlags.error : 0),
    correlationId: request.correlationId,
    header,
    body: new Uint8Array(0),
  };
}

function openV2(registry: SessionRegistry, transport = new RecordingTransport()) {
  const session = registry.open({ kind: 'websocket', transport });
  session.identify('client-a', protocolVersion);
  return { session, transport };
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

describe('sessions: identity and listing', () => {
  it('opens sessions with increasing ids, lists them with their client ids, forgets closed ones', async () => {
    const registry = new SessionRegistry();
    const a = registry.open({ kind: 'websocket', transport: new RecordingTransport() });
    const b = registry.open({ kind: 'in-process', transport: new RecordingTransport(), clientId: 'in-proc' });
    const c = registry.open({ kind: 'http', transport: null });
    expect([a.id, b.id, c.id]).toEqual([1, 2, 3]);
    expect([a.clientId, a.protocolVersion, a.principal, a.closed]).toEqual([null, 1, null, false]);
    a.identify('from-hello', 2);
    expect(registry.list()).toEqual([
      expect.objectContaining({ id: 1, kind: 'websocket', clientId: 'from-hello', protocolVersion: 2 }),
      expect.objectContaining({ id: 2, kind: 'in-process', clientId: 'in-proc', protocolVersion: 1 }),
      expect.objectContaining({ id: 3, kind: 'http', clientId: null, principal: null }),
    ]);
    expect(registry.get(2)).toBe(b);
    await b.close();
    expect(b.closed).toBe(true);
    expect(registry.get(2)).toBeUndefined();
    expect(registry.list().map((info) => info.id)).toEqual([1, 3]);
    expect(registry.count).toBe(2);
    // Ids are not reused.
    expect(registry.open({ kind: 'http', transport: null }).id).toBe(4);
  });

  it('refuses bad options and more than sessionsMax sessions', () => {
    const registry = new SessionRegistry();
    expect(() => registry.open({ kind: 'carrier-pigeon' as 'http', transport: null })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
    expect(() => registry.open({ kind: 'websocket', transport: {} as unknown as SessionTransport })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
    const opened: SessionEndpoint[] = [];
    for (let i = 0; i < sessionsMax; i++) opened.push(registry.open({ kind: 'http', transport: null }));
    expect(() => registry.open({ kind: 'http', transport: null })).toThrow(
      expect.objectContaining({ code: 'TOO_MANY_REQUESTS' }),
    );
    void opened[0]!.close();
    expect(registry.open({ kind: 'http', transport: null }).id).toBe(sessionsMax + 1);
  });

  it('the signal aborts at close with a CONNECTION_CLOSED reason, also when first read after close', async () => {
    const registry = new SessionRegistry();
    const early = registry.open({ kind: 'websocket', transport: new RecordingTransport() });
    const signal = early.signal;
    expect(signal.aborted).toBe(false);
    await early.close();
    expect(signal.aborted).toBe(true);
    expect(signal.reason).toMatchObject({ code: 'CONNECTION_CLOSED' });
    const late = registry.open({ kind: 'http', transport: null });
    await late.close();
    expect(late.signal.aborted).toBe(true);
  });
});

describe('sessions: close hooks', () => {
  it('run once, newest first, with the session; close is idempotent and waits for async hooks', async () => {
    const registry = new SessionRegistry();
    const session = registry.open({ kind: 'websocket', transport: new RecordingTransport() });
    const order: string[] = [];
    let seen: Session | undefined;
    session.onClose((closed) => {
      seen = closed;
      order.push('first');
    });
    session.onClose(async () => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      order.push('second (async)');
    });
    session.onClose(() => {
      order.push('third');
    });
    const closing = session.close();
    expect(session.close()).toBe(closing);
    await closing;
    expect(order).toEqual(['third', 'first', 'second (async)']);
    expect(seen).toBe(session);
    await session.close();
    expect(order).toHaveLength(3);
  });

  it('an unregistered hook does not run; one registered after close runs at once', async () => {
    const registry = new SessionRegistry();
    const session = registry.open({ kind: 'http', transport: null });
    const ran: string[] = [];
    const unregister = session.onClose(() => {
      ran.push('released early');
    });
    unregister();
    await session.close();
    expect(ran).toEqual([]);
    await new Promise<void>((resolve) => {
      session.onClose(() => {
        ran.push('late');
        resolve();
      });
    });
    expect(ran).toEqual(['late']);
  });

  it('hooks that throw or reject are reported and counted, and the others still run', async () => {
    const registry = new SessionRegistry();
    const reported: Array<[string, number]> = [];
    registry.onHookFailure = (error, session) => reported.push([(error as Error).message, session.id]);
    const session = registry.open({ kind: 'websocket', transport: new RecordingTransport() });
    let ran = 0;
    session.onClose(() => {
      ran++;
    });
    session.onClose(() => {
      throw new Error('sync boom');
    });
    session.onClose(async () => {
      throw new Error('async boom');
    });
    session.onClose(() => {
      ran++;
    });
    await session.close();
    expect(ran).toBe(2);
    expect(reported.sort()).toEqual([
      ['async boom', session.id],
      ['sync boom', session.id],
    ]);
    expect(registry.closeHookFailureCount).toBe(2);
  });

  it('close waits sessionCloseHooksWaitMs at most for a hook that never ends, and reports it', async () => {
    vi.useFakeTimers();
    try {
      const registry = new SessionRegistry();
      const reported: unknown[] = [];
      registry.onHookFailure = (error) => reported.push(error);
      const session = registry.open({ kind: 'http', transport: null });
      let quickRan = false;
      session.onClose(() => new Promise<void>(() => undefined));
      session.onClose(() => {
        quickRan = true;
      });
      let closed = false;
      const closing = session.close().then(() => {
        closed = true;
      });
      await vi.advanceTimersByTimeAsync(sessionCloseHooksWaitMs - 1);
      expect([quickRan, closed]).toEqual([true, false]);
      await vi.advanceTimersByTimeAsync(1);
      await closing;
      expect(reported).toEqual([expect.objectContaining({ code: 'TIMEOUT' })]);
      expect(registry.closeHookFailureCount).toBe(1);
    } finally {
      vi.useRealTimers();
    }
  });

  it('a reporter that throws does not stop the hooks', async () => {
    const registry = new SessionRegistry();
    registry.onHookFailure = () => {
      throw new Error('reporter down');
    };
    const session = registry.open({ kind: 'http', transport: null });
    let ran = false;
    session.onClose(() => {
      throw new Error('boom');
    });
    session.onClose(() => {
      ran = true;
    });
    await session.close();
    expect(ran).toBe(true);
  });

  it('holds at most sessionCloseHooksMax hooks (BACKPRESSURE), room is made by unregistering', () => {
    const registry = new SessionRegistry();
    const session = registry.open({ kind: 'http', transport: null });
    const unregisters = Array.from({ length: sessionCloseHooksMax }, () => session.onClose(() => undefined));
    expect(() => session.onClose(() => undefined)).toThrow(expect.objectContaining({ code: 'BACKPRESSURE' }));
    unregisters[0]!();
    expect(() => session.onClose(() => undefined)).not.toThrow();
    expect(() => session.onClose('no' as unknown as () => void)).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
  });

  it('closeAll tells every transport to disconnect, closes every session, then refuses new ones', async () => {
    const registry = new SessionRegistry();
    const transports = [new RecordingTransport(), new RecordingTransport()];
    const sessions = transports.map((transport) => registry.open({ kind: 'websocket', transport }));
    const closedIds: number[] = [];
    for (const session of sessions) session.onClose((closed) => void closedIds.push(closed.id));
    await registry.closeAll('the broker is closing');
    expect(transports.map((transport) => transport.disconnects)).toEqual([
      ['the broker is closing'],
      ['the broker is closing'],
    ]);
    expect(closedIds.sort()).toEqual(sessions.map((session) => session.id));
    expect(registry.count).toBe(0);
    expect(() => registry.open({ kind: 'http', transport: null })).toThrow(
      expect.objectContaining({ code: 'BROKER_CLOSING' }),
    );
  });
});

describe('sessions: server requests', () => {
  it('sends a serverRequest frame and resolves with the matching answer', async () => {
    const registry = new SessionRegistry();
    const { session, transport } = openV2(registry);
    expect(session.canRequest).toBe(true);
    const first = session.request(70, { question: 1 });
    const second = session.request(70, { question: 2 });
    expect(transport.sent.map((frame) => [frame.opcode, frame.flags, frame.header])).toEqual([
      [70, FrameFlags.serverRequest, { question: 1 }],
      [70, FrameFlags.serverRequest, { question: 2 }],
    ]);
    expect(session.pendingRequestCount).toBe(2);
    // Answers in any order, matched by correlation id.
    expect(session.receiveResponse(answerOf(transport.sent[1]!, { answer: 2 }))).toBe(true);
    expect(session.receiveResponse(answerOf(transport.sent[0]!, { answer: 1 }))).toBe(true);
    expect((await first).header).toEqual({ answer: 1 });
    expect((await second).header).toEqual({ answer: 2 });
    // An answer again, or to an id never used: nothing pending, dropped.
    expect(session.receiveResponse(answerOf(transport.sent[0]!))).toBe(false);
    expect(session.receiveResponse({ ...answerOf(transport.sent[0]!), correlationId: 999 })).toBe(false);
  });

  it("rejects with the client's error answer, and PROTOCOL_ERROR for an answer of another opcode", async () => {
    const registry = new SessionRegistry();
    const { session, transport } = openV2(registry);
    const refused = session.request(70, {});
    session.receiveResponse(
      answerOf(transport.sent[0]!, { code: 'NO_HANDLER', message: 'none', retriable: false }, true),
    );
    expect(await codeOf(refused)).toBe('NO_HANDLER');
    const mismatched = session.request(70, {});
    session.receiveResponse({ ...answerOf(transport.sent[1]!), opcode: 71 });
    expect(await codeOf(mismatched)).toBe('PROTOCOL_ERROR');
    const failed = session.request(70, {});
    expect(
      session.failRequest(transport.sent[2]!.correlationId, new SpillwayError('PROTOCOL_ERROR', 'bad')),
    ).toBe(true);
    expect(await codeOf(failed)).toBe('PROTOCOL_ERROR');
    expect(session.failRequest(12345, new SpillwayError('PROTOCOL_ERROR', 'bad'))).toBe(false);
  });

  it('times out with TIMEOUT; the late answer is dropped', async () => {
    const registry = new SessionRegistry();
    const { session, transport } = openV2(registry);
    const error = await session
      .request(70, {}, undefined, { timeoutMs: 5 })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(SpillwayError);
    expect(error).toMatchObject({ code: 'TIMEOUT', retriable: true });
    expect(session.pendingRequestCount).toBe(0);
    expect(session.receiveResponse(answerOf(transport.sent[0]!))).toBe(false);
  });

  it('fails pending requests with CONNECTION_CLOSED at close, and later ones at once', async () => {
    const registry = new SessionRegistry();
    const { session } = openV2(registry);
    const pending = [session.request(70, {}), session.request(71, {})];
    await session.close();
    expect(await Promise.all(pending.map(codeOf))).toEqual(['CONNECTION_CLOSED', 'CONNECTION_CLOSED']);
    expect(await codeOf(session.request(70, {}))).toBe('CONNECTION_CLOSED');
    expect(session.canRequest).toBe(false);
  });

  it('refuses sessions that cannot carry them: version 1 (no HELLO, or HELLO 1) and HTTP', async () => {
    const registry = new SessionRegistry();
    const transport = new RecordingTransport();
    const noHello = registry.open({ kind: 'websocket', transport });
    expect(noHello.canRequest).toBe(false);
    expect(await codeOf(noHello.request(Opcode.ping, {}))).toBe('UNSUPPORTED_VERSION');
    noHello.identify(null, 1);
    expect(await codeOf(noHello.request(Opcode.ping, {}))).toBe('UNSUPPORTED_VERSION');
    expect(transport.sent).toHaveLength(0);
    const http = registry.open({ kind: 'http', transport: null });
    http.identify(null, protocolVersion);
    expect(await codeOf(http.request(Opcode.ping, {}))).toBe('UNSUPPORTED_VERSION');
  });

  it('bounds requests awaiting answers per session (TOO_MANY_REQUESTS), and validates arguments', async () => {
    const registry = new SessionRegistry();
    const { session, transport } = openV2(registry);
    const pending = Array.from({ length: serverRequestsPerSessionMax }, () => session.request(70, {}));
    expect(await codeOf(session.request(70, {}))).toBe('TOO_MANY_REQUESTS');
    expect(transport.sent).toHaveLength(serverRequestsPerSessionMax);
    session.receiveResponse(answerOf(transport.sent[0]!));
    await pending[0];
    // Room again.
    const more = session.request(70, {});
    session.receiveResponse(answerOf(transport.sent.at(-1)!));
    await more;
    for (const timeoutMs of [0, -1, 1.5, serverRequestTimeoutMsMax + 1]) {
      expect(await codeOf(session.request(70, {}, undefined, { timeoutMs }))).toBe('INVALID_ARGUMENT');
    }
    expect(await codeOf(session.request(256, {}))).toBe('INVALID_ARGUMENT');
    await session.close();
    await Promise.allSettled(pending);
  });

  it('correlation ids are distinct among pending requests and never 0', async () => {
    const registry = new SessionRegistry();
    const { session, transport } = openV2(registry);
    const pending = Array.from({ length: serverRequestsPerSessionMax }, () => session.request(70, {}));
    const ids = transport.sent.map((frame) => frame.correlationId);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).not.toContain(0);
    await session.close();
    await Promise.allSettled(pending);
  });

  it('a transport that cannot send fails the request with its error', async () => {
    const registry = new SessionRegistry();
    const { session, transport } = openV2(registry);
    transport.failWith = new SpillwayError('CONNECTION_CLOSED', 'gone');
    expect(await codeOf(session.request(70, {}))).toBe('CONNECTION_CLOSED');
    expect(session.pendingRequestCount).toBe(0);
  });

  it('ping(id) resolves with the round trip; an unknown id is INVALID_ARGUMENT', async () => {
    const registry = new SessionRegistry();
    const { session, transport } = openV2(registry);
    const ping = registry.ping(session.id);
    expect(transport.sent[0]).toMatchObject({ opcode: Opcode.ping, flags: FrameFlags.serverRequest });
    session.receiveResponse(answerOf(transport.sent[0]!));
    expect(await ping).toBeGreaterThanOrEqual(0);
    expect(await codeOf(registry.ping(9999))).toBe('INVALID_ARGUMENT');
  });
});

describe('Broker sessions', () => {
  it('broker.close() disconnects and closes the open sessions (hooks run) before it resolves', async () => {
    const broker = await openBroker(temporaryDirectory());
    const failures: unknown[] = [];
    broker.sessions.onHookFailure = (error) => failures.push(error);
    const transport = new RecordingTransport();
    const session = broker.sessions.open({ kind: 'websocket', transport });
    session.identify('c', protocolVersion);
    const released: number[] = [];
    session.onClose((closed) => {
      released.push(closed.id);
    });
    session.onClose(() => {
      throw new Error('a failing hook does not stop broker.close()');
    });
    const pending = session.request(70, {});
    await broker.close();
    expect(transport.disconnects).toEqual(['the broker is closing']);
    expect(session.closed).toBe(true);
    expect(released).toEqual([session.id]);
    expect(failures).toHaveLength(1);
    expect(await codeOf(pending)).toBe('CONNECTION_CLOSED');
    expect(() => broker.sessions.open({ kind: 'http', transport: null })).toThrow(
      expect.objectContaining({ code: 'BROKER_CLOSING' }),
    );
  });
});
