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
 */

import { setMaxListeners } from 'node:events';
import { assert } from '../assert.js';
import { InvalidArgumentError, SpillwayError } from '../errors.js';
import type { BrokerApi } from '../protocol/broker-api.js';
import { dispatch } from '../protocol/dispatch.js';
import { type Frame, FrameFlags } from '../protocol/frame.js';
import type { HelloRequest } from '../protocol/messages.js';
import { Opcode, protocolVersion } from '../protocol/opcodes.js';
import { abortError, RequestWindow } from './request-window.js';
import type {
  DisconnectListener,
  HelloInfo,
  RequestOptions,
  Transport,
  TransportResponse,
} from './transport.js';
import { closedError, errorFromHeader, parseHelloResponse } from './wire.js';

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
  return isService(api['topics'], ['create', 'describe']) && isService(api['messages'], ['produce', 'fetch']);
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

  private constructor(api: BrokerApi, options: InProcessTransportOptions) {
    this.api = api;
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
    const request: HelloRequest = { protocolVersion };
    if (options.clientId !== undefined) request.clientId = options.clientId;
    const response = await transport.call(
      Opcode.hello,
      request,
      emptyBody,
      transport.requestTimeoutMs,
      undefined,
    );
    const hello = parseHelloResponse(response.header);
    transport.helloInfo = hello;
    transport.window.setLimit(
      Math.min(options.inFlightRequestsMax ?? hello.inFlightRequestsMax, hello.inFlightRequestsMax),
    );
    return transport;
  }

  get hello(): HelloInfo {
    assert(this.helloInfo !== null, 'InProcessTransport.hello before connect');
    return this.helloInfo;
  }

  get closed(): boolean {
    return this.lifetime.signal.aborted;
  }

  onDisconnect(_listener: DisconnectListener): () => void {
    // An in-process broker has no connection to lose.
    return () => undefined;
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
      return await this.call(opcode, header, body, options?.timeoutMs ?? this.requestTimeoutMs, signal);
    } finally {
      this.window.release();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    const error = closedError('the client');
    this.window.rejectQueued(error);
    this.lifetime.abort(error);
  }

  private call(
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
      dispatch(this.api, frame, { brokerVersion: this.brokerVersion, signal: combined }).then(
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
