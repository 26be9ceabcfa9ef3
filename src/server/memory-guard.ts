/**
 * The broker-wide memory budget of the WebSocket side (docs/PROTOCOL.md, "Hard limits"), on top of
 * the per-connection bounds of connection.ts and the HTTP budgets of http-budget.ts:
 *
 * - Answer bytes waiting to be sent (what uWS buffers plus answers held by connections), summed
 *   over every connection, are kept in `unsentBytes` (each connection reports its changes), and
 *   requests that make large answers (FETCH, GROUP_FETCH, QUEUE_RECEIVE) reserve their `maxBytes`
 *   in `reservedBytes` from their start until their answer is written. While the two together are
 *   over `budgetBytes`, new large-answer requests are held on every connection (slowed: they start
 *   when the sum is back under), and each sweep (every sweepIntervalMs) closes, with close code 1013
 *   ("try again later"), the connections that hold more than stalledUnsentBytesMin unsent bytes and
 *   took none of them since the previous sweep: clients that do not read their answers.
 * - Received bytes: uWS buffers a WebSocket message until it is complete (up to frameBytesMax per
 *   connection) without telling the server, and uWebSockets.js exposes no count of them (nor a way
 *   to stop reading a socket). So the guard watches what they cost: it reads the process's
 *   anonymous resident memory (/proc/self/statm: resident minus file-backed pages, i.e. the heap
 *   and every buffer, not the mapped log; one pread, ~3 µs) every pollIntervalMs, and acts before
 *   `rssCeilingBytes`, `reactionMarginBytes(ceiling)` apart:
 *   - over `softLineBytes` (ceiling - 2 margins): new connections are refused (503) and every
 *     connection not heard from (complete message or pong) for pingEveryMs is pinged (at most every
 *     pingEveryMs; one ping at a time per connection);
 *   - over `hardLineBytes` (ceiling - 1 margin): silent connections are pinged as over the soft line,
 *     and every connection waiting for no answer that left a ping unanswered for pongGraceMs, or was
 *     not heard from for recentMs, is closed at once (1013): it is inside a frame it does not finish
 *     (a pong cannot be sent inside a frame), or dead. (Waiting for a ping's answer rather than for
 *     recentMs of silence matters when many connections start large frames right after their HELLO:
 *     memory would grow for a whole recentMs before any of them counted as silent.) Still over the hard line
 *     escalateAfterMs later, the silent ones waiting for an answer are closed too, and those that
 *     completed no message for recentMs (a client that answers pings between the fragments of a
 *     message it never ends), pongs or not.
 *   The margin is what the broker may grow in one poll and a pong's round trip; the attack tests
 *   (test/server/attacks-broker-wide.test.ts) measure it. It is a reaction, not an accounting: the
 *   bound holds as long as memory grows less than one margin per poll.
 * Timers run on the server's clock (unref'd). Single-threaded.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import type { Clock, ClockTimer } from '../clock.js';

/** How often the guard looks at the send budget. */
export const sweepIntervalMs = 1000;
/** How often the guard reads the memory. */
export const pollIntervalMs = 10;
/** A connection heard from (message or pong) this recently is not closed for memory. */
export const recentMs = 1000;
/** Under pressure, silent connections are pinged at most this often. */
export const pingEveryMs = 50;
/** Over the hard line, a connection that left a ping unanswered this long is closed. */
export const pongGraceMs = 30;
/** Over the hard line this long: connections that complete no message are closed, pongs or not. */
export const escalateAfterMs = 250;
/** A connection holding less than this unsent is never closed for not reading. */
export const stalledUnsentBytesMin = 1024 * 1024;
/** Close code of a connection closed by the memory guard (RFC 6455: try again later). */
export const closeCodeMemoryBudget = 1013;
/** Largest reaction margin: 128 MiB. */
const reactionMarginBytesMax = 128 * 1024 * 1024;

/** How far under the ceiling the guard acts: a sixth of it, at most 128 MiB. */
export function reactionMarginBytes(ceilingBytes: number): number {
  return Math.min(Math.floor(ceilingBytes / 6), reactionMarginBytesMax);
}

/** What the guard needs of a connection. */
export interface GuardedConnection {
  /** Unsent answer bytes (uWS buffer plus held answers). */
  readonly unsentBytes: number;
  /** Clock time (monotonic ms) of the last complete message, or of the opening. */
  readonly lastMessageMs: number;
  /** Clock time (monotonic ms) of the last complete message or pong, or of the opening. */
  readonly lastHeardMs: number;
  /** Requests of the connection the broker has not answered yet. */
  readonly inFlightCount: number;
  /** Bytes the client took since the previous call (drained); resets the count. */
  takeDrainedBytes(): number;
  /** Sends a WebSocket ping. */
  ping(): void;
  /** Closes with close code 1013 and this reason. */
  endForMemory(reason: string): void;
  /** Starts held requests if the budget allows now. */
  resumeHeld(): void;
}

const pageBytes = 4096;
let statmFd: number | null | undefined;
const statmBuffer = Buffer.alloc(256);

/**
 * The process's anonymous resident memory: resident minus shared (file-backed and shmem) pages of
 * /proc/self/statm, read with one pread of a descriptor kept open; the whole RSS where there is no
 * /proc.
 */
export function anonymousRssBytes(): number {
  if (statmFd === undefined) {
    try {
      statmFd = openSync('/proc/self/statm', 'r');
    } catch {
      statmFd = null;
    }
  }
  if (statmFd !== null) {
    try {
      const length = readSync(statmFd, statmBuffer, 0, statmBuffer.length, 0);
      const fields = statmBuffer.toString('latin1', 0, length).split(' ');
      const resident = Number(fields[1]);
      const shared = Number(fields[2]);
      if (Number.isFinite(resident) && Number.isFinite(shared)) return (resident - shared) * pageBytes;
    } catch {
      closeSync(statmFd);
      statmFd = null;
    }
  }
  return process.memoryUsage.rss();
}

export class MemoryGuard {
  /** Unsent answer bytes of every WebSocket connection together. */
  unsentBytes = 0;
  /** maxBytes of the large-answer requests running now (their answers are not written yet). */
  reservedBytes = 0;
  /** Connections closed for not reading while over budget, and for silence over the hard line. */
  closedForUnread = 0;
  closedForSilence = 0;
  /** Requests held because the budget was spent. */
  requestsHeld = 0;
  /** Last anonymous RSS read, its highest value, and whether it was over the soft line. */
  lastRssBytes = 0;
  peakRssBytes = 0;
  underPressure = false;
  /** The guard refuses connections and pings above the soft line, closes above the hard line. */
  readonly softLineBytes: number;
  readonly hardLineBytes: number;
  private sweepTimer: ClockTimer | null = null;
  private pollTimer: ClockTimer | null = null;
  private lastReadMs = Number.NEGATIVE_INFINITY;
  private lastPingMs = Number.NEGATIVE_INFINITY;
  /** Since when memory is over the hard line (null: it is not). */
  private overHardSinceMs: number | null = null;
  /** When each connection was sent the ping it has not answered yet (absent or older: answered). */
  private readonly pingedAt = new WeakMap<GuardedConnection, number>();

  constructor(
    readonly budgetBytes: number,
    readonly rssCeilingBytes: number,
    private readonly connections: () => Iterable<GuardedConnection>,
    private readonly clock: Clock,
    private readonly readRss: () => number = anonymousRssBytes,
  ) {
    const margin = reactionMarginBytes(rssCeilingBytes);
    this.hardLineBytes = rssCeilingBytes - margin;
    this.softLineBytes = rssCeilingBytes - 2 * margin;
  }

  start(): void {
    this.sweepTimer ??= this.clock.setInterval(() => this.sweep(), sweepIntervalMs, { unref: true });
    this.pollTimer ??= this.clock.setInterval(() => this.poll(), pollIntervalMs, { unref: true });
  }

  stop(): void {
    this.sweepTimer?.cancel();
    this.sweepTimer = null;
    this.pollTimer?.cancel();
    this.pollTimer = null;
  }

  /**
   * Whether memory is over the soft line (new connections are refused): asked by each WebSocket
   * upgrade; reads the memory when the last read is older than a poll.
   */
  checkPressure(): boolean {
    if (this.clock.monotonicMs() - this.lastReadMs >= pollIntervalMs) this.poll();
    return this.underPressure;
  }

  get overBudget(): boolean {
    return this.unsentBytes + this.reservedBytes > this.budgetBytes;
  }

  /** One read of the memory and what it asks (exported for tests, which call it on a ManualClock). */
  poll(): void {
    const now = this.clock.monotonicMs();
    this.lastReadMs = now;
    const rss = this.readRss();
    this.lastRssBytes = rss;
    if (rss > this.peakRssBytes) this.peakRssBytes = rss;
    this.underPressure = rss > this.softLineBytes;
    if (!this.underPressure) {
      this.overHardSinceMs = null;
      return;
    }
    this.pingSilent(now);
    if (rss <= this.hardLineBytes) {
      this.overHardSinceMs = null;
      return;
    }
    this.overHardSinceMs ??= now;
    // Every connection that answered no ping goes at once (each may add a receive buffer's worth at
    // every turn of the event loop); one waiting for an answer may be silent because of the broker
    // and goes only after escalateAfterMs, with those that answer pings but complete no message.
    const escalated = now - this.overHardSinceMs >= escalateAfterMs;
    for (const connection of [...this.connections()]) {
      const silentMs = now - connection.lastHeardMs;
      const quietMs = now - connection.lastMessageMs;
      const pinged = this.pingedAt.get(connection);
      const unanswered =
        pinged !== undefined && connection.lastHeardMs < pinged && now - pinged >= pongGraceMs;
      if ((silentMs >= recentMs || unanswered) && (connection.inFlightCount === 0 || escalated)) {
        this.closedForSilence++;
        connection.endForMemory(
          `memory pressure: nothing received complete for ${Math.round(silentMs)} ms and no answer to a ping (a partial frame?)`,
        );
      } else if (escalated && quietMs >= recentMs) {
        this.closedForSilence++;
        connection.endForMemory(
          `memory pressure: no message completed for ${Math.round(quietMs)} ms (a partial message?)`,
        );
      }
    }
  }

  /**
   * Pings (at most every pingEveryMs) each connection not heard from for pingEveryMs that has no
   * ping unanswered; a connection inside a frame cannot answer.
   */
  private pingSilent(now: number): void {
    if (now - this.lastPingMs < pingEveryMs) return;
    this.lastPingMs = now;
    for (const connection of this.connections()) {
      if (now - connection.lastHeardMs < pingEveryMs) continue;
      const pinged = this.pingedAt.get(connection);
      if (pinged !== undefined && connection.lastHeardMs < pinged) continue; // still waiting for its pong
      this.pingedAt.set(connection, now);
      connection.ping();
    }
  }

  /** One look at the send budget (exported for tests, which call it on a ManualClock). */
  sweep(): void {
    const over = this.overBudget;
    for (const connection of [...this.connections()]) {
      const drained = connection.takeDrainedBytes();
      if (over && drained === 0 && connection.unsentBytes > stalledUnsentBytesMin) {
        this.closedForUnread++;
        connection.endForMemory(
          `memory budget: ${connection.unsentBytes} answer bytes unread while the broker is over its budget of ${this.budgetBytes}`,
        );
      }
    }
    if (!this.overBudget) for (const connection of this.connections()) connection.resumeHeld();
  }
}
