/**
 * The producer-state service against a real broker (no network): registration and fencing, the
 * sequence rules (append, repeat answered with its original offsets, out of order, unknown producer),
 * idle expiry and the producer cap, and recovery of ids, epochs and sequences across a clean restart
 * and an unclean one (the sequence snapshot left behind the log, rebuilt from the batch headers).
 */
import { cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../../src/clock.js';
import { BatchBuilder } from '../../../src/format/record-batch.js';
import { batchOf, openBroker, readAll, rejectedCode, temporaryDirectory } from '../helpers.js';

/** An idempotent batch of `count` records valued `${tag}/i`. */
function idempotentBatch(
  producerId: number,
  producerEpoch: number,
  baseSequence: number,
  tag: string,
  count = 2,
): Uint8Array {
  const builder = new BatchBuilder();
  for (let i = 0; i < count; i++)
    builder.append({ key: null, value: `${tag}/${i}`, timestamp: 1_700_000_000_000 });
  return builder.finishCopy({ producerId, producerEpoch, baseSequence });
}

describe('producer state', () => {
  it('hands out ids unique across restarts; a name gets the same id with a bumped epoch', async () => {
    const dataDir = temporaryDirectory();
    let broker = await openBroker(dataDir);
    expect(await broker.producers.initProducer({})).toEqual({ producerId: 0, producerEpoch: 0 });
    expect(await broker.producers.initProducer({ name: 'svc' })).toEqual({ producerId: 1, producerEpoch: 0 });
    expect(await broker.producers.initProducer({ name: 'svc' })).toEqual({ producerId: 1, producerEpoch: 1 });
    await broker.close();
    broker = await openBroker(dataDir);
    expect(await broker.producers.initProducer({})).toEqual({ producerId: 2, producerEpoch: 0 });
    expect(await broker.producers.initProducer({ name: 'svc' })).toEqual({ producerId: 1, producerEpoch: 2 });
    expect(broker.topics.describe('__producer_state').partitionCount).toBe(1);
  });

  it('appends in sequence, answers a repeat with its first offsets, refuses gaps, old epochs and unknown ids', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('t');
    const { producerId } = await broker.producers.initProducer({ name: 'a' });
    const first = await broker.messages.produce('t', 0, idempotentBatch(producerId, 0, 0, 'x'));
    expect(first).toMatchObject({ baseOffset: 0, lastOffset: 1 });
    expect(await broker.messages.produce('t', 0, idempotentBatch(producerId, 0, 2, 'y'))).toMatchObject({
      baseOffset: 2,
    });
    // The first batch again (a retry after a lost answer): its own offsets, nothing written.
    expect(await broker.messages.produce('t', 0, idempotentBatch(producerId, 0, 0, 'x'))).toMatchObject({
      baseOffset: 0,
      lastOffset: 1,
    });
    expect(
      await rejectedCode(broker.messages.produce('t', 0, idempotentBatch(producerId, 0, 9, 'gap'))),
    ).toBe('OUT_OF_ORDER_SEQUENCE');
    // Same first sequence, other length: not a repeat.
    expect(
      await rejectedCode(broker.messages.produce('t', 0, idempotentBatch(producerId, 0, 2, 'y', 3))),
    ).toBe('OUT_OF_ORDER_SEQUENCE');
    expect(await rejectedCode(broker.messages.produce('t', 0, idempotentBatch(77, 0, 0, 'who')))).toBe(
      'UNKNOWN_PRODUCER_ID',
    );
    await broker.producers.initProducer({ name: 'a' });
    expect(
      await rejectedCode(broker.messages.produce('t', 0, idempotentBatch(producerId, 0, 4, 'old'))),
    ).toBe('PRODUCER_FENCED');
    // The new epoch starts its sequences at 0.
    expect(await rejectedCode(broker.messages.produce('t', 0, idempotentBatch(producerId, 1, 4, 'z')))).toBe(
      'OUT_OF_ORDER_SEQUENCE',
    );
    expect(await broker.messages.produce('t', 0, idempotentBatch(producerId, 1, 0, 'z'))).toMatchObject({
      baseOffset: 4,
    });
    expect(await readAll(broker, 't', 0)).toEqual(['x/0', 'x/1', 'y/0', 'y/1', 'z/0', 'z/1']);
  });

  it('remembers the last 5 batches: a repeat of the 6th last is out of order', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('t');
    const { producerId } = await broker.producers.initProducer({});
    for (let i = 0; i < 6; i++)
      await broker.messages.produce('t', 0, idempotentBatch(producerId, 0, 2 * i, `b${i}`));
    expect(await broker.messages.produce('t', 0, idempotentBatch(producerId, 0, 2, 'b1'))).toMatchObject({
      baseOffset: 2,
    });
    expect(await rejectedCode(broker.messages.produce('t', 0, idempotentBatch(producerId, 0, 0, 'b0')))).toBe(
      'OUT_OF_ORDER_SEQUENCE',
    );
    expect((await readAll(broker, 't', 0)).length).toBe(12);
  });

  it('a repeat of a batch still being appended gets the same answer', async () => {
    const broker = await openBroker(temporaryDirectory(), { durability: 'always' });
    await broker.topics.create('t');
    const { producerId } = await broker.producers.initProducer({});
    const batch = idempotentBatch(producerId, 0, 0, 'x');
    const [a, b] = await Promise.all([
      broker.messages.produce('t', 0, batch),
      broker.messages.produce('t', 0, batch),
    ]);
    expect(a).toEqual(b);
    expect(await readAll(broker, 't', 0)).toEqual(['x/0', 'x/1']);
  });

  it('drops producers idle past producerIdleExpiryMs, and the idlest one past producersMax', async () => {
    const clock = new ManualClock();
    const broker = await openBroker(temporaryDirectory(), {
      clock,
      producerIdleExpiryMs: 60_000,
      producersMax: 2,
    });
    await broker.topics.create('t');
    const a = await broker.producers.initProducer({});
    clock.advance(10_000);
    const b = await broker.producers.initProducer({});
    clock.advance(1_000);
    await broker.messages.produce('t', 0, idempotentBatch(a.producerId, 0, 0, 'a'));
    clock.advance(10_000);
    // Full: the idlest (b, unused since its registration) makes room.
    const c = await broker.producers.initProducer({});
    expect(broker.producers.stats()).toMatchObject({ producers: 2, evicted: 1 });
    expect(
      await rejectedCode(broker.messages.produce('t', 0, idempotentBatch(b.producerId, 0, 0, 'b'))),
    ).toBe('UNKNOWN_PRODUCER_ID');
    clock.advance(54_000);
    clock.advance(1_000);
    // a was last used 64 s ago, c 55 s ago.
    expect(
      await rejectedCode(broker.messages.produce('t', 0, idempotentBatch(a.producerId, 0, 2, 'a'))),
    ).toBe('UNKNOWN_PRODUCER_ID');
    expect(broker.producers.stats()).toMatchObject({ producers: 1, expired: 1 });
    expect(await broker.messages.produce('t', 0, idempotentBatch(c.producerId, 0, 0, 'c'))).toMatchObject({
      baseOffset: 2,
    });
  });

  it('recovers ids, epochs and sequences after a clean restart and from an unclean copy', async () => {
    const dataDir = temporaryDirectory();
    let broker = await openBroker(dataDir, { producerSnapshotIntervalMs: 3_600_000 });
    await broker.topics.create('t', { partitions: 2 });
    const { producerId } = await broker.producers.initProducer({ name: 'p' });
    for (let i = 0; i < 4; i++)
      await broker.messages.produce('t', i % 2, idempotentBatch(producerId, 0, 2 * (i >> 1), `r${i}`));
    // A copy of the data directory while the broker runs: no sequence snapshot since the batches
    // (only the empty ones made before each partition's first batch), as after a SIGKILL.
    const copy = join(temporaryDirectory(), 'copy');
    cpSync(dataDir, copy, { recursive: true, filter: (path) => !path.endsWith('.lock') });
    await broker.close();
    for (const dir of [dataDir, copy]) {
      broker = await openBroker(dir);
      // Repeats answered with their original offsets, nothing written twice.
      expect(await broker.messages.produce('t', 1, idempotentBatch(producerId, 0, 2, 'r3'))).toMatchObject({
        baseOffset: 2,
      });
      expect(await broker.messages.produce('t', 0, idempotentBatch(producerId, 0, 0, 'r0'))).toMatchObject({
        baseOffset: 0,
      });
      expect(
        await rejectedCode(broker.messages.produce('t', 0, idempotentBatch(producerId, 0, 6, 'gap'))),
      ).toBe('OUT_OF_ORDER_SEQUENCE');
      expect(await broker.messages.produce('t', 0, idempotentBatch(producerId, 0, 4, 'next'))).toMatchObject({
        baseOffset: 4,
      });
      expect(await readAll(broker, 't', 0)).toEqual(['r0/0', 'r0/1', 'r2/0', 'r2/1', 'next/0', 'next/1']);
      const stats = broker.producers.stats();
      expect(stats.replayedPartitions).toBe(2);
      if (dir === copy) expect(stats.replayedBatches).toBe(4);
      else expect(stats.replayedBatches).toBe(0); // the clean close wrote the snapshots
      expect(await broker.producers.initProducer({ name: 'p' })).toEqual({ producerId, producerEpoch: 1 });
      await broker.close();
    }
  });

  it('forgets the sequences of a deleted topic; a topic created again starts afresh', async () => {
    const dataDir = temporaryDirectory();
    let broker = await openBroker(dataDir);
    await broker.topics.create('t');
    const { producerId } = await broker.producers.initProducer({});
    await broker.messages.produce('t', 0, idempotentBatch(producerId, 0, 0, 'a'));
    await broker.producers.snapshotChanged();
    await broker.topics.delete('t');
    await broker.topics.create('t');
    expect(await broker.messages.produce('t', 0, idempotentBatch(producerId, 0, 0, 'a'))).toMatchObject({
      baseOffset: 0,
    });
    await broker.close();
    broker = await openBroker(dataDir);
    expect(await broker.messages.produce('t', 0, idempotentBatch(producerId, 0, 2, 'b'))).toMatchObject({
      baseOffset: 2,
    });
  });

  it('a log shorter than its sequence snapshot (unsynced tail lost): lost batches are taken again', async () => {
    const dataDir = temporaryDirectory();
    const broker = await openBroker(dataDir, { producerSnapshotIntervalMs: 3_600_000 });
    await broker.topics.create('t');
    const { producerId } = await broker.producers.initProducer({});
    await broker.messages.produce('t', 0, idempotentBatch(producerId, 0, 0, 'b0'));
    await broker.messages.produce('t', 0, idempotentBatch(producerId, 0, 2, 'b1'));
    const shortLog = join(temporaryDirectory(), 'short');
    cpSync(join(dataDir, 'topics', 't'), shortLog, { recursive: true });
    await broker.messages.produce('t', 0, idempotentBatch(producerId, 0, 4, 'b2'));
    await broker.messages.produce('t', 0, idempotentBatch(producerId, 0, 6, 'b3'));
    await broker.producers.snapshotChanged();
    // The state log says b0..b3, the partition log kept b0 and b1 only.
    const crashed = join(temporaryDirectory(), 'crashed');
    cpSync(dataDir, crashed, { recursive: true, filter: (path) => !path.endsWith('.lock') });
    rmSync(join(crashed, 'topics', 't'), { recursive: true });
    cpSync(shortLog, join(crashed, 'topics', 't'), { recursive: true });
    const first = await openBroker(crashed);
    await first.messages.produce('t', 0, batchOf('plain'));
    // b2 and b3 come again (never acknowledged, say): written, not mistaken for repeats.
    expect(await first.messages.produce('t', 0, idempotentBatch(producerId, 0, 4, 'b2'))).toMatchObject({
      baseOffset: 5,
    });
    expect(await first.messages.produce('t', 0, idempotentBatch(producerId, 0, 6, 'b3'))).toMatchObject({
      baseOffset: 7,
    });
    expect(await readAll(first, 't', 0)).toEqual([
      'b0/0',
      'b0/1',
      'b1/0',
      'b1/1',
      'plain/0',
      'b2/0',
      'b2/1',
      'b3/0',
      'b3/1',
    ]);
    // Killed again before any periodic snapshot: the snapshot written at the first open (as of
    // offset 4) makes the second read b2 and b3 back from their headers; repeats get their offsets.
    const again = join(temporaryDirectory(), 'again');
    cpSync(crashed, again, { recursive: true, filter: (path) => !path.endsWith('.lock') });
    const second = await openBroker(again);
    expect(await second.messages.produce('t', 0, idempotentBatch(producerId, 0, 4, 'b2'))).toMatchObject({
      baseOffset: 5,
    });
    expect(await second.messages.produce('t', 0, idempotentBatch(producerId, 0, 8, 'b4'))).toMatchObject({
      baseOffset: 9,
    });
    expect((await readAll(second, 't', 0)).length).toBe(11);
  });
});
