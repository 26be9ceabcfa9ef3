/**
 * Crash detection ahead of the session timeout (src/cluster/control/crash-detector.ts): three
 * `spillway broker --cluster` processes on a real etcd with a **60 s** session timeout. A SIGKILLed
 * broker's session must end long before those 60 s: its registration goes, the partition it led gets
 * a new leader from the ISR at a higher epoch, and the controller's own crash is seen by the others.
 * A SIGSTOPped broker (alive, silent) must keep its session: only the timeout ends that one. A
 * broker shut down in order does not register again. Without
 * the detector every wait below runs into its 20 s bound (the lease lasts 60 s).
 */
import { describe, expect, test } from 'vitest';
import { etcdMissing, etcdSkipReason } from './etcd-server.js';
import { useClusterProcesses } from './harness/cluster-fixture.js';
import { waitFor } from './harness/wait-for.js';

/** Far below the 60 s session timeout, far above what detection takes on a loaded CI (~0.1-1 s). */
const detectionBoundMs = 20_000;

describe.skipIf(etcdMissing)(
  `a crashed broker's session ends before its timeout (skipped if ${etcdSkipReason})`,
  () => {
    const fixture = useClusterProcesses({
      brokerIds: [1, 2, 3],
      name: 'crash-detection',
      sessionTimeoutMs: 60_000,
      durability: 'none',
    });

    test('SIGKILL of a partition leader, then of the controller; SIGSTOP ends nothing', async () => {
      const { cluster } = fixture;
      await cluster.createTopic('crashes', { partitions: 1, replicationFactor: 3, minInSyncReplicas: 2 });
      const [before] = await cluster.waitHealthy('crashes', 3);
      const controller = await waitFor('a controller', () => cluster.controllerId());

      // A stopped broker (not the controller) keeps its registration and lease.
      const stopped = [1, 2, 3].find((id) => id !== controller)!;
      const leaseOf = async (id: number): Promise<string | undefined> =>
        (await cluster.namespace.getAll().prefix('brokers/').exec()).kvs
          .find((kv) => kv.key.toString().endsWith(`/${id}`))
          ?.lease.toString();
      const stoppedLease = await leaseOf(stopped);
      cluster.stop(stopped);
      await new Promise((resolve) => setTimeout(resolve, 3000));
      expect(await cluster.registered()).toContain(stopped);
      expect(await leaseOf(stopped)).toBe(stoppedLease);
      cluster.cont(stopped);

      // The partition's leader crashes: a non-controller if it leads, else kill the controller below.
      const leader = before!.leaderId;
      const victim = leader !== controller ? leader : [1, 2, 3].find((id) => id !== controller)!;
      await cluster.kill(victim);
      await waitFor(
        `broker ${victim}'s registration gone`,
        async () => ((await cluster.registered()).includes(victim) ? undefined : true),
        detectionBoundMs,
      );
      if (victim === leader) {
        const [after] = await waitFor(
          'a new leader',
          async () => {
            const records = await cluster.partitions('crashes');
            return records[0] !== undefined && records[0].leaderId !== victim ? records : undefined;
          },
          detectionBoundMs,
        );
        expect(after!.leaderEpoch).toBeGreaterThan(before!.leaderEpoch);
        expect(after!.isr).not.toContain(victim);
      }
      // It comes back at once (its old lease was revoked, so its id is free) and catches up.
      await cluster.restart(victim);
      await cluster.waitHealthy('crashes', 3);

      // The controller crashes: the others see it, a new controller is elected well within the timeout.
      await cluster.kill(controller);
      const next = await waitFor(
        'another controller',
        async () => {
          const id = await cluster.controllerId();
          return id !== undefined && id !== controller ? id : undefined;
        },
        detectionBoundMs,
      );
      expect(next).not.toBe(controller);
      expect(await cluster.registered()).not.toContain(controller);
      const brokerLog = [1, 2, 3].map((id) => cluster.log(id)).join('\n');
      expect(brokerLog).toContain('crash detector: broker');

      // An orderly shutdown closes the port too, and the controller's detector then revokes a lease
      // the broker revokes itself: whichever comes first, the leaving broker does not register again
      // (ClusterNode.leaving, from the server's close: here the broker's own revocation usually wins).
      const leaving = [1, 2, 3].find((id) => id !== controller && id !== next)!;
      await cluster.terminate(leaving);
      expect(cluster.log(leaving)).toContain('shutting down');
      expect(cluster.log(leaving).split('shutting down')[1]).not.toContain('registering again');
      expect(await cluster.registered()).not.toContain(leaving);
    }, 120_000);
  },
);
