/**
 * Fuzzing the WebSocket front end: thousands of random and mutated frames over several connections.
 * Every binary or text message must get exactly one answer, addressed by the correlation id at bytes
 * 4-7 (0 when the message is shorter than 8 bytes, or text), no connection may be dropped, and the
 * broker must then still answer valid requests correctly, on the same connections and on a new one.
 * Frames with the serverRequest flag are in the server's correlation id space: a well-formed answer
 * to a server request (serverRequest | response) that nobody waits for is dropped without an answer
 * (and counted); any other use of the flag, or an undecodable frame carrying it, is answered with
 * correlation id 0.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeBatch } from '../../src/format/record-batch.js';
import { decodeFrame, encodeFrame, FrameFlags } from '../../src/protocol/frame.js';
import { Opcode, protocolVersion } from '../../src/protocol/opcodes.js';
import { delegate, errorCode, ok, startTestServer, TestClient, type TestServer } from './helpers.js';

const seed = Number(process.env['SPILLWAY_FUZZ_SEED'] ?? Date.now() % 1_000_000);
const framesPerConnection = 1500;
const connectionCount = 4;

/** mulberry32: small, seedable, good enough to pick mutations. */
function random(seedValue: number): () => number {
  let state = seedValue >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let harness: TestServer;

beforeAll(async () => {
  // Long-polls are capped at 50 ms: a mutated FETCH may ask for 30 s, and the test waits for every answer.
  harness = await startTestServer({}, {}, (broker) =>
    delegate(broker, {
      fetch: (topic, partition, offset, options) =>
        broker.messages.fetch(topic, partition, offset, {
          ...options,
          maxWaitMs: Math.min(options.maxWaitMs, 50),
        }),
    }),
  );
  await harness.broker.topics.create('fuzz', { partitions: 2 });
  await harness.broker.messages.produce('fuzz', 0, encodeBatch([{ key: 'k', value: 'v' }]));
});
afterAll(async () => {
  await harness.stop();
});

function makeGenerator(next: () => number) {
  const integer = (max: number) => Math.floor(next() * max);
  const pick = <T>(items: readonly T[]): T => items[integer(items.length)]!;
  const bytes = (length: number) => Uint8Array.from({ length }, () => integer(256));
  const validFrames = (): Uint8Array[] => {
    const correlationId = integer(0xffffffff) + 1;
    const batch = encodeBatch([{ key: `k${integer(10)}`, value: `v${integer(1000)}` }]);
    return [
      encodeFrame({ opcode: Opcode.hello, flags: 0, correlationId, header: { protocolVersion } }),
      encodeFrame({ opcode: Opcode.listTopics, flags: 0, correlationId, header: {} }),
      encodeFrame({ opcode: Opcode.describeTopic, flags: 0, correlationId, header: { name: 'fuzz' } }),
      encodeFrame({
        opcode: Opcode.fetch,
        flags: 0,
        correlationId,
        header: { topic: 'fuzz', partition: integer(2), offset: 0, maxBytes: 4096, maxWaitMs: 0 },
      }),
      encodeFrame({
        opcode: Opcode.listOffset,
        flags: 0,
        correlationId,
        header: { topic: 'fuzz', partition: 0, spec: pick(['earliest', 'latest']) },
      }),
      encodeFrame({
        opcode: Opcode.produce,
        flags: 0,
        correlationId,
        header: { topic: 'fuzz', partition: 1 },
        body: batch,
      }),
    ];
  };
  return (): Uint8Array | string => {
    const kind = integer(10);
    if (kind === 0) return bytes(integer(64)); // random bytes, often shorter than a prefix
    if (kind === 1) return Buffer.from(bytes(integer(40))).toString('latin1'); // a text frame
    const frame = Uint8Array.from(pick(validFrames()));
    switch (kind) {
      case 2: // truncated
        return frame.subarray(0, integer(frame.length));
      case 3: // huge or wrong header length
        new DataView(frame.buffer).setUint32(
          8,
          pick([0xffffffff, 0x80000000, 65537, frame.length, integer(1 << 20)]),
          true,
        );
        return frame;
      case 4: // unknown or response opcode / flags
        frame[0] = pick([0, 7, 9, 13, 64, 99, 255, integer(256)]);
        frame[1] = pick([0, FrameFlags.response, FrameFlags.error, 4, 0x80, integer(256)]);
        return frame;
      case 7: // the serverRequest flag in every combination, on an otherwise valid frame
        frame[1] = pick([
          FrameFlags.serverRequest,
          FrameFlags.serverRequest | FrameFlags.error,
          FrameFlags.serverRequest | FrameFlags.response,
          FrameFlags.serverRequest | FrameFlags.response | FrameFlags.error,
          FrameFlags.serverRequest | 0x10,
        ]);
        return frame;
      case 5: // header replaced by msgpack-ish garbage
        return Uint8Array.from([
          ...frame.subarray(0, 8),
          ...new Uint8Array(new Uint32Array([24]).buffer),
          ...bytes(24),
        ]);
      case 6: // random bytes appended
        return Uint8Array.from([...frame, ...bytes(1 + integer(32))]);
      default: {
        // 1 to 4 random bytes flipped anywhere (prefix, header or batch)
        for (let flips = 1 + integer(4); flips > 0; flips--)
          frame[integer(frame.length)]! ^= 1 + integer(255);
        return frame;
      }
    }
  };
}

/** The correlation id the broker must answer `message` with, or null when it must not answer. */
function expectedCorrelationId(message: Uint8Array | string): number | null {
  if (typeof message === 'string' || message.length < 8) return 0;
  if ((message[1]! & FrameFlags.serverRequest) !== 0) {
    try {
      // A well-formed answer to a server request: no server request is pending, so it is dropped.
      if ((decodeFrame(message).flags & FrameFlags.response) !== 0) return null;
    } catch {
      // Undecodable: answered with correlation id 0.
    }
    return 0;
  }
  return new DataView(message.buffer, message.byteOffset, message.byteLength).getUint32(4, true);
}

describe(`fuzz (seed ${seed}; set SPILLWAY_FUZZ_SEED to replay)`, () => {
  it('answers every random or mutated frame exactly once and keeps working', async () => {
    const generate = makeGenerator(random(seed));
    const clients = await Promise.all(
      Array.from({ length: connectionCount }, () => TestClient.connect(harness.server.url)),
    );
    const expected: number[][] = clients.map(() => []);
    let unanswered = 0;
    for (let i = 0; i < framesPerConnection; i++) {
      clients.forEach((client, index) => {
        const message = generate();
        const correlationId = expectedCorrelationId(message);
        if (correlationId === null) unanswered++;
        else expected[index]!.push(correlationId);
        client.sendRaw(message);
      });
    }
    expect(unanswered).toBeGreaterThan(0);
    const results = new Set<string>();
    for (const [index, client] of clients.entries()) {
      const answers = [];
      for (let i = 0; i < expected[index]!.length; i++) answers.push(await client.nextUnaddressed());
      expect(answers.map((answer) => answer.correlationId).sort()).toEqual(expected[index]!.sort());
      for (const answer of answers) {
        expect(answer.flags & FrameFlags.response).toBe(FrameFlags.response);
        results.add(errorCode(answer) ?? 'OK');
      }
      expect(client.unaddressed).toHaveLength(0);
      expect(client.open).toBe(true);
    }
    // The mutations reach past the frame check into the request validation and the batch check.
    for (const code of ['OK', 'PROTOCOL_ERROR', 'UNKNOWN_OPCODE', 'INVALID_ARGUMENT'])
      expect(results).toContain(code);
    expect([...results].some((code) => code === 'CORRUPT_BATCH' || code === 'INVALID_BATCH')).toBe(true);
    // The same connections still work.
    for (const client of clients) {
      expect(ok(await client.request(Opcode.hello, { protocolVersion }))).toMatchObject({ protocolVersion });
      // Nothing more came before that answer: the dropped frames were not answered late.
      expect(client.unaddressed).toHaveLength(0);
    }
    expect(harness.server.metrics.serverRequestAnswersDropped).toBe(unanswered);
    // And so does a fresh one, end to end.
    const fresh = await TestClient.connect(harness.server.url);
    ok(await fresh.request(Opcode.createTopic, { name: 'after-fuzz' }));
    const produced = ok(
      await fresh.request(
        Opcode.produce,
        { topic: 'after-fuzz', partition: 0 },
        encodeBatch([{ value: 'still here' }]),
      ),
    );
    expect(produced).toMatchObject({ baseOffset: 0, lastOffset: 0 });
    const fetched = await fresh.request(Opcode.fetch, { topic: 'after-fuzz', partition: 0, offset: 0 });
    expect(Buffer.from(fetched.body).includes(Buffer.from('still here'))).toBe(true);
    expect(
      errorCode(await fresh.request(Opcode.fetch, { topic: 'after-fuzz', partition: 0, offset: 5 })),
    ).toBe('OFFSET_OUT_OF_RANGE');
    await Promise.all([...clients, fresh].map((client) => client.close()));
  });
});
