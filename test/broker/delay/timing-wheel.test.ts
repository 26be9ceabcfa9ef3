/**
 * TimingWheel against a sorted-list model (fast-check): random schedules at every scale (same ms to
 * years ahead), a clock advancing by steps of every scale, and restarts (a new wheel at the current
 * time, loaded with what was pending, as the delay service does after a broker restart). After every
 * advance the entries handed out are exactly the model's due ones, each once, none early; the next
 * due time and the horizon counts agree with the model.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TimingWheel } from '../../../src/broker/delay/timing-wheel.js';

type Operation =
  | { op: 'add'; aheadMs: number }
  | { op: 'advance'; stepMs: number }
  | { op: 'restart' }
  | { op: 'toNextDue'; extraMs: number }
  | { op: 'addInPast'; behindMs: number };

const scales = [1, 256, 65_536, 2 ** 24, 2 ** 30, 400 * 86_400_000];
const distance = fc
  .tuple(fc.constantFrom(...scales), fc.double({ min: 0, max: 3, noNaN: true }))
  .map(([scale, factor]) => Math.floor(scale * factor));
const operation: fc.Arbitrary<Operation> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant('add' as const), aheadMs: distance }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('advance' as const), stepMs: distance }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('restart' as const) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('toNextDue' as const), extraMs: fc.nat(3) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('addInPast' as const), behindMs: fc.nat(5000) }) },
);

/** The model: a list of [dueMs, ref] kept sorted by due time. */
class SortedModel {
  entries: Array<[number, number]> = [];

  add(dueMs: number, ref: number): void {
    let low = 0;
    let high = this.entries.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (this.entries[middle]![0] <= dueMs) low = middle + 1;
      else high = middle;
    }
    this.entries.splice(low, 0, [dueMs, ref]);
  }

  takeDue(nowMs: number): Array<[number, number]> {
    let end = 0;
    while (end < this.entries.length && this.entries[end]![0] <= nowMs) end++;
    return this.entries.splice(0, end);
  }
}

const sortPairs = (pairs: Array<[number, number]>) => [...pairs].sort((a, b) => a[1] - b[1]);

describe('TimingWheel', () => {
  it('hands out exactly the due entries, once, never early, across advances and restarts (model)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 40 }),
        fc.array(operation, { maxLength: 120 }),
        (startMs, operations) => {
          let now = startMs;
          let wheel = new TimingWheel(now);
          const model = new SortedModel();
          let nextRef = 0;
          for (const operation of operations) {
            switch (operation.op) {
              case 'add':
              case 'addInPast': {
                const due = operation.op === 'add' ? now + operation.aheadMs : now - operation.behindMs;
                wheel.add(due, nextRef);
                model.add(due, nextRef);
                nextRef++;
                break;
              }
              case 'advance':
              case 'toNextDue': {
                if (operation.op === 'advance') now += operation.stepMs;
                else now = Math.max(now, (model.entries[0]?.[0] ?? now) + operation.extraMs);
                const handed: Array<[number, number]> = [];
                wheel.advance(now, (due, ref) => handed.push([due, ref]));
                for (const [due] of handed) expect(due).toBeLessThanOrEqual(now);
                expect(sortPairs(handed)).toEqual(sortPairs(model.takeDue(now)));
                break;
              }
              case 'restart': {
                wheel = new TimingWheel(now);
                for (const [due, ref] of model.entries) wheel.add(due, ref);
                break;
              }
            }
            expect(wheel.size).toBe(model.entries.length);
            expect(wheel.nextDueMs()).toBe(model.entries[0]?.[0] ?? null);
          }
          const counts = wheel.horizonCounts(now);
          const ahead = model.entries.map(([due]) => due - now);
          expect(counts).toEqual({
            withinMinute: ahead.filter((ms) => ms < 60_000).length,
            withinHour: ahead.filter((ms) => ms >= 60_000 && ms < 3_600_000).length,
            withinDay: ahead.filter((ms) => ms >= 3_600_000 && ms < 86_400_000).length,
            later: ahead.filter((ms) => ms >= 86_400_000).length,
          });
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('advancing ms by ms hands each entry out at its own ms', () => {
    const start = 1_700_000_000_000;
    const wheel = new TimingWheel(start);
    const dues = [1, 2, 255, 256, 257, 1000, 65_535, 65_536, 70_000];
    for (const [index, ahead] of dues.entries()) wheel.add(start + ahead, index);
    const firedAt = new Map<number, number>();
    for (let now = start + 1; now <= start + 70_000; now++) {
      wheel.advance(now, (due, ref) => {
        expect(due).toBe(now);
        firedAt.set(ref, now);
      });
    }
    expect(firedAt.size).toBe(dues.length);
    expect(wheel.size).toBe(0);
    expect(wheel.nextDueMs()).toBeNull();
  });

  it('keeps a year of far entries in compact arrays, not objects', () => {
    const start = 1_700_000_000_000;
    const wheel = new TimingWheel(start);
    const count = 100_000;
    for (let i = 0; i < count; i++) wheel.add(start + Math.floor((i / count) * 365 * 86_400_000), i);
    // 16 bytes an entry, plus at most one partly filled 64 KiB chunk per list.
    expect(wheel.capacityBytes).toBeLessThan(count * 16 + 60 * 65_536);
    expect(wheel.horizonCounts(start).later).toBeGreaterThan(count * 0.99);
  });
});
