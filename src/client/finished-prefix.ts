/**
 * The contiguous finished prefix of one partition's delivered messages: what a group consumer may
 * commit. Messages are delivered in offset order and may finish in any order; `committable` is the
 * offset after the longest run of finished messages from the start, i.e. the next one to consume
 * after a restart. Memory: one number per delivered, unfinished-prefix message (bounded by what the
 * consumer buffers and the application holds).
 */
export class FinishedPrefix {
  /** Offsets delivered and not yet in the prefix, in order (from `head`). */
  private delivered: number[] = [];
  private head = 0;
  private readonly finished = new Set<number>();
  /** Everything below is finished. */
  committable: number;
  private waiters: Array<() => void> = [];

  constructor(start: number) {
    this.committable = start;
  }

  /** Delivered and not finished. */
  get pendingCount(): number {
    return this.delivered.length - this.head;
  }

  deliver(offset: number): void {
    this.delivered.push(offset);
  }

  /** Marks `offset` finished; false when it is not pending (already finished, or not delivered). */
  finish(offset: number): boolean {
    const delivered = this.delivered;
    if (
      this.head >= delivered.length ||
      offset < delivered[this.head]! ||
      offset > delivered[delivered.length - 1]!
    ) {
      return false;
    }
    if (offset !== delivered[this.head]) {
      if (this.finished.has(offset)) return false;
      this.finished.add(offset);
      return true;
    }
    this.head++;
    this.committable = offset + 1;
    while (this.head < delivered.length && this.finished.delete(delivered[this.head]!)) {
      this.committable = delivered[this.head]! + 1;
      this.head++;
    }
    if (this.head === delivered.length) {
      this.delivered = [];
      this.head = 0;
      const waiters = this.waiters;
      this.waiters = [];
      for (const wake of waiters) wake();
    } else if (this.head > 4096 && this.head * 2 > delivered.length) {
      this.delivered = delivered.slice(this.head);
      this.head = 0;
    }
    return true;
  }

  /** Forgets deliveries at and above `offset` (they will be delivered again). */
  rewind(offset: number): void {
    const delivered = this.delivered;
    let cut = delivered.length;
    while (cut > this.head && delivered[cut - 1]! >= offset) {
      cut--;
      this.finished.delete(delivered[cut]!);
    }
    delivered.length = cut;
    if (this.head === delivered.length) {
      this.delivered = [];
      this.head = 0;
      const waiters = this.waiters;
      this.waiters = [];
      for (const wake of waiters) wake();
    }
  }

  /** Resolves once nothing delivered is pending. */
  drained(): Promise<void> {
    if (this.pendingCount === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}
