/**
 * Commit rounds (src/broker/transactions/commit-rounds.ts): a transaction's batches in several
 * partitions become visible in one step, once all are acknowledged and every earlier round has
 * released; a round whose delivery fails keeps its holds until it succeeds. Partitions over
 * MemoryLog; acknowledgements are promises the test settles by hand.
 */
import { describe, expect, it } from 'vitest';
import { Partition } from '../../../src/broker/partition.js';
import { CommitRounds } from '../../../src/broker/transactions/commit-rounds.js';
import { encodeBatch } from '../../../src/format/record-batch.js';
import { MemoryLog } from '../../../src/storage/memory-log.js';

function partitionNamed(name: string): Partition {
  return new Partition(name, 0, new MemoryLog(), 'interval');
}

/** A delivery that appends at once and is acknowledged when the test says so. */
function delivery(partition: Partition, value: string) {
  let acknowledge!: () => void;
  let fail!: (error: Error) => void;
  const acknowledged = new Promise<void>((resolve, reject) => {
    acknowledge = resolve;
    fail = reject;
  });
  let attempts = 0;
  return {
    control: {
      acknowledge: () => acknowledge(),
      fail: (error: Error) => fail(error),
      get attempts() {
        return attempts;
      },
    },
    item: {
      partition,
      deliver: () => {
        attempts++;
        void partition.log.append(encodeBatch([{ value }]));
        return attempts === 1 ? acknowledged : Promise.resolve();
      },
    },
  };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('commit rounds', () => {
  it('releases all partitions of a round together, after every earlier round', async () => {
    const a = partitionNamed('a');
    const b = partitionNamed('b');
    const released: string[][] = [];
    const rounds = new CommitRounds((partitions) => released.push(partitions.map((p) => p.topic)));
    const first = [delivery(a, 'a1'), delivery(b, 'b1')];
    const running1 = rounds.start(first.map((d) => d.item)).run();
    const second = [delivery(a, 'a2')];
    const running2 = rounds.start(second.map((d) => d.item)).run();
    // Appended, not visible: both partitions held.
    expect([a.log.logEndOffset, b.log.logEndOffset]).toEqual([2, 1]);
    expect([a.visibleEndOffset, b.visibleEndOffset]).toEqual([0, 0]);
    // The later round is acknowledged first: it waits for the earlier one.
    second[0]!.control.acknowledge();
    first[0]!.control.acknowledge();
    await settle();
    expect([a.visibleEndOffset, b.visibleEndOffset]).toEqual([0, 0]);
    expect(released).toEqual([]);
    first[1]!.control.acknowledge();
    await running1;
    await running2;
    expect([a.visibleEndOffset, b.visibleEndOffset]).toEqual([2, 1]);
    expect(released).toEqual([['a', 'b'], ['a']]);
  });

  it('a failed delivery keeps the holds until the round is run again and succeeds', async () => {
    const a = partitionNamed('a');
    const b = partitionNamed('b');
    const rounds = new CommitRounds(() => undefined);
    const deliveries = [delivery(a, 'a1'), delivery(b, 'b1')];
    const round = rounds.start(deliveries.map((d) => d.item));
    const running = round.run();
    deliveries[0]!.control.acknowledge();
    deliveries[1]!.control.fail(new Error('disk full'));
    await expect(running).rejects.toThrow('disk full');
    expect([a.visibleEndOffset, b.visibleEndOffset]).toEqual([0, 0]);
    // Run again: only the failed delivery is redone.
    await round.run();
    expect(deliveries.map((d) => d.control.attempts)).toEqual([1, 2]);
    expect([a.visibleEndOffset, b.visibleEndOffset]).toEqual([1, 2]);
  });
});
