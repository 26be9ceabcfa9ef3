/**
 * Msg-id dedup in cluster mode (src/broker/dedup/cluster-dedup-index.ts) on a real broker whose
 * dedup joined the cluster: the index is per partition and belongs to one leadership
 * (`Partition.replica`); a new leadership rebuilds it from the partition's log (ids within the
 * window only, read in slices with the event loop free between them), and an old one's index is
 * dropped. The leaderships here are plain `PartitionReplica` objects that admit every produce (the
 * replication layer's part is covered on real processes by test/cluster/cluster-dedup.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { dedupBucketMs } from '../../../src/broker/dedup/broker-dedup.js';
import type { PartitionReplica } from '../../../src/broker/partition-replica.js';
import { ManualClock } from '../../../src/clock.js';
import { encodeBatch, type RecordInput } from '../../../src/format/record-batch.js';
import { dedupRebuildSliceBytes } from '../../../src/limits.js';
import { msgIdHeader } from '../../../src/protocol/reserved-headers.js';
import type { Broker } from '../../../src/spillway-broker.js';
import { openBroker, readAll, temporaryDirectory } from '../helpers.js';

const windowMs = 60_000;

/** A leadership that admits everything and acknowledges at once (one object per leadership). */
function leadership(): PartitionReplica {
  return {
    highWatermark: Number.MAX_SAFE_INTEGER,
    admitProduce: () => undefined,
    appended: () => undefined,
    replicated: () => Promise.resolve(),
  };
}

function batch(clock: ManualClock, ids: string[], value = 'v'): Uint8Array {
  const records: RecordInput[] = ids.map((id) => ({
    value: `${value}-${id}`,
    headers: [[msgIdHeader, id]],
    timestamp: clock.nowMs(),
  }));
  return encodeBatch(records);
}

async function clusterBroker(clock: ManualClock): Promise<Broker> {
  const broker = await openBroker(temporaryDirectory(), { clock });
  broker.dedup.joinCluster();
  await broker.topics.create('t', { partitions: 2, dedupWindowMs: windowMs });
  for (const partition of [0, 1]) broker.topics.partitionOf('t', partition).replica = leadership();
  return broker;
}

describe('msg-id dedup in cluster mode', () => {
  it('folds copies within a partition only, and rebuilds the index of a new leadership from the log', async () => {
    const clock = new ManualClock();
    const broker = await clusterBroker(clock);
    const first = await broker.messages.produce('t', 0, batch(clock, ['a', 'b', 'c']));
    expect(first).toMatchObject({ baseOffset: 0, lastOffset: 2 });
    const copy = await broker.messages.produce('t', 0, batch(clock, ['b'], 'copy'));
    expect(copy).toMatchObject({ baseOffset: -1, recordPartitions: [0], recordOffsets: [1] });
    // The same id on the other partition: written (per-partition scope in a cluster).
    const other = await broker.messages.produce('t', 1, batch(clock, ['a'], 'other'));
    expect(other).toMatchObject({ partition: 1, baseOffset: 0, lastOffset: 0 });
    expect(broker.dedup.clusterRebuilds).toEqual({ partitions: 2, ids: 0, batches: 0 });

    // A new leadership of partition 0: its index is rebuilt from the log, copies still folded.
    broker.topics.partitionOf('t', 0).replica = leadership();
    const afterMove = await broker.messages.produce('t', 0, batch(clock, ['c', 'd'], 'copy'));
    expect(afterMove).toMatchObject({ baseOffset: 3, recordPartitions: [0, 0], recordOffsets: [2, 3] });
    expect(broker.dedup.clusterRebuilds).toEqual({ partitions: 3, ids: 3, batches: 1 });
    expect(await readAll(broker, 't', 0)).toEqual(['v-a', 'v-b', 'v-c', 'copy-d']);

    // Past the window (and its last bucket), a new leadership finds nothing to rebuild: written again.
    clock.advance(windowMs + dedupBucketMs(windowMs) + 1);
    broker.topics.partitionOf('t', 0).replica = leadership();
    const late = await broker.messages.produce('t', 0, batch(clock, ['a'], 'late'));
    expect(late).toMatchObject({ baseOffset: 4, lastOffset: 4 });
    expect(broker.dedup.clusterRebuilds?.partitions).toBe(4);
    expect(broker.dedup.stats.topics).toBe(2);
    await broker.close();
  });

  it('rebuilds a large log in slices with the event loop free between them', async () => {
    const clock = new ManualClock();
    const broker = await clusterBroker(clock);
    const value = 'x'.repeat(1000);
    const ids: string[] = [];
    const slices = 3;
    const batches = Math.ceil((slices * dedupRebuildSliceBytes) / (50 * 1030));
    for (let b = 0; b < batches; b++) {
      const records: RecordInput[] = [];
      for (let r = 0; r < 50; r++) {
        const id = `id-${b}-${r}`;
        ids.push(id);
        records.push({ value, headers: [[msgIdHeader, id]], timestamp: clock.nowMs() });
      }
      await broker.messages.produce('t', 0, encodeBatch(records));
    }
    broker.topics.partitionOf('t', 0).replica = leadership();
    let turns = 0;
    let counting = true;
    const count = (): void => {
      if (!counting) return;
      turns++;
      setImmediate(count);
    };
    setImmediate(count);
    const copies = await broker.messages.produce('t', 0, batch(clock, [ids[0]!, ids.at(-1)!], 'copy'));
    counting = false;
    expect(copies).toMatchObject({ baseOffset: -1, recordOffsets: [0, ids.length - 1] });
    const rebuilt = broker.dedup.clusterRebuilds!;
    expect(rebuilt.ids).toBe(ids.length);
    expect(rebuilt.batches).toBe(batches);
    // The loop turned while the rebuild read its slices (at least one turn between two slices).
    expect(turns).toBeGreaterThanOrEqual(slices - 1);
    await broker.close();
  });
});
