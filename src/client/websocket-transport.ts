/**
 * Transport to a broker over one WebSocket connection (websocket-connection.ts, the client's own
 * WebSocket: its receive path reads a large answer straight into a buffer of its own, see there),
 * one binary message per frame
 * (src/protocol/frame.ts). Many requests are pipelined on the connection and matched to their
 * answers by correlation id; at most the broker's `inFlightRequestsMax` (from HELLO, or less if the
 * caller asks) are on the wire, the rest wait in a bounded FIFO (RequestWindow).
 *
 * Connection life: connect() opens the socket and sends HELLO with our protocolVersion; it fails
 * if the first connection fails. When a live connection drops, every request on it rejects with
 * CONNECTION_CLOSED (retriable: the caller decides whether to send again; a produce may or may not
 * have been appended) and disconnect listeners run. Nothing reconnects in the background: the next
 * request reconnects, and after failed attempts the next one first waits an exponential backoff
 * (reconnectBackoffMs doubling up to reconnectBackoffMaxMs), so a dead broker is not hammered.
 *
 * Server requests (protocol version 2): a frame with the serverRequest flag is a request of the
 * broker, answered on the socket it came on by the handlers registered with onServerRequest
 * (client/server-requests.ts); answers to a socket that closed meanwhile are dropped. The broker
 * answering anything with the serverRequest flag and response set is a protocol violation.
 *
 * Frames are sent as one WebSocket message with a zero masking key: a client must mask, and masking
 * would otherwise copy every payload to XOR it; a zero key keeps the bytes as they are (this
 * protocol never passes through the HTTP caches that masking protects). The caller's body is not
 * modified, nor copied when it is `fragmentBodyBytesMin` or longer: the message is then the prefix
 * and the body as two fragments (the broker joins fragments into one message). The messages sent in
 * one turn of the event loop (up to the end of its microtasks) leave in one write: the first corks the
 * TCP socket, a process.nextTick uncorks it. Messages are received as their fragments: an answer the
 * broker sent as prefix + body fragments (server/connection.ts) is decoded with the body fragment as
 * it is (a buffer of its own, never reused: views into it stay valid), not joined into a copy first. Not for concurrent use from several threads (nothing in Node is).
 */

import { assert } from '../assert.js';
import { InvalidArgumentError, SpillwayError } from '../errors.js';
import { frameBytesMax } from '../limits.js';
import {
  decodeFrameFragments,
  encodeFrame,
  encodeFrameParts,
  type Frame,
  FrameFlags,
  framePrefixBytes,
} from '../protocol/frame.js';
import { Opcode } from '../protocol/opcodes.js';
import { abortError, RequestWindow } from './request-window.js';
import {
  type ServerRequestHandler,
  ServerRequestHandlers,
  serverRequestErrorAnswer,
} from './server-requests.js';
import type {
  DisconnectListener,
  HelloInfo,
  RequestOptions,
  Transport,
  TransportResponse,
} from './transport.js';
import { WebSocketConnection } from './websocket-connection.js';
import {
  checkNegotiatedVersion,
  closedError,
  errorFromHeader,
  helloRequest,
  parseHelloResponse,
} from './wire.js';

export interface WebSocketTransportOptions {
  /** Sent in HELLO; shows in broker logs. */
  clientId?: string;
  /** Sent in HELLO: the principal's token when the broker runs with authentication (docs/SECURITY.md). */
  token?: string;
  /**
   * wss://: certificate authorities to trust (PEM) instead of Node's default list, for a broker with
   * a self-signed or private certificate. NODE_EXTRA_CA_CERTS works too.
   */
  ca?: string | Buffer | Array<string | Buffer>;
  /** A request not answered within this is rejected with TIMEOUT (retriable). Default 30 000. */
  requestTimeoutMs?: number;
  /** Opening the socket plus HELLO. Default 10 000. */
  connectTimeoutMs?: number;
  /** First wait before reconnecting after a failed attempt; doubles per failure. Default 100. */
  reconnectBackoffMs?: number;
  /** Longest wait between reconnect attempts. Default 5 000. */
  reconnectBackoffMaxMs?: number;
  /** Requests on the wire at once; the broker's HELLO value if lower. Default: the broker's (1024). */
  inFlightRequestsMax?: number;
  /** Requests waiting for an in-flight slot before further ones fail with BACKPRESSURE. Default 100 000. */
  queuedRequestsMax?: number;
}

export const webSocketTransportDefaults = {
  requestTimeoutMs: 30_000,
  connectTimeoutMs: 10_000,
  reconnectBackoffMs: 100,
  reconnectBackoffMaxMs: 5_000,
  queuedRequestsMax: 100_000,
} as const;

interface PendingRequest {
  /** The connection the request went out on: only its loss rejects the request. */
  socket: WebSocketConnection;
  resolve: (response: TransportResponse) => void;
  reject: (error: unknown) => void;
  timer: NodeJS.Timeout | undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
  /** RequestOptions.bodyBuffer of the request, or undefined. */
  bodyBuffer: ((bytes: number) => Buffer | null) | undefined;
}

/**
 * Bodies at least this long go out as a WebSocket fragment of their own after the prefix fragment
 * (the broker's uWS joins a message's fragments before handing it over), instead of being copied
 * behind the prefix into a new buffer. Smaller ones are joined: the copy is cheap and comes from
 * Buffer's shared pool. Why: at 16 KiB per message the joined copy was a new 16 KiB ArrayBuffer per
 * request, and the client ran a major GC every 0.3-0.75 s at 1,000 msg/s (0 at 4 KiB); each pause
 * delays every message in flight (issue 15, latency).
 */
export const fragmentBodyBytesMin = 4096;

function positiveInteger(value: number | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new InvalidArgumentError(`${name} must be a positive integer, got ${value}`);
  }
  return value;
}

export class WebSocketTransport implements Transport {
  readonly url: string;
  /** A body answered was written out whole before the answer (one socket, in order): reusable. */
  readonly bodyReusableAfterAnswer = true;
  private readonly clientId: string | undefined;
  private readonly token: string | undefined;
  private readonly ca: string | Buffer | Array<string | Buffer> | undefined;
  private readonly requestTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly reconnectBackoffMs: number;
  private readonly reconnectBackoffMaxMs: number;
  private readonly inFlightRequestsWanted: number | undefined;
  private readonly window: RequestWindow;
  private readonly pending = new Map<number, PendingRequest>();
  private readonly disconnectListeners = new Set<DisconnectListener>();
  private readonly serverRequests = new ServerRequestHandlers();
  /** Sockets whose loss was handled (dropSocket, then the 'close' event, must not do it twice). */
  /** Sockets whose close was handled, with the error their requests failed with. */
  private readonly closedSockets = new WeakMap<WebSocketConnection, SpillwayError>();
  private socket: WebSocketConnection | null = null;
  private connecting: Promise<WebSocketConnection> | null = null;
  private nextCorrelationId = 1;
  private failedAttempts = 0;
  private nextAttemptAtMs = 0;
  private helloInfo: HelloInfo | null = null;
  private isClosed = false;
  /** The socket corked until the end of this turn (sendMessage), or null. */
  private corked: WebSocketConnection['socket'] | null = null;
  private readonly uncorkTurn = (): void => {
    const raw = this.corked;
    this.corked = null;
    raw?.uncork();
  };

  private constructor(url: string, options: WebSocketTransportOptions) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new InvalidArgumentError(`'${url}' is not a URL (expected ws://host:port)`);
    }
    if (parsed.protocol === 'http:' || parsed.protocol === 'https:') {
      // The broker serves both on one port: http(s)://host:port means the same broker.
      parsed.protocol = parsed.protocol === 'https:' ? 'wss:' : 'ws:';
      url = parsed.toString();
    }
    if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') {
      throw new InvalidArgumentError(`broker URL '${url}' must start with ws:// or wss://`);
    }
    if (options.token !== undefined && (typeof options.token !== 'string' || options.token === '')) {
      throw new InvalidArgumentError('token must be a non-empty string');
    }
    const defaults = webSocketTransportDefaults;
    this.url = url;
    this.clientId = options.clientId;
    this.token = options.token;
    this.ca = options.ca;
    this.requestTimeoutMs = positiveInteger(
      options.requestTimeoutMs,
      'requestTimeoutMs',
      defaults.requestTimeoutMs,
    );
    this.connectTimeoutMs = positiveInteger(
      options.connectTimeoutMs,
      'connectTimeoutMs',
      defaults.connectTimeoutMs,
    );
    this.reconnectBackoffMs = positiveInteger(
      options.reconnectBackoffMs,
      'reconnectBackoffMs',
      defaults.reconnectBackoffMs,
    );
    this.reconnectBackoffMaxMs = positiveInteger(
      options.reconnectBackoffMaxMs,
      'reconnectBackoffMaxMs',
      defaults.reconnectBackoffMaxMs,
    );
    this.inFlightRequestsWanted =
      options.inFlightRequestsMax === undefined
        ? undefined
        : positiveInteger(options.inFlightRequestsMax, 'inFlightRequestsMax', 1);
    const queuedMax = positiveInteger(
      options.queuedRequestsMax,
      'queuedRequestsMax',
      defaults.queuedRequestsMax,
    );
    // One slot until HELLO tells the broker's bound (requests made before wait for the connection anyway).
    this.window = new RequestWindow(this.inFlightRequestsWanted ?? 1, queuedMax);
  }

  /** Opens the connection and says HELLO. Rejects if the broker cannot be reached or refuses. */
  static async connect(url: string, options: WebSocketTransportOptions = {}): Promise<WebSocketTransport> {
    const transport = new WebSocketTransport(url, options);
    await transport.ensureConnected();
    return transport;
  }

  get hello(): HelloInfo {
    assert(this.helloInfo !== null, 'WebSocketTransport.hello before the first connection');
    return this.helloInfo;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Whether a connection is open now. */
  get connected(): boolean {
    return this.socket !== null;
  }

  onDisconnect(listener: DisconnectListener): () => void {
    this.disconnectListeners.add(listener);
    return () => this.disconnectListeners.delete(listener);
  }

  onServerRequest(opcode: number, handler: ServerRequestHandler): () => void {
    return this.serverRequests.register(opcode, handler);
  }

  async request(
    opcode: number,
    header: unknown,
    body?: Uint8Array,
    options?: RequestOptions,
  ): Promise<TransportResponse> {
    if (this.isClosed) throw closedError('the client');
    const signal = options?.signal;
    if (!this.window.tryAcquire()) await this.window.wait(signal);
    try {
      if (this.isClosed) throw closedError('the client');
      const socket = this.socket ?? (await this.ensureConnected());
      return await this.send(
        socket,
        opcode,
        header,
        body,
        options?.timeoutMs ?? this.requestTimeoutMs,
        signal,
        options?.bodyBuffer,
      );
    } finally {
      this.window.release();
    }
  }

  async close(): Promise<void> {
    if (this.isClosed) return;
    this.isClosed = true;
    const error = closedError('the client');
    this.window.rejectQueued(error);
    this.rejectPending(error);
    if (this.connecting) await this.connecting.catch(() => undefined);
    const socket = this.socket;
    this.socket = null;
    if (socket) await closeSocket(socket);
  }

  private send(
    socket: WebSocketConnection,
    opcode: number,
    header: unknown,
    body: Uint8Array | undefined,
    timeoutMs: number,
    signal: AbortSignal | undefined,
    bodyBuffer?: (bytes: number) => Buffer | null,
  ): Promise<TransportResponse> {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    // A socket already gone (e.g. closed in the read that opened it) answers nothing: fail at once.
    const gone = this.closedSockets.get(socket);
    if (gone !== undefined) return Promise.reject(gone);
    const correlationId = this.takeCorrelationId();
    // A large body goes as the second fragment of the message, as it is; a small one is joined.
    const parts =
      body !== undefined && body.length >= fragmentBodyBytesMin
        ? encodeFrameParts({ opcode, flags: 0, correlationId, header, body })
        : null;
    const bytes = parts === null ? encodeFrame({ opcode, flags: 0, correlationId, header, body }) : null;
    return new Promise<TransportResponse>((resolve, reject) => {
      const entry: PendingRequest = {
        socket,
        resolve,
        reject,
        timer: undefined,
        signal,
        onAbort: undefined,
        bodyBuffer,
      };
      entry.timer = setTimeout(() => {
        if (this.pending.get(correlationId) !== entry) return;
        this.settle(correlationId, entry);
        reject(
          new SpillwayError(
            'TIMEOUT',
            `request (opcode ${opcode}) to ${this.url} not answered within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      if (signal) {
        entry.onAbort = () => {
          if (this.pending.get(correlationId) !== entry) return;
          this.settle(correlationId, entry);
          reject(abortError(signal));
        };
        signal.addEventListener('abort', entry.onAbort, { once: true });
      }
      this.pending.set(correlationId, entry);
      this.sendMessage(socket, bytes, parts);
    });
  }

  /**
   * Sends one message; the messages of one turn of the event loop (up to the end of its microtasks)
   * leave in one write: the first corks the TCP socket, a process.nextTick uncorks it.
   */
  private sendMessage(
    socket: WebSocketConnection,
    bytes: Buffer | null,
    parts: ReturnType<typeof encodeFrameParts> | null,
  ): void {
    const raw = socket.socket;
    if (this.corked !== raw) {
      this.uncorkTurn();
      raw.cork();
      this.corked = raw;
      process.nextTick(this.uncorkTurn);
    }
    if (parts === null) {
      socket.send(bytes!);
    } else {
      socket.send(parts[0], false);
      socket.send(parts[1], true);
    }
  }

  /** Removes a pending request and its timer and abort listener. */
  private settle(correlationId: number, entry: PendingRequest): void {
    this.pending.delete(correlationId);
    clearTimeout(entry.timer);
    if (entry.signal && entry.onAbort) entry.signal.removeEventListener('abort', entry.onAbort);
  }

  private takeCorrelationId(): number {
    let id = this.nextCorrelationId;
    // 32 bits on the wire; skip ids still pending after a wrap (a request older than 4 billion others).
    while (this.pending.has(id)) id = (id + 1) >>> 0;
    this.nextCorrelationId = (id + 1) >>> 0;
    return id;
  }

  /** Rejects the pending requests (of `socket` only, when given). */
  private rejectPending(error: SpillwayError, socket?: WebSocketConnection): void {
    const entries = [...this.pending];
    for (const [correlationId, entry] of entries) {
      if (socket !== undefined && entry.socket !== socket) continue;
      this.pending.delete(correlationId);
      clearTimeout(entry.timer);
      if (entry.signal && entry.onAbort) entry.signal.removeEventListener('abort', entry.onAbort);
      entry.reject(error);
    }
  }

  private ensureConnected(): Promise<WebSocketConnection> {
    if (this.socket) return Promise.resolve(this.socket);
    if (!this.connecting) {
      this.connecting = this.openConnection().finally(() => {
        this.connecting = null;
      });
    }
    return this.connecting;
  }

  private async openConnection(): Promise<WebSocketConnection> {
    const waitMs = this.nextAttemptAtMs - Date.now();
    if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
    if (this.isClosed) throw closedError('the client');
    let socket: WebSocketConnection | null = null;
    try {
      socket = await this.openSocket();
      const hello = await this.sayHello(socket);
      if (this.isClosed) throw closedError('the client');
      this.helloInfo = hello;
      this.window.setLimit(
        Math.min(this.inFlightRequestsWanted ?? hello.inFlightRequestsMax, hello.inFlightRequestsMax),
      );
      this.failedAttempts = 0;
      this.nextAttemptAtMs = 0;
      this.socket = socket;
      return socket;
    } catch (error) {
      if (socket) socket.terminate();
      this.failedAttempts++;
      const backoffMs = Math.min(
        this.reconnectBackoffMs * 2 ** Math.min(this.failedAttempts - 1, 30),
        this.reconnectBackoffMaxMs,
      );
      this.nextAttemptAtMs = Date.now() + backoffMs * (0.8 + 0.4 * Math.random());
      if (error instanceof SpillwayError) throw error;
      throw new SpillwayError(
        'CONNECTION_CLOSED',
        `cannot connect to ${this.url}: ${error instanceof Error ? error.message : String(error)}`,
        { cause: error, retriable: true },
      );
    }
  }

  private async openSocket(): Promise<WebSocketConnection> {
    const socket = await WebSocketConnection.open(new URL(this.url), {
      maxPayload: frameBytesMax,
      handshakeTimeoutMs: this.connectTimeoutMs,
      ca: this.ca,
    });
    this.attach(socket);
    return socket;
  }

  /** HELLO on a fresh socket, before it serves requests (so outside the window). */
  private async sayHello(socket: WebSocketConnection): Promise<HelloInfo> {
    const response = await this.send(
      socket,
      Opcode.hello,
      helloRequest(this.clientId, this.token),
      undefined,
      this.connectTimeoutMs,
      undefined,
    );
    const hello = parseHelloResponse(response.header);
    checkNegotiatedVersion(hello, `the broker at ${this.url}`);
    return hello;
  }

  private attach(socket: WebSocketConnection): void {
    socket.onMessage = (fragments, isBinary) => this.onMessage(socket, fragments, isBinary);
    socket.onClose = (code, reason) => this.onSocketClosed(socket, code, reason);
    socket.allocate = (bytes, fragmentsBefore) => this.bodyBufferFor(bytes, fragmentsBefore);
  }

  /**
   * The buffer for an answer body the broker sent as a fragment of its own after the prefix: the
   * request's RequestOptions.bodyBuffer, if it gave one and is still pending; else null.
   */
  private bodyBufferFor(bytes: number, fragmentsBefore: readonly Uint8Array[]): Buffer | null {
    const prefix = fragmentsBefore.length === 1 ? fragmentsBefore[0]! : undefined;
    if (prefix === undefined || prefix.length < framePrefixBytes) return null;
    const flags = prefix[1]!;
    if ((flags & (FrameFlags.response | FrameFlags.error | FrameFlags.serverRequest)) !== FrameFlags.response)
      return null;
    const correlationId = (prefix[4]! | (prefix[5]! << 8) | (prefix[6]! << 16) | (prefix[7]! << 24)) >>> 0;
    return this.pending.get(correlationId)?.bodyBuffer?.(bytes) ?? null;
  }

  private onMessage(socket: WebSocketConnection, fragments: Uint8Array[], isBinary: boolean): void {
    let frame: Frame;
    try {
      if (!isBinary) throw new SpillwayError('PROTOCOL_ERROR', 'the broker sent a text message');
      frame = decodeFrameFragments(fragments);
      if ((frame.flags & FrameFlags.serverRequest) !== 0) {
        if ((frame.flags & (FrameFlags.response | FrameFlags.error)) !== 0) {
          throw new SpillwayError('PROTOCOL_ERROR', 'the broker sent an answer flagged serverRequest');
        }
      } else if ((frame.flags & FrameFlags.response) === 0) {
        throw new SpillwayError('PROTOCOL_ERROR', 'the broker sent a frame that is not a response');
      }
    } catch (error) {
      // A broker that breaks the protocol cannot be trusted with the other answers on this socket.
      this.dropSocket(socket, error);
      return;
    }
    if ((frame.flags & FrameFlags.serverRequest) !== 0) {
      void this.serverRequests.answer(frame).then((answer) => this.sendServerAnswer(socket, answer));
      return;
    }
    const entry = this.pending.get(frame.correlationId);
    if (entry === undefined) return; // timed out or aborted: the late answer is dropped
    this.settle(frame.correlationId, entry);
    if ((frame.flags & FrameFlags.error) !== 0) entry.reject(errorFromHeader(frame.header));
    else entry.resolve({ header: frame.header, body: frame.body });
  }

  /** Sends the answer to a server request on the socket it came on, if that is still open. */
  private sendServerAnswer(socket: WebSocketConnection, answer: Frame): void {
    if (this.closedSockets.has(socket) || !socket.isOpen) return;
    let bytes: Buffer;
    try {
      bytes = encodeFrame(answer);
    } catch (error) {
      // Too large for a frame, or a header msgpack cannot encode: the broker hears why.
      const failure =
        error instanceof SpillwayError
          ? error
          : new SpillwayError('HANDLER_FAILED', `cannot encode the answer: ${String(error)}`);
      bytes = encodeFrame(serverRequestErrorAnswer(answer, failure));
    }
    this.sendMessage(socket, bytes, null);
  }

  private dropSocket(socket: WebSocketConnection, cause: unknown): void {
    const message = cause instanceof Error ? cause.message : String(cause);
    this.onSocketClosed(socket, 1002, message);
    socket.terminate();
  }

  private onSocketClosed(socket: WebSocketConnection, code: number, reason: string): void {
    if (this.closedSockets.has(socket)) return;
    const wasLive = this.socket === socket;
    if (wasLive) this.socket = null;
    const error = this.isClosed
      ? closedError('the client')
      : new SpillwayError(
          'CONNECTION_CLOSED',
          `connection to ${this.url} lost (code ${code}${reason ? `, ${reason}` : ''})`,
          { retriable: true },
        );
    this.closedSockets.set(socket, error);
    this.rejectPending(error, socket);
    if (wasLive && !this.isClosed) {
      for (const listener of this.disconnectListeners) listener(error);
    }
  }
}

/** Closes a socket politely, and forcibly if the peer does not answer within a second. */
function closeSocket(socket: WebSocketConnection): Promise<void> {
  const timer = setTimeout(() => socket.terminate(), 1000);
  socket.close(1000, 'client closed');
  return socket.closed.then(() => clearTimeout(timer));
}
