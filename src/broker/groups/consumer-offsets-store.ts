/**
 * The state of consumer groups that outlives a broker restart, kept in the internal state log
 * `__consumer_offsets` (state/state-log.ts over `dataDir/topics/__consumer_offsets/0/`, durability
 * `always`) as a key -> value map (state/key-value-state.ts). Entries (docs/STATE.md):
 *
 *   key `o["<group>","<topic>",<partition>]`            value <offset>     group mode: the committed offset
 *   key `p["<group>","<member>","<topic>",<partition>]` value <offset>     broadcast: a member's own position
 *   key `g["<group>"]`                                  value { generation, mode, emptySinceMs? }
 *                                                          the group's last generation; emptySinceMs when
 *                                                          it had no members after it (group retention)
 *   key `m["<group>"]`                                  value { generation, topics, members, partitions }
 *                                                          cluster only: the members and who holds which
 *                                                          partition at that generation (MembershipRecord),
 *                                                          restored by the next coordinator after a failover
 *
 * An offset is the next one to consume (everything below it is finished). Keys are JSON arrays
 * after a one-letter kind, so names never collide. Each change is one record; the state log group-
 * commits many into one append (one fdatasync under `always`), snapshots the map and recovers it.
 * On a single broker membership is not stored (members are sessions, and sessions end with the
 * broker); in a cluster the coordinator writes `m` with every generation and ownership change, so
 * the next leader of `__consumer_offsets` restores the members (group-coordinator.ts). Records
 * written before `m` existed are read as before (no `m`: no member is restored).
 */
import { BackpressureError } from '../../errors.js';
import {
  clientIdLengthMax,
  groupCommitsPendingMax,
  groupMemberPrincipalLengthMax,
  groupMembersMax,
  groupSessionTimeoutMsMax,
  groupSessionTimeoutMsMin,
  memberIdLengthMax,
  partitionCountMax,
  topicNameLengthMax,
} from '../../limits.js';
import { type KeyValueEntry, KeyValueState, keyValueCodec, msgpackValues } from '../state/key-value-state.js';
import type { StateLog } from '../state/state-log.js';
import {
  openStateLog,
  type StateLogPartition,
  type StateLogStoreOptions,
} from '../state/state-log-partition.js';

export const consumerOffsetsTopicName = '__consumer_offsets';

import type { GroupMode } from '../../protocol/group-api.js';
import { groupTopicsMax } from '../../protocol/group-messages.js';

export type { GroupMode };
export const groupModes: readonly GroupMode[] = ['group', 'broadcast'];

export interface GenerationRecord {
  generation: number;
  mode: GroupMode;
  /** Set when the group had no members after this generation: since when (ms since the epoch). */
  emptySinceMs?: number;
}

/** A member as stored: what identifies it when its client comes back on another connection. */
export interface StoredMember {
  /** The broker-made id (random, unguessable) or a broadcast member's own id. */
  id: string;
  /** The clientId of the session it joined on (HELLO); null when none. */
  clientId: string | null;
  /** The principal name of that session (authentication on); null when none. */
  principal: string | null;
  sessionTimeoutMs: number;
}

/**
 * One group's membership at `generation` (cluster only): its topics, its members, and in group mode
 * who holds which partition. `partitions` rows: [topic index, partition, owner index, target index],
 * indexes into `topics` and `members`; -1: none (a partition held by a member and wanted by another is
 * revoking from its owner).
 */
export interface MembershipRecord {
  generation: number;
  topics: string[];
  members: StoredMember[];
  partitions: Array<[number, number, number, number]>;
}

export type OffsetsValue = number | GenerationRecord | MembershipRecord;
export type OffsetsEntry = KeyValueEntry<OffsetsValue>;

export function isMembershipRecord(value: OffsetsValue | undefined): value is MembershipRecord {
  return typeof value === 'object' && 'members' in value;
}

export function isGenerationRecord(value: OffsetsValue | undefined): value is GenerationRecord {
  return typeof value === 'object' && 'mode' in value;
}

function boundedInteger(value: unknown, what: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new Error(`${what} ${String(value)} is not an integer in [${min}, ${max}]`);
  }
  return value;
}

function boundedText(value: unknown, what: string, min: number, max: number): string {
  if (typeof value !== 'string' || value.length < min || value.length > max) {
    throw new Error(`${what} is not a string of ${min} to ${max} characters`);
  }
  return value;
}

function nullableText(value: unknown, what: string, max: number): string | null {
  return value === null ? null : boundedText(value, what, 0, max);
}

/** A member id as requests carry it (protocol/group-messages.ts): the broker's own ids or a broadcast id. */
const storedMemberIdLengthMax = memberIdLengthMax * 2;

function validateMembership(value: Record<string, unknown>): MembershipRecord {
  const generation = boundedInteger(value['generation'], 'generation', 0, Number.MAX_SAFE_INTEGER);
  const { topics, members, partitions } = value;
  if (!Array.isArray(topics) || !Array.isArray(members) || !Array.isArray(partitions)) {
    throw new Error('a membership record has arrays topics, members and partitions');
  }
  if (members.length > groupMembersMax) throw new Error(`${members.length} members > groupMembersMax`);
  if (topics.length > groupTopicsMax) throw new Error(`${topics.length} topics in a membership record`);
  if (partitions.length > topics.length * partitionCountMax)
    throw new Error('more partitions than its topics have');
  const record: MembershipRecord = {
    generation,
    topics: topics.map((topic) => boundedText(topic, 'a topic', 1, topicNameLengthMax)),
    members: members.map((member: unknown): StoredMember => {
      if (typeof member !== 'object' || member === null) throw new Error('a stored member is not a map');
      const fields = member as Record<string, unknown>;
      return {
        id: boundedText(fields['id'], 'a member id', 1, storedMemberIdLengthMax),
        clientId: nullableText(fields['clientId'], 'a clientId', clientIdLengthMax),
        principal: nullableText(fields['principal'], 'a principal', groupMemberPrincipalLengthMax),
        sessionTimeoutMs: boundedInteger(
          fields['sessionTimeoutMs'],
          'sessionTimeoutMs',
          groupSessionTimeoutMsMin,
          groupSessionTimeoutMsMax,
        ),
      };
    }),
    partitions: partitions.map((row: unknown): [number, number, number, number] => {
      if (!Array.isArray(row) || row.length !== 4)
        throw new Error('a partition row is not [topic, partition, owner, target]');
      return [
        boundedInteger(row[0], 'a topic index', 0, topics.length - 1),
        boundedInteger(row[1], 'a partition', 0, partitionCountMax - 1),
        boundedInteger(row[2], 'an owner index', -1, members.length - 1),
        boundedInteger(row[3], 'a target index', -1, members.length - 1),
      ];
    }),
  };
  return record;
}

/**
 * An upper estimate of the encoded size of `record` (UTF-8 at most 3 bytes per UTF-16 unit, 9 bytes
 * per number, 16 per map or array header and field name), compared with groupMembershipRecordBytesMax.
 */
export function membershipRecordBytes(record: MembershipRecord): number {
  let bytes = 64;
  for (const topic of record.topics) bytes += 3 * topic.length + 5;
  for (const member of record.members) {
    bytes += 64 + 3 * (member.id.length + (member.clientId?.length ?? 0) + (member.principal?.length ?? 0));
  }
  return bytes + record.partitions.length * 24;
}

function validateValue(value: unknown): OffsetsValue {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) throw new Error(`offset ${value} is not an integer >= 0`);
    return value;
  }
  if (typeof value === 'object' && value !== null && 'members' in value) {
    return validateMembership(value as Record<string, unknown>);
  }
  if (typeof value === 'object' && value !== null) {
    const { generation, mode } = value as Partial<GenerationRecord>;
    if (typeof generation !== 'number' || !Number.isSafeInteger(generation) || generation < 0) {
      throw new Error(`generation ${String(generation)} is not an integer >= 0`);
    }
    if (!groupModes.includes(mode as GroupMode)) throw new Error(`unknown group mode ${String(mode)}`);
    const { emptySinceMs } = value as Partial<GenerationRecord>;
    if (emptySinceMs === undefined) return { generation, mode: mode as GroupMode };
    if (typeof emptySinceMs !== 'number' || !Number.isSafeInteger(emptySinceMs) || emptySinceMs < 0) {
      throw new Error(`emptySinceMs ${String(emptySinceMs)} is not an integer >= 0`);
    }
    return { generation, mode: mode as GroupMode, emptySinceMs };
  }
  throw new Error('a __consumer_offsets value is an offset, a generation record or a membership record');
}

const offsetsCodec = keyValueCodec(msgpackValues(validateValue));

export function offsetKey(group: string, topic: string, partition: number): string {
  return `o${JSON.stringify([group, topic, partition])}`;
}
export function positionKey(group: string, member: string, topic: string, partition: number): string {
  return `p${JSON.stringify([group, member, topic, partition])}`;
}
export function generationKey(group: string): string {
  return `g${JSON.stringify([group])}`;
}
export function membershipKey(group: string): string {
  return `m${JSON.stringify([group])}`;
}

/** A decoded key: what it is about. */
export type OffsetsKey =
  | { kind: 'offset'; group: string; topic: string; partition: number }
  | { kind: 'position'; group: string; member: string; topic: string; partition: number }
  | { kind: 'generation'; group: string }
  | { kind: 'membership'; group: string };

export function parseOffsetsKey(key: string): OffsetsKey | null {
  try {
    const parts: unknown = JSON.parse(key.slice(1));
    if (!Array.isArray(parts)) return null;
    if (key[0] === 'o' && parts.length === 3)
      return { kind: 'offset', group: parts[0], topic: parts[1], partition: parts[2] };
    if (key[0] === 'p' && parts.length === 4)
      return { kind: 'position', group: parts[0], member: parts[1], topic: parts[2], partition: parts[3] };
    if (key[0] === 'g' && parts.length === 1) return { kind: 'generation', group: parts[0] };
    if (key[0] === 'm' && parts.length === 1) return { kind: 'membership', group: parts[0] };
  } catch {
    return null;
  }
  return null;
}

export type ConsumerOffsetsStoreOptions = StateLogStoreOptions;

/**
 * `__consumer_offsets`: reads are from memory (the applied map); writes resolve once durable and
 * applied. Writes not yet durable are bounded by groupCommitsPendingMax (then BACKPRESSURE).
 */
export class ConsumerOffsetsStore {
  readonly partition: StateLogPartition;
  private stateLog: StateLog<OffsetsEntry>;
  private machine: KeyValueState<OffsetsValue>;
  private pending = 0;

  private constructor(
    partition: StateLogPartition,
    state: StateLog<OffsetsEntry>,
    machine: KeyValueState<OffsetsValue>,
  ) {
    this.partition = partition;
    this.stateLog = state;
    this.machine = machine;
  }

  static async open(options: ConsumerOffsetsStoreOptions): Promise<ConsumerOffsetsStore> {
    const machine = new KeyValueState<OffsetsValue>();
    const { partition, state } = await openStateLog(options, consumerOffsetsTopicName, machine, offsetsCodec);
    return new ConsumerOffsetsStore(partition, state, machine);
  }

  /** The running state log (a new one after `reopen`). */
  get state(): StateLog<OffsetsEntry> {
    return this.stateLog;
  }

  /**
   * Stops writing at once (src/cluster/state-services/: this broker no longer leads the partition):
   * queued writes and every later one reject with `error`; nothing more is appended.
   */
  detach(error: unknown): void {
    this.stateLog.detach(error);
  }

  /**
   * Recovers the state again from the partition log as it is now (snapshot + replay: what the
   * replication follower copied while this broker did not lead it) and writes through a new state
   * log, with the hooks of the old one. Call after `detach` (or on a state log with nothing queued).
   */
  reopen(): void {
    const machine = new KeyValueState<OffsetsValue>();
    this.stateLog = this.stateLog.reopen(machine);
    this.machine = machine;
  }

  /** Every entry applied, for building the coordinator's view at open and for describe. */
  entries(): ReadonlyMap<string, OffsetsValue> {
    return this.machine.view();
  }

  /** The stored value of `key` (undefined: none). */
  get(key: string): OffsetsValue | undefined {
    return this.machine.get(key);
  }

  offset(key: string): number | null {
    const value = this.machine.get(key);
    return typeof value === 'number' ? value : null;
  }

  /** Writes (group-committed); resolves once durable and applied. BACKPRESSURE past the bound. */
  async put(entries: ReadonlyArray<{ key: string; value: OffsetsValue }>): Promise<void> {
    if (this.pending + entries.length > groupCommitsPendingMax) {
      throw new BackpressureError(
        `${this.pending} offset commits are waiting to be durable (groupCommitsPendingMax ${groupCommitsPendingMax}); retry later`,
      );
    }
    this.pending += entries.length;
    try {
      const state = this.stateLog;
      await Promise.all(entries.map(({ key, value }) => state.commit({ op: 'put', key, value })));
    } finally {
      this.pending -= entries.length;
    }
  }

  /** Deletes `keys` (tombstones, group-committed); resolves once durable and applied. */
  async remove(keys: readonly string[]): Promise<void> {
    if (this.pending + keys.length > groupCommitsPendingMax) {
      throw new BackpressureError(
        `${this.pending} offset commits are waiting to be durable (groupCommitsPendingMax ${groupCommitsPendingMax}); retry later`,
      );
    }
    this.pending += keys.length;
    try {
      const state = this.stateLog;
      await Promise.all(keys.map((key) => state.commit({ op: 'delete', key })));
    } finally {
      this.pending -= keys.length;
    }
  }

  async close(): Promise<void> {
    await this.stateLog.close();
    await this.partition.log.close();
  }
}
