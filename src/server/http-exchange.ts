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
import type { ConfiguredPrincipal } from './auth/auth-file.js';
import type { HttpBudget } from './http-budget.js';
import { HttpError, httpStatusOf, statusText } from './http-status.js';

/** Answers longer than this (characters) are written with tryEnd and counted in the send budget. */
const largeAnswerChars = 64 * 1024;

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
  /**
   * With authentication on: settles once the request's bearer token is checked (rejects with the
   * error to answer); `run` waits for it before the handler. Null: nothing to wait for.
   */
  authenticated: Promise<void> | null = null;
  /** The principal of the bearer token, once checked (auth on); null with auth off. */
  principal: ConfiguredPrincipal | null = null;
  private aborted = false;
  private finished = false;
  private answered = false;
  /** Status of an answer still being written (tryEnd pending). */
  private finishedStatus = 0;
  /** Bytes of this request's body counted in the receive budget. */
  private receivedHeld = 0;
  /** Bytes of this answer written and not yet taken by the kernel, counted in the send budget. */
  private sendingHeld = 0;
  private stopBodyTimer: () => void = () => undefined;

  constructor(
    private readonly response: HttpResponse,
    readonly route: string,
    private readonly hooks: HttpExchangeHooks,
    private readonly budget: HttpBudget,
  ) {
    response.onAborted(() => {
      this.aborted = true;
      this.abortController.abort();
      this.releaseSending();
      this.finish(0);
    });
  }

  /** True until the exchange was answered or the client went away. */
  get open(): boolean {
    return !this.aborted && !this.finished && !this.answered;
  }

  /**
   * Reads the whole body (a copy the caller owns). Must be called from the route callback, before any
   * await. Rejects with 413 when the body (declared or received) exceeds `bytesMax` (as the bytes
   * arrive: nothing past the limit is kept), 503 BACKPRESSURE when the server's receive budget is
   * spent, 408 TIMEOUT when it does not arrive within the budget's body timeout; each of these closes
   * the connection. The bytes held count against the receive budget until the exchange ends.
   */
  readBody(contentLength: string, bytesMax: number): Promise<Buffer> {
    const budget = this.budget;
    return new Promise((resolve, reject) => {
      const fail = (error: HttpError) => {
        if (failed) return;
        failed = true;
        timer.cancel();
        this.releaseReceived();
        chunks.length = 0;
        reject(error);
      };
      const closeHeaders = { headers: { connection: 'close' } };
      const tooLarge = () =>
        new HttpError(413, 'INVALID_ARGUMENT', `request body exceeds ${bytesMax} bytes`, closeHeaders);
      let failed = false;
      const chunks: Buffer[] = [];
      let receivedBytes = 0;
      const timer = budget.clock.setTimeout(() => {
        budget.refusals++;
        fail(
          new HttpError(
            408,
            'TIMEOUT',
            `request body did not arrive within ${budget.bodyTimeoutMs} ms (${receivedBytes} bytes received)`,
            closeHeaders,
          ),
        );
      }, budget.bodyTimeoutMs);
      const declared = contentLength === '' ? 0 : Number(contentLength);
      if (declared > bytesMax) fail(tooLarge());
      this.response.onData((chunk, isLast) => {
        if (failed || !this.open) return;
        receivedBytes += chunk.byteLength;
        this.hooks.onBytesReceived(chunk.byteLength);
        if (receivedBytes > bytesMax) return fail(tooLarge());
        if (budget.receivingBytes + chunk.byteLength > budget.receiveMaxBytes) {
          budget.refusals++;
          return fail(
            new HttpError(
              503,
              'BACKPRESSURE',
              `the broker holds ${budget.receivingBytes} bytes of request bodies (budget ${budget.receiveMaxBytes}): send again later`,
              { ...closeHeaders, retriable: true },
            ),
          );
        }
        if (chunk.byteLength > 0) {
          chunks.push(Buffer.from(new Uint8Array(chunk)));
          budget.receivingBytes += chunk.byteLength;
          this.receivedHeld += chunk.byteLength;
        }
        if (isLast) {
          timer.cancel();
          resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, receivedBytes));
          chunks.length = 0;
        }
      });
      this.stopBodyTimer = () => timer.cancel();
      // A client that goes away mid-body: the handler awaiting the body ends (nothing is answered).
      this.abortController.signal.addEventListener(
        'abort',
        () => fail(new HttpError(400, 'CONNECTION_CLOSED', 'the client went away while sending the body')),
        { once: true },
      );
    });
  }

  /** Runs the handler and answers with its result, or with the error it threw. */
  run(handler: () => Promise<HttpAnswer> | HttpAnswer): Promise<void> {
    let result: Promise<HttpAnswer>;
    if (this.authenticated !== null) {
      result = this.authenticated.then(handler);
    } else {
      try {
        result = Promise.resolve(handler());
      } catch (error) {
        result = Promise.reject(error);
      }
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
    this.answered = true;
    let body: string | undefined;
    let contentType = answer.contentType;
    if (answer.text !== undefined) {
      body = answer.text;
      contentType ??= 'text/plain; charset=utf-8';
    } else if (answer.json !== undefined) {
      body = JSON.stringify(answer.json);
      contentType ??= 'application/json';
    }
    if (
      answer.json !== undefined &&
      body !== undefined &&
      body.length > largeAnswerChars &&
      this.budget.sendFull
    ) {
      // Slow readers already hold the send budget: a large answer (a fetch) would add to it. Refuse
      // instead. Text answers (/metrics) still go: monitoring matters most under load.
      this.answered = false;
      this.budget.refusals++;
      this.answerError(
        new HttpError(
          503,
          'BACKPRESSURE',
          `answers waiting for slow readers hold more than ${this.budget.sendMaxBytes} bytes: ask again later`,
          { retriable: true },
        ),
      );
      return;
    }
    const closeConnection = answer.headers?.['connection'] === 'close';
    const response = this.response;
    // Large answers are written with tryEnd: what the socket does not take now stays here, counted
    // in the send budget, and is written as the client reads (onWritable).
    const bytes = body !== undefined && body.length > largeAnswerChars ? Buffer.from(body) : undefined;
    let done = true;
    response.cork(() => {
      response.writeStatus(`${answer.status} ${statusText[answer.status] ?? 'Unknown'}`);
      if (contentType !== undefined) response.writeHeader('content-type', contentType);
      for (const [name, value] of Object.entries(answer.headers ?? {})) {
        if (name !== 'connection') response.writeHeader(name, value);
      }
      if (bytes !== undefined && !closeConnection) {
        const start = response.getWriteOffset();
        const [, responded] = response.tryEnd(bytes, bytes.length);
        if (!responded) {
          done = false;
          this.holdUnsent(bytes, start);
        }
      } else if (body === undefined) response.endWithoutBody(0, closeConnection);
      else response.end(body, closeConnection);
    });
    if (body !== undefined) this.hooks.onBytesSent(bytes?.length ?? Buffer.byteLength(body));
    if (done) this.finish(answer.status);
    else this.finishedStatus = answer.status;
  }

  /** Keeps the unsent rest of `bytes` and writes it as the socket drains. */
  private holdUnsent(bytes: Buffer, start: number): void {
    const response = this.response;
    const track = (offset: number) => {
      const unsent = bytes.length - (offset - start);
      this.budget.sendingBytes += unsent - this.sendingHeld;
      this.sendingHeld = unsent;
    };
    track(response.getWriteOffset());
    response.onWritable((offset) => {
      const [ok, responded] = response.tryEnd(bytes.subarray(offset - start), bytes.length);
      if (responded) {
        this.releaseSending();
        this.finish(this.finishedStatus);
      } else {
        track(response.getWriteOffset());
      }
      return ok;
    });
  }

  private releaseSending(): void {
    this.budget.sendingBytes -= this.sendingHeld;
    this.sendingHeld = 0;
  }

  private releaseReceived(): void {
    this.budget.receivingBytes -= this.receivedHeld;
    this.receivedHeld = 0;
  }

  private finish(status: number): void {
    if (this.finished) return;
    this.finished = true;
    this.stopBodyTimer();
    this.releaseReceived();
    this.hooks.onFinish(this, status);
  }
}
