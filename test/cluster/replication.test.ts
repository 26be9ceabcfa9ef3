/**
 * The replication data plane with three real brokers on loopback (in-process), driven through
 * ReplicaManager.applyAssignment with an in-memory IsrChanger: byte-identical copies, the high
 * watermark, acks 'all' vs 'leader', ISR shrink and expand, fencing, and truncation by leader epoch
 * on a leader change (KIP-101 / KIP-279 scenarios).
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { partitionDirectory, topicsDirectory } from '../../src/broker/topic-directories.js';
import type { PartitionAssignment } from '../../src/cluster/partition-role.js';
import { leaderEpochFileName } from '../../src/cluster/replication/leader-epoch-history.js';
import { PartitionFollower } from '../../src/cluster/replication/partition-follower.js';
import { PartitionLeader } from '../../src/cluster/replication/partition-leader.js';
import { CheckpointFile } from '../../src/storage/checkpoint-file.js';
import { batchOf, openBroker, valuesOf } from '../broker/helpers.js';
import { eventually, logBytes, TestCluster } from './replication-helpers.js';

let cluster: TestCluster | null = null;
afterEach(async () => {
  await cluster?.close();
  cluster = null;
});

const topic = 'orders';

function assignment(
  leaderId: number,
  leaderEpoch: number,
  isr: number[],
  minInSyncReplicas = 1,
): PartitionAssignment {
  return { topic, partition: 0, replicas: [1, 2, 3], leaderId, leaderEpoch, isr, minInSyncReplicas };
}

function logEnd(node: {
  broker: { topics: { partitionOf(t: string, p: number): { log: { logEndOffset: number } } } };
}): number {
  return node.broker.topics.partitionOf(topic, 0).log.logEndOffset;
}

/** GET /metrics of a broker (its HTTP API shares the WebSocket port): series -> value. */
async function metricsOf(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(`${url.replace(/^ws/, 'http')}/metrics`)).text();
  const series = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^(spillway_replica_\S+) (\S+)$/.exec(line);
    if (match !== null) series.set(match[1]!, Number(match[2]));
  }
  return series;
}

async function startCluster(options: Parameters<typeof TestCluster.start>[0] = {}): Promise<TestCluster> {
  cluster = await TestCluster.start(options);
  await cluster.createTopic(
    topic,
    options.broker?.durability ? { durability: options.broker.durability } : {},
  );
  return cluster;
}

describe('replication', () => {
  it('copies many batches byte-identical to every follower; acks all returns only once every ISR member has the batch', async () => {
    const c = await startCluster();
    await c.assign(assignment(1, 1, [1, 2, 3], 2));
    const leader = c.node(1).broker;
    for (let i = 0; i < 200; i++) {
      const result = await leader.messages.produce(topic, 0, batchOf(`m${i}`, 1 + (i % 5)), { acks: 'all' });
      // Acknowledged: both followers have it already (no waiting here).
      expect(logEnd(c.node(2))).toBeGreaterThan(result.lastOffset);
      expect(logEnd(c.node(3))).toBeGreaterThan(result.lastOffset);
    }
    await eventually(
      () => logEnd(c.node(2)) === logEnd(c.node(1)) && logEnd(c.node(3)) === logEnd(c.node(1)),
      'caught up',
    );
    const bytes = logBytes(leader, topic);
    expect(bytes.length).toBeGreaterThan(0);
    expect(logBytes(c.node(2).broker, topic).equals(bytes)).toBe(true);
    expect(logBytes(c.node(3).broker, topic).equals(bytes)).toBe(true);
    // The followers' epoch history matches the leader's.
    expect(c.node(2).manager!.historyOf(topic, 0)!.entries).toEqual([{ epoch: 1, startOffset: 0 }]);
    // Consumers of the leader see everything (the HW is the log end once followers fetched again).
    await eventually(
      () => leader.topics.partitionOf(topic, 0).visibleEndOffset === logEnd(c.node(1)),
      'HW at log end',
    );
  });

  it('consumers see only up to the high watermark; a lagging follower leaves the ISR, then the HW moves; it comes back when caught up', async () => {
    // The window must outlast the steps that check the HW held back (a loaded 2-core machine took
    // more than 300 ms between them), and keep follower 2 in the ISR however slowly it fetches.
    const lagWindowMs = 1500;
    const c = await startCluster({ replicaLagTimeMs: lagWindowMs });
    await c.assign(assignment(1, 1, [1, 2, 3]));
    const leader = c.node(1).broker;
    await leader.messages.produce(topic, 0, batchOf('a', 3), { acks: 'all' });
    // Follower 3 stops fetching (its manager is gone: as if its process hung).
    await c.node(3).manager!.close();
    c.node(3).manager = null;
    const written = await leader.messages.produce(topic, 0, batchOf('b', 2), { acks: 'leader' });
    const partition = leader.topics.partitionOf(topic, 0);
    // Appended, but not visible to consumers: broker 3 (in the ISR) does not have it.
    expect(partition.log.logEndOffset).toBe(written.lastOffset + 1);
    expect(partition.visibleEndOffset).toBe(3);
    const fetched = await leader.messages.fetch(topic, 0, 0, { maxBytes: 1 << 20, maxWaitMs: 0 });
    expect(valuesOf(fetched.records)).toEqual(['a/0', 'a/1', 'a/2']);
    expect(fetched.highWatermark).toBe(3);
    // After replicaLagTimeMs the leader drops 3 from the ISR and the HW moves on.
    await eventually(() => c.isr.get(topic, 0)!.isr.join() === '1,2', 'ISR shrunk to 1,2');
    await eventually(() => partition.visibleEndOffset === 5, 'HW 5');
    expect(c.isr.changes.at(-1)!.isr).toEqual([1, 2]);
    // /metrics: the leader shows the ISR, the HW, follower 3's lag and the under-replicated count.
    const metrics = await metricsOf(c.node(1).url);
    const labels = `topic="${topic}",partition="0"`;
    expect(metrics.get(`spillway_replica_isr_size{${labels}}`)).toBe(2);
    expect(metrics.get(`spillway_replica_high_watermark{${labels}}`)).toBe(5);
    expect(metrics.get(`spillway_replica_leader_epoch{${labels},role="leader"}`)).toBe(1);
    expect(metrics.get('spillway_replica_under_replicated_partitions')).toBe(1);
    expect(metrics.get(`spillway_replica_follower_lag_offsets{${labels},replica="3"}`)).toBe(2);
    expect(metrics.get(`spillway_replica_follower_lag_seconds{${labels},replica="3"}`)).toBeGreaterThan(
      lagWindowMs / 1000,
    );
    expect(metrics.get(`spillway_replica_follower_lag_offsets{${labels},replica="2"}`)).toBe(0);
    const onFollower = await metricsOf(c.node(2).url);
    expect(onFollower.get(`spillway_replica_leader_epoch{${labels},role="follower"}`)).toBe(1);
    expect(onFollower.has(`spillway_replica_isr_size{${labels}}`)).toBe(false);
    // Broker 3 comes back, catches up and is taken back into the ISR.
    const manager = c.attach(c.node(3));
    await manager.applyAssignment(c.isr.get(topic, 0)!, c.endpoints);
    await eventually(() => c.isr.get(topic, 0)!.isr.join() === '1,2,3', 'ISR expanded');
    expect(logBytes(c.node(3).broker, topic).equals(logBytes(leader, topic))).toBe(true);
  });

  it('the controller removes a dead follower at the same epoch: the leader role goes on, acks all stop waiting for it, a change decided from the old ISR writes nothing', async () => {
    const c = await startCluster();
    await c.assign(assignment(1, 1, [1, 2, 3]));
    const leader = c.node(1).broker;
    await leader.messages.produce(topic, 0, batchOf('a', 2), { acks: 'all' });
    const role = leader.topics.partitionOf(topic, 0).replica;
    expect(role).toBeInstanceOf(PartitionLeader);
    // Broker 3 dies; the controller takes it out of the ISR without a new epoch.
    await c.node(3).manager!.close();
    c.node(3).manager = null;
    await c.assign(assignment(1, 1, [1, 2]));
    expect(leader.topics.partitionOf(topic, 0).replica).toBe(role);
    const written = await leader.messages.produce(topic, 0, batchOf('b', 2), { acks: 'all' });
    expect(written.lastOffset).toBe(3);
    // A leader's change decided from the ISR before the controller's writes nothing.
    expect(await c.isr.changeIsr(topic, 0, 1, [1, 2, 3], [1, 2, 3])).toMatchObject({ isr: [1, 2] });
    expect(c.isr.get(topic, 0)!.isr).toEqual([1, 2]);
  });

  it('acks all is refused with NOT_ENOUGH_REPLICAS below minInSyncReplicas; acks leader is taken; produces to a follower get NOT_LEADER, stale epochs FENCED_LEADER_EPOCH', async () => {
    const c = await startCluster();
    // Only the leader gets the assignment for now: followers would catch up an empty log at once.
    await c.assign(assignment(1, 4, [1], 2), [1]);
    const leader = c.node(1).broker;
    await expect(leader.messages.produce(topic, 0, batchOf('x'), { acks: 'all' })).rejects.toMatchObject({
      code: 'NOT_ENOUGH_REPLICAS',
    });
    // Without acks: 'all' is the default in a cluster.
    await expect(leader.messages.produce(topic, 0, batchOf('x'))).rejects.toMatchObject({
      code: 'NOT_ENOUGH_REPLICAS',
    });
    expect(logEnd(c.node(1))).toBe(0);
    await expect(leader.messages.produce(topic, 0, batchOf('y'), { acks: 'leader' })).resolves.toMatchObject({
      baseOffset: 0,
    });
    await c.applyEverywhere(c.isr.get(topic, 0)!, [2, 3]);
    await expect(
      c.node(2).broker.messages.produce(topic, 0, batchOf('z'), { acks: 'leader' }),
    ).rejects.toMatchObject({
      code: 'NOT_LEADER',
    });
    await expect(
      leader.messages.produce(topic, 0, batchOf('z'), { acks: 'leader', leaderEpoch: 3 }),
    ).rejects.toMatchObject({ code: 'FENCED_LEADER_EPOCH' });
    await expect(
      leader.messages.produce(topic, 0, batchOf('z'), { acks: 'leader', leaderEpoch: 5 }),
    ).rejects.toMatchObject({ code: 'NOT_LEADER' });
    // Followers catch up and join the ISR: acks all works again.
    await eventually(() => c.isr.get(topic, 0)!.isr.length === 3, 'ISR expanded');
    await expect(leader.messages.produce(topic, 0, batchOf('w'), { acks: 'all' })).resolves.toMatchObject({
      baseOffset: 1,
    });
  });

  it('a new leader keeps what every ISR member had (KIP-101 scenario 1: no truncation to the high watermark)', async () => {
    const c = await startCluster();
    await c.assign(assignment(1, 1, [1, 2, 3]));
    for (let i = 0; i < 10; i++)
      await c.node(1).broker.messages.produce(topic, 0, batchOf(`m${i}`), { acks: 'all' });
    // The last acknowledged batch may be above what the followers think the HW is; a follower
    // truncating to its HW on becoming leader would lose it. Broker 2 leads at epoch 2.
    await c.assign(assignment(2, 2, [1, 2, 3]));
    await eventually(
      () => c.node(2).broker.topics.partitionOf(topic, 0).visibleEndOffset === 10,
      'HW 10 on the new leader',
    );
    const all = await c.node(2).broker.messages.fetch(topic, 0, 0, { maxBytes: 1 << 20, maxWaitMs: 0 });
    expect(valuesOf(all.records)).toEqual(Array.from({ length: 10 }, (_, i) => `m${i}/0`));
    await c.node(2).broker.messages.produce(topic, 0, batchOf('after'), { acks: 'all' });
    await eventually(() => logEnd(c.node(1)) === 11 && logEnd(c.node(3)) === 11, 'old leader follows');
    expect(logBytes(c.node(1).broker, topic).equals(logBytes(c.node(2).broker, topic))).toBe(true);
    const follower = c.node(1).manager!.roleOf(topic, 0);
    expect(follower).toBeInstanceOf(PartitionFollower);
    expect((follower as PartitionFollower).truncations).toBe(0);
    expect(c.node(1).manager!.historyOf(topic, 0)!.entries).toEqual([
      { epoch: 1, startOffset: 0 },
      { epoch: 2, startOffset: 10 },
    ]);
  });

  it('an old leader rejoining truncates its divergent tail by epoch (KIP-101 scenario 2, KIP-279: its latest epoch unknown to the new leader)', async () => {
    const c = await startCluster();
    await c.assign(assignment(1, 1, [1, 2, 3]));
    for (let i = 0; i < 10; i++)
      await c.node(1).broker.messages.produce(topic, 0, batchOf(`m${i}`), { acks: 'all' });
    await eventually(() => logEnd(c.node(2)) === 10 && logEnd(c.node(3)) === 10, 'replicated');
    // Followers stop (cut off); broker 1 is re-elected at epoch 2 and writes a tail nobody copies.
    await c.node(2).manager!.removePartition(topic, 0);
    await c.node(3).manager!.removePartition(topic, 0);
    await c.assign(assignment(1, 2, [1]), [1]);
    for (let i = 0; i < 5; i++) {
      await c.node(1).broker.messages.produce(topic, 0, batchOf(`lost${i}`, 2), { acks: 'leader' });
    }
    expect(logEnd(c.node(1))).toBe(20);
    // Broker 1 is cut off; the controller makes broker 2 leader at epoch 3 (unclean here: the
    // acks 'leader' tail was never on it), which writes different batches at the same offsets.
    await c.assign(assignment(2, 3, [2, 3]), [2, 3]);
    for (let i = 0; i < 3; i++)
      await c.node(2).broker.messages.produce(topic, 0, batchOf(`new${i}`), { acks: 'all' });
    // Broker 1 comes back as a follower at epoch 3: its epoch 2 is unknown to broker 2, whose epoch
    // 1 ends at 10, so broker 1 truncates to 10 and copies 10..13.
    await c.assign(assignment(2, 3, [2, 3]), [1]);
    await eventually(() => logEnd(c.node(1)) === 13, 'old leader caught up');
    expect(logBytes(c.node(1).broker, topic).equals(logBytes(c.node(2).broker, topic))).toBe(true);
    const role = c.node(1).manager!.roleOf(topic, 0) as PartitionFollower;
    expect(role.truncations).toBe(1);
    expect(c.node(1).manager!.historyOf(topic, 0)!.entries).toEqual([
      { epoch: 1, startOffset: 0 },
      { epoch: 3, startOffset: 10 },
    ]);
    const read = c
      .node(1)
      .broker.topics.partitionOf(topic, 0)
      .log.read(0, 1 << 20);
    expect(valuesOf(read.bytes).slice(9)).toEqual(['m9/0', 'new0/0', 'new1/0', 'new2/0']);
  });

  it('a produce waiting for acks all fails with NOT_LEADER when the broker stops leading, and the fenced epoch answers followers FENCED_LEADER_EPOCH', async () => {
    const c = await startCluster();
    await c.assign(assignment(1, 1, [1, 2, 3]));
    await c.node(3).manager!.close();
    c.node(3).manager = null;
    const waiting = c.node(1).broker.messages.produce(topic, 0, batchOf('w'), { acks: 'all' });
    // Handled from now on: it fails while the assignment is applied, before the expect below runs.
    const failure = waiting.then(
      () => null,
      (error: unknown) => error,
    );
    await eventually(() => logEnd(c.node(2)) === 1, 'follower 2 has it');
    await c.assign(assignment(2, 2, [1, 2]), [1, 2]);
    expect(await failure).toMatchObject({ code: 'NOT_LEADER' });
    expect(c.node(1).manager!.roleOf(topic, 0)).toBeInstanceOf(PartitionFollower);
    expect(c.node(2).manager!.roleOf(topic, 0)).toBeInstanceOf(PartitionLeader);
    expect(() =>
      c.node(2).broker.replication!.offsetForLeaderEpoch({
        topic,
        partition: 0,
        replicaId: 1,
        leaderEpoch: 1,
        epoch: 1,
      }),
    ).toThrow(expect.objectContaining({ code: 'FENCED_LEADER_EPOCH' }));
    expect(() =>
      c.node(2).broker.replication!.offsetForLeaderEpoch({
        topic,
        partition: 0,
        replicaId: 1,
        leaderEpoch: 3,
        epoch: 1,
      }),
    ).toThrow(expect.objectContaining({ code: 'NOT_LEADER' }));
    expect(
      c.node(2).broker.replication!.offsetForLeaderEpoch({
        topic,
        partition: 0,
        replicaId: 1,
        leaderEpoch: 2,
        epoch: 1,
      }),
    ).toEqual({
      epoch: 1,
      endOffset: 1,
    });
  });

  it('with durability always, acks all waits until every ISR member has the batch on disk', async () => {
    const c = await startCluster({ broker: { durability: 'always' } });
    await c.assign(assignment(1, 1, [1, 2, 3], 3));
    for (let i = 0; i < 20; i++) {
      const result = await c.node(1).broker.messages.produce(topic, 0, batchOf(`d${i}`, 2), { acks: 'all' });
      expect(result.durability).toBe('always');
      for (const id of [2, 3]) {
        expect(c.node(id).broker.topics.partitionOf(topic, 0).log.durableOffset).toBeGreaterThan(
          result.lastOffset,
        );
      }
    }
    expect(logBytes(c.node(3).broker, topic).equals(logBytes(c.node(1).broker, topic))).toBe(true);
  });

  it('a restarted broker keeps its epoch history and its checkpointed HW: as leader it shows consumers what was replicated, nothing its ISR may lack', async () => {
    const c = await startCluster();
    await c.assign(assignment(1, 1, [1, 2]), [1, 2]);
    for (let i = 0; i < 5; i++)
      await c.node(1).broker.messages.produce(topic, 0, batchOf(`m${i}`), { acks: 'all' });
    await c.node(2).manager!.close();
    c.node(2).manager = null;
    for (let i = 0; i < 3; i++)
      await c.node(1).broker.messages.produce(topic, 0, batchOf(`t${i}`), { acks: 'leader' });
    // Restart broker 1 on its data directory.
    const old = c.node(1);
    await old.manager!.close();
    const dataDir = old.broker.dataDir;
    await old.broker.close();
    old.broker = await openBroker(dataDir);
    old.url = (await old.broker.listen({ host: '127.0.0.1', port: 0 })).url;
    c.endpoints.set(1, { brokerId: 1, url: old.url });
    const manager = c.attach(old);
    await c.assign(assignment(1, 2, [1, 2]), [1]);
    expect(manager.historyOf(topic, 0)!.entries).toEqual([
      { epoch: 1, startOffset: 0 },
      { epoch: 2, startOffset: 8 },
    ]);
    const partition = old.broker.topics.partitionOf(topic, 0);
    expect(partition.log.logEndOffset).toBe(8);
    // The HW checkpointed in __leader_epochs when its role stopped: the 5 acks-all records are
    // visible at once; the 3 acks-leader ones only once broker 2 (in the ISR) has them.
    expect(partition.visibleEndOffset).toBe(5);
    c.attach(c.node(2));
    await c.applyEverywhere(c.isr.get(topic, 0)!, [2]);
    await eventually(() => partition.visibleEndOffset === 8, 'HW 8 once broker 2 copied the tail');
    expect(logBytes(c.node(2).broker, topic).equals(logBytes(old.broker, topic))).toBe(true);
  });

  it('a data directory of the old format: the side file is migrated into __leader_epochs at the first assignment, which is listed as an internal topic', async () => {
    const c = await startCluster();
    await c.assign(assignment(1, 1, [1, 2]), [1, 2]);
    for (let i = 0; i < 3; i++)
      await c.node(1).broker.messages.produce(topic, 0, batchOf(`m${i}`), { acks: 'all' });
    const node = c.node(1);
    const restart = async (): Promise<void> => {
      await node.manager!.close();
      expect(node.broker.topics.list({ internal: true }).map((t) => t.name)).not.toContain('__leader_epochs');
      const dataDir = node.broker.dataDir;
      await node.broker.close();
      node.broker = await openBroker(dataDir);
      node.url = (await node.broker.listen({ host: '127.0.0.1', port: 0 })).url;
      c.endpoints.set(1, { brokerId: 1, url: node.url });
      c.attach(node);
    };
    await node.manager!.close();
    // What the version before kept: the history in the partition's side file, no epochs in the log.
    const dataDir = node.broker.dataDir;
    rmSync(join(topicsDirectory(dataDir), '__leader_epochs'), { recursive: true });
    const file = join(partitionDirectory(dataDir, topic, 0), leaderEpochFileName);
    new CheckpointFile<unknown>(file).writeSync({ version: 1, entries: [[1, 0]] });
    c.attach(node);
    await restart();
    await c.assign(assignment(1, 2, [1, 2]), [1]);
    expect(node.manager!.historyOf(topic, 0)!.entries).toEqual([
      { epoch: 1, startOffset: 0 },
      { epoch: 2, startOffset: 3 },
    ]);
    expect(existsSync(file)).toBe(false);
    const internal = node.broker.topics.list({ internal: true }).find((t) => t.name === '__leader_epochs');
    expect(internal?.partitionCount).toBe(1);
    expect(node.broker.topics.describe('__leader_epochs').name).toBe('__leader_epochs');
    expect(node.broker.topics.list().map((t) => t.name)).not.toContain('__leader_epochs');
    // The next restart reads it from the state log; the new epoch replaces 2 (which wrote nothing).
    await restart();
    await c.assign(assignment(1, 3, [1, 2]), [1]);
    expect(node.manager!.historyOf(topic, 0)!.entries).toEqual([
      { epoch: 1, startOffset: 0 },
      { epoch: 3, startOffset: 3 },
    ]);
  });
});
