/**
 * Broker services that follow the leadership of their internal partitions (docs/CLUSTER.md,
 * "Internal state logs as partitions"). A `ReplicaManager` around the data plane's: the control plane
 * calls it, it forwards every call and, for the partitions of a service's internal topics
 * (replicated-state-topics.ts, one group per service; today `__consumer_offsets`, the group
 * coordinator, and `__transactions` + `__txn_half`, the transaction coordinator), starts and stops the service as followed-services.ts states (it runs only while
 * this broker leads every topic of its group, at their current epochs):
 *
 * - before the data plane is told anything that ends this broker's leadership at the epoch the
 *   service runs at (another leader, a new epoch, removal), the service stops: members are dropped,
 *   its state log refuses every write from then on (nothing more is appended to a log the follower
 *   is about to write), requests fail with NOT_COORDINATOR;
 * - after the data plane made this broker the leader, the service starts: it recovers its state from
 *   the log as the follower left it (snapshot + replay, as at a broker's open) and serves.
 *
 * So a service runs for one leader epoch at a time, on the one broker whose writes the followers
 * copy, and every write it makes is answered only once the in-sync replicas have it
 * (`StateLog.replicate` → `PartitionReplica.replicated` with acks 'all'): a failover never loses an
 * acknowledged offset commit.
 *
 * `check(opcode)` (`BrokerApi.coordinators`) refuses what this broker does not serve: NOT_COORDINATOR
 * (retriable) for a group request while another broker leads `__consumer_offsets` (and likewise for
 * every followed service), INVALID_ARGUMENT for a coordinator topic no service follows (none today). INIT_PRODUCER is served by every broker:
 * producer ids come from etcd (producer-id-blocks.ts, handed to the producers by broker-cluster.ts), and each partition leader
 * rebuilds its producers' sequences from the replicated batches (BrokerProducers.joinCluster), and
 * the msgId index of a dedup topic's partition from its log (BrokerDedup.joinCluster). The delay
 * service follows `__delay`, `__delay_state`, `__delay_dead` (`followDelay`, docs/CLUSTER.md "Built:
 * delayed messages"). The queue service follows `__queue_state` (`followQueues`, docs/CLUSTER.md
 * "Built: shared and key_shared queues").
 */
import type { BrokerDedup } from '../../broker/dedup/broker-dedup.js';
import type { BrokerDelay } from '../../broker/delay/broker-delay.js';
import { delayDeadTopicName, delayStateTopicName, delayTopicName } from '../../broker/delay/delay-store.js';
import type { GroupCoordinator } from '../../broker/groups/group-coordinator.js';
import type { Partition } from '../../broker/partition.js';
import type { BrokerProducers } from '../../broker/producers/broker-producers.js';
import type { BrokerQueues } from '../../broker/queues/broker-queues.js';
import type { Topic } from '../../broker/topic.js';
import type { BrokerTransactions } from '../../broker/transactions/broker-transactions.js';
import { InvalidArgumentError, SpillwayError } from '../../errors.js';
import {
  type CoordinatorGate,
  coordinatorTopicOf,
  coordinatorTopics,
} from '../../protocol/coordinator-routing.js';
import { Opcode, opcodeName } from '../../protocol/opcodes.js';
import type { ClusterForwarding } from '../forwarding/cluster-forwarding.js';
import { ForwardedDelayTargets } from '../forwarding/forwarded-delay-targets.js';
import type { BrokerEndpoint, PartitionAssignment, ReplicaManager } from '../partition-role.js';
import { ClusterQueueSources } from '../remote-reads/cluster-queue-sources.js';
import { fetchFromLeader, latestOffsetOnLeader } from '../remote-reads/leader-fetch.js';
import { FollowedServices } from './followed-services.js';
import { replicatedStateServices, type StateServiceTopics } from './replicated-state-topics.js';

/** What of the broker the services following leadership need. */
export interface LeadershipBroker {
  readonly groups: GroupCoordinator;
  readonly topics: {
    partitionOf(topic: string, partition: number): Partition;
    topicIfExists(name: string): Topic | undefined;
  };
  readonly delay: BrokerDelay;
  readonly dedup: BrokerDedup;
  readonly producers: BrokerProducers;
  readonly transactions: BrokerTransactions;
  readonly queues: BrokerQueues;
}

const notInClusterYet = 'does not run in cluster mode yet (its state is not replicated: docs/CLUSTER.md)';

/** The replicated service named `service` (replicated-state-topics.ts). */
function serviceTopics(service: string): StateServiceTopics {
  const entry = replicatedStateServices.find((candidate) => candidate.service === service);
  if (entry === undefined) throw new InvalidArgumentError(`no replicated state service ${service}`);
  return entry;
}

export class ServiceLeadership implements ReplicaManager, CoordinatorGate {
  /** The services and their terms (followed-services.ts); the data plane's calls go through it. */
  readonly followed: FollowedServices;
  /** The queue service's sources of data partitions (remote readers; tests, metrics). */
  readonly queueSources: ClusterQueueSources;

  constructor(
    private readonly brokerId: number,
    broker: LeadershipBroker,
    inner: ReplicaManager,
    /** replicationFactor of the internal topics, for the message while none is assigned. */
    private readonly internalReplicationFactor: number,
    /** Services appending into data partitions make a forwarder per term from it (`forwarder(term)`). */
    readonly forwarding: ClusterForwarding,
  ) {
    this.followed = new FollowedServices(brokerId, inner);
    const groups = broker.groups;
    const offsets = broker.topics.partitionOf(coordinatorTopics.groups, 0);
    groups.replicateWrites((endOffset) => replicatedOnInSyncReplicas(offsets, endOffset));
    // A group's partitions of a topic this broker holds no replica of are read from their leaders.
    groups.readRemotePartitions({
      holds: (topic, partition) =>
        forwarding.topicView(topic)?.partitions[partition]?.replicas.includes(brokerId) === true &&
        broker.topics.topicIfExists(topic)?.partitions[partition] !== undefined,
      fetch: (topic, partition, offset, options) =>
        fetchFromLeader(forwarding, topic, partition, offset, options),
      latestOffset: (topic, partition, signal) => latestOffsetOnLeader(forwarding, topic, partition, signal),
    });
    this.followed.follow(serviceTopics('groups'), {
      stop: (why) => groups.stopCoordinating(why),
      start: () => groups.startCoordinating(),
    });
    // The transaction coordinator (cl-txn): `__transactions` (anchor) and `__txn_half`; commits copy
    // halves into data partitions through the term's forwarder.
    const transactions = broker.transactions;
    const [transactionsTopic, halfTopic] = serviceTopics('transactions').topics as [string, string];
    const transactionsLog = broker.topics.partitionOf(transactionsTopic, 0);
    const halfLog = broker.topics.partitionOf(halfTopic, 0);
    transactions.replicateWrites(
      (endOffset) => replicatedOnInSyncReplicas(transactionsLog, endOffset),
      (endOffset) => replicatedOnInSyncReplicas(halfLog, endOffset),
    );
    // A committed delayed half goes to the delay service, wherever it runs (DELAY_SCHEDULE_COMMITTED).
    transactions.scheduleDelayed = (topic, partition, batch, commitMs) =>
      forwarding.delayScheduleCommitted(topic, partition, batch, commitMs);
    this.followed.follow(serviceTopics('transactions'), {
      stop: (why) => transactions.stopServing(why),
      start: (term) => transactions.startServing(forwarding.forwarder(term)),
    });
    this.followDelay(broker, forwarding);
    this.queueSources = this.followQueues(broker, forwarding);
    // Msg-id dedup: each partition leader keeps its partition's index, rebuilt from the data log.
    broker.dedup.joinCluster();
    broker.producers.joinCluster();
  }

  /**
   * The delay service follows `__delay`, `__delay_state`, `__delay_dead` (broker-delay.ts, cluster
   * terms): each append to them counts once the in-sync replicas have it; a term fires through its
   * forwarder and reads target topics from the cluster's records; a delayed batch reaching a broker
   * that does not run the service goes to the one that does (DELAY_SCHEDULE).
   */
  private followDelay(broker: LeadershipBroker, forwarding: ClusterForwarding): void {
    const delay = broker.delay;
    const replicated = (topic: string) => (endOffset: number) =>
      replicatedOnInSyncReplicas(broker.topics.partitionOf(topic, 0), endOffset);
    delay.joinCluster(
      {
        delay: replicated(delayTopicName),
        dead: replicated(delayDeadTopicName),
        state: replicated(delayStateTopicName),
      },
      (topic, partition, batch) => forwarding.delaySchedule(topic, partition, batch),
    );
    forwarding.target.delay = delay;
    this.followed.follow(serviceTopics('delay'), {
      stop: (why) => delay.stopTerm(why),
      start: (term) =>
        delay.startTerm(
          new ForwardedDelayTargets(
            forwarding.forwarder(term),
            forwarding,
            (topic) => broker.topics.topicIfExists(topic)?.config.durability,
          ),
        ),
    });
  }

  /**
   * The queue service follows `__queue_state` (broker-queues.ts, cluster terms): its writes count once
   * the in-sync replicas have them; it reads data partitions locally where this broker leads them and
   * through remote readers elsewhere (src/cluster/remote-reads/, stopped with the term); dead letters go
   * through the term's forwarder into the dead-letter topic's partition, wherever it is led.
   */
  private followQueues(broker: LeadershipBroker, forwarding: ClusterForwarding): ClusterQueueSources {
    const queues = broker.queues;
    const [queueTopic] = serviceTopics('queues').topics as [string];
    const queueLog = broker.topics.partitionOf(queueTopic, 0);
    const sources = new ClusterQueueSources({
      brokerId: this.brokerId,
      view: {
        leaderOf: (topic, partition) => forwarding.leaderOf(topic, partition),
        partitionCount: (topic) => forwarding.topicView(topic)?.record.partitions,
        topicCreatedAtMs: (topic) => forwarding.topicView(topic)?.record.createdAtMs,
        connect: (url) => forwarding.connect(url),
      },
    });
    queues.joinCluster((endOffset) => replicatedOnInSyncReplicas(queueLog, endOffset), sources);
    this.followed.follow(serviceTopics('queues'), {
      stop: (why) => {
        queues.stopServing(why);
        sources.stopAll();
      },
      start: (term) => {
        const forwarder = forwarding.forwarder(term);
        queues.startServing({
          partitionCount: async (topic) => {
            const partitions = forwarding.topicView(topic)?.record.partitions;
            if (partitions === undefined) {
              throw new SpillwayError(
                'UNKNOWN_TOPIC',
                `dead-letter topic ${topic} does not exist in the cluster (create it; the queue service retries)`,
              );
            }
            return partitions;
          },
          append: (topic, partition, batch) => forwarder.append(topic, partition, batch),
          close: (why) => forwarder.close(why),
        });
      },
    });
    return sources;
  }

  /** True while this broker runs the service owning internal topic `topic` (tests, metrics). */
  leads(topic: string): boolean {
    return this.followed.serviceOf(topic)?.term != null;
  }

  check(opcode: number): void {
    const topic = coordinatorTopicOf(opcode);
    if (topic === undefined || opcode === Opcode.initProducer) return;
    const service = this.followed.serviceOf(topic);
    if (service === undefined) {
      throw new InvalidArgumentError(`${opcodeName(opcode)}: the service of ${topic} ${notInClusterYet}`);
    }
    if (service.term !== null) return;
    const leaderId = service.leaders[0] as number;
    const leaderEpoch = service.epochs[0] as number;
    const others = service.topics.length > 1 ? ` with ${service.topics.slice(1).join(', ')}` : '';
    throw new SpillwayError(
      'NOT_COORDINATOR',
      leaderId >= 0 && leaderId !== this.brokerId
        ? `${opcodeName(opcode)}: broker ${leaderId} coordinates (leads ${topic} at epoch ${leaderEpoch}), not broker ${this.brokerId}`
        : leaderId === this.brokerId
          ? `${opcodeName(opcode)}: broker ${this.brokerId} leads ${topic} but not yet${others} (the leaders are converging)`
          : `${opcodeName(opcode)}: no broker coordinates yet (${topic} has no leader; it needs ${this.internalReplicationFactor} live brokers)`,
    );
  }

  applyAssignment(
    assignment: PartitionAssignment,
    endpoints: ReadonlyMap<number, BrokerEndpoint>,
  ): Promise<void> {
    return this.followed.applyAssignment(assignment, endpoints);
  }

  removePartition(topic: string, partition: number): Promise<void> {
    return this.followed.removePartition(topic, partition);
  }

  close(): Promise<void> {
    return this.followed.close();
  }
}

/**
 * Resolves once the in-sync replicas of internal partition `partition` hold everything before
 * `endOffset` (acks 'all'); NOT_COORDINATOR when the partition has no replication role here. What a
 * service's state log (`StateLog.replicate`) and its other internal appends wait for before they count.
 */
export function replicatedOnInSyncReplicas(partition: Partition, endOffset: number): Promise<void> {
  const replica = partition.replica;
  if (replica === null) {
    return Promise.reject(
      new SpillwayError('NOT_COORDINATOR', `${partition.topic}/0 is not replicated from this broker`),
    );
  }
  replica.appended();
  return replica.replicated(endOffset, { acks: 'all' });
}
