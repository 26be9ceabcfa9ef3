/**
 * Shared and key_shared queues in a cluster (docs/CLUSTER.md "Built: shared and key_shared queues"),
 * on three `spillway broker --cluster` processes and a real etcd (session timeout 1 s). The queue
 * service runs on the leader of `__queue_state`; it reads the topic's partitions locally where it
 * leads them and from their leaders elsewhere (remote readers), and dead-letters through forwarding.
 *
 * Two consumers in a shared group (poison messages nacked until maxDeliveries: dead letters into a
 * topic led by another broker than the queue service) and two in a key_shared group consume a
 * three-partition topic whose partitions are led by different brokers, while a producer sends all
 * along. First the leader of a partition the queue service reads remotely is SIGKILLed (the
 * partition moves: read locally or from the third broker) and restarted; then the `__queue_state`
 * leader is SIGKILLed. Checked from the recorded history:
 * - every produced message is delivered and acked at least once in each group, and in the end every
 *   partition of each group is settled (lag 0); every poison message is in the dead-letter topic;
 * - no message whose ACK was answered as settled is delivered again by a receive sent after that answer;
 * - key_shared: a message of key K reaches member X only when every earlier message of K went to X
 *   first or was acked already (per-key order within each delivery sequence);
 * - after the failover, a one-replica topic on the third broker (the queue service holds no replica
 *   of it) is consumed through a remote reader.
 * About 22 s on this loaded machine with the cluster's start (a broker restart and two SIGKILLs).
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ClusterTransport } from '../../src/client/cluster-transport.js';
import { Spillway } from '../../src/client/index.js';
import type { Transport } from '../../src/client/transport.js';
import { WebSocketTransport } from '../../src/client/websocket-transport.js';
import { assignReplicas } from '../../src/cluster/control/partition-planner.js';
import { SpillwayError } from '../../src/errors.js';
import { batchLengthAt } from '../../src/format/batch-header.js';
import { decodeRecords } from '../../src/format/record-batch.js';
import { Opcode } from '../../src/protocol/opcodes.js';
import { etcdMissing, etcdSkipReason, startEtcd, type TestEtcd } from './etcd-server.js';
import { ClusterProcesses, waitFor } from './harness/cluster-processes.js';
import { readDecoded } from './harness/leader-router.js';

const topic = 'jobs';
const partitionCount = 3;
const keys = 24;
/** Messages sent together, every burstEveryMs, while the test runs. */
const burst = 12;
const burstEveryMs = 30;
/** Messages sent at once before the queue service's broker is killed. */
const backlog = 400;
/** Acks answered settled in each group between two steps of the run. */
const milestone = 150;
const poisonEvery = 37;
/** A topic name `prefix-<n>` that partition-planner.ts places first on `id` among `live` (by the name's hash). */
function nameLedBy(prefix: string, id: number, live: number[], replicationFactor: number): string {
  for (let n = 0; ; n++) {
    if (assignReplicas(`${prefix}-${n}`, 0, replicationFactor, live)?.[0] === id) return `${prefix}-${n}`;
  }
}
/** Dead-letter topics, one led by each broker: the test takes one the queue service does not lead. */
const dlqCandidates = [1, 2, 3].map((id) => nameLedBy('jobs-dlq', id, [1, 2, 3], 3));

let etcd: TestEtcd;
let cluster: ClusterProcesses;

interface Produced {
  partition: number;
  offset: number;
  key: string;
  value: string;
}

interface Delivery {
  partition: number;
  offset: number;
  key: string;
  value: string;
  deliveryCount: number;
}

/** What one group's consumers saw and did. */
class GroupHistory {
  /** `partition:offset` -> times a receive answer delivered it. */
  readonly delivered = new Map<string, number>();
  /** `partition:offset` -> time (ms) an ACK answered it settled. */
  readonly settledAt = new Map<string, number>();
  /** `partition:offset` acked (ACK sent) at least once. */
  readonly ackSent = new Set<string>();
  /** Deliveries by receives sent after the offset's ACK was answered settled. */
  readonly redeliveredAfterAck: string[] = [];
  /** key_shared order violations. */
  readonly orderViolations: string[] = [];
  receives = 0;
  errors = 0;

  constructor(readonly name: string) {}
}

const at = (partition: number, offset: number): string => `${partition}:${offset}`;

async function leaderOf(name: string, partition = 0, not = -1): Promise<number> {
  return waitFor(`a leader of ${name}/${partition}`, async () => {
    const record = (await cluster.partitions(name))[partition];
    return record !== undefined && record.leaderId > 0 && record.leaderId !== not
      ? record.leaderId
      : undefined;
  });
}

async function clusterTransport(url: string): Promise<Transport> {
  const first = await WebSocketTransport.connect(url, { requestTimeoutMs: 20_000 });
  return ClusterTransport.over(first, { rerouteTimeoutMs: 20_000 });
}

/** The deliveries of a QUEUE_RECEIVE answer, in answer order (batches in offset order per partition). */
function decodeDeliveries(header: unknown, body: Uint8Array): Delivery[] {
  const partitions = (
    header as { partitions: Array<{ partition: number; bytes: number; deliveries: number[] }> }
  ).partitions;
  const deliveries: Delivery[] = [];
  let position = 0;
  for (const { partition, bytes, deliveries: pairs } of partitions) {
    const counts = new Map<number, number>();
    for (let index = 0; index < pairs.length; index += 2) counts.set(pairs[index]!, pairs[index + 1]!);
    const end = position + bytes;
    while (position < end) {
      const length = batchLengthAt(body, position);
      for (const record of decodeRecords(body.subarray(position, position + length))) {
        const count = counts.get(record.offset);
        if (count === undefined) continue;
        counts.delete(record.offset);
        deliveries.push({
          partition,
          offset: record.offset,
          key: Buffer.from(record.key ?? []).toString(),
          value: Buffer.from(record.value ?? []).toString(),
          deliveryCount: count,
        });
      }
      position += length;
    }
    expect(counts.size, `every delivered offset of ${topic}/${partition} comes with its batch`).toBe(0);
  }
  return deliveries;
}

/** One consumer: receive, check, ack (nack poison in the shared group), until `done()`. */
async function consume(
  transport: Transport,
  history: GroupHistory,
  mode: 'shared' | 'key_shared',
  settings: Record<string, unknown>,
  produced: () => Map<string, Produced>,
  done: () => boolean,
): Promise<void> {
  const held = new Set<string>();
  const header = { group: history.name, topic, mode, max: 40, waitMs: 300, ...settings };
  while (!done()) {
    const sentAt = Date.now();
    let deliveries: Delivery[];
    try {
      const answer = await transport.request(Opcode.queueReceive, header, undefined, { timeoutMs: 20_000 });
      deliveries = decodeDeliveries(answer.header, answer.body);
    } catch (error) {
      if (!(error instanceof SpillwayError)) throw error;
      history.errors++;
      await new Promise((resolve) => setTimeout(resolve, 100));
      continue;
    }
    history.receives++;
    const byKey = new Map<string, Produced[]>();
    if (mode === 'key_shared') {
      for (const one of produced().values()) {
        const list = byKey.get(one.key) ?? [];
        if (list.length === 0) byKey.set(one.key, list);
        list.push(one);
      }
    }
    const acks = new Map<number, number[]>();
    const nacks = new Map<number, number[]>();
    for (const delivery of deliveries) {
      const id = at(delivery.partition, delivery.offset);
      history.delivered.set(id, (history.delivered.get(id) ?? 0) + 1);
      const settled = history.settledAt.get(id);
      if (settled !== undefined && settled < sentAt) {
        history.redeliveredAfterAck.push(`${id} (ack answered ${sentAt - settled} ms before the receive)`);
      }
      if (mode === 'key_shared') {
        for (const earlier of byKey.get(delivery.key) ?? []) {
          if (earlier.partition !== delivery.partition || earlier.offset >= delivery.offset) continue;
          const earlierId = at(earlier.partition, earlier.offset);
          if (!held.has(earlierId) && !history.ackSent.has(earlierId)) {
            history.orderViolations.push(`${id} (key ${delivery.key}) before ${earlierId}`);
          }
        }
      }
      held.add(id);
      const list = mode === 'shared' && delivery.value.startsWith('poison') ? nacks : acks;
      const offsets = list.get(delivery.partition) ?? [];
      if (offsets.length === 0) list.set(delivery.partition, offsets);
      offsets.push(delivery.offset);
    }
    try {
      if (nacks.size > 0) {
        await transport.request(Opcode.queueNack, {
          group: history.name,
          topic,
          delayMs: 0,
          error: 'poison',
          partitions: [...nacks].map(([partition, offsets]) => ({ partition, offsets })),
        });
      }
      if (acks.size > 0) {
        let count = 0;
        for (const [partition, offsets] of acks) {
          count += offsets.length;
          for (const offset of offsets) history.ackSent.add(at(partition, offset));
        }
        const answer = await transport.request(Opcode.queueAck, {
          group: history.name,
          topic,
          partitions: [...acks].map(([partition, offsets]) => ({
            partition,
            ranges: offsets.flatMap((offset) => [offset, offset + 1]),
          })),
        });
        const result = answer.header as { settled: number; ignored: number };
        // Only an answer settling all of them says which: then each is settled for good.
        if (result.settled === count) {
          const now = Date.now();
          for (const [partition, offsets] of acks)
            for (const offset of offsets) history.settledAt.set(at(partition, offset), now);
        }
      }
    } catch (error) {
      if (!(error instanceof SpillwayError)) throw error;
      history.errors++;
    }
  }
}

/** The lag of `group` per partition, from QUEUE_DESCRIBE (undefined while it is not answered). */
async function lagOf(transport: Transport, group: string): Promise<number[] | undefined> {
  try {
    const answer = await transport.request(Opcode.queueDescribe, { group });
    const groups = (answer.header as { groups: Array<{ topic: string; partitions: Array<{ lag: number }> }> })
      .groups;
    const mine = groups.find((one) => one.topic === topic);
    return mine?.partitions.map((partition) => partition.lag);
  } catch {
    return undefined;
  }
}

describe.skipIf(etcdMissing)(`queues in a cluster (skipped if ${etcdSkipReason})`, () => {
  beforeAll(async () => {
    etcd = await startEtcd();
    cluster = await ClusterProcesses.start({
      etcd,
      brokerIds: [1, 2, 3],
      name: 'queues',
      sessionTimeoutMs: 1000,
      durability: 'interval',
    });
    const config = { replicationFactor: 3, minInSyncReplicas: 2, config: { durability: 'interval' } };
    await cluster.createTopic(topic, { partitions: partitionCount, ...config });
    for (const name of dlqCandidates) await cluster.createTopic(name, { partitions: 1, ...config });
    for (const name of [topic, ...dlqCandidates, '__queue_state']) await cluster.waitHealthy(name, 3);
  }, 90_000);

  afterAll(async () => {
    await cluster?.close();
    await etcd?.close();
  });

  test('shared and key_shared across a SIGKILL of the __queue_state leader: at least once, acked never again, per-key order, dead letters on another broker', async () => {
    const transports: Transport[] = [];
    const producers: Spillway[] = [];
    try {
      const queueLeader = await leaderOf('__queue_state');
      const dataLeaders = await Promise.all(
        Array.from({ length: partitionCount }, (_, partition) => leaderOf(topic, partition)),
      );
      // The run is meaningful only when the queue service reads some partition from another broker.
      expect(new Set(dataLeaders).size, `leaders of ${topic}: ${dataLeaders}`).toBeGreaterThan(1);
      let deadLetterTopic: string | undefined;
      for (const name of dlqCandidates) if ((await leaderOf(name)) !== queueLeader) deadLetterTopic ??= name;
      expect(
        deadLetterTopic,
        `a dead-letter topic led by another broker than the queue service (${queueLeader}): ${dlqCandidates}`,
      ).toBeDefined();

      // A producer sending all along (acks 'all'), so that every failure hits messages in flight.
      const produced = new Map<string, Produced>();
      let producing = true;
      const producerClient = await Spillway.connect(cluster.broker(await leaderOf(topic)).url, {
        clientId: 'q-producer',
      });
      producers.push(producerClient);
      const producer = producerClient.producer({ acks: 'all', lingerMs: 2 });
      let sent = 0;
      const send = (count: number): Promise<unknown> =>
        Promise.all(
          Array.from({ length: count }, async () => {
            const index = sent++;
            const key = `k${index % keys}`;
            const value = index % poisonEvery === 5 ? `poison-${index}` : `m-${index}`;
            const result = await producer.send(topic, { key, value });
            produced.set(at(result.partition, result.offset), { ...result, key, value });
          }),
        );
      const producing$ = (async () => {
        while (producing) {
          await send(burst);
          await new Promise((resolve) => setTimeout(resolve, burstEveryMs));
        }
      })();

      const shared = new GroupHistory('sh');
      const keyShared = new GroupHistory('ks');
      const settings = { ackTimeoutMs: 15_000, maxDeliveries: 3, retryBackoffMs: [0], deadLetterTopic };
      let stop = false;
      const anyUrl = cluster.broker(queueLeader === 1 ? 2 : 1).url;
      const consumers: Promise<void>[] = [];
      for (const [history, mode] of [
        [shared, 'shared'],
        [shared, 'shared'],
        [keyShared, 'key_shared'],
        [keyShared, 'key_shared'],
      ] as const) {
        const transport = await clusterTransport(anyUrl);
        transports.push(transport);
        consumers.push(
          consume(
            transport,
            history,
            mode,
            settings,
            () => produced,
            () => stop,
          ),
        );
      }
      /** Waits until each group has `more` acks answered settled beyond what it had at the call. */
      const progress = async (what: string, more: number): Promise<void> => {
        const from = [shared.settledAt.size, keyShared.settledAt.size];
        await waitFor(
          `${more} more acked in each group ${what}`,
          async () =>
            shared.settledAt.size >= from[0]! + more && keyShared.settledAt.size >= from[1]! + more
              ? true
              : undefined,
          30_000,
        );
      };

      // 1. A data partition read remotely loses its leader: it moves (to the queue service's broker:
      //    read locally from then on, or to the third: remote still). Then the broker comes back.
      await progress('at the start', milestone);
      const moved = dataLeaders.findIndex((leader) => leader !== queueLeader);
      const movedFrom = dataLeaders[moved]!;
      await cluster.kill(movedFrom);
      const movedTo = await leaderOf(topic, moved, movedFrom);
      await progress(`after ${topic}/${moved} moved from broker ${movedFrom} to ${movedTo}`, milestone);
      await cluster.restart(movedFrom);
      for (const name of [topic, '__queue_state']) await cluster.waitLeadable(name, 2);

      // 2. SIGKILL of the queue service's broker, amid a backlog being acked at full speed (acks and
      //    deliveries in flight, and recent acks only just replicated).
      await progress('before the queue service fails', milestone);
      await send(backlog);
      await progress('in the backlog', milestone);
      await cluster.kill(queueLeader);
      const newQueueLeader = await leaderOf('__queue_state', 0, queueLeader);
      await progress('after the queue service failed over', milestone);
      producing = false;
      await producing$;
      await producer.close();

      const poison = [...produced.entries()].filter(([, one]) => one.value.startsWith('poison'));
      const plain = [...produced.keys()].filter((id) => !produced.get(id)!.value.startsWith('poison'));
      const describer = await clusterTransport(cluster.broker(newQueueLeader).url);
      transports.push(describer);
      await waitFor(
        'every message acked in both groups and every partition settled',
        async () => {
          if (plain.some((id) => !shared.ackSent.has(id))) return undefined;
          if ([...produced.keys()].some((id) => !keyShared.ackSent.has(id))) return undefined;
          const lags = [await lagOf(describer, 'sh'), await lagOf(describer, 'ks')];
          return lags.every(
            (lag) => lag !== undefined && lag.length === partitionCount && lag.every((n) => n === 0),
          )
            ? true
            : undefined;
        },
        40_000,
      );
      stop = true;
      await Promise.all(consumers);

      // Dead letters: every poison message, from the shared group, in the topic led by another broker.
      const dlq = await waitFor('every poison message dead-lettered', async () => {
        const read = await readDecoded(
          cluster.broker(await leaderOf(deadLetterTopic!)).url,
          deadLetterTopic!,
          0,
        ).catch(() => undefined);
        const found = new Set(
          read?.records.map((record) => {
            const header = (name: string) =>
              Buffer.from(record.headers.find(([one]) => one === name)?.[1] ?? []).toString();
            return at(Number(header('spillway-dlq-partition')), Number(header('spillway-dlq-offset')));
          }),
        );
        return poison.every(([id]) => found.has(id)) ? found : undefined;
      });
      // A produce resent after a leader change may be written twice (at least once): more copies then.
      expect(dlq.size).toBeGreaterThanOrEqual(poison.length);
      expect(poison.length).toBeGreaterThan(0);
      for (const [id] of poison)
        expect(shared.delivered.get(id), `${id} delivered maxDeliveries times`).toBeGreaterThanOrEqual(3);

      expect(shared.redeliveredAfterAck, 'shared: nothing acked is delivered again').toEqual([]);
      expect(keyShared.redeliveredAfterAck, 'key_shared: nothing acked is delivered again').toEqual([]);
      expect(keyShared.orderViolations, 'key_shared: per-key order').toEqual([]);

      // A topic the queue service's broker holds no replica of: read remotely, partition count from etcd.
      // Created now on the live broker that is not the queue service's (the killed one is still down).
      const third = [1, 2, 3].find((id) => id !== newQueueLeader && id !== queueLeader)!;
      await waitFor(`broker ${queueLeader}'s registration gone`, async () =>
        (await cluster.registered()).includes(queueLeader) ? undefined : true,
      );
      const solo = nameLedBy('solo', third, [third, newQueueLeader], 1);
      await cluster.createTopic(solo, {
        partitions: 1,
        replicationFactor: 1,
        minInSyncReplicas: 1,
        config: { durability: 'interval' },
      });
      const [soloRecord] = await cluster.waitLeadable(solo, 1);
      expect(soloRecord!.replicas, `${solo} is on broker ${third} only`).toEqual([third]);
      const soloClient = await Spillway.connect(cluster.broker(newQueueLeader).url, { clientId: 'q-solo' });
      producers.push(soloClient);
      const soloProducer = soloClient.producer({ acks: 'all', lingerMs: 2 });
      await Promise.all(Array.from({ length: 20 }, (_, n) => soloProducer.send(solo, { value: `s-${n}` })));
      await soloProducer.close();
      const soloConsumer = soloClient.consumer({
        group: 'solo',
        topics: [solo],
        mode: 'shared',
        maxWaitMs: 200,
      });
      const soloValues: string[] = [];
      for await (const message of soloConsumer) {
        soloValues.push(Buffer.from(message.value ?? []).toString());
        await message.ack();
        if (soloValues.length === 20) break;
      }
      expect(soloValues.sort()).toEqual(Array.from({ length: 20 }, (_, n) => `s-${n}`).sort());
      // The run went through the failover: acks answered before it, and deliveries after it.
      expect(shared.settledAt.size).toBeGreaterThan(milestone * 5);
      console.log(
        `queues: ${topic}/${moved} moved from ${movedFrom} to ${movedTo}; queue leader ${queueLeader} killed, ${newQueueLeader} took over; data leaders ${dataLeaders}; ` +
          `${produced.size} produced (${poison.length} poison); deliveries sh ${[...shared.delivered.values()].reduce((a, b) => a + b, 0)} ` +
          `ks ${[...keyShared.delivered.values()].reduce((a, b) => a + b, 0)}; receive errors sh ${shared.errors} ks ${keyShared.errors}`,
      );
    } catch (error) {
      for (const id of cluster.ids) console.log(`--- broker ${id}\n${cluster.logTail(id, 30)}`);
      throw error;
    } finally {
      for (const transport of transports) await transport.close().catch(() => undefined);
      for (const sw of producers) await sw.close().catch(() => undefined);
    }
  }, 120_000);
});
