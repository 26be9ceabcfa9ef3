/**
 * The group coordinator (`BrokerApi.groups`, protocol/group-api.ts): members, generations, session
 * timeouts, sticky cooperative assignment (group mode), committed offsets (group mode) and member
 * positions (broadcast), stored in `__consumer_offsets` (consumer-offsets-store.ts).
 *
 * Group mode, per partition: `target` is where the sticky assignor (sticky-assignor.ts) wants it,
 * `owner` is who holds it now. A free partition goes to its target at once; a held one whose target
 * is another member is "revoking" for its owner, and becomes the target's only when the owner
 * releases it (after committing), leaves, or loses its session. Only the owner may fetch or commit
 * it (else FENCED_GENERATION): a member that lost a partition cannot move the group's offset back.
 *
 * Generations: bumped at every membership or partition change, written to `__consumer_offsets`
 * (a join answers once it is durable), so numbers keep growing across restarts.
 *
 * Liveness, on the broker's clock: a member is removed `sessionTimeoutMs` after its last heartbeat
 * was answered unless another arrived (a waiting heartbeat keeps it alive), and at once when its
 * session closes (session.onClose: a client process killed closes its connection).
 *
 * Member ids: the clientId, a dash and 128 random bits (unguessable), in group mode; a broadcast
 * member names itself.
 *
 * Across a coordinator failover (cluster only, `coordinating` false at construction): with every
 * generation and every ownership change (join, leave, timeout, release) the group's members and
 * partition ownership are written to `__consumer_offsets` too (`m` record, consumer-offsets-store.ts;
 * a rebalance tells the members only once it is stored). `startCoordinating` restores them, each
 * without a session, its session timeout running from then on the broker clock; the generation is
 * kept. A HEARTBEAT, GROUP_FETCH, COMMIT_OFFSETS, RELEASE_PARTITIONS or LEAVE_GROUP naming a restored
 * member re-attaches it to the session it came on, when that session has the same clientId and
 * principal the member joined with (the proof of identity: the unguessable id plus the client's
 * identity; with authentication on, the principal's token). Its first heartbeat is answered at once
 * with a view version above the client's, so the client takes the view (keeping what it holds).
 * Once attached, a member is tied to its session as on a single broker. A group whose record would
 * pass groupMembershipRecordBytesMax is not stored (its members join again after a failover).
 * A single broker stores and restores no member (its clients' connections end with it).
 *
 * Retention: a group with no members keeps its offsets, positions and generation for `retentionMs`
 * (default 7 days; the time it became empty is stored with its generation, so a restart does not
 * reset it), then they are deleted and the group forgotten (a pass at most every minute on the
 * clock). Offsets and positions of a deleted topic are deleted with it (also at open, for a topic
 * deleted by a broker that crashed before it could), so a topic created again under the name starts
 * from `from`, not from the old topic's offsets.
 *
 * Bounds: groupsMax groups, groupMembersMax members per group, groupCommitOffsetsMax offsets per
 * commit, groupCommitsPendingMax commits not yet durable, groupHeartbeatsWaitingPerMemberMax
 * waiting heartbeats per member. One event loop; nothing here is thread-safe.
 */
import { randomBytes } from 'node:crypto';
import type { Clock, ClockTimer } from '../../clock.js';
import { InvalidArgumentError, SpillwayError } from '../../errors.js';
import {
  groupCommitVisibleWaitMs,
  groupExpiryCheckIntervalMsMax,
  groupHeartbeatsWaitingPerMemberMax,
  groupMembershipRecordBytesMax,
  groupMembersMax,
  groupSessionTimeoutMsDefault,
  groupsMax,
} from '../../limits.js';
import type { FetchOptions, FetchResult, MessageService } from '../../protocol/broker-api.js';
import type {
  AssignedPartition,
  CommitOffsetsRequest,
  GroupDescription,
  GroupFetchRequest,
  GroupMode,
  GroupPartitionState,
  GroupService,
  GroupSummary,
  GroupView,
  HeartbeatRequest,
  JoinGroupRequest,
  MemberRequest,
  PartitionRef,
  ReleasePartitionsRequest,
} from '../../protocol/group-api.js';
import type { Session } from '../../protocol/session.js';
import type { BrokerTopics } from '../broker-topics.js';
import type { Lifecycle } from '../lifecycle.js';
import {
  type ConsumerOffsetsStore,
  type GenerationRecord,
  generationKey,
  isGenerationRecord,
  isMembershipRecord,
  type MembershipRecord,
  membershipKey,
  membershipRecordBytes,
  offsetKey,
  parseOffsetsKey,
  positionKey,
} from './consumer-offsets-store.js';
import { assignSticky } from './sticky-assignor.js';

interface Member {
  readonly id: string;
  /** The session it is attached to; null: restored after a coordinator failover, not re-attached yet. */
  session: Session | null;
  /** The identity it joined with (checked when it re-attaches). */
  readonly clientId: string | null;
  readonly principal: string | null;
  readonly sessionTimeoutMs: number;
  viewVersion: number;
  /** Restored and not heartbeated since: its next heartbeat answers at once with a newer view. */
  restored: boolean;
  expiry: ClockTimer | null;
  readonly waiting: Set<() => void>;
  unhook: () => void;
}

class GroupState {
  readonly name: string;
  mode: GroupMode;
  generation: number;
  /** The topics of the live members (all the same); empty when none. */
  topics: string[] = [];
  readonly members = new Map<string, Member>();
  /** Group mode: partition key -> member holding it. */
  readonly owner = new Map<string, string>();
  /** Group mode: partition key -> member the assignor wants it with. */
  target = new Map<string, string>();
  /** Keys of this group's stored offsets / positions (`__consumer_offsets`). */
  readonly storedKeys = new Set<string>();
  /** Since when the group has had no members (ms since the epoch); null while it has some. */
  emptySinceMs: number | null = null;

  constructor(name: string, mode: GroupMode, generation: number) {
    this.name = name;
    this.mode = mode;
    this.generation = generation;
  }
}

function partitionKey(topic: string, partition: number): string {
  return `${topic}\n${partition}`;
}

function refOf(key: string): PartitionRef {
  const cut = key.lastIndexOf('\n');
  return { topic: key.slice(0, cut), partition: Number(key.slice(cut + 1)) };
}

/** A cluster's partitions this broker holds no replica of, reached on the brokers that lead them. */
export interface RemotePartitions {
  /** True when this broker holds a replica of topic/partition (read locally, as on one broker). */
  holds(topic: string, partition: number): boolean;
  /** Reads `topic`/`partition` from `offset` (a FETCH on its leader). */
  fetch(topic: string, partition: number, offset: number, options: FetchOptions): Promise<FetchResult>;
  /** Its leader's high watermark (LIST_OFFSET latest there). */
  latestOffset(topic: string, partition: number, signal?: AbortSignal): Promise<number>;
}
export class UnknownMemberError extends SpillwayError {
  constructor(group: string, memberId: string, why: string) {
    super('UNKNOWN_MEMBER', `member '${memberId}' is not in group '${group}' (${why}): join again`);
    this.name = 'UnknownMemberError';
  }
}

export class FencedGenerationError extends SpillwayError {
  constructor(group: string, memberId: string, ref: PartitionRef, generation: number) {
    super(
      'FENCED_GENERATION',
      `partition ${ref.topic}/${ref.partition} is not member '${memberId}''s in group '${group}' generation ${generation}: take the new assignment`,
    );
    this.name = 'FencedGenerationError';
  }
}

export class GroupCoordinator implements GroupService {
  private readonly groups = new Map<string, GroupState>();
  private backgroundFailureCount = 0;

  private expiryTimer: ClockTimer | null;
  /** Why this broker does not coordinate groups now; null while it does (always on a single broker). */
  private notCoordinating: string | null = null;
  /** Bumped at every stop and start of coordinating: a write awaited across one is NOT_COORDINATOR. */
  private serviceEpoch = 0;
  private remote: RemotePartitions | null = null;
  /** Groups forgotten after their retention since the broker started (describe, tests). */
  expiredGroups = 0;
  /** Cluster: members restored by startCoordinating, and how many of them re-attached (tests). */
  restoredMembers = 0;
  reattachedMembers = 0;
  /** Cluster: membership records not written because they passed groupMembershipRecordBytesMax. */
  membershipNotStored = 0;
  /** Cluster: members and ownership are stored and restored across a coordinator failover. */
  private readonly storesMembers: boolean;

  constructor(
    private readonly topics: BrokerTopics,
    private readonly messages: MessageService,
    private readonly store: ConsumerOffsetsStore,
    private readonly clock: Clock,
    private readonly lifecycle: Lifecycle,
    private readonly retentionMs: number,
    /**
     * False (a cluster member): starts stopped, without reading or writing `__consumer_offsets`,
     * until `startCoordinating`. Default true.
     */
    coordinating = true,
  ) {
    this.storesMembers = !coordinating;
    topics.onPartitionsAdded((topic) => {
      if (this.notCoordinating === null) this.topicChanged(topic.name);
    });
    topics.onTopicDeleted((topic) => {
      if (this.notCoordinating !== null) return;
      this.topicChanged(topic.name);
      this.forgetTopic(topic.name);
    });
    // A cluster: the same for topics read from other brokers (no local hook fires for them).
    topics.onClusterTopicChanged(({ topic, kind }) => {
      if (this.notCoordinating !== null || this.remote === null) return;
      if (kind !== 'grown') this.forgetTopic(topic); // offsets of a deleted incarnation never apply again
      this.topicChanged(topic);
    });
    if (coordinating) {
      this.load(false);
      this.expiryTimer = this.armExpiryCheck();
    } else {
      this.notCoordinating = 'waiting for the cluster to name the leader of __consumer_offsets';
      this.expiryTimer = null;
    }
  }

  /** True while this broker coordinates groups (always on a single broker). */
  get coordinating(): boolean {
    return this.notCoordinating === null;
  }

  /**
   * Stops coordinating (src/cluster/state-services/: this broker no longer leads `__consumer_offsets`):
   * every member is dropped (waiting heartbeats wake and fail), nothing more is written, and every
   * request fails with NOT_COORDINATOR naming `why` until `startCoordinating`. Idempotent.
   */
  stopCoordinating(why: string): void {
    if (this.notCoordinating !== null) return;
    this.notCoordinating = why;
    this.serviceEpoch++;
    this.clock.clearTimer(this.expiryTimer);
    this.expiryTimer = null;
    for (const group of this.groups.values()) {
      for (const member of [...group.members.values()]) this.removeMember(group, member, why, false);
    }
    this.groups.clear();
    this.store.detach(new SpillwayError('NOT_COORDINATOR', `groups are not coordinated here: ${why}`));
  }

  /**
   * Coordinates again from the state `__consumer_offsets` holds now: the store recovers it from the
   * log (what replication copied), groups and offsets are rebuilt as at a broker's open, and the
   * stored members are restored without a session (see the header); a group whose partitions
   * changed meanwhile is rebalanced.
   */
  startCoordinating(): void {
    if (this.notCoordinating === null) return;
    this.store.reopen();
    this.notCoordinating = null;
    this.serviceEpoch++;
    const changed = this.load(this.storesMembers);
    this.expiryTimer = this.armExpiryCheck();
    for (const group of changed) this.rebalanceInBackground(group);
  }

  /**
   * In a cluster: every write to `__consumer_offsets` is answered only once `replicate(endOffset)`
   * resolves (the in-sync replicas have it: StateLog.replicate).
   */
  replicateWrites(replicate: (endOffset: number) => Promise<void>): void {
    this.store.state.replicate = replicate;
  }

  private armExpiryCheck(): ClockTimer {
    return this.clock.setInterval(
      () => this.expireGroups(),
      Math.min(groupExpiryCheckIntervalMsMax, this.retentionMs),
      { unref: true },
    );
  }

  private assertCoordinating(): void {
    this.lifecycle.assertOpen();
    if (this.notCoordinating !== null) {
      throw new SpillwayError('NOT_COORDINATOR', `groups are not coordinated here: ${this.notCoordinating}`);
    }
  }

  /** Awaits a write; a failure after the broker stopped coordinating meanwhile is NOT_COORDINATOR. */
  private async stored(write: Promise<void>): Promise<void> {
    const epoch = this.serviceEpoch;
    try {
      await write;
    } catch (error) {
      if (this.serviceEpoch !== epoch) this.assertCoordinatingSince(epoch);
      throw error;
    }
    this.assertCoordinatingSince(epoch);
  }

  /** NOT_COORDINATOR when the broker stopped coordinating since `epoch` (the answer would be stale). */
  private assertCoordinatingSince(epoch: number): void {
    if (this.serviceEpoch === epoch) return;
    throw new SpillwayError(
      'NOT_COORDINATOR',
      `groups are not coordinated here: ${this.notCoordinating ?? 'the coordinator moved meanwhile'}`,
    );
  }

  /**
   * Builds the groups (generation, mode, stored keys) from the store; deletes what deleted topics
   * left. With `restoreMembers` (a cluster coordinator starting) the stored members are restored;
   * returns the groups whose partitions are not the stored ones any more (to rebalance).
   */
  private load(restoreMembers: boolean): GroupState[] {
    const topics = this.topics;
    const store = this.store;
    const clock = this.clock;
    const stale: string[] = [];
    const memberships = new Map<GroupState, MembershipRecord>();
    for (const [key, value] of store.entries()) {
      const parsed = parseOffsetsKey(key);
      if (parsed === null) continue;
      let group = this.groups.get(parsed.group);
      if (group === undefined) {
        group = new GroupState(parsed.group, 'group', 0);
        this.groups.set(parsed.group, group);
      }
      if (parsed.kind === 'generation') {
        if (!isGenerationRecord(value)) continue;
        group.generation = value.generation;
        group.mode = value.mode;
        if (value.emptySinceMs !== undefined) group.emptySinceMs = value.emptySinceMs;
      } else if (parsed.kind === 'membership') {
        if (isMembershipRecord(value)) memberships.set(group, value);
      } else if (topics.has(parsed.topic)) group.storedKeys.add(key);
      else stale.push(key);
    }
    const changed: GroupState[] = [];
    if (restoreMembers) {
      for (const [group, record] of memberships) {
        if (this.restoreMembers(group, record)) changed.push(group);
      }
    }
    // No other member survives a restart: a group empty since an unknown time is empty since now.
    const now = clock.nowMs();
    for (const group of this.groups.values()) {
      if (group.members.size === 0) group.emptySinceMs ??= now;
    }
    if (stale.length > 0) this.removeInBackground(stale);
    return changed;
  }

  /**
   * Restores the members `record` stored (written with the group's current generation only), each
   * without a session and with its session timeout running; returns true when the group's
   * partitions are not the stored ones any more (a topic deleted or grown while no one coordinated).
   */
  private restoreMembers(group: GroupState, record: MembershipRecord): boolean {
    if (record.generation !== group.generation || record.members.length === 0) return false;
    group.topics = [...record.topics];
    group.emptySinceMs = null;
    const ids: string[] = [];
    for (const stored of record.members.slice(0, groupMembersMax)) {
      const member: Member = {
        id: stored.id,
        session: null,
        clientId: stored.clientId,
        principal: stored.principal,
        sessionTimeoutMs: stored.sessionTimeoutMs,
        viewVersion: 0,
        restored: true,
        expiry: null,
        waiting: new Set(),
        unhook: () => undefined,
      };
      group.members.set(member.id, member);
      ids.push(member.id);
      this.restoredMembers++;
      this.armExpiry(group, member);
    }
    if (group.mode === 'broadcast') return false;
    const present = new Set(this.partitionKeys(group));
    let changed = false;
    for (const [topicIndex, partition, ownerIndex, targetIndex] of record.partitions) {
      const key = partitionKey(record.topics[topicIndex]!, partition);
      if (!present.delete(key)) {
        changed = true; // the topic was deleted or lost the partition
        continue;
      }
      const owner = ids[ownerIndex];
      const target = ids[targetIndex];
      if (owner !== undefined) group.owner.set(key, owner);
      if (target !== undefined) group.target.set(key, target);
      if (owner === undefined || target === undefined) changed = true;
    }
    return changed || present.size > 0;
  }

  /** Rebalances started by a timer or a close hook whose generation write failed (e.g. disk full). */
  get backgroundFailures(): number {
    return this.backgroundFailureCount;
  }

  async join(session: Session, request: JoinGroupRequest): Promise<GroupView> {
    this.assertCoordinating();
    const topics = [...new Set(request.topics)].sort();
    for (const topic of topics) this.topics.partitionCount(topic); // UNKNOWN_TOPIC
    let group = this.groups.get(request.group);
    if (group === undefined) {
      if (this.groups.size >= groupsMax) {
        throw new InvalidArgumentError(`the broker has groupsMax (${groupsMax}) groups`);
      }
      group = new GroupState(request.group, request.mode, 0);
      this.groups.set(request.group, group);
    }
    if (group.members.size > 0) {
      if (group.mode !== request.mode) {
        throw new InvalidArgumentError(
          `group '${group.name}' is in ${group.mode} mode (its members joined so); this join asks for ${request.mode}`,
        );
      }
      if (group.topics.join('\n') !== topics.join('\n')) {
        throw new InvalidArgumentError(
          `group '${group.name}' reads topics [${group.topics.join(', ')}]; every member must ask for the same topics (got [${topics.join(', ')}])`,
        );
      }
    }
    let memberId: string;
    if (request.mode === 'broadcast') {
      const stable = request.memberId ?? session.clientId;
      if (stable === null || stable === undefined) {
        throw new InvalidArgumentError('a broadcast member needs a stable memberId (or a clientId)');
      }
      memberId = stable;
      const previous = group.members.get(memberId);
      if (previous !== undefined)
        this.removeMember(group, previous, 'replaced by a new member with its id', false);
    } else {
      memberId = `${session.clientId ?? 'member'}-${randomBytes(16).toString('base64url')}`;
    }
    if (group.members.size >= groupMembersMax) {
      throw new InvalidArgumentError(
        `group '${group.name}' has groupMembersMax (${groupMembersMax}) members`,
      );
    }
    group.mode = request.mode;
    group.topics = topics;
    group.emptySinceMs = null;
    const member: Member = {
      id: memberId,
      session,
      clientId: session.clientId,
      principal: session.principal?.name ?? null,
      sessionTimeoutMs: request.sessionTimeoutMs ?? groupSessionTimeoutMsDefault,
      viewVersion: 0,
      restored: false,
      expiry: null,
      waiting: new Set(),
      unhook: () => undefined,
    };
    group.members.set(memberId, member);
    this.attach(group, member, session);
    await this.stored(this.rebalance(group));
    if (group.members.get(memberId) !== member)
      throw new UnknownMemberError(group.name, memberId, 'removed while joining');
    return this.view(group, member);
  }

  async heartbeat(session: Session, request: HeartbeatRequest, signal?: AbortSignal): Promise<GroupView> {
    this.assertCoordinating();
    const { group, member } = this.memberOf(session, request);
    if (member.restored) {
      // Restored after a failover: the client's view version is the old coordinator's; answer at
      // once with a newer one so the client takes this view (it keeps what it holds and still owns).
      member.restored = false;
      member.viewVersion = Math.max(member.viewVersion, request.viewVersion + 1);
      this.armExpiry(group, member);
      return this.view(group, member);
    }
    if (member.viewVersion !== request.viewVersion || request.waitMs === 0) {
      this.armExpiry(group, member);
      return this.view(group, member);
    }
    if (member.waiting.size >= groupHeartbeatsWaitingPerMemberMax) {
      throw new SpillwayError(
        'TOO_MANY_REQUESTS',
        `member '${member.id}' has ${member.waiting.size} heartbeats waiting (groupHeartbeatsWaitingPerMemberMax)`,
      );
    }
    this.clock.clearTimer(member.expiry);
    member.expiry = null;
    await new Promise<void>((resolve) => {
      let timer: ClockTimer | null = null;
      const done = (): void => {
        this.clock.clearTimer(timer);
        signal?.removeEventListener('abort', done);
        member.waiting.delete(done);
        resolve();
      };
      member.waiting.add(done);
      timer = this.clock.setTimeout(done, request.waitMs, { unref: true });
      signal?.addEventListener('abort', done, { once: true });
    });
    if (this.notCoordinating !== null) {
      throw new SpillwayError('NOT_COORDINATOR', `groups are not coordinated here: ${this.notCoordinating}`);
    }
    if (group.members.get(member.id) !== member)
      throw new UnknownMemberError(group.name, member.id, 'removed');
    this.armExpiry(group, member);
    return this.view(group, member);
  }

  async release(session: Session, request: ReleasePartitionsRequest): Promise<GroupView> {
    this.assertCoordinating();
    const { group, member } = this.memberOf(session, request);
    this.armExpiry(group, member);
    if (group.mode === 'group') {
      const changed = new Set<string>([member.id]);
      let moved = false;
      for (const ref of request.partitions) {
        const key = partitionKey(ref.topic, ref.partition);
        if (group.owner.get(key) !== member.id) continue; // already moved on: nothing to hand over
        const target = group.target.get(key);
        if (target === member.id) continue; // the revocation was cancelled by a later assignment
        moved = true;
        if (target === undefined) group.owner.delete(key);
        else {
          group.owner.set(key, target);
          changed.add(target);
        }
      }
      if (moved && this.storesMembers) {
        // The new owners start once the handover is stored: a failover then keeps it.
        try {
          await this.stored(this.store.put(this.membershipWrites(group)));
        } finally {
          this.notify(group, changed);
        }
      } else this.notify(group, changed);
    }
    return this.view(group, member);
  }

  /** Where a member's committed offset of topic/partition is stored (per group, or per member in broadcast). */
  private commitKey(group: GroupState, member: Member, topic: string, partition: number): string {
    return group.mode === 'group'
      ? offsetKey(group.name, topic, partition)
      : positionKey(group.name, member.id, topic, partition);
  }

  async leave(session: Session, request: MemberRequest): Promise<void> {
    this.assertCoordinating();
    const { group, member } = this.memberOf(session, request);
    this.removeMember(group, member, 'left', false);
    await this.stored(this.rebalance(group));
  }

  async commit(session: Session, request: CommitOffsetsRequest): Promise<void> {
    this.assertCoordinating();
    const { group, member } = this.memberOf(session, request);
    const epoch = this.serviceEpoch;
    const writes: Array<{ key: string; value: number }> = [];
    for (const { topic, partition, offset } of request.offsets) {
      this.checkOwner(group, member, topic, partition);
      const remote = this.remoteFor(topic, partition);
      if (remote !== null) {
        // No replica here: the leader's high watermark bounds the commit.
        const end = await remote.latestOffset(topic, partition, session.signal);
        this.assertCoordinatingSince(epoch);
        this.checkOwner(group, member, topic, partition);
        if (offset > end) {
          throw new InvalidArgumentError(
            `offset ${offset} of ${topic}/${partition} is past its leader's high watermark ${end}: commit the next offset to consume`,
          );
        }
        writes.push({ key: this.commitKey(group, member, topic, partition), value: offset });
        continue;
      }
      let end = this.messages.listOffset(topic, partition, 'latest');
      if (offset > end && this.storesMembers) {
        // A cluster: this replica's high watermark may lag the one the member read under (another
        // coordinator, or the leader's newer one): wait for it a little, then TIMEOUT (retriable).
        end = await this.awaitVisible(topic, partition, offset, groupCommitVisibleWaitMs, session.signal);
        this.assertCoordinatingSince(epoch);
        this.checkOwner(group, member, topic, partition);
        if (offset > end) {
          throw new SpillwayError(
            'TIMEOUT',
            `offset ${offset} of ${topic}/${partition} is past what this broker's replica shows (${end}) after ${groupCommitVisibleWaitMs} ms: retry`,
          );
        }
      }
      if (offset > end) {
        throw new InvalidArgumentError(
          `offset ${offset} of ${topic}/${partition} is past the log end ${end}: commit the next offset to consume`,
        );
      }
      writes.push({ key: this.commitKey(group, member, topic, partition), value: offset });
    }
    await this.stored(this.store.put(writes));
    for (const { key } of writes) group.storedKeys.add(key);
  }

  /**
   * Cluster: how a GROUP_FETCH of a partition this broker holds no replica of is read (from its
   * leader: service-leadership.ts). Without it such a fetch fails as the local lookup does.
   */
  readRemotePartitions(remote: RemotePartitions): void {
    this.remote = remote;
  }

  /** How topic/partition is read from other brokers, or null: one broker, or this one holds a replica of it. */
  private remoteFor(topic: string, partition: number): RemotePartitions | null {
    return this.remote !== null && !this.remote.holds(topic, partition) ? this.remote : null;
  }

  async fetch(session: Session, request: GroupFetchRequest, options: FetchOptions): Promise<FetchResult> {
    this.assertCoordinating();
    const { group, member } = this.memberOf(session, request);
    const { topic, partition, offset } = request;
    this.checkOwner(group, member, topic, partition);
    const remote = this.remoteFor(topic, partition);
    if (remote !== null) {
      // No replica here: the leader answers; ownership is checked again on the way back, as after a wait.
      const epoch = this.serviceEpoch;
      const result = await remote.fetch(topic, partition, offset, {
        ...options,
        signal: options.signal ?? session.signal,
      });
      this.assertCoordinatingSince(epoch);
      this.checkOwner(group, member, topic, partition);
      return result;
    }
    if (this.storesMembers) {
      // A cluster: a member that read up to another replica's high watermark may ask past this
      // replica's for a moment (after a failover): wait up to maxWaitMs for it, else answer nothing.
      const epoch = this.serviceEpoch;
      const end = this.messages.listOffset(topic, partition, 'latest');
      const waited = offset > end;
      const signal = options.signal ?? session.signal;
      if (waited && (await this.awaitVisible(topic, partition, offset, options.maxWaitMs, signal)) < offset) {
        this.assertCoordinatingSince(epoch);
        return {
          topic,
          partition,
          records: new Uint8Array(0),
          batchCount: 0,
          firstOffset: offset,
          nextOffset: offset,
          logStartOffset: this.messages.listOffset(topic, partition, 'earliest'),
          highWatermark: this.messages.listOffset(topic, partition, 'latest'),
        };
      }
      if (waited) {
        this.assertCoordinatingSince(epoch);
        this.checkOwner(group, member, topic, partition);
      }
    }
    return this.messages.fetch(topic, partition, offset, options);
  }

  /**
   * Waits (long-polling the partition, at most `waitMs`) until this broker's replica shows `offset`
   * (its visible end reaches it); returns the visible end then.
   */
  private async awaitVisible(
    topic: string,
    partition: number,
    offset: number,
    waitMs: number,
    signal: AbortSignal,
  ): Promise<number> {
    const deadline = this.clock.monotonicMs() + waitMs;
    for (;;) {
      const end = this.messages.listOffset(topic, partition, 'latest');
      const remainingMs = Math.ceil(deadline - this.clock.monotonicMs());
      if (end >= offset || remainingMs <= 0 || this.lifecycle.closing || signal.aborted) return end;
      await this.messages.fetch(topic, partition, end, { maxBytes: 1, maxWaitMs: remainingMs, signal });
    }
  }

  /** The groups coordinated here: none while not coordinating (metrics list them on every broker). */
  list(): GroupSummary[] {
    return [...this.groups.values()]
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((group) => ({
        group: group.name,
        mode: group.mode,
        generation: group.generation,
        memberCount: group.members.size,
        lag: this.partitionStates(group).reduce((sum, row) => sum + row.lag, 0),
      }));
  }

  describe(name: string): GroupDescription {
    this.assertCoordinating();
    const group = this.groups.get(name);
    if (group === undefined) throw new SpillwayError('UNKNOWN_GROUP', `unknown group '${name}'`);
    const partitions = this.partitionStates(group);
    const members = [...group.members.values()].map((member) => {
      const view = this.view(group, member);
      return {
        memberId: member.id,
        sessionId: member.session?.id ?? 0,
        clientId: member.clientId,
        topics: [...group.topics],
        assigned: view.assigned.map(({ topic, partition }) => ({ topic, partition })),
        revoking: view.revoking,
      };
    });
    return {
      group: group.name,
      mode: group.mode,
      generation: group.generation,
      topics: [...group.topics],
      members,
      partitions,
      lag: partitions.reduce((sum, row) => sum + row.lag, 0),
    };
  }

  /** Removes every member at once (the broker is closing): nothing is written. */
  closeAll(): void {
    this.clock.clearTimer(this.expiryTimer);
    for (const group of this.groups.values()) {
      for (const member of [...group.members.values()])
        this.removeMember(group, member, 'broker closing', false);
    }
  }

  private memberOf(session: Session, request: MemberRequest): { group: GroupState; member: Member } {
    const group = this.groups.get(request.group);
    const member = group?.members.get(request.memberId);
    if (group === undefined || member === undefined) {
      throw new UnknownMemberError(request.group, request.memberId, 'left, timed out or never joined');
    }
    if (member.session === null) this.reattach(group, member, session);
    else if (member.session.id !== session.id) {
      throw new UnknownMemberError(group.name, member.id, 'the id belongs to another session now');
    }
    return { group, member };
  }

  /**
   * A restored member's client came back on `session`: it is the member when its clientId and
   * principal are the ones the member joined with (else UNKNOWN_MEMBER: that client joins anew).
   */
  private reattach(group: GroupState, member: Member, session: Session): void {
    if (session.clientId !== member.clientId || (session.principal?.name ?? null) !== member.principal) {
      throw new UnknownMemberError(
        group.name,
        member.id,
        'restored after a coordinator failover; this connection is not its client (clientId or principal differs)',
      );
    }
    this.attach(group, member, session);
    this.reattachedMembers++;
    this.armExpiry(group, member);
  }

  /** Ties `member` to `session`: the session closing removes it at once (and rebalances). */
  private attach(group: GroupState, member: Member, session: Session): void {
    member.session = session;
    member.unhook = session.onClose(() => {
      if (group.members.get(member.id) === member) this.removeMember(group, member, 'session closed', true);
    });
    this.armExpiry(group, member);
  }

  private checkOwner(group: GroupState, member: Member, topic: string, partition: number): void {
    if (group.mode === 'broadcast') {
      if (!group.topics.includes(topic)) {
        throw new FencedGenerationError(group.name, member.id, { topic, partition }, group.generation);
      }
      return;
    }
    if (group.owner.get(partitionKey(topic, partition)) !== member.id) {
      throw new FencedGenerationError(group.name, member.id, { topic, partition }, group.generation);
    }
  }

  /** The partitions of the group's topics now (deleted topics have none). */
  private partitionKeys(group: GroupState): string[] {
    const keys: string[] = [];
    for (const name of group.topics) {
      let count = 0;
      try {
        count = this.topics.partitionCount(name);
      } catch {
        continue;
      }
      for (let index = 0; index < count; index++) keys.push(partitionKey(name, index));
    }
    return keys;
  }

  private view(group: GroupState, member: Member): GroupView {
    const assigned: AssignedPartition[] = [];
    const revoking: PartitionRef[] = [];
    if (group.mode === 'group') {
      for (const [key, owner] of group.owner) {
        if (owner !== member.id) continue;
        const ref = refOf(key);
        assigned.push({
          ...ref,
          committed: this.store.offset(offsetKey(group.name, ref.topic, ref.partition)),
        });
        if (group.target.get(key) !== member.id) revoking.push(ref);
      }
    } else {
      for (const key of this.partitionKeys(group)) {
        const ref = refOf(key);
        assigned.push({
          ...ref,
          committed: this.store.offset(positionKey(group.name, member.id, ref.topic, ref.partition)),
        });
      }
    }
    return {
      group: group.name,
      memberId: member.id,
      mode: group.mode,
      generation: group.generation,
      viewVersion: member.viewVersion,
      sessionTimeoutMs: member.sessionTimeoutMs,
      assigned,
      revoking,
    };
  }

  /** Computes the assignment anew, bumps and writes the generation, tells every member. */
  private async rebalance(group: GroupState): Promise<void> {
    if (group.mode === 'group') {
      const keys = this.partitionKeys(group);
      const present = new Set(keys);
      group.target = assignSticky([...group.members.keys()], keys, group.target);
      for (const [key, owner] of [...group.owner]) {
        if (!present.has(key) || !group.members.has(owner)) group.owner.delete(key);
      }
      for (const [key, target] of group.target) if (!group.owner.has(key)) group.owner.set(key, target);
    }
    group.generation++;
    const record: GenerationRecord = { generation: group.generation, mode: group.mode };
    if (group.emptySinceMs !== null) record.emptySinceMs = group.emptySinceMs;
    const write = { key: generationKey(group.name), value: record };
    if (!this.storesMembers) {
      this.notify(group, new Set(group.members.keys()));
      await this.store.put([write]);
      return;
    }
    // A cluster: the members learn the new assignment once it is stored (a failover keeps it).
    try {
      await this.store.put([write, ...this.membershipWrites(group)]);
    } finally {
      this.notify(group, new Set(group.members.keys()));
    }
  }

  /**
   * The group's membership record (cluster): its members and who holds which partition at its
   * generation; a tombstone when it has no members or the record would pass
   * groupMembershipRecordBytesMax (then its members join again after a failover).
   */
  private membershipWrites(group: GroupState): Array<{ key: string; value: MembershipRecord }> {
    const key = membershipKey(group.name);
    const members = [...group.members.values()];
    const record: MembershipRecord = {
      generation: group.generation,
      topics: [...group.topics],
      members: members.map((member) => ({
        id: member.id,
        clientId: member.clientId,
        principal: member.principal,
        sessionTimeoutMs: member.sessionTimeoutMs,
      })),
      partitions: [],
    };
    if (group.mode === 'group') {
      const topicIndex = new Map(group.topics.map((topic, index) => [topic, index]));
      const memberIndex = new Map(members.map((member, index) => [member.id, index]));
      for (const key of new Set([...group.owner.keys(), ...group.target.keys()])) {
        const ref = refOf(key);
        const topic = topicIndex.get(ref.topic);
        if (topic === undefined) continue;
        const owner = group.owner.get(key);
        const target = group.target.get(key);
        record.partitions.push([
          topic,
          ref.partition,
          owner === undefined ? -1 : (memberIndex.get(owner) ?? -1),
          target === undefined ? -1 : (memberIndex.get(target) ?? -1),
        ]);
      }
    }
    if (members.length === 0 || membershipRecordBytes(record) > groupMembershipRecordBytesMax) {
      if (members.length > 0) this.membershipNotStored++;
      // An empty membership: the tombstone is written only when a record is there to delete.
      if (this.store.get(key) === undefined) return [];
      this.removeInBackground([key]);
      return [];
    }
    return [{ key, value: record }];
  }

  /** Deletes the offsets and positions every group stored for deleted topic `topic`. */
  private forgetTopic(topic: string): void {
    const keys: string[] = [];
    for (const group of this.groups.values()) {
      for (const key of [...group.storedKeys]) {
        const parsed = parseOffsetsKey(key);
        if (
          parsed !== null &&
          (parsed.kind === 'offset' || parsed.kind === 'position') &&
          parsed.topic === topic
        ) {
          group.storedKeys.delete(key);
          keys.push(key);
        }
      }
    }
    if (keys.length > 0) this.removeInBackground(keys);
  }

  /** Forgets the groups with no members for `retentionMs` or more, and deletes what they stored. */
  private expireGroups(): void {
    if (this.lifecycle.closing || this.notCoordinating !== null) return;
    const now = this.clock.nowMs();
    const keys: string[] = [];
    for (const group of [...this.groups.values()]) {
      if (group.members.size > 0 || group.emptySinceMs === null) continue;
      if (now - group.emptySinceMs < this.retentionMs) continue;
      this.groups.delete(group.name);
      keys.push(...group.storedKeys, generationKey(group.name));
      if (this.store.get(membershipKey(group.name)) !== undefined) keys.push(membershipKey(group.name));
      this.expiredGroups++;
    }
    if (keys.length > 0) this.removeInBackground(keys);
  }

  private removeInBackground(keys: string[]): void {
    this.store.remove(keys).catch(() => {
      this.backgroundFailureCount++;
    });
  }

  private rebalanceInBackground(group: GroupState): void {
    if (this.lifecycle.closing || this.notCoordinating !== null) return;
    this.rebalance(group).catch(() => {
      this.backgroundFailureCount++;
    });
  }

  private notify(group: GroupState, memberIds: Set<string>): void {
    for (const id of memberIds) {
      const member = group.members.get(id);
      if (member === undefined) continue;
      member.viewVersion++;
      for (const wake of [...member.waiting]) wake();
    }
  }

  private removeMember(group: GroupState, member: Member, _why: string, rebalance: boolean): void {
    if (group.members.get(member.id) !== member) return;
    group.members.delete(member.id);
    this.clock.clearTimer(member.expiry);
    member.expiry = null;
    member.unhook();
    for (const wake of [...member.waiting]) wake();
    for (const [key, owner] of [...group.owner]) if (owner === member.id) group.owner.delete(key);
    if (group.members.size === 0) {
      group.topics = [];
      group.emptySinceMs = this.clock.nowMs();
    }
    if (rebalance) this.rebalanceInBackground(group);
  }

  private armExpiry(group: GroupState, member: Member): void {
    this.clock.clearTimer(member.expiry);
    member.expiry = null;
    if (member.waiting.size > 0 || group.members.get(member.id) !== member) return;
    member.expiry = this.clock.setTimeout(
      () => {
        member.expiry = null;
        if (member.waiting.size === 0) this.removeMember(group, member, 'session timeout', true);
      },
      member.sessionTimeoutMs,
      { unref: true },
    );
  }

  private topicChanged(topic: string): void {
    for (const group of this.groups.values()) {
      if (group.members.size > 0 && group.topics.includes(topic)) this.rebalanceInBackground(group);
    }
  }

  private partitionStates(group: GroupState): GroupPartitionState[] {
    const rows: GroupPartitionState[] = [];
    const logEnd = (topic: string, partition: number): { end: number; start: number } | null => {
      try {
        return {
          end: this.messages.listOffset(topic, partition, 'latest'),
          start: this.messages.listOffset(topic, partition, 'earliest'),
        };
      } catch {
        return null;
      }
    };
    if (group.mode === 'group') {
      const keys = new Set(this.partitionKeys(group));
      for (const stored of group.storedKeys) {
        const parsed = parseOffsetsKey(stored);
        if (parsed?.kind === 'offset') keys.add(partitionKey(parsed.topic, parsed.partition));
      }
      for (const key of [...keys].sort()) {
        const ref = refOf(key);
        const bounds = logEnd(ref.topic, ref.partition);
        if (bounds === null) continue;
        const committed = this.store.offset(offsetKey(group.name, ref.topic, ref.partition));
        const owner = group.owner.get(key) ?? null;
        const target = group.target.get(key);
        const row: GroupPartitionState = {
          ...ref,
          member: owner,
          committed,
          logEndOffset: bounds.end,
          lag: Math.max(0, bounds.end - Math.max(committed ?? bounds.start, bounds.start)),
        };
        if (owner !== null && target !== undefined && target !== owner) row.movingTo = target;
        rows.push(row);
      }
      return rows;
    }
    for (const stored of [...group.storedKeys].sort()) {
      const parsed = parseOffsetsKey(stored);
      if (parsed?.kind !== 'position') continue;
      const bounds = logEnd(parsed.topic, parsed.partition);
      if (bounds === null) continue;
      const committed = this.store.offset(stored);
      rows.push({
        topic: parsed.topic,
        partition: parsed.partition,
        member: parsed.member,
        committed,
        logEndOffset: bounds.end,
        lag: Math.max(0, bounds.end - Math.max(committed ?? bounds.start, bounds.start)),
      });
    }
    return rows;
  }
}
