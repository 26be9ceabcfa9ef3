/**
 * Headers of TXN_SEND (one batch, or `parts`), TXN_END and TXN_IDS with their optional `begin`:
 * what the parsers accept and the typed errors they give.
 */
import { describe, expect, it } from 'vitest';
import { SpillwayError } from '../../src/errors.js';
import { transactionIdLeaseMax } from '../../src/limits.js';
import {
  parseTransactionEnd,
  parseTransactionIds,
  parseTransactionSend,
} from '../../src/protocol/transaction-messages.js';

function codeOf(run: () => unknown): string | null {
  try {
    run();
    return null;
  } catch (error) {
    return error instanceof SpillwayError ? error.code : 'not a SpillwayError';
  }
}

describe('transaction request headers', () => {
  it('TXN_SEND: one batch or parts, begin with the group', () => {
    expect(parseTransactionSend({ id: 3, topic: 'orders', partition: 1 })).toEqual({
      id: 3,
      parts: [{ topic: 'orders', partition: 1 }],
      single: true,
      group: null,
      begin: null,
    });
    expect(
      parseTransactionSend({
        id: 3,
        group: 'g',
        begin: { checkAfterMs: 1000 },
        parts: [
          { topic: 'orders', partition: 1 },
          { topic: 'audit', partition: 0 },
        ],
      }),
    ).toEqual({
      id: 3,
      parts: [
        { topic: 'orders', partition: 1 },
        { topic: 'audit', partition: 0 },
      ],
      single: false,
      group: 'g',
      begin: { group: 'g', checkAfterMs: 1000 },
    });
    const part = [{ topic: 'orders', partition: 0 }];
    expect(codeOf(() => parseTransactionSend({ id: 3, begin: {}, topic: 'orders', partition: 0 }))).toBe(
      'INVALID_ARGUMENT',
    ); // begin without a group
    expect(codeOf(() => parseTransactionSend({ id: 3, parts: part, topic: 'orders' }))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(codeOf(() => parseTransactionSend({ id: 3, parts: [] }))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => parseTransactionSend({ id: 3, parts: [{ topic: 'orders' }] }))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(codeOf(() => parseTransactionSend({ id: 3, group: 'g', begin: 'yes', parts: part }))).toBe(
      'INVALID_ARGUMENT',
    );
  });

  it('TXN_END and TXN_IDS', () => {
    expect(parseTransactionEnd({ id: 5, decision: 'commit', group: 'g', begin: {} })).toEqual({
      id: 5,
      decision: 'commit',
      group: 'g',
      begin: { group: 'g' },
    });
    expect(parseTransactionEnd({ id: 5, decision: 'rollback' })).toMatchObject({ begin: null });
    expect(parseTransactionIds({ group: 'g', count: 16 })).toEqual({ group: 'g', count: 16 });
    expect(codeOf(() => parseTransactionIds({ group: 'g', count: 0 }))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => parseTransactionIds({ group: 'g', count: transactionIdLeaseMax + 1 }))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(codeOf(() => parseTransactionIds({ count: 1 }))).toBe('INVALID_ARGUMENT');
  });
});
