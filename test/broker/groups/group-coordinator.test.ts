/**
 * The group coordinator on a ManualClock: session timeouts, the long-poll heartbeat, cooperative
 * revocation and fencing, sessions closing, partitions added, and what survives a restart.
 */
import { describe, expect, test } from 'vitest';
import { ManualClock } from '../../../src/clock.js';
import type { GroupView } from '../../../src/protocol/group-api.js';
import type { Broker } from '../../../src/spillway-broker.js';
import { batchOf, openBroker, rejectedCode, temporaryDirectory } from '../helpers.js';

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

function session(broker: Broker, clientId: string) {
  return broker.sessions.open({ kind: 'in-process', transport: null, clientId });
}

const partitionsOf = (view: GroupView) => view.assigned.map((p) => p.partition).sort();

describe('GroupCoordinator', () => {
  test('a member that stops heartbeating loses its partitions after the session timeout, not before', async () => {
    const clock = new ManualClock();
    const broker = await openBroker(temporaryDirectory(), { clock });
    await broker.topics.create('t', { partitions: 4 });
    const sa = session(broker, 'a');
    const sb = session(broker, 'b');
    const a = await broker.groups.join(sa, {
      group: 'g',
      topics: ['t'],
      mode: 'group',
      sessionTimeoutMs: 1000,
    });
    const b = await broker.groups.join(sb, {
      group: 'g',
      topics: ['t'],
      mode: 'group',
      sessionTimeoutMs: 1000,
    });
    // a still holds all four: two are revoking, b gets them once a releases.
    const aView = await broker.groups.heartbeat(sa, {
      group: 'g',
      memberId: a.memberId,
      viewVersion: 0,
      waitMs: 0,
    });
    expect(aView.assigned).toHaveLength(4);
    expect(aView.revoking).toHaveLength(2);
    expect(b.assigned).toHaveLength(0);
    // b may not fetch or commit what is not its own yet.
    const moving = aView.revoking[0]!;
    expect(
      await rejectedCode(
        broker.groups.fetch(
          sb,
          { group: 'g', memberId: b.memberId, ...moving, offset: 0 },
          { maxBytes: 1024, maxWaitMs: 0 },
        ),
      ),
    ).toBe('FENCED_GENERATION');
    const released = await broker.groups.release(sa, {
      group: 'g',
      memberId: a.memberId,
      partitions: aView.revoking,
    });
    expect(released.assigned).toHaveLength(2);
    expect(released.revoking).toHaveLength(0);
    // a's commit of a released partition is fenced.
    expect(
      await rejectedCode(
        broker.groups.commit(sa, { group: 'g', memberId: a.memberId, offsets: [{ ...moving, offset: 0 }] }),
      ),
    ).toBe('FENCED_GENERATION');
    // b heartbeats (waiting), a does not.
    const bWait = broker.groups.heartbeat(sb, {
      group: 'g',
      memberId: b.memberId,
      viewVersion: 0,
      waitMs: 5000,
    });
    const bView = await bWait; // b's view changed (the release): answered at once
    expect(bView.assigned).toHaveLength(2);
    const bLongPoll = broker.groups.heartbeat(sb, {
      group: 'g',
      memberId: b.memberId,
      viewVersion: bView.viewVersion,
      waitMs: 5000,
    });
    clock.advance(999);
    await settle();
    expect(broker.groups.describe('g').members).toHaveLength(2);
    clock.advance(1);
    await settle();
    // a timed out: its two partitions are b's, and b's waiting heartbeat was answered with them.
    const after = await bLongPoll;
    expect(partitionsOf(after)).toEqual([0, 1, 2, 3]);
    expect(
      await rejectedCode(
        broker.groups.heartbeat(sa, { group: 'g', memberId: a.memberId, viewVersion: 0, waitMs: 0 }),
      ),
    ).toBe('UNKNOWN_MEMBER');
    // A waiting heartbeat keeps b alive past its session timeout; b is removed a timeout after the last answer.
    const longWait = broker.groups.heartbeat(sb, {
      group: 'g',
      memberId: b.memberId,
      viewVersion: after.viewVersion,
      waitMs: 60_000,
    });
    clock.advance(30_000);
    await settle();
    expect(broker.groups.describe('g').members).toHaveLength(1);
    clock.advance(30_000);
    await longWait;
    clock.advance(1000);
    await settle();
    expect(broker.groups.describe('g').members).toHaveLength(0);
    await broker.close();
  });

  test('a closed session leaves at once; its partitions go to the others without waiting for a timeout', async () => {
    const clock = new ManualClock();
    const broker = await openBroker(temporaryDirectory(), { clock });
    await broker.topics.create('t', { partitions: 2 });
    const sa = session(broker, 'a');
    const sb = session(broker, 'b');
    const a = await broker.groups.join(sa, { group: 'g', topics: ['t'], mode: 'group' });
    await broker.groups.release(sa, { group: 'g', memberId: a.memberId, partitions: [] });
    const b = await broker.groups.join(sb, { group: 'g', topics: ['t'], mode: 'group' });
    const aView = await broker.groups.heartbeat(sa, {
      group: 'g',
      memberId: a.memberId,
      viewVersion: 0,
      waitMs: 0,
    });
    await broker.groups.release(sa, { group: 'g', memberId: a.memberId, partitions: aView.revoking });
    const waiting = broker.groups.heartbeat(sb, {
      group: 'g',
      memberId: b.memberId,
      viewVersion: 99,
      waitMs: 0,
    });
    expect((await waiting).assigned).toHaveLength(1);
    await sa.close();
    await settle();
    const view = await broker.groups.heartbeat(sb, {
      group: 'g',
      memberId: b.memberId,
      viewVersion: 0,
      waitMs: 0,
    });
    expect(partitionsOf(view)).toEqual([0, 1]);
    await broker.close();
  });

  test('partitions added to a topic are assigned; commits and generations survive a restart', async () => {
    const dataDir = temporaryDirectory();
    let broker = await openBroker(dataDir, { durability: 'always' });
    await broker.topics.create('t', { partitions: 1 });
    await broker.messages.produce('t', 0, batchOf('x', 5));
    const s = session(broker, 'a');
    const joined = await broker.groups.join(s, { group: 'g', topics: ['t'], mode: 'group' });
    await broker.topics.addPartitions('t', 2);
    await settle();
    const view = await broker.groups.heartbeat(s, {
      group: 'g',
      memberId: joined.memberId,
      viewVersion: joined.viewVersion,
      waitMs: 0,
    });
    expect(partitionsOf(view)).toEqual([0, 1, 2]);
    expect(view.generation).toBeGreaterThan(joined.generation);
    await broker.groups.commit(s, {
      group: 'g',
      memberId: joined.memberId,
      offsets: [{ topic: 't', partition: 0, offset: 4 }],
    });
    expect(
      await rejectedCode(
        broker.groups.commit(s, {
          group: 'g',
          memberId: joined.memberId,
          offsets: [{ topic: 't', partition: 0, offset: 6 }],
        }),
      ),
    ).toBe('INVALID_ARGUMENT');
    const generation = view.generation;
    await broker.close();
    broker = await openBroker(dataDir, { durability: 'always' });
    const described = broker.groups.describe('g');
    expect(described.generation).toBeGreaterThanOrEqual(generation);
    expect(described.partitions.find((p) => p.partition === 0)).toMatchObject({
      committed: 4,
      logEndOffset: 5,
      lag: 1,
    });
    const again = await broker.groups.join(session(broker, 'b'), {
      group: 'g',
      topics: ['t'],
      mode: 'group',
    });
    expect(again.generation).toBeGreaterThan(generation);
    expect(again.assigned.find((p) => p.partition === 0)?.committed).toBe(4);
    expect(broker.topics.list({ internal: true }).map((t) => t.name)).toContain('__consumer_offsets');
    await broker.close();
  });

  test('broadcast members have their own positions; a second member with the same id replaces the first', async () => {
    const broker = await openBroker(temporaryDirectory());
    await broker.topics.create('t', { partitions: 2 });
    await broker.messages.produce('t', 1, batchOf('x', 3));
    const s1 = session(broker, 'c1');
    const s2 = session(broker, 'c2');
    const one = await broker.groups.join(s1, {
      group: 'b',
      topics: ['t'],
      mode: 'broadcast',
      memberId: 'one',
    });
    const two = await broker.groups.join(s2, {
      group: 'b',
      topics: ['t'],
      mode: 'broadcast',
      memberId: 'two',
    });
    expect(one.assigned).toHaveLength(2);
    expect(two.assigned).toHaveLength(2);
    await broker.groups.commit(s1, {
      group: 'b',
      memberId: 'one',
      offsets: [{ topic: 't', partition: 1, offset: 2 }],
    });
    const s3 = session(broker, 'c3');
    const replaced = await broker.groups.join(s3, {
      group: 'b',
      topics: ['t'],
      mode: 'broadcast',
      memberId: 'one',
    });
    expect(replaced.assigned.find((p) => p.partition === 1)?.committed).toBe(2);
    expect(
      await rejectedCode(
        broker.groups.commit(s1, {
          group: 'b',
          memberId: 'one',
          offsets: [{ topic: 't', partition: 1, offset: 3 }],
        }),
      ),
    ).toBe('UNKNOWN_MEMBER');
    const twoView = await broker.groups.heartbeat(s2, {
      group: 'b',
      memberId: 'two',
      viewVersion: 0,
      waitMs: 0,
    });
    expect(twoView.assigned.find((p) => p.partition === 1)?.committed).toBe(null);
    expect(broker.groups.list()).toMatchObject([{ group: 'b', mode: 'broadcast', memberCount: 2 }]);
    expect(await rejectedCode(Promise.resolve().then(() => broker.groups.describe('nope')))).toBe(
      'UNKNOWN_GROUP',
    );
    await broker.close();
  });
});
