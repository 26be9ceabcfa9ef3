/**
 * InlineSyncBudget (inline-sync.ts) on a fake clock: the share of the event loop inline fdatasync
 * calls may take in the long run, the cool-downs after slow calls, and a stalled disk (one call
 * longer than the whole bucket) keeping them off until its time has drained.
 */
import { describe, expect, it } from 'vitest';
import {
  InlineSyncBudget,
  inlineSyncCoolDownMs,
  inlineSyncShareMax,
  inlineSyncWindowMs,
} from '../../src/storage/inline-sync.js';

function fakeBudget() {
  let nowMs = 0;
  const budget = new InlineSyncBudget({ now: () => nowMs });
  return {
    budget,
    advance: (ms: number) => {
      nowMs += ms;
    },
    /** One inline call of `ms`, as the scheduler makes it: allows(), the call, record(). */
    call: (ms: number): boolean => {
      if (!budget.allows()) return false;
      nowMs += ms;
      budget.record(ms);
      return true;
    },
    now: () => nowMs,
  };
}

/** Calls of `durationMs` back to back whenever allowed (else 1 ms passes) for `spanMs`: the loop's share spent. */
function blockedShare(durationMs: number, spanMs: number): number {
  const { call, advance, now } = fakeBudget();
  let blocked = 0;
  while (now() < spanMs) {
    if (call(durationMs)) blocked += durationMs;
    else advance(1);
  }
  return blocked / now();
}

describe('InlineSyncBudget', () => {
  it.each([0.1, 1, 2, 10, 150, 600, 5000])(
    'calls of %s ms back to back block the loop at most its share in the long run',
    (durationMs) => {
      // Over 60 s: the share, plus at most the bucket (25 ms owed at once) and one call beyond it.
      const bucketMs = inlineSyncWindowMs * inlineSyncShareMax;
      expect(blockedShare(durationMs, 60_000)).toBeLessThanOrEqual(
        inlineSyncShareMax + (bucketMs + durationMs) / 60_000,
      );
    },
  );

  it('a call longer than the bucket turns inline calls off at once, and they stay off until its time drained', () => {
    const { budget, call, advance } = fakeBudget();
    expect(call(600)).toBe(true);
    expect(budget.coolDowns).toBe(1);
    advance(inlineSyncCoolDownMs + 1); // cool-down over, but 600 - 1001 × 0.25 ms still owed
    expect(budget.allows()).toBe(false);
    advance(2301 - (inlineSyncCoolDownMs + 1)); // 600 - 2301 × 0.25 < 25
    expect(budget.allows()).toBe(true);
  });

  it('one slow call of 2-25 ms leaves inline calls on; three within the cool-down span turn them off', () => {
    const { budget, call, advance } = fakeBudget();
    expect(call(5)).toBe(true);
    advance(600);
    expect(call(5)).toBe(true);
    advance(600);
    expect([call(5), budget.coolDowns]).toEqual([true, 0]); // the first is more than 1 s back
    advance(100);
    expect([call(5), budget.coolDowns]).toEqual([true, 1]);
    expect(budget.allows()).toBe(false);
    advance(inlineSyncCoolDownMs);
    expect(budget.allows()).toBe(true);
    // The slow calls before the cool-down no longer count: two more slow calls do not turn it off.
    expect([call(5), call(5), budget.coolDowns]).toEqual([true, true, 1]);
    expect([budget.calls, budget.slowCalls]).toEqual([6, 6]);
  });
});
