/**
 * The transport behind the client: one request in, one response out, matched by correlation id.
 * Two implementations: WebSocketTransport (a broker over the network, websocket-connection.ts) and
 * InProcessTransport (a broker in this process, through the same dispatch() the server uses).
 * Producer, consumer and admin see only this interface, so they behave the same over both.
 *
 * Contract of `request`:
 *  - resolves with the response's control header and body (the body is a view the caller may keep:
 *    over WebSocket a view of the received message, in process the broker's fetch result);
 *  - rejects with a SpillwayError: the broker's error frame (its code, message and retriable flag),
 *    CONNECTION_CLOSED (retriable) when the connection drops with the request pending,
 *    TIMEOUT (retriable) after `timeoutMs`, BACKPRESSURE (retriable) when too many requests wait
 *    for a slot, CONNECTION_CLOSED (not retriable) once the transport is closed;
 *  - may be called any number of times without awaiting: at most `inFlightRequestsMax` requests
 *    are on the wire at once, the others wait in a bounded queue, in call order.
 *
 * The other direction: the broker may send requests to the client (protocol version 2), answered by
 * the handlers registered with `onServerRequest` (PING is answered built in).
 */
import type { SpillwayError } from '../errors.js';
import type { ServerRequestHandler } from './server-requests.js';

export interface TransportResponse {
  header: unknown;
  body: Uint8Array;
}

export interface RequestOptions {
  /** Overrides the transport's request timeout (a long-poll adds its wait to it). */
  timeoutMs?: number;
  /** Aborting rejects the request at once (the broker may still carry it out). */
  signal?: AbortSignal;
  /**
   * Where a large answer body is received (the WebSocket transport, when the broker sends the body
   * as a fragment of its own): called with its length, returns a buffer of exactly that length to
   * read it into, or null for a new one. Others transports ignore it. See receive-buffer-pool.ts.
   */
  bodyBuffer?: (bytes: number) => Buffer | null;
}

export interface HelloInfo {
  /** The version negotiated: 2 and up carry server requests, 1 does not (an older broker). */
  protocolVersion: number;
  brokerVersion: string;
  frameBytesMax: number;
  inFlightRequestsMax: number;
  /** The broker's session of this connection; null from a broker that does not say (version 1). */
  sessionId: number | null;
}

export type DisconnectListener = (error: SpillwayError) => void;

export interface Transport {
  /** What the broker said in its HELLO answer (after the first connection). */
  readonly hello: HelloInfo;
  /**
   * True when neither the transport nor the broker reads a request's body any more once its answer
   * arrived (it was written to the socket, the broker received a copy): the caller may reuse the
   * body's memory then. Absent or false: the broker may keep the caller's bytes (in process).
   */
  readonly bodyReusableAfterAnswer?: boolean;
  request(
    opcode: number,
    header: unknown,
    body?: Uint8Array,
    options?: RequestOptions,
  ): Promise<TransportResponse>;
  /** Called each time a live connection is lost (not when close() is called). Returns an unsubscribe. */
  onDisconnect(listener: DisconnectListener): () => void;
  /**
   * Registers the handler answering the broker's server requests of `opcode` (client/server-requests.ts),
   * on this connection and the next ones. Returns an unregister function.
   */
  onServerRequest(opcode: number, handler: ServerRequestHandler): () => void;
  /** Rejects pending and queued requests (CONNECTION_CLOSED, not retriable) and releases the connection. */
  close(): Promise<void>;
  readonly closed: boolean;
}
