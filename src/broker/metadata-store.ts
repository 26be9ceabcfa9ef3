/**
 * The broker's metadata: which topics exist, their partition counts, configs and creation times.
 * One crash-safe file, `dataDir/metadata.json` (CheckpointFile: tmp + fsync + rename + fsync dir, and
 * a CRC32C line), rewritten whole on every change; it is small (a few hundred bytes per topic).
 *
 * Format (version 1):
 *
 *   { "version": 1,
 *     "topics": { "<name>": { "partitionCount": 3, "createdAtMs": 1700000000000,
 *                             "config": { "durability": "interval", "flushIntervalMs": 200, ... } } } }
 *
 * `config` holds every TopicConfig field except `partitions` (partitionCount is the truth). A field
 * missing from a stored config takes the broker's current default (forward compatibility when fields
 * are added); an unknown field, a bad value or a bad name makes the file invalid.
 *
 * A missing file is an empty broker. A damaged or invalid file is a CorruptLogError: starting with no
 * topics would hide every topic's data, so the broker refuses to open until an operator looks.
 */
import { join } from 'node:path';
import { CorruptLogError } from '../errors.js';
import { partitionCountMax } from '../limits.js';
import { CheckpointFile } from '../storage/checkpoint-file.js';
import { type ResolvedTopicConfig, resolveTopicConfig } from './topic-config.js';
import { validateTopicName } from './topic-name.js';

export const metadataFileName = 'metadata.json';
const metadataVersion = 1;

/** A topic as metadata.json records it. */
export interface TopicRecord {
  name: string;
  partitionCount: number;
  createdAtMs: number;
  /** `partitions` equals partitionCount. */
  config: ResolvedTopicConfig;
}

interface StoredTopic {
  partitionCount: number;
  createdAtMs: number;
  config: Omit<ResolvedTopicConfig, 'partitions'>;
}

interface StoredMetadata {
  version: number;
  topics: Record<string, StoredTopic>;
}

export class MetadataStore {
  readonly path: string;
  private readonly file: CheckpointFile<StoredMetadata>;

  constructor(dataDir: string) {
    this.path = join(dataDir, metadataFileName);
    this.file = new CheckpointFile(this.path);
  }

  /** Reads the topics (none when the file does not exist). Throws CorruptLogError when invalid. */
  load(defaults: ResolvedTopicConfig): TopicRecord[] {
    const read = this.file.read();
    if (read.status === 'missing') return [];
    if (read.status === 'corrupt') throw new CorruptLogError(this.path, 0, read.reason);
    try {
      return parseMetadata(read.value, defaults);
    } catch (error) {
      throw new CorruptLogError(this.path, 0, (error as Error).message);
    }
  }

  /** Replaces the file's content with `topics`, crash-safely. Calls are applied in call order. */
  save(topics: Iterable<TopicRecord>): Promise<void> {
    return this.file.write(serialize(topics));
  }

  /** Synchronous `save`, for open (nothing is being served yet). */
  saveSync(topics: Iterable<TopicRecord>): void {
    this.file.writeSync(serialize(topics));
  }

  /** Resolves when every save issued so far has finished. */
  idle(): Promise<void> {
    return this.file.idle();
  }
}

function serialize(topics: Iterable<TopicRecord>): StoredMetadata {
  const stored: Record<string, StoredTopic> = {};
  for (const topic of topics) {
    const { partitions: _partitions, ...config } = topic.config;
    stored[topic.name] = { partitionCount: topic.partitionCount, createdAtMs: topic.createdAtMs, config };
  }
  return { version: metadataVersion, topics: stored };
}

/** Bad file content throws (plain errors here, typed ones from the validators); `load` wraps each in CorruptLogError. */
function parseMetadata(value: unknown, defaults: ResolvedTopicConfig): TopicRecord[] {
  if (typeof value !== 'object' || value === null) throw new Error('not a JSON object');
  const { version, topics } = value as Partial<StoredMetadata>;
  if (version !== metadataVersion) throw new Error(`unknown metadata version ${String(version)}`);
  if (typeof topics !== 'object' || topics === null || Array.isArray(topics)) {
    throw new Error('"topics" is not an object');
  }
  const records: TopicRecord[] = [];
  for (const [name, topic] of Object.entries(topics)) {
    validateTopicName(name);
    if (typeof topic !== 'object' || topic === null) throw new Error(`topic '${name}' is not an object`);
    const { partitionCount, createdAtMs, config } = topic as Partial<StoredTopic>;
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
    const resolved = resolveTopicConfig(config ?? {}, { ...defaults, partitions: partitionCount });
    records.push({ name, partitionCount, createdAtMs, config: resolved });
  }
  return records;
}
