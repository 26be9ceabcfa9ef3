/**
 * The durable acknowledgement state of one queue partition (one group on one topic partition, shared
 * and key_shared modes): which offsets are settled (acknowledged, or dead-lettered), how often each
 * unsettled offset was delivered, and when a negatively acknowledged one may be delivered again.
 *
 *   floor            every offset below it is settled
 *   settled ranges   sorted, disjoint, non-adjacent [from, to) ranges above the floor, none touching it
 *                    (a range reaching the floor is folded into it at once)
 *   delivery counts  offset -> times delivered, for unsettled offsets delivered at least once
 *   retries          offset -> { atMs, error }: not to be delivered before atMs (wall time); the error
 *                    text of the last failure (for the dead-letter headers)
 *   skipped          how many unsettled offsets were given up because retention (or a deletion of
 *                    records) removed them from the partition (`skipTo`): settled without delivery
 *
 * Pure data, no time and no I/O: queue-state.ts applies log entries to it (and recovery replays them),
 * partition-queue.ts reads it. Settling an offset drops its count and retry. Everything the broker
 * hands out lies below floor + unackedPerPartitionMax (partition-queue.ts), so the ranges, counts and
 * retries stay bounded by that window.
 */
import { assert } from '../../assert.js';

export interface RetryState {
  /** Wall time (ms) before which the offset is not delivered again. */
  atMs: number;
  /** Why the last delivery failed ('' when not said). */
  error: string;
}

/** The whole state as plain data (snapshot entries, tests, describe). */
export interface AckStateData {
  floor: number;
  /** [from, to) pairs, flat: [from0, to0, from1, to1, ...]. */
  settled: number[];
  /** [offset, count] pairs, flat. */
  counts: number[];
  /** [offset, atMs, error] triples. */
  retries: Array<[number, number, string]>;
  /** Unsettled offsets skipped because the partition no longer held them (absent: 0). */
  skipped?: number;
}

export class AckState {
  private floorOffset: number;
  /** Flat [from, to) pairs, sorted, above the floor, neither touching the floor nor each other. */
  private ranges: number[] = [];
  private readonly counts = new Map<number, number>();
  private readonly retries = new Map<number, RetryState>();
  private skippedCount = 0;

  constructor(floor = 0) {
    assert(Number.isSafeInteger(floor) && floor >= 0, 'ack floor must be an integer >= 0');
    this.floorOffset = floor;
  }

  get floor(): number {
    return this.floorOffset;
  }

  /** The settled ranges above the floor, flat [from, to) pairs (read-only view). */
  get settledRanges(): readonly number[] {
    return this.ranges;
  }

  /** Unsettled offsets given up because the partition no longer held them (`skipTo`). */
  get skipped(): number {
    return this.skippedCount;
  }

  /** How many offsets in [floor, `to`) are not settled. */
  unsettledBelow(to: number): number {
    if (to <= this.floorOffset) return 0;
    let unsettled = to - this.floorOffset;
    const ranges = this.ranges;
    for (let i = 0; i < ranges.length && ranges[i]! < to; i += 2) {
      unsettled -= Math.min(ranges[i + 1]!, to) - ranges[i]!;
    }
    return unsettled;
  }

  /**
   * Everything below `to` is gone from the partition (its log start moved past it): settled without
   * delivery, the unsettled ones counted as skipped. Below the floor already: nothing.
   */
  skipTo(to: number): void {
    const unsettled = this.unsettledBelow(to);
    if (unsettled === 0 && to <= this.floorOffset) return;
    this.skippedCount += unsettled;
    this.settle(this.floorOffset, to);
  }

  /** Unsettled offsets with a delivery count. */
  get countedOffsets(): number {
    return this.counts.size;
  }

  /** Highest settled offset + 1 (the floor when nothing above it is settled). */
  get settledEnd(): number {
    return this.ranges.length === 0 ? this.floorOffset : this.ranges[this.ranges.length - 1]!;
  }

  isSettled(offset: number): boolean {
    if (offset < this.floorOffset) return true;
    if (this.ranges.length === 0 || offset >= this.ranges[this.ranges.length - 1]!) return false;
    const index = this.rangeIndexAtOrBefore(offset);
    return index >= 0 && offset < this.ranges[index * 2 + 1]!;
  }

  /** The first unsettled offset at or after `offset`. */
  nextUnsettled(offset: number): number {
    if (offset < this.floorOffset) return this.floorOffset;
    const index = this.rangeIndexAtOrBefore(offset);
    if (index >= 0 && offset < this.ranges[index * 2 + 1]!) return this.ranges[index * 2 + 1]!;
    return offset;
  }

  deliveryCount(offset: number): number {
    return this.counts.get(offset) ?? 0;
  }

  retry(offset: number): RetryState | undefined {
    return this.retries.get(offset);
  }

  /** Offsets with a retry time, any order. */
  retryOffsets(): IterableIterator<number> {
    return this.retries.keys();
  }

  /** One more delivery of each (unsettled) offset; settled ones are ignored. */
  delivered(offset: number): void {
    if (this.isSettled(offset)) return;
    this.counts.set(offset, (this.counts.get(offset) ?? 0) + 1);
    this.retries.delete(offset);
  }

  /** Sets an unsettled offset's delivery count (recovery of a snapshot). */
  setCount(offset: number, count: number): void {
    if (this.isSettled(offset)) return;
    this.counts.set(offset, count);
  }

  /** The offset failed: not before `atMs`, with this error text. Ignored when settled. */
  scheduleRetry(offset: number, atMs: number, error: string): void {
    if (this.isSettled(offset)) return;
    this.retries.set(offset, { atMs, error });
  }

  /** Marks [from, to) settled (acked or dead-lettered); already settled offsets stay so. */
  settle(from: number, to: number): void {
    assert(Number.isSafeInteger(from) && Number.isSafeInteger(to) && from <= to, 'settle range');
    if (to <= this.floorOffset || from === to) return;
    if (from < this.floorOffset) from = this.floorOffset;
    const tracked = this.counts.size + this.retries.size;
    if (tracked > 0) {
      if (to - from <= tracked) {
        for (let offset = from; offset < to; offset++) {
          this.counts.delete(offset);
          this.retries.delete(offset);
        }
      } else {
        this.dropBetween(from, to);
      }
    }
    // Merge [from, to) into the ranges: find every range overlapping or touching it.
    const ranges = this.ranges;
    let first = 0;
    while (first < ranges.length && ranges[first + 1]! < from) first += 2;
    let last = first;
    let mergedFrom = from;
    let mergedTo = to;
    while (last < ranges.length && ranges[last]! <= to) {
      mergedFrom = Math.min(mergedFrom, ranges[last]!);
      mergedTo = Math.max(mergedTo, ranges[last + 1]!);
      last += 2;
    }
    ranges.splice(first, last - first, mergedFrom, mergedTo);
    if (ranges[0] === this.floorOffset) {
      this.floorOffset = ranges[1]!;
      ranges.splice(0, 2);
    }
  }

  /** The state as plain data. */
  toData(): AckStateData {
    const counts: number[] = [];
    for (const [offset, count] of this.counts) counts.push(offset, count);
    const retries: Array<[number, number, string]> = [];
    for (const [offset, retry] of this.retries) retries.push([offset, retry.atMs, retry.error]);
    const data: AckStateData = { floor: this.floorOffset, settled: [...this.ranges], counts, retries };
    if (this.skippedCount > 0) data.skipped = this.skippedCount;
    return data;
  }

  static fromData(data: AckStateData): AckState {
    const state = new AckState(data.floor);
    for (let i = 0; i < data.settled.length; i += 2) state.settle(data.settled[i]!, data.settled[i + 1]!);
    for (let i = 0; i < data.counts.length; i += 2) state.setCount(data.counts[i]!, data.counts[i + 1]!);
    for (const [offset, atMs, error] of data.retries) state.scheduleRetry(offset, atMs, error);
    state.skippedCount = data.skipped ?? 0;
    return state;
  }

  /** Drops counts and retries in [from, to) by walking the maps (a huge range). */
  private dropBetween(from: number, to: number): void {
    for (const offset of [...this.counts.keys()])
      if (offset >= from && offset < to) this.counts.delete(offset);
    for (const offset of [...this.retries.keys()])
      if (offset >= from && offset < to) this.retries.delete(offset);
  }

  /** Index (in pairs) of the last range starting at or before `offset`, -1 when none. */
  private rangeIndexAtOrBefore(offset: number): number {
    const ranges = this.ranges;
    let low = 0;
    let high = ranges.length / 2 - 1;
    let found = -1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      if (ranges[middle * 2]! <= offset) {
        found = middle;
        low = middle + 1;
      } else {
        high = middle - 1;
      }
    }
    return found;
  }
}
