/**
 * Where and how an internal state log is stored: partition 0 of the internal topic `name` (`__...`),
 * at `dataDir/topics/<name>/0/`, durability `always`, small segments (the state log deletes those
 * behind its snapshots), no spare segment. Every state log of the broker (metadata now; offsets, ack
 * state, delay timers, transactions, producer ids later) opens its partition here, then
 * `StateLog.open` over it, and is served read-only as an internal topic (`internalTopic`).
 */
import { join } from 'node:path';
import type { Clock } from '../../clock.js';
import { batchFirstTimestampAt } from '../../format/batch-header.js';
import { PartitionLog } from '../../storage/partition-log.js';
import { Partition } from '../partition.js';
import { Topic } from '../topic.js';
import { internalTopicConfig } from '../topic-config.js';
import { topicsDirectory } from '../topic-directories.js';
import { StateLog } from './state-log.js';
import type { EntryCodec, StateMachine } from './state-machine.js';

/** Segment size of internal state logs: they hold little, and the state log deletes old segments. */
export const stateLogSegmentBytesDefault = 4 * 1024 * 1024;
/** Bytes of changes between two snapshots, at least (StateLogOptions.snapshotBytesMin). */
export const stateLogSnapshotBytesMinDefault = 1024 * 1024;

/** Tuning of the internal state logs (tests use small values to exercise snapshots and segment deletion). */
export interface StateLogTuning {
  /** Segment size of internal state logs. Default 4 MiB. */
  segmentBytes?: number;
  /** Bytes of changes between two snapshots, at least. Default 1 MiB. */
  snapshotBytesMin?: number;
}

export interface StateLogPartitionOptions {
  dataDir: string;
  /** The internal topic, `__...`. */
  name: string;
  tuning?: StateLogTuning;
  clock?: Clock;
  checkpointIntervalMs?: number;
}

export interface StateLogPartition {
  log: PartitionLog;
  directory: string;
  segmentBytes: number;
}

/** The directory of internal topic `name`'s partition 0. */
export function stateLogDirectory(dataDir: string, name: string): string {
  return join(topicsDirectory(dataDir), name, '0');
}

/** Opens (recovering) the partition log of internal state log `name`. */
export async function openStateLogPartition(options: StateLogPartitionOptions): Promise<StateLogPartition> {
  const directory = stateLogDirectory(options.dataDir, options.name);
  const segmentBytes = options.tuning?.segmentBytes ?? stateLogSegmentBytesDefault;
  const log = await PartitionLog.open({
    directory,
    durability: 'always',
    segmentBytes,
    spareSegment: false,
    ...(options.clock !== undefined ? { clock: options.clock } : {}),
    ...(options.checkpointIntervalMs !== undefined
      ? { checkpointIntervalMs: options.checkpointIntervalMs }
      : {}),
  });
  return { log, directory, segmentBytes };
}

/**
 * The internal topic served over a state log's partition (one partition, read-only for clients): its
 * creation time is the timestamp of the oldest record still in the log (0 when empty).
 */
export function internalTopic(name: string, partition: StateLogPartition): Topic {
  const { log } = partition;
  const first = log.read(log.logStartOffset, 1);
  const createdAtMs = first.batchCount > 0 ? batchFirstTimestampAt(first.bytes, 0) : 0;
  const config = internalTopicConfig(log.durability, partition.segmentBytes);
  return new Topic({ name, partitionCount: 1, createdAtMs, config }, [
    new Partition(name, 0, log, log.durability),
  ]);
}

/** Where and how a store opens its state log (the broker's options for every state log). */
export interface StateLogStoreOptions {
  dataDir: string;
  tuning?: StateLogTuning;
  checkpointIntervalMs?: number;
  /** The broker's clock, for the log's timers and snapshot times. Default `systemClock`. */
  clock?: Clock;
  /** StateLogOptions.writeAtOpen. Default true. */
  writeAtOpen?: boolean;
}

/**
 * Opens internal state log `name`: its partition (recovered), then the StateLog over `machine`
 * (snapshot + replay). Closes the partition again when the replay fails. What every store of broker
 * state (offsets, queue state, dedup, producers, ...) does at open.
 */
export async function openStateLog<Entry>(
  options: StateLogStoreOptions,
  name: string,
  machine: StateMachine<Entry>,
  codec: EntryCodec<Entry>,
): Promise<{ partition: StateLogPartition; state: StateLog<Entry> }> {
  const partition = await openStateLogPartition({
    dataDir: options.dataDir,
    name,
    ...(options.tuning !== undefined ? { tuning: options.tuning } : {}),
    ...(options.clock !== undefined ? { clock: options.clock } : {}),
    ...(options.checkpointIntervalMs !== undefined
      ? { checkpointIntervalMs: options.checkpointIntervalMs }
      : {}),
  });
  try {
    const clock = options.clock;
    const state = StateLog.open({
      name: `${name}/0`,
      log: partition.log,
      machine,
      codec,
      snapshotBytesMin: options.tuning?.snapshotBytesMin ?? stateLogSnapshotBytesMinDefault,
      ...(clock !== undefined ? { nowMs: () => clock.nowMs() } : {}),
      ...(options.writeAtOpen === false ? { writeAtOpen: false } : {}),
    });
    return { partition, state };
  } catch (error) {
    await partition.log.close().catch(() => undefined);
    throw error;
  }
}
