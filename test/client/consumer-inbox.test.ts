/**
 * BufferQueue (the consumers' FIFO taken by index) and ConsumerInbox (waiting readers, the first
 * failure, the end) on their own.
 */
import { describe, expect, test } from 'vitest';
import { BufferQueue, ConsumerInbox } from '../../src/client/consumer-inbox.js';
import type { ConsumedMessage } from '../../src/client/message.js';

function takeAll(queue: BufferQueue<number>): number[] {
  const taken: number[] = [];
  while (!queue.isEmpty) {
    const item = queue.front();
    queue.shift();
    if (item !== undefined) taken.push(item);
  }
  return taken;
}

describe('BufferQueue', () => {
  test('keeps FIFO order across compaction, holes from removeWhere are skipped', () => {
    const queue = new BufferQueue<number>();
    const model: number[] = [];
    let next = 0;
    // Push 3, take 2, many times: the front is compacted away repeatedly.
    for (let round = 0; round < 2000; round++) {
      for (let i = 0; i < 3; i++) {
        queue.push(next);
        model.push(next++);
      }
      for (let i = 0; i < 2; i++) {
        expect(queue.front()).toBe(model.shift());
        queue.shift();
      }
      expect(queue.length).toBe(model.length);
    }
    queue.removeWhere((item) => item % 3 === 0);
    expect(takeAll(queue)).toEqual(model.filter((item) => item % 3 !== 0));
    expect(queue.isEmpty).toBe(true);
    expect(queue.front()).toBeUndefined();
  });

  test('drain takes what is left, front first, and empties the queue', () => {
    const queue = new BufferQueue<string>();
    for (const item of ['a', 'b', 'c', 'd']) queue.push(item);
    queue.shift();
    queue.removeWhere((item) => item === 'c');
    const visited: string[] = [];
    queue.forEach((item) => {
      visited.push(item);
    });
    expect(visited).toEqual(['b', 'd']);
    expect(queue.drain()).toEqual(['b', 'd']);
    expect(queue.isEmpty).toBe(true);
  });
});

describe('ConsumerInbox', () => {
  const message = { offset: 1 } as unknown as ConsumedMessage;

  test('a waiting reader gets what arrives after it waited', async () => {
    const lifetime = new AbortController();
    const inbox = new ConsumerInbox(lifetime.signal);
    let ready: ConsumedMessage | null = null;
    const pending = inbox.next(
      () => ready,
      async () => undefined,
    );
    ready = message;
    inbox.wake();
    expect(await pending).toEqual({ done: false, value: message });
  });

  test('the first failure is thrown after closing; later ones and failures after close are ignored', async () => {
    const lifetime = new AbortController();
    const inbox = new ConsumerInbox(lifetime.signal);
    let closed = 0;
    const close = async () => {
      closed++;
      lifetime.abort();
    };
    inbox.fail(new Error('first'));
    inbox.fail(new Error('second'));
    await expect(inbox.next(() => null, close)).rejects.toThrow('first');
    expect(closed).toBe(1);
    inbox.fail(new Error('after close'));
    expect(await inbox.next(() => null, close)).toEqual({ done: true, value: undefined });
  });

  test('an error thrown while taking closes and is thrown', async () => {
    const lifetime = new AbortController();
    const inbox = new ConsumerInbox(lifetime.signal);
    let closed = false;
    const take = (): ConsumedMessage | null => {
      throw new Error('corrupt');
    };
    await expect(
      inbox.next(take, async () => {
        closed = true;
      }),
    ).rejects.toThrow('corrupt');
    expect(closed).toBe(true);
  });
});
