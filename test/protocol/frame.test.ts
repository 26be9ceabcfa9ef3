import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { SpillwayError } from '../../src/errors.js';
import { frameBytesMax, frameHeaderBytesMax } from '../../src/limits.js';
import { errorFrame } from '../../src/protocol/dispatch.js';
import {
  decodeFrame,
  decodeFrameFragments,
  encodeFrame,
  encodeFrameParts,
  type Frame,
  FrameFlags,
  framePrefixBytes,
  ProtocolError,
  peekCorrelationId,
} from '../../src/protocol/frame.js';
import { Opcode } from '../../src/protocol/opcodes.js';

// The annotated examples of docs/PROTOCOL.md ("Examples"): keep the three identical.
const helloRequest = {
  opcode: Opcode.hello,
  flags: 0,
  correlationId: 1,
  header: { protocolVersion: 1, clientId: 'cli' },
};
const helloHex = [
  '01', // opcode 1 (HELLO)
  '00', // flags: request
  '0000', // reserved
  '01000000', // correlationId 1
  '21000000', // headerBytes 33
  'de0002', // msgpack map16, 2 entries
  'af70726f746f636f6c56657273696f6e', // fixstr(15) "protocolVersion"
  '01', // positive fixint 1
  'a8636c69656e744964', // fixstr(8) "clientId"
  'a3636c69', // fixstr(3) "cli"
].join('');
const errorAnswer = errorFrame(Opcode.fetch, 7, new SpillwayError('UNKNOWN_TOPIC', "no topic 'x'"));
const errorHex = [
  '0b', // opcode 11 (FETCH)
  '03', // flags: response | error
  '0000', // reserved
  '07000000', // correlationId 7
  '36000000', // headerBytes 54
  'de0003', // map16, 3 entries
  'a4636f6465', // "code"
  'ad554e4b4e4f574e5f544f504943', // "UNKNOWN_TOPIC"
  'a76d657373616765', // "message"
  'ac6e6f20746f70696320277827', // "no topic 'x'"
  'a9726574726961626c65', // "retriable"
  'c2', // false
].join('');
const pingRequest = { opcode: Opcode.ping, flags: FrameFlags.serverRequest, correlationId: 1, header: {} };
const pingRequestHex = [
  '40', // opcode 64 (PING)
  '04', // flags: serverRequest
  '0000', // reserved
  '01000000', // correlationId 1, in the server's space
  '03000000', // headerBytes 3
  'de0000', // map16, 0 entries
].join('');
const pingAnswer = {
  opcode: Opcode.ping,
  flags: FrameFlags.serverRequest | FrameFlags.response,
  correlationId: 1,
  header: {},
};
const pingAnswerHex = '400500000100000003000000de0000'; // the same, flags serverRequest | response

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
const fromHex = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'hex'));

function expectProtocolError(bytes: Uint8Array, message?: RegExp): void {
  let caught: unknown;
  try {
    decodeFrame(bytes);
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(ProtocolError);
  expect((caught as ProtocolError).code).toBe('PROTOCOL_ERROR');
  if (message) expect((caught as Error).message).toMatch(message);
}

describe('golden bytes (docs/PROTOCOL.md examples)', () => {
  it('encodes the HELLO request and the error answer to exactly the documented bytes', () => {
    expect(hex(encodeFrame(helloRequest))).toBe(helloHex);
    expect(hex(encodeFrame(errorAnswer))).toBe(errorHex);
    expect(hex(encodeFrame(pingRequest))).toBe(pingRequestHex);
    expect(hex(encodeFrame(pingAnswer))).toBe(pingAnswerHex);
  });

  it('decodes the documented bytes', () => {
    expect({ ...decodeFrame(fromHex(helloHex)), body: undefined }).toEqual({
      ...helloRequest,
      body: undefined,
    });
    expect(decodeFrame(fromHex(helloHex)).body.length).toBe(0);
    expect(decodeFrame(fromHex(errorHex))).toMatchObject({
      opcode: 11,
      flags: FrameFlags.response | FrameFlags.error,
      correlationId: 7,
      header: { code: 'UNKNOWN_TOPIC', message: "no topic 'x'", retriable: false },
    });
    expect(decodeFrame(fromHex(pingRequestHex))).toMatchObject(pingRequest);
    expect(decodeFrame(fromHex(pingAnswerHex))).toMatchObject(pingAnswer);
  });

  it('matches the hex dumps in docs/PROTOCOL.md', () => {
    const doc = readFileSync(new URL('../../docs/PROTOCOL.md', import.meta.url), 'utf8');
    const dumps = [...doc.matchAll(/(\d+) bytes:\n\n```\n([0-9a-f \n]+)```/g)];
    const all = [helloHex, errorHex, pingRequestHex, pingAnswerHex];
    expect(dumps.map((dump) => dump[2]!.replace(/\s+/g, ''))).toEqual(all);
    expect(dumps.map((dump) => Number(dump[1]))).toEqual(all.map((text) => text.length / 2));
  });
});

describe('encode / decode', () => {
  it('round-trips any frame, body as a view of the input', () => {
    const headerValue = fc.oneof(
      fc.string({ maxLength: 20 }),
      fc.integer(),
      fc.boolean(),
      fc.constant(null),
      fc.double({ noNaN: true }).filter((value) => !Object.is(value, -0)), // msgpack has no -0
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 7 }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.dictionary(
          fc.string({ minLength: 1, maxLength: 10 }).filter((key) => key !== '__proto__'),
          headerValue,
          { maxKeys: 8 },
        ),
        fc.uint8Array({ maxLength: 300 }),
        (opcode, flags, correlationId, header, body) => {
          const [prefix, bodyPart] = encodeFrameParts({ opcode, flags, correlationId, header, body });
          expect(bodyPart).toBe(body); // not copied
          const bytes = encodeFrame({ opcode, flags, correlationId, header, body });
          expect(bytes.length).toBe(prefix.length + body.length);
          const frame = decodeFrame(bytes);
          expect({ ...frame, body: [...frame.body] }).toEqual({
            opcode,
            flags,
            correlationId,
            header,
            body: [...body],
          });
          expect(frame.body.buffer).toBe(bytes.buffer);
          expect(peekCorrelationId(bytes)).toBe(correlationId);
        },
      ),
    );
  });

  it('decodes fragments: the body fragment used as it is, any other split joined first', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.dictionary(
          fc.string({ minLength: 1, maxLength: 10 }).filter((key) => key !== '__proto__'),
          fc.integer(),
          {
            maxKeys: 4,
          },
        ),
        fc.uint8Array({ maxLength: 300 }),
        fc.array(fc.nat(), { maxLength: 3 }),
        (correlationId, header, body, cuts) => {
          const frame = { opcode: Opcode.fetch, flags: FrameFlags.response, correlationId, header, body };
          const whole = encodeFrame(frame);
          const expected = { ...decodeFrame(whole), body: [...body] };
          // As the broker sends it: prefix + header, then the body.
          const [prefix, bodyPart] = encodeFrameParts(frame);
          const sent = decodeFrameFragments([prefix, bodyPart]);
          expect(sent.body).toBe(bodyPart); // not copied
          expect({ ...sent, body: [...sent.body] }).toEqual(expected);
          // Cut anywhere else (inside the prefix or the header, several pieces): the same frame.
          const points = [...new Set(cuts.map((cut) => cut % (whole.length + 1)))].sort((a, b) => a - b);
          const pieces: Uint8Array[] = [];
          let from = 0;
          for (const point of [...points, whole.length]) {
            pieces.push(whole.subarray(from, point));
            from = point;
          }
          const cut = decodeFrameFragments(pieces);
          expect({ ...cut, body: [...cut.body] }).toEqual(expected);
        },
      ),
    );
  });

  it('fragments that do not make a frame are a ProtocolError, as one buffer would be', () => {
    const [prefix, body] = encodeFrameParts({ opcode: 1, flags: 0, correlationId: 3, header: { a: 1 } });
    expect(() => decodeFrameFragments([prefix.subarray(0, 5), body])).toThrow(ProtocolError);
    expect(() => decodeFrameFragments([prefix.subarray(0, prefix.length - 1), body])).toThrow(ProtocolError);
    const flagged = Buffer.from(prefix);
    flagged[1] = 0x80;
    expect(() => decodeFrameFragments([flagged, Uint8Array.of(1, 2)])).toThrow(/reserved flag bits/);
  });

  it('a "__proto__" key in a header does not reach any prototype', () => {
    const header = JSON.parse('{"__proto__": {"polluted": true}, "name": "x"}') as Record<string, unknown>;
    const frame = decodeFrame(
      encodeFrame({ opcode: Opcode.describeTopic, flags: 0, correlationId: 1, header }),
    );
    expect((frame.header as Record<string, unknown>)['name']).toBe('x');
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    expect((frame.header as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('an empty header decodes as {} (headerBytes 0)', () => {
    const bytes = new Uint8Array(framePrefixBytes + 2);
    bytes[0] = Opcode.listTopics;
    expect(decodeFrame(bytes)).toMatchObject({
      opcode: Opcode.listTopics,
      header: {},
      body: new Uint8Array(2),
    });
  });

  it('refuses to encode a header or a frame over the limits', () => {
    const header = { big: 'x'.repeat(frameHeaderBytesMax) };
    expect(() => encodeFrameParts({ opcode: 1, flags: 0, correlationId: 1, header })).toThrow(/header of/);
    const body = new Uint8Array(frameBytesMax);
    expect(() => encodeFrameParts({ opcode: 11, flags: 1, correlationId: 1, header: {}, body })).toThrow(
      expect.objectContaining({ code: 'FRAME_TOO_LARGE' }),
    );
  });
});

describe('malformed frames', () => {
  const valid = (): Uint8Array => new Uint8Array(encodeFrame(helloRequest));

  it('every prefix shorter than 12 bytes is a ProtocolError', () => {
    const bytes = valid();
    for (let length = 0; length < framePrefixBytes; length++) {
      expectProtocolError(bytes.subarray(0, length), /shorter than its prefix/);
    }
    expect(peekCorrelationId(bytes.subarray(0, 7))).toBeNull();
    expect(peekCorrelationId(bytes.subarray(0, 8))).toBe(1);
  });

  it('every truncation inside the header is a ProtocolError', () => {
    const bytes = valid();
    for (let length = framePrefixBytes; length < bytes.length; length++) {
      expectProtocolError(bytes.subarray(0, length), /runs past/);
    }
  });

  it('reserved flag bits and reserved bytes must be zero', () => {
    // Bits 0-2: response, error, serverRequest.
    for (let bit = 3; bit < 8; bit++) {
      const bytes = valid();
      bytes[1] = 1 << bit;
      expectProtocolError(bytes, /reserved flag bits/);
    }
    for (const position of [2, 3]) {
      const bytes = valid();
      bytes[position] = 0x80;
      expectProtocolError(bytes, /reserved bytes/);
    }
  });

  it('header lengths past the limit or past the frame', () => {
    for (const headerBytes of [frameHeaderBytesMax + 1, 0x7fffffff, 0xffffffff]) {
      const bytes = valid();
      new DataView(bytes.buffer).setUint32(8, headerBytes, true);
      expectProtocolError(bytes, /exceeds/);
    }
    const bytes = valid();
    new DataView(bytes.buffer).setUint32(8, bytes.length, true);
    expectProtocolError(bytes, /runs past/);
  });

  it('a frame over frameBytesMax is FRAME_TOO_LARGE', () => {
    const bytes = new Uint8Array(frameBytesMax + 1);
    expect(() => decodeFrame(bytes)).toThrow(expect.objectContaining({ code: 'FRAME_TOO_LARGE' }));
  });

  it('a header that is not a msgpack map is a ProtocolError', () => {
    const packr = new Packr({ useRecords: false });
    for (const value of [1, 'text', [1, 2], null, true, 3.5]) {
      const header = packr.pack(value);
      const bytes = new Uint8Array(framePrefixBytes + header.length);
      bytes[0] = 1;
      new DataView(bytes.buffer).setUint32(8, header.length, true);
      bytes.set(header, framePrefixBytes);
      expectProtocolError(bytes, /must be a map|not valid msgpack/);
    }
    // Truncated msgpack: a map16 announcing entries that are not there; a str32 longer than the header.
    for (const header of [
      [0xde, 0x00, 0x05],
      [0xdb, 0xff, 0xff, 0xff, 0xff],
    ]) {
      const bytes = new Uint8Array(framePrefixBytes + header.length);
      new DataView(bytes.buffer).setUint32(8, header.length, true);
      bytes.set(header, framePrefixBytes);
      expectProtocolError(bytes);
    }
  });

  it('msgpack garbage: decodeFrame returns a frame or throws ProtocolError, nothing else', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 200 }),
        fc.integer({ min: 0, max: 0xffffffff }),
        (garbage, id) => {
          const bytes = new Uint8Array(framePrefixBytes + garbage.length);
          bytes[0] = 4;
          new DataView(bytes.buffer).setUint32(4, id, true);
          new DataView(bytes.buffer).setUint32(8, garbage.length, true);
          bytes.set(garbage, framePrefixBytes);
          let frame: Frame | undefined;
          try {
            frame = decodeFrame(bytes);
          } catch (error) {
            expect(error).toBeInstanceOf(ProtocolError);
            return;
          }
          expect(frame.correlationId).toBe(id);
          expect(typeof frame.header).toBe('object');
          expect(Array.isArray(frame.header)).toBe(false);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('random bytes and flipped bytes of valid frames never throw anything but SpillwayError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        try {
          decodeFrame(bytes);
        } catch (error) {
          expect(error).toBeInstanceOf(SpillwayError);
        }
      }),
      { numRuns: 2000 },
    );
    const source = valid();
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: source.length - 1 }),
        fc.integer({ min: 1, max: 255 }),
        (at, xor) => {
          const bytes = Uint8Array.from(source);
          bytes[at]! ^= xor;
          try {
            decodeFrame(bytes);
          } catch (error) {
            expect(error).toBeInstanceOf(ProtocolError);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});
