/**
 * The controller's decisions (partition-planner.ts) without etcd: replica placement, and the leader
 * and ISR rules, including a property test over random records and live sets.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { noLeader, type PartitionRecord } from '../../../src/cluster/control/cluster-records.js';
import {
  assignReplicas,
  colocatedPartitionRecord,
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

describe('co-location of one service topics (a group anchor and its other topics)', () => {
  test('a new co-located partition copies the anchor replicas in order and takes its leader', () => {
    const anchor = record({ replicas: [2, 3, 1], leaderId: 3, leaderEpoch: 5, isr: [2, 3, 1] });
    expect(colocatedPartitionRecord(anchor, new Set([1, 2, 3]), 9)).toEqual({
      replicas: [2, 3, 1],
      leaderId: 3,
      leaderEpoch: 0,
      isr: [2, 3, 1],
      controllerEpoch: 9,
    });
    // The anchor's leader dead: the first live replica; dead replicas out of the ISR.
    expect(colocatedPartitionRecord(anchor, new Set([1, 2]), 9)).toMatchObject({ leaderId: 2, isr: [2, 1] });
    expect(colocatedPartitionRecord(anchor, new Set([7]), 9)).toBeUndefined();
  });

  test('an election prefers the anchor leader when it is in the live ISR', () => {
    const current = record({ leaderId: 1, isr: [1, 2, 3] });
    expect(planPartition(current, new Set([2, 3]), 2, 3)).toMatchObject({ leaderId: 3, leaderEpoch: 5 });
    // Not in the ISR: the plain rule (first live ISR member in replicas order), never an unclean election.
    const lagging = record({ leaderId: 1, isr: [1, 2] });
    expect(planPartition(lagging, new Set([2, 3]), 2, 3)).toMatchObject({ leaderId: 2, isr: [2] });
  });

  test('a live leader moves to the anchor leader once it is in sync, at epoch + 1; then nothing more', () => {
    const current = record({ leaderId: 1, isr: [1, 2, 3] });
    const moved = planPartition(current, new Set([1, 2, 3]), 2, 2);
    expect(moved).toEqual({ ...current, leaderId: 2, leaderEpoch: 5, isr: [1, 2, 3], controllerEpoch: 2 });
    expect(planPartition(moved as PartitionRecord, new Set([1, 2, 3]), 2, 2)).toBeUndefined();
    // The anchor's leader out of this partition's ISR: stays where it is.
    expect(planPartition(record({ leaderId: 1, isr: [1, 3] }), new Set([1, 2, 3]), 2, 2)).toBeUndefined();
    // The anchor offline (no leader): no preference.
    expect(planPartition(current, new Set([1, 2, 3]), 2, noLeader)).toBeUndefined();
  });

  test('property: with a preference the leader is still always a live ISR member', () => {
    const brokerIds = [1, 2, 3, 4];
    fc.assert(
      fc.property(
        fc.shuffledSubarray(brokerIds, { minLength: 1 }),
        fc.subarray(brokerIds),
        fc.constantFrom(noLeader, ...brokerIds),
        (isr, liveList, preferred) => {
          const current = record({ replicas: brokerIds, isr, leaderId: isr[0] as number });
          const live = new Set(liveList);
          const next = planPartition(current, live, 3, preferred);
          if (next === undefined || next.leaderId === noLeader) return;
          expect(live.has(next.leaderId)).toBe(true);
          expect(current.isr).toContain(next.leaderId);
          if (next.leaderId !== current.leaderId) expect(next.leaderEpoch).toBe(current.leaderEpoch + 1);
        },
      ),
    );
  });
});
