/**
 * Control headers of each request and response (msgpack maps in the frame header), and the
 * validation of requests received from the network: every field is checked for type and range
 * before the broker sees it, and a bad one is an INVALID_ARGUMENT naming the field.
 */
import { type ErrorCode, InvalidArgumentError } from '../errors.js';
import {
  clientIdLengthMax,
  fetchMaxBytesDefault,
  fetchMaxBytesMax,
  fetchMaxWaitMsMax,
  partitionIndexMax,
  replicationFactorMax,
  tokenLengthMax,
  topicNameLengthMax,
} from '../limits.js';
import { type CreateTopicOptions, type OffsetSpec, type TopicConfig, topicConfigKeys } from './broker-api.js';
import { type Durability, durabilities } from './types.js';

export interface HelloRequest {
  /** The lowest protocol version the client speaks (a version 1 client: its only one). */
  protocolVersion: number;
  /** The highest protocol version the client speaks; absent: protocolVersion. */
  protocolVersionMax?: number;
  clientId?: string;
  /** The client's token (docs/SECURITY.md); required when the broker runs with authentication. */
  token?: string;
}
export interface HelloResponse {
  /** The version chosen: the highest both sides speak. */
  protocolVersion: number;
  brokerVersion: string;
  frameBytesMax: number;
  inFlightRequestsMax: number;
  /** The session of this connection (logs, `GET /v1/sessions`). */
  sessionId: number;
  /** The principal the token authenticated (absent when the broker runs without authentication). */
  principal?: string;
}
export interface ListTopicsRequest {
  /** Include internal topics (names starting with `__`). */
  internal?: boolean;
}
export interface TopicNameRequest {
  name: string;
}
export interface CreateTopicRequest {
  name: string;
  /** The topic config plus, in a cluster, `replicationFactor` and `minInSyncReplicas`. */
  config: CreateTopicOptions;
}
export interface AddPartitionsRequest {
  name: string;
  count: number;
}
export interface ProduceRequest {
  topic: string;
  partition: number;
}
export interface FetchRequest {
  topic: string;
  partition: number;
  offset: number;
  maxBytes: number;
  maxWaitMs: number;
  minBytes: number;
}
/** FETCH response header; the batches are the frame body. */
export interface FetchResponse {
  batchCount: number;
  firstOffset: number;
  nextOffset: number;
  logStartOffset: number;
  highWatermark: number;
}
export interface ListOffsetRequest {
  topic: string;
  partition: number;
  spec: OffsetSpec;
}
export interface ErrorHeader {
  code: ErrorCode;
  message: string;
  retriable: boolean;
}

type Fields = Record<string, unknown>;

export function asFields(header: unknown): Fields {
  if (header === null || typeof header !== 'object' || Array.isArray(header)) {
    throw new InvalidArgumentError('request header must be a map');
  }
  return header as Fields;
}

export function stringField(fields: Fields, name: string, maxLength = 1024): string {
  const value = fields[name];
  if (typeof value !== 'string' || value.length === 0 || value.length > maxLength) {
    throw new InvalidArgumentError(`${name} must be a non-empty string of at most ${maxLength} characters`);
  }
  return value;
}

export function integerField(
  fields: Fields,
  name: string,
  min: number,
  max: number,
  fallback?: number,
): number {
  const value = fields[name];
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(
      `${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

function optionalInteger(fields: Fields, name: string, min: number, max: number): number | undefined {
  return fields[name] === undefined ? undefined : integerField(fields, name, min, max);
}

export function parseTopicConfig(value: unknown): TopicConfig {
  if (value === undefined) return {};
  const fields = asFields(value);
  const config: TopicConfig = {};
  for (const key of Object.keys(fields)) {
    if (!topicConfigKeys.has(key)) throw new InvalidArgumentError(`unknown topic config '${key}'`);
  }
  const partitions = optionalInteger(fields, 'partitions', 1, Number.MAX_SAFE_INTEGER);
  if (partitions !== undefined) config.partitions = partitions;
  if (fields['durability'] !== undefined) {
    if (!durabilities.includes(fields['durability'] as Durability)) {
      throw new InvalidArgumentError(`durability must be one of ${durabilities.join(', ')}`);
    }
    config.durability = fields['durability'] as Durability;
  }
  for (const name of [
    'flushIntervalMs',
    'retentionMs',
    'retentionBytes',
    'segmentBytes',
    'dedupWindowMs',
  ] as const) {
    const parsed = optionalInteger(fields, name, -1, Number.MAX_SAFE_INTEGER);
    if (parsed !== undefined) config[name] = parsed;
  }
  return config;
}

export function parseHello(header: unknown): HelloRequest {
  const fields = asFields(header);
  const request: HelloRequest = { protocolVersion: integerField(fields, 'protocolVersion', 0, 0xffff) };
  if (fields['protocolVersionMax'] !== undefined) {
    request.protocolVersionMax = integerField(fields, 'protocolVersionMax', request.protocolVersion, 0xffff);
  }
  if (fields['clientId'] !== undefined) request.clientId = stringField(fields, 'clientId', clientIdLengthMax);
  if (fields['token'] !== undefined) request.token = stringField(fields, 'token', tokenLengthMax);
  return request;
}

export function parseListTopics(header: unknown): ListTopicsRequest {
  const fields = asFields(header);
  const internal = fields['internal'];
  if (internal !== undefined && typeof internal !== 'boolean') {
    throw new InvalidArgumentError(`internal must be a boolean, got ${JSON.stringify(internal)}`);
  }
  return internal === undefined ? {} : { internal };
}

export function parseTopicName(header: unknown): TopicNameRequest {
  return { name: stringField(asFields(header), 'name', topicNameLengthMax) };
}

export function parseCreateTopic(header: unknown): CreateTopicRequest {
  const fields = asFields(header);
  return {
    name: stringField(fields, 'name', topicNameLengthMax),
    config: parseCreateTopicOptions(fields['config']),
  };
}

/** A topic config plus the replica placement (`replicationFactor`, `minInSyncReplicas`: 1..replicationFactorMax). */
export function parseCreateTopicOptions(value: unknown): CreateTopicOptions {
  if (value === undefined) return {};
  const { replicationFactor, minInSyncReplicas, ...rest } = asFields(value);
  const placement: Fields = { replicationFactor, minInSyncReplicas };
  const options: CreateTopicOptions = parseTopicConfig(rest);
  const factor = optionalInteger(placement, 'replicationFactor', 1, replicationFactorMax);
  if (factor !== undefined) options.replicationFactor = factor;
  const minimum = optionalInteger(placement, 'minInSyncReplicas', 1, replicationFactorMax);
  if (minimum !== undefined) options.minInSyncReplicas = minimum;
  return options;
}

export function parseAddPartitions(header: unknown): AddPartitionsRequest {
  const fields = asFields(header);
  return {
    name: stringField(fields, 'name', topicNameLengthMax),
    count: integerField(fields, 'count', 1, Number.MAX_SAFE_INTEGER),
  };
}

export function parseProduce(header: unknown): ProduceRequest {
  const fields = asFields(header);
  return {
    topic: stringField(fields, 'topic', topicNameLengthMax),
    partition: integerField(fields, 'partition', 0, partitionIndexMax),
  };
}

/** REPAIR_PARTITION request header. */
export interface RepairPartitionRequest {
  topic: string;
  partition: number;
}

export function parseRepairPartition(header: unknown): RepairPartitionRequest {
  return parseProduce(header);
}

export function parseFetch(header: unknown): FetchRequest {
  const fields = asFields(header);
  return {
    topic: stringField(fields, 'topic', topicNameLengthMax),
    partition: integerField(fields, 'partition', 0, partitionIndexMax),
    offset: integerField(fields, 'offset', 0, Number.MAX_SAFE_INTEGER),
    maxBytes: integerField(fields, 'maxBytes', 1, fetchMaxBytesMax, fetchMaxBytesDefault),
    maxWaitMs: integerField(fields, 'maxWaitMs', 0, fetchMaxWaitMsMax, 0),
    minBytes: integerField(fields, 'minBytes', 1, fetchMaxBytesMax, 1),
  };
}

export function parseOffsetSpec(value: unknown): OffsetSpec {
  if (value === 'earliest' || value === 'latest') return value;
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const timestamp = integerField(value as Fields, 'timestamp', 0, Number.MAX_SAFE_INTEGER);
    return { timestamp };
  }
  throw new InvalidArgumentError("spec must be 'earliest', 'latest' or { timestamp }");
}

export function parseListOffset(header: unknown): ListOffsetRequest {
  const fields = asFields(header);
  return {
    topic: stringField(fields, 'topic', topicNameLengthMax),
    partition: integerField(fields, 'partition', 0, partitionIndexMax),
    spec: parseOffsetSpec(fields['spec']),
  };
}
