import { createHash } from 'node:crypto';
import * as net from 'node:net';
import { describe, expect, test } from 'vitest';
import { WebSocketConnection } from '../../src/client/websocket-connection.js';
import { WebSocketTransport } from '../../src/client/websocket-transport.js';
import { SpillwayError } from '../../src/errors.js';
import { wsPongBacklogBytesMax } from '../../src/limits.js';
import { decodeFrame, encodeFrameParts, FrameFlags } from '../../src/protocol/frame.js';
import { Opcode, protocolVersion } from '../../src/protocol/opcodes.js';
import { onCleanup } from './helpers.js';
import { patterned, serverFrame } from './websocket-frames.js';

/** Client frames received by the raw server: opcode, fin, the masking key and the (unmasked) payload. */
interface ClientFrame {
  opcode: number;
  fin: boolean;
  mask: Buffer;
  payload: Buffer;
}

function parseClientFrames(bytes: Buffer): { frames: ClientFrame[]; rest: Buffer } {
  const frames: ClientFrame[] = [];
  let offset = 0;
  for (;;) {
    if (bytes.length - offset < 2) break;
    let length = bytes[offset + 1]! & 0x7f;
    let at = offset + 2;
    if (length === 126) {
      length = bytes.readUInt16BE(at);
      at += 2;
    } else if (length === 127) {
      length = Number(bytes.readBigUInt64BE(at));
      at += 8;
    }
    if (bytes.length < at + 4 + length) break;
    const mask = bytes.subarray(at, at + 4);
    const payload = Buffer.from(bytes.subarray(at + 4, at + 4 + length));
    for (let index = 0; index < payload.length; index++) payload[index]! ^= mask[index % 4]!;
    frames.push({ opcode: bytes[offset]! & 0x0f, fin: (bytes[offset]! & 0x80) !== 0, mask, payload });
    offset = at + 4 + length;
  }
  return { frames, rest: bytes.subarray(offset) };
}

/**
 * A WebSocket server written against the RFC with plain TCP: answers the upgrade with `status`
 * (and a correct Sec-WebSocket-Accept when 101), then hands each client frame to `onFrame`.
 */
async function rawServer(
  onFrame: (frame: ClientFrame, socket: net.Socket) => void,
  status = 101,
  options: { allowHalfOpen?: boolean; afterUpgrade?: Buffer } = {},
) {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: options.allowHalfOpen ?? false }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let pending = Buffer.alloc(0);
    let upgraded = false;
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      if (!upgraded) {
        const end = pending.indexOf('\r\n\r\n');
        if (end < 0) return;
        const key = /sec-websocket-key: (.*)\r\n/i.exec(pending.toString('latin1', 0, end + 2))![1]!;
        pending = pending.subarray(end + 4);
        upgraded = true;
        const accept = createHash('sha1')
          .update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
          .digest('base64');
        const answer =
          status === 101
            ? `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`
            : `HTTP/1.1 ${status} No\r\nContent-Length: 0\r\n\r\n`;
        // Frames the broker sends in the same write as its 101 answer, if any.
        socket.write(Buffer.concat([Buffer.from(answer, 'latin1'), options.afterUpgrade ?? Buffer.alloc(0)]));
      }
      const { frames, rest } = parseClientFrames(pending);
      pending = Buffer.from(rest);
      for (const frame of frames) onFrame(frame, socket);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  onCleanup(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `ws://127.0.0.1:${port}` };
}

/** Writes `bytes` in pieces of `piece` bytes, one per turn of the event loop (many TCP segments). */
async function dribble(socket: net.Socket, bytes: Buffer, piece: number): Promise<void> {
  for (let offset = 0; offset < bytes.length; offset += piece) {
    socket.write(bytes.subarray(offset, offset + piece));
    await new Promise((resolve) => setImmediate(resolve));
  }
}

describe('client WebSocket connection', () => {
  test('sends masked frames with a zero key, receives a message dribbled over many TCP segments whole', async () => {
    const body = patterned(300 * 1024, 5);
    const received: ClientFrame[] = [];
    const server = await rawServer((frame, socket) => {
      received.push(frame);
      if (frame.opcode === 0 && frame.fin) {
        // The end of the client's fragmented message: answer with prefix, a ping, then the body.
        const answer = Buffer.concat([
          serverFrame(2, false, Buffer.from('prefix')),
          serverFrame(9, true, Buffer.from('ping')),
          serverFrame(0, true, body),
        ]);
        void dribble(socket, answer, 1000);
      }
    });
    const connection = await WebSocketConnection.open(new URL(server.url), {
      maxPayload: 1 << 24,
      handshakeTimeoutMs: 5000,
    });
    onCleanup(() => connection.terminate());
    const message = new Promise<Uint8Array[]>((resolve) => {
      connection.onMessage = (fragments) => resolve(fragments);
    });
    connection.send(patterned(10, 1), false);
    connection.send(patterned(5000, 2), true);
    const fragments = await message;
    expect(fragments.map((fragment) => fragment.length)).toEqual([6, body.length]);
    expect(Buffer.from(fragments[1]!).equals(body)).toBe(true);
    // The client's frames: a fragmented binary message, zero masking keys, payloads as given, and
    // the pong answering the ping.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(received.map((frame) => [frame.opcode, frame.fin, frame.mask.toString('hex')])).toEqual([
      [2, false, '00000000'],
      [0, true, '00000000'],
      [10, true, '00000000'],
    ]);
    expect(received[0]!.payload.equals(patterned(10, 1))).toBe(true);
    expect(received[1]!.payload.equals(patterned(5000, 2))).toBe(true);
    expect(received[2]!.payload.toString()).toBe('ping');
  });

  test('an upgrade refused by status is CONNECTION_CLOSED (retriable)', async () => {
    const server = await rawServer(() => undefined, 503);
    const error = await WebSocketTransport.connect(server.url, { connectTimeoutMs: 5000 }).then(
      () => null,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(SpillwayError);
    expect([(error as SpillwayError).code, (error as SpillwayError).retriable]).toEqual([
      'CONNECTION_CLOSED',
      true,
    ]);
    expect((error as SpillwayError).message).toContain('503');
  });

  test('a corrupt frame from the broker fails the requests on the connection with a typed error', async () => {
    let corrupt = false;
    const server = await rawServer((frame, socket) => {
      const request = decodeFrame(frame.payload);
      if (request.opcode === Opcode.hello) {
        const [prefix, body] = encodeFrameParts({
          opcode: Opcode.hello,
          flags: FrameFlags.response,
          correlationId: request.correlationId,
          header: { protocolVersion, brokerVersion: 'raw', frameBytesMax: 1 << 24, inFlightRequestsMax: 8 },
          body: new Uint8Array(0),
        });
        socket.write(serverFrame(2, true, Buffer.concat([prefix, body])));
        return;
      }
      corrupt = true;
      // A frame with a reserved bit set, split over segments.
      void dribble(socket, serverFrame(2, true, patterned(100, 1), 0x20), 7);
    });
    const transport = await WebSocketTransport.connect(server.url);
    onCleanup(() => transport.close());
    const error = await transport.request(Opcode.listTopics, {}).then(
      () => null,
      (caught: unknown) => caught,
    );
    expect(corrupt).toBe(true);
    expect(error).toBeInstanceOf(SpillwayError);
    expect([(error as SpillwayError).code, (error as SpillwayError).retriable]).toEqual([
      'CONNECTION_CLOSED',
      true,
    ]);
    expect((error as SpillwayError).message).toContain('code 1002, a WebSocket frame has reserved bits set');
  });

  test('a close frame with TCP left open ends the connection within the close timeout; nothing after it is delivered', async () => {
    const server = await rawServer(
      (frame, socket) => {
        if (frame.opcode !== 2) return;
        // A close frame (1001, 'bye') and a data frame in the same write; TCP stays open.
        socket.write(
          Buffer.concat([
            serverFrame(8, true, Buffer.concat([Buffer.from([0x03, 0xe9]), Buffer.from('bye')])),
            serverFrame(2, true, Buffer.from('late')),
          ]),
        );
      },
      101,
      { allowHalfOpen: true },
    );
    const connection = await WebSocketConnection.open(new URL(server.url), {
      maxPayload: 1 << 24,
      handshakeTimeoutMs: 5000,
    });
    onCleanup(() => connection.terminate());
    const messages: Uint8Array[][] = [];
    connection.onMessage = (fragments) => messages.push(fragments);
    const closed = new Promise<[number, string]>((resolve) => {
      connection.onClose = (code, reason) => resolve([code, reason]);
    });
    connection.send(Buffer.from('hello'));
    expect(await closed).toEqual([1001, 'bye']);
    expect(connection.isOpen).toBe(false);
    expect(messages).toEqual([]);
  });

  test('an empty close frame (no code) is 1005 and is answered with an empty close', async () => {
    const received: ClientFrame[] = [];
    const server = await rawServer((frame, socket) => {
      received.push(frame);
      if (frame.opcode === 2) socket.write(serverFrame(8, true, Buffer.alloc(0)));
    });
    const connection = await WebSocketConnection.open(new URL(server.url), {
      maxPayload: 1 << 24,
      handshakeTimeoutMs: 5000,
    });
    onCleanup(() => connection.terminate());
    const closed = new Promise<[number, string]>((resolve) => {
      connection.onClose = (code, reason) => resolve([code, reason]);
    });
    connection.send(Buffer.from('hello'));
    expect(await closed).toEqual([1005, '']);
    expect(received.map((frame) => [frame.opcode, frame.payload.length])).toEqual([
      [2, 5],
      [8, 0],
    ]);
  });

  test('pings are not answered while the socket holds more than wsPongBacklogBytesMax unsent', async () => {
    let serverSocket: net.Socket | null = null;
    const pongs: ClientFrame[] = [];
    const server = await rawServer((frame, socket) => {
      serverSocket = socket;
      if (frame.opcode === 10) pongs.push(frame);
    });
    const connection = await WebSocketConnection.open(new URL(server.url), {
      maxPayload: 1 << 24,
      handshakeTimeoutMs: 5000,
    });
    onCleanup(() => connection.terminate());
    connection.send(Buffer.from('first'));
    while (serverSocket === null) await new Promise((resolve) => setTimeout(resolve, 5));
    const raw = serverSocket as net.Socket;
    raw.pause(); // the broker stops reading
    const chunk = Buffer.alloc(1 << 20);
    for (let sent = 0; connection.socket.writableLength <= 2 * wsPongBacklogBytesMax && sent < 512; sent++) {
      connection.send(chunk);
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(connection.socket.writableLength).toBeGreaterThan(wsPongBacklogBytesMax);
    const pinged = new Promise((resolve) =>
      raw.write(
        Buffer.concat(Array.from({ length: 100 }, () => serverFrame(9, true, Buffer.from('p')))),
        resolve,
      ),
    );
    await pinged;
    await new Promise((resolve) => setTimeout(resolve, 100));
    const backlog = connection.socket.writableLength;
    raw.resume();
    while (connection.socket.writableLength > 0) await new Promise((resolve) => setTimeout(resolve, 10));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(backlog).toBeGreaterThan(wsPongBacklogBytesMax);
    expect(pongs).toEqual([]);
  });

  test('a message and a close in the same read as the 101 answer reach handlers set after open()', async () => {
    const server = await rawServer(() => undefined, 101, {
      afterUpgrade: Buffer.concat([
        serverFrame(2, true, Buffer.from('early')),
        serverFrame(8, true, Buffer.concat([Buffer.from([0x03, 0xe8]), Buffer.from('done')])),
      ]),
    });
    const connection = await WebSocketConnection.open(new URL(server.url), {
      maxPayload: 1 << 24,
      handshakeTimeoutMs: 5000,
    });
    onCleanup(() => connection.terminate());
    const messages: string[] = [];
    connection.onMessage = (fragments) => messages.push(Buffer.concat(fragments).toString());
    const closed = new Promise<[number, string]>((resolve) => {
      connection.onClose = (code, reason) => resolve([code, reason]);
    });
    expect(await closed).toEqual([1000, 'done']);
    expect(messages).toEqual(['early']);
  });

  test('a corrupt frame in the same read as the 101 answer fails the connect with the violation, not a timeout', async () => {
    const server = await rawServer(() => undefined, 101, {
      afterUpgrade: serverFrame(2, true, patterned(10, 1), 0x20),
    });
    const started = performance.now();
    const error = await WebSocketTransport.connect(server.url, { connectTimeoutMs: 20_000 }).then(
      () => null,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(SpillwayError);
    expect((error as SpillwayError).code).toBe('CONNECTION_CLOSED');
    expect((error as SpillwayError).message).toContain('reserved bits');
    // Not the connect timeout (20 s): the close was heard.
    expect(performance.now() - started).toBeLessThan(15_000);
  });
});
