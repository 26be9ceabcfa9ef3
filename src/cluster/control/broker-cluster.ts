/**
 * Joins an open broker to a cluster (`BrokerOptions.cluster`, docs/CLUSTER.md): starts its
 * ClusterNode with the data plane's ReplicaManager (built by `cluster.replicaManager` with the
 * node's IsrChanger) and a `prepareTopic` that makes each assigned topic exist locally — created with
 * the cluster record's partition count and local config, or grown to it — before the data plane is
 * told its role (the data plane expects the local partition to exist).
 *
 * `BrokerCluster.close()` leaves the cluster (revokes the session) and then closes the ReplicaManager
 * it built. Local topic data is never deleted by the control plane: a partition removed from this
 * broker is handed to `removePartition` (the data plane fences it).
 */
import type { BrokerClusterOptions } from '../../broker/broker-options.js';
import type { BrokerTopics } from '../../broker/broker-topics.js';
import { InvalidArgumentError, SpillwayError } from '../../errors.js';
import { replicationFactorDefaultMax } from '../../limits.js';
import type { TopicConfig } from '../../protocol/broker-api.js';
import { ClusterForwarding } from '../forwarding/cluster-forwarding.js';
import type { ForwardTargetBroker } from '../forwarding/forward-target.js';
import type { ReplicaManager } from '../partition-role.js';
import { ProducerIdBlocks, producerIdNamespace } from '../state-services/producer-id-blocks.js';
import { ProducerNames } from '../state-services/producer-names.js';
import {
  replicatedStateServices,
  replicatedStateTopicGroups,
} from '../state-services/replicated-state-topics.js';
import { type LeadershipBroker, ServiceLeadership } from '../state-services/service-leadership.js';
import { ClusterNode } from './cluster-node.js';
import { validateClusterOptions } from './cluster-options.js';
import type { TopicRecord } from './cluster-records.js';
import { ClusterTopics } from './cluster-topics.js';

/** The part of the broker the cluster membership uses. */
export interface ClusterBroker extends LeadershipBroker, ForwardTargetBroker {
  readonly topics: Pick<
    BrokerTopics,
    | 'create'
    | 'addPartitions'
    | 'describe'
    | 'partitionOf'
    | 'list'
    | 'topicDefaults'
    | 'topicIfExists'
    | 'useClusterRecords'
  >;
}

export class BrokerCluster {
  /** Topic administration in the cluster (the broker's admin requests, cluster-topics.ts). */
  readonly topics: ClusterTopics;

  private constructor(
    readonly node: ClusterNode,
    private readonly replicaManager: ReplicaManager,
    /** The services following their internal partition's leader; `check` is BrokerApi.coordinators. */
    readonly services: ServiceLeadership,
    broker: ClusterBroker,
    /** Forwarding (src/cluster/forwarding/): `target` is BrokerApi.forwarding; services' forwarders. */
    readonly forwarding: ClusterForwarding,
    /** The cluster-wide registry of named idempotent producers (producer-names.ts). */
    readonly producerNames: ProducerNames,
  ) {
    this.topics = new ClusterTopics(node, broker.topics);
  }

  /** Checks the options before the broker opens anything (INVALID_ARGUMENT naming the field). */
  static validate<Engine>(options: BrokerClusterOptions<Engine>): void {
    validateClusterOptions(options);
    if (typeof options.replicaManager !== 'function') {
      throw new InvalidArgumentError(
        'cluster mode needs the replication data plane: cluster.replicaManager (a function building the ReplicaManager) is missing',
      );
    }
  }

  static async join<Engine extends ClusterBroker>(
    broker: Engine,
    options: BrokerClusterOptions<Engine>,
  ): Promise<BrokerCluster> {
    BrokerCluster.validate(options);
    const build = options.replicaManager as NonNullable<typeof options.replicaManager>;
    let replicaManager: ServiceLeadership | undefined;
    // Before the node starts: services started by its first assignments make forwarders from it.
    const forwarding = new ClusterForwarding({
      brokerId: options.brokerId,
      broker,
      services: replicatedStateServices,
      ...(options.token !== undefined ? { token: options.token } : {}),
    });
    const internalReplicationFactor = options.internalReplicationFactor ?? replicationFactorDefaultMax;
    const node = await ClusterNode.start({
      etcd: options.etcd,
      brokerId: options.brokerId,
      advertise: options.advertise,
      ...(options.name !== undefined ? { name: options.name } : {}),
      ...(options.sessionTimeoutMs !== undefined ? { sessionTimeoutMs: options.sessionTimeoutMs } : {}),
      internalReplicationFactor,
      internalTopics: replicatedStateTopicGroups,
      replicaManager: (isrChanger) => {
        replicaManager = new ServiceLeadership(
          options.brokerId,
          broker,
          build(broker, isrChanger),
          internalReplicationFactor,
          forwarding,
        );
        return replicaManager;
      },
      prepareTopic: (topic, record) => prepareLocalTopic(broker, topic, record),
      log: options.log ?? ((line) => void process.stderr.write(`spillway: cluster: ${line}\n`)),
    });
    const services = replicaManager as ServiceLeadership;
    // A topic in the cluster's records not created here yet: NOT_LEADER (retriable), not UNKNOWN_TOPIC.
    broker.topics.useClusterRecords((topic) => node.topicView(topic)?.record.partitions);
    const producerNamespace = node.etcdNamespace(producerIdNamespace(options.name ?? 'default'));
    const ids = new ProducerIdBlocks(producerNamespace);
    const log = options.log ?? ((line) => void process.stderr.write(`spillway: cluster: ${line}\n`));
    const names = new ProducerNames(producerNamespace, ids, { log });
    names.start();
    broker.producers.useProducerIds(ids, names);
    forwarding.attach(node);
    return new BrokerCluster(node, services, services, broker, forwarding, names);
  }

  async close(): Promise<void> {
    await this.producerNames.close();
    await this.node.close();
    await this.replicaManager.close();
    await this.forwarding.close();
  }
}

/** Creates the topic locally with the cluster's partition count and config, or grows it to that count. */
export async function prepareLocalTopic(
  broker: ClusterBroker,
  topic: string,
  record: TopicRecord,
): Promise<void> {
  let partitionCount: number;
  try {
    partitionCount = broker.topics.describe(topic).partitionCount;
  } catch (error) {
    if (!(error instanceof SpillwayError) || error.code !== 'UNKNOWN_TOPIC') throw error;
    const config = { ...record.config, partitions: record.partitions } as TopicConfig;
    try {
      await broker.topics.create(topic, config);
      return;
    } catch (createError) {
      // Created in between by a concurrent caller: fall through to the partition count check.
      if (!(createError instanceof SpillwayError) || createError.code !== 'TOPIC_EXISTS') throw createError;
      partitionCount = broker.topics.describe(topic).partitionCount;
    }
  }
  if (partitionCount < record.partitions) {
    await broker.topics.addPartitions(topic, record.partitions - partitionCount); // the count to add
  }
}
