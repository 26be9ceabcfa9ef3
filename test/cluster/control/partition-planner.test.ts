/**
 * The controller's decisions (partition-planner.ts) without etcd: replica placement, and the leader
 * and ISR rules, including a property test over random records and live sets.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { noLeader, type PartitionRecord } from '../../../src/cluster/control/cluster-records.js';
import {
  assignReplicas,
  newPartitionRecord,
  planPartition,
} from '../../../src/cluster/control/partition-planner.js';

const record = (fields: Partial<PartitionRecord>): PartitionRecord => ({
  replicas: [1, 2, 3],
  leaderId: 1,
  leaderEpoch: 4,
  isr: [1, 2, 3],
  controllerEpoch: 1,
  ...fields,
});

describe('assignReplicas', () => {
  test('distinct live brokers, as many as the replication factor', () => {
    const replicas = assignReplicas('orders', 0, 3, [5, 1, 9, 7]);
    expect(replicas).toHaveLength(3);
    expect(new Set(replicas).size).toBe(3);
    for (const id of replicas ?? []) expect([1, 5, 7, 9]).toContain(id);
  });

  test('undefined with fewer live brokers than the replication factor', () => {
    expect(assignReplicas('orders', 0, 3, [1, 2])).toBeUndefined();
    expect(assignReplicas('orders', 0, 0, [1, 2])).toBeUndefined();
  });

  test('leaders spread over the brokers across partitions', () => {
    const leaders = new Set<number>();
    for (let partition = 0; partition < 4; partition++) {
      leaders.add((assignReplicas('orders', partition, 2, [1, 2, 3, 4]) as number[])[0] as number);
    }
    expect(leaders.size).toBe(4);
  });

  test('a new partition: the first replica leads at epoch 0, every replica in sync', () => {
    expect(newPartitionRecord([3, 1, 2], 7)).toEqual({
      replicas: [3, 1, 2],
      leaderId: 3,
      leaderEpoch: 0,
      isr: [3, 1, 2],
      controllerEpoch: 7,
    });
  });
});

describe('planPartition', () => {
  test('nothing to do while the leader and the whole ISR live', () => {
    expect(planPartition(record({}), new Set([1, 2, 3]), 2)).toBeUndefined();
    expect(planPartition(record({ isr: [1, 2] }), new Set([1, 2]), 2)).toBeUndefined();
  });

  test('a dead leader: the next ISR member in replicas order leads, epoch + 1, dead ones leave the ISR', () => {
    expect(planPartition(record({}), new Set([2, 3]), 2)).toEqual(
      record({ leaderId: 2, leaderEpoch: 5, isr: [2, 3], controllerEpoch: 2 }),
    );
  });

  test('never a replica outside the ISR, even alive (no unclean election)', () => {
    const next = planPartition(record({ isr: [1, 2] }), new Set([3]), 2);
    expect(next).toEqual(record({ leaderId: noLeader, leaderEpoch: 5, isr: [1, 2], controllerEpoch: 2 }));
  });

  test('an offline partition stays offline, unchanged, until an ISR member returns, which then leads', () => {
    const offline = record({ leaderId: noLeader, isr: [1, 2] });
    expect(planPartition(offline, new Set([3]), 2)).toBeUndefined();
    expect(planPartition(offline, new Set([2, 3]), 2)).toEqual(
      record({ leaderId: 2, leaderEpoch: 5, isr: [2], controllerEpoch: 2 }),
    );
  });

  test('a dead follower leaves the ISR at the same epoch; the leader stays', () => {
    expect(planPartition(record({}), new Set([1, 3]), 2)).toEqual(
      record({ isr: [1, 3], leaderEpoch: 4, controllerEpoch: 2 }),
    );
  });

  test('property: every decision keeps the invariants and elects only from the live ISR', () => {
    const brokerIds = [0, 1, 2, 3, 4];
    const arbitraryRecord = fc
      .shuffledSubarray(brokerIds, { minLength: 1, maxLength: 5 })
      .chain((replicas) =>
        fc.record({
          replicas: fc.constant(replicas),
          isr: fc.shuffledSubarray(replicas, { minLength: 1 }),
          leaderEpoch: fc.nat(1000),
        }),
      )
      .chain(({ replicas, isr, leaderEpoch }) =>
        fc.record({
          replicas: fc.constant(replicas),
          isr: fc.constant(isr),
          leaderEpoch: fc.constant(leaderEpoch),
          leaderId: fc.constantFrom(noLeader, ...isr),
          controllerEpoch: fc.constant(1),
        }),
      );
    fc.assert(
      fc.property(arbitraryRecord, fc.subarray(brokerIds), (current, liveList) => {
        const live = new Set(liveList);
        const next = planPartition(current, live, 2);
        if (next === undefined) {
          // Fine as it is: a live leader with a live ISR, or offline with no live ISR member.
          const liveIsr = current.isr.filter((id) => live.has(id));
          if (current.leaderId === noLeader) expect(liveIsr).toEqual([]);
          else expect(liveIsr).toEqual(current.isr);
          return;
        }
        // The epoch moves exactly when the leader does.
        expect(next.leaderEpoch).toBe(
          next.leaderId === current.leaderId ? current.leaderEpoch : current.leaderEpoch + 1,
        );
        expect(next.replicas).toEqual(current.replicas);
        expect(next.isr.length).toBeGreaterThan(0);
        for (const id of next.isr) expect(current.isr).toContain(id);
        if (next.leaderId === noLeader) {
          expect(current.isr.some((id) => live.has(id))).toBe(false);
          expect(next.isr).toEqual(current.isr);
        } else {
          expect(live.has(next.leaderId)).toBe(true);
          expect(current.isr).toContain(next.leaderId);
          expect(next.isr).toContain(next.leaderId);
          for (const id of next.isr) expect(live.has(id)).toBe(true);
        }
      }),
      { numRuns: 500 },
    );
  });
});
