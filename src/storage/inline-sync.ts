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
 * whole process (every log shares the one loop): `InlineSyncBudget` allows inline calls while they
 * took at most `inlineSyncShareMax` of the current `inlineSyncWindowMs` window, and not at all for
 * `inlineSyncCoolDownMs` once `inlineSyncSlowCallsMax` calls within that long took longer than
 * `inlineSyncSlowMs` each (a slow or busy disk: the pool again, where a slow fdatasync blocks
 * nothing else). One slow call alone does not count: this VM's disk has an fdatasync over 2 ms
 * every few seconds (p99.9 ~1.7 ms), and turning inline calls off for each left them off ~40 % of
 * a latency run. A disk slow throughout (a spinning one, ~10 ms) is found within three calls, and
 * blocks the loop for at most three such calls per cool-down. A loaded log never syncs inline
 * (sync-scheduler.ts): its rounds go to the pool, so appends keep arriving while one runs and the
 * next fdatasync covers them all (group commit).
 */

/** Length of the window the inline share is measured over. */
export const inlineSyncWindowMs = 100;
/** Most of a window the event loop may spend in inline fdatasync calls (25 ms of every 100 ms). */
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
  private readonly windowMs: number;
  private readonly spendMaxMs: number;
  private readonly slowMs: number;
  private readonly slowCallsMax: number;
  private readonly coolDownMs: number;
  /** When the last `slowCallsMax` slow calls ended, oldest first. */
  private readonly slowCallTimes: number[] = [];
  private windowStartMs = Number.NEGATIVE_INFINITY;
  private spentMs = 0;
  private offUntilMs = Number.NEGATIVE_INFINITY;
  /** Inline calls recorded, and how many of them were slow (metrics and tests). */
  calls = 0;
  slowCalls = 0;
  /** Times inline calls were turned off for a cool-down. */
  coolDowns = 0;

  constructor(options: InlineSyncBudgetOptions = {}) {
    this.now = options.now ?? (() => performance.now());
    this.windowMs = options.windowMs ?? inlineSyncWindowMs;
    this.spendMaxMs = this.windowMs * (options.shareMax ?? inlineSyncShareMax);
    this.slowMs = options.slowMs ?? inlineSyncSlowMs;
    this.slowCallsMax = options.slowCallsMax ?? inlineSyncSlowCallsMax;
    this.coolDownMs = options.coolDownMs ?? inlineSyncCoolDownMs;
  }

  /** Whether an fdatasync may run on the event loop now. */
  allows(): boolean {
    const now = this.now();
    if (now < this.offUntilMs) return false;
    if (now - this.windowStartMs >= this.windowMs) {
      this.windowStartMs = now;
      this.spentMs = 0;
    }
    return this.spentMs < this.spendMaxMs;
  }

  /** Records an inline call that took `durationMs`. */
  record(durationMs: number): void {
    this.calls++;
    this.spentMs += durationMs;
    if (durationMs <= this.slowMs) return;
    this.slowCalls++;
    const now = this.now();
    this.slowCallTimes.push(now);
    if (this.slowCallTimes.length > this.slowCallsMax) this.slowCallTimes.shift();
    if (this.slowCallTimes.length === this.slowCallsMax && now - this.slowCallTimes[0]! <= this.coolDownMs) {
      this.offUntilMs = now + this.coolDownMs;
      this.coolDowns++;
      this.slowCallTimes.length = 0;
    }
  }

  /** The monotonic time an inline call starts at (the budget's clock). */
  clock(): number {
    return this.now();
  }
}

/** The process's budget: every log of the process shares one event loop. */
export const inlineSyncBudget = new InlineSyncBudget();
