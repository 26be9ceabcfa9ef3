/**
 * The etcd key layout of a cluster and the records stored under it (docs/CLUSTER.md, "etcd key
 * layout"). Every key is relative to the cluster's namespace `/spillway/<cluster>/`:
 *
 *   brokers/<id>             BrokerRecord     under the broker's session lease
 *   controller               ControllerRecord under the controller's session lease
 *   controller-epoch         ControllerEpochRecord
 *   topics/<topic>           TopicRecord
 *   partitions/<topic>/<p>   PartitionRecord
 *
 * Values are JSON with `version: 1`. Decoders are strict: a value that is not exactly what this code
 * writes (another program wrote the key, a newer version) decodes to undefined and the caller reports
 * the key instead of acting on a guess. Pure functions.
 */
import { brokerIdMax, partitionCountMax, replicationFactorMax } from '../../limits.js';

export const recordVersion = 1;

export interface BrokerRecord {
  brokerId: number;
  /** ws://host:port (or wss://) the broker advertises. */
  url: string;
  registeredAtMs: number;
}

export interface ControllerRecord {
  brokerId: number;
  controllerEpoch: number;
}

export interface ControllerEpochRecord {
  controllerEpoch: number;
}

/**
 * The per-broker topic config every replica creates its local topic with (durability, retention,
 * segment size, ...: protocol/broker-api.ts TopicConfig without `partitions`), as resolved by the
 * broker that created the topic. Checked here for shape only; each broker validates it fully
 * (topic-config.ts) when it creates the local topic.
 */
export type LocalTopicConfig = Record<string, number | string>;

export interface TopicRecord {
  partitions: number;
  replicationFactor: number;
  minInSyncReplicas: number;
  createdAtMs: number;
  config: LocalTopicConfig;
}

/** Leader -1: no in-sync replica is alive (the partition is offline). */
export const noLeader = -1;

export interface PartitionRecord {
  replicas: number[];
  leaderId: number;
  leaderEpoch: number;
  isr: number[];
  /** The controller epoch of the controller that wrote the record last (the leader's ISR changes keep it). */
  controllerEpoch: number;
}

export const brokersPrefix = 'brokers/';
export const topicsPrefix = 'topics/';
export const partitionsPrefix = 'partitions/';
export const controllerKey = 'controller';
export const controllerEpochKey = 'controller-epoch';

export const brokerKey = (brokerId: number): string => `${brokersPrefix}${brokerId}`;
export const topicKey = (topic: string): string => `${topicsPrefix}${topic}`;
export const partitionKey = (topic: string, partition: number): string =>
  `${partitionsPrefix}${topic}/${partition}`;

/** The etcd namespace of a cluster name. */
export const clusterNamespace = (clusterName: string): string => `/spillway/${clusterName}/`;

export type ParsedKey =
  | { kind: 'broker'; brokerId: number }
  | { kind: 'controller' }
  | { kind: 'controller-epoch' }
  | { kind: 'topic'; topic: string }
  | { kind: 'partition'; topic: string; partition: number };

const decimalPattern = /^(0|[1-9][0-9]{0,9})$/;
const topicPattern = /^[a-zA-Z0-9._-]+$/;

function decimal(text: string, max: number): number | undefined {
  if (!decimalPattern.test(text)) return undefined;
  const value = Number(text);
  return value <= max ? value : undefined;
}

/** What a key (relative to the namespace) is, or undefined for a key this layout does not have. */
export function parseKey(key: string): ParsedKey | undefined {
  if (key === controllerKey) return { kind: 'controller' };
  if (key === controllerEpochKey) return { kind: 'controller-epoch' };
  if (key.startsWith(brokersPrefix)) {
    const brokerId = decimal(key.slice(brokersPrefix.length), brokerIdMax);
    return brokerId === undefined ? undefined : { kind: 'broker', brokerId };
  }
  if (key.startsWith(topicsPrefix)) {
    const topic = key.slice(topicsPrefix.length);
    return topicPattern.test(topic) ? { kind: 'topic', topic } : undefined;
  }
  if (key.startsWith(partitionsPrefix)) {
    const rest = key.slice(partitionsPrefix.length);
    const slash = rest.lastIndexOf('/');
    if (slash <= 0) return undefined;
    const topic = rest.slice(0, slash);
    const partition = decimal(rest.slice(slash + 1), partitionCountMax - 1);
    if (!topicPattern.test(topic) || partition === undefined) return undefined;
    return { kind: 'partition', topic, partition };
  }
  return undefined;
}

export const encodeRecord = (record: object): string => JSON.stringify({ version: recordVersion, ...record });

type Fields = Record<string, unknown>;

function parseObject(text: string, keys: readonly string[]): Fields | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const fields = value as Fields;
  if (fields['version'] !== recordVersion) return undefined;
  const names = Object.keys(fields);
  if (names.length !== keys.length + 1 || !keys.every((key) => Object.hasOwn(fields, key))) return undefined;
  return fields;
}

const isInteger = (value: unknown, min: number, max: number): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= min && value <= max;

const isBrokerId = (value: unknown): value is number => isInteger(value, 0, brokerIdMax);

/** A list of distinct broker ids, at most `max` long. */
function isBrokerList(value: unknown, min: number, max: number): value is number[] {
  if (!Array.isArray(value) || value.length < min || value.length > max) return false;
  return value.every(isBrokerId) && new Set(value).size === value.length;
}

const isWebSocketUrl = (value: unknown): value is string => {
  if (typeof value !== 'string' || value.length > 2048) return false;
  try {
    const url = new URL(value);
    return url.protocol === 'ws:' || url.protocol === 'wss:';
  } catch {
    return false;
  }
};

/** A flat object of numbers and strings, without `partitions` (that is the cluster's own field). */
export function isLocalTopicConfig(value: unknown): value is LocalTopicConfig {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const entries = Object.entries(value);
  return (
    entries.length <= 16 &&
    entries.every(
      ([key, field]) =>
        key !== 'partitions' &&
        (typeof field === 'number' || (typeof field === 'string' && field.length <= 64)),
    )
  );
}

export function decodeBroker(text: string): BrokerRecord | undefined {
  const fields = parseObject(text, ['brokerId', 'url', 'registeredAtMs']);
  if (fields === undefined) return undefined;
  const { brokerId, url, registeredAtMs } = fields;
  if (
    !isBrokerId(brokerId) ||
    !isWebSocketUrl(url) ||
    !isInteger(registeredAtMs, 0, Number.MAX_SAFE_INTEGER)
  ) {
    return undefined;
  }
  return { brokerId, url, registeredAtMs };
}

export function decodeController(text: string): ControllerRecord | undefined {
  const fields = parseObject(text, ['brokerId', 'controllerEpoch']);
  if (fields === undefined) return undefined;
  const { brokerId, controllerEpoch } = fields;
  if (!isBrokerId(brokerId) || !isInteger(controllerEpoch, 1, Number.MAX_SAFE_INTEGER)) return undefined;
  return { brokerId, controllerEpoch };
}

export function decodeControllerEpoch(text: string): ControllerEpochRecord | undefined {
  const fields = parseObject(text, ['controllerEpoch']);
  if (fields === undefined) return undefined;
  const { controllerEpoch } = fields;
  if (!isInteger(controllerEpoch, 1, Number.MAX_SAFE_INTEGER)) return undefined;
  return { controllerEpoch };
}

export function decodeTopic(text: string): TopicRecord | undefined {
  const fields = parseObject(text, [
    'partitions',
    'replicationFactor',
    'minInSyncReplicas',
    'createdAtMs',
    'config',
  ]);
  if (fields === undefined) return undefined;
  const { partitions, replicationFactor, minInSyncReplicas, createdAtMs, config } = fields;
  if (
    !isInteger(partitions, 1, partitionCountMax) ||
    !isInteger(replicationFactor, 1, replicationFactorMax) ||
    !isInteger(minInSyncReplicas, 1, replicationFactor as number) ||
    !isInteger(createdAtMs, 0, Number.MAX_SAFE_INTEGER) ||
    !isLocalTopicConfig(config)
  ) {
    return undefined;
  }
  return { partitions, replicationFactor, minInSyncReplicas, createdAtMs, config };
}

export function decodePartition(text: string): PartitionRecord | undefined {
  const fields = parseObject(text, ['replicas', 'leaderId', 'leaderEpoch', 'isr', 'controllerEpoch']);
  if (fields === undefined) return undefined;
  const { replicas, leaderId, leaderEpoch, isr, controllerEpoch } = fields;
  if (!isBrokerList(replicas, 1, replicationFactorMax)) return undefined;
  if (!isBrokerList(isr, 1, replicas.length) || !isr.every((id) => replicas.includes(id))) return undefined;
  if (!(leaderId === noLeader || (isBrokerId(leaderId) && isr.includes(leaderId)))) return undefined;
  if (!isInteger(leaderEpoch, 0, Number.MAX_SAFE_INTEGER)) return undefined;
  if (!isInteger(controllerEpoch, 1, Number.MAX_SAFE_INTEGER)) return undefined;
  return { replicas, leaderId, leaderEpoch, isr, controllerEpoch };
}
