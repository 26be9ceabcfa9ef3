/**
 * The leader role of one partition replica (docs/CLUSTER-REPLICATION.md): takes produces at its
 * leader epoch, answers its followers' REPLICA_FETCH from its log (batches unchanged), tracks each
 * follower's log end and durable offset, keeps the in-sync replica set (ISR) through the control
 * plane's IsrChanger, and advances the high watermark (HW):
 *
 *   HW = min over the ISR of what each member has: its log end, or with durability `always` its
 *        durable offset (the leader's own included). It never goes back while this role lives.
 *
 * Consumers see only below the HW (Partition.visibleEndOffset); an `acks: 'all'` produce is
 * acknowledged once the HW passes its last record.
 *
 * ISR (Kafka's rules, KIP-497 style): a follower is caught up when it fetches from the leader's log
 * end, or from where the log ended at its previous fetch (so a steady stream of produces does not
 * count against it). Every replicaLagTimeMs / 2 the leader asks to drop the followers that have not
 * been caught up for replicaLagTimeMs; a follower outside the ISR whose log end reaches the HW and
 * this epoch's start offset is asked back in. One IsrChanger call at a time; a stale answer (null:
 * another epoch is current) leaves the ISR as it was, and the control plane's next assignment
 * decides. A leader whose followers left it (a zombie after a failover) cannot shrink the ISR, so
 * its `acks: 'all'` produces time out instead of being acknowledged.
 *
 * Bounds: one waiting REPLICA_FETCH per follower (a newer one answers the older), at most
 * replicationWaitersPerPartitionMax produces waiting for replication (BACKPRESSURE before the append).
 * Single-threaded like the rest of the broker.
 */
import type { Partition } from '../../broker/partition.js';
import type { PartitionReplica } from '../../broker/partition-replica.js';
import type { ClockTimer } from '../../clock.js';
import { InvalidArgumentError, SpillwayError } from '../../errors.js';
import { replicationWaitersPerPartitionMax } from '../../limits.js';
import type {
  FollowerStats,
  ProduceOptions,
  ReplicaFetchRequest,
  ReplicaFetchResult,
  ReplicaPartitionStats,
} from '../../protocol/replication-api.js';
import type { PartitionAssignment } from '../partition-role.js';
import type { LeaderEpochHistory } from './leader-epoch-history.js';
import type { ReplicaContext } from './replica-context.js';

interface FollowerState {
  logEndOffset: number;
  durableOffset: number;
  /** Monotonic time the follower was last known caught up with the leader's log end. */
  lastCaughtUpMs: number;
  /** Leader's log end and time at the follower's previous fetch. */
  lastFetchLeaderEndOffset: number;
  lastFetchMs: number;
}

interface AckWaiter {
  endOffset: number;
  resolve: () => void;
  reject: (error: SpillwayError) => void;
  timer: ClockTimer;
}

/**
 * A follower that has not fetched in this epoch: it holds the HW where it is, and counts as caught
 * up from `now` (it gets replicaLagTimeMs to show up before it leaves the ISR).
 */
function unknownFollower(now: number): FollowerState {
  return {
    logEndOffset: 0,
    durableOffset: 0,
    lastCaughtUpMs: now,
    lastFetchLeaderEndOffset: 0,
    lastFetchMs: now,
  };
}

/** Why a leader stopped leading, for the errors of what was waiting. */
function notLeader(topic: string, partition: number, why: string): SpillwayError {
  return new SpillwayError('NOT_LEADER', `not the leader of ${topic}/${partition} (${why})`);
}

export class PartitionLeader implements PartitionReplica {
  readonly epoch: number;
  private readonly partition: Partition;
  private readonly history: LeaderEpochHistory;
  private readonly context: ReplicaContext;
  private replicas: number[];
  private inSync: number[];
  private minInSyncReplicas: number;
  private hw: number;
  /** Offset at which this epoch started (the log end when the role began). */
  readonly epochStartOffset: number;
  private readonly followers = new Map<number, FollowerState>();
  private readonly ackWaiters: AckWaiter[] = [];
  /** The waiting REPLICA_FETCH of each follower: calling it answers it. */
  private readonly fetchWakers = new Map<number, () => void>();
  private isrChangeInFlight = false;
  /**
   * The ISR asked for while a change is in flight: the HW counts the union of it and the current
   * ISR (KIP-497's maximal ISR), so a follower the controller may already hold in sync (and elect)
   * has everything acknowledged, and one being dropped still counts until the drop is confirmed.
   */
  private pendingIsr: readonly number[] = [];
  private readonly lagTimer: ClockTimer;
  private stopped: string | null = null;

  constructor(
    partition: Partition,
    assignment: PartitionAssignment,
    history: LeaderEpochHistory,
    context: ReplicaContext,
    initialHighWatermark: number,
  ) {
    this.partition = partition;
    this.epoch = assignment.leaderEpoch;
    this.history = history;
    this.context = context;
    this.replicas = [...assignment.replicas];
    this.inSync = [...assignment.isr];
    if (!this.inSync.includes(context.brokerId)) this.inSync.push(context.brokerId);
    this.minInSyncReplicas = assignment.minInSyncReplicas ?? 1;
    const log = partition.log;
    // The replica manager has made this epoch durable in the history at the log end (awaited).
    this.epochStartOffset = log.logEndOffset;
    this.hw = Math.min(initialHighWatermark, log.logEndOffset);
    const now = context.clock.monotonicMs();
    for (const id of this.replicas) {
      if (id === context.brokerId) continue;
      // Unknown until it fetches: it holds the HW where it is, and counts as caught up from now on
      // (it gets replicaLagTimeMs to show up before it leaves the ISR).
      this.followers.set(id, unknownFollower(now));
    }
    const interval = Math.max(1, Math.floor(context.replicaLagTimeMs / 2));
    this.lagTimer = context.clock.setInterval(() => this.checkLaggingFollowers(), interval, { unref: true });
    this.advanceHighWatermark();
  }

  get highWatermark(): number {
    return this.hw;
  }

  /** The in-sync replica set as this leader knows it (itself included). */
  get isr(): readonly number[] {
    return this.inSync;
  }

  /** Metrics: the ISR, the HW and each follower's lag (offsets behind the log end, ms since caught up). */
  stats(): ReplicaPartitionStats {
    const log = this.partition.openLog;
    const logEnd = log === null ? this.hw : log.logEndOffset;
    const now = this.context.clock.monotonicMs();
    const followers: FollowerStats[] = [];
    for (const [brokerId, follower] of this.followers) {
      const lagOffsets = Math.max(0, logEnd - follower.logEndOffset);
      followers.push({
        brokerId,
        inSync: this.inSync.includes(brokerId),
        lagOffsets,
        lagMs: lagOffsets === 0 ? 0 : Math.max(0, now - follower.lastCaughtUpMs),
      });
    }
    return {
      topic: this.partition.topic,
      partition: this.partition.index,
      role: 'leader',
      leaderEpoch: this.epoch,
      highWatermark: this.hw,
      logEndOffset: logEnd,
      isrSize: this.inSync.length,
      replicaCount: this.replicas.length,
      followers,
    };
  }

  /** What each follower reported last (tests, metrics). */
  followerLogEndOffset(brokerId: number): number | undefined {
    return this.followers.get(brokerId)?.logEndOffset;
  }

  /**
   * A newer assignment at the same epoch (the control plane echoing an ISR change, or changing the
   * replica set or minInSyncReplicas): taken unless an ISR change of ours is in flight.
   */
  update(assignment: PartitionAssignment): void {
    this.minInSyncReplicas = assignment.minInSyncReplicas ?? this.minInSyncReplicas;
    this.replicas = [...assignment.replicas];
    const now = this.context.clock.monotonicMs();
    for (const id of this.replicas) {
      if (id !== this.context.brokerId && !this.followers.has(id)) {
        this.followers.set(id, unknownFollower(now));
      }
    }
    for (const id of [...this.followers.keys()]) {
      if (!this.replicas.includes(id)) this.followers.delete(id);
    }
    if (!this.isrChangeInFlight) this.setIsr(assignment.isr);
  }

  admitProduce(options: ProduceOptions | undefined): void {
    const { topic, index } = this.partition;
    if (this.stopped !== null) throw notLeader(topic, index, this.stopped);
    const epoch = options?.leaderEpoch;
    if (epoch !== undefined && epoch !== this.epoch) {
      if (epoch < this.epoch) {
        throw new SpillwayError(
          'FENCED_LEADER_EPOCH',
          `leader epoch ${epoch} of ${topic}/${index} is stale: the current one is ${this.epoch}`,
        );
      }
      throw notLeader(topic, index, `epoch ${epoch} is newer than this leader's ${this.epoch}`);
    }
    if ((options?.acks ?? 'all') === 'all') {
      if (this.inSync.length < this.minInSyncReplicas) {
        throw new SpillwayError(
          'NOT_ENOUGH_REPLICAS',
          `${topic}/${index} has ${this.inSync.length} in-sync replicas (${this.inSync.join(', ')}), fewer than minInSyncReplicas ${this.minInSyncReplicas}`,
        );
      }
      if (this.ackWaiters.length >= replicationWaitersPerPartitionMax) {
        throw new SpillwayError(
          'BACKPRESSURE',
          `${replicationWaitersPerPartitionMax} produces to ${topic}/${index} already wait for replication`,
        );
      }
    }
  }

  appended(): void {
    this.wakeFetches();
    this.advanceHighWatermark();
  }

  replicated(endOffset: number, options: ProduceOptions | undefined): Promise<void> {
    this.advanceHighWatermark();
    if ((options?.acks ?? 'all') === 'leader') return Promise.resolve();
    if (this.stopped !== null) {
      return Promise.reject(notLeader(this.partition.topic, this.partition.index, this.stopped));
    }
    if (this.hw >= endOffset) return this.checkedAck();
    return new Promise<void>((resolve, reject) => {
      const waiter: AckWaiter = {
        endOffset,
        resolve,
        reject,
        timer: this.context.clock.setTimeout(() => {
          const at = this.ackWaiters.indexOf(waiter);
          if (at >= 0) this.ackWaiters.splice(at, 1);
          reject(
            new SpillwayError(
              'TIMEOUT',
              `${this.partition.topic}/${this.partition.index}: not replicated to the in-sync replicas (${this.inSync.join(', ')}) within ${this.context.replicationTimeoutMs} ms; it may or may not survive a leader change`,
            ),
          );
        }, this.context.replicationTimeoutMs),
      };
      // Appends finish in offset order almost always: keep the list sorted from the end.
      let at = this.ackWaiters.length;
      while (at > 0 && this.ackWaiters[at - 1]!.endOffset > endOffset) at--;
      this.ackWaiters.splice(at, 0, waiter);
    });
  }

  /**
   * A follower's REPLICA_FETCH: records what it has, maybe moves it into the ISR and the HW on,
   * then answers with the batches from its fetch offset (long-polling when there are none and the
   * follower knows the HW already).
   */
  async replicaFetch(request: ReplicaFetchRequest, signal?: AbortSignal): Promise<ReplicaFetchResult> {
    this.checkFollowerRequest(request.replicaId, request.leaderEpoch);
    const log = this.partition.log;
    const follower = this.followers.get(request.replicaId)!;
    const now = this.context.clock.monotonicMs();
    const leaderEnd = log.logEndOffset;
    if (request.fetchOffset > leaderEnd) {
      throw new SpillwayError(
        'OFFSET_OUT_OF_RANGE',
        `replica ${request.replicaId} fetches ${this.partition.topic}/${this.partition.index} from ${request.fetchOffset}, past the leader's log end ${leaderEnd}: truncate by OFFSET_FOR_LEADER_EPOCH first`,
      );
    }
    if (request.fetchOffset >= leaderEnd) follower.lastCaughtUpMs = now;
    else if (request.fetchOffset >= follower.lastFetchLeaderEndOffset) {
      follower.lastCaughtUpMs = Math.max(follower.lastCaughtUpMs, follower.lastFetchMs);
    }
    follower.lastFetchLeaderEndOffset = leaderEnd;
    follower.lastFetchMs = now;
    follower.logEndOffset = request.fetchOffset;
    follower.durableOffset = Math.min(request.durableOffset, request.fetchOffset);
    this.maybeExpandIsr(request.replicaId, follower);
    this.advanceHighWatermark();
    if (
      request.fetchOffset >= log.logEndOffset &&
      this.hw <= request.highWatermark &&
      request.maxWaitMs > 0
    ) {
      await this.waitForData(request.replicaId, request.maxWaitMs, signal);
      if (this.stopped !== null) throw notLeader(this.partition.topic, this.partition.index, this.stopped);
    }
    const read = this.partition.log.read(request.fetchOffset, request.maxBytes);
    return {
      records: read.bytes,
      batchCount: read.batchCount,
      nextOffset: read.nextOffset,
      logStartOffset: read.logStartOffset,
      logEndOffset: read.logEndOffset,
      highWatermark: this.hw,
      epochs: this.history.entriesCovering(
        request.fetchOffset,
        Math.max(read.nextOffset, request.fetchOffset + 1),
      ),
    };
  }

  /** Fencing of a follower's request: NOT_LEADER / FENCED_LEADER_EPOCH / not a replica. */
  checkFollowerRequest(replicaId: number, leaderEpoch: number): void {
    const { topic, index } = this.partition;
    if (this.stopped !== null) throw notLeader(topic, index, this.stopped);
    if (leaderEpoch < this.epoch) {
      throw new SpillwayError(
        'FENCED_LEADER_EPOCH',
        `replica ${replicaId} follows ${topic}/${index} at epoch ${leaderEpoch}; the current one is ${this.epoch}`,
      );
    }
    if (leaderEpoch > this.epoch) {
      throw notLeader(topic, index, `epoch ${leaderEpoch} is newer than this leader's ${this.epoch}`);
    }
    if (replicaId === this.context.brokerId || !this.followers.has(replicaId)) {
      throw new InvalidArgumentError(`broker ${replicaId} is not a follower of ${topic}/${index}`);
    }
  }

  /** Stops leading: waiting produces fail with NOT_LEADER, waiting fetches are answered. */
  stop(why: string): void {
    if (this.stopped !== null) return;
    this.stopped = why;
    this.context.clock.clearTimer(this.lagTimer);
    const error = notLeader(this.partition.topic, this.partition.index, why);
    for (const waiter of this.ackWaiters.splice(0)) {
      this.context.clock.clearTimer(waiter.timer);
      waiter.reject(error);
    }
    this.wakeFetches();
  }

  private checkedAck(): Promise<void> {
    if (this.inSync.length < this.minInSyncReplicas) {
      return Promise.reject(this.afterAppendShortfall());
    }
    return Promise.resolve();
  }

  private afterAppendShortfall(): SpillwayError {
    return new SpillwayError(
      'NOT_ENOUGH_REPLICAS',
      `${this.partition.topic}/${this.partition.index}: written, but the in-sync replicas (${this.inSync.join(', ')}) fell below minInSyncReplicas ${this.minInSyncReplicas} before it was replicated; it may or may not survive a leader change`,
    );
  }

  /** What a member of the ISR counts toward the HW. */
  private replicatedOffsetOf(brokerId: number): number {
    const always = this.partition.durability === 'always';
    if (brokerId === this.context.brokerId) {
      const log = this.partition.log;
      return always ? Math.min(log.durableOffset, log.logEndOffset) : log.logEndOffset;
    }
    const follower = this.followers.get(brokerId);
    if (follower === undefined) return 0;
    return always ? follower.durableOffset : follower.logEndOffset;
  }

  private advanceHighWatermark(): void {
    if (this.stopped !== null || this.partition.openLog === null) return;
    let candidate = Number.MAX_SAFE_INTEGER;
    for (const id of this.inSync) candidate = Math.min(candidate, this.replicatedOffsetOf(id));
    for (const id of this.pendingIsr) candidate = Math.min(candidate, this.replicatedOffsetOf(id));
    if (candidate <= this.hw) return;
    this.hw = candidate;
    const shortfall = this.inSync.length < this.minInSyncReplicas;
    let done = 0;
    while (done < this.ackWaiters.length && this.ackWaiters[done]!.endOffset <= candidate) done++;
    for (const waiter of this.ackWaiters.splice(0, done)) {
      this.context.clock.clearTimer(waiter.timer);
      if (shortfall) waiter.reject(this.afterAppendShortfall());
      else waiter.resolve();
    }
    this.context.wakeConsumers(this.partition);
    // Followers learn the new HW at once (their consumers and their HW on a leader change).
    this.wakeFetches();
  }

  private waitForData(replicaId: number, maxWaitMs: number, signal?: AbortSignal): Promise<void> {
    this.fetchWakers.get(replicaId)?.();
    return new Promise<void>((resolve) => {
      const done = (): void => {
        if (this.fetchWakers.get(replicaId) === done) this.fetchWakers.delete(replicaId);
        this.context.clock.clearTimer(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = this.context.clock.setTimeout(done, maxWaitMs);
      signal?.addEventListener('abort', done, { once: true });
      this.fetchWakers.set(replicaId, done);
    });
  }

  private wakeFetches(): void {
    if (this.fetchWakers.size === 0) return;
    for (const wake of [...this.fetchWakers.values()]) wake();
  }

  private maybeExpandIsr(replicaId: number, follower: FollowerState): void {
    if (this.inSync.includes(replicaId) || this.isrChangeInFlight) return;
    if (follower.logEndOffset < this.hw || follower.logEndOffset < this.epochStartOffset) return;
    void this.changeIsr(
      [...this.inSync, replicaId].sort((a, b) => a - b),
      `replica ${replicaId} caught up`,
    );
  }

  private checkLaggingFollowers(): void {
    if (this.stopped !== null || this.isrChangeInFlight) return;
    const now = this.context.clock.monotonicMs();
    const log = this.partition.openLog;
    if (log === null) return;
    const lagging = this.inSync.filter((id) => {
      if (id === this.context.brokerId) return false;
      const follower = this.followers.get(id);
      if (follower === undefined) return true;
      if (follower.logEndOffset >= log.logEndOffset) {
        follower.lastCaughtUpMs = now;
        return false;
      }
      return now - follower.lastCaughtUpMs > this.context.replicaLagTimeMs;
    });
    if (lagging.length === 0) return;
    const kept = this.inSync.filter((id) => !lagging.includes(id));
    void this.changeIsr(
      kept,
      `replicas ${lagging.join(', ')} lag more than ${this.context.replicaLagTimeMs} ms`,
    );
  }

  private async changeIsr(isr: number[], why: string): Promise<void> {
    this.isrChangeInFlight = true;
    this.pendingIsr = isr;
    const { topic, index } = this.partition;
    try {
      const result = await this.context.isrChanger.changeIsr(topic, index, this.epoch, isr, [...this.inSync]);
      if (this.stopped !== null) return;
      if (result === null || result.leaderEpoch !== this.epoch) {
        this.context.warn(
          `ISR change of ${topic}/${index} to [${isr.join(', ')}] (${why}) refused: epoch ${this.epoch} is no longer current`,
        );
        return;
      }
      this.setIsr(result.isr);
    } catch (error) {
      // Retried by the next lag check or fetch.
      this.context.warn(
        `ISR change of ${topic}/${index} to [${isr.join(', ')}] (${why}) failed: ${String(error)}`,
      );
    } finally {
      this.isrChangeInFlight = false;
      this.pendingIsr = [];
      this.advanceHighWatermark();
    }
  }

  private setIsr(isr: readonly number[]): void {
    const next = [...isr];
    if (!next.includes(this.context.brokerId)) next.push(this.context.brokerId);
    const now = this.context.clock.monotonicMs();
    for (const id of next) {
      // A member that just joined counts as caught up from now on.
      const follower = this.followers.get(id);
      if (follower !== undefined && !this.inSync.includes(id)) follower.lastCaughtUpMs = now;
    }
    this.inSync = next;
    this.advanceHighWatermark();
  }
}
