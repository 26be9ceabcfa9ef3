/**
 * The broker's live sessions (`broker.sessions`, `BrokerApi.sessions`; the contract is
 * protocol/session.ts). Front ends open one per connection or HTTP request and close it when that
 * ends; the broker closes whatever is left when it closes (each session's transport is told to
 * disconnect first, then the session closes and its hooks run), before it closes its logs.
 *
 * Bounded: at most sessionsMax sessions at once (one more is TOO_MANY_REQUESTS); ids are never
 * reused within a broker's life.
 *
 * A close hook that fails is reported to `onHookFailure` (default: one line on stderr) and counted.
 * Not thread-safe: the broker's event loop only.
 */
import { type Clock, systemClock } from '../clock.js';
import { BrokerClosingError, InvalidArgumentError, SpillwayError } from '../errors.js';
import { sessionsMax } from '../limits.js';
import { Opcode } from '../protocol/opcodes.js';
import type {
  ServerRequestOptions,
  Session,
  SessionEndpoint,
  SessionInfo,
  SessionOpenOptions,
  SessionService,
} from '../protocol/session.js';
import { BrokerSession, type SessionOwner } from './broker-session.js';

const sessionKinds: ReadonlySet<string> = new Set(['websocket', 'in-process', 'http']);

export type SessionHookFailureListener = (error: unknown, session: Session) => void;

function printHookFailure(error: unknown, session: Session): void {
  const detail = error instanceof Error ? error.message : String(error);
  const client = session.clientId === null ? '' : ` (client '${session.clientId}')`;
  process.stderr.write(`spillway broker: close hook of session ${session.id}${client} failed: ${detail}\n`);
}

export class SessionRegistry implements SessionService {
  /** Called for each close hook that fails. Replaceable (tests, an embedding application's logger). */
  onHookFailure: SessionHookFailureListener = printHookFailure;
  private readonly sessions = new Map<number, BrokerSession>();
  private readonly owner: SessionOwner;
  private nextId = 1;
  private hookFailures = 0;
  private closing: Promise<void> | null = null;

  constructor(clock: Clock = systemClock) {
    this.owner = {
      clock,
      sessionClosed: (session) => {
        this.sessions.delete(session.id);
      },
      reportHookFailure: (error, session) => {
        this.hookFailures++;
        this.onHookFailure(error, session);
      },
    };
  }

  get count(): number {
    return this.sessions.size;
  }

  get closeHookFailureCount(): number {
    return this.hookFailures;
  }

  open(options: SessionOpenOptions): SessionEndpoint {
    if (this.closing !== null) throw new BrokerClosingError();
    if (options === null || typeof options !== 'object' || !sessionKinds.has(options.kind)) {
      throw new InvalidArgumentError("session kind must be 'websocket', 'in-process' or 'http'");
    }
    const transport = options.transport;
    if (
      transport !== null &&
      (typeof transport !== 'object' ||
        typeof transport.sendServerRequest !== 'function' ||
        typeof transport.disconnect !== 'function')
    ) {
      throw new InvalidArgumentError('a session transport needs sendServerRequest() and disconnect()');
    }
    if (options.clientId !== undefined && typeof options.clientId !== 'string') {
      throw new InvalidArgumentError('clientId must be a string');
    }
    if (this.sessions.size >= sessionsMax) {
      throw new SpillwayError('TOO_MANY_REQUESTS', `the broker already has ${sessionsMax} sessions open`);
    }
    const session = new BrokerSession(this.nextId++, options, this.owner);
    this.sessions.set(session.id, session);
    return session;
  }

  list(): SessionInfo[] {
    return [...this.sessions.values()].map((session) => session.info());
  }

  get(id: number): Session | undefined {
    return this.sessions.get(id);
  }

  async ping(id: number, options: ServerRequestOptions = {}): Promise<number> {
    const session = this.sessions.get(id);
    if (session === undefined) throw new InvalidArgumentError(`no session ${String(id)} is open`);
    const startedAt = performance.now();
    await session.request(Opcode.ping, {}, undefined, options);
    return performance.now() - startedAt;
  }

  /**
   * Refuses new sessions (BROKER_CLOSING), tells every transport to disconnect, closes every
   * session and waits for their hooks (each bounded by sessionCloseHooksWaitMs). Idempotent.
   */
  closeAll(reason: string): Promise<void> {
    if (this.closing === null) {
      const sessions = [...this.sessions.values()];
      this.closing = Promise.all(
        sessions.map((session) => {
          session.disconnectTransport(reason);
          return session.close();
        }),
      ).then(() => undefined);
    }
    return this.closing;
  }
}
