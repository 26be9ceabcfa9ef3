/**
 * Topic administration in cluster mode, on etcd (docs/CLUSTER.md, "Topics"): the broker that receives
 * a topic request writes the topic's **intent** `topics/<topic>`; the controller then creates, assigns
 * and deletes the partition keys. Any broker may call these; none of them needs the controller.
 *
 * - `createTopic`: create-if-absent (TOPIC_EXISTS otherwise). `replicationFactor` defaults to
 *   min(3, live brokers) and may not exceed the live brokers (INVALID_ARGUMENT: the controller could
 *   not place it); `minInSyncReplicas` defaults to min(2, replicationFactor), 1..replicationFactor.
 * - `addPartitions`: adds `count` partitions, like BrokerTopics.addPartitions (compare-and-swap on the
 *   topic key's mod revision).
 * - `deleteTopic`: deletes the intent (UNKNOWN_TOPIC if absent); the controller deletes the partitions.
 * - `describe`: the topic's record and its partitions' records as etcd has them now.
 */
import type { Namespace } from 'etcd3';
import { validateUserTopicName } from '../../broker/topic-name.js';
import { InvalidArgumentError, TopicExistsError, UnknownTopicError } from '../../errors.js';
import { partitionCountMax, replicationFactorDefaultMax, replicationFactorMax } from '../../limits.js';
import {
  decodeTopic,
  encodeRecord,
  isLocalTopicConfig,
  type LocalTopicConfig,
  type PartitionRecord,
  type TopicRecord,
  topicKey,
} from './cluster-records.js';
import { partitionId, readClusterSnapshot } from './cluster-snapshot.js';
import { etcdCall } from './etcd-call.js';

export interface ClusterTopicConfig {
  partitions?: number;
  replicationFactor?: number;
  minInSyncReplicas?: number;
  /** The local topic config every replica creates the topic with (durability, retention, ...). Default {}. */
  config?: LocalTopicConfig;
}

export interface ClusterTopicDescription {
  topic: string;
  config: TopicRecord;
  /** Index = partition; undefined for a partition the controller has not assigned yet. */
  partitions: (PartitionRecord | undefined)[];
}

const integerIn = (name: string, value: unknown, min: number, max: number): number => {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
};

export class ClusterAdmin {
  constructor(
    private readonly namespace: Namespace,
    private readonly nowMs: () => number = Date.now,
  ) {}

  async createTopic(topic: string, topicConfig: ClusterTopicConfig = {}): Promise<TopicRecord> {
    validateUserTopicName(topic);
    const snapshot = await readClusterSnapshot(this.namespace);
    const liveBrokers = snapshot.brokers.size;
    const partitions = integerIn('partitions', topicConfig.partitions ?? 1, 1, partitionCountMax);
    const replicationFactor = integerIn(
      'replicationFactor',
      topicConfig.replicationFactor ?? Math.max(1, Math.min(replicationFactorDefaultMax, liveBrokers)),
      1,
      replicationFactorMax,
    );
    if (replicationFactor > liveBrokers) {
      throw new InvalidArgumentError(
        `replicationFactor ${replicationFactor} exceeds the ${liveBrokers} live brokers of the cluster`,
      );
    }
    const minInSyncReplicas = integerIn(
      'minInSyncReplicas',
      topicConfig.minInSyncReplicas ?? Math.min(2, replicationFactor),
      1,
      replicationFactor,
    );
    const config = topicConfig.config ?? {};
    if (!isLocalTopicConfig(config)) {
      throw new InvalidArgumentError(
        'config must be a flat object of numbers and strings, without partitions',
      );
    }
    const record: TopicRecord = {
      partitions,
      replicationFactor,
      minInSyncReplicas,
      createdAtMs: this.nowMs(),
      config: { ...config },
    };
    const key = topicKey(topic);
    const response = await etcdCall(`create ${key}`, () =>
      this.namespace
        .if(key, 'Create', '==', 0)
        .then(this.namespace.put(key).value(encodeRecord(record)))
        .commit(),
    );
    if (!response.succeeded) throw new TopicExistsError(`topic '${topic}' already exists in the cluster`);
    return record;
  }

  async addPartitions(topic: string, count: number): Promise<TopicRecord> {
    const key = topicKey(topic);
    for (;;) {
      const response = await etcdCall(`read ${key}`, () => this.namespace.get(key).exec());
      const kv = response.kvs[0];
      const current = kv === undefined ? undefined : decodeTopic(kv.value.toString('utf8'));
      if (kv === undefined || current === undefined)
        throw new UnknownTopicError(`no topic '${topic}' in the cluster`);
      integerIn('count', count, 1, partitionCountMax - current.partitions);
      const next: TopicRecord = { ...current, partitions: current.partitions + count };
      const written = await etcdCall(`update ${key}`, () =>
        this.namespace
          .if(key, 'Mod', '==', kv.mod_revision)
          .then(this.namespace.put(key).value(encodeRecord(next)))
          .commit(),
      );
      if (written.succeeded) return next;
    }
  }

  async deleteTopic(topic: string): Promise<void> {
    const key = topicKey(topic);
    const response = await etcdCall(`delete ${key}`, () => this.namespace.delete().key(key).exec());
    if (response.deleted === '0') throw new UnknownTopicError(`no topic '${topic}' in the cluster`);
  }

  async describe(topic: string): Promise<ClusterTopicDescription> {
    const snapshot = await readClusterSnapshot(this.namespace);
    const entry = snapshot.topics.get(topic);
    if (entry === undefined) throw new UnknownTopicError(`no topic '${topic}' in the cluster`);
    const partitions: (PartitionRecord | undefined)[] = [];
    for (let partition = 0; partition < entry.record.partitions; partition++) {
      partitions.push(snapshot.partitions.get(partitionId(topic, partition))?.record);
    }
    return { topic, config: entry.record, partitions };
  }
}
