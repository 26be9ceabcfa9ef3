/**
 * Test helpers for the client's WebSocket (websocket-connection.test.ts, websocket-frame-reader.test.ts):
 * server frames built by hand (unmasked, as a server sends them) and patterned payloads.
 */

/** A server frame (unmasked) with `payload`; `firstByteExtra` sets reserved bits for corrupt frames. */
export function serverFrame(opcode: number, fin: boolean, payload: Uint8Array, firstByteExtra = 0): Buffer {
  const length = payload.length;
  const extended = length < 126 ? 0 : length < 65_536 ? 2 : 8;
  const header = Buffer.alloc(2 + extended);
  header[0] = (fin ? 0x80 : 0) | opcode | firstByteExtra;
  if (extended === 0) header[1] = length;
  else if (extended === 2) {
    header[1] = 126;
    header.writeUInt16BE(length, 2);
  } else {
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(length), 2);
  }
  return Buffer.concat([header, payload]);
}

/** `length` bytes of a pattern that depends on `seed` (so a misplaced slice shows). */
export function patterned(length: number, seed: number): Buffer {
  const bytes = Buffer.allocUnsafe(length);
  for (let index = 0; index < length; index++) bytes[index] = (index * 31 + seed) & 0xff;
  return bytes;
}
