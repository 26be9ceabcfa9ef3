/**
 * The `__transactions` codec: records round-trip in their positional form, and the map form written
 * before it is still read (logs of older brokers recover); the state machine keeps the newest
 * finished outcomes compactly, drops the oldest first, and snapshots them as loadable records.
 */
import { describe, expect, it } from 'vitest';
import { type EntryRecord, statePackr } from '../../../src/broker/state/state-machine.js';
import {
  type TransactionEntry,
  type TransactionRecord,
  TransactionStateMachine,
  transactionCodec,
} from '../../../src/broker/transactions/transaction-state.js';

function recordOf(key: string, value: Uint8Array): EntryRecord {
  return { key: () => Buffer.from(key), keyText: () => key, value: () => value };
}

const committing: TransactionRecord = {
  id: 42,
  group: 'order-service',
  beganAtMs: 1_700_000_000_000,
  checkAfterMs: 5000,
  maxChecks: 5,
  checks: 1,
  nextCheckAtMs: 1_700_000_010_000,
  halfFrom: 12,
  state: 'committing',
  decidedBy: 'check-back',
  decidedAtMs: 1_700_000_009_000,
  messages: 3,
  targets: [
    { topic: 'orders', partition: 2, fromOffset: 100 },
    { topic: 'audit', partition: 0, fromOffset: 7 },
  ],
};

describe('transactionCodec', () => {
  it('round-trips records (positional form) and next-id entries', () => {
    for (const record of [
      committing,
      { ...committing, state: 'open', decidedBy: null, decidedAtMs: null, targets: [] },
    ]) {
      const encoded = transactionCodec.encode({ kind: 'transaction', record } as TransactionEntry);
      expect(encoded.key).toBe('t42');
      expect(Array.isArray(statePackr.unpack(encoded.value!))).toBe(true);
      expect(transactionCodec.decode(recordOf('t42', encoded.value!))).toEqual({
        kind: 'transaction',
        record,
      });
    }
    const next = transactionCodec.encode({ kind: 'next', nextId: 1025 });
    expect(transactionCodec.decode(recordOf('n', next.value!))).toEqual({ kind: 'next', nextId: 1025 });
  });

  it('reads the map form of older logs', () => {
    expect(transactionCodec.decode(recordOf('t42', statePackr.pack(committing)))).toEqual({
      kind: 'transaction',
      record: committing,
    });
  });

  it('refuses an unknown positional form or a record under another id', () => {
    expect(() => transactionCodec.decode(recordOf('t42', statePackr.pack([2, 42])))).toThrow(/form/);
    const encoded = transactionCodec.encode({ kind: 'transaction', record: committing });
    expect(() => transactionCodec.decode(recordOf('t43', encoded.value!))).toThrow(/does not match/);
  });
});

describe('TransactionStateMachine outcomes', () => {
  const finished = (id: number, committed: boolean): TransactionRecord => ({
    ...committing,
    id,
    state: committed ? 'committed' : 'rolled-back',
    decidedBy: committed ? 'producer' : id % 2 === 0 ? 'timeout' : null,
    decidedAtMs: committed ? 1_700_000_000_000 + id : null,
    checks: id % 7,
    messages: id * 3,
    targets: [],
  });

  it('keeps the newest outcomes past growth and wrap, oldest dropped first', () => {
    const machine = new TransactionStateMachine(3000);
    for (let id = 1; id <= 5000; id++) {
      machine.apply({ kind: 'transaction', record: { ...committing, id, state: 'open', targets: [] } });
      machine.apply({ kind: 'transaction', record: finished(id, id % 3 !== 0) });
    }
    expect(machine.live.size).toBe(0);
    expect(machine.outcomes.size).toBe(3000);
    expect(machine.outcomes.get(2000)).toBeUndefined();
    expect(machine.outcomes.get(2002)).toEqual({
      id: 2002,
      state: 'committed',
      decidedBy: 'producer',
      decidedAtMs: 1_700_000_002_002,
      checks: 2002 % 7,
      messages: 6006,
    });
    expect(machine.outcomes.get(4998)).toEqual({
      id: 4998,
      state: 'rolled-back',
      decidedBy: 'timeout',
      decidedAtMs: null,
      checks: 4998 % 7,
      messages: 14994,
    });
    expect(machine.outcomes.get(4995)?.decidedBy).toBeNull();
    expect([...machine.outcomes.values()].map((outcome) => outcome.id)).toEqual(
      Array.from({ length: 3000 }, (_, i) => 2001 + i),
    );
    expect(() =>
      machine.apply({ kind: 'transaction', record: { ...committing, id: 4000, state: 'open' } }),
    ).toThrow(/already finished/);
  });

  it('snapshots outcomes as records that load into the same outcomes', () => {
    const machine = new TransactionStateMachine(10);
    for (let id = 1; id <= 25; id++)
      machine.apply({ kind: 'transaction', record: finished(id, id % 4 !== 0) });
    machine.apply({ kind: 'transaction', record: { ...committing, id: 26 } });
    const restored = new TransactionStateMachine(10);
    for (const entry of machine.snapshot()) {
      const encoded = transactionCodec.encode(entry);
      restored.apply(transactionCodec.decode(recordOf(encoded.key as string, encoded.value!)));
    }
    expect([...restored.outcomes.values()]).toEqual([...machine.outcomes.values()]);
    expect(restored.live.get(26)).toEqual({ ...committing, id: 26 });
    expect(restored.nextId).toBe(27);
  });

  it('a committed entry finishes the committing transactions it names, as a record of each would', () => {
    const byEntry = new TransactionStateMachine(10);
    const byRecords = new TransactionStateMachine(10);
    const open = { ...committing, id: 7, state: 'open' as const, decidedBy: null, decidedAtMs: null };
    for (const machine of [byEntry, byRecords]) {
      machine.apply({ kind: 'transaction', record: { ...committing, id: 5 } });
      machine.apply({ kind: 'transaction', record: { ...committing, id: 6, messages: 9 } });
      machine.apply({ kind: 'transaction', record: open });
    }
    // Ids 7 (open: not finished by it) and 99 (unknown) are left as they are.
    const encoded = transactionCodec.encode({ kind: 'committed', ids: [5, 6, 7, 99] });
    expect(encoded.key).toBe('c');
    const decoded = transactionCodec.decode(recordOf('c', encoded.value!));
    expect(decoded).toEqual({ kind: 'committed', ids: [5, 6, 7, 99] });
    byEntry.apply(decoded);
    for (const id of [5, 6]) {
      const record = byRecords.live.get(id)!;
      byRecords.apply({ kind: 'transaction', record: { ...record, state: 'committed', targets: [] } });
    }
    expect([...byEntry.outcomes.values()]).toEqual([...byRecords.outcomes.values()]);
    expect(byEntry.outcomes.get(6)).toMatchObject({
      state: 'committed',
      decidedBy: 'check-back',
      messages: 9,
    });
    expect([...byEntry.live.keys()]).toEqual([7]);
    expect(byEntry.live.get(7)).toEqual(open);
    expect(() => transactionCodec.decode(recordOf('c', statePackr.pack({ ids: [1] })))).toThrow(
      /list of ids/,
    );
    expect(() => transactionCodec.decode(recordOf('c', statePackr.pack([0])))).toThrow(/integer/);
  });
});
