/**
 * Msg-id dedup in the broker (src/broker/dedup/): duplicates inside the window folded onto the first
 * copy (across partitions of the topic), outside it written again, mixed batches re-encoded and
 * answered per record, concurrent copies written once, bad msgIds refused, the index across a clean
 * restart and across data appended but never indexed (the crash window), and no change at all for
 * topics without a window or batches without msgIds. Time runs on a ManualClock.
 */
import { describe, expect, it } from 'vitest';
import { dedupBucketMs } from '../../../src/broker/dedup/broker-dedup.js';
import { dedupTopicName } from '../../../src/broker/dedup/dedup-store.js';
import { ManualClock } from '../../../src/clock.js';
import { BatchBuilder, encodeBatch, type RecordInput } from '../../../src/format/record-batch.js';
import { dedupWindowMsMax, msgIdBytesMax } from '../../../src/limits.js';
import { msgIdHeader } from '../../../src/protocol/reserved-headers.js';
import type { Broker } from '../../../src/spillway-broker.js';
import { openBroker, readAll, rejectedCode, temporaryDirectory } from '../helpers.js';

function record(value: string, msgId?: string | Uint8Array | null): RecordInput {
  return msgId === undefined ? { value } : { value, headers: [[msgIdHeader, msgId]] };
}

function batch(...records: RecordInput[]): Uint8Array {
  return encodeBatch(records);
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Until the ids answered so far are recorded (they are recorded behind the answer). */
async function recorded(broker: Broker): Promise<void> {
  while (broker.dedup.stats.claimed > 0) await new Promise((resolve) => setTimeout(resolve, 1));
}

async function allValues(broker: Broker, topic: string): Promise<string[]> {
  const partitions = broker.topics.describe(topic).partitionCount;
  const values: string[] = [];
  for (let partition = 0; partition < partitions; partition++) {
    values.push(...(await readAll(broker, topic, partition)));
  }
  return values;
}

const windowMs = 60_000;

describe('msg-id dedup', () => {
  it('folds a duplicate inside the window onto the first copy, on any partition of the topic', async () => {
    const clock = new ManualClock();
    const broker = await openBroker(temporaryDirectory(), { clock });
    await broker.topics.create('t', { partitions: 3, dedupWindowMs: windowMs });
    const first = await broker.messages.produce('t', 1, batch(record('a', 'id-1')));
    expect(first).toEqual({ partition: 1, baseOffset: 0, lastOffset: 0, durability: 'none' });
    clock.advance(windowMs - 1);
    // Same id on another partition: not written, answered with the first copy's position.
    const again = await broker.messages.produce('t', 2, batch(record('a again', 'id-1')));
    expect(again).toEqual({
      partition: 2,
      baseOffset: -1,
      lastOffset: -1,
      durability: 'none',
      recordPartitions: [1],
      recordOffsets: [0],
    });
    expect(await allValues(broker, 't')).toEqual(['a']);
    expect(broker.dedup.stats).toMatchObject({ ids: 1, duplicates: 1, claimed: 0 });
  });

  it('writes a copy again once the window (and its bucket) has passed', async () => {
    const clock = new ManualClock();
    const broker = await openBroker(temporaryDirectory(), { clock });
    await broker.topics.create('t', { dedupWindowMs: windowMs });
    await broker.messages.produce('t', 0, batch(record('a', 'x')));
    clock.advance(windowMs + dedupBucketMs(windowMs));
    const later = await broker.messages.produce('t', 0, batch(record('a later', 'x')));
    expect(later).toEqual({ partition: 0, baseOffset: 1, lastOffset: 1, durability: 'none' });
    // ... and that copy starts a window of its own.
    const folded = await broker.messages.produce('t', 0, batch(record('a thrice', 'x')));
    expect(folded.recordOffsets).toEqual([1]);
    expect(await allValues(broker, 't')).toEqual(['a', 'a later']);
    // The expired bucket is gone from memory (the sweep expires without traffic too).
    await broker.messages.produce('t', 0, batch(record('other', 'y')));
    await recorded(broker);
    expect(broker.dedup.stats.ids).toBe(2);
    clock.advance(windowMs + 2 * dedupBucketMs(windowMs));
    // The sweep committed the expiry; it applies once durable (fails by the test timeout otherwise).
    while (broker.dedup.stats.ids > 0) await new Promise((resolve) => setTimeout(resolve, 1));
    expect(broker.dedup.stats.ids).toBe(0);
  });

  it('a batch mixing new and duplicate ids writes only the new ones and answers per record', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('t', { partitions: 2, dedupWindowMs: windowMs });
    await broker.messages.produce('t', 1, batch(record('old', 'o')));
    const mixed = await broker.messages.produce(
      't',
      0,
      batch(
        record('n1', 'n1'),
        record('dup of old', 'o'),
        record('plain'),
        record('n2', 'n2'),
        record('dup of n1 in the same batch', 'n1'),
      ),
    );
    expect(mixed).toEqual({
      partition: 0,
      baseOffset: 0,
      lastOffset: 2,
      durability: 'none',
      recordPartitions: [0, 1, 0, 0, 0],
      recordOffsets: [0, 0, 1, 2, 0],
    });
    expect(await readAll(broker, 't', 0)).toEqual(['n1', 'plain', 'n2']);
    // The msgId headers stay on the records written (the index is rebuilt from them after a crash).
    const fetched = await broker.messages.fetch('t', 0, 0, { maxBytes: 1 << 20, maxWaitMs: 0 });
    expect(fetched.records.length).toBeGreaterThan(0);
    // A batch without msgIds on a dedup topic, and a plain answer when nothing was a duplicate.
    expect(await broker.messages.produce('t', 0, batch(record('p1'), record('p2')))).toEqual({
      partition: 0,
      baseOffset: 3,
      lastOffset: 4,
      durability: 'none',
    });
    expect(await broker.messages.produce('t', 0, batch(record('n3', 'n3'), record('p3')))).toEqual({
      partition: 0,
      baseOffset: 5,
      lastOffset: 6,
      durability: 'none',
    });
  });

  it('two copies in flight at once are written once, whichever partition they go to', async () => {
    const broker = await openBroker(temporaryDirectory(), { durability: 'always' });
    await broker.topics.create('t', { partitions: 4, dedupWindowMs: windowMs });
    const sends = [];
    for (let copy = 0; copy < 8; copy++) {
      for (let id = 0; id < 50; id++) {
        sends.push(broker.messages.produce('t', (id + copy) % 4, batch(record(`v${id}`, `id-${id}`))));
      }
    }
    // Overlapping batches holding several ids each, in different orders.
    sends.push(broker.messages.produce('t', 0, batch(record('v1', 'id-1'), record('v2', 'id-2'))));
    sends.push(broker.messages.produce('t', 1, batch(record('v2', 'id-2'), record('v1', 'id-1'))));
    const results = await Promise.all(sends);
    const values = await allValues(broker, 't');
    expect(values.sort()).toEqual(Array.from({ length: 50 }, (_, id) => `v${id}`).sort());
    // Every copy of an id was answered with the same position.
    const where = new Map<string, string>();
    for (let copy = 0; copy < 8; copy++) {
      for (let id = 0; id < 50; id++) {
        const result = results[copy * 50 + id]!;
        const position =
          result.recordOffsets === undefined
            ? `${result.partition}/${result.baseOffset}`
            : `${result.recordPartitions![0]}/${result.recordOffsets[0]}`;
        if (where.has(`id-${id}`)) expect(position).toBe(where.get(`id-${id}`));
        else where.set(`id-${id}`, position);
      }
    }
    const crossed = results.slice(-2);
    expect(`${crossed[0]!.recordPartitions![0]}/${crossed[0]!.recordOffsets![0]}`).toBe(where.get('id-1'));
    expect(`${crossed[1]!.recordPartitions![1]}/${crossed[1]!.recordOffsets![1]}`).toBe(where.get('id-1'));
    expect(broker.dedup.stats.claimed).toBe(0);
  });

  it('refuses bad msgIds with INVALID_BATCH and writes nothing of the batch', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('t', { dedupWindowMs: windowMs });
    for (const bad of ['', null, 'x'.repeat(msgIdBytesMax + 1), new Uint8Array([0xff, 0xfe])]) {
      expect(
        await rejectedCode(broker.messages.produce('t', 0, batch(record('ok', 'ok'), record('v', bad)))),
      ).toBe('INVALID_BATCH');
    }
    const twice = encodeBatch([
      {
        value: 'v',
        headers: [
          [msgIdHeader, 'a'],
          [msgIdHeader, 'b'],
        ],
      },
    ]);
    expect(await rejectedCode(broker.messages.produce('t', 0, twice))).toBe('INVALID_BATCH');
    expect(await readAll(broker, 't', 0)).toEqual([]);
    // The longest id is fine.
    await broker.messages.produce('t', 0, batch(record('v', 'é'.repeat(msgIdBytesMax / 2))));
    expect(await readAll(broker, 't', 0)).toEqual(['v']);
  });

  it('refuses an idempotent batch carrying msgIds; takes idempotent batches without them', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('t', { dedupWindowMs: 60_000 });
    const { producerId, producerEpoch } = await broker.producers.initProducer({});
    const idempotent = (records: RecordInput[], baseSequence: number): Uint8Array => {
      const builder = new BatchBuilder();
      for (const input of records) builder.append(input);
      return builder.finishCopy({ producerId, producerEpoch, baseSequence });
    };
    expect(await rejectedCode(broker.messages.produce('t', 0, idempotent([record('a', 'id-1')], 0)))).toBe(
      'INVALID_BATCH',
    );
    const plain = await broker.messages.produce('t', 0, idempotent([record('b'), record('c')], 0));
    expect(plain).toMatchObject({ baseOffset: 0, lastOffset: 1 });
    expect(await readAll(broker, 't', 0)).toEqual(['b', 'c']);
  });

  it('changes nothing without a window: msgId headers are plain headers there', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('plain');
    await broker.messages.produce('plain', 0, batch(record('a', 'same')));
    const second = await broker.messages.produce('plain', 0, batch(record('a', 'same'), record('bad', '')));
    expect(second).toEqual({ partition: 0, baseOffset: 1, lastOffset: 2, durability: 'none' });
    expect(broker.dedup.stats.ids).toBe(0);
  });

  it('keeps the index across a restart, and indexes data appended but never recorded', async () => {
    const clock = new ManualClock();
    const dataDir = temporaryDirectory();
    let broker = await openBroker(dataDir, { clock, durability: 'always' });
    await broker.topics.create('t', { partitions: 2, dedupWindowMs: windowMs });
    await broker.topics.create('off');
    await broker.messages.produce('t', 0, batch(record('a', 'a'), record('b', 'b')));
    await broker.close();

    // The crash window: data appended with its msgId, the broker gone before the id was recorded.
    // Written here by appending to the data log directly, then opening the broker again.
    broker = await openBroker(dataDir, { clock, durability: 'always' });
    expect(broker.openReport.stateLogs.map((log) => log.name)).toContain(`${dedupTopicName}/0`);
    await broker.topics.partitionOf('t', 1).log.append(batch(record('c', 'c')));
    await broker.close();

    clock.advance(1000);
    broker = await openBroker(dataDir, { clock, durability: 'always' });
    for (const [id, partition, offset] of [
      ['a', 0, 0],
      ['b', 0, 1],
      ['c', 1, 0],
    ] as const) {
      const answer = await broker.messages.produce('t', 1 - partition, batch(record(`${id} again`, id)));
      expect([answer.recordPartitions, answer.recordOffsets]).toEqual([[partition], [offset]]);
    }
    expect((await allValues(broker, 't')).sort()).toEqual(['a', 'b', 'c']);
    // After the window the restarted broker writes copies again.
    clock.advance(windowMs + dedupBucketMs(windowMs));
    expect((await broker.messages.produce('t', 0, batch(record('a late', 'a')))).baseOffset).toBe(2);
    expect(broker.topics.describe(dedupTopicName).partitionCount).toBe(1);
  });

  it('forgets ids at offsets a crash took from the data log', async () => {
    const dataDir = temporaryDirectory();
    let broker = await openBroker(dataDir);
    await broker.topics.create('t', { dedupWindowMs: windowMs });
    await broker.messages.produce('t', 0, batch(record('a', 'a')));
    await broker.messages.produce('t', 0, batch(record('b', 'b')));
    await broker.close();
    // What a crash of a topic with durability `none` may leave: the index ahead of the data log.
    broker = await openBroker(dataDir);
    broker.topics.partitionOf('t', 0).log.truncateTo(1);
    await broker.close();
    broker = await openBroker(dataDir);
    expect((await broker.messages.produce('t', 0, batch(record('a again', 'a')))).recordOffsets).toEqual([0]);
    // 'b' was lost with its data: a copy of it is written (at the offset it had), not folded onto nothing.
    expect(await broker.messages.produce('t', 0, batch(record('b again', 'b')))).toMatchObject({
      baseOffset: 1,
    });
    expect(await readAll(broker, 't', 0)).toEqual(['a', 'b again']);
  });

  it('drops the index of a deleted topic: a topic created again starts afresh', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('t', { dedupWindowMs: windowMs });
    await broker.messages.produce('t', 0, batch(record('a', 'a')));
    await broker.topics.delete('t');
    await settle();
    await broker.topics.create('t', { dedupWindowMs: windowMs });
    expect(await broker.messages.produce('t', 0, batch(record('a', 'a')))).toMatchObject({ baseOffset: 0 });
    expect(await readAll(broker, 't', 0)).toEqual(['a']);
  });

  it('bounds the index: BACKPRESSURE past dedupIdsMax', async () => {
    const broker = await openBroker(temporaryDirectory(), { dedupIdsMax: 3 });
    await broker.topics.create('t', { dedupWindowMs: windowMs });
    await broker.messages.produce('t', 0, batch(record('1', '1'), record('2', '2')));
    expect(
      await rejectedCode(broker.messages.produce('t', 0, batch(record('3', '3'), record('4', '4')))),
    ).toBe('BACKPRESSURE');
    // Duplicates and plain records still go.
    await broker.messages.produce('t', 0, batch(record('1', '1'), record('p')));
    expect(await readAll(broker, 't', 0)).toEqual(['1', '2', 'p']);
  });

  it('accepts dedupWindowMs up to 7 days and stores it', async () => {
    const dataDir = temporaryDirectory();
    let broker = await openBroker(dataDir);
    expect((await broker.topics.create('w', { dedupWindowMs: dedupWindowMsMax })).config.dedupWindowMs).toBe(
      dedupWindowMsMax,
    );
    expect(await rejectedCode(broker.topics.create('x', { dedupWindowMs: dedupWindowMsMax + 1 }))).toBe(
      'INVALID_ARGUMENT',
    );
    await broker.close();
    broker = await openBroker(dataDir);
    expect(broker.topics.describe('w').config.dedupWindowMs).toBe(dedupWindowMsMax);
  });
});
