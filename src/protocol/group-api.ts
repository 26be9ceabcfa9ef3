/**
 * `BrokerApi.groups`: the group coordinator of group mode (clustering: each partition with one member
 * at a time) and broadcast mode (every member reads everything from its own position), as the
 * protocol layer sees it. docs/PROTOCOL.md "Consumer groups" describes the exchange:
 *
 *   JOIN_GROUP -> a member id and the member's view; then HEARTBEAT in a loop (a long-poll answered
 *   as soon as the member's view changes, or after `waitMs`); GROUP_FETCH and COMMIT_OFFSETS on the
 *   partitions the view assigns; RELEASE_PARTITIONS once a revoked partition's finished work is
 *   committed; LEAVE_GROUP at the end (a closed session leaves at once).
 *
 * Cooperative rebalancing: a partition moving from member A to member B stays A's ("revoking" in A's
 * view, absent from B's) until A releases it, leaves, or loses its session; only then is it B's. So
 * one partition is never read by two members at once, and B starts from what A committed.
 */
import type { FetchOptions, FetchResult } from './broker-api.js';
import type { Session } from './session.js';

export type GroupMode = 'group' | 'broadcast';

export interface JoinGroupRequest {
  group: string;
  topics: string[];
  mode: GroupMode;
  /**
   * Broadcast: the member's stable id (its position is stored under it); a second live member with
   * the same id replaces the first. Group mode: ignored (the broker names members).
   */
  memberId?: string;
  /** No heartbeat for this long (and none waiting) removes the member. */
  sessionTimeoutMs?: number;
}

export interface HeartbeatRequest {
  group: string;
  memberId: string;
  /** The view version the member has: the answer comes at once when the view is newer. */
  viewVersion: number;
  /** How long to wait for a change before answering with the same view. 0: at once. */
  waitMs: number;
}

export interface MemberRequest {
  group: string;
  memberId: string;
}

export interface PartitionRef {
  topic: string;
  partition: number;
}

export interface ReleasePartitionsRequest extends MemberRequest {
  partitions: PartitionRef[];
}

export interface CommitOffsetsRequest extends MemberRequest {
  /** `offset`: the next offset to consume (everything below it is finished). */
  offsets: Array<PartitionRef & { offset: number }>;
}

export interface GroupFetchRequest extends MemberRequest, PartitionRef {
  offset: number;
}

export interface AssignedPartition extends PartitionRef {
  /** Where to start: the group's committed offset (group mode) or the member's position (broadcast); null when none is stored. */
  committed: number | null;
}

/** What a member may do now. */
export interface GroupView {
  group: string;
  memberId: string;
  mode: GroupMode;
  /** Bumped whenever the group's assignment is computed anew (members, partitions); durable. */
  generation: number;
  /** Bumped whenever this member's view changes. */
  viewVersion: number;
  sessionTimeoutMs: number;
  /** Partitions this member may read and commit now (revoking ones included). */
  assigned: AssignedPartition[];
  /** Of `assigned`, those it must finish, commit and release (RELEASE_PARTITIONS). */
  revoking: PartitionRef[];
}

export interface GroupSummary {
  group: string;
  mode: GroupMode;
  generation: number;
  memberCount: number;
  /** Sum of the lag of its partitions (group mode), or of its members' lags (broadcast). */
  lag: number;
}

export interface GroupPartitionState extends PartitionRef {
  /** group mode: the member holding it (null: none); broadcast: the member this row is about. */
  member: string | null;
  /** Group mode: the member it is moving to, when it is being revoked. */
  movingTo?: string;
  committed: number | null;
  logEndOffset: number;
  /** logEndOffset minus the committed offset (the log start when none is committed). */
  lag: number;
}

export interface GroupMemberDescription {
  memberId: string;
  sessionId: number;
  clientId: string | null;
  topics: string[];
  assigned: PartitionRef[];
  revoking: PartitionRef[];
}

export interface GroupDescription {
  group: string;
  mode: GroupMode;
  generation: number;
  topics: string[];
  members: GroupMemberDescription[];
  partitions: GroupPartitionState[];
  lag: number;
}

export interface GroupService {
  /** Joins (INVALID_ARGUMENT for a mode or topics differing from the group's live members'). */
  join(session: Session, request: JoinGroupRequest): Promise<GroupView>;
  /** Long-poll until the member's view is newer than `viewVersion` or `waitMs` passed. UNKNOWN_MEMBER when removed. */
  heartbeat(session: Session, request: HeartbeatRequest, signal?: AbortSignal): Promise<GroupView>;
  /** Hands revoked partitions on; FENCED_GENERATION for partitions not this member's. */
  release(session: Session, request: ReleasePartitionsRequest): Promise<GroupView>;
  leave(session: Session, request: MemberRequest): Promise<void>;
  /** Resolves once durable. FENCED_GENERATION for a partition not this member's (group mode). */
  commit(session: Session, request: CommitOffsetsRequest): Promise<void>;
  /** A fetch checked against the assignment: FENCED_GENERATION when the partition is not this member's. */
  fetch(session: Session, request: GroupFetchRequest, options: FetchOptions): Promise<FetchResult>;
  list(): GroupSummary[];
  /** UNKNOWN_GROUP when the broker knows nothing of it. */
  describe(group: string): GroupDescription;
}
