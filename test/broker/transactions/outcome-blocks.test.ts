/**
 * Snapshots of `__transactions` write the remembered outcomes as binary blocks (entry `o`): they
 * round-trip exactly (all deciders, no decider, no decision time, past a block's size), a damaged
 * block is refused, and a data directory whose snapshot holds the outcomes the older way (a finished
 * `t<id>` record each) still opens into a broker that answers repeated decisions from them.
 */
import { describe, expect, it } from 'vitest';
import { openStateLog } from '../../../src/broker/state/state-log-partition.js';
import type { EntryRecord, StateMachine } from '../../../src/broker/state/state-machine.js';
import {
  outcomeBlockMax,
  type TransactionEntry,
  type TransactionRecord,
  TransactionStateMachine,
  transactionCodec,
} from '../../../src/broker/transactions/transaction-state.js';
import { transactionsTopicName } from '../../../src/broker/transactions/transaction-store.js';
import { SpillwayError } from '../../../src/errors.js';
import { openBroker, temporaryDirectory } from '../helpers.js';

function recordOf(key: string, value: Uint8Array): EntryRecord {
  return { key: () => Buffer.from(key), keyText: () => key, value: () => value };
}

function finished(id: number): TransactionRecord {
  const committed = id % 3 !== 0;
  return {
    id,
    group: 'g',
    beganAtMs: 1_700_000_000_000,
    checkAfterMs: 5000,
    maxChecks: 5,
    checks: id % 6,
    nextCheckAtMs: 0,
    halfFrom: 0,
    state: committed ? 'committed' : 'rolled-back',
    decidedBy: (['producer', 'check-back', 'timeout', null] as const)[id % 4]!,
    decidedAtMs: id % 5 === 0 ? null : 1_700_000_000_000 + id,
    messages: id * 7,
    targets: [],
  };
}

/** Every entry of `machine`'s snapshot through the codec into a new machine. */
function restore(machine: TransactionStateMachine, outcomesMax: number): TransactionStateMachine {
  const restored = new TransactionStateMachine(outcomesMax);
  for (const entry of machine.snapshot()) {
    const encoded = transactionCodec.encode(entry);
    restored.apply(transactionCodec.decode(recordOf(encoded.key as string, encoded.value!)));
  }
  return restored;
}

describe('outcome blocks', () => {
  it('snapshot outcomes round-trip as blocks of at most outcomeBlockMax, in order', () => {
    const max = outcomeBlockMax * 2 + 10;
    const machine = new TransactionStateMachine(max);
    for (let id = 1; id <= max + 500; id++) machine.apply({ kind: 'transaction', record: finished(id) });
    const entries = [...machine.snapshot()];
    expect(entries.filter((entry) => entry.kind === 'outcomes')).toHaveLength(3);
    expect(entries.some((entry) => entry.kind === 'transaction')).toBe(false);
    const restored = restore(machine, max);
    expect([...restored.outcomes.values()]).toEqual([...machine.outcomes.values()]);
    expect(restored.outcomes.get(500)).toBeUndefined();
    expect(restored.outcomes.get(501)?.id).toBe(501);
    expect(restored.outcomes.get(600)).toEqual({
      id: 600,
      state: 'rolled-back',
      decidedBy: 'producer',
      decidedAtMs: null,
      checks: 0,
      messages: 4200,
    });
    expect(restored.nextId).toBe(machine.nextId);
  });

  it('refuses a damaged or unknown block', () => {
    const machine = new TransactionStateMachine(10);
    for (let id = 1; id <= 3; id++) machine.apply({ kind: 'transaction', record: finished(id) });
    const entry = [...machine.snapshot()].find((each) => each.kind === 'outcomes')!;
    const block = transactionCodec.encode(entry).value!;
    const damaged = (change: (bytes: Uint8Array) => void): Uint8Array => {
      const bytes = new Uint8Array(block);
      change(bytes);
      return bytes;
    };
    expect(transactionCodec.decode(recordOf('o', block))).toEqual(entry);
    expect(() =>
      transactionCodec.decode(
        recordOf(
          'o',
          damaged((b) => (b[0] = 2)),
        ),
      ),
    ).toThrow(/form/);
    expect(() => transactionCodec.decode(recordOf('o', block.subarray(0, block.length - 1)))).toThrow(
      /does not hold/,
    );
    expect(() =>
      transactionCodec.decode(
        recordOf(
          'o',
          damaged((b) => (b[5 + 28] = 2)),
        ),
      ),
    ).toThrow(/not valid/);
    expect(() =>
      transactionCodec.decode(
        recordOf(
          'o',
          damaged((b) => (b[5 + 29] = 7)),
        ),
      ),
    ).toThrow(/not valid/);
    // id 0 (float64 zero)
    expect(() =>
      transactionCodec.decode(
        recordOf(
          'o',
          damaged((b) => b.fill(0, 5, 13)),
        ),
      ),
    ).toThrow(/not valid/);
  });

  it('a data directory whose snapshot holds finished records (the older form) opens, and its outcomes answer', async () => {
    const dataDir = temporaryDirectory();
    // The older snapshot form: a finished `t<id>` record per outcome (what brokers before wrote).
    const outcomes = new TransactionStateMachine();
    const older: StateMachine<TransactionEntry> = {
      apply: (entry) => outcomes.apply(entry),
      reset: () => outcomes.reset(),
      *snapshot() {
        yield { kind: 'next', nextId: outcomes.nextId };
        for (const outcome of outcomes.outcomes.values()) {
          yield { kind: 'transaction', record: { ...finished(outcome.id), ...outcome } };
        }
      },
    };
    const { partition, state } = await openStateLog(
      { dataDir },
      transactionsTopicName,
      older,
      transactionCodec,
    );
    for (let id = 1; id <= 40; id++) await state.commit({ kind: 'transaction', record: finished(id) });
    await state.snapshot();
    await state.close();
    await partition.log.close();

    const broker = await openBroker(dataDir, { durability: 'interval' });
    try {
      const session = broker.sessions.open({ kind: 'in-process', transport: null });
      expect(await broker.transactions.end(session, 4, 'commit')).toMatchObject({
        id: 4,
        outcome: 'committed',
        duplicate: true,
        messages: 28,
      });
      const refused = await broker.transactions.end(session, 4, 'rollback').catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(SpillwayError);
      expect((refused as SpillwayError).code).toBe('TRANSACTION_COMMITTED');
      const { id } = await broker.transactions.begin(session, { group: 'g' });
      expect(id).toBe(41);
    } finally {
      await broker.close();
    }
  });
});
