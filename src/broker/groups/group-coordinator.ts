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
import type { Clock, ClockTimer } from '../../clock.js';
import { InvalidArgumentError, SpillwayError } from '../../errors.js';
import {
  groupExpiryCheckIntervalMsMax,
  groupHeartbeatsWaitingPerMemberMax,
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
  offsetKey,
  parseOffsetsKey,
  positionKey,
} from './consumer-offsets-store.js';
import { assignSticky } from './sticky-assignor.js';

interface Member {
  readonly id: string;
  readonly session: Session;
  readonly sessionTimeoutMs: number;
  viewVersion: number;
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
  private memberSequence = 0;
  private backgroundFailureCount = 0;

  private expiryTimer: ClockTimer | null;
  /** Why this broker does not coordinate groups now; null while it does (always on a single broker). */
  private notCoordinating: string | null = null;
  /** Bumped at every stop and start of coordinating: a write awaited across one is NOT_COORDINATOR. */
  private serviceEpoch = 0;
  /** Groups forgotten after their retention since the broker started (describe, tests). */
  expiredGroups = 0;

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
    topics.onPartitionsAdded((topic) => {
      if (this.notCoordinating === null) this.topicChanged(topic.name);
    });
    topics.onTopicDeleted((topic) => {
      if (this.notCoordinating !== null) return;
      this.topicChanged(topic.name);
      this.forgetTopic(topic.name);
    });
    if (coordinating) {
      this.load();
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
   * log (what replication copied), groups and offsets are rebuilt as at a broker's open.
   */
  startCoordinating(): void {
    if (this.notCoordinating === null) return;
    this.store.reopen();
    this.load();
    this.notCoordinating = null;
    this.serviceEpoch++;
    this.expiryTimer = this.armExpiryCheck();
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

  /** Builds the groups (generation, mode, stored keys) from the store; deletes what deleted topics left. */
  private load(): void {
    const topics = this.topics;
    const store = this.store;
    const clock = this.clock;
    const stale: string[] = [];
    for (const [key, value] of store.entries()) {
      const parsed = parseOffsetsKey(key);
      if (parsed === null) continue;
      let group = this.groups.get(parsed.group);
      if (group === undefined) {
        group = new GroupState(parsed.group, 'group', 0);
        this.groups.set(parsed.group, group);
      }
      if (parsed.kind === 'generation' && typeof value === 'object') {
        group.generation = value.generation;
        group.mode = value.mode;
        if (value.emptySinceMs !== undefined) group.emptySinceMs = value.emptySinceMs;
      } else if (parsed.kind !== 'generation') {
        if (topics.has(parsed.topic)) group.storedKeys.add(key);
        else stale.push(key);
      }
    }
    // No member survives a restart: a group empty since an unknown time is empty since now.
    const now = clock.nowMs();
    for (const group of this.groups.values()) group.emptySinceMs ??= now;
    if (stale.length > 0) this.removeInBackground(stale);
  }

  /** Rebalances started by a timer or a close hook whose generation write failed (e.g. disk full). */
  get backgroundFailures(): number {
    return this.backgroundFailureCount;
  }

  async join(session: Session, request: JoinGroupRequest): Promise<GroupView> {
    this.assertCoordinating();
    const topics = [...new Set(request.topics)].sort();
    for (const topic of topics) this.topics.topicNamed(topic); // UNKNOWN_TOPIC
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
      memberId = `${session.clientId ?? 'member'}-${session.id}-${++this.memberSequence}`;
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
      sessionTimeoutMs: request.sessionTimeoutMs ?? groupSessionTimeoutMsDefault,
      viewVersion: 0,
      expiry: null,
      waiting: new Set(),
      unhook: () => undefined,
    };
    group.members.set(memberId, member);
    const joined = group;
    member.unhook = session.onClose(() => {
      if (joined.members.get(memberId) === member) this.removeMember(joined, member, 'session closed', true);
    });
    this.armExpiry(group, member);
    await this.stored(this.rebalance(group));
    if (group.members.get(memberId) !== member)
      throw new UnknownMemberError(group.name, memberId, 'removed while joining');
    return this.view(group, member);
  }

  async heartbeat(session: Session, request: HeartbeatRequest, signal?: AbortSignal): Promise<GroupView> {
    this.assertCoordinating();
    const { group, member } = this.memberOf(session, request);
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
      for (const ref of request.partitions) {
        const key = partitionKey(ref.topic, ref.partition);
        if (group.owner.get(key) !== member.id) continue; // already moved on: nothing to hand over
        const target = group.target.get(key);
        if (target === member.id) continue; // the revocation was cancelled by a later assignment
        if (target === undefined) group.owner.delete(key);
        else {
          group.owner.set(key, target);
          changed.add(target);
        }
      }
      this.notify(group, changed);
    }
    return this.view(group, member);
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
    const writes: Array<{ key: string; value: number }> = [];
    for (const { topic, partition, offset } of request.offsets) {
      this.checkOwner(group, member, topic, partition);
      const end = this.messages.listOffset(topic, partition, 'latest');
      if (offset > end) {
        throw new InvalidArgumentError(
          `offset ${offset} of ${topic}/${partition} is past the log end ${end}: commit the next offset to consume`,
        );
      }
      const key =
        group.mode === 'group'
          ? offsetKey(group.name, topic, partition)
          : positionKey(group.name, member.id, topic, partition);
      writes.push({ key, value: offset });
    }
    await this.stored(this.store.put(writes));
    for (const { key } of writes) group.storedKeys.add(key);
  }

  async fetch(session: Session, request: GroupFetchRequest, options: FetchOptions): Promise<FetchResult> {
    this.assertCoordinating();
    const { group, member } = this.memberOf(session, request);
    this.checkOwner(group, member, request.topic, request.partition);
    return this.messages.fetch(request.topic, request.partition, request.offset, options);
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
        sessionId: member.session.id,
        clientId: member.session.clientId,
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
    if (member.session.id !== session.id) {
      throw new UnknownMemberError(group.name, member.id, 'the id belongs to another session now');
    }
    return { group, member };
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
        count = this.topics.topicNamed(name).partitionCount;
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
    this.notify(group, new Set(group.members.keys()));
    const record: GenerationRecord = { generation: group.generation, mode: group.mode };
    if (group.emptySinceMs !== null) record.emptySinceMs = group.emptySinceMs;
    await this.store.put([{ key: generationKey(group.name), value: record }]);
  }

  /** Deletes the offsets and positions every group stored for deleted topic `topic`. */
  private forgetTopic(topic: string): void {
    const keys: string[] = [];
    for (const group of this.groups.values()) {
      for (const key of [...group.storedKeys]) {
        const parsed = parseOffsetsKey(key);
        if (parsed !== null && parsed.kind !== 'generation' && parsed.topic === topic) {
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
