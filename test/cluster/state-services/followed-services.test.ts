/**
 * A service owning several internal topics (followed-services.ts): it runs only while this broker
 * leads all of them at their current epochs, stops before the data plane hears of any move, keeps
 * its term across a same-epoch (ISR) change, and each later term has a larger fence. The data plane
 * is the recording ReplicaManager of the control-plane tests (checks the seam's own promises).
 */
import { describe, expect, test } from 'vitest';
import type { PartitionAssignment } from '../../../src/cluster/partition-role.js';
import { FollowedServices, type ServiceTerm } from '../../../src/cluster/state-services/followed-services.js';
import { RecordingReplicaManager } from '../control/recording-replica-manager.js';

const me = 1;
const group = { service: 'delay', topics: ['__a', '__b', '__c'] };
const endpoints = new Map();

function assignment(
  topic: string,
  leaderId: number,
  leaderEpoch: number,
  isr = [1, 2, 3],
): PartitionAssignment {
  return { topic, partition: 0, replicas: [1, 2, 3], leaderId, leaderEpoch, isr };
}

function setUp() {
  const inner = new RecordingReplicaManager();
  const services = new FollowedServices(me, inner);
  const events: string[] = [];
  const terms: ServiceTerm[] = [];
  services.follow(group, {
    stop: (why) => {
      // Stopped before the data plane is told: the last call it saw is the previous one.
      events.push(`stop after ${inner.calls.length} calls: ${why}`);
    },
    start: (term) => {
      terms.push(term);
      events.push(`start fence ${term.fence}`);
    },
  });
  return { inner, services, events, terms };
}

describe('FollowedServices (a service over several internal topics)', () => {
  test('starts only once this broker leads every topic; the term holds each epoch and their sum', async () => {
    const { services, events, terms } = setUp();
    expect(events).toEqual(['stop after 0 calls: waiting for the cluster to assign __a, __b, __c']);
    await services.applyAssignment(assignment('__a', me, 3), endpoints);
    await services.applyAssignment(assignment('__b', 2, 1), endpoints);
    await services.applyAssignment(assignment('__c', me, 0), endpoints);
    expect(terms).toEqual([]);
    expect(services.term('delay')).toBeNull();
    await services.applyAssignment(assignment('__b', me, 2), endpoints);
    expect(terms).toEqual([{ service: 'delay', epochs: [3, 2, 0], fence: 5 }]);
    expect(services.term('delay')).toEqual(terms[0]);
    expect(services.serviceOf('__c')?.term).toEqual(terms[0]);
  });

  test('stops before the data plane applies a move of any topic; an ISR change keeps the term', async () => {
    const { inner, services, events, terms } = setUp();
    for (const topic of group.topics) await services.applyAssignment(assignment(topic, me, 4), endpoints);
    expect(terms).toHaveLength(1);
    await services.applyAssignment(assignment('__b', me, 4, [1, 2]), endpoints); // same epoch
    expect(terms).toHaveLength(1);
    expect(services.term('delay')).not.toBeNull();
    const callsBefore = inner.calls.length;
    await services.applyAssignment(assignment('__c', 3, 5), endpoints);
    expect(events.at(-1)).toBe(`stop after ${callsBefore} calls: broker 3 leads __c at epoch 5`);
    expect(inner.current.get('__c/0')?.leaderId).toBe(3);
    expect(services.term('delay')).toBeNull();
    // Back here at a newer epoch: a new term with a larger fence.
    await services.applyAssignment(assignment('__c', me, 6), endpoints);
    expect(terms.map((term) => term.fence)).toEqual([12, 14]);
    // The same broker re-elected for one topic (new epoch) also restarts the service.
    await services.applyAssignment(assignment('__a', me, 5), endpoints);
    expect(terms.map((term) => term.fence)).toEqual([12, 14, 15]);
    expect(inner.violations).toEqual([]);
  });

  test('a stale assignment reaches the data plane only; removal stops the service', async () => {
    const { inner, services, events, terms } = setUp();
    for (const topic of group.topics) await services.applyAssignment(assignment(topic, me, 4), endpoints);
    await services.applyAssignment(assignment('__a', 2, 3), endpoints);
    expect(terms).toHaveLength(1);
    expect(services.term('delay')).not.toBeNull();
    expect(inner.calls).toHaveLength(4);
    await services.removePartition('__b', 0);
    expect(events.at(-1)).toBe('stop after 4 calls: __b was removed from broker 1');
    expect(services.term('delay')).toBeNull();
  });

  test('a failed start leaves the service stopped and fails the call; the retry starts it', async () => {
    const inner = new RecordingReplicaManager();
    const services = new FollowedServices(me, inner);
    let failures = 1;
    const started: number[] = [];
    services.follow(
      { service: 'one', topics: ['__x'] },
      {
        stop: () => undefined,
        start: async (term) => {
          if (failures-- > 0) throw new Error('recovery failed');
          started.push(term.fence);
        },
      },
    );
    await expect(services.applyAssignment(assignment('__x', me, 2), endpoints)).rejects.toThrow(
      'recovery failed',
    );
    expect(services.term('one')).toBeNull();
    await services.applyAssignment(assignment('__x', me, 2), endpoints);
    expect(started).toEqual([2]);
  });

  test('other topics and partitions go to the data plane untouched; a topic in two services is refused', async () => {
    const { inner, services, terms } = setUp();
    await services.applyAssignment(assignment('orders', me, 1), endpoints);
    await services.applyAssignment({ ...assignment('__a', me, 1), partition: 1 }, endpoints);
    expect(inner.calls).toHaveLength(2);
    expect(terms).toEqual([]);
    expect(() => services.follow({ service: 'other', topics: ['__c'] }, { stop() {}, start() {} })).toThrow(
      'in two services',
    );
  });
});
