/**
 * 64-bit little-endian integers as JavaScript numbers. Offsets, timestamps and producer ids are
 * int64 on disk and on the wire but stay below 2^53 in practice; these helpers avoid BigInt on the
 * hot path. Reading a value outside the safe-integer range throws (it can only come from corruption).
 */
const twoTo32 = 0x1_0000_0000;

export function writeInt64LE(buffer: Uint8Array, value: number, position: number): void {
  const high = Math.floor(value / twoTo32);
  const low = value - high * twoTo32;
  buffer[position] = low;
  buffer[position + 1] = low >>> 8;
  buffer[position + 2] = low >>> 16;
  buffer[position + 3] = low >>> 24;
  buffer[position + 4] = high;
  buffer[position + 5] = high >>> 8;
  buffer[position + 6] = high >>> 16;
  buffer[position + 7] = high >>> 24;
}

export function readInt64LE(buffer: Uint8Array, position: number): number {
  const low =
    (buffer[position]! | (buffer[position + 1]! << 8) | (buffer[position + 2]! << 16)) +
    buffer[position + 3]! * 0x100_0000;
  const high =
    buffer[position + 4]! |
    (buffer[position + 5]! << 8) |
    (buffer[position + 6]! << 16) |
    (buffer[position + 7]! << 24);
  const value = high * twoTo32 + low;
  if (!Number.isSafeInteger(value))
    throw new RangeError(`int64 at ${position} is outside the safe integer range`);
  return value;
}
