/**
 * Reused receive buffers for fetch answers (the log consumer's `reuseReceiveBuffers` option): the
 * WebSocket transport reads an answer body straight into a buffer `take` lends
 * (RequestOptions.bodyBuffer), and the consumer gives it back with `release` once every message of
 * that answer was taken and the iteration moved on.
 *
 * Why: at 16 KiB messages a new buffer per 1 MiB answer kept V8 running a full (mark-compact) GC
 * every ~100 ms, about half of the client's CPU; with reused buffers there is about one per run.
 *
 * Lifetime, enforced: `release` detaches the buffer's memory from every view made of it before
 * reusing it (the ArrayBuffer is transferred to a new one, structuredClone with transfer: no copy),
 * so a view someone kept past its lifetime reads as empty (length 0) and never shows the bytes of
 * a later answer. Bounds: at most `receiveBuffersKept` free buffers are kept (others are left to the
 * GC); buffers lent and not given back (an answer dropped by an abort) are simply not reused. A
 * buffer holds the answer's size rounded up to a power of two, at least `receiveBufferBytesMin`
 * (at most twice the answer), so answers of various sizes share buffers.
 * Single-threaded (one event loop).
 */
import { receiveBufferBytesMin, receiveBuffersKept } from '../limits.js';

export class ReceiveBufferPool {
  private readonly free: ArrayBuffer[] = [];
  /** The ArrayBuffers lent and not yet given back. */
  private readonly lent = new WeakSet<ArrayBuffer>();

  /**
   * A view of exactly `bytes` bytes: the smallest free buffer that holds it and is at most twice
   * its size (or `receiveBufferBytesMin`), else a new one — so a small answer never pins a large
   * buffer and the bytes a consumer buffers stay within twice what it counts.
   */
  readonly take = (bytes: number): Buffer => {
    const largest = Math.max(2 * bytes, receiveBufferBytesMin);
    let chosen = -1;
    for (let index = 0; index < this.free.length; index++) {
      const size = this.free[index]!.byteLength;
      if (size >= bytes && size <= largest && (chosen < 0 || size < this.free[chosen]!.byteLength)) {
        chosen = index;
      }
    }
    let memory: ArrayBuffer | undefined;
    if (chosen >= 0) memory = this.free.splice(chosen, 1)[0]!;
    memory ??= new ArrayBuffer(
      Math.max(2 ** Math.ceil(Math.log2(Math.max(bytes, 1))), receiveBufferBytesMin),
    );
    this.lent.add(memory);
    return Buffer.from(memory, 0, bytes);
  };

  /** Whether `bytes` is a view of a buffer this pool lent (and not yet given back). */
  owns(bytes: Uint8Array): boolean {
    return this.lent.has(bytes.buffer as ArrayBuffer);
  }

  /**
   * Gives back the buffer `bytes` views (nothing happens for one this pool did not lend): every
   * view of it reads as empty from now on, and its memory is reused.
   */
  release(bytes: Uint8Array): void {
    const memory = bytes.buffer as ArrayBuffer;
    if (!this.lent.has(memory)) return;
    this.lent.delete(memory);
    // A lent buffer is never empty: empty means its holder detached it (transferred it elsewhere).
    if (this.free.length >= receiveBuffersKept || memory.byteLength === 0) return;
    let moved: ArrayBuffer;
    try {
      moved = structuredClone(memory, { transfer: [memory] });
    } catch {
      return; // not transferable: not reused
    }
    this.free.push(moved);
  }

  /** Free buffers kept for reuse (at most receiveBuffersKept). */
  get freeBuffers(): number {
    return this.free.length;
  }

  /** Drops the free buffers (the consumer closed). */
  clear(): void {
    this.free.length = 0;
  }
}
