/**
 * A cluster of real `spillway broker --cluster ...` processes (dist/src/cli/main.js) on loopback and
 * a test etcd, for the failure tests of issue 14. Each broker has its own data directory and port,
 * kept across restarts; its output goes to `broker-<id>.log` in the cluster's directory (quoted by
 * `logTail` when a test fails). Brokers are signalled by PID only: `kill` (SIGKILL), `stop` (SIGSTOP),
 * `cont` (SIGCONT), `restart` (after the old session's registration is gone, so the new process is
 * not refused BROKER_ID_IN_USE).
 *
 * `proxied` brokers are reached only through TcpProxy instances: the broker advertises its proxy's
 * address (so other brokers and METADATA-routed clients go through it) and reaches etcd through a
 * second proxy; `isolate(id)` blackholes both, `heal(id)` restores them (a network partition).
 *
 * The harness reads and writes etcd itself (etcd3 client, ClusterAdmin): topics are created there,
 * as the broker's CREATE_TOPIC does not go through the cluster yet.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3, type Namespace, type Watcher } from 'etcd3';
import { Spillway } from '../../../src/client/index.js';
import { ClusterAdmin, type ClusterTopicConfig } from '../../../src/cluster/control/cluster-admin.js';
import {
  brokerKey,
  clusterNamespace,
  controllerKey,
  decodeController,
  decodePartition,
  noLeader,
  type PartitionRecord,
  parseKey,
} from '../../../src/cluster/control/cluster-records.js';
import { cliPath, ensureBuilt, freePort } from '../../cli/cli-process.js';
import type { TestEtcd } from '../etcd-server.js';
import { TcpProxy } from './tcp-proxy.js';
import { waitFor, whenBrokersLive } from './wait-for.js';

export interface ClusterProcessesOptions {
  etcd: TestEtcd;
  /** Broker ids, e.g. [1, 2, 3]. */
  brokerIds: readonly number[];
  /** Keys under /spillway/<name>/: one name per test cluster sharing an etcd. */
  name: string;
  /** Default 1000 (the minimum). */
  sessionTimeoutMs?: number;
  /** Default 'always'. */
  durability?: 'none' | 'interval' | 'always';
  /** Brokers reached only through proxies (see isolate/heal). */
  proxied?: readonly number[];
  /** More keys of every broker's config file (e.g. `delaySegmentBytes`). */
  config?: Readonly<Record<string, number | string>>;
}

export interface BrokerProcess {
  readonly id: number;
  readonly port: number;
  /** What it advertises (its proxy's address when proxied). */
  readonly url: string;
  /** Its own listening address, bypassing any proxy. */
  readonly directUrl: string;
  readonly directory: string;
  readonly logFile: string;
  process: ChildProcess | undefined;
  /** SIGSTOPped and not resumed. */
  stopped: boolean;
  starts: number;
}

const startTimeoutMs = 30_000;

/** The harness's wait (harness/wait-for.ts), kept importable from here. */
export { waitFor } from './wait-for.js';

export class ClusterProcesses {
  readonly etcdClient: Etcd3;
  readonly namespace: Namespace;
  readonly admin: ClusterAdmin;
  private readonly brokers = new Map<number, BrokerProcess>();
  private readonly brokerProxies = new Map<number, TcpProxy>();
  private readonly etcdProxies = new Map<number, TcpProxy>();
  /** Every version of every partition key, in revision order (an etcd watch from the start). */
  readonly partitionVersions = new Map<string, PartitionRecord[]>();
  private watcher: Watcher | undefined;
  /** How long each broker start took, spawn to listening (registered in etcd), in ms. */
  readonly startDurations: number[] = [];

  private constructor(
    private readonly options: ClusterProcessesOptions,
    readonly directory: string,
  ) {
    this.etcdClient = new Etcd3({ hosts: options.etcd.clientUrl });
    this.namespace = this.etcdClient.namespace(clusterNamespace(options.name));
    this.admin = new ClusterAdmin(this.namespace);
  }

  /** Builds dist/ if stale, starts every broker (in parallel) and waits until each is registered. */
  static async start(options: ClusterProcessesOptions): Promise<ClusterProcesses> {
    ensureBuilt();
    const cluster = new ClusterProcesses(options, mkdtempSync(join(tmpdir(), `spillway-${options.name}-`)));
    try {
      cluster.watcher = await cluster.namespace.watch().prefix('partitions/').create();
      cluster.watcher.on('put', (kv) => {
        const key = kv.key.toString();
        const record = parseKey(key)?.kind === 'partition' ? decodePartition(kv.value.toString()) : undefined;
        if (record === undefined) return;
        const versions = cluster.partitionVersions.get(key) ?? [];
        versions.push(record);
        cluster.partitionVersions.set(key, versions);
      });
      for (const id of options.brokerIds) {
        const port = await freePort();
        let url = `ws://127.0.0.1:${port}`;
        if (options.proxied?.includes(id)) {
          const proxy = await TcpProxy.start(port);
          cluster.brokerProxies.set(id, proxy);
          cluster.etcdProxies.set(id, await TcpProxy.start(options.etcd.clientPort));
          url = `ws://127.0.0.1:${proxy.port}`;
        }
        const directory = join(cluster.directory, `broker-${id}`);
        mkdirSync(directory);
        cluster.brokers.set(id, {
          id,
          port,
          url,
          directUrl: `ws://127.0.0.1:${port}`,
          directory,
          logFile: join(cluster.directory, `broker-${id}.log`),
          process: undefined,
          stopped: false,
          starts: 0,
        });
      }
      await Promise.all(options.brokerIds.map((id) => cluster.startBroker(id)));
      // Registered in etcd is not yet seen by every broker: a topic created through a broker that has
      // not read the others' registrations is refused ("exceeds the 1 live brokers").
      await Promise.all(options.brokerIds.map((id) => cluster.waitSeesAll(id)));
    } catch (error) {
      await cluster.close();
      throw error;
    }
    return cluster;
  }

  /** Waits until broker `id`'s METADATA lists every broker of the cluster as live. */
  private async waitSeesAll(id: number): Promise<void> {
    const wanted = [...this.brokers.keys()];
    await waitFor(
      `broker ${id} to see every broker`,
      async () => {
        const sw = await Spillway.connect(this.broker(id).url, { clusterRouting: false });
        try {
          const { brokers } = await sw.admin.metadata(['__consumer_offsets']);
          return wanted.every((other) => brokers.some((broker) => broker.brokerId === other))
            ? true
            : undefined;
        } finally {
          await sw.close();
        }
      },
      { pollMs: 50, retryErrors: true },
    );
  }

  broker(id: number): BrokerProcess {
    const broker = this.brokers.get(id);
    if (broker === undefined) throw new Error(`no broker ${id}`);
    return broker;
  }

  get ids(): number[] {
    return [...this.brokers.keys()];
  }

  running(id: number): boolean {
    const child = this.broker(id).process;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  /** Starts the broker's process and resolves once it listens (it registered in etcd before that). */
  private async startBroker(id: number): Promise<void> {
    const broker = this.broker(id);
    const etcdProxy = this.etcdProxies.get(id);
    const etcd = etcdProxy === undefined ? this.options.etcd.url : `etcd://127.0.0.1:${etcdProxy.port}`;
    const configFile = join(broker.directory, 'broker.json');
    writeFileSync(
      configFile,
      JSON.stringify({
        ...this.options.config,
        clusterName: this.options.name,
        clusterSessionTimeoutMs: this.options.sessionTimeoutMs ?? 1000,
      }),
    );
    // biome-ignore format: one flag per line
    const args = [
      cliPath, 'broker',
      '--data-dir', join(broker.directory, 'data'),
      '--host', '127.0.0.1',
      '--port', String(broker.port),
      '--durability', this.options.durability ?? 'always',
      '--cluster', etcd,
      '--broker-id', String(id),
      '--advertise', broker.url,
      '--config', configFile,
    ];
    const spawnedAt = performance.now();
    const log = openSync(broker.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', log] });
    } finally {
      closeSync(log);
    }
    broker.process = child;
    broker.stopped = false;
    broker.starts++;
    await new Promise<void>((resolve, reject) => {
      let output = '';
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`broker ${id} did not listen within ${startTimeoutMs} ms:\n${this.logTail(id)}`));
      }, startTimeoutMs);
      child.stdout?.setEncoding('utf8');
      child.stdout?.on('data', (chunk: string) => {
        output += chunk;
        if (output.includes('spillway listening on')) {
          clearTimeout(timer);
          output = '';
          child.stdout?.removeAllListeners('data');
          child.stdout?.resume();
          this.startDurations.push(performance.now() - spawnedAt);
          resolve();
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`broker ${id} exited (${signal ?? code}) before listening:\n${this.logTail(id)}`));
      });
    });
  }

  /** SIGKILL; resolves when the process is gone. */
  async kill(id: number): Promise<void> {
    const broker = this.broker(id);
    const child = broker.process;
    if (child === undefined || !this.running(id)) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
    broker.stopped = false;
  }

  /** SIGTERM (the broker's orderly shutdown); resolves when the process is gone, SIGKILL after 15 s. */
  async terminate(id: number): Promise<void> {
    const child = this.broker(id).process;
    if (child === undefined || !this.running(id)) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }

  stop(id: number): void {
    const broker = this.broker(id);
    if (!this.running(id)) throw new Error(`broker ${id} is not running`);
    broker.process?.kill('SIGSTOP');
    broker.stopped = true;
  }

  cont(id: number): void {
    const broker = this.broker(id);
    broker.process?.kill('SIGCONT');
    broker.stopped = false;
  }

  /** Starts a killed broker again, on the same port and data, once its old registration expired. */
  async restart(id: number): Promise<void> {
    if (this.running(id)) throw new Error(`broker ${id} is still running`);
    await waitFor(`broker ${id}'s old registration to expire`, async () =>
      (await this.namespace.get(brokerKey(id)).string()) === null ? true : undefined,
    );
    await this.startBroker(id);
  }

  /** Cuts a proxied broker off from everyone (clients, brokers, etcd). */
  isolate(id: number): void {
    const broker = this.brokerProxies.get(id);
    const etcd = this.etcdProxies.get(id);
    if (broker === undefined || etcd === undefined) throw new Error(`broker ${id} is not proxied`);
    broker.blackhole();
    etcd.blackhole();
  }

  heal(id: number): void {
    this.brokerProxies.get(id)?.heal();
    this.etcdProxies.get(id)?.heal();
  }

  /** Creates the topic through etcd once enough brokers are live for it (whenBrokersLive). */
  async createTopic(topic: string, config: ClusterTopicConfig): Promise<void> {
    await whenBrokersLive(() => this.admin.createTopic(topic, config));
  }

  /** The topic's partition records as etcd has them now (undefined: not assigned yet). */
  async partitions(topic: string): Promise<(PartitionRecord | undefined)[]> {
    return (await this.admin.describe(topic)).partitions;
  }

  /** The registered broker ids. */
  async registered(): Promise<number[]> {
    const keys = await this.namespace.getAll().prefix('brokers/').keys();
    return keys.map((key) => Number(key.slice('brokers/'.length))).sort((a, b) => a - b);
  }

  async controllerId(): Promise<number | undefined> {
    const text = await this.namespace.get(controllerKey).string();
    return text === null ? undefined : decodeController(text)?.brokerId;
  }

  /**
   * Waits until every broker runs, is registered, and every partition of `topic` is led by a live
   * broker with `isrSize` replicas in sync.
   */
  async waitHealthy(topic: string, isrSize: number, boundMs = 30_000): Promise<PartitionRecord[]> {
    return waitFor(
      `${topic}: every broker up and every partition led with ${isrSize} in sync`,
      async () => {
        const registered = await this.registered();
        if (this.ids.some((id) => !this.running(id) || this.broker(id).stopped || !registered.includes(id)))
          return undefined;
        const records = await this.partitions(topic);
        const ok = records.every(
          (record) =>
            record !== undefined && registered.includes(record.leaderId) && record.isr.length >= isrSize,
        );
        return ok ? (records as PartitionRecord[]) : undefined;
      },
      boundMs,
    );
  }

  /**
   * Waits until every partition of `topic` is led by a live broker with at least `liveInSync` live
   * registered replicas in its ISR (the leader included): one more failure leaves an ISR member to
   * elect. Brokers may be down meanwhile.
   */
  async waitLeadable(topic: string, liveInSync: number, boundMs = 30_000): Promise<PartitionRecord[]> {
    return waitFor(
      `${topic}: every partition led with ${liveInSync} live replicas in sync`,
      async () => {
        const registered = await this.registered();
        const live = (id: number): boolean =>
          registered.includes(id) && this.running(id) && !this.broker(id).stopped;
        const records = await this.partitions(topic);
        const ok = records.every(
          (record) =>
            record !== undefined && live(record.leaderId) && record.isr.filter(live).length >= liveInSync,
        );
        return ok ? (records as PartitionRecord[]) : undefined;
      },
      boundMs,
    );
  }

  /**
   * What the controller did to the partitions of `topic` that breaks the rules (docs/CLUSTER.md):
   * a leader epoch going back, two leaders at one epoch, or a new leader that was not in the ISR of
   * the version before (an unclean election). Empty when every election was clean.
   */
  electionViolations(topic: string): string[] {
    const violations: string[] = [];
    for (const [key, versions] of this.partitionVersions) {
      if (!key.startsWith(`partitions/${topic}/`)) continue;
      for (let index = 1; index < versions.length; index++) {
        const before = versions[index - 1] as PartitionRecord;
        const after = versions[index] as PartitionRecord;
        if (after.leaderEpoch < before.leaderEpoch) {
          violations.push(`${key}: epoch ${before.leaderEpoch} -> ${after.leaderEpoch}`);
        } else if (after.leaderEpoch === before.leaderEpoch && after.leaderId !== before.leaderId) {
          violations.push(
            `${key}: leaders ${before.leaderId} and ${after.leaderId} at epoch ${after.leaderEpoch}`,
          );
        } else if (
          after.leaderId !== before.leaderId &&
          after.leaderId !== noLeader &&
          !before.isr.includes(after.leaderId)
        ) {
          violations.push(
            `${key}: ${after.leaderId} elected at epoch ${after.leaderEpoch}, not in the ISR [${before.isr.join(', ')}]`,
          );
        }
      }
    }
    return violations;
  }

  /** The last lines of a broker's log. */
  logTail(id: number, lines = 40): string {
    try {
      return readFileSync(this.broker(id).logFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  log(id: number): string {
    try {
      return readFileSync(this.broker(id).logFile, 'utf8');
    } catch {
      return '';
    }
  }

  /** Kills every broker (resuming stopped ones first), closes the proxies and etcd client, removes the data. */
  async close(options: { keepDirectory?: boolean } = {}): Promise<void> {
    for (const id of this.ids) {
      if (this.running(id)) this.broker(id).process?.kill('SIGCONT');
      await this.kill(id);
    }
    for (const proxy of [...this.brokerProxies.values(), ...this.etcdProxies.values()]) await proxy.close();
    if (this.watcher !== undefined) {
      this.watcher.removeAllListeners();
      await this.watcher.cancel().catch(() => undefined);
    }
    this.etcdClient.close();
    if (options.keepDirectory !== true) rmSync(this.directory, { recursive: true, force: true });
  }
}
