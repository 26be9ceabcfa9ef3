/**
 * Group membership across a coordinator failover, in process (src/broker/groups/, docs/CLUSTER.md
 * "Group membership across a coordinator failover"): the `m` records of `__consumer_offsets` (round
 * trip through a replay and a snapshot, today's records still read), and a coordinator in cluster
 * mode (started stopped, like a cluster member's) that stops and starts again from its log the way
 * ServiceLeadership does at a failover: members restored without a session, re-attached by their id
 * and their client's identity, a restored member that never comes back removed after its session
 * timeout on the broker clock. A single broker writes no `m` record. On a ManualClock.
 */
import { describe, expect, test } from 'vitest';
import {
  ConsumerOffsetsStore,
  generationKey,
  type MembershipRecord,
  membershipKey,
  offsetKey,
  parseOffsetsKey,
  positionKey,
} from '../../../src/broker/groups/consumer-offsets-store.js';
import { GroupCoordinator } from '../../../src/broker/groups/group-coordinator.js';
import { Lifecycle } from '../../../src/broker/lifecycle.js';
import { ManualClock } from '../../../src/clock.js';
import type { Broker } from '../../../src/spillway-broker.js';
import { batchOf, openBroker, rejectedCode, temporaryDirectory } from '../helpers.js';

async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
}

function session(broker: Broker, clientId: string) {
  return broker.sessions.open({ kind: 'in-process', transport: null, clientId });
}

const membership: MembershipRecord = {
  generation: 7,
  topics: ['a', 'b'],
  members: [
    { id: 'c1-AAAAAAAAAAAAAAAAAAAAAA', clientId: 'c1', principal: null, sessionTimeoutMs: 3000 },
    { id: 'c2-BBBBBBBBBBBBBBBBBBBBBB', clientId: null, principal: 'alice', sessionTimeoutMs: 10_000 },
  ],
  partitions: [
    [0, 0, 0, 0],
    [0, 1, 0, 1],
    [1, 0, 1, 1],
    [1, 3, -1, 0],
  ],
};

describe('__consumer_offsets membership records', () => {
  test("today's records and membership records round-trip through a replay and a snapshot", async () => {
    const dataDir = temporaryDirectory();
    let store = await ConsumerOffsetsStore.open({ dataDir });
    // Records as today's brokers write them, then a membership record.
    await store.put([
      { key: offsetKey('g', 'a', 0), value: 12 },
      { key: positionKey('g', 'm', 'a', 1), value: 3 },
      { key: generationKey('g'), value: { generation: 7, mode: 'group' } },
      { key: generationKey('old'), value: { generation: 2, mode: 'broadcast', emptySinceMs: 5 } },
    ]);
    await store.put([{ key: membershipKey('g'), value: membership }]);
    await store.close();

    store = await ConsumerOffsetsStore.open({ dataDir }); // replayed from the log
    expect(store.get(membershipKey('g'))).toEqual(membership);
    expect(store.offset(offsetKey('g', 'a', 0))).toBe(12);
    expect(store.get(generationKey('old'))).toEqual({ generation: 2, mode: 'broadcast', emptySinceMs: 5 });
    expect(parseOffsetsKey(membershipKey('g'))).toEqual({ kind: 'membership', group: 'g' });
    await store.state.snapshot();
    await store.close();

    store = await ConsumerOffsetsStore.open({ dataDir }); // from the snapshot
    expect(store.get(membershipKey('g'))).toEqual(membership);
    expect(store.offset(positionKey('g', 'm', 'a', 1))).toBe(3);
    await store.remove([membershipKey('g')]);
    await store.close();
    store = await ConsumerOffsetsStore.open({ dataDir });
    expect(store.get(membershipKey('g'))).toBeUndefined();
    expect(store.get(generationKey('g'))).toEqual({ generation: 7, mode: 'group' });
    await store.close();
  });

  test('a single broker writes no membership record', async () => {
    const dataDir = temporaryDirectory();
    const broker = await openBroker(dataDir);
    await broker.topics.create('t', { partitions: 2 });
    const view = await broker.groups.join(session(broker, 'c'), { group: 'g', topics: ['t'], mode: 'group' });
    expect(view.memberId).toMatch(/^c-[A-Za-z0-9_-]{22}$/);
    await broker.close();
    const store = await ConsumerOffsetsStore.open({ dataDir });
    expect(store.get(generationKey('g'))).toMatchObject({ generation: 1 });
    expect([...store.entries().keys()].some((key) => key.startsWith('m'))).toBe(false);
    await store.close();
  });
});

describe('group membership across a coordinator failover (cluster mode, in process)', () => {
  /** A broker for topics and messages, and a coordinator in cluster mode over its own store. */
  async function setup() {
    const clock = new ManualClock();
    const broker = await openBroker(temporaryDirectory(), { clock });
    await broker.topics.create('t', { partitions: 4 });
    await broker.messages.produce('t', 0, batchOf('m', 10));
    const storeDir = temporaryDirectory();
    const store = await ConsumerOffsetsStore.open({ dataDir: storeDir, writeAtOpen: false });
    const lifecycle = new Lifecycle();
    const coordinator = new GroupCoordinator(
      broker.topics,
      broker.messages,
      store,
      clock,
      lifecycle,
      7 * 24 * 3600_000,
      false,
    );
    return { clock, broker, store, storeDir, lifecycle, coordinator };
  }

  test('members, ownership and generation are restored; the same client re-attaches, another cannot', async () => {
    const { clock, broker, store, coordinator } = await setup();
    expect(
      await rejectedCode(
        coordinator.join(session(broker, 'a'), { group: 'g', topics: ['t'], mode: 'group' }),
      ),
    ).toBe('NOT_COORDINATOR');
    coordinator.startCoordinating();
    const sa = session(broker, 'a');
    const sb = session(broker, 'b');
    const a = await coordinator.join(sa, {
      group: 'g',
      topics: ['t'],
      mode: 'group',
      sessionTimeoutMs: 5000,
    });
    const b = await coordinator.join(sb, {
      group: 'g',
      topics: ['t'],
      mode: 'group',
      sessionTimeoutMs: 5000,
    });
    expect(a.memberId).not.toBe(b.memberId);
    const aView = await coordinator.heartbeat(sa, {
      group: 'g',
      memberId: a.memberId,
      viewVersion: 0,
      waitMs: 0,
    });
    expect(aView.revoking).toHaveLength(2);
    // a hands two partitions to b (stored before b is told), commits one of its own.
    const released = await coordinator.release(sa, {
      group: 'g',
      memberId: a.memberId,
      partitions: aView.revoking,
    });
    const aKept = released.assigned.map((p) => p.partition).sort();
    expect(aKept).toHaveLength(2);
    await coordinator.commit(sa, {
      group: 'g',
      memberId: a.memberId,
      offsets: [{ topic: 't', partition: aKept[0]!, offset: aKept[0] === 0 ? 6 : 0 }],
    });
    const before = coordinator.describe('g');

    // The failover: this coordinator stops (its members dropped, nothing written), then starts again
    // from the log as another broker would.
    coordinator.stopCoordinating('broker 2 leads __consumer_offsets at epoch 3');
    expect(
      await rejectedCode(
        coordinator.heartbeat(sa, { group: 'g', memberId: a.memberId, viewVersion: 0, waitMs: 0 }),
      ),
    ).toBe('NOT_COORDINATOR');
    coordinator.startCoordinating();
    expect(coordinator.restoredMembers).toBe(2);
    const restored = coordinator.describe('g');
    expect(restored.generation).toBe(before.generation);
    expect(restored.members.map((m) => [m.memberId, m.sessionId, m.clientId, m.assigned])).toEqual(
      before.members.map((m) => [m.memberId, 0, m.clientId, m.assigned]),
    );
    expect(restored.partitions).toEqual(before.partitions);

    // Another client (clientId 'x') naming a's id is refused; a's own client, on a new connection, is a.
    const impostor = session(broker, 'x');
    expect(
      await rejectedCode(
        coordinator.heartbeat(impostor, { group: 'g', memberId: a.memberId, viewVersion: 5, waitMs: 0 }),
      ),
    ).toBe('UNKNOWN_MEMBER');
    const sa2 = session(broker, 'a');
    const back = await coordinator.heartbeat(sa2, {
      group: 'g',
      memberId: a.memberId,
      viewVersion: 5,
      waitMs: 60_000,
    });
    expect(back.viewVersion).toBe(6); // newer than the client's: it takes this view at once
    expect(back.generation).toBe(before.generation);
    expect(back.assigned.map((p) => p.partition).sort()).toEqual(aKept);
    expect(back.revoking).toEqual([]);
    // Re-attached to sa2: the old session cannot use the id; a fetch on sa2 works.
    expect(
      await rejectedCode(
        coordinator.heartbeat(sa, { group: 'g', memberId: a.memberId, viewVersion: 6, waitMs: 0 }),
      ),
    ).toBe('UNKNOWN_MEMBER');
    const fetched = await coordinator.fetch(
      sa2,
      { group: 'g', memberId: a.memberId, topic: 't', partition: aKept[0]!, offset: 0 },
      { maxBytes: 1 << 20, maxWaitMs: 0 },
    );
    expect(fetched.nextOffset).toBe(aKept[0] === 0 ? 10 : 0);
    expect(coordinator.reattachedMembers).toBe(1);

    // b's client never comes back: b is removed a session timeout (5 s on the broker clock) after
    // the start, and its partitions go to a (a new generation, stored).
    const waiting = coordinator.heartbeat(sa2, {
      group: 'g',
      memberId: a.memberId,
      viewVersion: 6,
      waitMs: 60_000,
    });
    clock.advance(4999);
    await settle();
    expect(coordinator.describe('g').members).toHaveLength(2);
    clock.advance(1);
    await settle();
    const alone = await waiting;
    expect(alone.generation).toBe(before.generation + 1);
    expect(alone.assigned.map((p) => p.partition).sort()).toEqual([0, 1, 2, 3]);
    expect((store.get(membershipKey('g')) as MembershipRecord).members.map((m) => m.id)).toEqual([
      a.memberId,
    ]);

    // Attached again, a member is tied to its session as on a single broker: closing it removes a.
    await sa2.close();
    await settle();
    expect(coordinator.describe('g').members).toHaveLength(0);
    await store.state.idle();
    expect(store.get(membershipKey('g'))).toBeUndefined();
    await broker.close();
  });

  test('a new coordinator on a store reopened from disk (replay) restores the members too', async () => {
    const first = await setup();
    first.coordinator.startCoordinating();
    const sa = session(first.broker, 'a');
    const a = await first.coordinator.join(sa, {
      group: 'g',
      topics: ['t'],
      mode: 'group',
      sessionTimeoutMs: 2000,
    });
    const generation = a.generation;
    await first.store.close();

    const store = await ConsumerOffsetsStore.open({ dataDir: first.storeDir, writeAtOpen: false });
    const next = new GroupCoordinator(
      first.broker.topics,
      first.broker.messages,
      store,
      first.clock,
      new Lifecycle(),
      7 * 24 * 3600_000,
      false,
    );
    expect(next.restoredMembers).toBe(0); // started stopped: nothing read yet
    next.startCoordinating();
    const view = await next.heartbeat(session(first.broker, 'a'), {
      group: 'g',
      memberId: a.memberId,
      viewVersion: a.viewVersion,
      waitMs: 0,
    });
    expect(view.generation).toBe(generation);
    expect(view.assigned.map((p) => p.partition).sort()).toEqual([0, 1, 2, 3]);
    // A topic grown while no one coordinated: the restored group is rebalanced (a new generation).
    next.stopCoordinating('moved');
    await first.broker.topics.addPartitions('t', 6);
    next.startCoordinating();
    await settle();
    const grown = await next.heartbeat(session(first.broker, 'a'), {
      group: 'g',
      memberId: a.memberId,
      viewVersion: 0,
      waitMs: 0,
    });
    expect(grown.generation).toBe(generation + 1);
    expect(grown.assigned).toHaveLength(10);
    await first.broker.close();
  });
});
