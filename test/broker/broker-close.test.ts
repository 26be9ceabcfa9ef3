import { describe, expect, it } from 'vitest';
import { Broker } from '../../src/spillway-broker.js';
import { batchOf, readAll, rejectedCode, temporaryDirectory, thrownCode } from './helpers.js';

describe('Broker close', () => {
  it('rejects every call after close with BROKER_CLOSING', async () => {
    const broker = await Broker.open({ dataDir: temporaryDirectory(), segmentBytes: 64 * 1024 });
    await broker.topics.create('t');
    expect(broker.closed).toBe(false);
    const closing = broker.close();
    expect(broker.closed).toBe(true);
    expect(broker.close()).toBe(closing);
    const fetchNow = { maxBytes: 1024, maxWaitMs: 0 };
    expect(await rejectedCode(broker.topics.create('u'))).toBe('BROKER_CLOSING');
    expect(await rejectedCode(broker.topics.delete('t'))).toBe('BROKER_CLOSING');
    expect(await rejectedCode(broker.topics.addPartitions('t', 1))).toBe('BROKER_CLOSING');
    expect(await rejectedCode(broker.messages.produce('t', 0, batchOf('a')))).toBe('BROKER_CLOSING');
    expect(await rejectedCode(broker.messages.fetch('t', 0, 0, fetchNow))).toBe('BROKER_CLOSING');
    expect(await rejectedCode(broker.listen({ port: 0 }))).toBe('BROKER_CLOSING');
    expect(thrownCode(() => broker.topics.list())).toBe('BROKER_CLOSING');
    expect(thrownCode(() => broker.topics.describe('t'))).toBe('BROKER_CLOSING');
    expect(thrownCode(() => broker.messages.listOffset('t', 0, 'latest'))).toBe('BROKER_CLOSING');
    await closing;
    expect(await rejectedCode(broker.messages.produce('t', 0, batchOf('a')))).toBe('BROKER_CLOSING');
  });

  it('finishes in-flight produces and the running admin operation before closing the logs', async () => {
    const dataDir = temporaryDirectory();
    let broker = await Broker.open({ dataDir, segmentBytes: 64 * 1024 });
    await broker.topics.create('safe', { durability: 'always', partitions: 2 });
    await broker.topics.create('fast', { durability: 'interval', flushIntervalMs: 60_000 });
    const produces = [];
    for (let i = 0; i < 50; i++) {
      produces.push(broker.messages.produce('safe', i % 2, batchOf(`s${i}`)));
      produces.push(broker.messages.produce('fast', 0, batchOf(`f${i}`)));
    }
    const creating = broker.topics.create('late', { partitions: 2 });
    await broker.close();
    const results = await Promise.all(produces);
    expect(results.filter((result) => result.durability === 'always')).toHaveLength(50);
    expect((await creating).partitionCount).toBe(2);

    broker = await Broker.open({ dataDir });
    try {
      expect(broker.openReport.warnings).toEqual([]);
      expect(broker.topics.list().map((topic) => topic.name)).toEqual(['fast', 'late', 'safe']);
      expect(await readAll(broker, 'fast', 0)).toEqual(Array.from({ length: 50 }, (_, i) => `f${i}/0`));
      const safe = [...(await readAll(broker, 'safe', 0)), ...(await readAll(broker, 'safe', 1))];
      expect(safe.sort()).toEqual(Array.from({ length: 50 }, (_, i) => `s${i}/0`).sort());
    } finally {
      await broker.close();
    }
  });

  it('can be opened again on the same directory once closed', async () => {
    const dataDir = temporaryDirectory();
    const first = await Broker.open({ dataDir });
    await first.close();
    const second = await Broker.open({ dataDir });
    expect(second.openReport.topicCount).toBe(0);
    await second.close();
  });
});
