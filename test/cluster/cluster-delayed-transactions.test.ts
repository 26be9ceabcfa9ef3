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
import { waitFor } from './harness/wait-for.js';

const topic = 'dtxn-later';
const partitions = [0, 1, 2];
const delayMs = 1500;

type Fate = 'pending' | 'committed' | 'commit-failed' | 'rolled-back' | 'send-failed';

interface Tracked {
  n: number;
  id: number;
  values: string[];
  /** Date.now() when the commit was asked for: no message of it may fire before this + delayMs. */
  commitAskedAt: number;
  fate: Fate;
}

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
        const tracked: Tracked[] = [];
        let committed = 0;
        let running = true;
        let next = 0;
        let killedDelay = -1;

        async function one(): Promise<void> {
          const n = next++;
          const txn = await tp.beginTransaction();
          const entry: Tracked = {
            n,
            id: txn.id,
            values: partitions.map((partition) => `d${n}-p${partition}`),
            commitAskedAt: 0,
            fate: 'pending',
          };
          tracked.push(entry);
          try {
            await Promise.all(
              entry.values.map((value, partition) => txn.send(topic, { value, partition, delayMs })),
            );
          } catch {
            entry.fate = 'send-failed';
            await txn.rollback().catch(() => undefined);
            return;
          }
          if (n % 4 === 1) {
            await txn.rollback().then(
              () => {
                entry.fate = 'rolled-back';
              },
              () => {
                entry.fate = 'send-failed'; // never committed either way
              },
            );
            return;
          }
          entry.commitAskedAt = Date.now();
          try {
            await txn.commit();
            entry.fate = 'committed';
            committed++;
          } catch {
            entry.fate = 'commit-failed';
          }
        }

        const workers = Array.from({ length: 6 }, async () => {
          while (running) await one().catch(() => undefined);
        });
        try {
          await waitFor('commits before the kill', () => (committed >= 15 ? true : undefined));
          const before = committed;
          await cluster.kill(coordinator);
          await leaderOf('__transactions', coordinator);
          await waitFor('commits on the new coordinator', () =>
            committed >= before + 10 ? true : undefined,
          );
          // Second round: the delay service's broker dies while commits are handed to it.
          await cluster.restart(coordinator);
          await cluster.waitHealthy(topic, 3);
          const delayNow = await leaderOf('__delay');
          const beforeDelayKill = committed;
          await cluster.kill(delayNow);
          killedDelay = delayNow;
          await leaderOf('__delay', delayNow);
          await waitFor('commits after the delay leader died', () =>
            committed >= beforeDelayKill + 10 ? true : undefined,
          );
        } finally {
          running = false;
          await Promise.all(workers);
        }
        await sw.close();

        // Every committed message fires within its delay plus the delay service's failover (if any).
        const records = await cluster.waitLeadable(topic, 2);
        const expected = new Set(
          tracked.filter((entry) => entry.fate === 'committed').flatMap((entry) => entry.values),
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

        const problems: string[] = [];
        for (const entry of tracked) {
          const counts = entry.values.map((value) => fired.get(value)?.count ?? 0);
          const summary = `d${entry.n} (id ${entry.id}, ${entry.fate}): ${counts.join(',')}`;
          if (entry.fate === 'committed' && counts.some((count) => count !== 1)) problems.push(summary);
          if (
            entry.fate === 'commit-failed' &&
            !(counts.every((c) => c === 1) || counts.every((c) => c === 0))
          ) {
            problems.push(summary);
          }
          if ((entry.fate === 'rolled-back' || entry.fate === 'send-failed') && counts.some((c) => c !== 0)) {
            problems.push(summary);
          }
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
        expect(tracked.filter((entry) => entry.fate === 'pending')).toEqual([]);
        const fates = new Map<Fate, number>();
        for (const entry of tracked) fates.set(entry.fate, (fates.get(entry.fate) ?? 0) + 1);
        console.log(
          `delayed transactions in a cluster: coordinator ${coordinator} (killed), delay leader ${delayLeader}, then ${killedDelay} (killed): ${JSON.stringify(Object.fromEntries(fates))}`,
        );
        expect(fates.get('committed')).toBeGreaterThanOrEqual(35);
        expect(fates.get('rolled-back') ?? 0).toBeGreaterThan(0);
      } catch (error) {
        for (const id of cluster.ids) console.log(`--- broker ${id}\n${cluster.logTail(id, 30)}`);
        throw error;
      }
    }, 60_000);
  },
);
