/**
 * Sessions as the protocol layer sees them: one per client connection (WebSocket, in-process
 * client) or per HTTP request. `dispatch` runs every request with the session of its connection;
 * features that hold resources for a client (group membership, producer ids, check-back targets,
 * leases) register a close hook and are released when the session ends, however it ends (the client
 * closes, its process dies and the socket closes, the server or the broker closes).
 *
 * The broker implements these interfaces (src/broker/session-registry.ts); front ends open a session
 * through `BrokerApi.sessions` and give it a SessionTransport, the way back to their client. This
 * module imports nothing of the broker.
 *
 * Server requests: `session.request()` sends a request to the client over the same connection
 * (frame flag serverRequest, the server's own correlation id space, docs/PROTOCOL.md) and resolves
 * with the client's answer frame. It rejects with a SpillwayError:
 *  - TIMEOUT (retriable) when no answer came within `timeoutMs`;
 *  - CONNECTION_CLOSED when the session closes with the request pending, or was closed before;
 *  - UNSUPPORTED_VERSION when the session cannot carry server requests (HELLO negotiated protocol
 *    version 1, or no HELLO was said, or an HTTP session);
 *  - TOO_MANY_REQUESTS when serverRequestsPerSessionMax requests are already awaiting answers;
 *  - the client's error answer: NO_HANDLER (nothing registered for the opcode), HANDLER_FAILED (its
 *    handler threw), TOO_MANY_REQUESTS, or PROTOCOL_ERROR when its answer could not be decoded.
 *
 * Everything runs on the broker's event loop; nothing here is thread-safe.
 */
import type { SpillwayError } from '../errors.js';
import { AccessList } from './access-control.js';
import type { Frame } from './frame.js';

/** Which front end a session belongs to. */
export type SessionKind = 'websocket' | 'in-process' | 'http';

/**
 * Who a client authenticated as (docs/SECURITY.md) and what it may do. The in-process transport is
 * trusted: its sessions carry `internalPrincipal`. With authentication off, network sessions carry
 * null and nothing is checked; with it on, a network session carries null until its HELLO presents a
 * valid token, and every request but HELLO is refused (UNAUTHENTICATED) until then.
 */
export interface Principal {
  readonly name: string;
  readonly access: AccessList;
}

/** The principal of in-process clients: trusted by construction (they share the broker's process). */
export const internalPrincipal: Principal = { name: 'internal', access: AccessList.allowAll() };

export interface ServerRequestOptions {
  /** How long to wait for the answer: 1 to serverRequestTimeoutMsMax; default serverRequestTimeoutMsDefault. */
  timeoutMs?: number;
}

/** Runs once when its session ends. Errors (thrown or rejected) are caught and reported. */
export type SessionCloseHook = (session: Session) => void | Promise<void>;

/** What a feature sees of a session. */
export interface Session {
  /** Unique within the broker's life, from 1 up (also "connection id" in logs and HELLO). */
  readonly id: number;
  readonly kind: SessionKind;
  /** From HELLO (`clientId`), or given when the session was opened; null when none. */
  readonly clientId: string | null;
  /** The authenticated principal (see Principal); null: none (auth off, or not yet authenticated). */
  readonly principal: Principal | null;
  /** The protocol version HELLO negotiated; 1 until a HELLO says otherwise. */
  readonly protocolVersion: number;
  readonly openedAtMs: number;
  /** Aborted when the session closes (its reason is a CONNECTION_CLOSED SpillwayError). */
  readonly signal: AbortSignal;
  readonly closed: boolean;
  /** True when server requests can be sent now (open, protocol version >= 2, a transport that carries them). */
  readonly canRequest: boolean;
  /** Server requests awaiting their answer. */
  readonly pendingRequestCount: number;
  /**
   * Registers cleanup run once when the session ends; returns a function that unregisters it (for
   * a resource released earlier). Hooks run in reverse order of registration without waiting for one
   * another. On a session already closed, the hook runs at once (asynchronously). At most
   * sessionCloseHooksMax hooks at a time: one more throws BACKPRESSURE.
   */
  onClose(hook: SessionCloseHook): () => void;
  /** Sends a server request to the client and resolves with its answer (see the header). */
  request(opcode: number, header: unknown, body?: Uint8Array, options?: ServerRequestOptions): Promise<Frame>;
}

/** How a session reaches its client: implemented by each front end. */
export interface SessionTransport {
  /**
   * Hands a server request (flags serverRequest) to the client. Throws a SpillwayError when it
   * cannot (connection closed, frame too large); the request then fails with that error.
   */
  sendServerRequest(frame: Frame): void;
  /**
   * The broker ends the session (it is closing): drop the connection. Called at most once; the
   * session is closed right after, whatever the front end does.
   */
  disconnect(reason: string): void;
}

export interface SessionOpenOptions {
  kind: SessionKind;
  /** The way to the client; null when it cannot carry server requests (HTTP). */
  transport: SessionTransport | null;
  /** Known before HELLO (an in-process client); HELLO may set it too. */
  clientId?: string;
  /** Known before HELLO (the in-process transport: internalPrincipal); HELLO may set it too. */
  principal?: Principal;
}

/** A session as its front end holds it: a Session plus what only the front end and dispatch do. */
export interface SessionEndpoint extends Session {
  /** HELLO: records the client id (null: none) and the negotiated protocol version. Called by dispatch. */
  identify(clientId: string | null, protocolVersion: number): void;
  /** HELLO with a valid token: the session acts as this principal from now on. Called by dispatch. */
  authenticate(principal: Principal): void;
  /**
   * A client's answer to a server request (flags serverRequest | response, maybe | error). Returns
   * false when no request with its correlation id is pending (timed out, or never sent): the caller
   * drops the frame. An answer with another opcode than its request fails the request (PROTOCOL_ERROR).
   */
  receiveResponse(frame: Frame): boolean;
  /** Fails the pending server request with this correlation id (its answer could not be decoded). */
  failRequest(correlationId: number, error: SpillwayError): boolean;
  /**
   * Ends the session: later requests fail, pending ones fail with CONNECTION_CLOSED, the signal
   * aborts, the close hooks run. Idempotent. Resolves once every hook settled, or after
   * sessionCloseHooksWaitMs (late hooks are reported and go on by themselves). Never rejects.
   */
  close(): Promise<void>;
}

/** One line of `sessions.list()`: for metrics, `GET /v1/sessions` and describe commands. */
export interface SessionInfo {
  id: number;
  kind: SessionKind;
  clientId: string | null;
  principal: string | null;
  protocolVersion: number;
  openedAtMs: number;
  pendingServerRequests: number;
}

/** `BrokerApi.sessions`: the live sessions of a broker. */
export interface SessionService {
  /**
   * Opens a session. Throws BROKER_CLOSING once the broker closes, TOO_MANY_REQUESTS when
   * sessionsMax sessions are open.
   */
  open(options: SessionOpenOptions): SessionEndpoint;
  /** Live sessions, oldest first. */
  list(): SessionInfo[];
  get(id: number): Session | undefined;
  /** Live sessions now. */
  readonly count: number;
  /** Close hooks that threw, rejected or did not finish in time, since the broker opened. */
  readonly closeHookFailureCount: number;
  /**
   * Sends PING to the session's client and resolves with the round trip in milliseconds. Rejects
   * like `Session.request`, or INVALID_ARGUMENT when no such session is open.
   */
  ping(id: number, options?: ServerRequestOptions): Promise<number>;
}
