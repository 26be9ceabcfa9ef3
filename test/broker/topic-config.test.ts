import { describe, expect, it } from 'vitest';
import {
  type ResolvedTopicConfig,
  resolveStoredTopicConfig,
  resolveTopicConfig,
} from '../../src/broker/topic-config.js';
import { dedupWindowMsMax, partitionCountMax, segmentBytesMin } from '../../src/limits.js';

const defaults: ResolvedTopicConfig = {
  partitions: 1,
  durability: 'interval',
  flushIntervalMs: 200,
  retentionMs: -1,
  retentionBytes: -1,
  segmentBytes: 1 << 20,
  dedupWindowMs: 0,
};

describe('resolveTopicConfig', () => {
  it('fills what is missing from the defaults', () => {
    expect(resolveTopicConfig(undefined, defaults)).toEqual(defaults);
    expect(resolveTopicConfig({ partitions: 4, durability: 'always', retentionMs: 1000 }, defaults)).toEqual({
      ...defaults,
      partitions: 4,
      durability: 'always',
      retentionMs: 1000,
    });
  });

  it('rejects bad values with INVALID_ARGUMENT naming the field', () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ partitions: 0 }, /partitions must be an integer in \[1, /],
      [{ partitions: partitionCountMax + 1 }, /partitions/],
      [{ partitions: 1.5 }, /partitions/],
      [{ partitions: '3' }, /partitions .* got '3'/],
      [{ durability: 'sometimes' }, /durability must be one of none, interval, always/],
      [{ flushIntervalMs: 0 }, /flushIntervalMs/],
      [{ retentionMs: -2 }, /retentionMs .*-1: forever/],
      [{ retentionBytes: Number.NaN }, /retentionBytes/],
      [{ segmentBytes: segmentBytesMin - 1 }, /segmentBytes/],
      [{ dedupWindowMs: dedupWindowMsMax + 1 }, /dedupWindowMs/],
      [{ dedupWindowMs: -1 }, /dedupWindowMs must be an integer in \[0, /],
      [{ dedupWindowMs: 1.5 }, /dedupWindowMs must be an integer in \[0, 604800000\] \(0: disabled\)/],
      [{ retention: 5 }, /unknown topic config 'retention'/],
    ];
    for (const [config, message] of cases) {
      expect(() => resolveTopicConfig(config, defaults)).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(message) }),
      );
    }
    expect(() => resolveTopicConfig('fast', defaults)).toThrow(/must be an object/);
  });

  it('accepts dedupWindowMs from 0 (off) to 7 days, also as a default', () => {
    expect(resolveTopicConfig({ dedupWindowMs: 0 }, defaults).dedupWindowMs).toBe(0);
    expect(resolveTopicConfig({ dedupWindowMs: 1 }, defaults).dedupWindowMs).toBe(1);
    expect(resolveTopicConfig({ dedupWindowMs: dedupWindowMsMax }, defaults).dedupWindowMs).toBe(
      dedupWindowMsMax,
    );
    expect(resolveTopicConfig({}, { ...defaults, dedupWindowMs: 1000 }, 'broker option').dedupWindowMs).toBe(
      1000,
    );
  });
});

describe('resolveStoredTopicConfig', () => {
  it('loads a non-zero dedupWindowMs of a legacy metadata.json as 0, and says so; keeps it otherwise', () => {
    expect(resolveStoredTopicConfig({ dedupWindowMs: 60_000 }, defaults)).toEqual({
      config: { ...defaults, dedupWindowMs: 60_000 },
      droppedDedupWindowMs: null,
    });
    expect(
      resolveStoredTopicConfig({ dedupWindowMs: 60_000, retentionMs: 5 }, defaults, 'legacy', true),
    ).toEqual({
      config: { ...defaults, retentionMs: 5, dedupWindowMs: 0 },
      droppedDedupWindowMs: 60_000,
    });
    expect(resolveStoredTopicConfig({ dedupWindowMs: 0 }, defaults)).toEqual({
      config: defaults,
      droppedDedupWindowMs: null,
    });
    expect(resolveStoredTopicConfig({}, defaults)).toEqual({ config: defaults, droppedDedupWindowMs: null });
  });

  it('still refuses what no version could have stored', () => {
    for (const config of [
      { dedupWindowMs: dedupWindowMsMax + 1 },
      { dedupWindowMs: 'long' },
      { retention: 5 },
      { partitions: 0 },
    ]) {
      expect(() => resolveStoredTopicConfig(config, defaults, 'legacy', true)).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
      );
    }
  });
});
