/**
 * What a client in a cluster knows of partition leaders, from METADATA answers
 * (protocol/cluster-metadata-api.ts): per topic asked, each partition's leader and leader epoch, and
 * the live brokers' advertised URLs. A topic is "known" once a METADATA answer covered it, even if
 * the answer listed none of its partitions (not a cluster topic, or not assigned yet): the client then
 * sends its requests to any broker, whose error tells the caller. At most `metadataTopicsMax` topics
 * are remembered (the least recently added go first; they are asked again when used).
 */
import { metadataTopicsMax, partitionCountMax } from '../limits.js';
import type { ClusterMetadata } from '../protocol/cluster-metadata-api.js';

export interface PartitionLeader {
  readonly leaderId: number;
  readonly leaderEpoch: number;
}

export class LeaderTable {
  /** Per known topic, index = partition; undefined: no leader (offline, unassigned or unknown). */
  private readonly topics = new Map<string, Array<PartitionLeader | undefined>>();
  /** Live brokers of the last answer: id → advertised URL. */
  private brokerUrls: ReadonlyMap<number, string> = new Map();

  /** True once a METADATA answer covered `topic`. */
  knows(topic: string): boolean {
    return this.topics.has(topic);
  }

  /** The partition's leader with a live broker URL, or undefined (send to any broker). */
  leaderOf(topic: string, partition: number): PartitionLeader | undefined {
    const leader = this.topics.get(topic)?.[partition];
    return leader !== undefined && this.brokerUrls.has(leader.leaderId) ? leader : undefined;
  }

  /** True when METADATA listed this partition (then UNKNOWN_TOPIC from a broker only means it lags). */
  listed(topic: string, partition: number): boolean {
    return this.topics.get(topic)?.[partition] !== undefined;
  }

  urlOf(brokerId: number): string | undefined {
    return this.brokerUrls.get(brokerId);
  }

  get brokers(): ReadonlyMap<number, string> {
    return this.brokerUrls;
  }

  /** The topics a refresh asks for: the known ones plus `extra`, at most metadataTopicsMax (newest kept). */
  topicsToAsk(extra: readonly string[]): string[] {
    const names = new Set(this.topics.keys());
    for (const topic of extra) {
      names.delete(topic);
      names.add(topic);
    }
    const all = [...names];
    return all.length > metadataTopicsMax ? all.slice(all.length - metadataTopicsMax) : all;
  }

  /** Takes a METADATA answer to a request that named `asked`. */
  update(metadata: ClusterMetadata, asked: readonly string[]): void {
    const urls = new Map<number, string>();
    for (const broker of metadata.brokers) {
      if (Number.isSafeInteger(broker.brokerId) && typeof broker.url === 'string') {
        urls.set(broker.brokerId, broker.url);
      }
    }
    this.brokerUrls = urls;
    for (const topic of asked) {
      this.topics.delete(topic); // re-inserted: the newest go last
      this.topics.set(topic, []);
    }
    for (const entry of metadata.partitions) {
      const leaders = this.topics.get(entry.topic);
      if (leaders === undefined || !Number.isSafeInteger(entry.partition) || entry.partition < 0) continue;
      if (entry.partition >= partitionCountMax) continue;
      leaders[entry.partition] =
        entry.leaderId >= 0 ? { leaderId: entry.leaderId, leaderEpoch: entry.leaderEpoch } : undefined;
    }
    while (this.topics.size > metadataTopicsMax) {
      const oldest = this.topics.keys().next().value as string;
      this.topics.delete(oldest);
    }
  }
}
