/**
 * Why a partition is stopped: damage its log's open found (storage/log-damage.ts), or its whole
 * directory missing. Reported at start (open report), in GET /v1/health/details, by `spillway
 * doctor`, and in the PARTITION_DAMAGED error of every request to the partition.
 */

import { CorruptLogError } from '../errors.js';
import type { DamagedPartition } from '../protocol/broker-api.js';
import { describeDamagedOffsets, LogDamagedError, type LogDamageKind } from '../storage/log-damage.js';

export type PartitionDamageKind = LogDamageKind | 'missing-directory';

export interface PartitionDamage extends DamagedPartition {
  kind: PartitionDamageKind;
}

/** The damage behind a CorruptLogError thrown by opening the log in `directory`. */
export function damageFromError(
  topic: string,
  partition: number,
  directory: string,
  error: CorruptLogError,
): PartitionDamage {
  if (error instanceof LogDamagedError) {
    const { damage } = error;
    return {
      topic,
      partition,
      directory,
      kind: damage.kind,
      file: damage.file,
      position: damage.position,
      reason: damage.reason,
      fromOffset: damage.fromOffset,
      toOffset: damage.toOffset,
      summary: `${damage.kind} in ${damage.file} at position ${damage.position}: ${damage.reason}; ${describeDamagedOffsets(damage)}`,
    };
  }
  return {
    topic,
    partition,
    directory,
    kind: 'corrupt-data',
    file: error.file,
    position: error.position,
    reason: error.message,
    fromOffset: null,
    toOffset: null,
    summary: error.message,
  };
}

export function missingDirectoryDamage(topic: string, partition: number, directory: string): PartitionDamage {
  const reason = `partition directory ${directory} is missing (the topic's metadata says it exists)`;
  return {
    topic,
    partition,
    directory,
    kind: 'missing-directory',
    file: directory,
    position: 0,
    reason,
    fromOffset: null,
    toOffset: null,
    summary: `${reason}; every offset it held is unreadable`,
  };
}

export function isCorruptLogError(error: unknown): error is CorruptLogError {
  return error instanceof CorruptLogError;
}
