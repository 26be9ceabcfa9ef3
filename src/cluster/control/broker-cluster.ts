/**
 * Joins an open broker to a cluster (`BrokerOptions.cluster`, docs/CLUSTER.md): starts its
 * ClusterNode with the data plane's ReplicaManager (built by `cluster.replicaManager` with the
 * node's IsrChanger) and a `prepareTopic` that makes each assigned topic exist locally — created with
 * the cluster record's partition count and local config, or grown to it — before the data plane is
 * told its role (the data plane expects the local partition to exist).
 *
 * `BrokerCluster.close()` leaves the cluster (revokes the session) and then closes the ReplicaManager
 * it built. Local topic data is not deleted when a partition leaves this broker or its topic is
 * deleted: it is handed to `removePartition` (the data plane fences it). Only when a topic of the same
 * name is created again is the earlier incarnation's local topic deleted (`prepareLocalTopic`).
 */
import type { BrokerClusterOptions } from '../../broker/broker-options.js';
import type { BrokerTopics } from '../../broker/broker-topics.js';
import type { PartitionReplica } from '../../broker/partition-replica.js';
import { isInternalTopicName } from '../../broker/topic-name.js';
import { InvalidArgumentError, SpillwayError } from '../../errors.js';
import { replicationFactorDefaultMax } from '../../limits.js';
import type { TopicConfig } from '../../protocol/broker-api.js';
import type { ProduceOptions } from '../../protocol/replication-api.js';
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
    | 'clusterTopicsChanged'
    | 'delete'
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

  /**
   * The internal topics whose logs the cluster replicates (every topic of `replicatedStateServices`):
   * handed down to the engine by `Broker.open` (`BrokerClusterOptions.replicatedStateLogs`), which
   * leaves their state logs unguarded at open. A service added there is covered without more.
   */
  static readonly replicatedStateLogs: readonly string[] = replicatedStateServices.flatMap(
    (entry) => entry.topics,
  );

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
    const clusterLog =
      options.log ?? ((line: string) => void process.stderr.write(`spillway: cluster: ${line}\n`));
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
      prepareTopic: (topic, record) => prepareLocalTopic(broker, topic, record, clusterLog),
      topicsChanged: (changes) => broker.topics.clusterTopicsChanged(changes),
      log: clusterLog,
    });
    const services = replicaManager as ServiceLeadership;
    // A topic in the cluster's records not created here yet: NOT_LEADER (retriable), not UNKNOWN_TOPIC.
    broker.topics.useClusterRecords((topic) => node.topicView(topic)?.record.partitions);
    const producerNamespace = node.etcdNamespace(producerIdNamespace(options.name ?? 'default'));
    const ids = new ProducerIdBlocks(producerNamespace);
    const log = clusterLog;
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

/**
 * Creates the topic locally with the cluster's partition count, config and creation time, or grows it
 * to that count. A local user topic created before the cluster's record (an earlier incarnation: the
 * topic was deleted from the cluster and created again, possibly while this broker was down) is
 * deleted first, so the new topic does not start with the old one's data. Local topics are created
 * with the record's `createdAtMs`, so the current incarnation compares equal; a local topic created
 * by an older version (its own clock, after the record was written) compares later and is kept.
 */
export async function prepareLocalTopic(
  broker: ClusterBroker,
  topic: string,
  record: TopicRecord,
  log: (line: string) => void = () => {},
): Promise<void> {
  const local = broker.topics.topicIfExists(topic);
  if (local !== undefined && !isInternalTopicName(topic) && local.createdAtMs < record.createdAtMs) {
    log(
      `topic ${topic}: the local topic (created ${new Date(local.createdAtMs).toISOString()}) is an earlier incarnation of the cluster's (created ${new Date(record.createdAtMs).toISOString()}): deleting its local data`,
    );
    await broker.topics.delete(topic);
  }
  let partitionCount: number;
  try {
    partitionCount = broker.topics.describe(topic).partitionCount;
  } catch (error) {
    if (!(error instanceof SpillwayError) || error.code !== 'UNKNOWN_TOPIC') throw error;
    const config = { ...record.config, partitions: record.partitions } as TopicConfig;
    try {
      await broker.topics.create(topic, config, record.createdAtMs);
      awaitAssignment(broker, topic, 0, record.partitions);
      return;
    } catch (createError) {
      // Created in between by a concurrent caller: fall through to the partition count check.
      if (!(createError instanceof SpillwayError) || createError.code !== 'TOPIC_EXISTS') throw createError;
      partitionCount = broker.topics.describe(topic).partitionCount;
    }
  }
  if (partitionCount < record.partitions) {
    await broker.topics.addPartitions(topic, record.partitions - partitionCount); // the count to add
    awaitAssignment(broker, topic, partitionCount, record.partitions);
  }
}

/**
 * The role of a partition created here until the data plane applies its first assignment: a produce
 * reaching it (a client without a known leader sends to any broker) is NOT_LEADER (retriable), not
 * appended unreplicated, and consumers see nothing past the log start (a new log: nothing).
 */
class UnassignedReplica implements PartitionReplica {
  constructor(
    private readonly what: string,
    readonly highWatermark: number,
  ) {}

  admitProduce(_options: ProduceOptions | undefined): void {
    throw new SpillwayError('NOT_LEADER', `${this.what}: this broker has not applied its assignment yet`);
  }

  appended(): void {}

  replicated(): Promise<void> {
    return Promise.reject(
      new SpillwayError('NOT_LEADER', `${this.what}: this broker has not applied its assignment yet`),
    );
  }
}

/** Gives the new local partitions [from, to) of `topic` an UnassignedReplica (applyAssignment replaces it). */
function awaitAssignment(broker: ClusterBroker, topic: string, from: number, to: number): void {
  for (let partition = from; partition < to; partition++) {
    const local = broker.topics.partitionOf(topic, partition);
    if (local.replica === null) {
      local.replica = new UnassignedReplica(`${topic}/${partition}`, local.log.logStartOffset);
    }
  }
}
