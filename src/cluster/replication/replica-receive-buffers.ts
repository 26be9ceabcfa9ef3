/**
 * The buffers a broker's followers receive REPLICA_FETCH answer bodies into (the WebSocket
 * transport's RequestOptions.bodyBuffer): `take` lends one for an answer, the follower gives it back
 * with `release` once it has appended the answer's batches (synchronous writes: the log keeps no
 * view of a batch, LogStore.append), before it waits for their fdatasync.
 *
 * Why: a new buffer per answer (hundreds of KiB each, a stream of them at 16 KiB values) kept V8
 * collecting, about a fifth of a follower's CPU. The client's ReceiveBufferPool (made for a
 * consumer's answers, sized to stay within twice each answer) missed on most answers here, whose
 * sizes vary from one batch to `replicaFetchMaxBytes`, and made zero-filled buffers on each miss.
 * Here any free buffer that holds the answer serves (the smallest such), and a new one holds at
 * least `minimumBytes` (the fetch's maxBytes), uninitialized: the socket fills it.
 *
 * Lifetime, enforced as in ReceiveBufferPool: `release` detaches the memory from every view made of
 * it before reusing it (the ArrayBuffer is transferred, no copy), so a view kept too long reads as
 * empty, never as a later answer. Bounds: at most replicaReceiveBuffersKept free buffers; a buffer
 * lent and never given back (a fetch aborted or timed out while its body was read) is left to the
 * GC. Since a follower gives its buffer back within the turn its answer arrived (unless a new
 * leader epoch is committed first), a few buffers serve any number of followers.
 * Single-threaded (one event loop).
 */
import { replicaReceiveBuffersKept } from '../../limits.js';

export class ReplicaReceiveBuffers {
  private readonly free: ArrayBuffer[] = [];
  private readonly lent = new WeakSet<ArrayBuffer>();
  private readonly minimumBytes: number;
  /** Buffers made (tests, profiling: a steady stream of answers makes a handful). */
  created = 0;

  constructor(minimumBytes: number) {
    this.minimumBytes = minimumBytes;
  }

  /** A view of exactly `bytes` bytes of a free buffer that holds them, or of a new one. */
  readonly take = (bytes: number): Buffer => {
    let chosen = -1;
    for (let index = 0; index < this.free.length; index++) {
      const size = this.free[index]!.byteLength;
      if (size >= bytes && (chosen < 0 || size < this.free[chosen]!.byteLength)) chosen = index;
    }
    let memory: ArrayBuffer;
    if (chosen >= 0) memory = this.free.splice(chosen, 1)[0]!;
    else {
      memory = Buffer.allocUnsafeSlow(Math.max(bytes, this.minimumBytes)).buffer as ArrayBuffer;
      this.created++;
    }
    this.lent.add(memory);
    return Buffer.from(memory, 0, bytes);
  };

  /** Gives back the buffer `bytes` views (nothing happens for one not lent here): see the header. */
  release(bytes: Uint8Array): void {
    const memory = bytes.buffer as ArrayBuffer;
    if (!this.lent.has(memory)) return;
    this.lent.delete(memory);
    if (this.free.length >= replicaReceiveBuffersKept || memory.byteLength === 0) return;
    try {
      this.free.push(structuredClone(memory, { transfer: [memory] }));
    } catch {
      // Not transferable: not reused.
    }
  }

  /** Free buffers kept for reuse. */
  get freeBuffers(): number {
    return this.free.length;
  }

  /** Drops the free buffers (the replica manager closed). */
  clear(): void {
    this.free.length = 0;
  }
}
