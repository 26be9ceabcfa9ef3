/**
 * Transport to a broker in this process: each request is a Frame object handed to the same
 * dispatch() the WebSocket server calls, with no serialization, so validation, answers and error
 * codes are exactly those of the network path. The produce body is the caller's batch (the broker
 * copies it); a fetch body is the broker's result (views of its log), kept by reference.
 *
 * The broker is anything with the BrokerApi methods (detected by duck typing: this module must not
 * import the engine, see src/client/index.ts). There is no connection to lose: requests fail only
 * with the broker's errors, TIMEOUT, or CONNECTION_CLOSED (not retriable) after close(), which also
 * ends pending long-polls at once.
 *
 * Session: the transport opens one broker session (`api.sessions.open`) and says HELLO in it, like a
 * connection; close() closes it (its close hooks have run when close() resolves). Should the broker
 * end the session (it is closing), disconnect listeners run and the next request opens a new one
 * (failing with BROKER_CLOSING while the broker is closed). Server requests of the session are
 * answered by the handlers registered with onServerRequest, asynchronously, the frames passed by
 * reference (no serialization).
 */

import { setMaxListeners } from 'node:events';
import { assert } from '../assert.js';
import { InvalidArgumentError, SpillwayError } from '../errors.js';
import type { BrokerApi } from '../protocol/broker-api.js';
import { dispatch } from '../protocol/dispatch.js';
import { type Frame, FrameFlags } from '../protocol/frame.js';
import { Opcode } from '../protocol/opcodes.js';
import { internalPrincipal, type SessionEndpoint, type SessionTransport } from '../protocol/session.js';
import { abortError, RequestWindow } from './request-window.js';
import { type ServerRequestHandler, ServerRequestHandlers } from './server-requests.js';
import type {
  DisconnectListener,
  HelloInfo,
  RequestOptions,
  Transport,
  TransportResponse,
} from './transport.js';
import {
  checkNegotiatedVersion,
  closedError,
  errorFromHeader,
  helloRequest,
  parseHelloResponse,
} from './wire.js';

export interface InProcessTransportOptions {
  clientId?: string;
  /** Reported by HELLO. Default: the broker's `version` property if it has one, else 'in-process'. */
  brokerVersion?: string;
  /** A request not answered within this is rejected with TIMEOUT. Default 30 000. */
  requestTimeoutMs?: number;
  /** Requests in flight at once (default: the broker's HELLO value); more wait, in order. */
  inFlightRequestsMax?: number;
  /** Requests waiting for a slot before further ones fail with BACKPRESSURE. Default 100 000. */
  queuedRequestsMax?: number;
}

const emptyBody = new Uint8Array(0);

function isService(value: unknown, methods: readonly string[]): boolean {
  if (value === null || typeof value !== 'object') return false;
  const service = value as Record<string, unknown>;
  return methods.every((method) => typeof service[method] === 'function');
}

/** True when `value` looks like a broker engine (has the BrokerApi methods). */
export function isBrokerApi(value: unknown): value is BrokerApi {
  if (value === null || typeof value !== 'object') return false;
  const api = value as Record<string, unknown>;
  return (
    isService(api['topics'], ['create', 'describe']) &&
    isService(api['messages'], ['produce', 'fetch']) &&
    isService(api['sessions'], ['open'])
  );
}

export class InProcessTransport implements Transport {
  private readonly api: BrokerApi;
  private readonly brokerVersion: string;
  private readonly requestTimeoutMs: number;
  private readonly window: RequestWindow;
  /** Aborted by close(): ends long-polls in the broker and rejects what is pending. */
  private readonly lifetime = new AbortController();
  private helloInfo: HelloInfo | null = null;
  private nextCorrelationId = 1;
  private readonly clientId: string | undefined;
  private readonly inFlightRequestsWanted: number | undefined;
  /** The broker session requests run in; null before the first and after the broker ended one. */
  private session: SessionEndpoint | null = null;
  private opening: Promise<SessionEndpoint> | null = null;
  private readonly serverRequests = new ServerRequestHandlers();
  private readonly disconnectListeners = new Set<DisconnectListener>();

  private constructor(api: BrokerApi, options: InProcessTransportOptions) {
    this.api = api;
    this.clientId = options.clientId;
    this.inFlightRequestsWanted = options.inFlightRequestsMax;
    const version = (api as unknown as { version?: unknown }).version;
    this.brokerVersion = options.brokerVersion ?? (typeof version === 'string' ? version : 'in-process');
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    if (!Number.isSafeInteger(this.requestTimeoutMs) || this.requestTimeoutMs < 1) {
      throw new InvalidArgumentError(
        `requestTimeoutMs must be a positive integer, got ${this.requestTimeoutMs}`,
      );
    }
    this.window = new RequestWindow(options.inFlightRequestsMax ?? 1, options.queuedRequestsMax ?? 100_000);
    // Every pending request listens to it (bounded by the window), far more than the default warning's 10.
    setMaxListeners(0, this.lifetime.signal);
  }

  static async connect(api: BrokerApi, options: InProcessTransportOptions = {}): Promise<InProcessTransport> {
    if (!isBrokerApi(api)) throw new InvalidArgumentError('not a broker: it lacks the BrokerApi services');
    const transport = new InProcessTransport(api, options);
    await transport.ensureSession();
    return transport;
  }

  get hello(): HelloInfo {
    assert(this.helloInfo !== null, 'InProcessTransport.hello before connect');
    return this.helloInfo;
  }

  get closed(): boolean {
    return this.lifetime.signal.aborted;
  }

  /** Called when the broker ends this client's session (it is closing). */
  onDisconnect(listener: DisconnectListener): () => void {
    this.disconnectListeners.add(listener);
    return () => this.disconnectListeners.delete(listener);
  }

  onServerRequest(opcode: number, handler: ServerRequestHandler): () => void {
    return this.serverRequests.register(opcode, handler);
  }

  /** The broker session requests run in now (null before connect and after the broker ended it). */
  get sessionId(): number | null {
    return this.session?.id ?? null;
  }

  async request(
    opcode: number,
    header: unknown,
    body: Uint8Array = emptyBody,
    options?: RequestOptions,
  ): Promise<TransportResponse> {
    if (this.closed) throw closedError('the client');
    const signal = options?.signal;
    if (!this.window.tryAcquire()) await this.window.wait(signal);
    try {
      if (this.closed) throw closedError('the client');
      const session = this.session ?? (await this.ensureSession());
      return await this.call(
        session,
        opcode,
        header,
        body,
        options?.timeoutMs ?? this.requestTimeoutMs,
        signal,
      );
    } finally {
      this.window.release();
    }
  }

  /** Rejects what is pending, then closes the session: its close hooks have run when this resolves. */
  async close(): Promise<void> {
    if (this.closed) return;
    const error = closedError('the client');
    this.window.rejectQueued(error);
    this.lifetime.abort(error);
    if (this.opening) await this.opening.catch(() => undefined);
    const session = this.session;
    this.session = null;
    if (session) await session.close();
  }

  private ensureSession(): Promise<SessionEndpoint> {
    if (this.session) return Promise.resolve(this.session);
    if (!this.opening) {
      this.opening = this.openSession().finally(() => {
        this.opening = null;
      });
    }
    return this.opening;
  }

  /** Opens a broker session and says HELLO in it. */
  private async openSession(): Promise<SessionEndpoint> {
    const transport: SessionTransport = {
      sendServerRequest: (frame) => {
        if (this.closed) throw closedError('the client');
        // Not from inside session.request(): the handler starts on a later microtask.
        queueMicrotask(() => {
          void this.serverRequests.answer(frame).then((answer) => session.receiveResponse(answer));
        });
      },
      disconnect: (reason) => this.sessionEnded(session, reason),
    };
    const session = this.api.sessions.open({
      kind: 'in-process',
      transport,
      principal: internalPrincipal,
      ...(this.clientId === undefined ? {} : { clientId: this.clientId }),
    });
    try {
      const response = await this.call(
        session,
        Opcode.hello,
        helloRequest(this.clientId),
        emptyBody,
        this.requestTimeoutMs,
        undefined,
      );
      const hello = parseHelloResponse(response.header);
      checkNegotiatedVersion(hello, 'the in-process broker');
      if (this.closed) throw closedError('the client');
      this.helloInfo = hello;
      this.window.setLimit(
        Math.min(this.inFlightRequestsWanted ?? hello.inFlightRequestsMax, hello.inFlightRequestsMax),
      );
    } catch (error) {
      await session.close();
      throw error;
    }
    this.session = session;
    return session;
  }

  /** The broker ended a session (closing): the next request opens another one. */
  private sessionEnded(session: SessionEndpoint, reason: string): void {
    if (this.session !== session) return;
    this.session = null;
    if (this.closed) return;
    const error = new SpillwayError('CONNECTION_CLOSED', `the broker ended the session: ${reason}`, {
      retriable: true,
    });
    for (const listener of this.disconnectListeners) listener(error);
  }

  private call(
    session: SessionEndpoint,
    opcode: number,
    header: unknown,
    body: Uint8Array,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<TransportResponse> {
    const lifetime = this.lifetime.signal;
    const combined = signal ? AbortSignal.any([lifetime, signal]) : lifetime;
    if (combined.aborted) return Promise.reject(abortError(combined));
    const correlationId = this.nextCorrelationId;
    this.nextCorrelationId = (correlationId + 1) >>> 0;
    const frame: Frame = { opcode, flags: 0, correlationId, header, body };
    return new Promise<TransportResponse>((resolve, reject) => {
      let settled = false;
      const finish = (): void => {
        settled = true;
        clearTimeout(timer);
        combined.removeEventListener('abort', onAbort);
      };
      const onAbort = (): void => {
        if (settled) return;
        finish();
        reject(abortError(combined));
      };
      const timer = setTimeout(() => {
        if (settled) return;
        finish();
        reject(
          new SpillwayError(
            'TIMEOUT',
            `in-process request (opcode ${opcode}) not answered within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      combined.addEventListener('abort', onAbort, { once: true });
      dispatch(this.api, frame, { session, brokerVersion: this.brokerVersion, signal: combined }).then(
        (answer) => {
          if (settled) return;
          finish();
          if ((answer.flags & FrameFlags.error) !== 0) reject(errorFromHeader(answer.header));
          else resolve({ header: answer.header, body: answer.body });
        },
        (error: unknown) => {
          // dispatch() never throws by contract; keep the promise settled if it ever does.
          if (settled) return;
          finish();
          reject(error);
        },
      );
    });
  }
}
