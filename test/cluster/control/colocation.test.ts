/**
 * Co-location of one service's internal topics, end to end on a real etcd (~5 s): three ClusterNodes
 * in this process whose controller creates a group of internal topics (`__a` the anchor, `__b`,
 * `__c`), each node's data plane a RecordingReplicaManager behind the real FollowedServices. The
 * three topics get the same replicas in the same order and one leader, the service starts there
 * (and nowhere else); when that broker's session ends, the group converges on one new leader and
 * the service starts there with a larger fence.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ClusterNode } from '../../../src/cluster/control/cluster-node.js';
import { FollowedServices, type ServiceTerm } from '../../../src/cluster/state-services/followed-services.js';
import { etcdMissing, etcdSkipReason, startEtcd, type TestEtcd } from '../etcd-server.js';
import { RecordingReplicaManager } from './recording-replica-manager.js';

const waitBoundMs = 20_000;
const group = ['__a', '__b', '__c'];

async function waitFor<T>(what: string, probe: () => T | undefined | false): Promise<T> {
  const deadline = Date.now() + waitBoundMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

interface Member {
  id: number;
  node: ClusterNode;
  manager: RecordingReplicaManager;
  services: FollowedServices;
  terms: ServiceTerm[];
  running: boolean;
}

describe.skipIf(etcdMissing)(
  `co-located internal topics on a real etcd (skipped if ${etcdSkipReason})`,
  () => {
    let etcd: TestEtcd;
    const members: Member[] = [];
    beforeAll(async () => {
      etcd = await startEtcd();
    });
    afterAll(async () => {
      for (const member of members) await member.node.close().catch(() => undefined);
      await etcd?.close();
    });

    async function start(id: number): Promise<Member> {
      const manager = new RecordingReplicaManager();
      const services = new FollowedServices(id, manager);
      const member: Member = {
        id,
        node: undefined as unknown as ClusterNode,
        manager,
        services,
        terms: [],
        running: false,
      };
      services.follow(
        { service: 'svc', topics: group },
        {
          stop: () => {
            member.running = false;
          },
          start: (term) => {
            member.terms.push(term);
            member.running = true;
          },
        },
      );
      member.node = await ClusterNode.start({
        etcd: etcd.url,
        brokerId: id,
        advertise: `ws://127.0.0.1:${7100 + id}`,
        name: 'colocation',
        sessionTimeoutMs: 1000,
        replicaManager: services,
        internalTopics: [group, ['__other']],
        internalReplicationFactor: 3,
        log: () => {},
      });
      members.push(member);
      return member;
    }

    /** The group's records as `viewer` sees them, once all three are placed with one leader. */
    function converged(viewer: Member, leaderOtherThan = -1) {
      const records = group.map((topic) => viewer.node.topicView(topic)?.partitions[0]);
      const first = records[0];
      if (first === undefined || first.leaderId < 0 || first.leaderId === leaderOtherThan) return undefined;
      const same = records.every(
        (record) =>
          record !== undefined &&
          record.leaderId === first.leaderId &&
          record.replicas.join() === first.replicas.join(),
      );
      return same ? records : undefined;
    }

    test('one leader for the group; the service runs there only; it moves as one', async () => {
      for (const id of [1, 2, 3]) await start(id);
      const records = await waitFor('the group placed on one leader', () => converged(members[0]!));
      const leaderId = records[0]!.leaderId;
      const leader = members.find((member) => member.id === leaderId)!;
      await waitFor('the service to start on the leader', () => leader.running);
      expect(members.filter((member) => member.running).map((member) => member.id)).toEqual([leaderId]);
      expect(leader.terms.at(-1)?.epochs).toEqual(records.map((record) => record!.leaderEpoch));

      // The leader's broker goes away: one new leader for all three, the service starts there only.
      const fenceBefore = leader.terms.at(-1)!.fence;
      await leader.node.close();
      members.splice(members.indexOf(leader), 1);
      const moved = await waitFor('the group on one new leader', () => converged(members[0]!, leaderId));
      const successor = members.find((member) => member.id === moved[0]!.leaderId)!;
      await waitFor('the service to start on the new leader', () => successor.running);
      expect(members.filter((member) => member.running).map((member) => member.id)).toEqual([successor.id]);
      expect(successor.terms.at(-1)!.fence).toBeGreaterThan(fenceBefore);
      for (const member of members) expect(member.manager.violations).toEqual([]);
    });
  },
);
