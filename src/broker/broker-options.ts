/**
 * Options of `Broker.open()`. Topic defaults (durability, flush interval, retention, segment size,
 * dedup window) apply to topics created later without those fields and are then stored with the
 * topic; the other options apply to the whole broker.
 */
import { InvalidArgumentError } from '../errors.js';
import {
  checkpointIntervalMsDefault,
  flushIntervalMsDefault,
  indexIntervalBytesDefault,
  retentionCheckIntervalMsDefault,
  scrubBytesPerSecondDefault,
  scrubPassIntervalMsDefault,
  segmentBytesDefault,
  segmentMsDefault,
} from '../limits.js';
import type { Durability } from '../protocol/types.js';
import { type ResolvedTopicConfig, resolveTopicConfig } from './topic-config.js';

export interface BrokerOptions {
  /** Where metadata.json and `topics/<name>/<partition>/` live. Default './spillway-data'. */
  dataDir?: string;
  /** Default durability of new topics. Default 'interval'. */
  durability?: Durability;
  /** Default flush interval of new topics with durability 'interval'. Default 200 ms. */
  flushIntervalMs?: number;
  /** Default segment size of new topics. Default 256 MiB (the active segment grows to it in steps). */
  segmentBytes?: number;
  /** Default time retention of new topics; -1 (default): forever. */
  retentionMs?: number;
  /** Default size retention per partition of new topics; -1 (default): no limit. */
  retentionBytes?: number;
  /** Default msg-id dedup window of new topics; 0 (default): disabled. */
  dedupWindowMs?: number;
  /** Time between two retention passes over every partition. Default 5 minutes. */
  retentionCheckIntervalMs?: number;
  /** Every partition log: roll the active segment once it is this old. Default 7 days. */
  segmentMs?: number;
  /** Every partition log: bytes between two sparse index entries. Default 4096. */
  indexIntervalBytes?: number;
  /** Every partition log: interval between recovery-point checkpoint writes. Default 5 s. */
  checkpointIntervalMs?: number;
  /**
   * Free space to keep on the data directory's file system: below it, produce, topic creation and
   * adding partitions fail with STORAGE_FULL (reads and deletions work). Default: 5% of the file
   * system, at most 1 GiB. 0: no reserve.
   */
  diskReserveBytes?: number;
  /** Rate of the background scrub of sealed segments (CRC32C re-verification). Default 16 MiB/s; 0: off. */
  scrubBytesPerSecond?: number;
  /** Pause between two scrub passes. Default 24 hours. */
  scrubPassIntervalMs?: number;
}

export interface ResolvedBrokerOptions {
  dataDir: string;
  topicDefaults: ResolvedTopicConfig;
  retentionCheckIntervalMs: number;
  segmentMs: number;
  indexIntervalBytes: number;
  checkpointIntervalMs: number;
  /** Undefined: the default for the file system (disk-reserve.ts). */
  diskReserveBytes: number | undefined;
  scrubBytesPerSecond: number;
  scrubPassIntervalMs: number;
}

/** Largest delay a Node.js timer accepts. */
const timerMsMax = 2_147_483_647;

function nonNegativeInteger(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(`broker option ${name} must be an integer >= 0, got ${String(value)}`);
  }
  return value;
}

function positiveInteger(name: string, value: unknown, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new InvalidArgumentError(
      `broker option ${name} must be an integer in [1, ${max}], got ${String(value)}`,
    );
  }
  return value;
}

export function resolveBrokerOptions(options: BrokerOptions): ResolvedBrokerOptions {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('broker options must be an object');
  }
  const dataDir = options.dataDir ?? './spillway-data';
  if (typeof dataDir !== 'string' || dataDir.length === 0) {
    throw new InvalidArgumentError('broker option dataDir must be a non-empty path');
  }
  const topicDefaults = resolveTopicConfig(
    {
      durability: options.durability,
      flushIntervalMs: options.flushIntervalMs,
      segmentBytes: options.segmentBytes,
      retentionMs: options.retentionMs,
      retentionBytes: options.retentionBytes,
      dedupWindowMs: options.dedupWindowMs,
    },
    {
      partitions: 1,
      durability: 'interval',
      flushIntervalMs: flushIntervalMsDefault,
      segmentBytes: segmentBytesDefault,
      retentionMs: -1,
      retentionBytes: -1,
      dedupWindowMs: 0,
    },
    'broker option',
  );
  return {
    dataDir,
    topicDefaults,
    retentionCheckIntervalMs: positiveInteger(
      'retentionCheckIntervalMs',
      options.retentionCheckIntervalMs,
      retentionCheckIntervalMsDefault,
      timerMsMax,
    ),
    segmentMs: positiveInteger('segmentMs', options.segmentMs, segmentMsDefault, Number.MAX_SAFE_INTEGER),
    indexIntervalBytes: positiveInteger(
      'indexIntervalBytes',
      options.indexIntervalBytes,
      indexIntervalBytesDefault,
      1 << 30,
    ),
    checkpointIntervalMs: positiveInteger(
      'checkpointIntervalMs',
      options.checkpointIntervalMs,
      checkpointIntervalMsDefault,
      3_600_000,
    ),
    diskReserveBytes:
      options.diskReserveBytes === undefined
        ? undefined
        : nonNegativeInteger('diskReserveBytes', options.diskReserveBytes, 0),
    scrubBytesPerSecond: nonNegativeInteger(
      'scrubBytesPerSecond',
      options.scrubBytesPerSecond,
      scrubBytesPerSecondDefault,
    ),
    scrubPassIntervalMs: positiveInteger(
      'scrubPassIntervalMs',
      options.scrubPassIntervalMs,
      scrubPassIntervalMsDefault,
      timerMsMax,
    ),
  };
}
