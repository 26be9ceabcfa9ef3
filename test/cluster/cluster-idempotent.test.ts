/**
 * Idempotent producers in a cluster (docs/CLUSTER.md, "Built: idempotent producers"), on three
 * `spillway broker --cluster` processes and a real etcd (session timeout 1 s):
 *
 * - INIT_PRODUCER on any broker: ids unique across the cluster (blocks claimed in etcd).
 * - named producers (the registry in etcd): instance 1 registered on broker 1, instance 2 with the
 *   same name on broker 2 → instance 1's next batch is PRODUCER_FENCED on the partition leader
 *   before instance 2 wrote there; instance 2's sequences start at 0 and continue (a repeat gets its
 *   offsets); racing registrations of one name on two brokers get distinct epochs; after the leader
 *   of the partition is SIGKILLed (the test below), the new leader still fences instance 1 and takes
 *   instance 2's next sequence.
 * - an idempotent producer with acks 'all' keeps sends outstanding on two partitions while the
 *   leader of partition 0 is SIGKILLed, so its batches in flight are resent to the new leader: every
 *   send resolves, every acknowledged value is read exactly once at its offset from every live
 *   replica, per-partition offsets follow send order, nothing is in the log twice (history checker).
 * - a raw batch acknowledged by the old leader and sent again, byte for byte, to the new leader is
 *   answered with its first offsets and not written again (the new leader rebuilt the producer's
 *   sequences from the replicated batch headers).
 */
import { beforeAll, describe, expect, test } from 'vitest';
import { Spillway } from '../../src/client/index.js';
import type { SendResult } from '../../src/client/producer.js';
import { WebSocketTransport } from '../../src/client/websocket-transport.js';
import type { PartitionRecord } from '../../src/cluster/control/cluster-records.js';
import { encodeBatch } from '../../src/format/record-batch.js';
import { Opcode } from '../../src/protocol/opcodes.js';
import { etcdMissing, etcdSkipReason } from './etcd-server.js';
import { useClusterProcesses } from './harness/cluster-fixture.js';
import type { ClusterProcesses } from './harness/cluster-processes.js';
import { checkHistory, describeViolations } from './harness/history-checker.js';
import { readPartition } from './harness/leader-router.js';
import { OperationHistory, type ProduceOperation } from './harness/operation-history.js';
import { waitFor } from './harness/wait-for.js';

const topic = 'idem';
const partitions = [0, 1];

let cluster: ClusterProcesses;

async function rawConnect(url: string): Promise<WebSocketTransport> {
  return WebSocketTransport.connect(url, { requestTimeoutMs: 10_000, connectTimeoutMs: 5_000 });
}

async function initProducer(url: string, name?: string): Promise<number> {
  return (await initNamed(url, name)).producerId;
}

async function initNamed(url: string, name?: string): Promise<{ producerId: number; producerEpoch: number }> {
  const transport = await rawConnect(url);
  try {
    const answer = await transport.request(Opcode.initProducer, name === undefined ? {} : { name });
    return answer.header as { producerId: number; producerEpoch: number };
  } finally {
    await transport.close();
  }
}

/** A raw idempotent batch of `count` records `named-<tag>-i` to idem/0's leader (acks 'all'); its offsets or error code. */
async function produceNamed(
  producer: { producerId: number; producerEpoch: number },
  baseSequence: number,
  tag: string,
  count = 2,
): Promise<{ baseOffset: number; lastOffset: number } | string> {
  const leader = (await cluster.partitions(topic))[0] as PartitionRecord;
  const batch = encodeBatch(
    Array.from({ length: count }, (_, i) => ({ value: Buffer.from(`named-${tag}-${i}`) })),
    { ...producer, baseSequence },
  );
  const raw = await rawConnect(cluster.broker(leader.leaderId).url);
  try {
    const answer = await raw.request(Opcode.produce, { topic, partition: 0, acks: 'all' }, batch);
    return answer.header as { baseOffset: number; lastOffset: number };
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  } finally {
    await raw.close();
  }
}

/** Named producers: instance 1 (fenced) and instance 2 (its sequences), across the tests below. */
let instance1 = { producerId: -1, producerEpoch: -1 };
let instance2 = { producerId: -1, producerEpoch: -1 };
let instance2Last = { baseOffset: -1, lastOffset: -1 };

describe.skipIf(etcdMissing)(`idempotent producers in a cluster (skipped if ${etcdSkipReason})`, () => {
  const fixture = useClusterProcesses({ brokerIds: [1, 2, 3], name: 'idem', sessionTimeoutMs: 1000 });
  beforeAll(async () => {
    cluster = fixture.cluster;
    await cluster.createTopic(topic, {
      partitions: partitions.length,
      replicationFactor: 3,
      minInSyncReplicas: 2,
      config: { durability: 'always' },
    });
    await cluster.waitHealthy(topic, 3);
  }, 60_000);

  test('INIT_PRODUCER on any broker: ids unique in the cluster', async () => {
    const ids: number[] = [];
    for (let round = 0; round < 3; round++) {
      for (const id of cluster.ids) ids.push(await initProducer(cluster.broker(id).url));
    }
    expect(new Set(ids).size).toBe(ids.length);
  }, 30_000);

  test('named producers: a registration on another broker fences the older instance; sequences go on; races get distinct epochs', async () => {
    instance1 = await initNamed(cluster.broker(1).url, 'app');
    expect(instance1.producerId).toBeGreaterThanOrEqual(0);
    const a = await produceNamed(instance1, 0, 'i1a');
    const b = await produceNamed(instance1, 2, 'i1b');
    expect(a).toMatchObject({ lastOffset: expect.any(Number) });
    expect(b).toMatchObject({ baseOffset: (a as { lastOffset: number }).lastOffset + 1 });
    // Instance 2, same name, on another broker: same id, a higher epoch.
    instance2 = await initNamed(cluster.broker(2).url, 'app');
    expect(instance2.producerId).toBe(instance1.producerId);
    expect(instance2.producerEpoch).toBe(instance1.producerEpoch + 1);
    // Instance 1's next batch is fenced, though instance 2 has not written to the partition yet.
    expect(await produceNamed(instance1, 4, 'i1c')).toBe('PRODUCER_FENCED');
    // Instance 2 starts its epoch at sequence 0 and goes on; a repeat gets its first offsets.
    expect(await produceNamed(instance2, 2, 'i2x')).toBe('OUT_OF_ORDER_SEQUENCE');
    const c = (await produceNamed(instance2, 0, 'i2a')) as { baseOffset: number; lastOffset: number };
    const d = (await produceNamed(instance2, 2, 'i2b')) as { baseOffset: number; lastOffset: number };
    expect(d.baseOffset).toBe(c.lastOffset + 1);
    expect(await produceNamed(instance2, 2, 'i2b')).toEqual(d);
    expect(await produceNamed(instance2, 7, 'i2gap')).toBe('OUT_OF_ORDER_SEQUENCE');
    expect(await produceNamed(instance1, 0, 'i1d')).toBe('PRODUCER_FENCED');
    instance2Last = d;
    // Racing registrations of one name on two brokers: one id, every epoch distinct.
    const raced = await Promise.all(
      Array.from({ length: 10 }, (_, i) => initNamed(cluster.broker(i % 2 === 0 ? 1 : 2).url, 'race')),
    );
    expect(new Set(raced.map((r) => r.producerId)).size).toBe(1);
    expect(new Set(raced.map((r) => r.producerEpoch)).size).toBe(raced.length);
    expect(Math.max(...raced.map((r) => r.producerEpoch))).toBe(raced.length - 1);
  }, 30_000);

  test('acks all across a leader SIGKILL: every acknowledged value once, in send order, no duplicate', async () => {
    const before = (await cluster.partitions(topic))[0] as PartitionRecord;
    const leaderId = before.leaderId;
    const leaderUrl = cluster.broker(leaderId).url;

    // A raw idempotent batch acknowledged by the leader about to die (acks 'all': on every replica).
    const probeId = await initProducer(leaderUrl);
    const probe = encodeBatch([{ value: Buffer.from('probe-a') }, { value: Buffer.from('probe-b') }], {
      producerId: probeId,
      producerEpoch: 0,
      baseSequence: 0,
    });
    const raw = await rawConnect(leaderUrl);
    const first = await raw.request(Opcode.produce, { topic, partition: 0, acks: 'all' }, probe.slice());
    const probeOffset = (first.header as { baseOffset: number }).baseOffset;
    await raw.close();

    // The producer connects to the leader that dies; sends stay outstanding across the kill.
    const sw = await Spillway.connect(leaderUrl, { clientId: 'idempotent' });
    const producer = sw.producer({ idempotent: true, acks: 'all', lingerMs: 2, batchBytes: 2048 });
    const history = new OperationHistory();
    const total = 3000;
    const outstandingMax = 200;
    const killAfterAcks = 600;
    const sends: Array<Promise<void>> = [];
    let acked = 0;
    let outstanding = 0;
    let killedAtMs = 0;
    let firstAckAfterKillMs = 0;
    let inFlightAtKill = 0;
    const rejections: string[] = [];
    const send = (i: number): Promise<void> => {
      const partition = i % partitions.length;
      const operation = history.invoke(partition, `m${i}`);
      const invokedAfterKill = killedAtMs > 0;
      outstanding++;
      return producer.send(topic, { value: operation.value, partition }).then(
        (result: SendResult) => {
          outstanding--;
          acked++;
          if (invokedAfterKill && partition === 0 && firstAckAfterKillMs === 0)
            firstAckAfterKillMs = Date.now();
          history.ack(operation, result.offset);
        },
        (error: unknown) => {
          outstanding--;
          rejections.push(String(error));
          history.fail(operation, String(error));
        },
      );
    };
    let killing: Promise<void> | null = null;
    for (let i = 0; i < total; i++) {
      while (outstanding >= outstandingMax) await new Promise((resolve) => setTimeout(resolve, 1));
      // Killed while many sends are outstanding (sent since the last acknowledgements came in).
      if (killing === null && acked >= killAfterAcks && outstanding >= outstandingMax / 2) {
        inFlightAtKill = history.counts().pending;
        killedAtMs = Date.now();
        killing = cluster.kill(leaderId);
      }
      sends.push(send(i));
    }
    await Promise.all(sends);
    await killing;
    await producer.close();
    await sw.close();
    expect(rejections, 'no send rejects').toEqual([]);
    expect(inFlightAtKill, 'sends in flight when the leader died').toBeGreaterThan(0);

    // The new leader of partition 0 (from the ISR, higher epoch): the probe's resend is a repeat.
    const after = await waitFor('a new leader of idem/0', async () => {
      const record = (await cluster.partitions(topic))[0];
      return record !== undefined && record.leaderId > 0 && record.leaderId !== leaderId ? record : undefined;
    });
    expect(after.leaderEpoch).toBeGreaterThan(before.leaderEpoch);
    const again = await rawConnect(cluster.broker(after.leaderId).url);
    const repeat = await again.request(Opcode.produce, { topic, partition: 0, acks: 'all' }, probe.slice());
    await again.close();
    expect((repeat.header as { baseOffset: number }).baseOffset).toBe(probeOffset);

    // Every live replica serves every acknowledged value once, at its offset.
    const live = cluster.ids.filter((id) => id !== leaderId);
    const highest = (partition: number): number =>
      Math.max(
        -1,
        ...history.produces
          .filter((operation) => operation.partition === partition && operation.offset !== undefined)
          .map((operation) => operation.offset as number),
      );
    for (const partition of partitions) {
      for (const id of live) {
        const read = await waitFor(
          `broker ${id} to serve ${topic}/${partition} up to ${highest(partition)}`,
          async () => {
            const answer = await readPartition(cluster.broker(id).url, topic, partition).catch(
              () => undefined,
            );
            return answer !== undefined && answer.highWatermark > highest(partition) ? answer : undefined;
          },
        );
        // The probe's two records, once, at their first offsets; the rest are the producer's.
        const probes = read.records.filter((record) => record.value.startsWith('probe-'));
        expect(probes, `broker ${id} p${partition} probe`).toEqual(
          partition === 0
            ? [
                { offset: probeOffset, value: 'probe-a' },
                { offset: probeOffset + 1, value: 'probe-b' },
              ]
            : [],
        );
        history.read(
          partition,
          `broker ${id}`,
          // The named producers' records (test above, checked there and below) are not this producer's.
          read.records.filter(
            (record) => !record.value.startsWith('probe-') && !record.value.startsWith('named-'),
          ),
        );
      }
    }
    const violations = checkHistory(history);
    if (violations.length > 0) {
      for (const id of cluster.ids) console.log(`--- broker ${id} log tail\n${cluster.logTail(id, 40)}`);
    }
    expect(violations, describeViolations(violations)).toEqual([]);
    // Per partition, offsets in send order (the producer's order kept across the failover).
    for (const partition of partitions) {
      const offsets = history.produces
        .filter((operation: ProduceOperation) => operation.partition === partition)
        .map((operation) => operation.offset as number);
      expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
    }
    expect(cluster.electionViolations(topic)).toEqual([]);
    console.log(
      `leader ${leaderId} of ${topic}/0 SIGKILLed with ${inFlightAtKill} sends in flight; first acknowledgement of a send to idem/0 made after it in ` +
        `${firstAckAfterKillMs - killedAtMs} ms; ${history.counts().acked} acknowledged, each read once from brokers ${live.join(', ')}`,
    );
  }, 90_000);

  test('named producers after the leader change: the new leader fences instance 1 and takes instance 2 on', async () => {
    // The test above SIGKILLed the leader of idem/0: its new leader rebuilt the producers' state
    // from the replicated batch headers (epochs included).
    const leader = await waitFor('a live leader of idem/0', async () => {
      const record = (await cluster.partitions(topic))[0];
      return record !== undefined && cluster.running(record.leaderId) ? record : undefined;
    });
    expect(leader.leaderEpoch).toBeGreaterThan(0);
    expect(await produceNamed(instance1, 4, 'i1e')).toBe('PRODUCER_FENCED');
    expect(await produceNamed(instance2, 2, 'i2b')).toEqual(instance2Last);
    const next = (await produceNamed(instance2, 4, 'i2c')) as { baseOffset: number };
    expect(next.baseOffset).toBeGreaterThan(instance2Last.lastOffset);
    const read = await readPartition(cluster.broker(leader.leaderId).url, topic, 0);
    expect(
      read.records.filter((record) => record.value.startsWith('named-')).map((record) => record.value),
    ).toEqual(['i1a', 'i1b', 'i2a', 'i2b', 'i2c'].flatMap((tag) => [`named-${tag}-0`, `named-${tag}-1`]));
  }, 30_000);
});
