import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  LeaderEpochHistory,
  type LeaderEpochHistoryOpenOptions,
  leaderEpochFileName,
} from '../../src/cluster/replication/leader-epoch-history.js';
import { ReplicaStateStore } from '../../src/cluster/replication/replica-state-store.js';
import { CheckpointFile } from '../../src/storage/checkpoint-file.js';
import { temporaryDirectory } from '../broker/helpers.js';

const topic = 'orders';
const createdAtMs = 1_700_000_000_000;

/** A data directory with the replica state log, and a partition directory of the old format. */
function setup(): { dataDir: string; directory: string } {
  return { dataDir: temporaryDirectory(), directory: temporaryDirectory() };
}

function openHistory(
  store: ReplicaStateStore,
  directory: string,
  logEndOffset: number,
  more: Partial<LeaderEpochHistoryOpenOptions> = {},
): Promise<LeaderEpochHistory> {
  return LeaderEpochHistory.open({
    store,
    topic,
    partition: 0,
    createdAtMs,
    directory,
    logEndOffset,
    ...more,
  });
}

/** Writes a side file of the format before session 6, as that version did. */
function writeOldFile(directory: string, entries: Array<[number, number]>): string {
  const path = join(directory, leaderEpochFileName);
  new CheckpointFile<{ version: 1; entries: Array<[number, number]> }>(path).writeSync({
    version: 1,
    entries,
  });
  return path;
}

const pairs = (history: LeaderEpochHistory): Array<[number, number]> =>
  history.entries.map((entry) => [entry.epoch, entry.startOffset]);

describe('LeaderEpochHistory', () => {
  it('answers OFFSET_FOR_LEADER_EPOCH lookups as KIP-279 says', () => {
    const history = LeaderEpochHistory.inMemory();
    expect(history.endOffsetFor(3, 0)).toEqual({ epoch: -1, endOffset: -1 });
    void history.assign(1, 0);
    void history.assign(3, 10);
    void history.assign(4, 25);
    expect(history.latestEpoch).toBe(4);
    expect(history.endOffsetFor(0, 40)).toEqual({ epoch: -1, endOffset: -1 });
    expect(history.endOffsetFor(1, 40)).toEqual({ epoch: 1, endOffset: 10 });
    // Epoch 2 never led here: the largest epoch <= 2 is 1.
    expect(history.endOffsetFor(2, 40)).toEqual({ epoch: 1, endOffset: 10 });
    expect(history.endOffsetFor(3, 40)).toEqual({ epoch: 3, endOffset: 25 });
    expect(history.endOffsetFor(4, 40)).toEqual({ epoch: 4, endOffset: 40 });
    expect(history.endOffsetFor(9, 40)).toEqual({ epoch: 4, endOffset: 40 });
    expect(history.epochAt(9)).toBe(1);
    expect(history.epochAt(10)).toBe(3);
    expect(history.entriesCovering(12, 30)).toEqual([
      [3, 10],
      [4, 25],
    ]);
    expect(history.entriesCovering(0, 10)).toEqual([[1, 0]]);
    expect(history.entriesCovering(40, 41)).toEqual([[4, 25]]);
  });

  it('refuses older epochs and earlier starts, replaces an epoch that wrote nothing, truncates from the end', () => {
    const history = LeaderEpochHistory.inMemory();
    void history.assign(2, 5);
    void history.assign(2, 9); // the latest again: nothing
    expect(() => history.assign(1, 9)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => history.assign(3, 4)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    void history.assign(3, 5);
    expect(history.entries).toEqual([{ epoch: 3, startOffset: 5 }]);
    void history.assign(5, 8);
    void history.truncateFromEnd(8);
    expect(history.entries).toEqual([{ epoch: 3, startOffset: 5 }]);
  });

  it('lives in the local state log __leader_epochs: appends and truncations survive a restart, replayed over snapshots; entries past the log end go at open', async () => {
    const { dataDir, directory } = setup();
    const tuning = { segmentBytes: 64 * 1024, snapshotBytesMin: 2048 };
    let store = await ReplicaStateStore.open({ dataDir, tuning });
    const history = await openHistory(store, directory, 0);
    expect(history.entries).toEqual([]);
    // Many leader changes (and HW checkpoints beside them): several snapshots are written.
    let expected: Array<[number, number]> = [];
    for (let epoch = 1; epoch <= 300; epoch++) {
      await history.assign(epoch, epoch * 10);
      expected.push([epoch, epoch * 10]);
      await store.checkpoint(topic, 0, epoch * 10);
    }
    await history.truncateFromEnd(2_905);
    expected = expected.filter(([, start]) => start < 2_905);
    expect(pairs(history)).toEqual(expected);
    expect(store.stats.snapshotsWritten).toBeGreaterThan(1);
    await store.close();
    expect(existsSync(join(directory, leaderEpochFileName))).toBe(false);

    store = await ReplicaStateStore.open({ dataDir, tuning });
    expect(pairs(await openHistory(store, directory, 5_000))).toEqual(expected);
    expect(store.highWatermarkOf(topic, 0)).toBe(3_000);
    // The log lost its tail from 1,230 in a crash: the entries starting at or after it go (epoch 123
    // starts at 1,230: no record of it is left), durably.
    const kept = expected.filter(([, start]) => start < 1_230);
    expect(pairs(await openHistory(store, directory, 1_230))).toEqual(kept);
    await store.close();
    store = await ReplicaStateStore.open({ dataDir, tuning });
    expect(pairs(await openHistory(store, directory, 5_000))).toEqual(kept);
    // An emptied log (a repair) keeps no epoch.
    expect(pairs(await openHistory(store, directory, 0, { partition: 1 }))).toEqual([]);
    const other = await openHistory(store, directory, 0, { partition: 1 });
    await other.assign(7, 0);
    expect(pairs(await openHistory(store, directory, 0, { partition: 1 }))).toEqual([]);
    // Another incarnation of the topic (deleted, created again): starts empty.
    expect(pairs(await openHistory(store, directory, 0, { createdAtMs: createdAtMs + 1 }))).toEqual([]);
    // A deleted topic's histories and HWs are forgotten.
    await store.forgetTopic(topic, 1);
    expect(store.highWatermarkOf(topic, 0)).toBeUndefined();
    await store.close();
    store = await ReplicaStateStore.open({ dataDir, tuning });
    expect(pairs(await openHistory(store, directory, 5_000))).toEqual([]);
    await store.close();
  });

  it('migrates the side file of the old format once: committed to __leader_epochs, then deleted', async () => {
    const { dataDir, directory } = setup();
    const path = writeOldFile(directory, [
      [1, 0],
      [2, 7],
      [4, 12],
    ]);
    let store = await ReplicaStateStore.open({ dataDir });
    // The log ends at 9: epoch 4 (from 12) goes, as the old open did.
    const history = await openHistory(store, directory, 9);
    expect(pairs(history)).toEqual([
      [1, 0],
      [2, 7],
    ]);
    expect(existsSync(path)).toBe(false);
    await store.close();
    store = await ReplicaStateStore.open({ dataDir });
    expect(pairs(await openHistory(store, directory, 20))).toEqual([
      [1, 0],
      [2, 7],
    ]);
    await store.close();
  });

  it('crash between the migration steps: before the commit the file stays (migrated next time); after it the state log wins and the file goes', async () => {
    const { dataDir, directory } = setup();
    const path = writeOldFile(directory, [
      [1, 0],
      [3, 5],
    ]);
    // The commit fails (the state log is closed, as after a crash before the commit): the open
    // fails and the file is still there.
    let store = await ReplicaStateStore.open({ dataDir });
    await store.close();
    await expect(openHistory(store, directory, 10)).rejects.toMatchObject({ code: 'LOG_CLOSED' });
    expect(existsSync(path)).toBe(true);
    // The next open migrates it.
    store = await ReplicaStateStore.open({ dataDir });
    expect(pairs(await openHistory(store, directory, 10))).toEqual([
      [1, 0],
      [3, 5],
    ]);
    expect(existsSync(path)).toBe(false);
    // A crash after the commit, before the delete: the file is back (here: an older content, and a
    // half-written tmp of the old writer); the state log's entries win, both files go.
    writeOldFile(directory, [[1, 0]]);
    writeFileSync(`${path}.tmp`, 'half');
    expect(pairs(await openHistory(store, directory, 10))).toEqual([
      [1, 0],
      [3, 5],
    ]);
    expect(existsSync(path)).toBe(false);
    expect(existsSync(`${path}.tmp`)).toBe(false);
    // A damaged file with an entry in the state log: the entry wins, the file goes.
    writeFileSync(path, '{"version":1,"entries":[[1,0]]}\nbad checksum\n');
    expect(pairs(await openHistory(store, directory, 10))).toEqual([
      [1, 0],
      [3, 5],
    ]);
    expect(existsSync(path)).toBe(false);
    await store.close();
  });

  it('a damaged side file with nothing in the state log is an error, and stays for the operator', async () => {
    const { dataDir, directory } = setup();
    const path = writeOldFile(directory, [
      [1, 0],
      [2, 7],
    ]);
    writeFileSync(path, readFileSync(path, 'utf8').replace('[2,7]', '[2,8]'));
    const store = await ReplicaStateStore.open({ dataDir });
    await expect(openHistory(store, directory, 9)).rejects.toThrow(/damaged/);
    expect(existsSync(path)).toBe(true);
    await store.close();
  });
});
