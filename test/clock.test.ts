import { describe, expect, it } from 'vitest';
import { type ClockTimer, ManualClock, manualClockStartMs, systemClock } from '../src/clock.js';
import { timerDelayMsMax } from '../src/limits.js';

describe('ManualClock', () => {
  it('starts at a fixed time; advance moves wall and monotonic time, set only the wall time', () => {
    const clock = new ManualClock();
    expect([clock.nowMs(), clock.monotonicMs()]).toEqual([manualClockStartMs, 0]);
    clock.advance(1500);
    expect([clock.nowMs(), clock.monotonicMs()]).toEqual([manualClockStartMs + 1500, 1500]);
    clock.set(5000);
    expect([clock.nowMs(), clock.monotonicMs()]).toEqual([5000, 1500]);
    clock.advance(10);
    expect([clock.nowMs(), clock.monotonicMs()]).toEqual([5010, 1510]);
    expect(new ManualClock(42).nowMs()).toBe(42);
  });

  it('runs due timers in due order, ties in scheduling order, each at its due time', () => {
    const clock = new ManualClock(0);
    const fired: string[] = [];
    const at = (name: string) => () => fired.push(`${name}@${clock.monotonicMs()}/${clock.nowMs()}`);
    clock.setTimeout(at('c'), 30);
    clock.setTimeout(at('a'), 10);
    clock.setTimeout(at('b1'), 20);
    clock.setTimeout(at('b2'), 20);
    clock.setTimeout(at('late'), 31);
    clock.advance(29);
    expect(fired).toEqual(['a@10/10', 'b1@20/20', 'b2@20/20']);
    clock.advance(1);
    expect(fired).toEqual(['a@10/10', 'b1@20/20', 'b2@20/20', 'c@30/30']);
    expect(clock.monotonicMs()).toBe(30);
    expect(clock.pendingTimerCount).toBe(1);
  });

  it('runs timers scheduled by callbacks in the same advance when they fall due before its end', () => {
    const clock = new ManualClock(0);
    const fired: string[] = [];
    clock.setTimeout(() => {
      fired.push(`first@${clock.monotonicMs()}`);
      clock.setTimeout(() => fired.push(`now@${clock.monotonicMs()}`), 0);
      clock.setTimeout(() => fired.push(`inside@${clock.monotonicMs()}`), 5);
      clock.setTimeout(() => fired.push(`beyond@${clock.monotonicMs()}`), 50);
    }, 10);
    clock.advance(20);
    expect(fired).toEqual(['first@10', 'now@10', 'inside@15']);
    clock.advance(40);
    expect(fired).toEqual(['first@10', 'now@10', 'inside@15', 'beyond@60']);
  });

  it('advance(0) runs timers due now, and negative delays count as 0', () => {
    const clock = new ManualClock();
    let count = 0;
    clock.setTimeout(() => count++, 0);
    clock.setTimeout(() => count++, -5);
    expect(count).toBe(0);
    clock.advance(0);
    expect(count).toBe(2);
  });

  it('fires an interval once per period passed, until cancelled (also from its own callback)', () => {
    const clock = new ManualClock(0);
    const ticks: number[] = [];
    const interval = clock.setInterval(() => ticks.push(clock.monotonicMs()), 100);
    clock.advance(350);
    expect(ticks).toEqual([100, 200, 300]);
    clock.clearTimer(interval);
    clock.advance(1000);
    expect(ticks).toEqual([100, 200, 300]);

    let selfCancelled = 0;
    const own: { timer: ClockTimer | null } = { timer: null };
    own.timer = clock.setInterval(() => {
      selfCancelled++;
      if (selfCancelled === 2) own.timer?.cancel();
    }, 10);
    clock.advance(100);
    expect(selfCancelled).toBe(2);
    expect(clock.pendingTimerCount).toBe(0);
  });

  it('an interval of 0 fires once per millisecond, not forever', () => {
    const clock = new ManualClock();
    let count = 0;
    clock.setInterval(() => count++, 0);
    clock.advance(5);
    expect(count).toBe(5);
  });

  it('cancelled timers never fire; cancel and clearTimer are idempotent', () => {
    const clock = new ManualClock();
    const fired: string[] = [];
    const a = clock.setTimeout(() => fired.push('a'), 10);
    const b = clock.setTimeout(() => fired.push('b'), 10);
    clock.setTimeout(() => {
      fired.push('c');
      b.cancel(); // Due at the same time, not run yet: cancelled from an earlier callback.
    }, 5);
    a.cancel();
    a.cancel();
    clock.clearTimer(a);
    clock.clearTimer(null);
    clock.clearTimer(undefined);
    expect(clock.pendingTimerCount).toBe(2);
    clock.advance(100);
    expect(fired).toEqual(['c']);
    expect(clock.pendingTimerCount).toBe(0);
  });

  it('runNext jumps to the next due timer', () => {
    const clock = new ManualClock(0);
    const fired: number[] = [];
    clock.setTimeout(() => fired.push(clock.monotonicMs()), 7_000);
    clock.setTimeout(() => fired.push(clock.monotonicMs()), 3_000);
    expect(clock.runNext()).toBe(true);
    expect(fired).toEqual([3000]);
    expect(clock.runNext()).toBe(true);
    expect(fired).toEqual([3000, 7000]);
    expect(clock.runNext()).toBe(false);
    expect(clock.monotonicMs()).toBe(7000);
  });
});

describe('systemClock', () => {
  const nextTimerTurn = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 5));

  it('reads Date.now and a monotonic time', () => {
    const before = Date.now();
    const now = systemClock.nowMs();
    expect(now).toBeGreaterThanOrEqual(before);
    expect(now).toBeLessThanOrEqual(Date.now());
    const first = systemClock.monotonicMs();
    expect(systemClock.monotonicMs()).toBeGreaterThanOrEqual(first);
  });

  it('fires timeouts and intervals, and not once cancelled', async () => {
    const fired: string[] = [];
    await new Promise<void>((resolve) => systemClock.setTimeout(resolve, 1));
    const cancelled = systemClock.setTimeout(() => fired.push('cancelled'), 0, { unref: true });
    systemClock.clearTimer(cancelled);
    let ticks = 0;
    await new Promise<void>((resolve) => {
      const interval = systemClock.setInterval(() => {
        ticks++;
        if (ticks === 3) {
          interval.cancel();
          resolve();
        }
      }, 1);
    });
    await nextTimerTurn();
    expect(ticks).toBe(3);
    expect(fired).toEqual([]);
  });

  it('waits past the Node.js timer limit instead of firing at once', async () => {
    // Node fires a plain setTimeout with a longer delay after 1 ms (with a warning).
    let fired = false;
    const timer = systemClock.setTimeout(() => {
      fired = true;
    }, timerDelayMsMax + 10);
    for (let i = 0; i < 4; i++) await nextTimerTurn();
    expect(fired).toBe(false);
    timer.cancel();
  });
});
