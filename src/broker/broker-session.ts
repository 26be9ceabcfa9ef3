/**
 * One session of the broker (the contract is protocol/session.ts): identity from HELLO, close
 * hooks, and the server requests awaiting the client's answer.
 *
 * Server requests take correlation ids from the session's own space (1 to 2^32 - 1, skipping ids
 * still pending after a wrap); at most serverRequestsPerSessionMax await answers at once. A request
 * is settled exactly once: by its answer, its timer, a send failure or the session's close; an
 * answer that finds nothing pending is reported (false) and dropped by the front end.
 *
 * The AbortSignal is made on first use: an HTTP request's session usually never needs one.
 *
 * Not thread-safe: the broker's event loop only.
 */
import type { Clock, ClockTimer } from '../clock.js';
import { InvalidArgumentError, SpillwayError } from '../errors.js';
import {
  serverRequestsPerSessionMax,
  serverRequestTimeoutMsDefault,
  serverRequestTimeoutMsMax,
  sessionCloseHooksMax,
  sessionCloseHooksWaitMs,
} from '../limits.js';
import { errorFromHeader } from '../protocol/error-header.js';
import { type Frame, FrameFlags } from '../protocol/frame.js';
import { opcodeName, protocolVersionMin, serverRequestsProtocolVersion } from '../protocol/opcodes.js';
import type {
  Principal,
  ServerRequestOptions,
  SessionCloseHook,
  SessionEndpoint,
  SessionInfo,
  SessionKind,
  SessionOpenOptions,
  SessionTransport,
} from '../protocol/session.js';

interface PendingServerRequest {
  opcode: number;
  resolve: (answer: Frame) => void;
  reject: (error: SpillwayError) => void;
  timer: ClockTimer;
}

/** What a session needs from its registry. */
export interface SessionOwner {
  /** The broker's clock: open time, server-request timeouts, the close-hook wait. */
  readonly clock: Clock;
  /** The session closed: forget it (called once, synchronously, from close()). */
  sessionClosed(session: BrokerSession): void;
  /** A close hook threw, rejected or did not finish within sessionCloseHooksWaitMs. */
  reportHookFailure(error: unknown, session: BrokerSession): void;
}

const emptyBody = new Uint8Array(0);

function describeOpcode(opcode: number): string {
  return `${opcodeName(opcode) ?? 'opcode'} (${opcode})`;
}

export class BrokerSession implements SessionEndpoint {
  readonly id: number;
  readonly kind: SessionKind;
  readonly openedAtMs: number;
  private currentPrincipal: Principal | null;
  private currentClientId: string | null;
  private currentProtocolVersion = protocolVersionMin;
  private readonly transport: SessionTransport | null;
  private readonly owner: SessionOwner;
  private abortController: AbortController | null = null;
  private closing: Promise<void> | null = null;
  private closeError: SpillwayError | null = null;
  private readonly hooks = new Set<{ hook: SessionCloseHook }>();
  private readonly pending = new Map<number, PendingServerRequest>();
  private nextCorrelationId = 1;

  constructor(id: number, options: SessionOpenOptions, owner: SessionOwner) {
    this.id = id;
    this.kind = options.kind;
    this.transport = options.transport;
    this.currentClientId = options.clientId ?? null;
    this.currentPrincipal = options.principal ?? null;
    this.openedAtMs = owner.clock.nowMs();
    this.owner = owner;
  }

  get clientId(): string | null {
    return this.currentClientId;
  }

  get principal(): Principal | null {
    return this.currentPrincipal;
  }

  get protocolVersion(): number {
    return this.currentProtocolVersion;
  }

  get closed(): boolean {
    return this.closing !== null;
  }

  get signal(): AbortSignal {
    if (this.abortController === null) {
      this.abortController = new AbortController();
      if (this.closeError !== null) this.abortController.abort(this.closeError);
    }
    return this.abortController.signal;
  }

  get canRequest(): boolean {
    return (
      this.closing === null &&
      this.transport !== null &&
      this.currentProtocolVersion >= serverRequestsProtocolVersion
    );
  }

  get pendingRequestCount(): number {
    return this.pending.size;
  }

  info(): SessionInfo {
    return {
      id: this.id,
      kind: this.kind,
      clientId: this.currentClientId,
      principal: this.principal?.name ?? null,
      protocolVersion: this.currentProtocolVersion,
      openedAtMs: this.openedAtMs,
      pendingServerRequests: this.pending.size,
    };
  }

  identify(clientId: string | null, protocolVersion: number): void {
    this.currentClientId = clientId;
    this.currentProtocolVersion = protocolVersion;
  }

  authenticate(principal: Principal): void {
    this.currentPrincipal = principal;
  }

  onClose(hook: SessionCloseHook): () => void {
    if (typeof hook !== 'function') throw new InvalidArgumentError('a close hook must be a function');
    if (this.closing !== null) {
      // Registered too late to be part of close(): run it now, still reported if it fails.
      queueMicrotask(() => void this.runHook(hook));
      return () => undefined;
    }
    if (this.hooks.size >= sessionCloseHooksMax) {
      throw new SpillwayError(
        'BACKPRESSURE',
        `session ${this.id} already holds ${sessionCloseHooksMax} close hooks`,
      );
    }
    const entry = { hook };
    this.hooks.add(entry);
    return () => {
      this.hooks.delete(entry);
    };
  }

  request(
    opcode: number,
    header: unknown,
    body: Uint8Array = emptyBody,
    options: ServerRequestOptions = {},
  ): Promise<Frame> {
    try {
      return this.send(opcode, header, body, options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  receiveResponse(frame: Frame): boolean {
    const entry = this.pending.get(frame.correlationId);
    if (entry === undefined) return false;
    this.settle(frame.correlationId, entry);
    if (frame.opcode !== entry.opcode) {
      entry.reject(
        new SpillwayError(
          'PROTOCOL_ERROR',
          `the client answered server request ${frame.correlationId} (${describeOpcode(entry.opcode)}) with opcode ${frame.opcode}`,
        ),
      );
    } else if ((frame.flags & FrameFlags.error) !== 0) {
      entry.reject(errorFromHeader(frame.header));
    } else {
      entry.resolve(frame);
    }
    return true;
  }

  failRequest(correlationId: number, error: SpillwayError): boolean {
    const entry = this.pending.get(correlationId);
    if (entry === undefined) return false;
    this.settle(correlationId, entry);
    entry.reject(error);
    return true;
  }

  /** The broker ends the session: asks the front end to drop the connection (once; errors ignored). */
  disconnectTransport(reason: string): void {
    if (this.closing !== null || this.transport === null) return;
    try {
      this.transport.disconnect(reason);
    } catch {
      // The session closes right after whatever the front end did.
    }
  }

  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    const error = new SpillwayError('CONNECTION_CLOSED', `session ${this.id} closed`);
    this.closeError = error;
    // Set before anything runs: a hook or a rejected request that looks at the session sees it closed.
    this.closing = Promise.resolve();
    this.abortController?.abort(error);
    for (const [correlationId, entry] of [...this.pending]) {
      this.settle(correlationId, entry);
      entry.reject(error);
    }
    this.owner.sessionClosed(this);
    this.closing = this.runHooks();
    return this.closing;
  }

  private send(
    opcode: number,
    header: unknown,
    body: Uint8Array,
    options: ServerRequestOptions,
  ): Promise<Frame> {
    if (!Number.isInteger(opcode) || opcode < 0 || opcode > 255) {
      throw new InvalidArgumentError(`opcode must be an integer in [0, 255], got ${String(opcode)}`);
    }
    const timeoutMs = options.timeoutMs ?? serverRequestTimeoutMsDefault;
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > serverRequestTimeoutMsMax) {
      throw new InvalidArgumentError(
        `timeoutMs must be an integer in [1, ${serverRequestTimeoutMsMax}], got ${String(timeoutMs)}`,
      );
    }
    if (this.closing !== null) {
      throw new SpillwayError('CONNECTION_CLOSED', `session ${this.id} is closed`);
    }
    if (this.transport === null) {
      throw new SpillwayError('UNSUPPORTED_VERSION', `an ${this.kind} session cannot carry server requests`);
    }
    if (this.currentProtocolVersion < serverRequestsProtocolVersion) {
      throw new SpillwayError(
        'UNSUPPORTED_VERSION',
        `session ${this.id} speaks protocol version ${this.currentProtocolVersion}: server requests need ${serverRequestsProtocolVersion}`,
      );
    }
    if (this.pending.size >= serverRequestsPerSessionMax) {
      throw new SpillwayError(
        'TOO_MANY_REQUESTS',
        `session ${this.id} already has ${serverRequestsPerSessionMax} server requests awaiting answers`,
      );
    }
    const correlationId = this.takeCorrelationId();
    const frame: Frame = { opcode, flags: FrameFlags.serverRequest, correlationId, header, body };
    return new Promise<Frame>((resolve, reject) => {
      const timer = this.owner.clock.setTimeout(() => {
        const entry = this.pending.get(correlationId);
        if (entry === undefined) return;
        this.settle(correlationId, entry);
        reject(
          new SpillwayError(
            'TIMEOUT',
            `session ${this.id}: server request ${describeOpcode(opcode)} not answered within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      const entry: PendingServerRequest = { opcode, resolve, reject, timer };
      this.pending.set(correlationId, entry);
      try {
        this.transport!.sendServerRequest(frame);
      } catch (error) {
        this.settle(correlationId, entry);
        reject(
          error instanceof SpillwayError
            ? error
            : new SpillwayError('INTERNAL', `cannot send the server request: ${String(error)}`, {
                cause: error,
              }),
        );
      }
    });
  }

  private settle(correlationId: number, entry: PendingServerRequest): void {
    this.pending.delete(correlationId);
    entry.timer.cancel();
  }

  private takeCorrelationId(): number {
    let id = this.nextCorrelationId;
    // 32 bits on the wire, 0 excluded (reserved for unaddressable answers); skip ids still pending.
    while (id === 0 || this.pending.has(id)) id = (id + 1) >>> 0;
    this.nextCorrelationId = (id + 1) >>> 0;
    return id;
  }

  /** Runs every hook (newest first, without waiting for one another); waits a bounded time. */
  private async runHooks(): Promise<void> {
    const hooks = [...this.hooks].reverse();
    this.hooks.clear();
    if (hooks.length === 0) return;
    const runs = hooks.map(({ hook }) => this.runHook(hook));
    let timer: ClockTimer | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = this.owner.clock.setTimeout(() => resolve('late'), sessionCloseHooksWaitMs, { unref: true });
    });
    let unfinished = runs.length;
    const all = Promise.all(runs.map((run) => run.then(() => void unfinished--)));
    try {
      if ((await Promise.race([all, late])) === 'late') {
        this.owner.reportHookFailure(
          new SpillwayError(
            'TIMEOUT',
            `session ${this.id}: ${unfinished} close hook(s) did not finish within ${sessionCloseHooksWaitMs} ms`,
          ),
          this,
        );
      }
    } finally {
      timer?.cancel();
    }
  }

  /** Runs one hook; never rejects (a failure is reported). */
  private async runHook(hook: SessionCloseHook): Promise<void> {
    try {
      await hook(this);
    } catch (error) {
      try {
        this.owner.reportHookFailure(error, this);
      } catch {
        // A reporter that throws must not stop the other hooks.
      }
    }
  }
}
