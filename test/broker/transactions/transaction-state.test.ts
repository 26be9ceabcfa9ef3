/**
 * The `__transactions` codec: records round-trip in their positional form, and the map form written
 * before it is still read (logs of older brokers recover).
 */
import { describe, expect, it } from 'vitest';
import { type EntryRecord, statePackr } from '../../../src/broker/state/state-machine.js';
import {
  type TransactionEntry,
  type TransactionRecord,
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
