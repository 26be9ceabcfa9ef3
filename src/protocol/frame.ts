/**
 * Frames of the Spillway wire protocol: one binary WebSocket message is one frame.
 * docs/PROTOCOL.md documents it byte for byte; golden-byte tests keep the two honest.
 *
 *   0  uint8   opcode          what the request is (opcodes.ts); a response repeats it
 *   1  uint8   flags           bit 0: response, bit 1: error (the header is an ErrorHeader),
 *                              bit 2: serverRequest (a server-initiated exchange, see below)
 *   2  uint16  reserved        0
 *   4  uint32  correlationId   chosen by the requester, echoed in the response (pipelining)
 *   8  uint32  headerBytes     length of the control header
 *  12  ...     header          msgpack (plain maps, no extensions), headerBytes long
 *  ..  ...     body            raw bytes to the end of the frame: record batches in PRODUCE
 *                              requests and FETCH responses, never re-encoded; empty otherwise
 *
 * Two correlation id spaces share a connection. Client requests (flags 0) and their answers
 * (response, response|error) use ids the client chooses. Requests the server sends (serverRequest)
 * and the client's answers to them (serverRequest|response, serverRequest|response|error) use ids
 * the server chooses: the serverRequest bit tells the spaces apart, so equal ids never collide.
 *
 * All integers little-endian. Frames are validated before anything else is looked at: a frame too
 * short, too long, with reserved bits set or a header that does not parse is a PROTOCOL_ERROR.
 */
import { Packr } from 'msgpackr';
import { SpillwayError } from '../errors.js';
import { frameBytesMax, frameHeaderBytesMax } from '../limits.js';

export const framePrefixBytes = 12;

export const FrameFlags = {
  response: 1,
  error: 2,
  /** Set on a request the server sends and on the client's answer to it (protocol version 2). */
  serverRequest: 4,
  /** Bits that must be zero. */
  reservedMask: 0xf8,
} as const;

export interface Frame {
  opcode: number;
  flags: number;
  correlationId: number;
  /** The decoded control header (a plain object for every opcode). */
  header: unknown;
  /** Raw bytes after the header: a view into the received frame, or the batches to send. */
  body: Uint8Array;
}

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false, int64AsType: 'number' });
const emptyBody = new Uint8Array(0);

export class ProtocolError extends SpillwayError {
  constructor(message: string) {
    super('PROTOCOL_ERROR', message);
    this.name = 'ProtocolError';
  }
}

/**
 * Encodes a frame as two parts: the prefix with the header, and the body (possibly empty), so a
 * sender can write the body without copying it (uWS fragments, or a gathered write).
 */
export function encodeFrameParts(frame: Omit<Frame, 'body'> & { body?: Uint8Array }): [Buffer, Uint8Array] {
  const header = packr.pack(frame.header ?? {});
  if (header.length > frameHeaderBytesMax) {
    throw new SpillwayError(
      'FRAME_TOO_LARGE',
      `frame header of ${header.length} bytes exceeds ${frameHeaderBytesMax}`,
    );
  }
  const body = frame.body ?? emptyBody;
  if (framePrefixBytes + header.length + body.length > frameBytesMax) {
    throw new SpillwayError(
      'FRAME_TOO_LARGE',
      `frame of ${framePrefixBytes + header.length + body.length} bytes exceeds ${frameBytesMax}`,
    );
  }
  const prefix = Buffer.allocUnsafe(framePrefixBytes + header.length);
  prefix.writeUInt8(frame.opcode, 0);
  prefix.writeUInt8(frame.flags, 1);
  prefix.writeUInt16LE(0, 2);
  prefix.writeUInt32LE(frame.correlationId >>> 0, 4);
  prefix.writeUInt32LE(header.length, 8);
  header.copy(prefix, framePrefixBytes);
  return [prefix, body];
}

/** Encodes a frame into one buffer (a copy of the body). */
export function encodeFrame(frame: Omit<Frame, 'body'> & { body?: Uint8Array }): Buffer {
  const [prefix, body] = encodeFrameParts(frame);
  if (body.length === 0) return prefix;
  return Buffer.concat([prefix, body]);
}

/** Decodes and validates a received frame. The body is a view of `bytes`. Throws ProtocolError. */
export function decodeFrame(bytes: Uint8Array): Frame {
  return decodeFrameHead(bytes, bytes.length);
}

/**
 * Decodes a frame received as WebSocket fragments (what `encodeFrameParts` sends: the prefix with
 * the header, then the body) without joining them when the first fragment holds exactly the prefix
 * and the header and one fragment follows: the body is then that fragment as it is. Any other
 * split is joined first (one copy) and decoded like `decodeFrame`. Throws ProtocolError.
 */
export function decodeFrameFragments(fragments: readonly Uint8Array[]): Frame {
  if (fragments.length === 1) return decodeFrame(fragments[0]!);
  const head = fragments[0];
  if (fragments.length === 2 && head !== undefined && head.length >= framePrefixBytes) {
    const body = fragments[1]!;
    if (framePrefixBytes + view(head).getUint32(8, true) === head.length) {
      const frame = decodeFrameHead(head, head.length + body.length);
      frame.body = body;
      return frame;
    }
  }
  return decodeFrame(Buffer.concat(fragments));
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Validates the prefix and decodes the header of a frame of `frameLength` bytes whose first bytes
 * are `bytes`; the body is the rest of `bytes` (a view).
 */
function decodeFrameHead(bytes: Uint8Array, frameLength: number): Frame {
  if (frameLength < framePrefixBytes)
    throw new ProtocolError(`frame of ${frameLength} bytes is shorter than its prefix`);
  if (frameLength > frameBytesMax) {
    throw new SpillwayError('FRAME_TOO_LARGE', `frame of ${frameLength} bytes exceeds ${frameBytesMax}`);
  }
  const prefix = view(bytes);
  const opcode = prefix.getUint8(0);
  const flags = prefix.getUint8(1);
  if ((flags & FrameFlags.reservedMask) !== 0) throw new ProtocolError(`reserved flag bits set (${flags})`);
  if (prefix.getUint16(2, true) !== 0) throw new ProtocolError('reserved bytes 2-3 are not zero');
  const correlationId = prefix.getUint32(4, true);
  const headerBytes = prefix.getUint32(8, true);
  if (headerBytes > frameHeaderBytesMax)
    throw new ProtocolError(`header of ${headerBytes} bytes exceeds ${frameHeaderBytesMax}`);
  if (framePrefixBytes + headerBytes > bytes.length) {
    throw new ProtocolError(`header of ${headerBytes} bytes runs past the ${frameLength}-byte frame`);
  }
  let header: unknown;
  try {
    header =
      headerBytes === 0 ? {} : packr.unpack(bytes.subarray(framePrefixBytes, framePrefixBytes + headerBytes));
  } catch (error) {
    throw new ProtocolError(`header is not valid msgpack: ${(error as Error).message}`);
  }
  // Plain maps only: msgpack extensions decode to Dates, Sets, Errors and the like.
  if (header === null || typeof header !== 'object' || Object.getPrototypeOf(header) !== Object.prototype) {
    throw new ProtocolError('header must be a map');
  }
  return { opcode, flags, correlationId, header, body: bytes.subarray(framePrefixBytes + headerBytes) };
}

/** Peeks the flags byte of a frame that may be invalid, or null when the frame is shorter than 2 bytes. */
export function peekFlags(bytes: Uint8Array): number | null {
  return bytes.length < 2 ? null : bytes[1]!;
}

/** Peeks the correlation id of a frame that may be invalid (to address an error answer), or null. */
export function peekCorrelationId(bytes: Uint8Array): number | null {
  if (bytes.length < 8) return null;
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(4, true);
}
