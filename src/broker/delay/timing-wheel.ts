/**
 * A hierarchical timing wheel of (dueMs, ref) entries, ms precision, any distance ahead. Pure data:
 * no clock, no I/O; the delay service (broker-delay.ts) drives it with the broker's clock and keeps
 * what a `ref` means (where the message is in the `__delay` log).
 *
 * Levels are aligned to absolute time (not to when an entry was added), widths in ms:
 *
 *   level 0   256 slots of 1 ms          inside the current 256 ms window
 *   level 1   256 slots of 256 ms        inside the current ~65.5 s window
 *   level 2   256 slots of 65 536 ms     inside the current ~4.66 h window
 *   level 3    64 slots of 2^24 ms       inside the current 2^30 ms (~12.4 day) window
 *   far       buckets of 2^30 ms, keyed by bucket number, beyond the current 2^30 ms window
 *
 * An entry sits at the lowest level whose window (the next level's slot) holds both it and `nowMs`;
 * entries due at or before `nowMs` are ready. So every entry of level L is due before every entry of
 * level L+1, and a slot never wraps around. Advancing the time empties, level by level from the
 * bottom, the slots the time went past or into, and places their entries again relative to the new
 * time: an entry moves down a level each time its window becomes the current one ("cascading"), and
 * far buckets load into level 3 when their 12-day window begins. A jump of any length costs at most
 * the slots of each level plus the far buckets passed, never a step per millisecond.
 *
 * Memory: entries live in EntryList chunks (16 bytes each), never as objects, whatever level or
 * bucket holds them; at most 832 slot lists plus one list per far bucket (about 30 a year).
 *
 * Compared with RocketMQ 5's timer (one wheel of 1 s slots over a fixed window, two days by default,
 * with messages further ahead rolled back through the log each time the window passes): ms
 * precision, no horizon, and a far message is handled once per level (five times at most), not once
 * per window.
 */
import { assert } from '../../assert.js';
import { EntryList } from './entry-list.js';

/** log2 of each level's slot width in ms; the last value is the far buckets' width. */
const widthBits = [0, 8, 16, 24, 30] as const;
const levelCount = widthBits.length - 1;
const widths = widthBits.map((bits) => 2 ** bits);
const slotCounts = widths.slice(0, levelCount).map((width, level) => widths[level + 1]! / width);

/** Pending entries by how far ahead they are due (delay stats). */
export interface HorizonCounts {
  /** Due within a minute (ready ones included). */
  withinMinute: number;
  withinHour: number;
  withinDay: number;
  later: number;
}

export class TimingWheel {
  private now: number;
  private ready = new EntryList();
  /** levels[L][slot]: null when empty. */
  private readonly levels: Array<Array<EntryList | null>>;
  private readonly far = new Map<number, EntryList>();
  private count = 0;

  constructor(startMs: number) {
    assert(Number.isSafeInteger(startMs), 'TimingWheel: start must be an integer ms');
    this.now = startMs;
    this.levels = slotCounts.map((slots) => new Array<EntryList | null>(slots).fill(null));
  }

  /** The wheel's time: everything due at or before it has been handed out by advance(). */
  get nowMs(): number {
    return this.now;
  }

  /** Entries held (ready ones included). */
  get size(): number {
    return this.count;
  }

  /** Adds an entry; one due at or before nowMs comes out at the next advance(). */
  add(dueMs: number, ref: number): void {
    assert(Number.isSafeInteger(dueMs), 'TimingWheel: due time must be an integer ms');
    this.place(dueMs, ref);
    this.count++;
  }

  /**
   * Moves the time to `nowMs` (never back) and hands every entry due at or before it to `sink`,
   * each exactly once, in no particular order.
   */
  advance(nowMs: number, sink: (dueMs: number, ref: number) => void): void {
    assert(Number.isSafeInteger(nowMs), 'TimingWheel: time must be an integer ms');
    const from = this.now;
    if (nowMs > from) {
      this.now = nowMs;
      // Bottom up: entries placed again only go down a level or to ready, never to a level still to visit.
      for (let level = 0; level < levelCount; level++) {
        const slots = this.levels[level]!;
        const width = widths[level]!;
        const window = widths[level + 1]!;
        let first: number;
        let last: number;
        if (Math.floor(from / window) !== Math.floor(nowMs / window)) {
          // The whole window of this level is behind: every entry in it is due.
          first = 0;
          last = slots.length - 1;
        } else {
          first = Math.floor(from / width) % slots.length;
          last = Math.floor(nowMs / width) % slots.length;
        }
        for (let slot = first; slot <= last; slot++) {
          const list = slots[slot];
          if (list == null) continue;
          slots[slot] = null;
          list.forEach((dueMs, ref) => {
            this.place(dueMs, ref);
          });
        }
      }
      const lastBucket = Math.floor(nowMs / widths[levelCount]!);
      for (const [bucket, list] of this.far) {
        if (bucket > lastBucket) continue;
        this.far.delete(bucket);
        list.forEach((dueMs, ref) => {
          this.place(dueMs, ref);
        });
      }
    }
    if (this.ready.size === 0) return;
    const ready = this.ready;
    // Detach first: sink may add entries (they go into the new ready list or the levels).
    this.ready = new EntryList();
    this.count -= ready.size;
    ready.forEach(sink);
  }

  /**
   * The earliest due time held (nowMs or before for ready entries), or null when empty. Exact: the
   * lowest non-empty level holds the earliest entries, and its first non-empty slot the earliest.
   */
  nextDueMs(): number | null {
    if (this.ready.size > 0) return this.ready.minDueMs();
    for (let level = 0; level < levelCount; level++) {
      const slots = this.levels[level]!;
      const start = Math.floor(this.now / widths[level]!) % slots.length;
      for (let slot = start; slot < slots.length; slot++) {
        const list = slots[slot];
        if (list != null) return list.minDueMs();
      }
    }
    let firstBucket = Number.POSITIVE_INFINITY;
    for (const bucket of this.far.keys()) if (bucket < firstBucket) firstBucket = bucket;
    return firstBucket === Number.POSITIVE_INFINITY ? null : this.far.get(firstBucket)!.minDueMs();
  }

  /** Pending entries by distance from `nowMs` (the caller's time, normally the wheel's). */
  horizonCounts(nowMs: number): HorizonCounts {
    const counts: HorizonCounts = { withinMinute: 0, withinHour: 0, withinDay: 0, later: 0 };
    const count = (dueMs: number): void => {
      const ahead = dueMs - nowMs;
      if (ahead < 60_000) counts.withinMinute++;
      else if (ahead < 3_600_000) counts.withinHour++;
      else if (ahead < 86_400_000) counts.withinDay++;
      else counts.later++;
    };
    this.forEachList((list) => list.forEach(count));
    return counts;
  }

  /** Bytes held by the entry arrays (for metrics and the memory benchmark). */
  get capacityBytes(): number {
    let bytes = 0;
    this.forEachList((list) => {
      bytes += list.capacityBytes;
    });
    return bytes;
  }

  private forEachList(visit: (list: EntryList) => void): void {
    visit(this.ready);
    for (const slots of this.levels) for (const list of slots) if (list != null) visit(list);
    for (const list of this.far.values()) visit(list);
  }

  private place(dueMs: number, ref: number): void {
    const now = this.now;
    if (dueMs <= now) {
      this.ready.push(dueMs, ref);
      return;
    }
    for (let level = 0; level < levelCount; level++) {
      const window = widths[level + 1]!;
      if (Math.floor(dueMs / window) === Math.floor(now / window)) {
        const slots = this.levels[level]!;
        const slot = Math.floor(dueMs / widths[level]!) % slots.length;
        let list = slots[slot];
        if (list == null) {
          list = new EntryList();
          slots[slot] = list;
        }
        list.push(dueMs, ref);
        return;
      }
    }
    const bucket = Math.floor(dueMs / widths[levelCount]!);
    let list = this.far.get(bucket);
    if (list === undefined) {
      list = new EntryList();
      this.far.set(bucket, list);
    }
    list.push(dueMs, ref);
  }
}
