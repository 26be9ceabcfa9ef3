/**
 * Per-topic configuration: what a caller may give (`TopicConfig`, every field optional) and what the
 * broker stores in its metadata and reports (`ResolvedTopicConfig`, every field set). Defaults come
 * from the broker's options at creation time and are then stored, so changing a broker default later
 * does not change existing topics.
 *
 * Validation is strict: an unknown field (a typo such as `retention`) is an error rather than being
 * ignored, and every value must be an integer within its stated range.
 *
 * `dedupWindowMs` is the msg-id dedup window (src/broker/dedup/, docs/STATE.md): 0 disables it, else
 * 1..dedupWindowMsMax (7 days). A `metadata.json` of the versions before the state log may hold a
 * non-zero window that was never in effect (those versions stored it without acting on it):
 * `resolveStoredTopicConfig` with `resetDedupWindow` loads it as 0 and reports each topic, so a
 * migration does not switch dedup on by itself.
 */

import { InvalidArgumentError } from '../errors.js';
import {
  dedupWindowMsMax,
  flushIntervalMsDefault,
  flushIntervalMsMax,
  partitionCountMax,
  segmentBytesMax,
  segmentBytesMin,
} from '../limits.js';
import { type TopicConfig, topicConfigKeys } from '../protocol/broker-api.js';
import { type Durability, durabilities } from '../protocol/types.js';

export type ResolvedTopicConfig = Required<TopicConfig>;

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
    dedupWindowMs: dedupWindowField(given['dedupWindowMs'], defaults.dedupWindowMs, label),
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

/** 0 (disabled) up to dedupWindowMsMax; absent takes the default, itself checked the same way. */
function dedupWindowField(value: unknown, fallback: number, label: string): number {
  return integerField('dedupWindowMs', value, fallback, 0, dedupWindowMsMax, label, ' (0: disabled)');
}

/** A stored config as loaded, and whether a non-zero dedupWindowMs of a legacy metadata.json was reset to 0. */
export interface StoredTopicConfig {
  config: ResolvedTopicConfig;
  /** The stored dedupWindowMs when it was non-zero (now 0), else null. */
  droppedDedupWindowMs: number | null;
}

/**
 * `resolveTopicConfig` for a config read back from metadata. With `resetDedupWindow` (a legacy
 * `metadata.json`, whose versions stored dedupWindowMs without acting on it) a non-zero window is
 * reset to 0 and reported: it never had an effect, so 0 describes the topic truthfully.
 */
export function resolveStoredTopicConfig(
  config: unknown,
  defaults: ResolvedTopicConfig,
  label = 'stored topic config',
  resetDedupWindow = false,
): StoredTopicConfig {
  if (!resetDedupWindow || typeof config !== 'object' || config === null || Array.isArray(config)) {
    return { config: resolveTopicConfig(config, defaults, label), droppedDedupWindowMs: null };
  }
  const stored = (config as Record<string, unknown>)['dedupWindowMs'];
  const window = integerField('dedupWindowMs', stored, 0, 0, dedupWindowMsMax, label, ' (0: disabled)');
  const resolved = resolveTopicConfig({ ...config, dedupWindowMs: 0 }, defaults, label);
  return { config: resolved, droppedDedupWindowMs: window === 0 ? null : window };
}
