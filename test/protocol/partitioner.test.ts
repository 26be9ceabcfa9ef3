import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { murmur2, partitionForKey, toPositive } from '../../src/protocol/partitioner.js';

// Values of Kafka's Utils.murmur2 (clients/src/test/.../UtilsTest.java and the Java client itself).
const known: Array<[string, number]> = [
  ['21', -973932308],
  ['foobar', -790332482],
  ['a-little-bit-long-string', -985981536],
  ['a-little-bit-longer-string', -1486304829],
  ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
  ['abc', 479470107],
];

describe('murmur2 (Kafka Utils.murmur2)', () => {
  it.each(known)('murmur2(%j) = %i', (text, expected) => {
    expect(murmur2(Buffer.from(text, 'utf8'))).toBe(expected);
  });

  it('covers every tail length (0-3) and is a signed 32-bit integer', () => {
    for (let length = 0; length < 16; length++) {
      const value = murmur2(new Uint8Array(length).fill(0xa5));
      expect(Number.isInteger(value)).toBe(true);
      expect(value).toBe(value | 0);
    }
  });

  it('empty input: Kafka Utils.murmur2(new byte[0]) = 275646681', () => {
    // No blocks, no tail: h = 0x9747b28c ^ 0, then h ^= h >>> 13; h *= m; h ^= h >>> 15. Worked out
    // apart from this code (a 32-bit transcription of the Java method, which also reproduces the
    // values of the table above).
    expect(murmur2(new Uint8Array(0))).toBe(275646681);
    expect(partitionForKey('', 3)).toBe(0);
  });

  // Partitions Kafka's Java producer picks for these UTF-8 key bytes (toPositive(murmur2) % n), from
  // the same independent transcription: tails of 1, 2, 3 and 0 bytes, negative hashes, multi-byte UTF-8.
  const assignments: Array<[string, number, Array<[number, number]>]> = [
    [
      'key',
      -1079937367,
      [
        [3, 1],
        [8, 1],
        [12, 1],
        [100, 81],
      ],
    ],
    [
      'user-1',
      1404122828,
      [
        [3, 2],
        [8, 4],
        [12, 8],
        [100, 28],
      ],
    ],
    [
      'order-42',
      501153024,
      [
        [3, 0],
        [8, 0],
        [12, 0],
        [100, 24],
      ],
    ],
    [
      'h\u00e9llo',
      614509002,
      [
        [3, 0],
        [8, 2],
        [12, 6],
        [100, 2],
      ],
    ],
    [
      'a',
      -1563381124,
      [
        [3, 1],
        [8, 4],
        [12, 4],
        [100, 24],
      ],
    ],
    [
      'ab',
      316155434,
      [
        [3, 2],
        [8, 2],
        [12, 2],
        [100, 34],
      ],
    ],
  ];
  it.each(assignments)('key %j: murmur2 %i and the partitions Kafka picks', (key, hash, partitions) => {
    expect(murmur2(Buffer.from(key, 'utf8'))).toBe(hash);
    for (const [count, partition] of partitions) expect(partitionForKey(key, count)).toBe(partition);
  });

  it('partition = (murmur2 & 0x7fffffff) % n, in range, for string and byte keys alike', () => {
    for (const [text, hash] of known) {
      for (const count of [1, 2, 3, 7, 8, 100]) {
        expect(partitionForKey(text, count)).toBe((hash & 0x7fffffff) % count);
        expect(partitionForKey(Buffer.from(text), count)).toBe(partitionForKey(text, count));
      }
    }
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.integer({ min: 1, max: 10_000 }), (key, count) => {
        const partition = partitionForKey(key, count);
        return partition >= 0 && partition < count && partition === toPositive(murmur2(key)) % count;
      }),
    );
  });

  it('toPositive clears the sign bit like Kafka (not Math.abs)', () => {
    expect(toPositive(-1)).toBe(0x7fffffff);
    expect(toPositive(-2147483648)).toBe(0);
    expect(toPositive(5)).toBe(5);
  });

  it('rejects a partition count that is not a positive integer', () => {
    expect(() => partitionForKey('k', 0)).toThrow(/partitionCount/);
    expect(() => partitionForKey('k', 1.5)).toThrow(/partitionCount/);
  });
});
