/**
 * The receive side of the client's own WebSocket (RFC 6455) connection (websocket-connection.ts):
 * bytes from the socket in, the broker's upgrade answer and whole messages out.
 *
 * Memory: the socket reads into the buffer `readBuffer()` hands out. Between payloads that is one
 * reused buffer of `wsReceiveBufferBytes` (frame headers, small payloads, the upgrade answer); a
 * payload not wholly in it gets a buffer of exactly its length (Buffer.allocUnsafe), the bytes
 * already read are copied into it and the socket then reads the rest of the payload straight into
 * it. So a large answer (a FETCH of 1 MiB) costs one allocation and no copy, where `ws` allocated a
 * 64 KiB buffer per socket read and joined them into a new buffer per message. The `allocate`
 * handler may lend that buffer instead, also for a payload of `allocateScratchPayloadBytesMin` or
 * more read whole into the reused buffer (copied into the lent one, not into a new one). Each
 * payload buffer is handed out and never reused by the reader: a message's bytes stay valid for as
 * long as anyone holds them, unless the `allocate` handler lent a buffer (its owner states the
 * lifetime).
 *
 * `push(chunk)` does the same for bytes the socket delivered in a buffer of its own (TLS): copied
 * into `readBuffer()` piece by piece. Frames may be split anywhere across reads.
 *
 * Checks (a broker we trust less than our own code): no reserved bits (no extension is negotiated),
 * server frames unmasked, known opcodes, control frames whole and at most 125 bytes, continuation
 * frames only inside a message, a message at most `maxPayload` bytes (FRAME_TOO_LARGE) and
 * `wsMessageFragmentsMax` fragments, 64-bit lengths below 2^53, an upgrade answer of at most
 * `wsHandshakeResponseBytesMax` bytes. A violation throws a ProtocolError (PROTOCOL_ERROR) or
 * FRAME_TOO_LARGE and the reader is dead afterwards (every later call throws the same error).
 * Not thread-safe (one event loop).
 */
import { SpillwayError } from '../errors.js';
import { wsHandshakeResponseBytesMax, wsMessageFragmentsMax, wsReceiveBufferBytes } from '../limits.js';
import { ProtocolError } from '../protocol/frame.js';

export const WebSocketOpcode = {
  continuation: 0,
  text: 1,
  binary: 2,
  close: 8,
  ping: 9,
  pong: 10,
} as const;

export interface FrameReaderHandlers {
  /** The upgrade answer's status line and headers (up to the blank line, excluded), as latin1 text. */
  handshake(head: string): void;
  /** A whole data message: its fragments' payloads in order (at least one, possibly empty). */
  message(fragments: Uint8Array[], binary: boolean): void;
  /** A control frame (close, ping, pong) and its payload. */
  control(opcode: number, payload: Uint8Array): void;
  /**
   * Optional: the buffer for a data payload of `bytes` bytes not wholly in the reused buffer (read
   * into it) or of at least `allocateScratchPayloadBytesMin` bytes wholly in it (copied into it),
   * given the message's fragments before it; null (or a buffer of another length) for a new one.
   */
  allocate?(bytes: number, fragmentsBefore: readonly Uint8Array[]): Buffer | null;
}

/**
 * A data payload of at least this many bytes that arrived whole in the scratch buffer is offered to
 * `allocate` as well (smaller ones come from Buffer's shared pool, which allocUnsafe uses below half
 * its 8 KiB): at 16 KiB per message a new buffer per answer was the consumer's main garbage.
 */
export const allocateScratchPayloadBytesMin = 4096;

const emptyPayload = new Uint8Array(0);
const headerEnd = Buffer.from('\r\n\r\n', 'latin1');

export class WebSocketFrameReader {
  private readonly handlers: FrameReaderHandlers;
  private readonly maxPayload: number;
  private readonly scratch = Buffer.allocUnsafe(wsReceiveBufferBytes);
  /** Unparsed bytes of `scratch`: [start, end). */
  private start = 0;
  private end = 0;
  private awaitingHandshake = true;
  /** The payload being read straight into its own buffer, or null. */
  private target: Buffer | null = null;
  private targetFilled = 0;
  private targetOpcode = 0;
  private targetFin = false;
  /** The data message being assembled: its opcode (0: none), fragments and bytes so far. */
  private messageOpcode = 0;
  private fragments: Uint8Array[] = [];
  private messageBytes = 0;
  private failure: unknown = null;

  /** `maxPayload`: bytes one data message may hold (all its fragments). */
  constructor(handlers: FrameReaderHandlers, maxPayload: number) {
    this.handlers = handlers;
    this.maxPayload = maxPayload;
  }

  /** Where the socket should put the next bytes it reads (then call `advance` with how many). */
  readBuffer(): Buffer {
    const target = this.target;
    if (target !== null) return target.subarray(this.targetFilled);
    if (this.start === this.end) {
      this.start = 0;
      this.end = 0;
    } else if (this.start > 0) {
      this.scratch.copyWithin(0, this.start, this.end);
      this.end -= this.start;
      this.start = 0;
    }
    return this.scratch.subarray(this.end);
  }

  /** `bytes` bytes were written at the start of the last `readBuffer()`. Throws on a protocol violation. */
  advance(bytes: number): void {
    if (this.failure !== null) throw this.failure;
    try {
      if (this.target !== null) {
        this.targetFilled += bytes;
        if (this.targetFilled < this.target.length) return;
        const payload = this.target;
        this.target = null;
        this.frame(this.targetOpcode, this.targetFin, payload);
        return;
      }
      this.end += bytes;
      this.parse();
    } catch (error) {
      this.failure = error;
      throw error;
    }
  }

  /** Bytes delivered in a buffer of their own (a TLS socket's 'data'). Throws on a protocol violation. */
  push(chunk: Uint8Array): void {
    let offset = 0;
    while (offset < chunk.length) {
      const into = this.readBuffer();
      const length = Math.min(into.length, chunk.length - offset);
      into.set(chunk.subarray(offset, offset + length));
      offset += length;
      this.advance(length);
    }
  }

  private parse(): void {
    const scratch = this.scratch;
    for (;;) {
      if (this.awaitingHandshake) {
        const at = scratch.subarray(this.start, this.end).indexOf(headerEnd);
        if (at < 0) {
          if (this.end - this.start >= wsHandshakeResponseBytesMax) {
            throw new ProtocolError(
              `the answer to the WebSocket upgrade has no end of headers within ${wsHandshakeResponseBytesMax} bytes`,
            );
          }
          return;
        }
        const head = scratch.toString('latin1', this.start, this.start + at);
        this.start += at + headerEnd.length;
        this.awaitingHandshake = false;
        this.handlers.handshake(head);
        continue;
      }
      const available = this.end - this.start;
      if (available < 2) return;
      const first = scratch[this.start]!;
      const second = scratch[this.start + 1]!;
      if ((first & 0x70) !== 0) throw new ProtocolError('a WebSocket frame has reserved bits set');
      if ((second & 0x80) !== 0) throw new ProtocolError('the broker sent a masked WebSocket frame');
      const fin = (first & 0x80) !== 0;
      const opcode = first & 0x0f;
      let length = second & 0x7f;
      let headerBytes = 2;
      if (length === 126) {
        if (available < 4) return;
        length = scratch.readUInt16BE(this.start + 2);
        headerBytes = 4;
      } else if (length === 127) {
        if (available < 10) return;
        const high = scratch.readUInt32BE(this.start + 2);
        if (high > 0x1f_ffff) throw new ProtocolError('a WebSocket frame length exceeds 2^53 - 1');
        length = high * 2 ** 32 + scratch.readUInt32BE(this.start + 6);
        headerBytes = 10;
      }
      this.checkFrame(opcode, fin, length);
      this.start += headerBytes;
      const inScratch = this.end - this.start;
      if (length <= inScratch) {
        // A large data payload read whole into the scratch buffer is copied into a buffer the
        // handler lends, if it lends one (no allocation); else into a new one.
        const offered =
          opcode < 8 && length >= allocateScratchPayloadBytesMin
            ? (this.handlers.allocate?.(length, this.fragments) ?? null)
            : null;
        const payload =
          length === 0
            ? emptyPayload
            : offered !== null && offered.length === length
              ? offered
              : Buffer.allocUnsafe(length);
        if (length > 0) scratch.copy(payload as Buffer, 0, this.start, this.start + length);
        this.start += length;
        this.frame(opcode, fin, payload);
        continue;
      }
      // The rest of the payload is read straight into a buffer of its own.
      const offered = opcode < 8 ? (this.handlers.allocate?.(length, this.fragments) ?? null) : null;
      const target = offered !== null && offered.length === length ? offered : Buffer.allocUnsafe(length);
      scratch.copy(target, 0, this.start, this.end);
      this.target = target;
      this.targetFilled = inScratch;
      this.targetOpcode = opcode;
      this.targetFin = fin;
      this.start = 0;
      this.end = 0;
      return;
    }
  }

  private checkFrame(opcode: number, fin: boolean, length: number): void {
    if (opcode >= 8) {
      if (
        opcode !== WebSocketOpcode.close &&
        opcode !== WebSocketOpcode.ping &&
        opcode !== WebSocketOpcode.pong
      )
        throw new ProtocolError(`unknown WebSocket control opcode ${opcode}`);
      if (!fin) throw new ProtocolError('a fragmented WebSocket control frame');
      if (length > 125) throw new ProtocolError(`a WebSocket control frame of ${length} bytes (at most 125)`);
      return;
    }
    if (opcode === WebSocketOpcode.continuation) {
      if (this.messageOpcode === 0)
        throw new ProtocolError('a WebSocket continuation frame outside a message');
    } else if (opcode === WebSocketOpcode.text || opcode === WebSocketOpcode.binary) {
      if (this.messageOpcode !== 0)
        throw new ProtocolError('a new WebSocket message inside a fragmented one');
    } else {
      throw new ProtocolError(`unknown WebSocket opcode ${opcode}`);
    }
    if (this.messageBytes + length > this.maxPayload) {
      throw new SpillwayError(
        'FRAME_TOO_LARGE',
        `a WebSocket message of more than ${this.messageBytes + length} bytes exceeds ${this.maxPayload}`,
      );
    }
    if (this.fragments.length >= wsMessageFragmentsMax) {
      throw new ProtocolError(`a WebSocket message of more than ${wsMessageFragmentsMax} fragments`);
    }
  }

  private frame(opcode: number, fin: boolean, payload: Uint8Array): void {
    if (opcode >= 8) {
      this.handlers.control(opcode, payload);
      return;
    }
    if (opcode !== WebSocketOpcode.continuation) this.messageOpcode = opcode;
    this.fragments.push(payload);
    this.messageBytes += payload.length;
    if (!fin) return;
    const fragments = this.fragments;
    const binary = this.messageOpcode === WebSocketOpcode.binary;
    this.fragments = [];
    this.messageBytes = 0;
    this.messageOpcode = 0;
    this.handlers.message(fragments, binary);
  }
}
