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
 *   state log  key `__<name>`, value msgpack { stateLogCreatedAtMs }   the broker created internal state
 *                                                                      log `__<name>` (state-log-guard.ts)
 *
 * `config` holds every TopicConfig field except `partitions` (partitionCount is the truth). A field
 * missing from a stored config takes the broker's current default (forward compatibility when fields
 * are added); an unknown field, a bad value or a bad name makes the entry invalid, and recovery then
 * reports the state log as corrupt rather than open with topics missing.
 */
import { partitionCountMax } from '../../limits.js';
import { type ResolvedTopicConfig, resolveStoredTopicConfig } from '../topic-config.js';
import { isInternalTopicName, validateTopicName } from '../topic-name.js';
import { type EntryCodec, type StateMachine, statePackr } from './state-machine.js';

/** A topic as the metadata records it. */
export interface TopicRecord {
  name: string;
  partitionCount: number;
  createdAtMs: number;
  /** `partitions` equals partitionCount. */
  config: ResolvedTopicConfig;
}

/**
 * A state log the broker created (key: its internal topic name, `__...`; value: { stateLogCreatedAtMs }).
 * Once registered, an empty or missing log of that name means "lost", never "new" (state-log-guard.ts).
 */
export interface StateLogRecord {
  name: string;
  createdAtMs: number;
}

export type MetadataEntry =
  | { type: 'topic'; topic: TopicRecord }
  | { type: 'topic-deleted'; name: string }
  | { type: 'state-log'; stateLog: StateLogRecord };

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
      if (entry.type === 'state-log') {
        const { name, createdAtMs } = entry.stateLog;
        return { key: name, value: statePackr.pack({ stateLogCreatedAtMs: createdAtMs }) };
      }
      const { name, partitionCount, createdAtMs, config } = entry.topic;
      const { partitions: _partitions, ...stored } = config;
      return { key: name, value: statePackr.pack({ partitionCount, createdAtMs, config: stored }) };
    },
    decode(record) {
      const name = record.keyText();
      validateTopicName(name);
      const value = record.value();
      if (isInternalTopicName(name)) {
        const fields: unknown = value === null ? null : statePackr.unpack(value);
        const createdAtMs = (fields as { stateLogCreatedAtMs?: unknown } | null)?.stateLogCreatedAtMs;
        if (typeof createdAtMs !== 'number' || !Number.isSafeInteger(createdAtMs) || createdAtMs < 0) {
          throw new Error(`metadata of state log '${name}' has no valid stateLogCreatedAtMs`);
        }
        return { type: 'state-log', stateLog: { name, createdAtMs } };
      }
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
  private readonly stateLogs = new Map<string, StateLogRecord>();

  /** The registration of state log `name`, if the broker ever created it. */
  stateLog(name: string): StateLogRecord | undefined {
    return this.stateLogs.get(name);
  }

  /** Every topic, in creation order of their first entry. */
  records(): TopicRecord[] {
    return [...this.topics.values()];
  }

  get(name: string): TopicRecord | undefined {
    return this.topics.get(name);
  }

  apply(entry: MetadataEntry): void {
    if (entry.type === 'state-log') {
      this.stateLogs.set(entry.stateLog.name, entry.stateLog);
      return;
    }
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
    for (const stateLog of this.stateLogs.values()) yield { type: 'state-log', stateLog };
  }

  reset(): void {
    this.topics.clear();
    this.stateLogs.clear();
  }
}
