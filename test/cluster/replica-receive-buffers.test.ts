import { describe, expect, it } from 'vitest';
import { ReplicaReceiveBuffers } from '../../src/cluster/replication/replica-receive-buffers.js';
import { replicaReceiveBuffersKept } from '../../src/limits.js';

describe('ReplicaReceiveBuffers', () => {
  it('lends views of exactly the asked length, at least the minimum size, and reuses a given-back buffer for any answer it holds', () => {
    const buffers = new ReplicaReceiveBuffers(1024);
    const first = buffers.take(100);
    expect(first.length).toBe(100);
    expect(first.buffer.byteLength).toBe(1024);
    first.fill(7);
    buffers.release(first);
    expect(buffers.freeBuffers).toBe(1);
    // A smaller and a larger answer (up to the buffer's size) both take the same memory.
    const second = buffers.take(10);
    expect(second.length).toBe(10);
    expect(second.buffer.byteLength).toBe(1024);
    expect(buffers.created).toBe(1);
    buffers.release(second);
    const third = buffers.take(1024);
    expect(buffers.created).toBe(1);
    buffers.release(third);
    // Larger than every free buffer: a new one of exactly that size.
    const large = buffers.take(5000);
    expect(large.buffer.byteLength).toBe(5000);
    expect(buffers.created).toBe(2);
  });

  it('detaches every view of a buffer given back: a view kept too long reads as empty, never as a later answer', () => {
    const buffers = new ReplicaReceiveBuffers(64);
    const answer = buffers.take(32);
    answer.fill(1);
    const kept = answer.subarray(0, 8);
    buffers.release(answer);
    const next = buffers.take(32);
    next.fill(2);
    expect(kept.length).toBe(0);
    expect(answer.length).toBe(0);
    expect([...next.subarray(0, 4)]).toEqual([2, 2, 2, 2]);
  });

  it('ignores buffers it did not lend or already took back, and keeps at most replicaReceiveBuffersKept free', () => {
    const buffers = new ReplicaReceiveBuffers(16);
    const foreign = Buffer.alloc(16, 3);
    buffers.release(foreign);
    expect(buffers.freeBuffers).toBe(0);
    expect(foreign[0]).toBe(3);
    const lent = Array.from({ length: replicaReceiveBuffersKept + 2 }, () => buffers.take(16));
    const once = lent[0]!;
    for (const view of lent) buffers.release(view);
    buffers.release(once); // given back twice: the second time is nothing
    expect(buffers.freeBuffers).toBe(replicaReceiveBuffersKept);
    buffers.clear();
    expect(buffers.freeBuffers).toBe(0);
  });
});
