/**
 * The on-disk layout of topics and its reconciliation with the topic metadata at open, kept apart
 * from the running broker (like log-loader.ts is from the partition log).
 *
 * Layout:
 *
 *   dataDir/topics/__metadata/0/               the metadata state log: topics, configs, partition
 *                                              counts (metadata-store.ts); internal topics (`__`
 *                                              names) are not reconciled here
 *   dataDir/topics/<name>/<partition>/         one PartitionLog directory per partition, 0..count-1
 *   dataDir/topics/<name>.deleted-<ms>/        a topic being deleted (renamed first, then removed)
 *   dataDir/topics/<name>.orphan-<ms>/         an orphan directory moved aside by createTopic
 *   dataDir/topics/<name>/<p>.stray-<ms>/      a partition directory of an unfinished addPartitions
 *   dataDir/topics/<name>/.creating            a topic directory being created (not yet recorded)
 *
 * A topic directory the metadata does not name and that holds `.creating` is a creation a crash
 * interrupted (the topic was never recorded, so never served): it is removed. The mark left on a
 * recorded topic (a crash between recording it and removing the mark) is removed.
 * deleteTopic renames `<name>` to `<name>.deleted-<ms>`, then records the deletion in the metadata,
 * then removes the renamed directory. A crash between any two steps is completed here: a
 * `.deleted-` directory that is not itself a topic is removed, and a topic of the metadata whose
 * directory is gone while a `<name>.deleted-<ms>` exists is dropped from the metadata.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fsyncDirectorySync } from '../storage/checkpoint-file.js';
import { fileModes } from '../storage/file-modes.js';
import type { TopicRecord } from './metadata-store.js';
import { asideSuffixPattern, isInternalTopicName } from './topic-name.js';

export const topicsDirectoryName = 'topics';
/** Marks a topic directory whose creation is not finished (broker-topics.ts). */
export const creatingMarkerName = '.creating';

const deletedSuffixPattern = /^(.+)\.deleted-\d+$/;
const partitionNamePattern = /^(0|[1-9][0-9]*)$/;

export function topicsDirectory(dataDir: string): string {
  return join(dataDir, topicsDirectoryName);
}

export function topicDirectory(dataDir: string, topic: string): string {
  return join(dataDir, topicsDirectoryName, topic);
}

export function partitionDirectory(dataDir: string, topic: string, partition: number): string {
  return join(dataDir, topicsDirectoryName, topic, String(partition));
}

/**
 * `path` + `.<kind>-<ms>` (`nowMs`: wall time of the broker's clock), with the number raised until
 * nothing of that name exists.
 */
export function asidePath(path: string, kind: 'deleted' | 'orphan' | 'stray', nowMs: number): string {
  let stamp = nowMs;
  while (existsSync(`${path}.${kind}-${stamp}`)) stamp++;
  return `${path}.${kind}-${stamp}`;
}

export interface Reconciliation {
  /** The topics to open (metadata minus completed deletions). */
  topics: TopicRecord[];
  /** True when `topics` differs from what the metadata holds: the deletions must be recorded. */
  metadataChanged: boolean;
  orphanTopicDirectories: string[];
  missingPartitionDirectories: string[];
  strayPartitionDirectories: Array<{ from: string; to: string }>;
  completedDeletions: string[];
  warnings: string[];
  /**
   * Directories the broker did not make sense of and left in place (unknown topic directories,
   * `.orphan-` and `.stray-` directories set aside earlier), each with the command that removes it
   * once an operator has looked: `spillway doctor` and the open report list them.
   */
  unexplained: Array<{ what: string; fix: string }>;
}

/** A shell command removing `path` (single-quoted, so any name is safe to paste). */
export function removeCommand(path: string): string {
  return `rm -rf -- '${path.replace(/'/g, "'\\''")}'`;
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Compares metadata with the directories under `dataDir/topics/` and repairs what a crash can leave
 * behind (see the header). Synchronous: runs once at open, before anything is served. `nowMs`
 * (wall time) stamps the directories it moves aside.
 */
export function reconcileTopicDirectories(
  dataDir: string,
  metadata: TopicRecord[],
  nowMs: number,
): Reconciliation {
  const root = topicsDirectory(dataDir);
  if (!existsSync(root)) {
    mkdirSync(root, { recursive: true, mode: fileModes.directory });
    fsyncDirectorySync(dataDir);
  }
  const result: Reconciliation = {
    topics: [],
    metadataChanged: false,
    orphanTopicDirectories: [],
    missingPartitionDirectories: [],
    strayPartitionDirectories: [],
    completedDeletions: [],
    warnings: [],
    unexplained: [],
  };
  const known = new Map(metadata.map((topic) => [topic.name, topic]));
  const entries = readdirSync(root).filter((name) => isDirectory(join(root, name)));
  const present = new Set(entries);

  // Deletions in progress: directories renamed `<name>.deleted-<ms>` that are not topics themselves.
  const deleting = new Set<string>();
  let rootChanged = false;
  for (const entry of entries) {
    const marker = join(root, entry, creatingMarkerName);
    if (known.has(entry) || isInternalTopicName(entry)) {
      if (existsSync(marker)) unlinkSync(marker);
      continue;
    }
    if (existsSync(marker)) {
      rmSync(join(root, entry), { recursive: true, force: true });
      rootChanged = true;
      result.warnings.push(
        `removed ${join(root, entry)}, left by a topic creation a crash interrupted (the topic was never recorded, it held no acknowledged data)`,
      );
      continue;
    }
    const match = deletedSuffixPattern.exec(entry);
    if (match === null) {
      result.orphanTopicDirectories.push(join(root, entry));
      const aside = /\.orphan-\d+$/.test(entry)
        ? ' (set aside by a topic creation that found it in the way)'
        : '';
      result.unexplained.push({
        what: `topic directory ${join(root, entry)} is not in the metadata${aside}: left untouched and ignored`,
        fix: `inspect it; if it holds nothing you need: ${removeCommand(join(root, entry))}`,
      });
      continue;
    }
    deleting.add(match[1]!);
    rmSync(join(root, entry), { recursive: true, force: true });
    rootChanged = true;
    result.completedDeletions.push(entry);
    result.warnings.push(`removed ${join(root, entry)}, left by a topic deletion a crash interrupted`);
  }

  for (const topic of metadata) {
    const directory = join(root, topic.name);
    if (!present.has(topic.name)) {
      if (deleting.has(topic.name)) {
        // Renamed for deletion but the metadata was not rewritten yet: finish the deletion.
        result.metadataChanged = true;
        result.warnings.push(`topic '${topic.name}' was being deleted when the broker stopped: deleted`);
        continue;
      }
      for (let partition = 0; partition < topic.partitionCount; partition++) {
        result.missingPartitionDirectories.push(join(directory, String(partition)));
      }
      // Reported as damage by the broker: each of these partitions is stopped, never recreated silently.
      result.topics.push(topic);
      continue;
    }
    result.topics.push(topic);
    const partitionEntries = new Set(
      readdirSync(directory).filter((name) => isDirectory(join(directory, name))),
    );
    for (let partition = 0; partition < topic.partitionCount; partition++) {
      if (!partitionEntries.has(String(partition))) {
        const missing = join(directory, String(partition));
        result.missingPartitionDirectories.push(missing); // the broker stops that partition
      }
    }
    let topicChanged = false;
    for (const entry of partitionEntries) {
      if (asideSuffixPattern.test(entry)) {
        const path = join(directory, entry);
        result.unexplained.push({
          what: `partition directory ${path} was set aside by an unfinished addPartitions (it holds nothing acknowledged)`,
          fix: removeCommand(path),
        });
      }
    }
    for (const entry of partitionEntries) {
      if (!partitionNamePattern.test(entry) || Number(entry) < topic.partitionCount) continue;
      const from = join(directory, entry);
      const to = asidePath(from, 'stray', nowMs);
      renameSync(from, to);
      topicChanged = true;
      result.strayPartitionDirectories.push({ from, to });
      result.warnings.push(
        `partition directory ${from} is beyond the ${topic.partitionCount} partition(s) of '${topic.name}' (an unfinished addPartitions): moved to ${to}`,
      );
    }
    if (topicChanged) fsyncDirectorySync(directory);
  }
  if (rootChanged) fsyncDirectorySync(root);
  return result;
}
