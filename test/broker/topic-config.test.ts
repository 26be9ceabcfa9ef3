import { describe, expect, it } from 'vitest';
import { type ResolvedTopicConfig, resolveTopicConfig } from '../../src/broker/topic-config.js';
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
      [{ retention: 5 }, /unknown topic config 'retention'/],
    ];
    for (const [config, message] of cases) {
      expect(() => resolveTopicConfig(config, defaults)).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(message) }),
      );
    }
    expect(() => resolveTopicConfig('fast', defaults)).toThrow(/must be an object/);
  });
});
