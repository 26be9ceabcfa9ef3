/**
 * Time for the broker and the storage engine, injected: wall time, monotonic time and timers behind
 * one interface, so that tests can drive retention, segment rolls by age, flush intervals and
 * long-poll deadlines with a ManualClock instead of waiting.
 *
 *  - `nowMs()` is wall time (ms since the epoch): for what is stored or compared with record
 *    timestamps (retention, topic creation times, names of set-aside directories). It may jump.
 *  - `monotonicMs()` never goes back: for deadlines and ages measured inside the process (long-poll
 *    deadlines, segment age). Its origin is arbitrary.
 *  - Timers run on monotonic time. A timer is `unref`'d on request: it then does not keep the process
 *    alive (background work: flush, checkpoint, retention); without it, it does (a long-poll a caller
 *    awaits).
 *
 * One clock per broker: `BrokerOptions.clock` is handed down to every partition log and later to
 * every timed feature, so one ManualClock drives all of them in a test. `systemClock` (the default)
 * is the real one. Durations measured only for reports (e.g. how long an open took) may use
 * `performance.now()` directly: they change no decision.
 *
 * Single-threaded: a clock and its timers belong to one event loop.
 */
import { assert } from './assert.js';
import { timerDelayMsMax } from './limits.js';

/** A scheduled callback; `cancel` is idempotent. */
export interface ClockTimer {
  cancel(): void;
}

export interface TimerOptions {
  /** Do not keep the process alive while only this timer is pending (Node's `unref`). Default false. */
  unref?: boolean;
}

export interface Clock {
  /** Wall time, ms since the epoch (an integer for the system clock). */
  nowMs(): number;
  /** Monotonic time in ms from an arbitrary origin: never decreases. */
  monotonicMs(): number;
  /** Calls `callback` once, `delayMs` (clamped to >= 0) from now. */
  setTimeout(callback: () => void, delayMs: number, options?: TimerOptions): ClockTimer;
  /** Calls `callback` every `intervalMs` (clamped to >= 1) until cancelled. */
  setInterval(callback: () => void, intervalMs: number, options?: TimerOptions): ClockTimer;
  /** Cancels `timer` (same as `timer.cancel()`); null and undefined are ignored. */
  clearTimer(timer: ClockTimer | null | undefined): void;
}

function checkDelay(delayMs: number): void {
  assert(!Number.isNaN(delayMs), 'timer delay is NaN');
}

/**
 * A timer of the system clock: one Node.js timer at a time, re-armed for intervals and for delays
 * past `timerDelayMsMax` (limits.ts), which Node would otherwise shorten to 1 ms.
 */
class SystemTimer implements ClockTimer {
  private handle: NodeJS.Timeout | null = null;
  private cancelled = false;
  private dueMs: number;

  constructor(
    private readonly callback: () => void,
    delayMs: number,
    private readonly intervalMs: number | null,
    private readonly unref: boolean,
  ) {
    this.dueMs = performance.now() + delayMs;
    this.arm(delayMs);
  }

  private arm(delayMs: number): void {
    const step = Math.min(Math.max(0, delayMs), timerDelayMsMax);
    this.handle = setTimeout(() => this.fire(), step);
    if (this.unref) this.handle.unref();
  }

  private fire(): void {
    this.handle = null;
    if (this.cancelled) return;
    const remainingMs = this.dueMs - performance.now();
    // Only a chained long delay can be early by more than timer jitter.
    if (remainingMs > timerDelayMsMax / 2) {
      this.arm(remainingMs);
      return;
    }
    if (this.intervalMs !== null) {
      this.dueMs = performance.now() + this.intervalMs;
      this.arm(this.intervalMs);
    } else {
      this.cancelled = true;
    }
    this.callback();
  }

  cancel(): void {
    this.cancelled = true;
    if (this.handle !== null) clearTimeout(this.handle);
    this.handle = null;
  }
}

/** The real clock: `Date.now()`, `performance.now()` and Node.js timers. */
export const systemClock: Clock = {
  nowMs: () => Date.now(),
  monotonicMs: () => performance.now(),
  setTimeout(callback, delayMs, options = {}) {
    checkDelay(delayMs);
    return new SystemTimer(callback, Math.max(0, delayMs), null, options.unref ?? false);
  },
  setInterval(callback, intervalMs, options = {}) {
    checkDelay(intervalMs);
    const interval = Math.max(1, intervalMs);
    return new SystemTimer(callback, interval, interval, options.unref ?? false);
  },
  clearTimer(timer) {
    timer?.cancel();
  },
};

interface ManualTimerState {
  readonly sequence: number;
  dueMs: number;
  readonly intervalMs: number | null;
  readonly callback: () => void;
  cancelled: boolean;
}

/** Wall time a ManualClock starts at by default: 2023-11-14T22:13:20Z. */
export const manualClockStartMs = 1_700_000_000_000;

/**
 * A clock for tests: time moves only when the test says so. `advance(ms)` runs every timer that
 * falls due on the way, in due-time order (timers due at the same time in the order they were
 * scheduled), each with the clock set to its due time; timers scheduled by those callbacks run in
 * the same call when they fall due before its end. Interval timers fire once per period passed.
 * Callbacks run synchronously inside `advance`; promises they settle continue after it returns.
 * `set(ms)` moves only the wall time (a jump, as NTP may make): timers run on monotonic time.
 * Timers never keep a process alive (there is no event-loop handle behind them).
 */
export class ManualClock implements Clock {
  private wallMs: number;
  private monotonic = 0;
  private nextSequence = 0;
  private readonly timers = new Set<ManualTimerState>();
  private advancing = false;

  constructor(startWallMs = manualClockStartMs) {
    this.wallMs = startWallMs;
  }

  nowMs(): number {
    return this.wallMs;
  }

  monotonicMs(): number {
    return this.monotonic;
  }

  /** Timers scheduled and neither fired (one-shot) nor cancelled. */
  get pendingTimerCount(): number {
    return this.timers.size;
  }

  setTimeout(callback: () => void, delayMs: number, _options?: TimerOptions): ClockTimer {
    checkDelay(delayMs);
    return this.schedule(callback, Math.max(0, delayMs), null);
  }

  setInterval(callback: () => void, intervalMs: number, _options?: TimerOptions): ClockTimer {
    checkDelay(intervalMs);
    const interval = Math.max(1, intervalMs);
    return this.schedule(callback, interval, interval);
  }

  clearTimer(timer: ClockTimer | null | undefined): void {
    timer?.cancel();
  }

  /** Sets the wall time (ms since the epoch); monotonic time and timers are not affected. */
  set(wallMs: number): void {
    assert(Number.isFinite(wallMs), 'ManualClock.set takes a finite time');
    this.wallMs = wallMs;
  }

  /**
   * Moves both times forward by `ms` (>= 0), running every timer that falls due on the way.
   * Not reentrant: a timer callback must not call `advance`.
   */
  advance(ms: number): void {
    assert(Number.isFinite(ms) && ms >= 0, 'ManualClock.advance takes a finite time >= 0');
    assert(!this.advancing, 'ManualClock.advance called from a timer callback');
    const endMs = this.monotonic + ms;
    this.advancing = true;
    try {
      for (;;) {
        const next = this.nextDue(endMs);
        if (next === null) break;
        this.moveTo(next.dueMs);
        if (next.intervalMs === null) {
          next.cancelled = true;
          this.timers.delete(next);
        } else {
          next.dueMs += next.intervalMs;
        }
        next.callback();
      }
      this.moveTo(endMs);
    } finally {
      this.advancing = false;
    }
  }

  /** Advances to the next due timer, if any, and runs it (and any due at the same time). Returns whether one ran. */
  runNext(): boolean {
    const next = this.nextDue(Number.POSITIVE_INFINITY);
    if (next === null) return false;
    this.advance(next.dueMs - this.monotonic);
    return true;
  }

  private moveTo(monotonicMs: number): void {
    this.wallMs += monotonicMs - this.monotonic;
    this.monotonic = monotonicMs;
  }

  /** The timer due first at or before `endMs` (ties: scheduled first), or null. Linear: tests hold few timers. */
  private nextDue(endMs: number): ManualTimerState | null {
    let best: ManualTimerState | null = null;
    for (const timer of this.timers) {
      if (timer.dueMs > endMs) continue;
      if (
        best === null ||
        timer.dueMs < best.dueMs ||
        (timer.dueMs === best.dueMs && timer.sequence < best.sequence)
      ) {
        best = timer;
      }
    }
    return best;
  }

  private schedule(callback: () => void, delayMs: number, intervalMs: number | null): ClockTimer {
    const state: ManualTimerState = {
      sequence: this.nextSequence++,
      dueMs: this.monotonic + delayMs,
      intervalMs,
      callback,
      cancelled: false,
    };
    this.timers.add(state);
    return {
      cancel: () => {
        state.cancelled = true;
        this.timers.delete(state);
      },
    };
  }
}
