import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidBatchError } from '../../src/errors.js';
import {
  VarintReader,
  varintBytesMax,
  varintSize,
  varlongBytesMax,
  varlongSize,
  writeVarint,
  writeVarlong,
  zigzagDecode32,
} from '../../src/format/varint.js';

/** Reference encoding with BigInt: 64-bit zigzag, then 7 bits per byte, low group first. */
function referenceBytes(value: number): number[] {
  const big = BigInt(value);
  let zigzag = BigInt.asUintN(64, (big << 1n) ^ (big >> 63n));
  const bytes: number[] = [];
  while (zigzag >= 0x80n) {
    bytes.push(Number(zigzag & 0x7fn) | 0x80);
    zigzag >>= 7n;
  }
  bytes.push(Number(zigzag));
  return bytes;
}

function encodeVarint(value: number): number[] {
  const bytes = new Uint8Array(varintBytesMax);
  const end = writeVarint(bytes, 0, value);
  expect(end).toBe(varintSize(value));
  return [...bytes.subarray(0, end)];
}

function encodeVarlong(value: number): number[] {
  const bytes = new Uint8Array(varlongBytesMax);
  const end = writeVarlong(bytes, 0, value);
  expect(end).toBe(varlongSize(value));
  return [...bytes.subarray(0, end)];
}

function readVarint(bytes: number[]): number {
  return new VarintReader(Uint8Array.from(bytes), 0, bytes.length).readVarint();
}

function readVarlong(bytes: number[]): number {
  return new VarintReader(Uint8Array.from(bytes), 0, bytes.length).readVarlong();
}

const hex = (bytes: number[]): string => Buffer.from(bytes).toString('hex');

describe('zigzag varint (int32)', () => {
  const cases: Array<[number, string]> = [
    [0, '00'],
    [-1, '01'],
    [1, '02'],
    [-64, '7f'],
    [63, '7e'],
    [64, '8001'],
    [2 ** 31 - 1, 'feffffff0f'],
    [-(2 ** 31), 'ffffffff0f'],
  ];
  it.each(cases)('%d encodes to %s and back', (value, expected) => {
    const bytes = encodeVarint(value);
    expect(hex(bytes)).toBe(expected);
    expect(bytes).toEqual(referenceBytes(value));
    expect(readVarint(bytes)).toBe(value);
  });

  it('round-trips every int32 (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), (value) => {
        const bytes = encodeVarint(value);
        expect(bytes).toEqual(referenceBytes(value));
        expect(readVarint(bytes)).toBe(value);
      }),
      { numRuns: 2000 },
    );
  });

  it('zigzagDecode32 inverts the mapping', () => {
    expect(zigzagDecode32(0)).toBe(0);
    expect(zigzagDecode32(1)).toBe(-1);
    expect(zigzagDecode32(2)).toBe(1);
    expect(zigzagDecode32(0xffffffff)).toBe(-(2 ** 31));
    expect(zigzagDecode32(0xfffffffe)).toBe(2 ** 31 - 1);
  });
});

describe('zigzag varlong (safe integers)', () => {
  const cases: Array<[number, string]> = [
    [0, '00'],
    [-1, '01'],
    [2 ** 31 - 1, 'feffffff0f'],
    [-(2 ** 31), 'ffffffff0f'],
    [Number.MAX_SAFE_INTEGER, 'feffffffffffff1f'],
    [-Number.MAX_SAFE_INTEGER, 'fdffffffffffff1f'],
  ];
  it.each(cases)('%d encodes to %s and back', (value, expected) => {
    const bytes = encodeVarlong(value);
    expect(hex(bytes)).toBe(expected);
    expect(bytes).toEqual(referenceBytes(value));
    expect(readVarlong(bytes)).toBe(value);
  });

  it('round-trips around every size boundary', () => {
    const values: number[] = [];
    for (let bits = 0; bits <= 53; bits++) {
      const power = 2 ** bits;
      for (const value of [power - 2, power - 1, power, power + 1]) {
        if (Math.abs(value) <= Number.MAX_SAFE_INTEGER) values.push(value, 0 - value);
      }
    }
    for (const value of values) {
      const bytes = encodeVarlong(value);
      expect(bytes, `value ${value}`).toEqual(referenceBytes(value));
      expect(readVarlong(bytes)).toBe(value);
    }
  });

  it('round-trips every safe integer (property)', () => {
    const magnitudes = fc.oneof(
      fc.integer({ min: -(2 ** 31), max: 2 ** 31 }),
      fc.maxSafeInteger(),
      fc.integer({ min: 0, max: 53 }).map((bits) => 2 ** bits - 1),
    );
    fc.assert(
      fc.property(magnitudes, fc.boolean(), (magnitude, negate) => {
        const value = negate ? 0 - magnitude : magnitude;
        const bytes = encodeVarlong(value);
        expect(bytes).toEqual(referenceBytes(value));
        expect(readVarlong(bytes)).toBe(value);
      }),
      { numRuns: 5000 },
    );
  });

  it('never takes more than 8 bytes', () => {
    expect(varlongSize(Number.MAX_SAFE_INTEGER)).toBe(8);
    expect(varlongSize(-Number.MAX_SAFE_INTEGER)).toBe(8);
    expect(varlongBytesMax).toBe(8);
  });
});

describe('malformed varints', () => {
  const rejects = (read: () => number, message: RegExp): void => {
    expect(read).toThrow(InvalidBatchError);
    expect(read).toThrow(message);
  };

  it('rejects a varint that runs past the end', () => {
    rejects(() => readVarint([]), /runs past the end/);
    rejects(() => readVarint([0x80]), /runs past the end/);
    rejects(() => readVarint([0xff, 0xff, 0xff, 0xff]), /runs past the end/);
    // The reader stops at `end` even when the array goes on.
    const bytes = Uint8Array.from([0x80, 0x01]);
    expect(() => new VarintReader(bytes, 0, 1).readVarint()).toThrow(/runs past the end/);
  });

  it('rejects a varint longer than 5 bytes', () => {
    rejects(() => readVarint([0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), /longer than 5 bytes/);
    rejects(() => readVarint([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), /longer than 5/);
  });

  it('rejects a varint that overflows 32 bits', () => {
    rejects(() => readVarint([0xff, 0xff, 0xff, 0xff, 0x10]), /overflows 32 bits/);
    rejects(() => readVarint([0x80, 0x80, 0x80, 0x80, 0x7f]), /overflows 32 bits/);
  });

  it('rejects non-canonical (padded) encodings', () => {
    rejects(() => readVarint([0x80, 0x00]), /canonical/);
    rejects(() => readVarint([0x81, 0x80, 0x00]), /canonical/);
    rejects(() => readVarlong([0x80, 0x00]), /canonical/);
    rejects(() => readVarlong([0xff, 0xff, 0xff, 0xff, 0xff, 0x00]), /canonical/);
  });

  it('rejects a varlong longer than 8 bytes', () => {
    rejects(() => readVarlong([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), /longer than 8 bytes/);
  });

  it('rejects a varlong outside the safe integer range', () => {
    // 8th byte above 0x1f: bits 53 and up.
    rejects(() => readVarlong([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20]), /overflows/);
    // Zigzag image 2^54 - 1 is -(2^53), one past the safe range.
    rejects(() => readVarlong([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f]), /overflows/);
  });

  it('rejects a varlong that runs past the end', () => {
    rejects(() => readVarlong([]), /runs past the end/);
    rejects(() => readVarlong([0xff, 0xff, 0xff]), /runs past the end/);
  });

  it('names the position relative to the batch origin', () => {
    const bytes = Uint8Array.from([0, 0, 0, 0, 0x80, 0x00]);
    expect(() => new VarintReader(bytes, 4, 6, 2).readVarint()).toThrow(/at byte 2 of the batch/);
  });

  it('reads random bytes without reading past the end or throwing anything else (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 12 }), fc.boolean(), (bytes, long) => {
        const reader = new VarintReader(bytes, 0, bytes.length);
        try {
          const value = long ? reader.readVarlong() : reader.readVarint();
          expect(Number.isSafeInteger(value)).toBe(true);
          expect(reader.position).toBeLessThanOrEqual(bytes.length);
          // Whatever was accepted is the canonical encoding of the value.
          expect([...bytes.subarray(0, reader.position)]).toEqual(referenceBytes(value));
        } catch (error) {
          expect(error).toBeInstanceOf(InvalidBatchError);
        }
      }),
      { numRuns: 5000 },
    );
  });
});
