/**
 * The broker's topic metadata (state/metadata-state.ts), kept in the internal state log `__metadata`
 * (state/state-log.ts): partition 0 of an internal topic at `dataDir/topics/__metadata/0/`, durability
 * `always`, written through group commit like any append. Topic administration records each change
 * as one entry; the state log snapshots and recovers it.
 *
 * Opening:
 *  - A new data directory gets an empty snapshot at once, so that from then on an empty or missing
 *    metadata log means "lost", never "new".
 *  - `metadata.json` (the format of earlier versions: one file rewritten whole) is migrated: its topics
 *    are committed and snapshotted into the state log, then the file is renamed to
 *    `metadata.json.migrated`. A crash before the snapshot is complete redoes the migration from the
 *    file (the log is emptied first); after it, the log is the truth and only the rename is finished.
 *  - A metadata log that is missing or empty while topic directories exist (and no metadata.json to
 *    migrate) is refused with CORRUPT_LOG: starting with no topics would hide every topic's data.
 */
import { existsSync, readdirSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Clock } from '../clock.js';
import { CorruptLogError } from '../errors.js';
import { CheckpointFile, fsyncDirectorySync } from '../storage/checkpoint-file.js';
import {
  type MetadataEntry,
  MetadataState,
  metadataCodec,
  parseTopicRecord,
  type StateLogRecord,
  type TopicRecord,
} from './state/metadata-state.js';
import { StateLog } from './state/state-log.js';
import {
  openStateLogPartition,
  type StateLogPartition,
  type StateLogTuning,
  stateLogDirectory,
  stateLogSnapshotBytesMinDefault,
} from './state/state-log-partition.js';
import type { ResolvedTopicConfig } from './topic-config.js';
import { topicsDirectory } from './topic-directories.js';
import { asideSuffixPattern, isInternalTopicName } from './topic-name.js';

export type { TopicRecord } from './state/metadata-state.js';
export type { StateLogTuning } from './state/state-log-partition.js';

export const metadataTopicName = '__metadata';
export const legacyMetadataFileName = 'metadata.json';
const legacyMetadataVersion = 1;
/** What opening the metadata found or did, worth a line in the open report. */
export interface MetadataNote {
  severity: 'warning' | 'info';
  what: string;
  fix: string;
}

export interface MetadataStoreOptions {
  dataDir: string;
  defaults: ResolvedTopicConfig;
  tuning?: StateLogTuning;
  checkpointIntervalMs?: number;
  /** The broker's clock, for the log's timers. Default `systemClock`. */
  clock?: Clock;
}

export class MetadataStore {
  /** The partition of `__metadata/0` (served read-only as an internal topic). */
  readonly partition: StateLogPartition;
  readonly state: StateLog<MetadataEntry>;
  /** What opening found and did (migration, skipped snapshots), one line each. */
  readonly notes: MetadataNote[];
  private readonly machine: MetadataState;

  private constructor(
    partition: StateLogPartition,
    state: StateLog<MetadataEntry>,
    machine: MetadataState,
    notes: MetadataNote[],
  ) {
    this.partition = partition;
    this.state = state;
    this.machine = machine;
    this.notes = notes;
  }

  static async open(options: MetadataStoreOptions): Promise<MetadataStore> {
    const { dataDir, defaults } = options;
    const directory = stateLogDirectory(dataDir, metadataTopicName);
    const legacyPath = join(dataDir, legacyMetadataFileName);
    const legacy = existsSync(legacyPath);
    const existed = existsSync(directory);
    const notes: MetadataNote[] = [];
    const partition = await openStateLogPartition({
      dataDir,
      name: metadataTopicName,
      ...(options.tuning !== undefined ? { tuning: options.tuning } : {}),
      ...(options.clock !== undefined ? { clock: options.clock } : {}),
      ...(options.checkpointIntervalMs !== undefined
        ? { checkpointIntervalMs: options.checkpointIntervalMs }
        : {}),
    });
    const { log } = partition;
    try {
      const machine = new MetadataState();
      const open = (): StateLog<MetadataEntry> =>
        StateLog.open({
          name: `${metadataTopicName}/0`,
          log,
          machine,
          codec: metadataCodec(defaults),
          snapshotBytesMin: options.tuning?.snapshotBytesMin ?? stateLogSnapshotBytesMinDefault,
          ...(options.clock !== undefined ? { nowMs: () => options.clock!.nowMs() } : {}),
        });
      let state = open();
      for (const skipped of state.recovery.skippedSnapshots) {
        notes.push({
          severity: 'warning',
          what: `${metadataTopicName}/0: snapshot at offset ${skipped.beginOffset} skipped (${skipped.reason}); recovered from an older one`,
          fix: 'nothing to do: the next snapshot replaces it (docs/STATE.md)',
        });
      }
      if (legacy) {
        if (state.recovery.snapshots.length === 0) {
          // Never migrated, or a migration a crash interrupted: start over from the file.
          if (log.logEndOffset > 0) log.truncateTo(0);
          state = open();
          const records = readLegacyMetadata(legacyPath, defaults, (name, dedupWindowMs) =>
            notes.push({
              severity: 'warning',
              what: `topic '${name}': stored dedupWindowMs ${dedupWindowMs} reset to 0 (the version that wrote metadata.json never acted on it)`,
              fix: 'nothing to do',
            }),
          );
          await Promise.all(records.map((topic) => state.commit({ type: 'topic', topic })));
          await state.snapshot();
          notes.push({
            severity: 'info',
            what: `migrated ${records.length} topic(s) from ${legacyPath} into the ${metadataTopicName} state log; the file is kept as ${legacyMetadataFileName}.migrated`,
            fix: `nothing to do; ${legacyMetadataFileName}.migrated may be deleted`,
          });
        }
        renameSync(legacyPath, `${legacyPath}.migrated`);
        fsyncDirectorySync(dataDir);
      } else if (log.logEndOffset === 0) {
        const topics = userTopicDirectories(dataDir);
        if (topics.length > 0) {
          throw new CorruptLogError(
            directory,
            0,
            `the metadata log is ${existed ? 'empty' : 'missing'} but ${topics.length} topic director${topics.length === 1 ? 'y exists' : 'ies exist'} (${topics.slice(0, 5).join(', ')}${topics.length > 5 ? ', ...' : ''}): restore ${directory} from a backup, or move the topic directories out of ${topicsDirectory(dataDir)} to start without them`,
          );
        }
        await state.snapshot();
      }
      return new MetadataStore(partition, state, machine, notes);
    } catch (error) {
      await log.close().catch(() => undefined);
      throw error;
    }
  }

  /** Every topic the metadata holds. */
  records(): TopicRecord[] {
    return this.machine.records();
  }

  /** Records a created topic, or a topic's new partition count; resolves once durable and applied. */
  async putTopic(topic: TopicRecord): Promise<void> {
    await this.state.commit({ type: 'topic', topic });
  }

  /** The registration of internal state log `name`, if the broker ever created it (state-log-guard.ts). */
  stateLog(name: string): StateLogRecord | undefined {
    return this.machine.stateLog(name);
  }

  /** Records that state log `name` exists from now on; resolves once durable and applied. */
  async registerStateLog(name: string, createdAtMs: number): Promise<void> {
    await this.state.commit({ type: 'state-log', stateLog: { name, createdAtMs } });
  }

  /** Records a deleted topic; resolves once durable and applied. */
  async deleteTopic(name: string): Promise<void> {
    await this.state.commit({ type: 'topic-deleted', name });
  }

  /** Resolves when every change issued so far is durable and applied. */
  idle(): Promise<void> {
    return this.state.idle();
  }

  /** Finishes what is in flight, then closes the log. */
  async close(): Promise<void> {
    await this.state.close();
    await this.partition.log.close();
  }
}

/** Names of the user topic directories under `dataDir/topics/` (not internal, not set aside). */
function userTopicDirectories(dataDir: string): string[] {
  const root = topicsDirectory(dataDir);
  if (!existsSync(root)) return [];
  return readdirSync(root).filter((name) => {
    if (isInternalTopicName(name) || asideSuffixPattern.test(name)) return false;
    try {
      return statSync(join(root, name)).isDirectory();
    } catch {
      return false;
    }
  });
}

/**
 * Reads `metadata.json` of earlier versions (a CheckpointFile: JSON + CRC line):
 *   { "version": 1, "topics": { "<name>": { "partitionCount", "createdAtMs", "config": {...} } } }
 * A damaged or invalid file is a CorruptLogError (bad input, never an assertion): the broker refuses
 * to open until an operator looks.
 */
function readLegacyMetadata(
  path: string,
  defaults: ResolvedTopicConfig,
  onDroppedDedupWindow: (name: string, dedupWindowMs: number) => void,
): TopicRecord[] {
  const read = new CheckpointFile<unknown>(path).read();
  if (read.status === 'missing') return [];
  if (read.status === 'corrupt') throw new CorruptLogError(path, 0, read.reason);
  try {
    const value = read.value;
    if (typeof value !== 'object' || value === null) throw new Error('not a JSON object');
    const { version, topics } = value as { version?: unknown; topics?: unknown };
    if (version !== legacyMetadataVersion) throw new Error(`unknown metadata version ${String(version)}`);
    if (typeof topics !== 'object' || topics === null || Array.isArray(topics)) {
      throw new Error('"topics" is not an object');
    }
    return Object.entries(topics).map(([name, topic]) => {
      if (typeof topic !== 'object' || topic === null) throw new Error(`topic '${name}' is not an object`);
      return parseTopicRecord(name, topic as Record<string, unknown>, defaults, onDroppedDedupWindow);
    });
  } catch (error) {
    throw new CorruptLogError(path, 0, (error as Error).message);
  }
}
