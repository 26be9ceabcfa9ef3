/**
 * A cluster whose brokers run with authentication (docs/CLUSTER-REPLICATION.md "Errors and retries
 * of a follower"): followers present `cluster.token` (`spillway broker --cluster-token-file`) to
 * their leaders, a principal holding cluster `admin`. Two brokers on a real etcd, RF 2 with
 * minInSyncReplicas 2, so an `acks: 'all'` produce is acknowledged only once the follower copied it
 * through the authenticated REPLICA_FETCH; a follower without a token (or with a token lacking
 * cluster admin) could not, and the produce would fail. `spillway broker` refuses `--cluster` with
 * `--auth-file` but no cluster token (exit 2).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { freePort } from '../../bench/peers/server-process.js';
import { Spillway } from '../../src/client/index.js';
import { parseAuthConfig } from '../../src/server/auth/auth-file.js';
import { hashSecret, newToken, splitToken } from '../../src/server/auth/token-hash.js';
import { Broker } from '../../src/spillway-broker.js';
import { readAll } from '../broker/helpers.js';
import { ensureBuilt, runCli } from '../cli/cli-process.js';
import { etcdMissing, etcdSkipReason, startEtcd, type TestEtcd } from './etcd-server.js';

let directory: string;
beforeAll(() => {
  directory = mkdtempSync(join(tmpdir(), 'spillway-cluster-auth-'));
});
afterAll(() => {
  rmSync(directory, { recursive: true, force: true });
});

async function principal(name: string, allow: unknown[]): Promise<{ token: string; entry: unknown }> {
  const token = newToken(name);
  return { token, entry: { name, tokenHash: await hashSecret(splitToken(token)!.secret), allow } };
}

describe('spillway broker --cluster with --auth-file', () => {
  beforeAll(() => ensureBuilt());
  test('needs a cluster token (exit 2), and --cluster-token-file goes with --cluster', async () => {
    const authFile = join(directory, 'auth-cli.json');
    writeFileSync(authFile, JSON.stringify({ principals: [] }));
    const missing = await runCli([
      'broker',
      '--data-dir',
      join(directory, 'cli'),
      '--auth-file',
      authFile,
      '--cluster',
      'etcd://127.0.0.1:2379',
      '--broker-id',
      '1',
    ]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/needs --cluster-token-file/);
    const alone = await runCli([
      'broker',
      '--data-dir',
      join(directory, 'cli'),
      '--cluster-token-file',
      authFile,
    ]);
    expect(alone.code).toBe(2);
    expect(alone.stderr).toMatch(/go with --cluster/);
  });
});

describe.skipIf(etcdMissing)(`followers authenticate to their leader (skipped if ${etcdSkipReason})`, () => {
  let etcd: TestEtcd;
  const brokers: Broker[] = [];
  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    for (const broker of brokers) await broker.close().catch(() => undefined);
    await etcd?.close();
  });

  test('acks all on RF 2 / minISR 2 is acknowledged through authenticated replica fetches', async () => {
    const replica = await principal('replica', [{ resource: 'cluster', name: '*', operations: ['admin'] }]);
    const app = await principal('app', [
      { resource: 'topic', name: 'orders', operations: ['produce', 'consume', 'describe'] },
      { resource: 'cluster', name: '*', operations: ['describe'] },
    ]);
    const auth = parseAuthConfig({ principals: [replica.entry, app.entry] }, 'test');
    const urls: string[] = [];
    for (const id of [1, 2]) {
      const port = await freePort();
      const url = `ws://127.0.0.1:${port}`;
      const broker = await Broker.open({
        dataDir: join(directory, `broker-${id}`),
        cluster: {
          etcd: etcd.url,
          brokerId: id,
          advertise: url,
          name: 'auth',
          sessionTimeoutMs: 1000,
          token: replica.token,
          log: () => {},
        },
      });
      brokers.push(broker);
      await broker.listen({ host: '127.0.0.1', port, auth });
      urls.push(url);
    }
    await brokers[0]!.cluster!.node.admin.createTopic('orders', {
      partitions: 1,
      replicationFactor: 2,
      minInSyncReplicas: 2,
    });
    const probe = await Spillway.connect(urls[0]!, { token: app.token });
    let leaderId = -1;
    for (let i = 0; i < 400 && leaderId < 0; i++) {
      const metadata = await probe.admin.metadata(['orders']);
      const partition = metadata.partitions.find((p) => p.topic === 'orders');
      if (partition !== undefined && partition.leaderId > 0 && partition.isr.length === 2) {
        leaderId = partition.leaderId;
      } else await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await probe.close();
    expect(leaderId).toBeGreaterThan(0);
    const leaderUrl = urls[leaderId - 1]!;
    const sw = await Spillway.connect(leaderUrl, { token: app.token });
    const producer = sw.producer({ acks: 'all' });
    const values = Array.from({ length: 20 }, (_, i) => `m${i}`);
    for (const value of values) await producer.send('orders', { value, partition: 0 });
    await sw.close();
    const follower = brokers[leaderId === 1 ? 1 : 0]!;
    expect(await readAll(follower, 'orders', 0)).toEqual(values);
  }, 60_000);
});
