import { createHash } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import {
  allocateScratchPayloadBytesMin,
  WebSocketFrameReader,
  WebSocketOpcode,
} from '../../src/client/websocket-frame-reader.js';
import { SpillwayError } from '../../src/errors.js';
import {
  wsHandshakeResponseBytesMax,
  wsMessageFragmentsMax,
  wsReceiveBufferBytes,
} from '../../src/limits.js';
import { patterned, serverFrame } from './websocket-frames.js';

const handshake = Buffer.from('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n', 'latin1');

function collector(maxPayload = 1 << 24) {
  const messages: Array<{ fragments: Uint8Array[]; binary: boolean }> = [];
  const controls: Array<{ opcode: number; payload: Buffer }> = [];
  const heads: string[] = [];
  const reader = new WebSocketFrameReader(
    {
      handshake: (head) => heads.push(head),
      message: (fragments, binary) => messages.push({ fragments, binary }),
      control: (opcode, payload) => controls.push({ opcode, payload: Buffer.from(payload) }),
    },
    maxPayload,
  );
  return { reader, messages, controls, heads };
}

/** Feeds `bytes` the way the TCP socket does: into readBuffer(), at most `chunk` bytes per read. */
function feed(reader: WebSocketFrameReader, bytes: Uint8Array, chunk: number): void {
  let offset = 0;
  while (offset < bytes.length) {
    const into = reader.readBuffer();
    if (into.length === 0) throw new Error('readBuffer() gave no room');
    const length = Math.min(into.length, chunk, bytes.length - offset);
    into.set(bytes.subarray(offset, offset + length));
    offset += length;
    reader.advance(length);
  }
}

function joined(message: { fragments: Uint8Array[] }): Buffer {
  return Buffer.concat(message.fragments);
}

function errorOf(run: () => void): SpillwayError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(SpillwayError);
    return error as SpillwayError;
  }
  throw new Error('expected an error');
}

describe('WebSocket frame reader', () => {
  test('a stream of messages split at every size of read arrives whole, whatever the split', () => {
    const large = patterned(300 * 1024, 1); // larger than the reused receive buffer
    const stream = Buffer.concat([
      handshake,
      serverFrame(WebSocketOpcode.binary, true, patterned(10, 2)),
      serverFrame(WebSocketOpcode.binary, false, patterned(200, 3)), // prefix fragment
      serverFrame(WebSocketOpcode.ping, true, Buffer.from('hi')), // control inside a message
      serverFrame(WebSocketOpcode.continuation, true, large), // body fragment
      serverFrame(WebSocketOpcode.binary, true, patterned(70_000, 4)), // 64-bit length
      serverFrame(WebSocketOpcode.binary, true, new Uint8Array(0)),
      serverFrame(WebSocketOpcode.text, true, Buffer.from('text')),
    ]);
    const digest = createHash('sha256').update(large).digest('hex');
    for (const chunk of [1, 2, 3, 7, 125, 4096, wsReceiveBufferBytes, stream.length]) {
      const { reader, messages, controls, heads } = collector();
      feed(reader, stream, chunk);
      expect(heads).toEqual(['HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket']);
      expect(controls.map((control) => [control.opcode, control.payload.toString()])).toEqual([
        [WebSocketOpcode.ping, 'hi'],
      ]);
      expect(messages.map((message) => message.fragments.length)).toEqual([1, 2, 1, 1, 1]);
      expect(messages.map((message) => message.binary)).toEqual([true, true, true, true, false]);
      expect(joined(messages[0]!).equals(patterned(10, 2))).toBe(true);
      expect(Buffer.from(messages[1]!.fragments[0]!).equals(patterned(200, 3))).toBe(true);
      expect(createHash('sha256').update(messages[1]!.fragments[1]!).digest('hex')).toBe(digest);
      expect(joined(messages[2]!).equals(patterned(70_000, 4))).toBe(true);
      expect(joined(messages[3]!).length).toBe(0);
      expect(joined(messages[4]!).toString()).toBe('text');
    }
    // push() (a TLS socket's own buffers) gives the same.
    const { reader, messages } = collector();
    for (let offset = 0; offset < stream.length; offset += 999)
      reader.push(stream.subarray(offset, offset + 999));
    expect(messages.length).toBe(5);
    expect(createHash('sha256').update(messages[1]!.fragments[1]!).digest('hex')).toBe(digest);
  });

  test('the bytes of a message kept by its taker do not change when later messages arrive', () => {
    const { reader, messages } = collector();
    feed(reader, handshake, 1 << 20);
    const sizes = [100, 5000, 64 * 1024, 200 * 1024, 100, 1024 * 1024];
    for (const [round, size] of [...sizes, ...sizes].entries()) {
      feed(reader, serverFrame(WebSocketOpcode.binary, true, patterned(size, round)), 8192);
    }
    // Every payload is still what was sent, after all the later reads.
    for (const [round, size] of [...sizes, ...sizes].entries()) {
      expect(joined(messages[round]!).equals(patterned(size, round))).toBe(true);
    }
    // A payload the socket read straight into is a buffer of exactly its size, not a view of a shared one.
    const large = messages[5]!.fragments[0]!;
    expect([large.byteOffset, large.buffer.byteLength]).toEqual([0, 1024 * 1024]);
  });

  test('bounds: message size, fragments, control frames, the upgrade answer', () => {
    const tooLarge = collector(1000);
    feed(tooLarge.reader, handshake, 1 << 20);
    feed(tooLarge.reader, serverFrame(WebSocketOpcode.binary, false, patterned(600, 1)), 1 << 20);
    const large = errorOf(() =>
      feed(tooLarge.reader, serverFrame(WebSocketOpcode.continuation, true, patterned(401, 1)), 1 << 20),
    );
    expect(large.code).toBe('FRAME_TOO_LARGE');

    const fragments = collector();
    feed(fragments.reader, handshake, 1 << 20);
    feed(fragments.reader, serverFrame(WebSocketOpcode.binary, false, patterned(1, 1)), 1 << 20);
    for (let index = 1; index < wsMessageFragmentsMax; index++) {
      feed(fragments.reader, serverFrame(WebSocketOpcode.continuation, false, patterned(1, 1)), 1 << 20);
    }
    const many = errorOf(() =>
      feed(fragments.reader, serverFrame(WebSocketOpcode.continuation, true, patterned(1, 1)), 1 << 20),
    );
    expect([many.code, many.message]).toEqual([
      'PROTOCOL_ERROR',
      `a WebSocket message of more than ${wsMessageFragmentsMax} fragments`,
    ]);

    const control = collector();
    feed(control.reader, handshake, 1 << 20);
    expect(
      errorOf(() => feed(control.reader, serverFrame(WebSocketOpcode.ping, true, patterned(126, 1)), 1 << 20))
        .code,
    ).toBe('PROTOCOL_ERROR');

    const head = collector();
    const endless = Buffer.alloc(wsHandshakeResponseBytesMax, 'a'.charCodeAt(0));
    expect(errorOf(() => feed(head.reader, endless, 4096)).code).toBe('PROTOCOL_ERROR');
  });

  test('a corrupt frame is a PROTOCOL_ERROR, and the reader stays failed', () => {
    const cases: Array<[string, Buffer]> = [
      ['reserved bits', serverFrame(WebSocketOpcode.binary, true, patterned(4, 1), 0x40)],
      ['masked by the server', Buffer.from([0x82, 0x84, 0, 0, 0, 0, 1, 2, 3, 4])],
      ['unknown opcode', serverFrame(3, true, patterned(4, 1))],
      ['unknown control opcode', serverFrame(11, true, patterned(4, 1))],
      ['continuation outside a message', serverFrame(WebSocketOpcode.continuation, true, patterned(4, 1))],
      ['fragmented control frame', serverFrame(WebSocketOpcode.ping, false, patterned(4, 1))],
      ['length beyond 2^53', Buffer.from([0x82, 127, 0xff, 0, 0, 0, 0, 0, 0, 1])],
      [
        'a new message inside a fragmented one',
        Buffer.concat([
          serverFrame(WebSocketOpcode.binary, false, patterned(4, 1)),
          serverFrame(WebSocketOpcode.binary, true, patterned(4, 1)),
        ]),
      ],
    ];
    for (const [name, bytes] of cases) {
      const { reader, messages } = collector();
      feed(reader, handshake, 1 << 20);
      const error = errorOf(() => feed(reader, bytes, 3));
      expect([name, error.code]).toEqual([name, 'PROTOCOL_ERROR']);
      expect(errorOf(() => reader.advance(0))).toBe(error);
      expect(messages).toEqual([]);
    }
  });

  test('allocate lends the buffer of a large data payload, read whole in the scratch buffer or not', () => {
    const offers: number[] = [];
    const lent: Buffer[] = [];
    const messages: Uint8Array[][] = [];
    const reader = new WebSocketFrameReader(
      {
        handshake: () => undefined,
        message: (fragments) => messages.push(fragments),
        control: () => undefined,
        allocate: (bytes) => {
          offers.push(bytes);
          // A buffer of another length is not used: the reader makes its own.
          const buffer = Buffer.alloc(bytes === allocateScratchPayloadBytesMin + 1 ? bytes + 1 : bytes);
          lent.push(buffer);
          return buffer;
        },
      },
      1 << 24,
    );
    const small = patterned(allocateScratchPayloadBytesMin - 1, 1);
    const inScratch = patterned(allocateScratchPayloadBytesMin, 2);
    const wrongLength = patterned(allocateScratchPayloadBytesMin + 1, 3);
    const large = patterned(wsReceiveBufferBytes + 10, 4);
    feed(
      reader,
      Buffer.concat([
        handshake,
        serverFrame(WebSocketOpcode.binary, true, small),
        serverFrame(WebSocketOpcode.binary, true, inScratch),
        serverFrame(WebSocketOpcode.ping, true, Buffer.from('x')),
        serverFrame(WebSocketOpcode.binary, true, wrongLength),
        serverFrame(WebSocketOpcode.binary, true, large),
      ]),
      wsReceiveBufferBytes,
    );
    // Below the threshold and control frames: never offered.
    expect(offers).toEqual([inScratch.length, wrongLength.length, large.length]);
    expect(messages.map((fragments) => fragments.length)).toEqual([1, 1, 1, 1]);
    const [first, second, third, fourth] = messages.map((fragments) => fragments[0]!);
    expect(Buffer.from(first!).equals(small)).toBe(true);
    expect(second).toBe(lent[0]);
    expect(Buffer.from(second!).equals(inScratch)).toBe(true);
    expect(third).not.toBe(lent[1]);
    expect(Buffer.from(third!).equals(wrongLength)).toBe(true);
    expect(fourth).toBe(lent[2]);
    expect(Buffer.from(fourth!).equals(large)).toBe(true);
  });
});
