/**
 * AckState (floor + settled ranges + delivery counts + retries) against a simple model (a set of
 * settled offsets and two maps), with random operation sequences (fast-check); and the
 * QueueStateMachine: its entries through the codec and its snapshot rebuild the same state.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AckState } from '../../../src/broker/queues/ack-state.js';
import {
  type QueueEntry,
  QueueStateMachine,
  queueGroupKey,
  queuePartitionKey,
  queueStateCodec,
} from '../../../src/broker/queues/queue-state.js';
import { type EntryRecord, statePackr } from '../../../src/broker/state/state-machine.js';

type Operation =
  | { op: 'settle'; from: number; length: number }
  | { op: 'deliver'; offset: number }
  | { op: 'retry'; offset: number; atMs: number };

const span = 60;
const operation: fc.Arbitrary<Operation> = fc.oneof(
  fc.record({ op: fc.constant('settle' as const), from: fc.nat(span), length: fc.nat(6) }),
  fc.record({ op: fc.constant('deliver' as const), offset: fc.nat(span) }),
  fc.record({ op: fc.constant('retry' as const), offset: fc.nat(span), atMs: fc.nat(1000) }),
);

class Model {
  readonly settled = new Set<number>();
  readonly counts = new Map<number, number>();
  readonly retries = new Map<number, number>();

  apply(operation: Operation): void {
    switch (operation.op) {
      case 'settle':
        for (let offset = operation.from; offset < operation.from + operation.length; offset++) {
          this.settled.add(offset);
          this.counts.delete(offset);
          this.retries.delete(offset);
        }
        return;
      case 'deliver':
        if (this.settled.has(operation.offset)) return;
        this.counts.set(operation.offset, (this.counts.get(operation.offset) ?? 0) + 1);
        this.retries.delete(operation.offset);
        return;
      case 'retry':
        if (!this.settled.has(operation.offset)) this.retries.set(operation.offset, operation.atMs);
        return;
    }
  }

  floor(): number {
    let floor = 0;
    while (this.settled.has(floor)) floor++;
    return floor;
  }
}

function applyTo(state: AckState, operation: Operation): void {
  if (operation.op === 'settle') state.settle(operation.from, operation.from + operation.length);
  else if (operation.op === 'deliver') state.delivered(operation.offset);
  else state.scheduleRetry(operation.offset, operation.atMs, `e${operation.atMs}`);
}

function expectSame(state: AckState, model: Model): void {
  expect(state.floor).toBe(model.floor());
  for (let offset = 0; offset <= span + 8; offset++) {
    expect(state.isSettled(offset)).toBe(model.settled.has(offset));
    expect(state.deliveryCount(offset)).toBe(model.counts.get(offset) ?? 0);
    expect(state.retry(offset)?.atMs).toBe(model.retries.get(offset));
    let next = offset;
    while (model.settled.has(next)) next++;
    expect(state.nextUnsettled(offset)).toBe(next);
  }
  // Ranges: sorted, disjoint, non-adjacent, above the floor and not touching it.
  const ranges = state.settledRanges;
  for (let i = 0; i < ranges.length; i += 2) {
    expect(ranges[i]!).toBeLessThan(ranges[i + 1]!);
    expect(ranges[i]!).toBeGreaterThan(i === 0 ? state.floor : ranges[i - 1]!);
  }
}

/** Encodes and decodes an entry as the state log does. */
function roundTrip(entry: QueueEntry): QueueEntry {
  const encoded = queueStateCodec.encode(entry);
  const key = typeof encoded.key === 'string' ? Buffer.from(encoded.key, 'utf8') : encoded.key;
  const record: EntryRecord = {
    key: () => key,
    keyText: () => (key === null ? null : Buffer.from(key).toString('utf8')),
    value: () => encoded.value,
  };
  return queueStateCodec.decode(record);
}

describe('AckState', () => {
  it('matches the model under random settles, deliveries and retries', () => {
    fc.assert(
      fc.property(fc.array(operation, { maxLength: 120 }), (operations) => {
        const state = new AckState();
        const model = new Model();
        for (const next of operations) {
          applyTo(state, next);
          model.apply(next);
        }
        expectSame(state, model);
        // Its data rebuilds it exactly.
        expectSame(AckState.fromData(state.toData()), model);
      }),
      { numRuns: 300 },
    );
  });

  it('skipTo settles everything below, counting the unsettled offsets as skipped', () => {
    const state = new AckState(10);
    state.settle(12, 14);
    state.settle(20, 21);
    state.delivered(15);
    state.scheduleRetry(16, 5, 'x');
    state.settle(40, 42);
    state.skipTo(30); // 10..29 but 12, 13 and 20
    expect(state.floor).toBe(30);
    expect(state.skipped).toBe(17);
    expect(state.deliveryCount(15)).toBe(0);
    expect(state.retry(16)).toBeUndefined();
    expect(state.settledRanges).toEqual([40, 42]);
    state.skipTo(25); // below the floor: nothing
    state.skipTo(41); // 30..39
    expect(state.floor).toBe(42);
    expect(state.skipped).toBe(27);
    expect(AckState.fromData(state.toData()).skipped).toBe(27);
  });

  it('folds ranges into the floor when the gap closes', () => {
    const state = new AckState();
    state.settle(5, 10);
    state.settle(2, 4);
    expect(state.floor).toBe(0);
    expect([...state.settledRanges]).toEqual([2, 4, 5, 10]);
    state.settle(0, 2);
    expect(state.floor).toBe(4);
    state.settle(4, 5);
    expect(state.floor).toBe(10);
    expect(state.settledRanges.length).toBe(0);
  });
});

describe('QueueStateMachine', () => {
  it('replaying entries through the codec, or its snapshot, gives the same state as applying them', () => {
    const queues = [
      queuePartitionKey('g', 't', 0),
      queuePartitionKey('g', 't', 1),
      queuePartitionKey('h', 'u', 0),
    ];
    const groups = [queueGroupKey('g', 't'), queueGroupKey('h', 'u')];
    const entry: fc.Arbitrary<QueueEntry> = fc.oneof(
      fc.record({
        type: fc.constant('delivered' as const),
        queue: fc.constantFrom(...queues),
        ranges: fc.tuple(fc.nat(span), fc.nat(4)).map(([from, length]) => [from, from + length]),
      }),
      fc.record({
        type: fc.constant('settled' as const),
        queue: fc.constantFrom(...queues),
        ranges: fc.tuple(fc.nat(span), fc.nat(6)).map(([from, length]) => [from, from + length]),
      }),
      fc.record({
        type: fc.constant('retry' as const),
        queue: fc.constantFrom(...queues),
        offset: fc.nat(span),
        atMs: fc.nat(10_000),
        error: fc.string({ maxLength: 8 }),
      }),
      fc.record({ type: fc.constant('dropped' as const), queue: fc.constantFrom(...queues) }),
      fc.record({
        type: fc.constant('idle' as const),
        group: fc.constantFrom(...groups),
        sinceMs: fc.option(fc.nat(10_000), { nil: null }),
      }),
      fc.record({ type: fc.constant('forgotten' as const), group: fc.constantFrom(...groups) }),
      fc.record({
        type: fc.constant('gone' as const),
        queue: fc.constantFrom(...queues),
        to: fc.nat(span),
      }),
      fc.record({
        type: fc.constant('topic' as const),
        group: fc.constantFrom(...groups),
        createdAtMs: fc.nat(10_000),
      }),
    );
    /** The queue groups a machine knows: their partitions and idle times. */
    const groupsOf = (machine: QueueStateMachine) =>
      new Map(
        [...machine.groups()].map(([key, record]) => [
          key,
          [[...record.queues].sort(), record.idleSinceMs, record.topicCreatedAtMs],
        ]),
      );
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 80 }), (entries) => {
        const direct = new QueueStateMachine();
        const replayed = new QueueStateMachine();
        for (const next of entries) {
          direct.apply(next);
          replayed.apply(roundTrip(next));
        }
        const fromSnapshot = new QueueStateMachine();
        for (const next of direct.snapshot()) fromSnapshot.apply(roundTrip(next));
        expect(groupsOf(replayed)).toEqual(groupsOf(direct));
        expect(groupsOf(fromSnapshot)).toEqual(groupsOf(direct));
        for (const queue of queues) {
          const expected = direct.stateOf(queue).toData();
          expect(replayed.stateOf(queue).toData()).toEqual(expected);
          const rebuilt = fromSnapshot.stateOf(queue).toData();
          expect(rebuilt.floor).toBe(expected.floor);
          expect(rebuilt.settled).toEqual(expected.settled);
          expect(rebuilt.skipped).toBe(expected.skipped);
          expect(new Map(pairs(rebuilt.counts))).toEqual(new Map(pairs(expected.counts)));
          expect(new Set(rebuilt.retries.map((r) => JSON.stringify(r)))).toEqual(
            new Set(expected.retries.map((r) => JSON.stringify(r))),
          );
        }
      }),
      { numRuns: 200 },
    );
  });

  it('refuses entries it cannot read (they come from disk)', () => {
    const bad = (value: unknown) => () =>
      queueStateCodec.decode({
        key: () => Buffer.from(queuePartitionKey('g', 't', 0)),
        keyText: () => queuePartitionKey('g', 't', 0),
        value: () => Buffer.from(JSON.stringify(value)),
      });
    expect(bad({ t: 'x' })).toThrow();
    const badGroup = (value: unknown) => () =>
      queueStateCodec.decode({
        key: () => Buffer.from(queueGroupKey('g', 't')),
        keyText: () => queueGroupKey('g', 't'),
        value: () => statePackr.pack(value),
      });
    expect(badGroup({ t: 'i', at: -1 })).toThrow();
    expect(badGroup({ t: 'x', at: 5 })).toThrow();
    expect(badGroup({ t: 'i', at: 5 })()).toEqual({
      type: 'idle',
      group: queueGroupKey('g', 't'),
      sinceMs: 5,
    });
    expect(() =>
      queueStateCodec.decode({
        key: () => null,
        keyText: () => 'no-separators',
        value: () => new Uint8Array(1),
      }),
    ).toThrow();
  });
});

function pairs(flat: number[]): Array<[number, number]> {
  const result: Array<[number, number]> = [];
  for (let i = 0; i < flat.length; i += 2) result.push([flat[i]!, flat[i + 1]!]);
  return result;
}
