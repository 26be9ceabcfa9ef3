/**
 * The broker-wide memory budget of the WebSocket side (docs/PROTOCOL.md, "Hard limits"), on top of
 * the per-connection bounds of connection.ts and the HTTP budgets of http-budget.ts:
 *
 * - Answer bytes waiting to be sent (what uWS buffers plus answers held by connections), summed
 *   over every connection, are kept in `unsentBytes` (each connection reports its changes), and
 *   requests that make large answers (FETCH, GROUP_FETCH, QUEUE_RECEIVE) reserve their `maxBytes`
 *   in `reservedBytes` from their start until their answer is written. While the two together are
 *   over `budgetBytes`, new large-answer requests are held on every connection (slowed: they start
 *   when the sum is back under), and each sweep closes, with close code 1013 ("try again later"),
 *   the connections that hold more than stalledUnsentBytesMin unsent bytes and took none of them
 *   since the previous sweep: clients that do not read their answers.
 * - Partial frames: uWS buffers a WebSocket message until it is complete (up to frameBytesMax per
 *   connection) without telling the server. The guard reads the process's anonymous resident
 *   memory (`RssAnon` of /proc/self/status; the heap and every buffer, not the mapped log) at each
 *   sweep and at upgrades (at most every pressureCheckIntervalMs); while it is over
 *   `rssCeilingBytes`, new connections are refused (503) and every
 *   connection that sent nothing complete (no message, no pong) for a sweep is pinged; one still
 *   silent a sweep later cannot be in the middle of anything but a frame it does not finish (a pong
 *   cannot be sent inside a frame), and is closed with 1013.
 * Sweeps run every sweepIntervalMs on the server's clock (unref'd). Single-threaded.
 */
import { readFileSync } from 'node:fs';
import type { Clock, ClockTimer } from '../clock.js';

/** How often the guard looks at the budget and at memory. */
export const sweepIntervalMs = 1000;
/** Upgrades read the memory at most this often (a read of /proc/self/status costs tens of µs). */
export const pressureCheckIntervalMs = 20;
/** A connection holding less than this unsent is never closed for not reading. */
export const stalledUnsentBytesMin = 1024 * 1024;
/** Close code of a connection closed by the memory guard (RFC 6455: try again later). */
export const closeCodeMemoryBudget = 1013;

/** What the guard needs of a connection. */
export interface GuardedConnection {
  /** Unsent answer bytes (uWS buffer plus held answers). */
  readonly unsentBytes: number;
  /** Bytes the client took since the previous call (drained); resets the count. */
  takeDrainedBytes(): number;
  /** True when a complete message or a pong arrived since the previous call; resets the flag. */
  takeHeardFrom(): boolean;
  /** Sends a WebSocket ping. */
  ping(): void;
  /** Closes with close code 1013 and this reason. */
  endForMemory(reason: string): void;
  /** Starts held requests if the budget allows now. */
  resumeHeld(): void;
}

/** The process's anonymous resident memory (Linux), or the whole RSS elsewhere. */
export function anonymousRssBytes(): number {
  try {
    const status = readFileSync('/proc/self/status', 'latin1');
    const match = /RssAnon:\s+(\d+) kB/.exec(status);
    if (match !== null) return Number(match[1]) * 1024;
  } catch {
    // not Linux: fall through
  }
  return process.memoryUsage.rss();
}

export class MemoryGuard {
  /** Unsent answer bytes of every WebSocket connection together. */
  unsentBytes = 0;
  /** maxBytes of the large-answer requests running now (their answers are not written yet). */
  reservedBytes = 0;
  /** Connections closed for not reading while over budget, and for silent partial frames. */
  closedForUnread = 0;
  closedForSilence = 0;
  /** Requests held because the budget was spent. */
  requestsHeld = 0;
  /** Last anonymous RSS read, and whether it was over the ceiling. */
  lastRssBytes = 0;
  underPressure = false;
  private timer: ClockTimer | null = null;
  private lastReadMs = Number.NEGATIVE_INFINITY;
  /** Connections pinged at the previous sweep (under pressure), with no word from them since. */
  private pinged = new Set<GuardedConnection>();

  constructor(
    readonly budgetBytes: number,
    readonly rssCeilingBytes: number,
    private readonly connections: () => Iterable<GuardedConnection>,
    private readonly clock: Clock,
    private readonly readRss: () => number = anonymousRssBytes,
  ) {}

  start(): void {
    this.timer ??= this.clock.setInterval(() => this.sweep(), sweepIntervalMs, { unref: true });
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = null;
  }

  /**
   * Reads the memory now (at most every pressureCheckIntervalMs) and says whether it is over the
   * ceiling: asked by each WebSocket upgrade, so connections stop being accepted as soon as memory
   * passes the ceiling, not at the next sweep.
   */
  checkPressure(): boolean {
    const now = this.clock.monotonicMs();
    if (now - this.lastReadMs >= pressureCheckIntervalMs) {
      this.lastReadMs = now;
      this.lastRssBytes = this.readRss();
      this.underPressure = this.lastRssBytes > this.rssCeilingBytes;
    }
    return this.underPressure;
  }

  get overBudget(): boolean {
    return this.unsentBytes + this.reservedBytes > this.budgetBytes;
  }

  /** One look at the budget and memory (exported for tests, which call it on a ManualClock). */
  sweep(): void {
    const over = this.overBudget;
    this.lastReadMs = this.clock.monotonicMs();
    this.lastRssBytes = this.readRss();
    this.underPressure = this.lastRssBytes > this.rssCeilingBytes;
    const silent = new Set<GuardedConnection>();
    for (const connection of [...this.connections()]) {
      const drained = connection.takeDrainedBytes();
      const heard = connection.takeHeardFrom();
      if (over && drained === 0 && connection.unsentBytes > stalledUnsentBytesMin) {
        this.closedForUnread++;
        connection.endForMemory(
          `memory budget: ${connection.unsentBytes} answer bytes unread while the broker is over its budget of ${this.budgetBytes}`,
        );
        continue;
      }
      if (!this.underPressure || heard) continue;
      if (this.pinged.has(connection)) {
        this.closedForSilence++;
        connection.endForMemory('memory pressure: nothing complete received (a partial frame?)');
        continue;
      }
      connection.ping();
      silent.add(connection);
    }
    this.pinged = silent;
    if (!this.overBudget) for (const connection of this.connections()) connection.resumeHeld();
  }
}
