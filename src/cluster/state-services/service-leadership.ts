/**
 * Broker services that follow the leadership of their internal partition (docs/CLUSTER.md,
 * "Internal state logs as partitions"). A `ReplicaManager` around the data plane's: the control plane
 * calls it, it forwards every call and, for the partition of a service's internal topic
 * (replicated-state-topics.ts; today `__consumer_offsets`, the group coordinator):
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
 * (retriable) for a group request while another broker leads `__consumer_offsets`, INVALID_ARGUMENT
 * for the services that do not follow leadership yet (queues, transactions, delay stats), whose
 * state would otherwise be silently local to one broker. INIT_PRODUCER is served by every broker:
 * producer ids come from etcd (producer-id-blocks.ts, `useProducerIds`), and each partition leader
 * rebuilds its producers' sequences from the replicated batches (BrokerProducers.joinCluster), and
 * the msgId index of a dedup topic's partition from its log (BrokerDedup.joinCluster). Delayed
 * batches are refused the same way in the produce path.
 */
import type { BrokerDedup } from '../../broker/dedup/broker-dedup.js';
import type { BrokerDelay } from '../../broker/delay/broker-delay.js';
import type { GroupCoordinator } from '../../broker/groups/group-coordinator.js';
import type { Partition } from '../../broker/partition.js';
import type { BrokerProducers } from '../../broker/producers/broker-producers.js';
import type { ProducerIdSource } from '../../broker/producers/producer-id-source.js';
import { InvalidArgumentError, SpillwayError } from '../../errors.js';
import {
  type CoordinatorGate,
  coordinatorTopicOf,
  coordinatorTopics,
} from '../../protocol/coordinator-routing.js';
import { Opcode, opcodeName } from '../../protocol/opcodes.js';
import type { BrokerEndpoint, PartitionAssignment, ReplicaManager } from '../partition-role.js';

/** What of the broker the services following leadership need. */
export interface LeadershipBroker {
  readonly groups: GroupCoordinator;
  readonly topics: { partitionOf(topic: string, partition: number): Partition };
  readonly delay: BrokerDelay;
  readonly dedup: BrokerDedup;
  readonly producers: BrokerProducers;
}

/** One service bound to the leadership of its internal topic's partition 0. */
interface FollowedService {
  readonly topic: string;
  stop(why: string): void;
  start(): void;
  /** While running: the leader epoch it runs at. */
  runningEpoch: number | null;
  /** The last assignment seen (for NOT_COORDINATOR's message). */
  leaderId: number;
  leaderEpoch: number;
  /** Serializes the changes of this service. */
  chain: Promise<void>;
}

const notInClusterYet = 'does not run in cluster mode yet (its state is not replicated: docs/CLUSTER.md)';

export class ServiceLeadership implements ReplicaManager, CoordinatorGate {
  private readonly services = new Map<string, FollowedService>();
  private readonly producers: BrokerProducers;

  constructor(
    private readonly brokerId: number,
    broker: LeadershipBroker,
    private readonly inner: ReplicaManager,
    /** replicationFactor of the internal topics, for the message while none is assigned. */
    private readonly internalReplicationFactor: number,
  ) {
    const groups = broker.groups;
    const offsets = broker.topics.partitionOf(coordinatorTopics.groups, 0);
    groups.replicateWrites((endOffset) => replicatedOnInSyncReplicas(offsets, endOffset));
    this.follow(coordinatorTopics.groups, {
      stop: (why) => groups.stopCoordinating(why),
      start: () => groups.startCoordinating(),
    });
    broker.delay.refusal = new InvalidArgumentError(`delayed messages: the delay service ${notInClusterYet}`);
    // Msg-id dedup: each partition leader keeps its partition's index, rebuilt from the data log.
    broker.dedup.joinCluster();
    this.producers = broker.producers;
    this.producers.joinCluster();
  }

  /** Producer ids for INIT_PRODUCER, once the cluster node is up (broker-cluster.ts). */
  useProducerIds(ids: ProducerIdSource): void {
    this.producers.useProducerIds(ids);
  }

  /** True while this broker runs the service of internal topic `topic` (tests, metrics). */
  leads(topic: string): boolean {
    const service = this.services.get(topic);
    return service !== undefined && service.runningEpoch !== null;
  }

  check(opcode: number): void {
    const topic = coordinatorTopicOf(opcode);
    if (topic === undefined || opcode === Opcode.initProducer) return;
    const service = this.services.get(topic);
    if (service === undefined) {
      throw new InvalidArgumentError(`${opcodeName(opcode)}: the service of ${topic} ${notInClusterYet}`);
    }
    if (service.runningEpoch !== null) return;
    throw new SpillwayError(
      'NOT_COORDINATOR',
      service.leaderId >= 0 && service.leaderId !== this.brokerId
        ? `${opcodeName(opcode)}: broker ${service.leaderId} coordinates (leads ${topic} at epoch ${service.leaderEpoch}), not broker ${this.brokerId}`
        : `${opcodeName(opcode)}: no broker coordinates yet (${topic} has no leader; it needs ${this.internalReplicationFactor} live brokers)`,
    );
  }

  applyAssignment(
    assignment: PartitionAssignment,
    endpoints: ReadonlyMap<number, BrokerEndpoint>,
  ): Promise<void> {
    const service = assignment.partition === 0 ? this.services.get(assignment.topic) : undefined;
    if (service === undefined) return this.inner.applyAssignment(assignment, endpoints);
    return this.serialized(service, async () => {
      const { leaderId, leaderEpoch } = assignment;
      if (leaderEpoch < service.leaderEpoch) return this.inner.applyAssignment(assignment, endpoints);
      const leading = leaderId === this.brokerId;
      if (service.runningEpoch !== null && (!leading || leaderEpoch !== service.runningEpoch)) {
        service.runningEpoch = null;
        service.stop(`broker ${leaderId} leads ${service.topic} at epoch ${leaderEpoch}`);
      }
      service.leaderId = leaderId;
      service.leaderEpoch = leaderEpoch;
      await this.inner.applyAssignment(assignment, endpoints);
      if (leading && service.runningEpoch === null) {
        service.start();
        service.runningEpoch = leaderEpoch;
      }
    });
  }

  removePartition(topic: string, partition: number): Promise<void> {
    const service = partition === 0 ? this.services.get(topic) : undefined;
    if (service === undefined) return this.inner.removePartition(topic, partition);
    return this.serialized(service, async () => {
      if (service.runningEpoch !== null) {
        service.runningEpoch = null;
        service.stop(`${topic} was removed from broker ${this.brokerId}`);
      }
      service.leaderId = -1;
      await this.inner.removePartition(topic, partition);
    });
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private follow(topic: string, actions: { stop(why: string): void; start(): void }): void {
    const service: FollowedService = {
      topic,
      ...actions,
      runningEpoch: null,
      leaderId: -1,
      leaderEpoch: -1,
      chain: Promise.resolve(),
    };
    // Until the cluster names this broker the leader, it serves nothing of it.
    service.stop(`waiting for the cluster to assign ${topic}`);
    this.services.set(topic, service);
  }

  private serialized(service: FollowedService, action: () => Promise<void>): Promise<void> {
    const run = service.chain.then(action);
    service.chain = run.catch(() => undefined);
    return run;
  }
}

/**
 * Resolves once the in-sync replicas of internal partition `partition` hold everything before
 * `endOffset` (acks 'all'); NOT_COORDINATOR when the partition has no replication role here.
 */
function replicatedOnInSyncReplicas(partition: Partition, endOffset: number): Promise<void> {
  const replica = partition.replica;
  if (replica === null) {
    return Promise.reject(
      new SpillwayError('NOT_COORDINATOR', `${partition.topic}/0 is not replicated from this broker`),
    );
  }
  replica.appended();
  return replica.replicated(endOffset, { acks: 'all' });
}
