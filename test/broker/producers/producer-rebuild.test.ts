/**
 * The producer-state rebuild of a new leadership in cluster mode (broker-producers.ts,
 * `leaderSequences`/`rebuild`), on a real broker whose partition gets a new role object per
 * "leadership" (as the replication layer gives one per leader epoch):
 *
 * - a partition of 20,500 batches (40 producers, some of them moving to epoch 1, plain batches
 *   between): the state rebuilt in slices equals the run-time state and an unsliced replay of the
 *   whole log; the rebuild took several event-loop turns and another callback ran while it was
 *   under way; the batches that waited for it are checked against it (next sequence appended, a
 *   repeat answered with its offsets, an older epoch fenced from the batch headers alone);
 * - the leadership moving during the rebuild: the waiting batch gets NOT_LEADER;
 * - more batches waiting than producerRebuildWaitersMax: BACKPRESSURE for the extra one.
 */
import { describe, expect, it } from 'vitest';
import type { Partition } from '../../../src/broker/partition.js';
import type { PartitionReplica } from '../../../src/broker/partition-replica.js';
import {
  PartitionSequences,
  type ProducerOnPartition,
} from '../../../src/broker/producers/producer-sequences.js';
import { SpillwayError } from '../../../src/errors.js';
import { BatchBuilder } from '../../../src/format/record-batch.js';
import { producerRebuildBatchesPerSlice, producerRebuildWaitersMax } from '../../../src/limits.js';
import { batchOf, openBroker, rejectedCode, temporaryDirectory } from '../helpers.js';

function idempotentBatch(
  producerId: number,
  producerEpoch: number,
  baseSequence: number,
  count = 1,
): Uint8Array {
  const builder = new BatchBuilder();
  for (let i = 0; i < count; i++)
    builder.append({ key: null, value: `${producerId}.${producerEpoch}.${baseSequence + i}`, timestamp: 1 });
  return builder.finishCopy({ producerId, producerEpoch, baseSequence });
}

/** A leader role (a new object = a new leadership): takes every produce, replicated at once. */
function leaderRole(): PartitionReplica {
  return {
    highWatermark: Number.MAX_SAFE_INTEGER,
    admitProduce: () => undefined,
    appended: () => undefined,
    replicated: () => Promise.resolve(),
  };
}

/** The role of a broker that no longer leads the partition. */
function followerRole(): PartitionReplica {
  return {
    highWatermark: 0,
    admitProduce: () => {
      throw new SpillwayError('NOT_LEADER', 'not the leader (test)');
    },
    appended: () => undefined,
    replicated: () => Promise.reject(new SpillwayError('NOT_LEADER', 'not the leader (test)')),
  };
}

/** The state without the in-flight answers, comparable with toEqual. */
function plain(state: ReadonlyMap<number, ProducerOnPartition> | undefined): unknown {
  return [...(state ?? new Map<number, ProducerOnPartition>()).entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([id, { epoch, lastSequence, batches }]) => ({
      id,
      epoch,
      lastSequence,
      batches: batches.map(({ result: _result, ...rest }) => rest),
    }));
}

function replayWhole(partition: Partition): unknown {
  const sequences = new PartitionSequences(partition.topic, partition.index, 0, true);
  sequences.replay(partition.log, partition.log.logStartOffset, () => 0);
  return plain(sequences.producers);
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function clusterBroker() {
  const broker = await openBroker(temporaryDirectory(), { segmentBytes: 1024 * 1024 });
  let nextId = 0;
  broker.producers.joinCluster({ nextProducerId: () => Promise.resolve(nextId++) });
  await broker.topics.create('t', { partitions: 1 });
  const partition = broker.topics.partitionOf('t', 0);
  partition.replica = leaderRole();
  return { broker, partition };
}

describe('producer-state rebuild of a new leadership (cluster mode)', () => {
  it('rebuilds a long log in slices, yielding the event loop; identical to the whole replay; waiting batches checked against it', async () => {
    const { broker, partition } = await clusterBroker();
    const producers = 40;
    const rounds = 500;
    const next = new Map<number, { epoch: number; sequence: number }>();
    for (let p = 0; p < producers; p++) next.set(p, { epoch: 0, sequence: 0 });
    for (let round = 0; round < rounds; round++) {
      const answers: Array<Promise<unknown>> = [];
      for (let p = 0; p < producers; p++) {
        const state = next.get(p)!;
        // Every 10th producer is registered again (epoch 1) two thirds of the way: its sequences restart.
        if (round === 330 && p % 10 === 0) next.set(p, { epoch: 1, sequence: 0 });
        const { epoch, sequence } = next.get(p)!;
        answers.push(broker.messages.produce('t', 0, idempotentBatch(p, epoch, sequence, 2)));
        next.set(p, { epoch, sequence: sequence + 2 });
        void state;
      }
      answers.push(broker.messages.produce('t', 0, batchOf(`plain${round}`)));
      await Promise.all(answers);
    }
    const batches = producers * rounds + rounds;
    expect(batches).toBeGreaterThan(4 * producerRebuildBatchesPerSlice);
    const runTime = plain(broker.producers.partitionState(partition));
    expect(replayWhole(partition)).toEqual(runTime);

    // A new leadership: the first idempotent batch starts the rebuild and waits for it.
    partition.replica = leaderRole();
    const slicesBefore = broker.producers.stats().replayedSlices;
    const partitionsBefore = broker.producers.stats().replayedPartitions;
    const endBefore = partition.log.logEndOffset;
    const p1 = next.get(1)!;
    const p1Last = { baseOffset: -1, lastOffset: -1 };
    const remembered = broker.producers.partitionState(partition)!.get(1)!;
    Object.assign(p1Last, remembered.batches[remembered.batches.length - 1]);
    const appended = broker.messages.produce('t', 0, idempotentBatch(2, 0, next.get(2)!.sequence, 2));
    const repeated = broker.messages.produce('t', 0, idempotentBatch(1, p1.epoch, p1.sequence - 2, 2));
    const fenced = rejectedCode(broker.messages.produce('t', 0, idempotentBatch(0, 0, 2 * 330, 2)));
    // The event loop turns while the rebuild is under way (it is not done after one turn).
    await turn();
    expect(broker.producers.stats().replayedPartitions).toBe(partitionsBefore);
    expect(broker.producers.partitionState(partition)).toBeUndefined();
    expect(await appended).toMatchObject({ baseOffset: endBefore, lastOffset: endBefore + 1 });
    expect(await repeated).toMatchObject({ baseOffset: p1Last.baseOffset, lastOffset: p1Last.lastOffset });
    expect(await fenced).toBe('PRODUCER_FENCED');
    const stats = broker.producers.stats();
    expect(stats.replayedPartitions).toBe(partitionsBefore + 1);
    expect(stats.replayedSlices - slicesBefore).toBeGreaterThanOrEqual(
      Math.floor(batches / producerRebuildBatchesPerSlice),
    );
    // The rebuilt state (with the one batch appended since) is the whole log's replay.
    expect(plain(broker.producers.partitionState(partition))).toEqual(replayWhole(partition));
  }, 60_000);

  it('the leadership moving during the rebuild: the waiting batch gets NOT_LEADER; too many waiting: BACKPRESSURE', async () => {
    const { broker, partition } = await clusterBroker();
    const plainBatches = 5 * producerRebuildBatchesPerSlice;
    for (let i = 0; i < plainBatches; i += 1024) {
      await Promise.all(
        // Straight into the log (plain batches: only their headers matter here).
        Array.from({ length: 1024 }, (_, j) => partition.log.append(batchOf(`b${i + j}`))),
      );
    }
    expect(await broker.messages.produce('t', 0, idempotentBatch(7, 0, 0))).toMatchObject({
      lastOffset: plainBatches,
    });

    partition.replica = leaderRole();
    const waiting = rejectedCode(broker.messages.produce('t', 0, idempotentBatch(7, 0, 1)));
    await turn();
    partition.replica = followerRole();
    expect(await waiting).toBe('NOT_LEADER');

    partition.replica = leaderRole();
    const repeats = Array.from({ length: producerRebuildWaitersMax }, () =>
      broker.messages.produce('t', 0, idempotentBatch(7, 0, 0)),
    );
    expect(await rejectedCode(broker.messages.produce('t', 0, idempotentBatch(7, 0, 0)))).toBe(
      'BACKPRESSURE',
    );
    for (const answer of await Promise.all(repeats)) {
      expect(answer).toMatchObject({ baseOffset: plainBatches });
    }
    // Once rebuilt, nothing waits: the next sequence is appended at once.
    expect(await broker.messages.produce('t', 0, idempotentBatch(7, 0, 1))).toMatchObject({
      baseOffset: plainBatches + 1,
    });
  }, 60_000);
});
