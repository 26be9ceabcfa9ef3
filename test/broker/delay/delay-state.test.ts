/**
 * DelayStateMachine against a model (a set of handled refs per batch), with random fired markers
 * (fast-check): every entry goes through the codec first; the snapshot rebuilds the same state;
 * completed batches fold into done ranges; dropping below a log start forgets what is below.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type DelayEntry,
  DelayStateMachine,
  delayStateCodec,
} from '../../../src/broker/delay/delay-state.js';
import { type EntryRecord, statePackr } from '../../../src/broker/state/state-machine.js';

/** Batches of the model `__delay` log: [base, count], each behind its target record at base - 1. */
function layout(counts: number[]): Array<[number, number]> {
  const batches: Array<[number, number]> = [];
  let offset = 0;
  for (const count of counts) {
    batches.push([offset + 1, count]);
    offset += 1 + count;
  }
  return batches;
}

function throughCodec(entry: DelayEntry): DelayEntry {
  const encoded = delayStateCodec.encode(entry);
  const key = typeof encoded.key === 'string' ? encoded.key : null;
  const record: EntryRecord = {
    key: () => (key === null ? null : Buffer.from(key)),
    keyText: () => key,
    value: () => encoded.value,
  };
  return delayStateCodec.decode(record);
}

describe('DelayStateMachine', () => {
  it('tracks handled messages like a set, through the codec and a snapshot', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 12 }),
        fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 60 }),
        fc.boolean(),
        (counts, picks, clean) => {
          const batches = layout(counts);
          const machine = new DelayStateMachine();
          const handled = new Set<number>();
          for (const [batchPick, recordPick] of picks) {
            const [base, count] = batches[batchPick % batches.length]!;
            const ref = base + (recordPick % count);
            machine.apply(throughCodec({ t: 'f', key: 't\u00000', r: [ref, base, count], e: ref }));
            handled.add(ref);
          }
          machine.apply(throughCodec({ t: 'c', v: clean }));
          const copy = new DelayStateMachine();
          for (const entry of machine.snapshot()) copy.apply(throughCodec(entry));
          for (const state of [machine, copy]) {
            for (const [base, count] of batches) {
              for (let ref = base; ref < base + count; ref++) {
                expect(state.isHandled(ref, base)).toBe(handled.has(ref));
              }
              let complete = true;
              for (let ref = base; ref < base + count; ref++) complete &&= handled.has(ref);
              expect(state.isDoneRange(base - 1, base + count)).toBe(complete);
            }
            expect(state.closedCleanly).toBe(clean);
            expect([...state.fences.keys()]).toEqual(picks.length > 0 ? ['t\u00000'] : []);
          }
          // Adjacent complete batches merge: never more ranges than batches.
          expect(copy.rangeCount).toBeLessThanOrEqual(batches.length);
          expect(copy.rangeCount).toBe(machine.rangeCount);
          expect(copy.partialCount).toBe(machine.partialCount);
          // The log start moves past the first batch: its state is gone.
          const [secondBase] = batches[1] ?? [batches[0]![0] + batches[0]![1] + 1];
          machine.apply(throughCodec({ t: 'L', o: secondBase - 1 }));
          expect(machine.firstNotDone(secondBase - 1)).toBe(copy.firstNotDone(secondBase - 1));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('refuses malformed entries', () => {
    const record = (key: string, value: Uint8Array | null): EntryRecord => ({
      key: () => Buffer.from(key),
      keyText: () => key,
      value: () => value,
    });
    expect(() => delayStateCodec.decode(record('k', null))).toThrow(/without key or value/);
    expect(() => delayStateCodec.decode(record('k', statePackr.pack({ t: 'f', r: [1, 2], e: 0 })))).toThrow(
      /triples/,
    );
    expect(() => delayStateCodec.decode(record('k', statePackr.pack({ t: 'e', e: -1 })))).toThrow(/integer/);
    expect(() => delayStateCodec.decode(record('k', statePackr.pack({ t: 'z' })))).toThrow(/unknown kind/);
    expect(() => delayStateCodec.decode(record('k', statePackr.pack({ t: 'x', o: [-1] })))).toThrow(
      /integers/,
    );
  });

  it('an orphan target record is done: it joins the ranges around it and survives a snapshot', () => {
    const machine = new DelayStateMachine();
    // Batch [1, 3) behind its target 0, an orphan target at 3, then batch [5, 6) behind target 4.
    machine.apply(throughCodec({ t: 'f', key: 't\u00000', r: [1, 1, 2, 2, 1, 2], e: 0 }));
    expect(machine.firstNotDone(0)).toBe(3);
    machine.apply(throughCodec({ t: 'x', o: [3] }));
    expect(machine.firstNotDone(0)).toBe(4);
    machine.apply(throughCodec({ t: 'f', key: 't\u00000', r: [5, 5, 1], e: 0 }));
    const copy = new DelayStateMachine();
    for (const entry of machine.snapshot()) copy.apply(throughCodec(entry));
    expect(copy.firstNotDone(0)).toBe(6);
    expect(copy.rangeCount).toBe(1);
  });
});
