/**
 * Request headers of the consumer group opcodes (40-47, docs/PROTOCOL.md "Consumer groups"), and their
 * validation: every field checked for type and range before the coordinator sees it.
 */
import { InvalidArgumentError } from '../errors.js';
import {
  fetchMaxBytesDefault,
  fetchMaxBytesMax,
  fetchMaxWaitMsMax,
  groupCommitOffsetsMax,
  groupHeartbeatWaitMsMax,
  groupNameLengthMax,
  groupSessionTimeoutMsMax,
  groupSessionTimeoutMsMin,
  memberIdLengthMax,
  partitionIndexMax,
  topicNameLengthMax,
} from '../limits.js';
import type {
  CommitOffsetsRequest,
  GroupFetchRequest,
  GroupMode,
  HeartbeatRequest,
  JoinGroupRequest,
  MemberRequest,
  PartitionRef,
  ReleasePartitionsRequest,
} from './group-api.js';
import { asFields, integerField, stringField } from './messages.js';

/** Topics one member may subscribe to. */
export const groupTopicsMax = 256;
const modes: readonly GroupMode[] = ['group', 'broadcast'];

type Fields = Record<string, unknown>;

function arrayField(fields: Fields, name: string, max: number): unknown[] {
  const value = fields[name];
  if (!Array.isArray(value) || value.length > max) {
    throw new InvalidArgumentError(`${name} must be an array of at most ${max} items`);
  }
  return value;
}

function partitionRef(value: unknown): PartitionRef {
  const fields = asFields(value);
  return {
    topic: stringField(fields, 'topic', topicNameLengthMax),
    partition: integerField(fields, 'partition', 0, partitionIndexMax),
  };
}

export function parseGroupName(header: unknown): { group: string } {
  return { group: stringField(asFields(header), 'group', groupNameLengthMax) };
}

export function parseMemberRequest(header: unknown): MemberRequest {
  const fields = asFields(header);
  return {
    group: stringField(fields, 'group', groupNameLengthMax),
    memberId: stringField(fields, 'memberId', memberIdLengthMax * 2),
  };
}

export function parseJoinGroup(header: unknown): JoinGroupRequest {
  const fields = asFields(header);
  const topics = arrayField(fields, 'topics', groupTopicsMax).map((topic) =>
    stringField({ topic }, 'topic', topicNameLengthMax),
  );
  if (topics.length === 0) throw new InvalidArgumentError('topics must name at least one topic');
  const mode = fields['mode'];
  if (!modes.includes(mode as GroupMode)) {
    throw new InvalidArgumentError(`mode must be one of ${modes.join(', ')}, got ${JSON.stringify(mode)}`);
  }
  const request: JoinGroupRequest = {
    group: stringField(fields, 'group', groupNameLengthMax),
    topics,
    mode: mode as GroupMode,
  };
  if (fields['memberId'] !== undefined) request.memberId = stringField(fields, 'memberId', memberIdLengthMax);
  if (fields['sessionTimeoutMs'] !== undefined) {
    request.sessionTimeoutMs = integerField(
      fields,
      'sessionTimeoutMs',
      groupSessionTimeoutMsMin,
      groupSessionTimeoutMsMax,
    );
  }
  return request;
}

export function parseHeartbeat(header: unknown): HeartbeatRequest {
  const fields = asFields(header);
  return {
    ...parseMemberRequest(fields),
    viewVersion: integerField(fields, 'viewVersion', 0, Number.MAX_SAFE_INTEGER),
    waitMs: integerField(fields, 'waitMs', 0, groupHeartbeatWaitMsMax, 0),
  };
}

export function parseReleasePartitions(header: unknown): ReleasePartitionsRequest {
  const fields = asFields(header);
  return {
    ...parseMemberRequest(fields),
    partitions: arrayField(fields, 'partitions', groupCommitOffsetsMax).map(partitionRef),
  };
}

export function parseCommitOffsets(header: unknown): CommitOffsetsRequest {
  const fields = asFields(header);
  return {
    ...parseMemberRequest(fields),
    offsets: arrayField(fields, 'offsets', groupCommitOffsetsMax).map((value) => ({
      ...partitionRef(value),
      offset: integerField(asFields(value), 'offset', 0, Number.MAX_SAFE_INTEGER),
    })),
  };
}

/** GROUP_FETCH: a member request plus the fields of FETCH. */
export interface GroupFetchHeader extends GroupFetchRequest {
  maxBytes: number;
  maxWaitMs: number;
  minBytes: number;
}

export function parseGroupFetch(header: unknown): GroupFetchHeader {
  const fields = asFields(header);
  return {
    ...parseMemberRequest(fields),
    ...partitionRef(fields),
    offset: integerField(fields, 'offset', 0, Number.MAX_SAFE_INTEGER),
    maxBytes: integerField(fields, 'maxBytes', 1, fetchMaxBytesMax, fetchMaxBytesDefault),
    maxWaitMs: integerField(fields, 'maxWaitMs', 0, fetchMaxWaitMsMax, 0),
    minBytes: integerField(fields, 'minBytes', 1, fetchMaxBytesMax, 1),
  };
}
