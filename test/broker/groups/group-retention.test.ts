/**
 * What the coordinator forgets: offsets and positions of a deleted topic (at once, and at open for a
 * topic deleted without them), and whole groups with no members for `groupRetentionMs`, counted from
 * the time they became empty even across a restart. On a ManualClock: nothing waits for real time.
 */
import { describe, expect, test } from 'vitest';
import { ConsumerOffsetsStore, offsetKey } from '../../../src/broker/groups/consumer-offsets-store.js';
import { ManualClock } from '../../../src/clock.js';
import type { Broker } from '../../../src/spillway-broker.js';
import { batchOf, openBroker, temporaryDirectory } from '../helpers.js';

const day = 24 * 60 * 60 * 1000;

async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Joins group `group` on topic `t`, commits `offset` on partition 0, and leaves. */
async function commitAndLeave(broker: Broker, group: string, offset: number): Promise<void> {
  const session = broker.sessions.open({ kind: 'in-process', transport: null, clientId: 'c' });
  const view = await broker.groups.join(session, { group, topics: ['t'], mode: 'group' });
  await broker.groups.commit(session, {
    group,
    memberId: view.memberId,
    offsets: [{ topic: 't', partition: 0, offset }],
  });
  await broker.groups.leave(session, { group, memberId: view.memberId });
  session.close();
}

const groupNames = (broker: Broker) => broker.groups.list().map((group) => group.group);
const committedOf = (broker: Broker, group: string) =>
  broker.groups.describe(group).partitions.find((p) => p.topic === 't' && p.partition === 0)?.committed ??
  null;

describe('group retention', () => {
  test('deleting a topic deletes its committed offsets: the same name created again starts afresh', async () => {
    const dataDir = temporaryDirectory();
    let broker = await openBroker(dataDir);
    await broker.topics.create('t', {});
    await broker.messages.produce('t', 0, batchOf('m', 5));
    await commitAndLeave(broker, 'g', 4);
    expect(committedOf(broker, 'g')).toBe(4);
    await broker.topics.delete('t');
    await broker.topics.create('t', {});
    await settle();
    expect(committedOf(broker, 'g')).toBeNull();
    await broker.close();
    broker = await openBroker(dataDir);
    expect(committedOf(broker, 'g')).toBeNull();
    await broker.close();
  });

  test('offsets of a topic that no longer exists are deleted at open', async () => {
    const dataDir = temporaryDirectory();
    let broker = await openBroker(dataDir);
    await broker.topics.create('t', {});
    await broker.messages.produce('t', 0, batchOf('m', 5));
    await commitAndLeave(broker, 'g', 3);
    await broker.close();
    // As if a broker had deleted topic 'gone' and crashed before deleting its offsets.
    let store = await ConsumerOffsetsStore.open({ dataDir });
    await store.put([{ key: offsetKey('g', 'gone', 0), value: 7 }]);
    await store.close();
    broker = await openBroker(dataDir);
    await settle();
    expect(committedOf(broker, 'g')).toBe(3);
    await broker.close();
    store = await ConsumerOffsetsStore.open({ dataDir });
    expect(store.entries().has(offsetKey('g', 'gone', 0))).toBe(false);
    expect(store.entries().get(offsetKey('g', 't', 0))).toBe(3);
    await store.close();
  });

  test('a group with no members is forgotten after groupRetentionMs, not before, across a restart', async () => {
    const dataDir = temporaryDirectory();
    const clock = new ManualClock();
    let broker = await openBroker(dataDir, { clock, groupRetentionMs: 7 * day });
    await broker.topics.create('t', {});
    await broker.messages.produce('t', 0, batchOf('m', 5));
    await commitAndLeave(broker, 'old', 2);
    clock.advance(4 * day);
    await commitAndLeave(broker, 'young', 1);
    await settle();
    await broker.close();
    // The restart does not reset the time 'old' became empty.
    const later = new ManualClock(clock.nowMs() + 1000);
    broker = await openBroker(dataDir, { clock: later, groupRetentionMs: 7 * day });
    later.advance(2 * day);
    await settle();
    expect(groupNames(broker)).toEqual(['old', 'young']);
    later.advance(1 * day + 60_000);
    await settle();
    expect(groupNames(broker)).toEqual(['young']);
    // A member joining resets the time: 'young' is used again (the member's session times out after
    // 10 s of this clock, so the group is empty again from then on).
    const session = broker.sessions.open({ kind: 'in-process', transport: null, clientId: 'c' });
    await broker.groups.join(session, { group: 'young', topics: ['t'], mode: 'group' });
    later.advance(5 * day);
    await settle();
    expect(groupNames(broker)).toEqual(['young']);
    expect(committedOf(broker, 'young')).toBe(1);
    session.close();
    later.advance(2 * day + 60_000);
    await settle();
    expect(groupNames(broker)).toEqual([]);
    await broker.close();
    broker = await openBroker(dataDir, { clock: later });
    expect(groupNames(broker)).toEqual([]);
    await broker.close();
  });

  test('groupRetentionMs must be a positive integer', async () => {
    await expect(openBroker(temporaryDirectory(), { groupRetentionMs: 0 })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
  });
});
