/**
 * The producer's spare batch buffers (accumulator.ts, with `recycle`): the memory of acknowledged
 * batches, kept so the next sealed batches go into it instead of new buffers. At a steady rate a
 * producer then allocates no buffer per batch: at 16 KiB, 1,000 msg/s and one record per batch a
 * new 16 KiB buffer per batch was one of the two garbage streams that made the latency bench
 * process run a major GC every ~0.2 s (issue 15).
 *
 * `take(bytes)` lends the smallest free buffer that holds `bytes` and is at most twice as large
 * (so a small batch never pins a large buffer, and what a batch holds stays within twice its
 * bytes), else undefined (the caller makes a new one, `sizeFor(bytes)`). `give(buffer)` takes one
 * back. Bounds: at most producerSpareBatchBytesMax bytes and producerSpareBatchBuffersMax buffers
 * free; a buffer past them is left to the GC.
 *
 * Lifetime rule (the caller's, accumulator.ts): a buffer is given back only when nothing reads it
 * any more: its batch was acknowledged, the transport is done with its body once the answer came
 * (Transport.bodyReusableAfterAnswer), and no caller of the producer ever sees a batch's bytes.
 * A batch that failed is never given back (a timed-out send may still sit in a socket's queue).
 * Single-threaded (one event loop).
 */
import { producerSpareBatchBuffersMax, producerSpareBatchBytesMax } from '../limits.js';

/** The smallest buffer a copied batch is given: what Buffer's shared pool does not serve. */
export const spareBatchBufferBytesMin = 4096;

export class SpareBatchBuffers {
  private readonly free: Buffer[] = [];
  private bytes = 0;

  /** Free buffers kept. */
  get count(): number {
    return this.free.length;
  }

  /** Bytes of the free buffers kept. */
  get freeBytes(): number {
    return this.bytes;
  }

  /** The size of a new buffer for a batch of `bytes`: the next power of two, at least spareBatchBufferBytesMin. */
  static sizeFor(bytes: number): number {
    return Math.max(spareBatchBufferBytesMin, 2 ** Math.ceil(Math.log2(Math.max(bytes, 1))));
  }

  /** The smallest free buffer of [bytes, 2 * bytes] bytes, now the caller's; undefined if none. */
  take(bytes: number): Buffer | undefined {
    const free = this.free;
    const largest = 2 * bytes;
    let chosen = -1;
    for (let index = 0; index < free.length; index++) {
      const size = free[index]!.length;
      if (size >= bytes && size <= largest && (chosen < 0 || size < free[chosen]!.length)) chosen = index;
    }
    if (chosen < 0) return undefined;
    const buffer = free[chosen]!;
    free[chosen] = free[free.length - 1]!;
    free.pop();
    this.bytes -= buffer.length;
    return buffer;
  }

  /** Keeps `buffer` for a later take (see the lifetime rule); dropped past the bounds. */
  give(buffer: Buffer): void {
    if (
      this.free.length >= producerSpareBatchBuffersMax ||
      this.bytes + buffer.length > producerSpareBatchBytesMax
    )
      return;
    this.free.push(buffer);
    this.bytes += buffer.length;
  }
}
