/**
 * The replication data plane of one broker (docs/CLUSTER-REPLICATION.md): the `ReplicaManager` the
 * control plane drives (src/cluster/partition-role.ts) and the `ReplicationService` the broker
 * answers its followers with (REPLICA_FETCH, OFFSET_FOR_LEADER_EPOCH).
 *
 * `applyAssignment` makes the local partition (the topic must exist on this broker) the leader
 * (PartitionLeader) or a follower (PartitionFollower) at the assignment's epoch, and sets
 * `Partition.replica`, which bounds consumers by the high watermark and routes produces through the
 * role. Per partition: calls are serialized; an older epoch than the current one is ignored; the
 * same epoch with the same leader only updates the ISR / replica set (idempotent). A broker not in
 * the replica set, and `removePartition`, leave the partition fenced (every produce NOT_LEADER)
 * until a later assignment: it must not turn back into a single-broker partition.
 *
 * Followers of partitions led by the same broker share one WebSocket connection to it (opened on
 * first use, reopened by the transport after a loss). Without `attach`, nothing of this exists and
 * the broker behaves as a single broker.
 *
 * Not replicated yet (next session): internal state logs (`__` topics), delayed and transactional
 * batches, idempotent producer state on followers.
 */

import type { BrokerEngine } from '../../broker/broker-engine.js';
import type { Partition } from '../../broker/partition.js';
import type { PartitionReplica } from '../../broker/partition-replica.js';
import { internalTopic } from '../../broker/state/state-log-partition.js';
import { partitionDirectory } from '../../broker/topic-directories.js';
import { type Clock, type ClockTimer, systemClock } from '../../clock.js';
import { InvalidArgumentError, SpillwayError } from '../../errors.js';
import {
  highWatermarkCheckpointIntervalMsDefault,
  replicaFetchMaxBytesDefault,
  replicaLagTimeMsDefault,
  replicationTimeoutMsDefault,
} from '../../limits.js';
import type {
  OffsetForLeaderEpochRequest,
  OffsetForLeaderEpochResult,
  ProduceOptions,
  ReplicaFetchRequest,
  ReplicaFetchResult,
  ReplicaPartitionStats,
  ReplicationService,
} from '../../protocol/replication-api.js';
import { BrokerConnections } from '../broker-connections.js';
import type { BrokerEndpoint, IsrChanger, PartitionAssignment, ReplicaManager } from '../partition-role.js';
import { LeaderEpochHistory } from './leader-epoch-history.js';
import { PartitionFollower } from './partition-follower.js';
import { PartitionLeader } from './partition-leader.js';
import { partitionKey, type ReplicaContext } from './replica-context.js';
import { ReplicaReceiveBuffers } from './replica-receive-buffers.js';
import { ReplicaStateStore, replicaStateTopicName } from './replica-state-store.js';

export interface ReplicaManagerOptions {
  brokerId: number;
  isrChanger: IsrChanger;
  /** Default 10 000. */
  replicaLagTimeMs?: number;
  /** Default 30 000. */
  replicationTimeoutMs?: number;
  /** Long-poll of a follower's fetch. Default 500. */
  replicaFetchMaxWaitMs?: number;
  replicaFetchMaxBytes?: number;
  /** Token followers present to leaders running with authentication (cluster admin). */
  token?: string;
  /**
   * How often each replicated partition's high watermark is checkpointed into `__leader_epochs`
   * (when it changed; also when a role stops). Default 5 000 (Kafka's
   * replica.high.watermark.checkpoint.interval.ms).
   */
  highWatermarkCheckpointIntervalMs?: number;
  /** Default: systemClock. */
  clock?: Clock;
  /** Where warnings go. Default: stderr. */
  warn?: (message: string) => void;
}

/** A partition that is no longer replicated here: fenced, nothing visible past what it had. */
class FencedReplica implements PartitionReplica {
  readonly highWatermark: number;
  private readonly what: string;

  constructor(what: string, highWatermark: number) {
    this.what = what;
    this.highWatermark = highWatermark;
  }

  admitProduce(_options: ProduceOptions | undefined): void {
    throw new SpillwayError('NOT_LEADER', `${this.what} is not served by this broker now`);
  }

  appended(): void {}

  replicated(): Promise<void> {
    return Promise.reject(new SpillwayError('NOT_LEADER', `${this.what} is not served by this broker now`));
  }
}

type Role = PartitionLeader | PartitionFollower;

interface PartitionState {
  role: Role | null;
  /** Highest epoch applied (-1: none yet). */
  epoch: number;
  history: LeaderEpochHistory | null;
  /** Serializes assignment changes of this partition. */
  chain: Promise<void>;
}

export class BrokerReplicaManager implements ReplicaManager, ReplicationService {
  readonly brokerId: number;
  private readonly broker: BrokerEngine;
  private readonly context: ReplicaContext;
  private readonly partitions = new Map<string, PartitionState>();
  private readonly connections: BrokerConnections;
  /**
   * The local replica state log (HW checkpoints, epoch histories); null when it could not be opened
   * (warned: HWs start at the log start, and no partition can be replicated: `storeFailure`).
   */
  private readonly store: Promise<ReplicaStateStore | null>;
  private storeFailure: unknown = null;
  private readonly checkpointTimer: ClockTimer;
  private closed = false;

  private constructor(broker: BrokerEngine, options: ReplicaManagerOptions) {
    if (!Number.isSafeInteger(options.brokerId) || options.brokerId < 0) {
      throw new InvalidArgumentError(`brokerId must be a non-negative integer, got ${options.brokerId}`);
    }
    this.broker = broker;
    this.brokerId = options.brokerId;
    this.connections = new BrokerConnections(
      `spillway-replica-${options.brokerId}`,
      options.token,
      'replication',
    );
    this.context = {
      brokerId: options.brokerId,
      clock: options.clock ?? systemClock,
      isrChanger: options.isrChanger,
      replicaLagTimeMs: options.replicaLagTimeMs ?? replicaLagTimeMsDefault,
      replicationTimeoutMs: options.replicationTimeoutMs ?? replicationTimeoutMsDefault,
      replicaFetchMaxWaitMs: options.replicaFetchMaxWaitMs ?? 500,
      replicaFetchMaxBytes: options.replicaFetchMaxBytes ?? replicaFetchMaxBytesDefault,
      receiveBuffers: new ReplicaReceiveBuffers(options.replicaFetchMaxBytes ?? replicaFetchMaxBytesDefault),
      wakeConsumers: (partition) => broker.messages.wake(partition),
      warn: options.warn ?? ((message) => process.stderr.write(`spillway replication: ${message}\n`)),
    };
    this.store = ReplicaStateStore.open({ dataDir: broker.dataDir, clock: this.context.clock }).then(
      (store) => {
        // Listed and described as the other internal topics (`topic list --internal`), read-only.
        if (!this.closed) broker.topics.serveInternal(internalTopic(replicaStateTopicName, store.partition));
        return store;
      },
      (error: unknown) => {
        this.storeFailure = error;
        this.context.warn(
          `${replicaStateTopicName} could not be opened: no partition can be replicated here (its leader epoch history lives there): ${error instanceof Error ? error.message : String(error)}`,
        );
        return null;
      },
    );
    broker.topics.onTopicDeleted((topic) => void this.topicDeleted(topic.name, topic.partitionCount));
    const interval = options.highWatermarkCheckpointIntervalMs ?? highWatermarkCheckpointIntervalMsDefault;
    if (!Number.isSafeInteger(interval) || interval < 1) {
      throw new InvalidArgumentError(
        `highWatermarkCheckpointIntervalMs must be a positive integer, got ${interval}`,
      );
    }
    this.checkpointTimer = this.context.clock.setInterval(() => void this.checkpointAll(), interval, {
      unref: true,
    });
  }

  /** Wires replication into `broker`: it answers REPLICA_FETCH and OFFSET_FOR_LEADER_EPOCH from now on. */
  static attach(broker: BrokerEngine, options: ReplicaManagerOptions): BrokerReplicaManager {
    if (broker.replication !== undefined) {
      throw new InvalidArgumentError('this broker already has a replica manager');
    }
    const manager = new BrokerReplicaManager(broker, options);
    broker.replication = manager;
    return manager;
  }

  /** The role of a partition (tests, metrics): its leader or follower object, or null. */
  roleOf(topic: string, partition: number): Role | null {
    return this.partitions.get(partitionKey(topic, partition))?.role ?? null;
  }

  /** Receive buffers the followers of this broker have made so far (tests: reused, not one per answer). */
  get receiveBuffersCreated(): number {
    return this.context.receiveBuffers.created;
  }

  /** The leader epoch history of a partition (null before its first assignment). */
  historyOf(topic: string, partition: number): LeaderEpochHistory | null {
    return this.partitions.get(partitionKey(topic, partition))?.history ?? null;
  }

  applyAssignment(
    assignment: PartitionAssignment,
    endpoints: ReadonlyMap<number, BrokerEndpoint>,
  ): Promise<void> {
    checkAssignment(assignment);
    return this.serialized(assignment.topic, assignment.partition, (state) =>
      this.apply(state, assignment, endpoints),
    );
  }

  removePartition(topic: string, partition: number): Promise<void> {
    return this.serialized(topic, partition, async (state) => {
      await this.stopRole(state, 'the partition was removed from this broker');
      const local = this.localPartition(topic, partition);
      if (local !== null) local.replica = new FencedReplica(`${topic}/${partition}`, local.visibleEndOffset);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const stops: Array<Promise<void>> = [];
    for (const state of this.partitions.values()) {
      stops.push(state.chain.then(() => this.stopRole(state, 'the replica manager closed')));
    }
    await Promise.all(stops);
    this.context.clock.clearTimer(this.checkpointTimer);
    const store = await this.store;
    if (store !== null) this.broker.topics.withdrawInternal(replicaStateTopicName);
    await store
      ?.close()
      .catch((error: unknown) => this.context.warn(`closing ${replicaStateTopicName}: ${String(error)}`));
    await this.connections.close();
    this.context.receiveBuffers.clear();
    if (this.broker.replication === this) this.broker.replication = undefined;
  }

  replicaFetch(request: ReplicaFetchRequest, signal?: AbortSignal): Promise<ReplicaFetchResult> {
    return this.leaderFor(request.topic, request.partition, request.leaderEpoch).replicaFetch(
      request,
      signal,
    );
  }

  offsetForLeaderEpoch(request: OffsetForLeaderEpochRequest): OffsetForLeaderEpochResult {
    const leader = this.leaderFor(request.topic, request.partition, request.leaderEpoch);
    leader.checkFollowerRequest(request.replicaId, request.leaderEpoch);
    const state = this.partitions.get(partitionKey(request.topic, request.partition))!;
    const log = this.broker.topics.partitionOf(request.topic, request.partition).log;
    return state.history!.endOffsetFor(request.epoch, log.logEndOffset);
  }

  stats(): ReplicaPartitionStats[] {
    const stats: ReplicaPartitionStats[] = [];
    for (const state of this.partitions.values()) {
      if (state.role !== null) stats.push(state.role.stats());
    }
    return stats;
  }

  private leaderFor(topic: string, partition: number, leaderEpoch: number): PartitionLeader {
    const state = this.partitions.get(partitionKey(topic, partition));
    const role = state?.role ?? null;
    if (role instanceof PartitionLeader) return role;
    if (state !== undefined && leaderEpoch < state.epoch) {
      throw new SpillwayError(
        'FENCED_LEADER_EPOCH',
        `epoch ${leaderEpoch} of ${topic}/${partition} is stale: the current one is ${state.epoch}`,
      );
    }
    throw new SpillwayError('NOT_LEADER', `broker ${this.brokerId} does not lead ${topic}/${partition}`);
  }

  private serialized(
    topic: string,
    partition: number,
    action: (state: PartitionState) => Promise<void>,
  ): Promise<void> {
    if (this.closed)
      return Promise.reject(new SpillwayError('BROKER_CLOSING', 'the replica manager is closed'));
    const key = partitionKey(topic, partition);
    let state = this.partitions.get(key);
    if (state === undefined) {
      state = { role: null, epoch: -1, history: null, chain: Promise.resolve() };
      this.partitions.set(key, state);
    }
    const target = state;
    const run = target.chain.then(() => action(target));
    target.chain = run.catch(() => undefined);
    return run;
  }

  private async apply(
    state: PartitionState,
    assignment: PartitionAssignment,
    endpoints: ReadonlyMap<number, BrokerEndpoint>,
  ): Promise<void> {
    const { topic, partition, leaderEpoch, leaderId } = assignment;
    if (leaderEpoch < state.epoch) return; // Stale: a newer assignment was applied already.
    const local = this.broker.topics.partitionOf(topic, partition);
    const role = state.role;
    if (leaderEpoch === state.epoch && role !== null) {
      if (role instanceof PartitionLeader && leaderId === this.brokerId) {
        role.update(assignment);
        return;
      }
      if (role instanceof PartitionFollower && role.leaderId === leaderId) return;
    }
    // The HW this replica knew; at its first assignment since the broker started, the one last
    // checkpointed (capped by the log end: a log that lost a tail), else the log start. It then
    // moves up as the ISR fetches: a restarted leader shows consumers nothing the ISR may lack.
    const store = await this.store;
    const checkpointed = store?.highWatermarkOf(topic, partition);
    const previousHighWatermark =
      local.replica?.highWatermark ??
      (checkpointed === undefined
        ? local.log.logStartOffset
        : Math.max(local.log.logStartOffset, Math.min(checkpointed, local.log.logEndOffset)));
    await this.stopRole(state, `epoch ${leaderEpoch}: broker ${leaderId} leads`);
    state.epoch = leaderEpoch;
    const what = `${topic}/${partition}`;
    // Fenced while the epoch history is read and written: nothing is appended meanwhile.
    local.replica = new FencedReplica(what, previousHighWatermark);
    if (!assignment.replicas.includes(this.brokerId)) return;
    if (state.history === null) {
      if (store === null) throw this.storeFailure;
      state.history = await LeaderEpochHistory.open({
        store,
        topic,
        partition,
        createdAtMs: this.broker.topics.topicNamed(topic).createdAtMs,
        directory: partitionDirectory(this.broker.dataDir, topic, partition),
        logEndOffset: local.log.logEndOffset,
      });
    }
    if (leaderId === this.brokerId) {
      // The epoch is durable before the first produce of it is admitted (a crash then leaves no
      // record of an epoch the recovered history lacks).
      await state.history.assign(leaderEpoch, local.log.logEndOffset);
      const leader = new PartitionLeader(
        local,
        assignment,
        state.history,
        this.context,
        previousHighWatermark,
      );
      state.role = leader;
      local.replica = leader;
      this.context.wakeConsumers(local);
      return;
    }
    const endpoint = endpoints.get(leaderId);
    if (endpoint === undefined) {
      local.replica = new FencedReplica(what, previousHighWatermark);
      throw new InvalidArgumentError(`no endpoint for broker ${leaderId}, the leader of ${what}`);
    }
    const follower = new PartitionFollower(
      local,
      assignment,
      state.history,
      this.context,
      () => this.connections.to(endpoint.url),
      previousHighWatermark,
    );
    state.role = follower;
    local.replica = follower;
    follower.start();
  }

  private async stopRole(state: PartitionState, why: string): Promise<void> {
    const role = state.role;
    state.role = null;
    if (role instanceof PartitionLeader) role.stop(why);
    else if (role instanceof PartitionFollower) await role.stop();
    if (role !== null) await this.checkpoint(role);
  }

  /** Checkpoints the HW of every role (the interval timer). */
  private async checkpointAll(): Promise<void> {
    await Promise.all(
      [...this.partitions.values()].map((state) =>
        state.role === null ? undefined : this.checkpoint(state.role),
      ),
    );
  }

  private async checkpoint(role: Role): Promise<void> {
    const store = await this.store;
    if (store === null) return;
    const { topic, partition } = role.stats();
    try {
      await store.checkpoint(topic, partition, role.highWatermark);
    } catch (error) {
      this.context.warn(
        `HW checkpoint of ${topic}/${partition}: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }

  /** A topic deleted here: its histories and HWs are forgotten (a new topic of that name starts afresh). */
  private async topicDeleted(topic: string, partitionCount: number): Promise<void> {
    if (this.closed) return;
    for (let partition = 0; partition < partitionCount; partition++) {
      const state = this.partitions.get(partitionKey(topic, partition));
      if (state !== undefined) state.history = null;
    }
    const store = await this.store;
    await store
      ?.forgetTopic(topic, partitionCount)
      .catch((error: unknown) =>
        this.context.warn(`forgetting the replica state of deleted topic ${topic}: ${String(error)}`),
      );
  }

  private localPartition(topic: string, partition: number): Partition | null {
    try {
      return this.broker.topics.partitionOf(topic, partition);
    } catch {
      return null;
    }
  }
}

function checkAssignment(assignment: PartitionAssignment): void {
  const ids = (value: unknown): boolean =>
    Array.isArray(value) && value.every((id) => Number.isSafeInteger(id) && id >= 0);
  if (
    typeof assignment !== 'object' ||
    assignment === null ||
    typeof assignment.topic !== 'string' ||
    !Number.isSafeInteger(assignment.partition) ||
    !Number.isSafeInteger(assignment.leaderId) ||
    !Number.isSafeInteger(assignment.leaderEpoch) ||
    assignment.leaderEpoch < 0 ||
    !ids(assignment.replicas) ||
    !ids(assignment.isr) ||
    (assignment.minInSyncReplicas !== undefined &&
      (!Number.isSafeInteger(assignment.minInSyncReplicas) || assignment.minInSyncReplicas < 1))
  ) {
    throw new InvalidArgumentError(`malformed partition assignment ${JSON.stringify(assignment)}`);
  }
}
