/**
 * One WebSocket connection of the binary protocol (docs/PROTOCOL.md): frames in, dispatch(), frames
 * out, answered by correlation id in whatever order they complete (pipelining).
 *
 * Rules kept here:
 * - The received ArrayBuffer belongs to uWS and is neutered (detached: views of it read as empty)
 *   when the message handler returns, while a request lives on. The frame is decoded in place, then
 *   the body is copied, except a PRODUCE body: dispatch() reaches MessageService.produce within the
 *   handler, and produce reads its batch only until its first await (the plain append writes it to
 *   the log synchronously; paths that wait copy it), so the batch is lent, not copied. The decoded header holds JS strings and numbers; a msgpack
 *   `bin` value would be a view of the neutered buffer (no opcode takes one today: copy it if one
 *   ever does).
 * - A frame that does not decode is answered with an error frame addressed by the correlation id
 *   found at bytes 4-7 (0 when the frame is shorter), and the connection stays open; so does a text
 *   frame (answered with correlation id 0).
 * - At most inFlightRequestsPerConnectionMax requests are in flight (running, held, or answered but
 *   not yet handed to the socket); one more is answered TOO_MANY_REQUESTS at once.
 * - Backpressure: above sendBufferBytesMax of unsent bytes, FETCH requests are held (not started)
 *   and finished answers are held (not sent) until uWS reports `drain`, so a client that does not
 *   read costs at most sendBufferBytesMax + one frame of send buffer, plus held answers that are
 *   views of the log. Small error answers are still sent at once; a client that keeps sending while
 *   never reading passes sendBufferBytesHardMax and is disconnected with close code 1008.
 * - A connection that sends no successful HELLO within `handshakeTimeoutMs` of opening is closed
 *   with 1008 (timer on the broker's clock): idle connections cannot hold connection slots for free.
 * - Authentication (context.security set, docs/SECURITY.md): HELLO's token is checked by the
 *   server's Authenticator (rate-limited per source address); the connection then counts against
 *   its principal's maxConnections (one more: TOO_MANY_REQUESTS), and the principal's byte quotas
 *   delay answers (produce: the request's batch bytes; FETCH, GROUP_FETCH, QUEUE_RECEIVE: the
 *   answer's) by the time the quota needs to pay the bytes back.
 * - Memory budget (memory-guard.ts): the connection reports its unsent bytes to the MemoryGuard and
 *   reserves the maxBytes of each running large-answer request; while the broker-wide sum is over
 *   budget, its large-answer requests are held, and the guard may close it with 1013.
 * - The WebSocket is never touched after its close event (uWS throws on use after close).
 * - Answers with a body are sent without concatenation: the prefix and the body as two fragments of
 *   one message, corked into one write. A REPLICA_FETCH answer of 16 KiB or more (plain sockets) is
 *   written outside the cork instead, so that uWS writes its body from the log's mapped memory
 *   rather than copying it into its own buffer first (`writeNow`).
 * - Answers are queued and written together (corked, one syscall) from a promise reaction: the
 *   answers that the continuations already queued make go in one write rather than one each (a
 *   pipelining client, e.g. 1,024 transactions in flight, gets dozens at once). With TLS
 *   (context.deferWrites) they are written from a setImmediate instead, never inside a uWS callback,
 *   which TLS needs for correctness: uSockets' SSL write discards the
 *   encrypted input still to be decrypted from the current read (us_internal_ssl_socket_write resets
 *   the loop's ssl_read_input_length), so an answer written while a large read is being handed out
 *   (pipelined PRODUCE batches, whose acks promise continuations write from inside the message
 *   callback) cut the TLS stream: uWS closed the connection (the client saw 1006 and reconnected),
 *   which is what made TLS produce 0.1-0.25x of plain. Queued bytes count as buffered.
 * - Each connection has a session (protocol/session.ts), opened with the connection (the upgrade is
 *   refused when that fails) and closed by the close event, however the connection ends. The
 *   connection is the session's transport: server requests go out as frames with the serverRequest
 *   flag, sent at once like small error answers (bounded by serverRequestsPerSessionMax and the hard
 *   send-buffer limit).
 * - Frames with the serverRequest flag are not requests: serverRequest|response(|error) is the
 *   client's answer to a server request and goes to the session (an answer nobody waits for is
 *   dropped, counted); any other use of the flag is answered PROTOCOL_ERROR with correlation id 0,
 *   since the id is in the server's space and must not be mistaken for one of the client's. An
 *   undecodable frame with the flag is answered the same way, and fails the server request it names.
 */
import { setMaxListeners } from 'node:events';
import type { WebSocket } from '@trufflesuite/uws-js-unofficial';
import type { Clock, ClockTimer } from '../clock.js';
import { SpillwayError } from '../errors.js';
import {
  fetchMaxBytesDefault,
  fetchMaxBytesMax,
  inFlightRequestsPerConnectionMax,
  sendBufferBytesHardMax,
  sendBufferBytesMax,
} from '../limits.js';
import type { BrokerApi } from '../protocol/broker-api.js';
import { type DispatchOptions, dispatch, errorFrame } from '../protocol/dispatch.js';
import {
  decodeFrame,
  encodeFrameParts,
  type Frame,
  FrameFlags,
  ProtocolError,
  peekCorrelationId,
  peekFlags,
} from '../protocol/frame.js';
import type { ErrorHeader } from '../protocol/messages.js';
import { Opcode } from '../protocol/opcodes.js';
import type { Principal, SessionEndpoint, SessionTransport } from '../protocol/session.js';
import type { ConfiguredPrincipal } from './auth/auth-file.js';
import type { Authenticator } from './auth/authenticator.js';
import type { PrincipalQuotaTracker, QuotaKind } from './auth/principal-quotas.js';
import { closeCodeMemoryBudget, type GuardedConnection, type MemoryGuard } from './memory-guard.js';
import { invalidFrameOpcode, okResult, type ServerMetrics } from './metrics.js';

const resolvedPromise = Promise.resolve();

export interface ConnectionContext {
  api: BrokerApi;
  brokerVersion: string;
  metrics: ServerMetrics;
  isClosing(): boolean;
  /** Registers a running request so server close() can wait for it. */
  track(work: Promise<unknown>): void;
  onInternalError(error: unknown, request?: Frame): void;
  /** How long a connection may stay without a HELLO before it is closed (1008); 0: no limit. */
  handshakeTimeoutMs: number;
  clock: Clock;
  /** Authentication and quotas; null when the server runs without an auth file. */
  security: ConnectionSecurity | null;
  memory: MemoryGuard;
  /**
   * Write answers after the uWS callback that made them (a setImmediate), not inside it (TLS: see
   * the header). Default false (written from a promise reaction, which may be inside the callback).
   */
  deferWrites?: boolean;
}

export interface ConnectionSecurity {
  authenticator: Authenticator;
  quotas: PrincipalQuotaTracker;
}

/** Opcodes whose answers carry record batches (held under memory pressure, charged to fetch quotas). */
const largeAnswerOpcodes: ReadonlySet<number> = new Set([
  Opcode.fetch,
  Opcode.groupFetch,
  Opcode.queueReceive,
]);

/** What uWS keeps as the WebSocket's user data. */
export interface ConnectionData {
  connection: Connection;
}

/**
 * An encoded answer: the prefix (frame prefix and header) and the body; `direct` when the body is
 * to be written outside the cork, straight from where it lies (see `writeNow`).
 */
type FrameParts = [prefix: Uint8Array, body: Uint8Array, direct?: boolean];

/**
 * Opcodes whose large answer bodies are written uncorked, without a copy (`writeNow`): REPLICA_FETCH,
 * whose body, a view of the leader's mapped segments, a corked send copied into a uWS buffer before
 * the kernel copied it again (per follower; in a micro-benchmark the direct write costs the sender
 * 0.05–0.1 ms less CPU per MB, of about 0.3).
 */
const directBodyOpcodes: ReadonlySet<number> = new Set([Opcode.replicaFetch]);
/**
 * uWS writes a message body of at least this many bytes straight from the caller's memory (one
 * writev of the WebSocket header and the body) when nothing is corked or buffered on the socket;
 * smaller ones, and any while corked, are copied into its buffers.
 */
const uwsDirectSendBytesMin = 16 * 1024;

function sameTokenHash(a: ConfiguredPrincipal, b: ConfiguredPrincipal): boolean {
  const x = a.tokenHash;
  const y = b.tokenHash;
  return x.N === y.N && x.r === y.r && x.p === y.p && x.salt.equals(y.salt) && x.hash.equals(y.hash);
}

/** Close code sent when a client's send buffer passes sendBufferBytesHardMax (policy violation). */
export const closeCodeBackpressure = 1008;
/** Close code sent when a connection says no HELLO within the handshake timeout (policy violation). */
export const closeCodePolicy = 1008;
/** Close code sent when the server shuts down (going away). */
export const closeCodeGoingAway = 1001;

export class Connection implements SessionTransport, GuardedConnection {
  /** Set by the close event; after it the WebSocket must not be used. */
  closed = false;
  /** Aborted when the connection closes or the server shuts down: ends long-polls. */
  readonly abortController = new AbortController();
  /** Opened with the connection, closed by its close event. */
  readonly session: SessionEndpoint;
  /** Settles when the session's close hooks have run (after the close event). */
  sessionClosed: Promise<void> | null = null;
  private readonly dispatchOptions: DispatchOptions;
  private socket: WebSocket<ConnectionData> | undefined;
  private inFlight = 0;
  /** FETCH requests not started because the send buffer was full (bodies already copied). */
  private readonly heldFetches: Frame[] = [];
  /** Encoded answers not yet given to the socket because the send buffer was full. */
  private readonly heldAnswers: FrameParts[] = [];
  private readonly onInternalError: (error: unknown, request: Frame) => void;
  /** Closes the connection if no HELLO arrives in time; null once one did (or none is required). */
  private handshakeTimer: ClockTimer | null = null;
  /** The authenticated principal (auth on), holding one of its connection slots. */
  private principal: ConfiguredPrincipal | null = null;
  /** Bytes of heldAnswers. */
  private heldAnswerBytes = 0;
  /** Unsent bytes last reported to the memory guard. */
  private reportedUnsent = 0;
  private drainedBytes = 0;
  /** Answers waiting for the setImmediate that writes them (deferWrites), and their bytes. */
  private deferred: FrameParts[] = [];
  private deferredBytes = 0;
  private flushScheduled = false;
  /**
   * `direct` answers waiting for the setImmediate that writes them (outside every uWS callback:
   * see `writeNow`), and their bytes.
   */
  private directAnswers: FrameParts[] = [];
  private directBytes = 0;
  private directScheduled = false;
  /** MemoryGuard: clock times of the last complete message, and of the last message or pong. */
  lastMessageMs: number;
  lastHeardMs: number;
  /** Bytes this connection's running large-answer requests reserve in the memory guard. */
  private reservedBytes = 0;

  /** Throws (BROKER_CLOSING, TOO_MANY_REQUESTS) when the broker opens no session: refuse the upgrade. */
  constructor(
    private readonly context: ConnectionContext,
    /** The client's address as text (the per-address connection count is kept by it). */
    readonly remoteAddress = '',
  ) {
    this.onInternalError = (error, request) => context.onInternalError(error, request);
    this.lastMessageMs = context.clock.monotonicMs();
    this.lastHeardMs = this.lastMessageMs;
    // Every long-poll of the connection listens to its signal: up to one per request in flight.
    setMaxListeners(inFlightRequestsPerConnectionMax + 16, this.abortController.signal);
    this.session = context.api.sessions.open({ kind: 'websocket', transport: this });
    this.dispatchOptions = {
      session: this.session,
      signal: this.abortController.signal,
      brokerVersion: context.brokerVersion,
      onInternalError: this.onInternalError,
    };
    const security = context.security;
    if (security !== null) {
      this.dispatchOptions.security = {
        authenticate: (token) => this.authenticate(security, token),
      };
    }
  }

  /** HELLO's token: the principal, holding a connection slot of its own (see the header). */
  private async authenticate(security: ConnectionSecurity, token: string | undefined): Promise<Principal> {
    const principal = await security.authenticator.authenticate(token, this.remoteAddress);
    if (this.closed || this.principal?.name === principal.name) return principal;
    if (!security.quotas.openConnection(principal.name, principal.quotas)) {
      throw new SpillwayError(
        'TOO_MANY_REQUESTS',
        `principal '${principal.name}' already holds its ${principal.quotas.maxConnections} connections`,
      );
    }
    if (this.principal !== null) security.quotas.closeConnection(this.principal.name);
    this.principal = principal;
    return principal;
  }

  /**
   * The auth file was reloaded: the connection's principal takes its new entry (rules, quotas), or
   * the connection is closed (1008) when the principal is gone or its token hash changed. Returns
   * whether it stays open.
   */
  onAuthReload(security: ConnectionSecurity): boolean {
    const current = this.principal;
    if (current === null || this.closed) return true;
    const next = security.authenticator.principal(current.name);
    if (next === undefined || !sameTokenHash(next, current)) {
      this.end(
        closeCodePolicy,
        `the auth file was reloaded without principal '${current.name}' or with another token for it`,
      );
      return false;
    }
    this.principal = next;
    this.session.authenticate(next);
    return true;
  }

  /** Unsent answer bytes: what uWS holds plus answers held here. */
  get unsentBytes(): number {
    return this.bufferedBytes + this.heldAnswerBytes;
  }

  /** MemoryGuard: bytes the client took since the previous call. */
  takeDrainedBytes(): number {
    const drained = this.drainedBytes;
    this.drainedBytes = 0;
    return drained;
  }

  ping(): void {
    if (!this.closed && this.socket !== undefined) this.socket.ping();
  }

  /** A pong from the client (answer to the guard's ping or to uWS's automatic one). */
  onPong(): void {
    this.lastHeardMs = this.context.clock.monotonicMs();
  }

  endForMemory(reason: string): void {
    this.end(closeCodeMemoryBudget, reason);
  }

  resumeHeld(): void {
    this.pump();
  }

  /** Reports the change of unsent bytes to the memory guard. */
  private report(): void {
    const unsent = this.closed ? 0 : this.unsentBytes;
    if (unsent < this.reportedUnsent) this.drainedBytes += this.reportedUnsent - unsent;
    this.context.memory.unsentBytes += unsent - this.reportedUnsent;
    this.reportedUnsent = unsent;
  }

  /** True while the broker is over its memory budget: large-answer requests wait. */
  private get heldForMemory(): boolean {
    return this.context.memory.overBudget;
  }

  /** What a large-answer request reserves in the memory budget until its answer is written. */
  private reservationOf(request: Frame): number {
    if (!largeAnswerOpcodes.has(request.opcode)) return 0;
    const header = request.header as { maxBytes?: unknown } | null;
    const maxBytes = typeof header?.maxBytes === 'number' ? header.maxBytes : fetchMaxBytesDefault;
    return Math.max(0, Math.min(maxBytes, fetchMaxBytesMax));
  }

  /** Requests accepted and not yet handed to the socket. */
  get inFlightCount(): number {
    return this.inFlight;
  }

  /** Bytes uWS holds for this connection (0 once closed). */
  get bufferedBytes(): number {
    return this.closed || this.socket === undefined
      ? 0
      : this.socket.getBufferedAmount() + this.deferredBytes + this.directBytes;
  }

  /** True when answers wait to be sent or uWS still holds unsent bytes. */
  get hasUnsentAnswers(): boolean {
    return !this.closed && (this.heldAnswers.length > 0 || this.bufferedBytes > 0);
  }

  opened(socket: WebSocket<ConnectionData>): void {
    this.socket = socket;
    const { handshakeTimeoutMs, clock, metrics } = this.context;
    if (handshakeTimeoutMs > 0) {
      this.handshakeTimer = clock.setTimeout(
        () => {
          this.handshakeTimer = null;
          if (this.closed) return;
          metrics.connectionsClosedForHandshakeTimeout++;
          this.end(closeCodePolicy, `no HELLO within ${handshakeTimeoutMs} ms`);
        },
        handshakeTimeoutMs,
        { unref: true },
      );
    }
  }

  onMessage(message: ArrayBuffer, isBinary: boolean): void {
    if (this.closed) return;
    const { metrics } = this.context;
    metrics.bytesReceived.ws += message.byteLength;
    this.lastMessageMs = this.context.clock.monotonicMs();
    this.lastHeardMs = this.lastMessageMs;
    if (!isBinary) {
      metrics.countRequest(invalidFrameOpcode, 'PROTOCOL_ERROR');
      this.sendNow(
        errorFrame(0, 0, new ProtocolError('text frames are not part of the protocol: send binary frames')),
      );
      return;
    }
    const bytes = new Uint8Array(message);
    let request: Frame;
    try {
      request = decodeFrame(bytes);
    } catch (error) {
      const failure =
        error instanceof SpillwayError ? error : new ProtocolError(`undecodable frame: ${String(error)}`);
      metrics.countRequest(invalidFrameOpcode, failure.code);
      let correlationId = peekCorrelationId(bytes) ?? 0;
      const flags = peekFlags(bytes) ?? 0;
      if ((flags & FrameFlags.serverRequest) !== 0) {
        // Meant as an answer to a server request: that request fails now rather than by its timeout.
        if ((flags & FrameFlags.response) !== 0) this.session.failRequest(correlationId, failure);
        correlationId = 0; // the server's id space: never address the client with it
      }
      this.sendNow(errorFrame(bytes.length > 0 ? bytes[0]! : 0, correlationId, failure));
      return;
    }
    const bodyBytes = request.body.length;
    const lent = request.opcode === Opcode.produce && request.flags === 0;
    if (bodyBytes > 0 && !lent) request.body = Buffer.from(request.body); // a copy (see header)
    if ((request.flags & FrameFlags.serverRequest) !== 0) {
      this.onServerRequestAnswer(request);
      return;
    }
    if (this.context.isClosing()) {
      this.refuse(request, new SpillwayError('BROKER_CLOSING', 'the broker is shutting down'));
      return;
    }
    if (this.inFlight >= inFlightRequestsPerConnectionMax) {
      this.refuse(
        request,
        new SpillwayError(
          'TOO_MANY_REQUESTS',
          `more than ${inFlightRequestsPerConnectionMax} requests in flight on this connection`,
        ),
      );
      return;
    }
    this.inFlight++;
    if (
      largeAnswerOpcodes.has(request.opcode) &&
      (this.heldFetches.length > 0 ||
        this.heldAnswers.length > 0 ||
        this.bufferedBytes > sendBufferBytesMax ||
        this.heldForMemory)
    ) {
      metrics.fetchesHeld++;
      if (this.heldForMemory) this.context.memory.requestsHeld++;
      this.heldFetches.push(request);
      return;
    }
    this.start(request, bodyBytes);
  }

  /** uWS drained some of the send buffer: send held answers, then start held fetches. */
  onDrain(): void {
    this.pump();
    this.report();
  }

  /** The close event: from here on the socket must not be used. Closes the session. */
  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket = undefined;
    this.handshakeTimer?.cancel();
    this.handshakeTimer = null;
    this.abortController.abort();
    this.inFlight -= this.heldFetches.length + this.heldAnswers.length;
    this.heldFetches.length = 0;
    this.heldAnswers.length = 0;
    this.heldAnswerBytes = 0;
    this.context.memory.reservedBytes -= this.reservedBytes;
    this.reservedBytes = 0;
    this.report();
    if (this.principal !== null) this.context.security?.quotas.closeConnection(this.principal.name);
    this.principal = null;
    this.sessionClosed = this.session.close();
  }

  /** SessionTransport: a server request goes out now (small; bounded per session). */
  sendServerRequest(frame: Frame): void {
    if (this.closed || this.socket === undefined) {
      throw new SpillwayError('CONNECTION_CLOSED', 'the connection is closed');
    }
    this.write(encodeFrameParts(frame)); // FRAME_TOO_LARGE propagates to the request
    this.context.metrics.serverRequestsSent++;
  }

  /** SessionTransport: the broker is closing. */
  disconnect(reason: string): void {
    this.end(closeCodeGoingAway, reason);
  }

  /** Ends long-polls of this connection early (server shutting down). */
  abort(): void {
    this.abortController.abort();
  }

  /** Closes gracefully with a close frame; the close event follows at once. */
  end(code: number, reason: string): void {
    if (this.closed || this.socket === undefined) return;
    // Answers queued before the close go out first (the stream ends anyway: no input to lose).
    if (this.deferred.length > 0) this.flushDeferred();
    if (this.directAnswers.length > 0 && !this.closed) this.flushDirect();
    if (this.closed) return;
    this.socket.end(code, reason);
    this.onClose(); // uWS calls the close handler from end(); this is a no-op then
  }

  /** A frame with the serverRequest flag: the client's answer to a server request, or a protocol error. */
  private onServerRequestAnswer(frame: Frame): void {
    const { metrics } = this.context;
    if ((frame.flags & FrameFlags.response) === 0) {
      metrics.countRequest(invalidFrameOpcode, 'PROTOCOL_ERROR');
      this.sendNow(
        errorFrame(
          frame.opcode,
          0,
          new ProtocolError('the serverRequest flag without response: a client cannot send server requests'),
        ),
      );
      return;
    }
    if (this.session.receiveResponse(frame)) metrics.serverRequestAnswers++;
    else metrics.serverRequestAnswersDropped++;
  }

  /** Dispatches `request`; `bodyBytes`: its body's size, for the produce quota (a lent body is gone by then). */
  private start(request: Frame, bodyBytes = request.body.length): void {
    const { context } = this;
    const reservation = this.reservationOf(request);
    this.reservedBytes += reservation;
    context.memory.reservedBytes += reservation;
    const work = dispatch(context.api, request, this.dispatchOptions).then((answer) =>
      this.principal === null ? this.deliver(request, answer) : this.throttle(request, answer, bodyBytes),
    );
    context.track(work);
  }

  /** Charges the principal's byte quotas, then delivers the answer after the delay they ask for. */
  private async throttle(request: Frame, answer: Frame, bodyBytes: number): Promise<void> {
    const principal = this.principal!;
    let kind: QuotaKind | null = null;
    let bytes = 0;
    if (request.opcode === Opcode.produce) {
      kind = 'produce';
      bytes = bodyBytes;
      request.body = new Uint8Array(0); // appended: not held while the answer waits
    } else if (largeAnswerOpcodes.has(request.opcode)) {
      kind = 'fetch';
      bytes = answer.body.length;
    }
    const delayMs =
      kind === null || (answer.flags & FrameFlags.error) !== 0
        ? 0
        : this.context.security!.quotas.charge(principal.name, principal.quotas, kind, bytes);
    if (delayMs > 0 && !this.closed) {
      await new Promise<void>((resolve) => {
        const timer = this.context.clock.setTimeout(() => {
          this.abortController.signal.removeEventListener('abort', stop);
          resolve();
        }, delayMs);
        const stop = () => {
          timer.cancel();
          resolve();
        };
        this.abortController.signal.addEventListener('abort', stop, { once: true });
      });
    }
    this.deliver(request, answer);
  }

  private deliver(request: Frame, answer: Frame): void {
    const { metrics } = this.context;
    const isError = (answer.flags & FrameFlags.error) !== 0;
    metrics.countRequest(request.opcode, isError ? (answer.header as ErrorHeader).code : okResult);
    if (this.closed) {
      this.inFlight--; // its reservation went with the close
      return;
    }
    const reservation = this.reservationOf(request);
    this.reservedBytes -= reservation;
    this.context.memory.reservedBytes -= reservation;
    if (request.opcode === Opcode.hello && !isError && this.handshakeTimer !== null) {
      this.handshakeTimer.cancel();
      this.handshakeTimer = null;
    }
    const parts: FrameParts = this.encode(answer);
    if (
      directBodyOpcodes.has(request.opcode) &&
      this.context.deferWrites !== true &&
      parts[1].length >= uwsDirectSendBytesMin
    ) {
      parts[2] = true;
    }
    if (this.heldAnswers.length > 0 || this.bufferedBytes > sendBufferBytesMax) {
      metrics.answersHeld++;
      this.heldAnswers.push(parts);
      this.heldAnswerBytes += parts[0].length + parts[1].length;
      this.report();
      return;
    }
    this.inFlight--;
    this.write(parts);
    this.pump();
  }

  private encode(frame: Frame): FrameParts {
    try {
      return encodeFrameParts(frame);
    } catch (error) {
      // An answer too large for a frame (a FETCH whose maxBytes exceeds frameBytesMax): say so.
      const failure =
        error instanceof SpillwayError
          ? error
          : new SpillwayError('INTERNAL', `cannot encode the answer: ${String(error)}`);
      return encodeFrameParts(errorFrame(frame.opcode, frame.correlationId, failure));
    }
  }

  private pump(): void {
    while (!this.closed && this.heldAnswers.length > 0 && this.bufferedBytes <= sendBufferBytesMax) {
      this.inFlight--;
      const parts = this.heldAnswers.shift()!;
      this.heldAnswerBytes -= parts[0].length + parts[1].length;
      this.write(parts);
    }
    while (
      !this.closed &&
      this.heldAnswers.length === 0 &&
      this.heldFetches.length > 0 &&
      this.bufferedBytes <= sendBufferBytesMax &&
      !this.heldForMemory
    ) {
      this.start(this.heldFetches.shift()!);
    }
  }

  /** Answers a request that will not run (not counted in flight). */
  private refuse(request: Frame, error: SpillwayError): void {
    this.context.metrics.countRequest(request.opcode, error.code);
    this.sendNow(errorFrame(request.opcode, request.correlationId, error));
  }

  /** Sends a small error answer now, whatever the send buffer holds (bounded by the hard limit). */
  private sendNow(frame: Frame): void {
    this.write(this.encode(frame));
  }

  private write(parts: FrameParts): void {
    if (this.closed || this.socket === undefined) return;
    if (parts[2] === true) {
      this.directAnswers.push(parts);
      this.directBytes += parts[0].length + parts[1].length;
      this.report();
      if (!this.directScheduled) {
        this.directScheduled = true;
        setImmediate(this.directTurn);
      }
      return;
    }
    this.deferred.push(parts);
    this.deferredBytes += parts[0].length + parts[1].length;
    this.report();
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // TLS: after the uWS callback (setImmediate). Plain: a promise reaction, so the answers made
      // by the continuations already queued go in the same write, with no wait for the next phase
      // of the event loop (a setImmediate there cost plain PRODUCE round trips a third of their rate).
      if (this.context.deferWrites === true) setImmediate(this.flushTurn);
      else void resolvedPromise.then(this.flushTurn);
    }
  }

  private readonly flushTurn = (): void => {
    this.flushScheduled = false;
    this.flushDeferred();
    // Held answers wait for a drain event, which uWS sends only after backpressure: if the
    // flush left the socket's buffer under the limit, nothing else would resume them.
    if (!this.closed && this.bufferedBytes <= sendBufferBytesMax) this.pump();
  };

  private flushDeferred(): void {
    const list = this.deferred;
    this.deferred = [];
    this.deferredBytes = 0;
    if (list.length > 0) this.writeNow(list);
  }

  private readonly directTurn = (): void => {
    this.directScheduled = false;
    this.flushDirect();
    if (!this.closed && this.bufferedBytes <= sendBufferBytesMax) this.pump();
  };

  private flushDirect(): void {
    const list = this.directAnswers;
    this.directAnswers = [];
    this.directBytes = 0;
    if (list.length > 0) this.writeNow(list);
  }

  /**
   * Writes `list` in order: runs of answers corked into one write; a `direct` answer outside the
   * cork, its prefix first (one small write), then its body, which uWS writes from the answer's own
   * memory (a view of the log) when the socket holds nothing unsent and no socket of the loop is
   * corked, else copies into its buffers as a corked send would. Hence direct answers are written
   * from a setImmediate (`directTurn`), outside the uWS callbacks, which cork the socket they serve
   * (a produce's data callback wakes the followers' fetches: their answers were made, and written
   * corked, inside it). Answers go by correlation id: the order between the two queues is free.
   * Plain sockets only (not `deferWrites`).
   */
  private writeNow(list: readonly FrameParts[]): void {
    const socket = this.socket;
    if (this.closed || socket === undefined) return;
    let dropped = false;
    let bytes = 0;
    let next = 0;
    while (next < list.length && !this.closed) {
      const direct = list[next]![2] === true ? list[next++]! : null;
      if (direct !== null) {
        const [prefix, body] = direct;
        bytes += prefix.length + body.length;
        socket.sendFirstFragment(prefix, true, false);
        socket.sendLastFragment(body, false);
        continue;
      }
      let end = next;
      while (end < list.length && list[end]![2] !== true) end++;
      const run = list.slice(next, end);
      next = end;
      socket.cork(() => {
        for (const [prefix, body] of run) {
          bytes += prefix.length + body.length;
          if (body.length === 0) {
            dropped = socket.send(prefix, true, false) === 2 || dropped;
          } else {
            socket.sendFirstFragment(prefix, true, false);
            socket.sendLastFragment(body, false);
          }
        }
      });
    }
    this.context.metrics.bytesSent.ws += bytes;
    this.report();
    if (dropped) {
      // Cannot happen with maxBackpressure above the hard limit; a lost answer would hang a client.
      this.end(1011, 'an answer was dropped');
    } else if (socket.getBufferedAmount() > sendBufferBytesHardMax) {
      this.context.metrics.connectionsClosedForBackpressure++;
      this.end(closeCodeBackpressure, 'send buffer limit exceeded: the client does not read its answers');
    }
  }
}
