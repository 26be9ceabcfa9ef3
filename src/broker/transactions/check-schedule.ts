/**
 * When the next check-backs are due: a binary min-heap of (atMs, transaction id), wall ms. Entries
 * are never removed early: a popped entry whose transaction moved on (decided, or rescheduled to
 * another time) is skipped by the caller. Bounded by the transactions checked: one entry per
 * schedule, and a transaction is rescheduled only when its previous entry came due.
 */
export class CheckSchedule {
  private readonly at: number[] = [];
  private readonly ids: number[] = [];

  get size(): number {
    return this.at.length;
  }

  /** Due time of the earliest entry, or null. */
  peekAtMs(): number | null {
    return this.at.length === 0 ? null : this.at[0]!;
  }

  push(atMs: number, id: number): void {
    const at = this.at;
    const ids = this.ids;
    let index = at.length;
    at.push(atMs);
    ids.push(id);
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (at[parent]! <= atMs) break;
      at[index] = at[parent]!;
      ids[index] = ids[parent]!;
      index = parent;
    }
    at[index] = atMs;
    ids[index] = id;
  }

  /** Removes and returns the earliest entry's id (call only when size > 0). */
  pop(): number {
    const at = this.at;
    const ids = this.ids;
    const top = ids[0]!;
    const lastAt = at.pop()!;
    const lastId = ids.pop()!;
    const size = at.length;
    if (size > 0) {
      let index = 0;
      for (;;) {
        const left = 2 * index + 1;
        if (left >= size) break;
        const right = left + 1;
        const child = right < size && at[right]! < at[left]! ? right : left;
        if (at[child]! >= lastAt) break;
        at[index] = at[child]!;
        ids[index] = ids[child]!;
        index = child;
      }
      at[index] = lastAt;
      ids[index] = lastId;
    }
    return top;
  }

  clear(): void {
    this.at.length = 0;
    this.ids.length = 0;
  }
}
