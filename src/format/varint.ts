/**
 * Zigzag varints, the variable-length integers of the record layout (docs/FORMAT.md, "Varints").
 *
 * A signed value is first zigzag-mapped to an unsigned one (0 → 0, -1 → 1, 1 → 2, -2 → 3, ...) so that
 * small magnitudes of either sign are short, then written 7 bits at a time, least significant group
 * first; every byte but the last has its high bit (0x80) set.
 *
 * - varint: a 32-bit signed integer, 1 to 5 bytes (the 5th byte carries bits 28-31, so it is <= 0x0f).
 * - varlong: a signed safe integer, |value| <= 2^53 - 1, 1 to 8 bytes. Kafka's varlong carries 64 bits;
 *   Spillway stays within JavaScript's safe integers without BigInt, so 8 bytes (56 bits) are enough
 *   for the 54-bit zigzag image and the 8th byte is <= 0x1f.
 *
 * Encodings are canonical: the readers reject a multi-byte encoding whose last byte is 0 (a value
 * written longer than needed), an encoding longer than the maximum ("too long") and bits beyond the
 * range ("overflow"). Every reader is bounded by an `end` it never reads at or past.
 *
 * The zigzag image of a varlong can exceed 2^53 (it is up to 2^54 - 2), where not every integer is a
 * double, so the varlong code never forms that image as one number: it handles the sign bit apart and
 * works on the magnitude `n` (value = n, or value = -n - 1), which is always a safe integer.
 */
import { InvalidBatchError } from '../errors.js';

/** Longest varint (int32) encoding. */
export const varintBytesMax = 5;
/** Longest varlong (safe integer) encoding. */
export const varlongBytesMax = 8;

const twoTo31 = 0x8000_0000;

/** Bytes of the zigzag varint encoding of `value`, an int32. */
export function varintSize(value: number): number {
  const zigzag = ((value << 1) ^ (value >> 31)) >>> 0;
  if (zigzag < 0x80) return 1;
  if (zigzag < 0x4000) return 2;
  if (zigzag < 0x20_0000) return 3;
  if (zigzag < 0x1000_0000) return 4;
  return 5;
}

/** Writes `value` (an int32) as a zigzag varint at `position`; returns the position after it. */
export function writeVarint(bytes: Uint8Array, position: number, value: number): number {
  let zigzag = ((value << 1) ^ (value >> 31)) >>> 0;
  while (zigzag >= 0x80) {
    bytes[position++] = (zigzag & 0x7f) | 0x80;
    zigzag >>>= 7;
  }
  bytes[position++] = zigzag;
  return position;
}

/** Bytes of the zigzag varlong encoding of `value`, a safe integer. */
export function varlongSize(value: number): number {
  if (value >= -0x4000_0000 && value < 0x4000_0000) return varintSize(value);
  // Magnitude without the sign bit: the zigzag image is 2n or 2n + 1.
  const magnitude = value >= 0 ? value : -value - 1;
  // 2n + 1 < 2^(7k) ⇔ n < 2^(7k - 1). Here n >= 2^30, so at least 5 bytes.
  if (magnitude < 2 ** 34) return 5;
  if (magnitude < 2 ** 41) return 6;
  if (magnitude < 2 ** 48) return 7;
  return 8;
}

/** Writes `value` (a safe integer) as a zigzag varlong at `position`; returns the position after it. */
export function writeVarlong(bytes: Uint8Array, position: number, value: number): number {
  if (value >= -0x4000_0000 && value < 0x4000_0000) return writeVarint(bytes, position, value);
  let sign = 0;
  let magnitude = value;
  if (value < 0) {
    sign = 1;
    magnitude = -value - 1;
  }
  // First byte: the sign bit and the low 6 bits of the magnitude. magnitude >= 2^30, so more follow.
  bytes[position++] = ((magnitude % 64) << 1) | sign | 0x80;
  magnitude = Math.floor(magnitude / 64);
  while (magnitude >= twoTo31) {
    bytes[position++] = (magnitude % 128) | 0x80;
    magnitude = Math.floor(magnitude / 128);
  }
  // Below 2^31 now: finish with 32-bit operations.
  while (magnitude >= 0x80) {
    bytes[position++] = (magnitude & 0x7f) | 0x80;
    magnitude >>>= 7;
  }
  bytes[position++] = magnitude;
  return position;
}

/** Maps a zigzag image (uint32) back to the int32 it encodes. */
export function zigzagDecode32(zigzag: number): number {
  return (zigzag >>> 1) ^ -(zigzag & 1);
}

/**
 * Reads varints from `bytes[position, end)`, advancing `position`. Errors are InvalidBatchError naming
 * the byte position relative to `origin` (the start of the batch), so messages point into the batch.
 */
export class VarintReader {
  bytes: Uint8Array;
  position: number;
  end: number;
  origin: number;

  constructor(bytes: Uint8Array, position: number, end: number, origin = 0) {
    this.bytes = bytes;
    this.position = position;
    this.end = end;
    this.origin = origin;
  }

  /** Reads a zigzag varint (int32). */
  readVarint(): number {
    const bytes = this.bytes;
    let position = this.position;
    if (position >= this.end) throw this.error(position, 'varint runs past the end');
    const byte = bytes[position++]!;
    if (byte < 0x80) {
      this.position = position;
      return (byte >>> 1) ^ -(byte & 1);
    }
    // Two bytes (|value| < 8192: record and value lengths of small messages), canonical (second byte
    // not 0), within the end: decoded here; everything else by the general loop with its checks.
    if (position < this.end) {
      const second = bytes[position]!;
      if (second < 0x80 && second !== 0) {
        this.position = position + 1;
        const result = (byte & 0x7f) | (second << 7);
        return (result >>> 1) ^ -(result & 1);
      }
    }
    return this.readVarintSlow();
  }

  private readVarintSlow(): number {
    const bytes = this.bytes;
    const start = this.position;
    const end = this.end;
    let position = start;
    let result = 0;
    let shift = 0;
    for (;;) {
      if (position >= end) throw this.error(start, 'varint runs past the end');
      const byte = bytes[position++]!;
      if (shift === 28 && byte > 0x0f) {
        throw this.error(
          start,
          byte >= 0x80 ? `varint longer than ${varintBytesMax} bytes` : 'varint overflows 32 bits',
        );
      }
      result |= (byte & 0x7f) << shift;
      if (byte < 0x80) {
        if (byte === 0) throw this.error(start, 'varint is not in canonical form (trailing zero byte)');
        this.position = position;
        return (result >>> 1) ^ -(result & 1);
      }
      shift += 7;
    }
  }

  /** Reads a zigzag varlong (safe integer). */
  readVarlong(): number {
    const bytes = this.bytes;
    const position = this.position;
    if (position < this.end) {
      const byte = bytes[position]!;
      if (byte < 0x80) {
        this.position = position + 1;
        return (byte >>> 1) ^ -(byte & 1);
      }
    }
    return this.readVarlongSlow();
  }

  private readVarlongSlow(): number {
    const bytes = this.bytes;
    const start = this.position;
    const end = this.end;
    let position = start;
    if (position >= end) throw this.error(start, 'varlong runs past the end');
    const first = bytes[position++]!;
    const sign = first & 1;
    // Magnitude bits 0-5 come from the first byte, then 7 bits per byte at `multiplier`.
    let magnitude = (first & 0x7f) >>> 1;
    let multiplier = 64;
    let byte = first;
    let count = 1;
    while (byte >= 0x80) {
      if (position >= end) throw this.error(start, 'varlong runs past the end');
      byte = bytes[position++]!;
      count++;
      if (count === varlongBytesMax && byte > 0x1f) {
        throw this.error(
          start,
          byte >= 0x80
            ? `varlong longer than ${varlongBytesMax} bytes`
            : 'varlong overflows the safe integer range',
        );
      }
      magnitude += (byte & 0x7f) * multiplier;
      multiplier *= 128;
    }
    if (count > 1 && byte === 0)
      throw this.error(start, 'varlong is not in canonical form (trailing zero byte)');
    // Positive values reach 2^53 - 1; negative ones -(2^53 - 1), i.e. magnitude 2^53 - 2.
    if (sign === 1 && magnitude === Number.MAX_SAFE_INTEGER) {
      throw this.error(start, 'varlong overflows the safe integer range');
    }
    this.position = position;
    return sign === 1 ? -magnitude - 1 : magnitude;
  }

  error(position: number, reason: string): InvalidBatchError {
    return new InvalidBatchError(`${reason} at byte ${position - this.origin} of the batch`);
  }
}
