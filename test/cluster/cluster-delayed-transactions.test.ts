/**
 * Delayed messages inside transactions in a cluster (docs/CLUSTER.md, "Built: delayed messages inside
 * a transaction"), on three `spillway broker --cluster` processes and a real etcd (session timeout
 * 1 s). The coordinator (leader of `__transactions`) hands each committed delayed half to the delay
 * service (leader of `__delay`) with DELAY_SCHEDULE_COMMITTED, idempotently per (transaction id, half
 * index); a coordinator finishing a commit after a failover sends every delayed half again.
 *
 * - workers commit and roll back transactions, each with one delayed message (`delayMs`, counted
 *   from the commit) in every partition of a 3-partition topic;
 * - the coordinator is SIGKILLed while commits are being handed over; the producer goes on on the
 *   new coordinator; the killed broker is restarted, then the delay service's broker is SIGKILLed
 *   while commits are handed to it (the coordinator retries until the new delay term, rebuilt from
 *   `__delay`, takes them);
 * - then every committed transaction's delayed messages fire exactly once, none before its due time
 *   (nor before the commit was asked for plus its delay); none of a rolled-back one; a commit whose
 *   answer was lost fires whole once or not at all.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import { Spillway } from '../../src/client/index.js';
import type { TransactionalProducer } from '../../src/client/transactional-producer.js';
import { originalDeliverAtHeader } from '../../src/protocol/reserved-headers.js';
import { etcdMissing, etcdSkipReason } from './etcd-server.js';
import { useClusterProcesses } from './harness/cluster-fixture.js';
import { readDecoded } from './harness/leader-router.js';
import { TransactionWorkers } from './harness/transaction-workers.js';
import { waitFor } from './harness/wait-for.js';

const topic = 'dtxn-later';
const partitions = [0, 1, 2];
const delayMs = 1500;

describe.skipIf(etcdMissing)(
  `delayed messages in transactions in a cluster (skipped if ${etcdSkipReason})`,
  () => {
    const fixture = useClusterProcesses({
      brokerIds: [1, 2, 3],
      name: 'dtxn',
      sessionTimeoutMs: 1000,
      durability: 'interval',
    });
    beforeAll(async () => {
      await fixture.cluster.createTopic(topic, {
        partitions: partitions.length,
        replicationFactor: 3,
        minInSyncReplicas: 2,
        config: { durability: 'interval' },
      });
    }, 60_000);

    async function leaderOf(name: string, except?: number): Promise<number> {
      return waitFor(`a live leader of ${name}`, async () => {
        const [record] = await fixture.cluster.partitions(name);
        if (record === undefined || record.leaderId <= 0 || record.leaderId === except) return undefined;
        return fixture.cluster.running(record.leaderId) ? record.leaderId : undefined;
      });
    }

    test('committed delayed messages fire once, not early, across a coordinator SIGKILL; rolled-back ones never', async () => {
      const cluster = fixture.cluster;
      try {
        await cluster.waitHealthy(topic, 3);
        const coordinator = await leaderOf('__transactions');
        const delayLeader = await leaderOf('__delay');
        const client = cluster.ids.find((id) => id !== coordinator)!;
        const sw = await Spillway.connect(cluster.broker(client).url, { clientId: 'dtxn-test' });
        const tp: TransactionalProducer = sw.producer({
          group: 'later',
          checkAfterMs: 500,
          maxChecks: 5,
          checkTransaction: () => 'unknown',
        });
        let killedDelay = -1;
        const workers = new TransactionWorkers({
          producer: tp,
          topic,
          partitions,
          workers: 6,
          value: (n, partition) => `d${n}-p${partition}`,
          plan: (n) => (n % 4 === 1 ? 'rollback' : 'commit'),
          delayMs,
        });
        try {
          await waitFor('commits before the kill', () => (workers.committed >= 15 ? true : undefined));
          const before = workers.committed;
          await cluster.kill(coordinator);
          await leaderOf('__transactions', coordinator);
          await waitFor('commits on the new coordinator', () =>
            workers.committed >= before + 10 ? true : undefined,
          );
          // Second round: the delay service's broker dies while commits are handed to it.
          await cluster.restart(coordinator);
          await cluster.waitHealthy(topic, 3);
          const delayNow = await leaderOf('__delay');
          const beforeDelayKill = workers.committed;
          await cluster.kill(delayNow);
          killedDelay = delayNow;
          await leaderOf('__delay', delayNow);
          await waitFor('commits after the delay leader died', () =>
            workers.committed >= beforeDelayKill + 10 ? true : undefined,
          );
        } finally {
          await workers.stop();
        }
        await sw.close();

        // Every committed message fires within its delay plus the delay service's failover (if any).
        const records = await cluster.waitLeadable(topic, 2);
        const expected = new Set(
          workers.tracked.filter((entry) => entry.fate === 'committed').flatMap((entry) => entry.values),
        );
        const fired = new Map<string, { count: number; timestamp: number; dueMs: number }>();
        await waitFor(
          'every committed delayed message fired',
          async () => {
            fired.clear();
            for (const partition of partitions) {
              const { records: read } = await readDecoded(
                cluster.broker(records[partition]!.leaderId).url,
                topic,
                partition,
              );
              for (const record of read) {
                const value = Buffer.from(record.value ?? []).toString();
                const due = record.headers.find(([name]) => name === originalDeliverAtHeader)?.[1];
                const seen = fired.get(value);
                fired.set(value, {
                  count: (seen?.count ?? 0) + 1,
                  timestamp: record.timestamp,
                  dueMs: due === undefined || due === null ? -1 : Number(Buffer.from(due).toString()),
                });
              }
            }
            return [...expected].every((value) => fired.has(value)) ? true : undefined;
          },
          20_000,
        );
        // Anything still due (a commit whose answer was lost) fires by now too.
        await new Promise((resolve) => setTimeout(resolve, delayMs));

        const problems = workers.problems((value) => fired.get(value)?.count ?? 0);
        // None before its due time, nor before the commit was asked for plus its delay.
        for (const entry of workers.tracked) {
          for (const value of entry.values) {
            const one = fired.get(value);
            if (one === undefined) continue;
            if (one.dueMs < entry.commitAskedAt + delayMs || one.timestamp < one.dueMs) {
              problems.push(
                `${value} early: asked ${entry.commitAskedAt}, due ${one.dueMs}, fired ${one.timestamp}`,
              );
            }
          }
        }
        expect(problems).toEqual([]);
        const fates = workers.fates();
        console.log(
          `delayed transactions in a cluster: coordinator ${coordinator} (killed), delay leader ${delayLeader}, then ${killedDelay} (killed): ${JSON.stringify(fates)}`,
        );
        expect(fates.committed).toBeGreaterThanOrEqual(35);
        expect(fates['rolled-back'] ?? 0).toBeGreaterThan(0);
      } catch (error) {
        for (const id of cluster.ids) console.log(`--- broker ${id}\n${cluster.logTail(id, 30)}`);
        throw error;
      }
    }, 60_000);
  },
);
