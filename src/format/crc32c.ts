/**
 * CRC32C (Castagnoli, reflected polynomial 0x82F63B78) in pure TypeScript, slicing-by-8.
 * The client uses this one (it must load without the native addon); the broker and the storage use
 * the native implementation through src/native.ts, which must give the same answers (tested).
 *
 * `crc32c(bytes, previous)` continues a running checksum: crc32c(a ++ b) === crc32c(b, crc32c(a)).
 */

const polynomialReflected = 0x82f63b78;

/** tables[k][n]: CRC of byte n followed by k zero bytes (k = 0..7), for slicing-by-8. */
const tables: Uint32Array[] = (() => {
  const result: Uint32Array[] = [];
  const first = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let bit = 0; bit < 8; bit++) c = c & 1 ? (c >>> 1) ^ polynomialReflected : c >>> 1;
    first[n] = c >>> 0;
  }
  result.push(first);
  for (let k = 1; k < 8; k++) {
    const previous = result[k - 1]!;
    const table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      const c = previous[n]!;
      table[n] = ((c >>> 8) ^ first[c & 0xff]!) >>> 0;
    }
    result.push(table);
  }
  return result;
})();

const t0 = tables[0]!;
const t1 = tables[1]!;
const t2 = tables[2]!;
const t3 = tables[3]!;
const t4 = tables[4]!;
const t5 = tables[5]!;
const t6 = tables[6]!;
const t7 = tables[7]!;

/** CRC32C of `bytes[start, end)`, continuing from `previous` (0 for a fresh checksum). */
export function crc32c(bytes: Uint8Array, previous = 0, start = 0, end = bytes.length): number {
  let crc = ~previous >>> 0;
  let i = start;
  const alignedEnd = end - ((end - start) & 7);
  while (i < alignedEnd) {
    const low =
      (crc ^ (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24))) >>> 0;
    crc =
      t7[low & 0xff]! ^
      t6[(low >>> 8) & 0xff]! ^
      t5[(low >>> 16) & 0xff]! ^
      t4[low >>> 24]! ^
      t3[bytes[i + 4]!]! ^
      t2[bytes[i + 5]!]! ^
      t1[bytes[i + 6]!]! ^
      t0[bytes[i + 7]!]!;
    i += 8;
  }
  while (i < end) {
    crc = t0[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
    i++;
  }
  return ~crc >>> 0;
}
