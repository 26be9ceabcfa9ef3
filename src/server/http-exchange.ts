/**
 * One HTTP request and its answer over uWebSockets.js, with the rules uWS imposes made safe:
 * - an `onAborted` handler is attached at once, and nothing is written after an abort or a first end;
 * - the body is read with `onData`, copying each chunk (uWS neuters it when the callback returns),
 *   bounded by a byte limit (over: 413, the connection is closed so the rest is not read);
 * - every write is corked (one syscall; required when answering after an await);
 * - an AbortSignal ends a long-poll when the client goes away or the server closes.
 *
 * The uWS HttpRequest is valid only during the route callback: read the method, parameters, query
 * and headers there, before the first await.
 */
import type { HttpResponse } from '@trufflesuite/uws-js-unofficial';
import { SpillwayError } from '../errors.js';
import type { SessionEndpoint } from '../protocol/session.js';
import { HttpError, httpStatusOf, statusText } from './http-status.js';

export interface HttpAnswer {
  status: number;
  /** Serialised as JSON; undefined: no body. */
  json?: unknown;
  /** Sent as is (instead of json). */
  text?: string;
  contentType?: string;
  headers?: Readonly<Record<string, string>>;
}

export interface HttpExchangeHooks {
  /** Called once when the exchange ends (answered or aborted); status 0 for an abort. */
  onFinish(exchange: HttpExchange, status: number): void;
  onBytesReceived(bytes: number): void;
  onBytesSent(bytes: number): void;
  onInternalError(error: unknown): void;
}

export class HttpExchange {
  readonly abortController = new AbortController();
  /** The request's short-lived session (set by the HTTP API once opened; closed when the exchange ends). */
  session: SessionEndpoint | null = null;
  private aborted = false;
  private finished = false;

  constructor(
    private readonly response: HttpResponse,
    readonly route: string,
    private readonly hooks: HttpExchangeHooks,
  ) {
    response.onAborted(() => {
      this.aborted = true;
      this.abortController.abort();
      this.finish(0);
    });
  }

  /** True until the exchange was answered or the client went away. */
  get open(): boolean {
    return !this.aborted && !this.finished;
  }

  /**
   * Reads the whole body (a copy the caller owns). Must be called from the route callback, before any
   * await. Rejects with 413 when the body (declared or received) exceeds `bytesMax`.
   */
  readBody(contentLength: string, bytesMax: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const tooLarge = () =>
        new HttpError(413, 'INVALID_ARGUMENT', `request body exceeds ${bytesMax} bytes`, {
          headers: { connection: 'close' },
        });
      const declared = contentLength === '' ? 0 : Number(contentLength);
      let failed = false;
      if (declared > bytesMax) {
        failed = true;
        reject(tooLarge());
      }
      const chunks: Buffer[] = [];
      let receivedBytes = 0;
      this.response.onData((chunk, isLast) => {
        if (failed || !this.open) return;
        receivedBytes += chunk.byteLength;
        this.hooks.onBytesReceived(chunk.byteLength);
        if (receivedBytes > bytesMax) {
          failed = true;
          reject(tooLarge());
          return;
        }
        if (chunk.byteLength > 0) chunks.push(Buffer.from(new Uint8Array(chunk)));
        if (isLast) resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, receivedBytes));
      });
    });
  }

  /** Runs the handler and answers with its result, or with the error it threw. */
  run(handler: () => Promise<HttpAnswer> | HttpAnswer): Promise<void> {
    let result: Promise<HttpAnswer>;
    try {
      result = Promise.resolve(handler());
    } catch (error) {
      result = Promise.reject(error);
    }
    return result.then(
      (answer) => this.answer(answer),
      (error: unknown) => this.answerError(error),
    );
  }

  answerError(error: unknown): void {
    let failure: SpillwayError;
    if (error instanceof SpillwayError) {
      failure = error;
    } else {
      this.hooks.onInternalError(error);
      failure = new SpillwayError(
        'INTERNAL',
        `internal error: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    const status = httpStatusOf(failure);
    const headers: Record<string, string> = { ...(failure instanceof HttpError ? failure.headers : {}) };
    if (failure.retriable && (status === 429 || status === 503)) headers['retry-after'] = '1';
    this.answer({ status, json: { error: { code: failure.code, message: failure.message } }, headers });
  }

  answer(answer: HttpAnswer): void {
    if (!this.open) return;
    let body: string | undefined;
    let contentType = answer.contentType;
    if (answer.text !== undefined) {
      body = answer.text;
      contentType ??= 'text/plain; charset=utf-8';
    } else if (answer.json !== undefined) {
      body = JSON.stringify(answer.json);
      contentType ??= 'application/json';
    }
    const closeConnection = answer.headers?.['connection'] === 'close';
    const response = this.response;
    response.cork(() => {
      response.writeStatus(`${answer.status} ${statusText[answer.status] ?? 'Unknown'}`);
      if (contentType !== undefined) response.writeHeader('content-type', contentType);
      for (const [name, value] of Object.entries(answer.headers ?? {})) {
        if (name !== 'connection') response.writeHeader(name, value);
      }
      if (body === undefined) response.endWithoutBody(0, closeConnection);
      else response.end(body, closeConnection);
    });
    if (body !== undefined) this.hooks.onBytesSent(Buffer.byteLength(body));
    this.finish(answer.status);
  }

  private finish(status: number): void {
    if (this.finished) return;
    this.finished = true;
    this.hooks.onFinish(this, status);
  }
}
