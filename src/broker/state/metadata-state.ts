/**
 * The broker's topic metadata as a state machine (state-machine.ts), kept in the internal state log
 * `__metadata` (metadata-store.ts opens it): which topics exist, their partition counts, configs and
 * creation times.
 *
 * Entries, one record each, keyed by topic name (UTF-8):
 *
 *   topic      value msgpack { partitionCount, createdAtMs, config }   a topic was created, or its
 *                                                                      partition count grew (the whole record)
 *   deletion   value null (a tombstone)                                 the topic was deleted
 *
 * `config` holds every TopicConfig field except `partitions` (partitionCount is the truth). A field
 * missing from a stored config takes the broker's current default (forward compatibility when fields
 * are added); an unknown field, a bad value or a bad name makes the entry invalid, and recovery then
 * reports the state log as corrupt rather than open with topics missing.
 */
import { partitionCountMax } from '../../limits.js';
import { type ResolvedTopicConfig, resolveStoredTopicConfig } from '../topic-config.js';
import { validateTopicName } from '../topic-name.js';
import { type EntryCodec, type StateMachine, statePackr } from './state-machine.js';

/** A topic as the metadata records it. */
export interface TopicRecord {
  name: string;
  partitionCount: number;
  createdAtMs: number;
  /** `partitions` equals partitionCount. */
  config: ResolvedTopicConfig;
}

export type MetadataEntry = { type: 'topic'; topic: TopicRecord } | { type: 'topic-deleted'; name: string };

/**
 * Checks a stored topic (from the state log, or from a metadata.json being migrated). With
 * `onDroppedDedupWindow` (the migration of a metadata.json, whose versions never acted on the window)
 * a non-zero dedupWindowMs is reset to 0 (topic-config.ts resolveStoredTopicConfig) and reported.
 */
export function parseTopicRecord(
  name: unknown,
  fields: { partitionCount?: unknown; createdAtMs?: unknown; config?: unknown },
  defaults: ResolvedTopicConfig,
  onDroppedDedupWindow?: (name: string, dedupWindowMs: number) => void,
): TopicRecord {
  validateTopicName(name);
  const { partitionCount, createdAtMs, config } = fields;
  if (
    typeof partitionCount !== 'number' ||
    !Number.isSafeInteger(partitionCount) ||
    partitionCount < 1 ||
    partitionCount > partitionCountMax
  ) {
    throw new Error(`topic '${name}' has partitionCount ${String(partitionCount)}`);
  }
  if (typeof createdAtMs !== 'number' || !Number.isSafeInteger(createdAtMs) || createdAtMs < 0) {
    throw new Error(`topic '${name}' has createdAtMs ${String(createdAtMs)}`);
  }
  if (typeof config === 'object' && config !== null && 'partitions' in config) {
    throw new Error(`topic '${name}' config holds 'partitions'`);
  }
  const stored = resolveStoredTopicConfig(
    config ?? {},
    { ...defaults, partitions: partitionCount },
    'stored topic config',
    onDroppedDedupWindow !== undefined,
  );
  if (stored.droppedDedupWindowMs !== null) onDroppedDedupWindow?.(name, stored.droppedDedupWindowMs);
  return { name, partitionCount, createdAtMs, config: stored.config };
}

/** The codec of metadata entries; `defaults` fill config fields older entries do not have. */
export function metadataCodec(defaults: ResolvedTopicConfig): EntryCodec<MetadataEntry> {
  return {
    encode(entry) {
      if (entry.type === 'topic-deleted') return { key: entry.name, value: null };
      const { name, partitionCount, createdAtMs, config } = entry.topic;
      const { partitions: _partitions, ...stored } = config;
      return { key: name, value: statePackr.pack({ partitionCount, createdAtMs, config: stored }) };
    },
    decode(record) {
      const name = record.keyText();
      validateTopicName(name);
      const value = record.value();
      if (value === null) return { type: 'topic-deleted', name };
      const fields: unknown = statePackr.unpack(value);
      if (typeof fields !== 'object' || fields === null || Array.isArray(fields)) {
        throw new Error(`metadata of topic '${name}' is not a map`);
      }
      return { type: 'topic', topic: parseTopicRecord(name, fields as Record<string, unknown>, defaults) };
    },
  };
}

export class MetadataState implements StateMachine<MetadataEntry> {
  private readonly topics = new Map<string, TopicRecord>();

  /** Every topic, in creation order of their first entry. */
  records(): TopicRecord[] {
    return [...this.topics.values()];
  }

  get(name: string): TopicRecord | undefined {
    return this.topics.get(name);
  }

  apply(entry: MetadataEntry): void {
    if (entry.type === 'topic') {
      const known = this.topics.get(entry.topic.name);
      if (known !== undefined && entry.topic.partitionCount < known.partitionCount) {
        throw new Error(
          `topic '${entry.topic.name}' cannot shrink from ${known.partitionCount} to ${entry.topic.partitionCount} partitions`,
        );
      }
      this.topics.set(entry.topic.name, entry.topic);
      return;
    }
    if (!this.topics.delete(entry.name))
      throw new Error(`topic '${entry.name}' is deleted but does not exist`);
  }

  *snapshot(): Iterable<MetadataEntry> {
    for (const topic of this.topics.values()) yield { type: 'topic', topic };
  }

  reset(): void {
    this.topics.clear();
  }
}
