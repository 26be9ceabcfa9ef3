/**
 * Transaction ids reserved ahead (src/client/transaction-ids.ts): once half of a block is taken the
 * next block is reserved in the background, so begins keep taking ids without waiting for TXN_IDS;
 * every id is handed out once, and the reserved-ahead block is dropped with its connection.
 */
import { describe, expect, test } from 'vitest';
import type { BrokerApi } from '../../src/protocol/broker-api.js';
import type { TransactionService } from '../../src/protocol/transaction-api.js';
import { connect, delegate, openBroker, waitFor } from './helpers.js';

/** The broker's API with its transaction service counting TXN_IDS reservations. */
async function countingBroker() {
  const broker = await openBroker();
  await broker.topics.create('orders', { partitions: 2 });
  const reservations: Array<{ from: number; count: number }> = [];
  const service = broker.transactions;
  const transactions = new Proxy(service, {
    get(target, property) {
      if (property === 'reserveIds') {
        return async (...args: Parameters<TransactionService['reserveIds']>) => {
          const lease = await target.reserveIds(...args);
          reservations.push(lease);
          return lease;
        };
      }
      const value = Reflect.get(target, property) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  const api: BrokerApi = { ...delegate(broker), transactions };
  return { broker, api, reservations };
}

describe('transaction ids reserved ahead', () => {
  test('the next block is reserved once half of one is taken; ids are unique and in order', async () => {
    const { api, reservations } = await countingBroker();
    const sw = await connect(api);
    const tp = sw.producer({ group: 'g', checkTransaction: () => 'rollback' });
    const first = await tp.beginTransaction();
    expect(reservations).toHaveLength(1);
    const ids = [first.id];
    const { from, count } = reservations[0]!;
    // Take ids up to half of the first block: no second reservation yet.
    while (ids.length < count / 2) ids.push((await tp.beginTransaction()).id);
    expect(reservations).toHaveLength(1);
    ids.push((await tp.beginTransaction()).id); // fewer than half left: the next block is asked for
    await waitFor(() => reservations.length === 2);
    // The rest of the first block, then the second block, with no reservation in between.
    while (ids.length < count + reservations[1]!.count / 2) ids.push((await tp.beginTransaction()).id);
    expect(reservations).toHaveLength(2);
    const expected = [
      ...Array.from({ length: count }, (_, i) => from + i),
      ...Array.from({ length: ids.length - count }, (_, i) => reservations[1]!.from + i),
    ];
    expect(ids).toEqual(expected);
    // Ids of both blocks begin on the broker (they are this session's).
    const last = await tp.beginTransaction();
    await last.send('orders', { value: 'x' });
    expect(await last.commit()).toMatchObject({ id: last.id, outcome: 'committed' });
    expect(await first.rollback()).toMatchObject({ id: first.id, outcome: 'rolled-back' });
  });

  test('many transactions in flight: every begin gets its own id, every commit lands', async () => {
    const { api, reservations } = await countingBroker();
    const sw = await connect(api);
    const tp = sw.producer({ group: 'g', checkTransaction: () => 'rollback' });
    const seen = new Set<number>();
    let started = 0;
    const loop = async (): Promise<void> => {
      while (started++ < 400) {
        const txn = await tp.beginTransaction();
        expect(seen.has(txn.id)).toBe(false);
        seen.add(txn.id);
        await txn.send('orders', { value: `v${txn.id}` });
        expect(await txn.commit()).toMatchObject({ id: txn.id, outcome: 'committed' });
      }
    };
    await Promise.all(Array.from({ length: 32 }, loop));
    expect(seen.size).toBe(400);
    // Blocks doubling from 16: unused at the end are at most the block reserved ahead and half of
    // the one before it.
    const reserved = reservations.reduce((sum, lease) => sum + lease.count, 0);
    expect(reserved).toBeGreaterThanOrEqual(400);
    const [before, last] = reservations.slice(-2);
    expect(reserved - 400).toBeLessThanOrEqual(last!.count + before!.count / 2);
  });
});
