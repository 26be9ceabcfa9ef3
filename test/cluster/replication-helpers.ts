/**
 * A small in-process cluster for the replication tests: N brokers on loopback, each with a
 * BrokerReplicaManager, one MemoryIsrChanger standing in for the control plane, and `assign` playing
 * the controller (hands one assignment to every broker). ISR changes made by a leader are handed to
 * every broker too, as the control plane's etcd watch would.
 */
import type { BrokerOptions } from '../../src/broker/index.js';
import type { BrokerEndpoint, PartitionAssignment } from '../../src/cluster/partition-role.js';
import { BrokerReplicaManager } from '../../src/cluster/replication/broker-replica-manager.js';
import { MemoryIsrChanger } from '../../src/cluster/replication/memory-isr-changer.js';
import type { TopicConfig } from '../../src/protocol/broker-api.js';
import type { Broker } from '../../src/spillway-broker.js';
import { openBroker, temporaryDirectory } from '../broker/helpers.js';

export interface ClusterNode {
  id: number;
  broker: Broker;
  manager: BrokerReplicaManager | null;
  url: string;
  warnings: string[];
}

export interface ClusterOptions {
  brokers?: number;
  broker?: BrokerOptions;
  replicaLagTimeMs?: number;
  replicationTimeoutMs?: number;
}

export class TestCluster {
  readonly nodes: ClusterNode[] = [];
  readonly isr = new MemoryIsrChanger();
  readonly endpoints = new Map<number, BrokerEndpoint>();
  private readonly options: ClusterOptions;

  private constructor(options: ClusterOptions) {
    this.options = options;
    this.isr.onChange = (assignment) => {
      void this.applyEverywhere(assignment).catch(() => undefined);
    };
  }

  static async start(options: ClusterOptions = {}): Promise<TestCluster> {
    const cluster = new TestCluster(options);
    for (let id = 1; id <= (options.brokers ?? 3); id++) {
      const broker = await openBroker(temporaryDirectory(), options.broker ?? {});
      const server = await broker.listen({ host: '127.0.0.1', port: 0 });
      const node: ClusterNode = { id, broker, manager: null, url: server.url, warnings: [] };
      cluster.nodes.push(node);
      cluster.endpoints.set(id, { brokerId: id, url: server.url });
      cluster.attach(node);
    }
    return cluster;
  }

  node(id: number): ClusterNode {
    return this.nodes[id - 1]!;
  }

  attach(node: ClusterNode): BrokerReplicaManager {
    node.manager = BrokerReplicaManager.attach(node.broker, {
      brokerId: node.id,
      isrChanger: this.isr,
      replicaLagTimeMs: this.options.replicaLagTimeMs ?? 60_000,
      replicationTimeoutMs: this.options.replicationTimeoutMs ?? 30_000,
      replicaFetchMaxWaitMs: 200,
      warn: (message) => node.warnings.push(message),
    });
    return node.manager;
  }

  async createTopic(name: string, config: TopicConfig = {}): Promise<void> {
    for (const node of this.nodes) await node.broker.topics.create(name, config);
  }

  /** The controller: records the assignment and hands it to every broker with a manager. */
  async assign(assignment: PartitionAssignment, only?: number[]): Promise<void> {
    this.isr.set(assignment);
    await this.applyEverywhere(assignment, only);
  }

  async applyEverywhere(assignment: PartitionAssignment, only?: number[]): Promise<void> {
    for (const node of this.nodes) {
      if (node.manager === null || (only !== undefined && !only.includes(node.id))) continue;
      await node.manager.applyAssignment(assignment, this.endpoints);
    }
  }

  async close(): Promise<void> {
    for (const node of this.nodes) await node.manager?.close();
  }
}

/** Polls `condition` every 10 ms until it holds (the test's own timeout bounds it). */
export async function eventually(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; ; i++) {
    if (condition()) return;
    if (i > 3000) throw new Error(`still not true after 30 s: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The whole log of a partition, as bytes (a copy). */
export function logBytes(broker: Broker, topic: string, partition = 0): Buffer {
  const log = broker.topics.partitionOf(topic, partition).log;
  const chunks: Buffer[] = [];
  let offset = log.logStartOffset;
  while (offset < log.logEndOffset) {
    const read = log.read(offset, 1024 * 1024);
    chunks.push(Buffer.from(read.bytes));
    offset = read.nextOffset;
  }
  return Buffer.concat(chunks);
}
