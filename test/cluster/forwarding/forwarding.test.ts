/**
 * Forwarding (src/cluster/forwarding/): a service on one broker appends into, and scans, data
 * partitions other brokers lead. Three brokers in one process on a real etcd (~8 s with the start):
 * appends to partitions led elsewhere and locally (shortcut) with acks 'all'; a resend recognised
 * by the leader and, after the leader leaves, by its successor (state rebuilt from the batch headers);
 * a deposed term fenced by a newer term's scan (on the leader that saw it, and on a new leader that
 * only has the newer term's batch); the scan returns the service's batches only, from an offset,
 * in several answers; the waiting queue is bounded and closing rejects what waits.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { freePort } from '../../../bench/peers/server-process.js';
import { WebSocketTransport } from '../../../src/client/websocket-transport.js';
import { ForwardTarget } from '../../../src/cluster/forwarding/forward-target.js';
import { Forwarder } from '../../../src/cluster/forwarding/forwarder.js';
import {
  forwardingProducerId,
  forwardingProducerIds,
} from '../../../src/cluster/forwarding/forwarding-services.js';
import type { ServiceTerm } from '../../../src/cluster/state-services/followed-services.js';
import { decodeRecords, encodeBatch } from '../../../src/format/record-batch.js';
import { forwardQueuedMax, serviceProducerIdMin } from '../../../src/limits.js';
import { Opcode } from '../../../src/protocol/opcodes.js';
import { Broker } from '../../../src/spillway-broker.js';
import { etcdMissing, etcdSkipReason, startEtcd, type TestEtcd } from '../etcd-server.js';

const waitBoundMs = 30_000;

async function waitFor<T>(what: string, probe: () => T | undefined): Promise<T> {
  const deadline = Date.now() + waitBoundMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

interface Member {
  id: number;
  broker: Broker;
}

const term = (fence: number): ServiceTerm => ({ service: 'delay', epochs: [fence], fence });
const batchOf = (...values: string[]): Uint8Array =>
  encodeBatch(values.map((value) => ({ value, headers: { 'sw-delay-ref': value } })));

/** The values stored in topic/partition of `member` (up to its log end). */
function storedValues(member: Member, topic: string, partition: number): string[] {
  const log = member.broker.topics.partitionOf(topic, partition).log;
  const values: string[] = [];
  let offset = log.logStartOffset;
  while (offset < log.logEndOffset) {
    const read = log.read(offset, 1 << 20);
    if (read.batchCount === 0) break;
    let position = 0;
    for (let index = 0; index < read.batchCount; index++) {
      const length = new DataView(read.bytes.buffer, read.bytes.byteOffset + position + 8, 4).getInt32(
        0,
        true,
      );
      for (const record of decodeRecords(read.bytes, position)) {
        values.push(Buffer.from(record.value ?? new Uint8Array()).toString());
      }
      position += length;
    }
    offset = read.nextOffset;
  }
  return values;
}

let directory: string;
beforeAll(() => {
  directory = mkdtempSync(join(tmpdir(), 'spillway-forwarding-'));
});
afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

describe.skipIf(etcdMissing)(`forwarding between brokers (skipped if ${etcdSkipReason})`, () => {
  let etcd: TestEtcd;
  const members: Member[] = [];
  beforeAll(async () => {
    etcd = await startEtcd();
    for (const id of [1, 2, 3]) {
      const port = await freePort();
      const url = `ws://127.0.0.1:${port}`;
      const broker = await Broker.open({
        dataDir: join(directory, `broker-${id}`),
        durability: 'interval',
        cluster: {
          etcd: etcd.url,
          brokerId: id,
          advertise: url,
          name: 'fwd',
          sessionTimeoutMs: 1000,
          log: () => {},
        },
      });
      await broker.listen({ host: '127.0.0.1', port });
      members.push({ id, broker });
    }
    for (const [topic, partitions] of [
      ['orders', 3],
      ['scans', 1],
      ['moves', 1],
    ] as const) {
      await members[0]!.broker.cluster!.node.admin.createTopic(topic, {
        partitions,
        replicationFactor: 3,
        minInSyncReplicas: 2,
        config: { durability: 'interval' },
      });
    }
  });
  afterAll(async () => {
    for (const member of members) await member.broker.close().catch(() => undefined);
    await etcd?.close();
  });

  /** The leader of orders/partition once every member knows it with a full ISR, and a member not leading it. */
  async function placed(topic: string, partition: number): Promise<{ leader: Member; other: Member }> {
    const leaderId = await waitFor(`${topic}/${partition} placed`, () => {
      const views = members.map((m) => m.broker.cluster!.node.topicView(topic)?.partitions[partition]);
      const first = views[0];
      if (first === undefined || first.isr.length < members.length) return undefined;
      const applied = members.every(
        (m) =>
          m.broker.cluster!.node.appliedAssignments().get(`${topic}/${partition}`)?.leaderEpoch ===
          first.leaderEpoch,
      );
      return applied && views.every((view) => view?.leaderId === first.leaderId) ? first.leaderId : undefined;
    });
    const leader = members.find((m) => m.id === leaderId)!;
    return { leader, other: members.find((m) => m !== leader)! };
  }

  test('appends into a partition another broker leads, and locally; a resend is recognised', async () => {
    const leaders = await Promise.all(
      [0, 1, 2].map(async (partition) => (await placed('orders', partition)).leader),
    );
    // A broker leading one partition and not partition `remoteIndex`.
    const source = leaders.find((member, index) => leaders.some((l, i) => i !== index && l !== member))!;
    const localIndex = leaders.indexOf(source);
    const remoteIndex = leaders.findIndex((member) => member !== source);
    const forwarder = source.broker.cluster!.forwarding.forwarder(term(3));
    const first = await forwarder.append('orders', remoteIndex, batchOf('a', 'b'));
    const second = await forwarder.append('orders', remoteIndex, batchOf('c'));
    expect(second.baseOffset).toBe(first.lastOffset + 1);
    // The local shortcut: a partition this broker leads, its own sequence.
    await forwarder.append('orders', localIndex, batchOf('d'));
    const remoteLeader = leaders[remoteIndex]!;
    expect(storedValues(remoteLeader, 'orders', remoteIndex)).toEqual(['a', 'b', 'c']);
    // acks 'all': on the followers too (the source follows the remote partition).
    expect(storedValues(source, 'orders', remoteIndex)).toEqual(['a', 'b', 'c']);
    expect(storedValues(source, 'orders', localIndex)).toEqual(['d']);
    // A resend of the first batch as the forwarder stamped it (a lost answer): its first offsets.
    const resend = encodeBatch(
      ['a', 'b'].map((value) => ({ value, headers: { 'sw-delay-ref': value } })),
      { producerId: forwardingProducerId('delay'), producerEpoch: 3, baseSequence: 0 },
    );
    const again = await remoteLeader.broker.cluster!.forwarding.target.forwardProduce(
      { service: 'delay', fence: 3, topic: 'orders', partition: remoteIndex },
      resend,
    );
    expect(again).toMatchObject({ baseOffset: first.baseOffset, lastOffset: first.lastOffset });
    expect(storedValues(remoteLeader, 'orders', remoteIndex)).toEqual(['a', 'b', 'c']);
    forwarder.close('done');
  });

  test('a scan fences older terms; it returns the service batches only, from an offset, in pieces', async () => {
    const { leader, other } = await placed('scans', 0);
    await leader.broker.messages.produce('scans', 0, encodeBatch([{ value: 'first' }]), { acks: 'all' });
    const older = other.broker.cluster!.forwarding.forwarder(term(5));
    await older.append('scans', 0, batchOf('x1'));
    // Another producer's batch in between (not the service's).
    await leader.broker.messages.produce('scans', 0, encodeBatch([{ value: 'plain' }]), { acks: 'all' });
    await older.append('scans', 0, batchOf('x2', 'x3'));
    const newer = members.find((m) => m !== other)!.broker.cluster!.forwarding.forwarder(term(6));
    const found: string[] = [];
    const end = await newer.scan('scans', 0, 0, (batch) => {
      for (const record of decodeRecords(batch)) found.push(Buffer.from(record.value!).toString());
    });
    expect(found).toEqual(['x1', 'x2', 'x3']);
    expect(end).toBe(5);
    expect(await newer.logEnd('scans', 0)).toBe(5);
    // From an offset, one batch per answer (the receiver's bound on matching bytes).
    const pieces = await leader.broker.cluster!.forwarding.target.forwardScan({
      service: 'delay',
      fence: 6,
      topic: 'scans',
      partition: 0,
      fromOffset: 0,
      maxBytes: 1,
    });
    // x1 (offset 1) alone; the next answer starts at x2's batch (offset 3).
    expect([pieces.nextOffset, decodeRecords(pieces.batches).next().value?.offset]).toEqual([3, 1]);
    const rest = await leader.broker.cluster!.forwarding.target.forwardScan({
      service: 'delay',
      fence: 6,
      topic: 'scans',
      partition: 0,
      fromOffset: 3,
      maxBytes: 1 << 20,
    });
    expect([rest.nextOffset, rest.endOffset]).toEqual([5, 5]);
    expect(decodeRecords(rest.batches).next().value?.offset).toBe(3);
    // The deposed term: refused, and the forwarder is closed for good.
    await expect(older.append('scans', 0, batchOf('late'))).rejects.toMatchObject({
      code: 'SERVICE_FENCED',
    });
    expect(older.closed).toBe(true);
    await expect(older.append('scans', 0, batchOf('later'))).rejects.toMatchObject({
      code: 'SERVICE_FENCED',
    });
    expect(storedValues(leader, 'scans', 0)).toEqual(['first', 'x1', 'plain', 'x2', 'x3']);
    newer.close('done');
  });

  test('after the leader leaves, its successor recognises a resend and fences an older term from the log', async () => {
    const { leader, other } = await placed('moves', 0);
    const source = members.find((m) => m !== leader && m !== other) ?? other;
    const forwarder = source.broker.cluster!.forwarding.forwarder(term(9));
    const batch = batchOf('p', 'q');
    const first = await forwarder.append('moves', 0, batch);
    // The leader leaves; the same batch (same stamp) sent to the successor: recognised from its log.
    const successors = members.filter((m) => m !== leader);
    await leader.broker.close();
    members.splice(members.indexOf(leader), 1);
    const answer = await waitFor('a new leader of moves/0', () =>
      successors.find((m) => m.broker.cluster!.node.appliedAssignments().get('moves/0')?.leaderId === m.id),
    );
    let result: unknown;
    for (const deadline = Date.now() + waitBoundMs; ; ) {
      // The data plane takes the leadership a moment after the assignment is recorded: NOT_LEADER until then.
      result = await answer.broker
        .cluster!.forwarding.target.forwardProduce(
          { service: 'delay', fence: 9, topic: 'moves', partition: 0 },
          batch,
        )
        .catch((error: unknown) => error);
      if ((result as { code?: string }).code !== 'NOT_LEADER' || Date.now() > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(result).toMatchObject({ baseOffset: first.baseOffset, lastOffset: first.lastOffset });
    // An older term on a leader that never saw the newer one in a request (a receiver with no memory
    // of it: a new ForwardTarget on the same broker): the newer term's batch in the log fences it.
    const forgetful = new ForwardTarget(answer.broker);
    const stale = encodeBatch([{ value: 'stale' }], {
      producerId: forwardingProducerId('delay'),
      producerEpoch: 8,
      baseSequence: 0,
    });
    await expect(
      forgetful.forwardProduce({ service: 'delay', fence: 8, topic: 'moves', partition: 0 }, stale),
    ).rejects.toMatchObject({ code: 'SERVICE_FENCED' });
    expect(storedValues(answer, 'moves', 0)).toEqual(['p', 'q']);
    forwarder.close('done');
  });

  test('a client PRODUCE under a service producer id is refused in a cluster; every service id is reserved', async () => {
    for (const id of forwardingProducerIds.values()) expect(id).toBeGreaterThanOrEqual(serviceProducerIdMin);
    const { leader } = await placed('orders', 0);
    const url = leader.broker.cluster!.node.endpoints.get(leader.id)!.url;
    const transport = await WebSocketTransport.connect(url, { clientId: 'forger' });
    try {
      const forged = encodeBatch([{ value: 'forged' }], {
        producerId: forwardingProducerId('delay'),
        producerEpoch: 32_000,
        baseSequence: 0,
      });
      await expect(
        transport.request(Opcode.produce, { topic: 'orders', partition: 0 }, forged),
      ).rejects.toMatchObject({
        code: 'INVALID_BATCH',
      });
    } finally {
      await transport.close();
    }
  });

  test('the waiting queue is bounded; closing rejects everything waiting', async () => {
    const source = members[0]!;
    // No route to the partition (a topic the cluster does not know): nothing completes.
    const forwarder = new Forwarder({
      service: 'delay',
      fence: 1,
      brokerId: source.id,
      local: source.broker.cluster!.forwarding.target,
      route: () => undefined,
      connect: () => Promise.reject(new Error('unused')),
    });
    const pending: Promise<unknown>[] = [];
    for (let index = 0; index < forwardQueuedMax; index++) {
      pending.push(forwarder.append('nowhere', 0, batchOf(`${index}`)).catch((error: unknown) => error));
    }
    await expect(forwarder.append('nowhere', 0, batchOf('one more'))).rejects.toMatchObject({
      code: 'TOO_MANY_REQUESTS',
    });
    forwarder.close('the term ended');
    const errors = await Promise.all(pending);
    expect(errors.every((error) => (error as { code?: string }).code === 'SERVICE_FENCED')).toBe(true);
  });
});
