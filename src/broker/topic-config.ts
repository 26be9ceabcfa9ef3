/**
 * Per-topic configuration: what a caller may give (`TopicConfig`, every field optional) and what the
 * broker stores in its metadata and reports (`ResolvedTopicConfig`, every field set). Defaults come
 * from the broker's options at creation time and are then stored, so changing a broker default later
 * does not change existing topics.
 *
 * Validation is strict: an unknown field (a typo such as `retention`) is an error rather than being
 * ignored, and every value must be an integer within its stated range.
 */

import { InvalidArgumentError } from '../errors.js';
import {
  dedupWindowMsMax,
  flushIntervalMsDefault,
  partitionCountMax,
  segmentBytesMax,
  segmentBytesMin,
} from '../limits.js';
import { type TopicConfig, topicConfigKeys } from '../protocol/broker-api.js';
import { type Durability, durabilities } from '../protocol/types.js';

export type ResolvedTopicConfig = Required<TopicConfig>;

/** Largest flushIntervalMs a topic may have (as PartitionLog accepts): one hour. */
const flushIntervalMsMax = 3_600_000;

function integerField(
  name: keyof TopicConfig,
  value: unknown,
  fallback: number,
  min: number,
  max: number,
  label: string,
  note = '',
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    const shown = typeof value === 'string' ? `'${value}'` : String(value);
    throw new InvalidArgumentError(
      `${label} ${name} must be an integer in [${min}, ${max}]${note}, got ${shown}`,
    );
  }
  return value;
}

/**
 * Checks `config` (from a caller, or read back from metadata) and fills what it leaves out from
 * `defaults`. Throws InvalidArgumentError naming the field and its allowed range.
 */
export function resolveTopicConfig(
  config: unknown,
  defaults: ResolvedTopicConfig,
  label = 'topic config',
): ResolvedTopicConfig {
  if (config === undefined || config === null) return { ...defaults };
  if (typeof config !== 'object' || Array.isArray(config)) {
    throw new InvalidArgumentError(`${label} must be an object, got ${typeof config}`);
  }
  const given = config as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    if (!topicConfigKeys.has(key) && given[key] !== undefined) {
      throw new InvalidArgumentError(`unknown ${label} '${key}' (known: ${[...topicConfigKeys].join(', ')})`);
    }
  }
  const durability = given['durability'] ?? defaults.durability;
  if (!durabilities.includes(durability as Durability)) {
    throw new InvalidArgumentError(
      `${label} durability must be one of ${durabilities.join(', ')}, got ${String(durability)}`,
    );
  }
  const forever = Number.MAX_SAFE_INTEGER;
  return {
    partitions: integerField(
      'partitions',
      given['partitions'],
      defaults.partitions,
      1,
      partitionCountMax,
      label,
    ),
    durability: durability as Durability,
    flushIntervalMs: integerField(
      'flushIntervalMs',
      given['flushIntervalMs'],
      defaults.flushIntervalMs,
      1,
      flushIntervalMsMax,
      label,
    ),
    retentionMs: integerField(
      'retentionMs',
      given['retentionMs'],
      defaults.retentionMs,
      -1,
      forever,
      label,
      ' (-1: forever)',
    ),
    retentionBytes: integerField(
      'retentionBytes',
      given['retentionBytes'],
      defaults.retentionBytes,
      -1,
      forever,
      label,
      ' (-1: no limit)',
    ),
    segmentBytes: integerField(
      'segmentBytes',
      given['segmentBytes'],
      defaults.segmentBytes,
      segmentBytesMin,
      segmentBytesMax,
      label,
    ),
    dedupWindowMs: integerField(
      'dedupWindowMs',
      given['dedupWindowMs'],
      defaults.dedupWindowMs,
      0,
      dedupWindowMsMax,
      label,
      ' (0: disabled)',
    ),
  };
}

/**
 * The config an internal topic (a state log, e.g. `__metadata`) reports: one partition, kept forever
 * (the state log deletes what its snapshots make unneeded, not retention), no dedup.
 */
export function internalTopicConfig(durability: Durability, segmentBytes: number): ResolvedTopicConfig {
  return {
    partitions: 1,
    durability,
    flushIntervalMs: flushIntervalMsDefault,
    retentionMs: -1,
    retentionBytes: -1,
    segmentBytes,
    dedupWindowMs: 0,
  };
}
