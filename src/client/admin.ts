/**
 * Topic administration over the transport: one request per call, answers as the broker gives them
 * (TopicDescription from src/protocol/broker-api.ts). Errors are the broker's: UNKNOWN_TOPIC,
 * TOPIC_EXISTS, INVALID_TOPIC_NAME, INVALID_ARGUMENT, ...
 */

import { SpillwayError } from '../errors.js';
import type {
  CreateTopicOptions,
  IntegrityReport,
  OffsetSpec,
  RepairResult,
  TopicDescription,
} from '../protocol/broker-api.js';
import type { ClusterMetadata } from '../protocol/cluster-metadata-api.js';
import type { DelayStats } from '../protocol/delay-api.js';
import type { GroupDescription, GroupSummary } from '../protocol/group-api.js';
import type {
  AddPartitionsRequest,
  CreateTopicRequest,
  ListOffsetRequest,
  RepairPartitionRequest,
  TopicNameRequest,
} from '../protocol/messages.js';
import { Opcode } from '../protocol/opcodes.js';
import type { QueueGroupDescription } from '../protocol/queue-api.js';
import type { TransactionInfo, TransactionStats } from '../protocol/transaction-api.js';
import type { Transport } from './transport.js';
import { integerOf } from './wire.js';

function topicDescriptionOf(header: unknown, what: string): TopicDescription {
  const fields = header as Partial<TopicDescription> | null;
  if (
    fields === null ||
    typeof fields !== 'object' ||
    typeof fields.name !== 'string' ||
    typeof fields.partitionCount !== 'number' ||
    !Number.isSafeInteger(fields.partitionCount) ||
    fields.partitionCount < 1 ||
    !Array.isArray(fields.partitions)
  ) {
    throw new SpillwayError('PROTOCOL_ERROR', `${what}: the broker's answer is not a topic description`);
  }
  return fields as TopicDescription;
}

/** A METADATA answer, checked for its lists (PROTOCOL_ERROR otherwise). */
export function clusterMetadataOf(header: unknown): ClusterMetadata {
  const metadata = header as ClusterMetadata | null;
  if (
    metadata === null ||
    typeof metadata !== 'object' ||
    typeof metadata.cluster !== 'boolean' ||
    !Array.isArray(metadata.brokers) ||
    !Array.isArray(metadata.partitions)
  ) {
    throw new SpillwayError(
      'PROTOCOL_ERROR',
      "metadata: the broker's answer has no broker or partition list",
    );
  }
  return metadata;
}

export class Admin {
  private readonly transport: Transport;

  /** @internal Made by Spillway. */
  constructor(transport: Transport) {
    this.transport = transport;
  }

  /**
   * Creates a topic (default 1 partition, the broker's default durability). TOPIC_EXISTS if it exists.
   * In a cluster also `replicationFactor` and `minInSyncReplicas` (a single broker accepts 1 only).
   */
  async createTopic(name: string, config: CreateTopicOptions = {}): Promise<TopicDescription> {
    const request: CreateTopicRequest = { name, config };
    const response = await this.transport.request(Opcode.createTopic, request);
    return topicDescriptionOf(response.header, 'createTopic');
  }

  /** Deletes a topic and its data. UNKNOWN_TOPIC if there is none. */
  async deleteTopic(name: string): Promise<void> {
    const request: TopicNameRequest = { name };
    await this.transport.request(Opcode.deleteTopic, request);
  }

  /** Topics by name; internal ones (names starting with `__`) only with `{ internal: true }`. */
  async listTopics(options: { internal?: boolean } = {}): Promise<TopicDescription[]> {
    const header = options.internal === true ? { internal: true } : {};
    const response = await this.transport.request(Opcode.listTopics, header);
    const topics = (response.header as { topics?: unknown } | null)?.topics;
    if (!Array.isArray(topics)) {
      throw new SpillwayError('PROTOCOL_ERROR', "listTopics: the broker's answer has no topic list");
    }
    return topics.map((topic) => topicDescriptionOf(topic, 'listTopics'));
  }

  async describeTopic(name: string): Promise<TopicDescription> {
    const request: TopicNameRequest = { name };
    const response = await this.transport.request(Opcode.describeTopic, request);
    return topicDescriptionOf(response.header, 'describeTopic');
  }

  /** Adds `count` partitions to the topic (see docs/PROTOCOL.md); returns the new description. */
  async addPartitions(name: string, count: number): Promise<TopicDescription> {
    const request: AddPartitionsRequest = { name, count };
    const response = await this.transport.request(Opcode.addPartitions, request);
    return topicDescriptionOf(response.header, 'addPartitions');
  }

  /**
   * An offset of a partition: 'earliest' (log start), 'latest' (log end: the next offset written),
   * or { timestamp } (the first offset whose timestamp is >= it, or the log end).
   */
  async listOffset(topic: string, partition: number, spec: OffsetSpec): Promise<number> {
    const request: ListOffsetRequest = { topic, partition, spec };
    const response = await this.transport.request(Opcode.listOffset, request);
    return integerOf(response.header, 'offset', 'listOffset');
  }

  /** Delayed messages: pending by horizon (<1 min, <1 h, <1 day, later), next due, counters. */
  async delayStats(): Promise<DelayStats> {
    const response = await this.transport.request(Opcode.delayStats, {});
    const stats = response.header as DelayStats | null;
    if (stats === null || typeof stats !== 'object' || typeof stats.pending !== 'number') {
      throw new SpillwayError('PROTOCOL_ERROR', "delayStats: the broker's answer has no pending count");
    }
    return stats;
  }

  /**
   * METADATA (70): which broker leads which partition of `topics` (docs/CLUSTER.md). A single broker
   * answers `cluster: false` with empty lists.
   */
  async metadata(topics: readonly string[]): Promise<ClusterMetadata> {
    const response = await this.transport.request(Opcode.metadata, { topics: [...topics] });
    return clusterMetadataOf(response.header);
  }

  /** Every group the broker knows (group and broadcast mode), by name, with member count and lag. */
  async listGroups(): Promise<GroupSummary[]> {
    const response = await this.transport.request(Opcode.listGroups, {});
    const groups = (response.header as { groups?: unknown } | null)?.groups;
    if (!Array.isArray(groups)) {
      throw new SpillwayError('PROTOCOL_ERROR', "listGroups: the broker's answer has no group list");
    }
    return groups as GroupSummary[];
  }

  /**
   * The queue groups (shared and key_shared consumption) of `group`, or every one: per (group, topic)
   * the mode, settings, receiving members and per partition the ack floor, backlog, in-flight and
   * scheduled counts.
   */
  async describeQueues(group?: string): Promise<QueueGroupDescription[]> {
    const response = await this.transport.request(Opcode.queueDescribe, group === undefined ? {} : { group });
    const groups = (response.header as { groups?: unknown } | null)?.groups;
    if (!Array.isArray(groups)) {
      throw new SpillwayError('PROTOCOL_ERROR', "describeQueues: the broker's answer has no group list");
    }
    return groups as QueueGroupDescription[];
  }

  /** Open transactions (id, producer group, age, checks made) and the broker's transaction figures. */
  async listTransactions(): Promise<{ transactions: TransactionInfo[]; stats: TransactionStats }> {
    const response = await this.transport.request(Opcode.txnList, {});
    const header = response.header as { transactions?: unknown; stats?: unknown } | null;
    if (!Array.isArray(header?.transactions) || typeof header?.stats !== 'object') {
      throw new SpillwayError(
        'PROTOCOL_ERROR',
        "listTransactions: the broker's answer has no transaction list",
      );
    }
    return header as { transactions: TransactionInfo[]; stats: TransactionStats };
  }

  /** A group's mode, generation, members, assignment, committed offsets and lag per partition. */
  async describeGroup(group: string): Promise<GroupDescription> {
    const response = await this.transport.request(Opcode.describeGroup, { group });
    const header = response.header as Partial<GroupDescription> | null;
    if (
      header === null ||
      typeof header !== 'object' ||
      !Array.isArray(header.partitions) ||
      !Array.isArray(header.members)
    ) {
      throw new SpillwayError(
        'PROTOCOL_ERROR',
        "describeGroup: the broker's answer is not a group description",
      );
    }
    return header as GroupDescription;
  }

  /**
   * What the broker found on disk when it opened (damage, orphans, leftovers, each with its fix),
   * the partitions stopped now and the repairs since (`spillway doctor`).
   */
  async integrityReport(): Promise<IntegrityReport> {
    const response = await this.transport.request(Opcode.integrityReport, {});
    const report = response.header as Partial<IntegrityReport> | null;
    if (report === null || typeof report !== 'object' || !Array.isArray(report.findings)) {
      throw new SpillwayError('PROTOCOL_ERROR', "integrityReport: the broker's answer is not a report");
    }
    return report as IntegrityReport;
  }

  /**
   * Repairs a stopped partition: its damaged ranges are moved into its quarantine/ folder (never
   * deleted) and it serves again. Says exactly which offsets were set aside (`spillway repair`).
   */
  async repairPartition(topic: string, partition: number): Promise<RepairResult> {
    const request: RepairPartitionRequest = { topic, partition };
    const response = await this.transport.request(Opcode.repairPartition, request);
    const result = response.header as Partial<RepairResult> | null;
    if (result === null || typeof result !== 'object' || !Array.isArray(result.setAside)) {
      throw new SpillwayError(
        'PROTOCOL_ERROR',
        "repairPartition: the broker's answer is not a repair result",
      );
    }
    return result as RepairResult;
  }
}
