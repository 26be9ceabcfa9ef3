import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  LeaderEpochHistory,
  leaderEpochFileName,
} from '../../src/cluster/replication/leader-epoch-history.js';
import { temporaryDirectory } from '../broker/helpers.js';

describe('LeaderEpochHistory', () => {
  it('answers OFFSET_FOR_LEADER_EPOCH lookups as KIP-279 says', () => {
    const history = LeaderEpochHistory.inMemory();
    expect(history.endOffsetFor(3, 0)).toEqual({ epoch: -1, endOffset: -1 });
    history.assign(1, 0);
    history.assign(3, 10);
    history.assign(4, 25);
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
    history.assign(2, 5);
    history.assign(2, 9); // the latest again: nothing
    expect(() => history.assign(1, 9)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => history.assign(3, 4)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    history.assign(3, 5);
    expect(history.entries).toEqual([{ epoch: 3, startOffset: 5 }]);
    history.assign(5, 8);
    history.truncateFromEnd(8);
    expect(history.entries).toEqual([{ epoch: 3, startOffset: 5 }]);
  });

  it('is durable in the partition directory, drops entries past the log end at open, and reports a damaged file', () => {
    const directory = temporaryDirectory();
    const history = LeaderEpochHistory.open(directory, 0);
    history.assign(1, 0);
    history.assign(2, 7);
    history.assign(4, 12);
    expect(LeaderEpochHistory.open(directory, 20).entries).toEqual(history.entries);
    // The log lost its tail past 9 in a crash: epoch 4 (from 12) goes; epoch 2 stays.
    const reopened = LeaderEpochHistory.open(directory, 9);
    expect(reopened.entries).toEqual([
      { epoch: 1, startOffset: 0 },
      { epoch: 2, startOffset: 7 },
    ]);
    expect(LeaderEpochHistory.open(directory, 9).latestEpoch).toBe(2);
    const path = join(directory, leaderEpochFileName);
    writeFileSync(path, readFileSync(path, 'utf8').replace('[2,7]', '[2,8]'));
    expect(() => LeaderEpochHistory.open(directory, 9)).toThrow(/damaged/);
  });
});
