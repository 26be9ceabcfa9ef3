/**
 * The state machine of `__delay_state` (docs/STATE.md, "Delayed messages"): which delayed messages
 * of the `__delay` log were fired (or dead-lettered), and where recovery must look for fired copies
 * whose marker did not make it to disk.
 *
 *   done ranges   sorted, disjoint, non-adjacent [from, to) ranges of `__delay` offsets whose
 *                 messages are all handled (a scheduled batch spans its target record and its
 *                 records: [base - 1, base + count))
 *   partial       batch base offset -> offsets of its records handled so far (batches not complete)
 *   fences        target key -> offset of the target partition at or after which every fired copy
 *                 without a durable marker lies (target key: `topic NUL partition`, or
 *                 `__delay_dead NUL 0` for dead letters)
 *   clean         the last run closed cleanly (every fired copy has its marker): no fence scan needed
 *
 * Entries (record key = target key, or `~clean` / `~snapshot`; value msgpack):
 *
 *   { t: 'f', r: [ref, base, count, ...], e }   fired into the target: refs (`__delay` offsets of
 *                                               the records), their batch base and record count; e:
 *                                               the fence after this round
 *   { t: 'e', e }                               a fence set before the first round of a run
 *   { t: 'c', v }                               clean close (true), written last at close
 *   { t: 'L', o }                               `__delay` now starts at o: state below it is dropped
 *   { t: 'x', o: [offset, ...] }                target records whose batch never made it (a crash
 *                                               between the two appends): done, so that they do not
 *                                               hold their segment forever
 *   { t: 'D', d: [from, to, ...] }              snapshot: done ranges (in order, in chunks)
 *   { t: 'P', b, r: [ref, ...] }                snapshot: a partial batch
 *
 * Pure data, deterministic; the delay service validates what it commits.
 */
import { assert } from '../../assert.js';
import { type EntryCodec, type StateMachine, statePackr } from '../state/state-machine.js';

export type DelayEntry =
  | { t: 'f'; key: string; r: number[]; e: number }
  | { t: 'e'; key: string; e: number }
  | { t: 'c'; v: boolean }
  | { t: 'L'; o: number }
  | { t: 'x'; o: number[] }
  | { t: 'D'; d: number[] }
  | { t: 'P'; b: number; r: number[] };

const cleanKey = '~clean';
const snapshotKey = '~snapshot';
/** Numbers per snapshot entry of done ranges. */
const rangesPerEntryMax = 8192;

export class DelayStateMachine implements StateMachine<DelayEntry> {
  /** Flat [from, to) pairs. */
  private ranges: number[] = [];
  private readonly partialBatches = new Map<number, Set<number>>();
  private readonly fenceOffsets = new Map<string, number>();
  private cleanClose = false;

  /** True when the message at `__delay` offset `ref` (in the batch at `base`) was handled. */
  isHandled(ref: number, base: number): boolean {
    return this.isDone(ref) || (this.partialBatches.get(base)?.has(ref) ?? false);
  }

  /** True when every offset of [from, to) is in a done range. */
  isDoneRange(from: number, to: number): boolean {
    const index = this.rangeIndexOf(from);
    return index >= 0 && this.ranges[index * 2 + 1]! >= to;
  }

  /** The first offset at or after `from` not in a done range. */
  firstNotDone(from: number): number {
    const index = this.rangeIndexOf(from);
    return index >= 0 ? this.ranges[index * 2 + 1]! : from;
  }

  get fences(): ReadonlyMap<string, number> {
    return this.fenceOffsets;
  }

  get closedCleanly(): boolean {
    return this.cleanClose;
  }

  /** Done ranges held (for stats and tests). */
  get rangeCount(): number {
    return this.ranges.length / 2;
  }

  get partialCount(): number {
    return this.partialBatches.size;
  }

  apply(entry: DelayEntry): void {
    switch (entry.t) {
      case 'f':
        for (let i = 0; i < entry.r.length; i += 3)
          this.handle(entry.r[i]!, entry.r[i + 1]!, entry.r[i + 2]!);
        this.fenceOffsets.set(entry.key, entry.e);
        this.cleanClose = false;
        return;
      case 'e':
        this.fenceOffsets.set(entry.key, entry.e);
        this.cleanClose = false;
        return;
      case 'c':
        this.cleanClose = entry.v;
        return;
      case 'L':
        this.dropBelow(entry.o);
        return;
      case 'x':
        for (const offset of entry.o) this.addRange(offset, offset + 1);
        return;
      case 'D':
        for (let i = 0; i < entry.d.length; i += 2) this.addRange(entry.d[i]!, entry.d[i + 1]!);
        return;
      case 'P': {
        const set = new Set(entry.r);
        this.partialBatches.set(entry.b, set);
        return;
      }
    }
  }

  *snapshot(): Iterable<DelayEntry> {
    for (let i = 0; i < this.ranges.length; i += rangesPerEntryMax) {
      yield { t: 'D', d: this.ranges.slice(i, i + rangesPerEntryMax) };
    }
    for (const [base, refs] of this.partialBatches) yield { t: 'P', b: base, r: [...refs] };
    for (const [key, offset] of this.fenceOffsets) yield { t: 'e', key, e: offset };
    // After the fences (which clear it): the flag as it is.
    yield { t: 'c', v: this.cleanClose };
  }

  reset(): void {
    this.ranges = [];
    this.partialBatches.clear();
    this.fenceOffsets.clear();
    this.cleanClose = false;
  }

  private handle(ref: number, base: number, count: number): void {
    assert(ref >= base && ref < base + count, 'DelayStateMachine: ref outside its batch');
    if (this.isDone(ref)) return;
    let set = this.partialBatches.get(base);
    if (set === undefined) {
      if (count === 1) {
        this.addRange(base - 1, base + 1);
        return;
      }
      set = new Set();
      this.partialBatches.set(base, set);
    }
    set.add(ref);
    if (set.size === count) {
      this.partialBatches.delete(base);
      this.addRange(base - 1, base + count);
    }
  }

  private isDone(offset: number): boolean {
    return this.rangeIndexOf(offset) >= 0;
  }

  /** Index of the range holding `offset`, or -1. */
  private rangeIndexOf(offset: number): number {
    const ranges = this.ranges;
    let low = 0;
    let high = ranges.length / 2;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (ranges[middle * 2 + 1]! <= offset) low = middle + 1;
      else high = middle;
    }
    return low < ranges.length / 2 && ranges[low * 2]! <= offset ? low : -1;
  }

  /** Adds [from, to), merging with overlapping or adjacent ranges. */
  private addRange(from: number, to: number): void {
    const ranges = this.ranges;
    // First range whose end reaches `from` (may merge).
    let low = 0;
    let high = ranges.length / 2;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (ranges[middle * 2 + 1]! < from) low = middle + 1;
      else high = middle;
    }
    let last = low;
    let start = from;
    let end = to;
    while (last < ranges.length / 2 && ranges[last * 2]! <= end) {
      start = Math.min(start, ranges[last * 2]!);
      end = Math.max(end, ranges[last * 2 + 1]!);
      last++;
    }
    ranges.splice(low * 2, (last - low) * 2, start, end);
  }

  private dropBelow(offset: number): void {
    const ranges = this.ranges;
    let keep = 0;
    while (keep < ranges.length / 2 && ranges[keep * 2 + 1]! <= offset) keep++;
    if (keep > 0) ranges.splice(0, keep * 2);
    for (const base of this.partialBatches.keys()) if (base < offset) this.partialBatches.delete(base);
  }
}

function numbers(value: unknown, what: string): number[] {
  if (
    !Array.isArray(value) ||
    !value.every((n) => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0)
  ) {
    throw new Error(`delay state entry: ${what} must be a list of integers >= 0`);
  }
  return value as number[];
}

function integer(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new Error(`delay state entry: ${what} must be an integer >= 0`);
  }
  return value;
}

export const delayStateCodec: EntryCodec<DelayEntry> = {
  encode(entry) {
    switch (entry.t) {
      case 'f':
        return { key: entry.key, value: statePackr.pack({ t: 'f', r: entry.r, e: entry.e }) };
      case 'e':
        return { key: entry.key, value: statePackr.pack({ t: 'e', e: entry.e }) };
      case 'c':
        return { key: cleanKey, value: statePackr.pack(entry) };
      default:
        return { key: snapshotKey, value: statePackr.pack(entry) };
    }
  },
  decode(record) {
    const key = record.keyText();
    const bytes = record.value();
    if (key === null || bytes === null) throw new Error('delay state entry without key or value');
    const value: unknown = statePackr.unpack(bytes);
    if (typeof value !== 'object' || value === null) throw new Error('delay state entry is not a map');
    const fields = value as Record<string, unknown>;
    switch (fields['t']) {
      case 'f': {
        const r = numbers(fields['r'], 'r');
        if (r.length % 3 !== 0) throw new Error('delay state entry: r must hold triples');
        return { t: 'f', key, r, e: integer(fields['e'], 'e') };
      }
      case 'e':
        return { t: 'e', key, e: integer(fields['e'], 'e') };
      case 'c':
        if (typeof fields['v'] !== 'boolean') throw new Error('delay state entry: v must be a boolean');
        return { t: 'c', v: fields['v'] };
      case 'L':
        return { t: 'L', o: integer(fields['o'], 'o') };
      case 'x':
        return { t: 'x', o: numbers(fields['o'], 'o') };
      case 'D': {
        const d = numbers(fields['d'], 'd');
        if (d.length % 2 !== 0) throw new Error('delay state entry: d must hold pairs');
        return { t: 'D', d };
      }
      case 'P':
        return { t: 'P', b: integer(fields['b'], 'b'), r: numbers(fields['r'], 'r') };
      default:
        throw new Error(`delay state entry of unknown kind ${String(fields['t'])}`);
    }
  },
};

/** The target key of a topic partition (fences and markers). */
export function targetKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}
