/**
 * A growable list of (dueMs, ref) pairs kept in Float64Array chunks: 16 bytes a pair, no object per
 * entry. The timing wheel (timing-wheel.ts) keeps every pending delayed message in lists like this, so
 * a million pending messages cost about 16 MB however far ahead they are due.
 *
 * Layout: chunks of at most `chunkPairsMax` pairs; every chunk but the last is full. The first chunk
 * starts small and doubles up to that size, so a slot holding a handful of entries stays small.
 * Single-threaded, no ownership questions: the list owns its arrays.
 */
import { assert } from '../../assert.js';

/** Pairs per chunk once a list is large (64 KiB chunks). */
const chunkPairsMax = 4096;
const firstChunkPairs = 8;

export class EntryList {
  private readonly chunks: Float64Array[] = [];
  private lastCount = 0;
  private count = 0;

  get size(): number {
    return this.count;
  }

  push(dueMs: number, ref: number): void {
    let last = this.chunks[this.chunks.length - 1];
    if (last === undefined || this.lastCount * 2 === last.length) {
      if (last !== undefined && last.length < chunkPairsMax * 2) {
        // Still growing the single first chunk: double it.
        assert(this.chunks.length === 1, 'EntryList: only the first chunk grows');
        const grown = new Float64Array(last.length * 2);
        grown.set(last);
        this.chunks[0] = grown;
        last = grown;
      } else {
        last = new Float64Array((last === undefined ? firstChunkPairs : chunkPairsMax) * 2);
        this.chunks.push(last);
        this.lastCount = 0;
      }
    }
    last[this.lastCount * 2] = dueMs;
    last[this.lastCount * 2 + 1] = ref;
    this.lastCount++;
    this.count++;
  }

  /** Calls `visit(dueMs, ref)` for every pair, in insertion order. */
  forEach(visit: (dueMs: number, ref: number) => void): void {
    const chunks = this.chunks;
    for (let c = 0; c < chunks.length; c++) {
      const chunk = chunks[c]!;
      const pairs = c === chunks.length - 1 ? this.lastCount : chunk.length / 2;
      for (let i = 0; i < pairs; i++) visit(chunk[i * 2]!, chunk[i * 2 + 1]!);
    }
  }

  /** The smallest dueMs, Infinity when empty. */
  minDueMs(): number {
    let min = Number.POSITIVE_INFINITY;
    const chunks = this.chunks;
    for (let c = 0; c < chunks.length; c++) {
      const chunk = chunks[c]!;
      const pairs = c === chunks.length - 1 ? this.lastCount : chunk.length / 2;
      for (let i = 0; i < pairs; i++) if (chunk[i * 2]! < min) min = chunk[i * 2]!;
    }
    return min;
  }

  /** Bytes held by the arrays. */
  get capacityBytes(): number {
    let bytes = 0;
    for (const chunk of this.chunks) bytes += chunk.byteLength;
    return bytes;
  }
}
