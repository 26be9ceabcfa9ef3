/** FinishedPrefix against a simple model: random deliveries, finishes in any order, rewinds (fast-check). */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { FinishedPrefix } from '../../src/client/finished-prefix.js';

describe('FinishedPrefix', () => {
  test('committable is the end of the longest finished run from the start', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1000 }),
        fc.array(
          fc.oneof(
            fc.constant('deliver' as const),
            fc.nat({ max: 50 }),
            fc.record({ rewind: fc.nat({ max: 50 }) }),
          ),
          {
            maxLength: 200,
          },
        ),
        (start, steps) => {
          const prefix = new FinishedPrefix(start);
          // Model: delivered offsets (with gaps of 0..2) and which are finished.
          let delivered: number[] = [];
          const finished = new Set<number>();
          let committable = start;
          let next = start;
          for (const step of steps) {
            if (step === 'deliver') {
              prefix.deliver(next);
              delivered.push(next);
              next += 1 + (next % 3 === 0 ? 1 : 0);
            } else if (typeof step === 'number') {
              const pending = delivered.filter((offset) => !finished.has(offset) && offset >= committable);
              if (pending.length === 0) continue;
              const offset = pending[step % pending.length]!;
              expect(prefix.finish(offset)).toBe(true);
              expect(prefix.finish(offset)).toBe(false);
              finished.add(offset);
              for (const d of delivered) {
                if (d < committable) continue;
                if (!finished.has(d)) break;
                committable = d + 1;
              }
            } else {
              const pending = delivered.filter((offset) => !finished.has(offset) && offset >= committable);
              if (pending.length === 0) continue;
              const offset = pending[step.rewind % pending.length]!;
              prefix.rewind(offset);
              delivered = delivered.filter((d) => d < offset);
              for (const f of [...finished]) if (f >= offset) finished.delete(f);
              next = offset;
            }
            expect(prefix.committable).toBe(committable);
            expect(prefix.pendingCount).toBe(delivered.filter((d) => d >= committable).length);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  test('drained resolves once nothing delivered is pending; an offset never delivered is not finished', async () => {
    const prefix = new FinishedPrefix(10);
    expect(prefix.finish(10)).toBe(false);
    prefix.deliver(10);
    prefix.deliver(11);
    let drained = false;
    const waiting = prefix.drained().then(() => {
      drained = true;
    });
    prefix.finish(11);
    await Promise.resolve();
    expect(drained).toBe(false);
    prefix.finish(10);
    await waiting;
    expect(prefix.committable).toBe(12);
  });
});
