/**
 * A lost internal state log is told from a new one: `__metadata` registers every state log the broker
 * created, so an empty or missing `__consumer_offsets` / `__queue_state` later refuses the open with
 * CORRUPT_LOG (instead of silently forgetting committed offsets), unless the operator asks for it to
 * start empty (resetStateLogs), which the open report then says.
 */
import { readdirSync, rmSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { BrokerEngine } from '../../../src/broker/broker-engine.js';
import { BrokerCluster } from '../../../src/cluster/control/broker-cluster.js';
import { CorruptLogError } from '../../../src/errors.js';
import type { Broker } from '../../../src/spillway-broker.js';
import { batchOf, openBroker, rejectedCode, temporaryDirectory } from '../helpers.js';

async function withCommittedOffset(dataDir: string): Promise<void> {
  const broker = await openBroker(dataDir);
  try {
    await broker.topics.create('t', {});
    await broker.messages.produce('t', 0, batchOf('m', 3));
    const session = broker.sessions.open({ kind: 'in-process', transport: null, clientId: 'c' });
    const view = await broker.groups.join(session, { group: 'g', topics: ['t'], mode: 'group' });
    await broker.groups.commit(session, {
      group: 'g',
      memberId: view.memberId,
      offsets: [{ topic: 't', partition: 0, offset: 2 }],
    });
  } finally {
    await broker.close();
  }
}

function committed(broker: Broker): number | null | 'unknown group' {
  if (!broker.groups.list().some((group) => group.group === 'g')) return 'unknown group';
  const group = broker.groups.describe('g');
  return group.partitions.find((p) => p.topic === 't' && p.partition === 0)?.committed ?? null;
}

describe('state log guard', () => {
  test('a fresh data directory opens, and opens again, without findings about state logs', async () => {
    const dataDir = temporaryDirectory();
    for (let i = 0; i < 2; i++) {
      const broker = await openBroker(dataDir);
      expect(broker.openReport.findings.filter((f) => f.what.includes('state log'))).toEqual([]);
      await broker.close();
    }
  });

  test('a deleted __consumer_offsets directory refuses the open, naming it and the way out', async () => {
    const dataDir = temporaryDirectory();
    await withCommittedOffset(dataDir);
    rmSync(join(dataDir, 'topics', '__consumer_offsets'), { recursive: true });
    const error = await openBroker(dataDir).then(
      async (broker) => {
        await broker.close();
        return null;
      },
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(CorruptLogError);
    expect((error as Error).message).toContain('__consumer_offsets');
    expect((error as Error).message).toContain('--reset-state-log __consumer_offsets');
  });

  test('a cluster member leaves the state logs the cluster wiring hands down unguarded, and only those', async () => {
    const dataDir = temporaryDirectory();
    await withCommittedOffset(dataDir);
    rmSync(join(dataDir, 'topics', '__consumer_offsets'), { recursive: true });
    const cluster = { etcd: 'etcd://127.0.0.1:1', brokerId: 1, advertise: 'ws://127.0.0.1:1' };
    // The engine keeps no list of its own: a member told of no replicated log guards them all.
    expect(await rejectedCode(BrokerEngine.open({ dataDir, durability: 'none', cluster }))).toBe(
      'CORRUPT_LOG',
    );
    // The list Broker.open hands down (every topic of replicatedStateServices): not guarded.
    expect(BrokerCluster.replicatedStateLogs).toEqual(
      expect.arrayContaining(['__consumer_offsets', '__transactions', '__delay_state']),
    );
    const engine = await BrokerEngine.open({
      dataDir,
      durability: 'none',
      cluster: { ...cluster, replicatedStateLogs: BrokerCluster.replicatedStateLogs },
    });
    await engine.close();
  });

  test('an emptied __queue_state (segment files gone) is refused too', async () => {
    const dataDir = temporaryDirectory();
    await withCommittedOffset(dataDir);
    const directory = join(dataDir, 'topics', '__queue_state', '0');
    for (const file of readdirSync(directory)) unlinkSync(join(directory, file));
    expect(await rejectedCode(openBroker(dataDir))).toBe('CORRUPT_LOG');
  });

  test('resetStateLogs starts the lost log empty, reports it, and later opens need nothing', async () => {
    const dataDir = temporaryDirectory();
    await withCommittedOffset(dataDir);
    let broker = await openBroker(dataDir);
    expect(committed(broker)).toBe(2);
    await broker.close();
    rmSync(join(dataDir, 'topics', '__consumer_offsets'), { recursive: true });
    broker = await openBroker(dataDir, { resetStateLogs: ['__consumer_offsets'] });
    const finding = broker.openReport.findings.find((f) => f.what.includes('__consumer_offsets'));
    expect(finding?.severity).toBe('warning');
    expect(finding?.what).toContain('started afresh');
    expect(committed(broker)).toBe('unknown group');
    await broker.close();
    broker = await openBroker(dataDir);
    expect(broker.openReport.findings.filter((f) => f.what.includes('state log'))).toEqual([]);
    await broker.close();
  });

  test('resetStateLogs refuses names that are not resettable state logs', async () => {
    expect(await rejectedCode(openBroker(temporaryDirectory(), { resetStateLogs: ['__metadata'] }))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(await rejectedCode(openBroker(temporaryDirectory(), { resetStateLogs: ['orders'] }))).toBe(
      'INVALID_ARGUMENT',
    );
  });
});
