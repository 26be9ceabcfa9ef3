/**
 * The cluster tests' fixture: what every test/cluster/*.test.ts sets up, in one place.
 *
 * - `useEtcd()`: a private test etcd (etcd-server.ts) for the enclosing describe: started in its
 *   beforeAll, and in its afterAll whatever was registered with `onClose` is closed (last first),
 *   then etcd. Call it inside a `describe.skipIf(etcdMissing)`: nothing starts when etcd is missing.
 * - `useClusterProcesses(options)`: the same plus a ClusterProcesses (cluster-processes.ts: real
 *   `spillway broker --cluster` processes, their logs, kill/stop/restart/isolate) started once etcd
 *   is up; closed before etcd. `SPILLWAY_CLUSTER_KEEP=1` keeps the brokers' data and logs (printed).
 * - `InProcessCluster.start(...)`: brokers in this process (`Broker.open({ cluster })`, the default
 *   wiring), each listening on a free loopback port, opened one after the other.
 *
 * Waiting: harness/wait-for.ts (`waitFor`); where METADATA places a partition: harness/placement.ts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { Broker } from '../../../src/spillway-broker.js';
import { freePort } from '../../cli/cli-process.js';
import { startEtcd, type TestEtcd } from '../etcd-server.js';
import { ClusterProcesses, type ClusterProcessesOptions } from './cluster-processes.js';

type Closer = () => Promise<void> | void;

export interface EtcdFixture {
  /** The suite's etcd (set once its beforeAll ran). */
  readonly etcd: TestEtcd;
  /** Closes `close` in the afterAll, before etcd (registered last, closed first). */
  onClose(close: Closer): void;
}

/** Bound of the beforeAll that starts etcd (and brokers): a loaded 2-core CI starts a cluster in ~10 s. */
const startBoundMs = 90_000;

export function useEtcd(): EtcdFixture {
  let etcd: TestEtcd | undefined;
  const closers: Closer[] = [];
  beforeAll(async () => {
    etcd = await startEtcd();
  }, startBoundMs);
  afterAll(async () => {
    for (const close of closers.reverse())
      await Promise.resolve()
        .then(close)
        .catch(() => undefined);
    await etcd?.close();
  });
  return {
    get etcd(): TestEtcd {
      if (etcd === undefined)
        throw new Error('etcd is not started (useEtcd outside a describe, or before its beforeAll)');
      return etcd;
    },
    onClose: (close) => {
      closers.push(close);
    },
  };
}

export interface ClusterFixture extends EtcdFixture {
  /** The suite's broker processes (set once its beforeAll ran). */
  readonly cluster: ClusterProcesses;
}

export function useClusterProcesses(options: Omit<ClusterProcessesOptions, 'etcd'>): ClusterFixture {
  const fixture = useEtcd();
  let cluster: ClusterProcesses | undefined;
  beforeAll(async () => {
    cluster = await ClusterProcesses.start({ ...options, etcd: fixture.etcd });
    fixture.onClose(async () => {
      const keep = process.env['SPILLWAY_CLUSTER_KEEP'] === '1';
      if (keep) console.log(`cluster data and logs kept in ${cluster!.directory}`);
      await cluster!.close({ keepDirectory: keep });
    });
  }, startBoundMs);
  return {
    get etcd(): TestEtcd {
      return fixture.etcd;
    },
    get cluster(): ClusterProcesses {
      if (cluster === undefined) throw new Error('the cluster is not started');
      return cluster;
    },
    onClose: fixture.onClose,
  };
}

export interface InProcessMember {
  id: number;
  broker: Broker;
  url: string;
}

export interface InProcessClusterOptions {
  etcd: TestEtcd;
  brokerIds: readonly number[];
  /** Keys under /spillway/<name>/. */
  name: string;
  durability: 'none' | 'interval' | 'always';
  /** Default 1000. */
  sessionTimeoutMs?: number;
}

export class InProcessCluster {
  readonly members: InProcessMember[] = [];

  private constructor(readonly directory: string) {}

  /** Opens the brokers one after the other (each joined the cluster and listens before the next). */
  static async start(options: InProcessClusterOptions): Promise<InProcessCluster> {
    const cluster = new InProcessCluster(mkdtempSync(join(tmpdir(), `spillway-${options.name}-`)));
    try {
      for (const id of options.brokerIds) {
        const port = await freePort();
        const url = `ws://127.0.0.1:${port}`;
        const broker = await Broker.open({
          dataDir: join(cluster.directory, `broker-${id}`),
          durability: options.durability,
          cluster: {
            etcd: options.etcd.url,
            brokerId: id,
            advertise: url,
            name: options.name,
            sessionTimeoutMs: options.sessionTimeoutMs ?? 1000,
            log: () => {},
          },
        });
        await broker.listen({ host: '127.0.0.1', port });
        cluster.members.push({ id, broker, url });
      }
    } catch (error) {
      await cluster.close();
      throw error;
    }
    return cluster;
  }

  member(id: number): InProcessMember {
    const member = this.members.find((m) => m.id === id);
    if (member === undefined) throw new Error(`no broker ${id} (or it left)`);
    return member;
  }

  /** Closes one broker (its etcd session revoked: it leaves at once) and forgets it. */
  async leave(member: InProcessMember): Promise<void> {
    this.members.splice(this.members.indexOf(member), 1);
    await member.broker.close();
  }

  /** Closes every broker still open and removes the data. */
  async close(): Promise<void> {
    for (const member of this.members.splice(0)) await member.broker.close().catch(() => undefined);
    rmSync(this.directory, { recursive: true, force: true });
  }
}
