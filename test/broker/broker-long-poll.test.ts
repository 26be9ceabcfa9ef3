import { describe, expect, it } from 'vitest';
import { fetchWaitersPerPartitionMax } from '../../src/limits.js';
import { batchOf, openBroker, rejectedCode, temporaryDirectory, valuesOf } from './helpers.js';

const timeoutCount = (): number =>
  process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('Broker long-poll fetch', () => {
  it('waits for an append and answers as soon as it happens', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('t', { partitions: 2 });
    const startedAt = performance.now();
    const waiting = broker.messages.fetch('t', 0, 0, { maxBytes: 1 << 20, maxWaitMs: 5000 });
    await sleep(30);
    await broker.messages.produce('t', 1, batchOf('other')); // another partition: no answer
    await broker.messages.produce('t', 0, batchOf('mine', 2));
    const result = await waiting;
    expect(valuesOf(result.records)).toEqual(['mine/0', 'mine/1']);
    expect(result.nextOffset).toBe(2);
    expect(performance.now() - startedAt).toBeLessThan(2000);
  });

  it('times out with an empty answer after maxWaitMs, leaking no timer', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('t');
    const timersBefore = timeoutCount();
    const startedAt = performance.now();
    const result = await broker.messages.fetch('t', 0, 0, { maxBytes: 1024, maxWaitMs: 120 });
    const elapsed = performance.now() - startedAt;
    expect(result).toMatchObject({ batchCount: 0, nextOffset: 0, highWatermark: 0 });
    expect(elapsed).toBeGreaterThanOrEqual(110);
    expect(elapsed).toBeLessThan(1500);
    expect(timeoutCount()).toBeLessThanOrEqual(timersBefore);
    expect(broker.waitingFetchCount).toBe(0);
  });

  it('waits for minBytes across several appends', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('t');
    const size = batchOf('a').length;
    let answered = false;
    const waiting = broker.messages
      .fetch('t', 0, 0, { maxBytes: 1 << 20, maxWaitMs: 5000, minBytes: 2 * size })
      .then((r) => {
        answered = true;
        return r;
      });
    await broker.messages.produce('t', 0, batchOf('a'));
    await sleep(30);
    expect(answered).toBe(false);
    await broker.messages.produce('t', 0, batchOf('b'));
    expect(valuesOf((await waiting).records)).toEqual(['a/0', 'b/0']);
  });

  it('ends early, with what is there, when its signal aborts', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('t');
    const timersBefore = timeoutCount();
    const controller = new AbortController();
    const startedAt = performance.now();
    const waiting = broker.messages.fetch('t', 0, 0, {
      maxBytes: 1024,
      maxWaitMs: 10_000,
      signal: controller.signal,
    });
    await sleep(20);
    controller.abort();
    expect((await waiting).batchCount).toBe(0);
    expect(performance.now() - startedAt).toBeLessThan(2000);
    // Already aborted: answers at once.
    expect(
      (
        await broker.messages.fetch('t', 0, 0, {
          maxBytes: 1024,
          maxWaitMs: 10_000,
          signal: controller.signal,
        })
      ).batchCount,
    ).toBe(0);
    expect(timeoutCount()).toBeLessThanOrEqual(timersBefore);
    expect(broker.waitingFetchCount).toBe(0);
  });

  it('answers waiting fetches when the broker closes', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('t', { partitions: 3 });
    await broker.messages.produce('t', 2, batchOf('x'));
    const waiting = [0, 1, 2].map((partition) =>
      broker.messages.fetch('t', partition, partition === 2 ? 1 : 0, { maxBytes: 1024, maxWaitMs: 10_000 }),
    );
    await sleep(20);
    const startedAt = performance.now();
    await broker.close();
    const results = await Promise.all(waiting);
    expect(results.map((result) => result.batchCount)).toEqual([0, 0, 0]);
    expect(results[2]!.highWatermark).toBe(1);
    expect(performance.now() - startedAt).toBeLessThan(2000);
  });

  it('fails a waiting fetch with UNKNOWN_TOPIC when its topic is deleted', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('t');
    const waiting = rejectedCode(broker.messages.fetch('t', 0, 0, { maxBytes: 1024, maxWaitMs: 10_000 }));
    await sleep(10);
    await broker.topics.delete('t');
    expect(await waiting).toBe('UNKNOWN_TOPIC');
  });

  it('wakes a long-poll on an `always` topic once the batch is on disk', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('safe', { durability: 'always' });
    const waiting = broker.messages.fetch('safe', 0, 0, { maxBytes: 1024, maxWaitMs: 5000 });
    await broker.messages.produce('safe', 0, batchOf('s'));
    const result = await waiting;
    expect(valuesOf(result.records)).toEqual(['s/0']);
    expect(result.highWatermark).toBe(1);
  });

  it('bounds the fetches waiting on one partition with BACKPRESSURE', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('t', { partitions: 2 });
    const timersBefore = timeoutCount();
    const waiting = Array.from({ length: fetchWaitersPerPartitionMax }, () =>
      broker.messages.fetch('t', 0, 0, { maxBytes: 1024, maxWaitMs: 10_000 }),
    );
    await sleep(10);
    expect(await rejectedCode(broker.messages.fetch('t', 0, 0, { maxBytes: 1024, maxWaitMs: 10_000 }))).toBe(
      'BACKPRESSURE',
    );
    // Without waiting, or on another partition, fetches still work.
    expect((await broker.messages.fetch('t', 0, 0, { maxBytes: 1024, maxWaitMs: 0 })).batchCount).toBe(0);
    const other = broker.messages.fetch('t', 1, 0, { maxBytes: 1024, maxWaitMs: 10_000 });
    await broker.messages.produce('t', 0, batchOf('all'));
    const results = await Promise.all(waiting);
    expect(results.every((result) => result.batchCount === 1)).toBe(true);
    await broker.messages.produce('t', 1, batchOf('one'));
    expect((await other).batchCount).toBe(1);
    expect(timeoutCount()).toBeLessThanOrEqual(timersBefore);
    expect(broker.waitingFetchCount).toBe(0);
  });
});
