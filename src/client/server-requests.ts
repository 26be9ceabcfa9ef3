/**
 * The client's side of server requests (docs/PROTOCOL.md, "Server requests"): the broker asks, a
 * handler registered for the opcode answers. Shared by both transports, so they answer alike:
 *  - PING is answered `{}` by the client itself (liveness); it cannot be replaced;
 *  - an opcode with no handler is answered NO_HANDLER;
 *  - a handler that throws or rejects is answered HANDLER_FAILED with its message; one that returns
 *    a header other than a plain object, likewise;
 *  - at most serverRequestsPerSessionMax handlers run at once (the broker sends no more); one more
 *    is answered TOO_MANY_REQUESTS.
 * Answers carry the request's opcode and correlation id with flags serverRequest | response
 * (| error). `answer` never rejects.
 */
import { InvalidArgumentError, SpillwayError } from '../errors.js';
import { serverRequestsPerSessionMax } from '../limits.js';
import { type Frame, FrameFlags } from '../protocol/frame.js';
import type { ErrorHeader } from '../protocol/messages.js';
import { Opcode } from '../protocol/opcodes.js';

/** A request the broker sent. The body is a view the handler may keep. */
export interface ServerRequest {
  opcode: number;
  header: unknown;
  body: Uint8Array;
}

/** What a handler answers: a header (a plain object; default `{}`) and an optional body. */
export interface ServerRequestAnswer {
  header?: Record<string, unknown>;
  body?: Uint8Array;
}

export type ServerRequestHandler = (
  request: ServerRequest,
) => ServerRequestAnswer | undefined | Promise<ServerRequestAnswer | undefined>;

const emptyBody = new Uint8Array(0);

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype;
}

/** An error answer to a server request. */
export function serverRequestErrorAnswer(request: Frame, error: SpillwayError): Frame {
  const header: ErrorHeader = { code: error.code, message: error.message, retriable: error.retriable };
  return {
    opcode: request.opcode,
    flags: FrameFlags.serverRequest | FrameFlags.response | FrameFlags.error,
    correlationId: request.correlationId,
    header,
    body: emptyBody,
  };
}

export class ServerRequestHandlers {
  private readonly handlers = new Map<number, ServerRequestHandler>();
  private running = 0;

  /**
   * Registers the handler of a server request opcode; returns a function that unregisters it.
   * One handler per opcode (INVALID_ARGUMENT for a second one, and for PING, answered built in).
   */
  register(opcode: number, handler: ServerRequestHandler): () => void {
    if (!Number.isInteger(opcode) || opcode < 0 || opcode > 255) {
      throw new InvalidArgumentError(`opcode must be an integer in [0, 255], got ${String(opcode)}`);
    }
    if (typeof handler !== 'function')
      throw new InvalidArgumentError('a server request handler must be a function');
    if (opcode === Opcode.ping) throw new InvalidArgumentError('PING is answered by the client itself');
    if (this.handlers.has(opcode)) {
      throw new InvalidArgumentError(`a handler for server request opcode ${opcode} is already registered`);
    }
    this.handlers.set(opcode, handler);
    return () => {
      if (this.handlers.get(opcode) === handler) this.handlers.delete(opcode);
    };
  }

  /** Runs the handler of a server request; resolves with the answer frame to send back. Never rejects. */
  async answer(request: Frame): Promise<Frame> {
    if (request.opcode === Opcode.ping) return this.ok(request, {}, emptyBody);
    const handler = this.handlers.get(request.opcode);
    if (handler === undefined) {
      return serverRequestErrorAnswer(
        request,
        new SpillwayError(
          'NO_HANDLER',
          `this client has no handler for server request opcode ${request.opcode}`,
        ),
      );
    }
    if (this.running >= serverRequestsPerSessionMax) {
      return serverRequestErrorAnswer(
        request,
        new SpillwayError(
          'TOO_MANY_REQUESTS',
          `this client already runs ${serverRequestsPerSessionMax} server request handlers`,
        ),
      );
    }
    this.running++;
    try {
      const result = await handler({ opcode: request.opcode, header: request.header, body: request.body });
      const header = result?.header ?? {};
      const body = result?.body ?? emptyBody;
      if (!isPlainObject(header))
        throw new TypeError('the handler answered a header that is not a plain object');
      if (!(body instanceof Uint8Array))
        throw new TypeError('the handler answered a body that is not a Uint8Array');
      return this.ok(request, header, body);
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      const code = error instanceof SpillwayError ? ` (${error.code})` : '';
      return serverRequestErrorAnswer(
        request,
        new SpillwayError(
          'HANDLER_FAILED',
          `handler of server request opcode ${request.opcode} failed${code}: ${detail}`,
        ),
      );
    } finally {
      this.running--;
    }
  }

  private ok(request: Frame, header: Record<string, unknown>, body: Uint8Array): Frame {
    return {
      opcode: request.opcode,
      flags: FrameFlags.serverRequest | FrameFlags.response,
      correlationId: request.correlationId,
      header,
      body,
    };
  }
}
