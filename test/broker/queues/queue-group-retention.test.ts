/**
 * Queue group retention on a ManualClock: a shared/key_shared queue group with no members (and no
 * HTTP use) for groupRetentionMs is forgotten, durably in `__queue_state`, counted from the time it
 * became idle even across a restart; a forgotten group no longer counts towards queueGroupsMax and
 * starts afresh (floor 0) when used again. Nothing waits for real time.
 */
import { describe, expect, it } from 'vitest';
import { queueGroupKey } from '../../../src/broker/queues/queue-state.js';
import { QueueStateStore } from '../../../src/broker/queues/queue-state-store.js';
import { ManualClock } from '../../../src/clock.js';
import { encodeBatch } from '../../../src/format/record-batch.js';
import { queueGroupsMax } from '../../../src/limits.js';
import type { ReceiveRequest } from '../../../src/protocol/queue-api.js';
import type { Broker } from '../../../src/spillway-broker.js';
import { openBroker, temporaryDirectory } from '../helpers.js';

// Retention in hours, not days: each jump of the ManualClock fires every broker timer on the way.
const hour = 60 * 60 * 1000;

async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
}

function request(group: string, overrides: Partial<ReceiveRequest> = {}): ReceiveRequest {
  return { group, topic: 't', mode: 'shared', max: 100, waitMs: 0, ...overrides };
}

/** A member receives everything of `group`, acks the first `acked` offsets, and leaves. */
async function consumeAndLeave(broker: Broker, group: string, acked: number): Promise<void> {
  const session = broker.sessions.open({ kind: 'in-process', transport: null });
  const result = await broker.queues.receive(session, request(group));
  expect(result.partitions[0]?.offsets.length).toBeGreaterThan(acked);
  await broker.queues.ack(group, 't', [{ partition: 0, ranges: [0, acked] }]);
  session.close();
}

/** The offsets a new HTTP receive of `group` gets (what is not settled). */
async function unsettled(broker: Broker, group: string): Promise<number[]> {
  const session = broker.sessions.open({ kind: 'http', transport: null });
  const result = await broker.queues.receive(session, request(group, { ackTimeoutMs: 1 }));
  session.close();
  return result.partitions.flatMap((partition) => partition.offsets);
}

const inMemory = (broker: Broker) => broker.queues.describe().map((group) => group.group);

async function recordedGroups(dataDir: string): Promise<Map<string, number | null>> {
  const store = await QueueStateStore.open({ dataDir });
  const groups = new Map([...store.machine.groups()].map(([key, record]) => [key, record.idleSinceMs]));
  await store.close();
  return groups;
}

describe('queue group retention', () => {
  it('forgets a group idle for groupRetentionMs, not before, counted across a restart', async () => {
    const dataDir = temporaryDirectory();
    const clock = new ManualClock();
    let broker = await openBroker(dataDir, { clock, groupRetentionMs: 7 * hour });
    await broker.topics.create('t', { partitions: 1 });
    await broker.messages.produce('t', 0, encodeBatch(['a', 'b', 'c', 'd'].map((value) => ({ value }))));
    await consumeAndLeave(broker, 'old', 2);
    clock.advance(4 * hour);
    await consumeAndLeave(broker, 'young', 1);
    // A member that stays keeps its group however long.
    const member = broker.sessions.open({ kind: 'in-process', transport: null });
    await broker.queues.receive(member, request('kept', { max: 1 }));
    await broker.queues.ack('kept', 't', [{ partition: 0, ranges: [0, 1] }]);
    await settle();
    await broker.close();
    const idle = await recordedGroups(dataDir);
    expect(idle.get(queueGroupKey('old', 't'))).toBe(clock.nowMs() - 4 * hour);
    expect(idle.get(queueGroupKey('young', 't'))).toBe(clock.nowMs());

    // The restart does not reset the time 'old' and 'young' became idle; 'kept' (in use when the
    // broker stopped) is idle from the open.
    const later = new ManualClock(clock.nowMs() + 1000);
    broker = await openBroker(dataDir, { clock: later, groupRetentionMs: 7 * hour });
    later.advance(2 * hour);
    await settle();
    expect(broker.queues.expiredGroups).toBe(0);
    later.advance(1 * hour + 60_000);
    await settle();
    expect(broker.queues.expiredGroups).toBe(1);
    // 'old' starts afresh: everything again; 'young' keeps its acks.
    expect(await unsettled(broker, 'old')).toEqual([0, 1, 2, 3]);
    expect(await unsettled(broker, 'young')).toEqual([1, 2, 3]);
    expect(await unsettled(broker, 'kept')).toEqual([1, 2, 3]);
    // They were just used over HTTP: that use counts, recorded at the next check.
    later.advance(60_000);
    await settle();
    later.advance(6 * hour);
    await settle();
    expect(inMemory(broker).sort()).toEqual(['kept', 'old', 'young']);
    // A member joining makes it in use: not forgotten while it stays.
    const session = broker.sessions.open({ kind: 'in-process', transport: null });
    await broker.queues.receive(session, request('young', { max: 1 }));
    later.advance(8 * hour);
    await settle();
    expect(inMemory(broker)).toEqual(['young']);
    session.close();
    later.advance(7 * hour + 60_000);
    await settle();
    expect(inMemory(broker)).toEqual([]);
    await broker.close();
    expect(await recordedGroups(dataDir)).toEqual(new Map());

    // Forgotten durably: after another restart the state is gone.
    broker = await openBroker(dataDir, { clock: later, groupRetentionMs: 7 * hour });
    expect(await unsettled(broker, 'young')).toEqual([0, 1, 2, 3]);
    await broker.close();
  });

  it('a crash after a member joined an idle group does not count it idle from before', async () => {
    const dataDir = temporaryDirectory();
    const clock = new ManualClock();
    let broker = await openBroker(dataDir, { clock, groupRetentionMs: 7 * hour });
    await broker.topics.create('t', { partitions: 1 });
    await broker.messages.produce('t', 0, encodeBatch(['a', 'b'].map((value) => ({ value }))));
    await consumeAndLeave(broker, 'g', 1);
    clock.advance(6 * hour);
    const member = broker.sessions.open({ kind: 'in-process', transport: null });
    await broker.queues.receive(member, request('g', { max: 1 }));
    clock.advance(6 * hour);
    await settle();
    await broker.close();
    const reopened = new ManualClock(clock.nowMs());
    broker = await openBroker(dataDir, { clock: reopened, groupRetentionMs: 7 * hour });
    reopened.advance(6 * hour);
    await settle();
    expect(broker.queues.expiredGroups).toBe(0);
    expect(await unsettled(broker, 'g')).toEqual([1]);
    await broker.close();
  });

  it(`idle groups make room below queueGroupsMax (${queueGroupsMax})`, async () => {
    const clock = new ManualClock();
    const broker = await openBroker(temporaryDirectory(), { clock, groupRetentionMs: 60_000 });
    await broker.topics.create('t', { partitions: 1 });
    const http = broker.sessions.open({ kind: 'http', transport: null });
    for (let index = 0; index < queueGroupsMax; index++) {
      await broker.queues.receive(http, request(`g${index}`));
    }
    await expect(broker.queues.receive(http, request('one-more'))).rejects.toMatchObject({
      code: 'TOO_MANY_REQUESTS',
    });
    clock.advance(120_000);
    await settle();
    expect(broker.queues.expiredGroups).toBe(queueGroupsMax);
    expect((await broker.queues.receive(http, request('one-more'))).partitions).toEqual([]);
    await broker.close();
  });
});
