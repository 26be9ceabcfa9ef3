/**
 * Transactions in a cluster (docs/TRANSACTIONS.md, "In a cluster"), on three `spillway broker
 * --cluster` processes and a real etcd (session timeout 1 s; ~30 s with the start):
 *
 * - a transactional producer (client routed by METADATA) commits, rolls back and abandons
 *   transactions, each with one message in every partition of a 3-partition topic (partitions led
 *   by the three brokers: the coordinator copies into partitions other brokers lead);
 * - twice, the coordinator (the leader of `__transactions`) is SIGKILLed with transactions in
 *   flight (sends, commits being copied); the producer goes on on the new coordinator (commits
 *   resolve again after each kill), the killed broker is restarted between rounds;
 * - abandoned transactions are rolled back by check-backs (the producer answers 'rollback').
 *
 * Then, read from every partition's leader: every committed transaction's messages appear exactly
 * once; none of a rolled-back, abandoned or failed-before-commit one; a commit that failed (its
 * answer lost) appears whole exactly once or not at all.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import { Spillway } from '../../src/client/index.js';
import type { TransactionalProducer } from '../../src/client/transactional-producer.js';
import { etcdMissing, etcdSkipReason } from './etcd-server.js';
import { useClusterProcesses } from './harness/cluster-fixture.js';
import type { ClusterProcesses } from './harness/cluster-processes.js';
import { readPartition } from './harness/leader-router.js';
import { TransactionWorkers } from './harness/transaction-workers.js';
import { waitFor } from './harness/wait-for.js';

const topic = 'txn-orders';
const partitions = [0, 1, 2];
const rounds = 2;

describe.skipIf(etcdMissing)(`transactions in a cluster (skipped if ${etcdSkipReason})`, () => {
  const fixture = useClusterProcesses({
    brokerIds: [1, 2, 3],
    name: 'txn',
    sessionTimeoutMs: 1000,
    durability: 'interval',
  });
  let cluster: ClusterProcesses;
  beforeAll(async () => {
    cluster = fixture.cluster;
    await cluster.createTopic(topic, {
      partitions: partitions.length,
      replicationFactor: 3,
      minInSyncReplicas: 2,
      config: { durability: 'interval' },
    });
  }, 60_000);

  /** The coordinator: the leader of `__transactions` once `__txn_half` has the same leader, all in sync. */
  async function coordinator(except?: number): Promise<number> {
    return waitFor('one leader of __transactions and __txn_half', async () => {
      const [state] = await cluster.partitions('__transactions');
      const [halves] = await cluster.partitions('__txn_half');
      if (state === undefined || halves === undefined || state.leaderId <= 0) return undefined;
      if (state.leaderId !== halves.leaderId || state.leaderId === except) return undefined;
      if (!cluster.running(state.leaderId)) return undefined;
      return state.leaderId;
    });
  }

  test('commits across brokers survive coordinator SIGKILLs exactly once; rollbacks leave nothing', async () => {
    const records = await cluster.waitHealthy(topic, 3);
    let current = await coordinator();
    // Partitions led by other brokers than the coordinator: the commit copies through forwarding.
    expect(records.some((record) => record.leaderId !== current)).toBe(true);

    const client = cluster.ids.find((id) => id !== current)!;
    const sw = await Spillway.connect(cluster.broker(client).url, { clientId: 'txn-test' });
    const abandoned = new Set<number>();
    let checkBacks = 0;
    const tp: TransactionalProducer = sw.producer({
      group: 'orders',
      checkAfterMs: 500,
      maxChecks: 5,
      checkTransaction: (txn) => {
        checkBacks++;
        return abandoned.has(txn.id) ? 'rollback' : 'unknown';
      },
    });
    const workers = new TransactionWorkers({
      producer: tp,
      topic,
      partitions,
      workers: 4,
      value: (n, partition) => `t${n}-p${partition}`,
      plan: (n) => (n % 7 === 5 ? 'abandon' : n % 5 === 3 ? 'rollback' : 'commit'),
      abandoned,
    });
    try {
      await waitFor('commits before the first kill', () => (workers.committed >= 10 ? true : undefined));
      for (let round = 0; round < rounds; round++) {
        const killed = current;
        const before = workers.committed;
        await cluster.kill(killed);
        current = await coordinator(killed);
        // The producer goes on on the new coordinator.
        await waitFor(`commits after killing broker ${killed}`, () =>
          workers.committed >= before + 10 ? true : undefined,
        );
        await cluster.restart(killed);
        if (round + 1 < rounds) await cluster.waitHealthy(topic, 3);
      }
    } finally {
      await workers.stop();
    }

    // Abandoned transactions are rolled back by check-backs; nothing stays open or committing.
    await waitFor(
      'no open transaction left',
      async () => {
        const answer = await sw.admin.listTransactions().catch(() => undefined);
        return answer !== undefined && answer.transactions.length === 0 ? true : undefined;
      },
      20_000,
    );
    expect(checkBacks).toBeGreaterThan(0);

    const finalRecords = await cluster.waitHealthy(topic, 2);
    const seen = new Map<string, number>();
    for (const partition of partitions) {
      const leader = finalRecords[partition]!.leaderId;
      const { records } = await readPartition(cluster.broker(leader).url, topic, partition);
      for (const record of records) seen.set(record.value, (seen.get(record.value) ?? 0) + 1);
    }
    expect(workers.problems((value) => seen.get(value) ?? 0)).toEqual([]);
    const fates = workers.fates();
    console.log(`transactions in a cluster: ${JSON.stringify(fates)}, ${checkBacks} check-backs`);
    expect(fates.committed).toBeGreaterThanOrEqual(10 + rounds * 10);
    expect(fates['rolled-back'] ?? 0).toBeGreaterThan(0);
    await sw.close();
  }, 120_000);
});
