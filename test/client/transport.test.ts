import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { describe, expect, test } from 'vitest';
import { type WebSocket as ServerSocket, WebSocketServer } from 'ws';
import { InProcessTransport } from '../../src/client/in-process-transport.js';
import { fragmentBodyBytesMin, WebSocketTransport } from '../../src/client/websocket-transport.js';
import { SpillwayError } from '../../src/errors.js';
import { BatchBuilder } from '../../src/format/record-batch.js';
import { decodeFrame, encodeFrame, type Frame, FrameFlags } from '../../src/protocol/frame.js';
import { Opcode, protocolVersion, protocolVersionMin } from '../../src/protocol/opcodes.js';
import { delegate, onCleanup, openBroker, serve, sleep, waitFor } from './helpers.js';

type Reply = (header: unknown, options?: { error?: boolean; body?: Uint8Array }) => void;

/**
 * A WebSocket server speaking just enough of the protocol: it answers HELLO (with
 * `inFlightRequestsMax`), and hands every other request to `onRequest` with a reply function.
 */
async function fakeBroker(
  onRequest: (frame: Frame, reply: Reply, socket: ServerSocket) => void,
  hello: Record<string, unknown> = {},
  port = 0,
) {
  const server = new WebSocketServer({ port, host: '127.0.0.1' });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const sockets = new Set<ServerSocket>();
  const hellos: unknown[] = [];
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('message', (data: Buffer) => {
      const frame = decodeFrame(data);
      const reply: Reply = (header, options = {}) => {
        const flags = FrameFlags.response | (options.error ? FrameFlags.error : 0);
        if (socket.readyState === socket.OPEN) {
          socket.send(
            encodeFrame({
              opcode: frame.opcode,
              flags,
              correlationId: frame.correlationId,
              header,
              body: options.body,
            }),
          );
        }
      };
      if (frame.opcode === Opcode.hello) {
        hellos.push(frame.header);
        reply({
          protocolVersion,
          brokerVersion: 'fake',
          frameBytesMax: 1 << 24,
          inFlightRequestsMax: 1024,
          ...hello,
        });
        return;
      }
      onRequest(frame, reply, socket);
    });
  });
  const address = server.address() as AddressInfo;
  const close = async () => {
    for (const socket of sockets) socket.terminate();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  onCleanup(close);
  return { url: `ws://127.0.0.1:${address.port}`, port: address.port, sockets, hellos, close };
}

async function transportTo(url: string, options: ConstructorParameters<typeof Object>[0] = {}) {
  const transport = await WebSocketTransport.connect(url, options as object);
  onCleanup(() => transport.close());
  return transport;
}

async function rejection(promise: Promise<unknown>): Promise<SpillwayError> {
  const error = await promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(SpillwayError);
  return error as SpillwayError;
}

describe('WebSocket transport', () => {
  test('says HELLO with the protocol version and client id; answers come back by correlation id, in any order', async () => {
    const held: Array<{ frame: Frame; reply: Reply }> = [];
    const broker = await fakeBroker((frame, reply) => {
      held.push({ frame, reply });
      if (held.length === 3) {
        // Answer in reverse order.
        for (const { frame: request, reply: answer } of held.reverse()) answer({ echo: request.header });
      }
    });
    const transport = await transportTo(broker.url, { clientId: 'test-client' });
    expect(broker.hellos).toEqual([
      { protocolVersion: protocolVersionMin, protocolVersionMax: protocolVersion, clientId: 'test-client' },
    ]);
    expect(transport.hello).toMatchObject({
      protocolVersion,
      brokerVersion: 'fake',
      inFlightRequestsMax: 1024,
    });
    const answers = await Promise.all([1, 2, 3].map((n) => transport.request(Opcode.listTopics, { n })));
    expect(answers.map((answer) => answer.header)).toEqual([
      { echo: { n: 1 } },
      { echo: { n: 2 } },
      { echo: { n: 3 } },
    ]);
    expect(new Set(held.map(({ frame }) => frame.correlationId)).size).toBe(3);
  });

  test('an error frame becomes a SpillwayError with the code, message and retriable flag of the wire', async () => {
    const broker = await fakeBroker((frame, reply) => {
      const header = frame.header as { case: number };
      if (header.case === 1)
        reply({ code: 'UNKNOWN_TOPIC', message: "unknown topic 'x'", retriable: false }, { error: true });
      else if (header.case === 2)
        reply({ code: 'STORAGE_FULL', message: 'disk full', retriable: true }, { error: true });
      else reply({ code: 'NEW_CODE_FROM_THE_FUTURE', message: 'hm' }, { error: true });
    });
    const transport = await transportTo(broker.url);
    const unknown = await rejection(transport.request(Opcode.describeTopic, { case: 1 }));
    expect([unknown.code, unknown.message, unknown.retriable]).toEqual([
      'UNKNOWN_TOPIC',
      "unknown topic 'x'",
      false,
    ]);
    const full = await rejection(transport.request(Opcode.produce, { case: 2 }));
    expect([full.code, full.retriable]).toEqual(['STORAGE_FULL', true]);
    const strange = await rejection(transport.request(Opcode.produce, { case: 3 }));
    expect(strange.code).toBe('INTERNAL');
    expect(strange.message).toContain('NEW_CODE_FROM_THE_FUTURE');
  });

  test('a broker of another protocol version is refused', async () => {
    const broker = await fakeBroker(() => {}, { protocolVersion: protocolVersion + 1 });
    const error = await rejection(WebSocketTransport.connect(broker.url));
    expect(error.code).toBe('UNSUPPORTED_VERSION');
    const nobody = await rejection(WebSocketTransport.connect('ws://127.0.0.1:1'));
    expect([nobody.code, nobody.retriable]).toEqual(['CONNECTION_CLOSED', true]);
    // http(s):// names the broker's port too (mapped to ws(s)://); other schemes are refused.
    await expect(WebSocketTransport.connect('ftp://127.0.0.1:1')).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    const viaHttp = await rejection(WebSocketTransport.connect('http://127.0.0.1:1'));
    expect(viaHttp.code).toBe('CONNECTION_CLOSED');
  });

  test("at most HELLO's inFlightRequestsMax requests are on the wire; the others queue, boundedly", async () => {
    let outstanding = 0;
    let outstandingMax = 0;
    const broker = await fakeBroker(
      (_frame, reply) => {
        outstanding++;
        outstandingMax = Math.max(outstandingMax, outstanding);
        setTimeout(() => {
          outstanding--;
          reply({});
        }, 2);
      },
      { inFlightRequestsMax: 3 },
    );
    const transport = await transportTo(broker.url, { queuedRequestsMax: 50 });
    const requests = Array.from({ length: 60 }, () => transport.request(Opcode.listTopics, {}));
    const outcomes = await Promise.allSettled(requests);
    expect(outstandingMax).toBe(3);
    const refused = outcomes.filter((outcome) => outcome.status === 'rejected');
    expect(refused).toHaveLength(60 - 3 - 50);
    expect((refused[0] as PromiseRejectedResult).reason).toMatchObject({
      code: 'BACKPRESSURE',
      retriable: true,
    });
  });

  test('a request not answered in time fails with TIMEOUT; a late answer is ignored', async () => {
    const broker = await fakeBroker((_frame, reply) => setTimeout(() => reply({ late: true }), 100));
    const transport = await transportTo(broker.url, { requestTimeoutMs: 30 });
    const error = await rejection(transport.request(Opcode.listTopics, {}));
    expect([error.code, error.retriable]).toEqual(['TIMEOUT', true]);
    expect((await transport.request(Opcode.listTopics, {}, undefined, { timeoutMs: 1000 })).header).toEqual({
      late: true,
    });
    await sleep(150);
  });

  test('connection loss rejects pending requests with CONNECTION_CLOSED (retriable); the next request reconnects', async () => {
    let answer = false;
    const broker = await fakeBroker((_frame, reply) => {
      if (answer) reply({ ok: true });
    });
    const transport = await transportTo(broker.url);
    const losses: SpillwayError[] = [];
    transport.onDisconnect((error) => losses.push(error));
    const pending = [transport.request(Opcode.fetch, {}), transport.request(Opcode.produce, {})];
    await waitFor(() => broker.sockets.size === 1);
    await sleep(20);
    for (const socket of broker.sockets) socket.terminate();
    for (const request of pending) {
      const error = await rejection(request);
      expect([error.code, error.retriable]).toEqual(['CONNECTION_CLOSED', true]);
    }
    expect(losses).toHaveLength(1);
    expect(transport.connected).toBe(false);
    answer = true;
    expect((await transport.request(Opcode.listTopics, {})).header).toEqual({ ok: true });
    expect(broker.hellos).toHaveLength(2);
    expect(transport.connected).toBe(true);
  });

  test('reconnect attempts back off while the broker is down', async () => {
    const broker = await fakeBroker((_frame, reply) => reply({ ok: true }));
    const transport = await transportTo(broker.url, { reconnectBackoffMs: 100, reconnectBackoffMaxMs: 400 });
    const port = broker.port;
    await broker.close();
    await waitFor(() => !transport.connected);
    const attemptsAt: number[] = [];
    const started = Date.now();
    for (let attempt = 0; attempt < 4; attempt++) {
      const error = await rejection(transport.request(Opcode.listTopics, {}));
      expect(error.code).toBe('CONNECTION_CLOSED');
      attemptsAt.push(Date.now() - started);
    }
    // The first attempt goes at once; then ~100, ~200, ~400 ms apart (±20 %).
    expect(attemptsAt[0]).toBeLessThan(80);
    expect(attemptsAt[3]! - attemptsAt[0]!).toBeGreaterThanOrEqual(0.8 * 700 - 20);
    const back = await fakeBroker((_frame, reply) => reply({ back: true }), {}, port);
    await sleep(500);
    expect((await transport.request(Opcode.listTopics, {})).header).toEqual({ back: true });
    expect(back.hellos).toHaveLength(1);
  });

  test('close rejects pending and later requests with CONNECTION_CLOSED, not retriable', async () => {
    const broker = await fakeBroker(() => {});
    const transport = await transportTo(broker.url);
    const pending = rejection(transport.request(Opcode.fetch, {}));
    await sleep(20);
    await transport.close();
    const error = await pending;
    expect([error.code, error.retriable]).toEqual(['CONNECTION_CLOSED', false]);
    const later = await rejection(transport.request(Opcode.listTopics, {}));
    expect([later.code, later.retriable]).toEqual(['CONNECTION_CLOSED', false]);
    expect(transport.closed).toBe(true);
  });

  test('bodies below and above fragmentBodyBytesMin (joined, or sent as a fragment of their own) arrive whole', async () => {
    const sizes = [1, fragmentBodyBytesMin - 1, fragmentBodyBytesMin, 16 * 1024 + 3, 300 * 1024];
    const bodyOf = (size: number) =>
      Buffer.from(Array.from({ length: size }, (_, i) => (i * 7 + size) & 0xff));
    // A `ws` server joins the fragments of a message.
    const digest = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
    const fake = await fakeBroker((frame, reply) =>
      reply({ length: frame.body.length, sha256: digest(frame.body) }),
    );
    const toFake = await transportTo(fake.url);
    for (const size of sizes) {
      const body = bodyOf(size);
      const answer = await toFake.request(Opcode.listTopics, { size }, body);
      expect(answer.header).toEqual({ length: size, sha256: digest(body) });
      expect(body.equals(bodyOf(size))).toBe(true); // the caller's bytes are not modified
    }
    // So does the broker's uWS server: produced batches of each size are stored byte for byte.
    const broker = await openBroker();
    await broker.topics.create('fragments', { partitions: 1 });
    const server = await serve(broker);
    const toBroker = await transportTo(server.url);
    for (const [index, size] of sizes.entries()) {
      const builder = new BatchBuilder();
      builder.append({ value: bodyOf(size) });
      const batch = builder.finishCopy();
      const answer = await toBroker.request(Opcode.produce, { topic: 'fragments', partition: 0 }, batch);
      expect(answer.header).toMatchObject({ baseOffset: index });
      const stored = broker.messages.fetch('fragments', 0, index, { maxBytes: 1, maxWaitMs: 0 });
      expect(
        Buffer.from((await stored).records)
          .subarray(12)
          .equals(Buffer.from(batch).subarray(12)),
      ).toBe(true);
    }
  });

  test('a broker that breaks the protocol loses the connection, not the process', async () => {
    const broker = await fakeBroker((_frame, _reply, socket) => socket.send(Buffer.from([1, 2, 3])));
    const transport = await transportTo(broker.url);
    const error = await rejection(transport.request(Opcode.listTopics, {}));
    expect([error.code, error.retriable]).toEqual(['CONNECTION_CLOSED', true]);
  });
});

describe('in-process transport', () => {
  test('calls dispatch directly: answers and error codes are those of the broker', async () => {
    const broker = await openBroker();
    const transport = await InProcessTransport.connect(broker, { clientId: 'in-process-test' });
    onCleanup(() => transport.close());
    expect(transport.hello.protocolVersion).toBe(protocolVersion);
    const created = await transport.request(Opcode.createTopic, { name: 'x', config: { partitions: 2 } });
    expect(created.header).toMatchObject({ name: 'x', partitionCount: 2 });
    const error = await rejection(transport.request(Opcode.describeTopic, { name: 'nope' }));
    expect([error.code, error.retriable]).toEqual(['UNKNOWN_TOPIC', false]);
    const invalid = await rejection(transport.request(Opcode.describeTopic, { name: 42 }));
    expect(invalid.code).toBe('INVALID_ARGUMENT');
  });

  test('close ends a pending long-poll at once and refuses later requests', async () => {
    const broker = await openBroker();
    await broker.topics.create('t');
    const transport = await InProcessTransport.connect(broker);
    const poll = transport.request(Opcode.fetch, { topic: 't', partition: 0, offset: 0, maxWaitMs: 30_000 });
    await sleep(20);
    const started = Date.now();
    await transport.close();
    const error = await rejection(poll);
    expect([error.code, error.retriable]).toEqual(['CONNECTION_CLOSED', false]);
    expect(Date.now() - started).toBeLessThan(500);
    expect((await rejection(transport.request(Opcode.listTopics, {}))).code).toBe('CONNECTION_CLOSED');
  });

  test('bounds requests in flight like the network transport', async () => {
    const broker = await openBroker();
    await broker.topics.create('t');
    let inFlight = 0;
    let inFlightMax = 0;
    const api = delegate(broker, {
      listOffset: (topic, partition, spec) => {
        inFlight++;
        inFlightMax = Math.max(inFlightMax, inFlight);
        inFlight--;
        return broker.messages.listOffset(topic, partition, spec);
      },
      fetch: async (topic, partition, offset, options) => {
        inFlight++;
        inFlightMax = Math.max(inFlightMax, inFlight);
        await sleep(5);
        inFlight--;
        return broker.messages.fetch(topic, partition, offset, { ...options, maxWaitMs: 0 });
      },
    });
    const transport = await InProcessTransport.connect(api, { inFlightRequestsMax: 4 });
    onCleanup(() => transport.close());
    await Promise.all(
      Array.from({ length: 40 }, () =>
        transport.request(Opcode.fetch, { topic: 't', partition: 0, offset: 0 }),
      ),
    );
    expect(inFlightMax).toBe(4);
  });
});
