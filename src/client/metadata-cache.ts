/**
 * Partition counts of topics, as the producer needs them to pick partitions. Fetched with
 * describeTopic on first use, shared by concurrent callers (one request per topic at a time),
 * refreshed in the background when older than `maxAgeMs` or when the broker says the count we used
 * is wrong (UNKNOWN_PARTITION), and forgotten on UNKNOWN_TOPIC.
 */
import type { Admin } from './admin.js';

export interface TopicMetadata {
  readonly name: string;
  partitionCount: number;
  fetchedAtMs: number;
}

export class MetadataCache {
  private readonly admin: Admin;
  readonly maxAgeMs: number;
  private readonly topics = new Map<string, TopicMetadata>();
  private readonly refreshing = new Map<string, Promise<TopicMetadata>>();

  constructor(admin: Admin, maxAgeMs: number) {
    this.admin = admin;
    this.maxAgeMs = maxAgeMs;
  }

  /** The cached entry, or undefined (then call load()). Never blocks. */
  peek(topic: string): TopicMetadata | undefined {
    return this.topics.get(topic);
  }

  /** The entry, fetched if not cached. Rejects with the broker's error (e.g. UNKNOWN_TOPIC). */
  load(topic: string): Promise<TopicMetadata> {
    const cached = this.topics.get(topic);
    if (cached !== undefined) return Promise.resolve(cached);
    return this.refresh(topic);
  }

  /** Fetches the entry again (one request per topic at a time); updates the cached object in place. */
  refresh(topic: string): Promise<TopicMetadata> {
    const running = this.refreshing.get(topic);
    if (running !== undefined) return running;
    const promise = this.admin
      .describeTopic(topic)
      .then(
        (description) => {
          const nowMs = Date.now();
          let entry = this.topics.get(topic);
          if (entry === undefined) {
            entry = { name: topic, partitionCount: description.partitionCount, fetchedAtMs: nowMs };
            this.topics.set(topic, entry);
          } else {
            entry.partitionCount = description.partitionCount;
            entry.fetchedAtMs = nowMs;
          }
          return entry;
        },
        (error: unknown) => {
          if ((error as { code?: unknown }).code === 'UNKNOWN_TOPIC') this.topics.delete(topic);
          throw error;
        },
      )
      .finally(() => this.refreshing.delete(topic));
    this.refreshing.set(topic, promise);
    return promise;
  }

  /** Refreshes in the background if the entry is older than maxAgeMs; errors are left to the next load. */
  refreshIfOld(entry: TopicMetadata, nowMs: number): void {
    if (nowMs - entry.fetchedAtMs > this.maxAgeMs) this.refreshQuietly(entry.name);
  }

  /** A background refresh whose failure is ignored here (the next send sees it). */
  refreshQuietly(topic: string): void {
    this.refresh(topic).catch(() => undefined);
  }
}
