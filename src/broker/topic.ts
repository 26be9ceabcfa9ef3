/**
 * A topic as the broker serves it: its metadata record and its partitions, in order. Partitions
 * are only ever added (addPartitions), never removed or renumbered. Once deleted (`deleted` set by
 * the broker, logs closed) the object is dead: requests still holding it must fail with UNKNOWN_TOPIC.
 */
import type { TopicDescription } from '../protocol/broker-api.js';
import type { TopicRecord } from './metadata-store.js';
import type { Partition } from './partition.js';
import type { ResolvedTopicConfig } from './topic-config.js';

export class Topic {
  readonly name: string;
  readonly createdAtMs: number;
  /** Stored config; `partitions` is kept equal to the partition count. */
  readonly config: ResolvedTopicConfig;
  readonly partitions: Partition[];
  deleted = false;

  constructor(record: TopicRecord, partitions: Partition[]) {
    this.name = record.name;
    this.createdAtMs = record.createdAtMs;
    this.config = { ...record.config, partitions: partitions.length };
    this.partitions = partitions;
  }

  get partitionCount(): number {
    return this.partitions.length;
  }

  /** What the metadata records for this topic, with `partitionCount` partitions. */
  record(partitionCount = this.partitions.length): TopicRecord {
    return {
      name: this.name,
      partitionCount,
      createdAtMs: this.createdAtMs,
      config: { ...this.config, partitions: partitionCount },
    };
  }

  addPartitions(added: Partition[]): void {
    this.partitions.push(...added);
    this.config.partitions = this.partitions.length;
  }

  describe(): TopicDescription {
    return {
      name: this.name,
      partitionCount: this.partitions.length,
      config: { ...this.config },
      createdAtMs: this.createdAtMs,
      partitions: this.partitions.map((partition) => partition.describe()),
    };
  }
}
