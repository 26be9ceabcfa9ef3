/**
 * fdatasync on the event loop, for a lightly loaded `always` log (issue 15, session 10).
 *
 * A group-commit round normally runs its fdatasync in libuv's thread pool: the event loop hands the
 * call to a pool thread (one wake-up), the pool thread hands the completion back (a second one),
 * and only then are the appends acknowledged. On a lightly loaded log (one append per round, as at
 * 1,000 msg/s) the two hand-offs are most of what the acknowledgement waits for beyond the disk,
 * and on a 2-vCPU machine each may wait for a CPU. Alternated on the quiet machine (broker and
 * bench client at 1,000 msg/s, 5 s runs, medians of 3 runs per invocation): 100 B p99 1.32 / 1.30 /
 * 1.34 / 1.43 ms with the pool, 1.28 / 0.85 / 0.72 / 0.85 ms with this (p50 ~270 vs ~225 µs);
 * 16 KiB 1.73 / 1.80 / 1.66 vs 1.41 / 1.65 / 1.34 ms. Redis, with `appendfsync always`, syncs on
 * its one thread too.
 *
 * The event loop is blocked while the call runs, so it is used only while that stays cheap, for the
 * whole process (every log shares the one loop), by `InlineSyncBudget`:
 *  - a share: the time spent in inline calls is a debt that drains at `inlineSyncShareMax` ms per ms
 *    of wall time (a leaky bucket); a call may start while the debt is below `inlineSyncWindowMs` ×
 *    `inlineSyncShareMax` (25 ms). Over any long span the loop spends at most that share in inline
 *    calls, plus the one call that started last; a call longer than the bucket keeps them off
 *    until its debt has drained (a 600 ms call: ~2.3 s).
 *  - slow calls: `inlineSyncSlowCallsMax` calls within `inlineSyncCoolDownMs` that took over
 *    `inlineSyncSlowMs` each, or one call over the whole bucket (25 ms, a stalled disk), turn inline
 *    calls off for `inlineSyncCoolDownMs` (the pool again, where a slow fdatasync blocks nothing
 *    else). One 2–25 ms call alone does not: this VM's disk has an fdatasync over 2 ms every few
 *    seconds (p99.9 ~1.7 ms), and turning inline calls off for each left them off ~40 % of a latency
 *    run. A disk slow throughout (a spinning one, ~10 ms) is found within three calls.
 * A loaded log never syncs inline (sync-scheduler.ts): its rounds go to the pool, so appends keep
 * arriving while one runs and the next fdatasync covers them all (group commit).
 */

/** With `inlineSyncShareMax`, the size of the bucket: 25 ms of inline calls may be owed at once. */
export const inlineSyncWindowMs = 100;
/** Most of its time the event loop may spend in inline fdatasync calls in the long run. */
export const inlineSyncShareMax = 0.25;
/** An inline fdatasync that took longer than this is slow. */
export const inlineSyncSlowMs = 2;
/** This many slow inline calls within `inlineSyncCoolDownMs` turn inline calls off for that long. */
export const inlineSyncSlowCallsMax = 3;
/** How long inline calls stay off after too many slow ones (and the span they are counted over). */
export const inlineSyncCoolDownMs = 1000;

export interface InlineSyncBudgetOptions {
  /** Monotonic milliseconds (default `performance.now`); tests pass a fake clock. */
  now?: () => number;
  windowMs?: number;
  shareMax?: number;
  slowMs?: number;
  slowCallsMax?: number;
  coolDownMs?: number;
}

/** How much inline fdatasync the event loop can still afford (one per process: `inlineSyncBudget`). */
export class InlineSyncBudget {
  private readonly now: () => number;
  private readonly shareMax: number;
  private readonly bucketMs: number;
  private readonly slowMs: number;
  private readonly slowCallsMax: number;
  private readonly coolDownMs: number;
  /** When the last `slowCallsMax` slow calls started, oldest first. */
  private readonly slowCallTimes: number[] = [];
  /** Inline time owed, as of `debtAtMs`: drains at `shareMax` per ms. */
  private debtMs = 0;
  private debtAtMs = Number.NEGATIVE_INFINITY;
  private offUntilMs = Number.NEGATIVE_INFINITY;
  /** Total time spent in inline calls (metrics). */
  spentMs = 0;
  /** Inline calls recorded, and how many of them were slow (metrics and tests). */
  calls = 0;
  slowCalls = 0;
  /** Times inline calls were turned off for a cool-down. */
  coolDowns = 0;

  constructor(options: InlineSyncBudgetOptions = {}) {
    this.now = options.now ?? (() => performance.now());
    this.shareMax = options.shareMax ?? inlineSyncShareMax;
    this.bucketMs = (options.windowMs ?? inlineSyncWindowMs) * this.shareMax;
    this.slowMs = options.slowMs ?? inlineSyncSlowMs;
    this.slowCallsMax = options.slowCallsMax ?? inlineSyncSlowCallsMax;
    this.coolDownMs = options.coolDownMs ?? inlineSyncCoolDownMs;
  }

  /**
   * False: never inline, every fdatasync in the pool (`spillway broker --no-inline-fdatasync`, or an
   * embedding process that must never block its event loop on the disk).
   */
  enabled = true;

  /** Whether an fdatasync may run on the event loop now. */
  allows(): boolean {
    if (!this.enabled) return false;
    const now = this.now();
    if (now < this.offUntilMs) return false;
    return this.drainedDebt(now) < this.bucketMs;
  }

  /** Records an inline call that took `durationMs` (ended now). */
  record(durationMs: number): void {
    const now = this.now();
    this.calls++;
    this.spentMs += durationMs;
    this.debtMs = this.drainedDebt(now) + durationMs;
    this.debtAtMs = now;
    if (durationMs <= this.slowMs) return;
    this.slowCalls++;
    // Slow calls are counted by when they started: three long ones cannot end within the span.
    this.slowCallTimes.push(now - durationMs);
    if (this.slowCallTimes.length > this.slowCallsMax) this.slowCallTimes.shift();
    const tooMany =
      this.slowCallTimes.length === this.slowCallsMax && now - this.slowCallTimes[0]! <= this.coolDownMs;
    if (tooMany || durationMs > this.bucketMs) {
      this.offUntilMs = now + this.coolDownMs;
      this.coolDowns++;
      this.slowCallTimes.length = 0;
    }
  }

  private drainedDebt(now: number): number {
    if (this.debtMs === 0) return 0;
    return Math.max(0, this.debtMs - (now - this.debtAtMs) * this.shareMax);
  }

  /** The monotonic time an inline call starts at (the budget's clock). */
  clock(): number {
    return this.now();
  }
}

/** The process's budget: every log of the process shares one event loop. */
export const inlineSyncBudget = new InlineSyncBudget();
