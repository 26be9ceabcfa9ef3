import { describe, expect, it } from 'vitest';
import { FetchWaiters } from '../../src/broker/fetch-waiters.js';

describe('FetchWaiters', () => {
  it('wakes the waiters of one key only, and forgets them', async () => {
    const waiters = new FetchWaiters<string>(10, 100);
    const a1 = waiters.wait('a', 10_000);
    const a2 = waiters.wait('a', 10_000);
    const b = waiters.wait('b', 50);
    expect(waiters.waitingCount).toBe(3);
    waiters.wake('a');
    expect(await a1).toBe('data');
    expect(await a2).toBe('data');
    expect(waiters.waitingCountFor('a')).toBe(0);
    expect(await b).toBe('timeout');
    expect(waiters.waitingCount).toBe(0);
  });

  it('ends on abort (also when already aborted) and removes its listener', async () => {
    const waiters = new FetchWaiters<string>(10, 100);
    const controller = new AbortController();
    const waiting = waiters.wait('a', 10_000, controller.signal);
    controller.abort();
    expect(await waiting).toBe('abort');
    expect(await waiters.wait('a', 10_000, controller.signal)).toBe('abort');
    expect(waiters.waitingCount).toBe(0);
    // A signal that outlives many waits must not collect listeners.
    const long = new AbortController();
    for (let i = 0; i < 20; i++) {
      const pending = waiters.wait('a', 10_000, long.signal);
      waiters.wake('a');
      await pending;
    }
    let calls = 0;
    long.signal.addEventListener('abort', () => calls++);
    long.abort();
    expect(calls).toBe(1);
  });

  it('wakeAll answers everyone with the reason given', async () => {
    const waiters = new FetchWaiters<number>(10, 100);
    const all = [waiters.wait(1, 10_000), waiters.wait(2, 10_000), waiters.wait(2, 10_000)];
    waiters.wakeAll('close');
    expect(await Promise.all(all)).toEqual(['close', 'close', 'close']);
    expect(waiters.waitingCount).toBe(0);
  });

  it('refuses waiters beyond the limits with BACKPRESSURE', async () => {
    const waiters = new FetchWaiters<string>(2, 3);
    const pending = [waiters.wait('a', 10_000), waiters.wait('a', 10_000)];
    expect(() => waiters.wait('a', 10_000)).toThrow(expect.objectContaining({ code: 'BACKPRESSURE' }));
    pending.push(waiters.wait('b', 10_000));
    expect(() => waiters.wait('c', 10_000)).toThrow(expect.objectContaining({ code: 'BACKPRESSURE' }));
    waiters.wakeAll('close');
    await Promise.all(pending);
    expect(waiters.waitingCount).toBe(0);
  });
});
