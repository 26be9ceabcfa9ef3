/**
 * The client's WebSocket (RFC 6455) connection to a broker, on a TCP or TLS socket of its own:
 * the upgrade handshake, binary messages out (whole or as fragments), messages in through a
 * WebSocketFrameReader (websocket-frame-reader.ts), ping answered with pong, the close handshake.
 * It replaces the npm `ws` client in the transport because of the receive path: on a TCP socket the
 * kernel reads straight into the reader's buffers (net's `onread`), so a large answer costs one
 * buffer of its own size and no copy; `ws` allocated a 64 KiB buffer per read and a new buffer per
 * message to join them, which at 16 KiB consume was the client's main garbage (issue 15). A TLS
 * socket delivers its own buffers: they are copied into the reader's.
 *
 * Sending: every frame goes out masked with a zero key (a client must mask; a zero key leaves the
 * payload as it is, so it is written without a copy; this protocol never passes through the HTTP
 * caches masking protects). `send(data, false)` starts or continues a fragmented message, the next
 * `send(data, true)` ends it. A payload of `joinPayloadBytesMax` or less is joined behind its frame
 * header in one small buffer; a larger one is written as it is, after its header (the caller must
 * not modify it until the socket wrote it: the transport's caller waits for the answer). Sends on a
 * connection that is not open are dropped (its requests fail by the close). A close handshake (sent
 * or received) lasts at most wsCloseHandshakeMs, then the socket is destroyed: a broker that answers
 * a close but keeps TCP open cannot hold the connection half-closed. Pings are answered while the
 * socket holds at most wsPongBacklogBytesMax unsent.
 *
 * Life: `open()` resolves once the broker accepted the upgrade (101 with the right
 * Sec-WebSocket-Accept), or rejects (socket error, other status, handshake timeout). `onMessage`
 * gets every message; `onClose(code, reason)` runs once, when the connection is gone for any reason
 * (1006 when the socket ended without a close frame, 1002 with the reason on a protocol violation
 * by the broker). Not thread-safe (one event loop).
 */
import { createHash, randomBytes } from 'node:crypto';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { SpillwayError } from '../errors.js';
import { wsCloseHandshakeMs, wsPongBacklogBytesMax } from '../limits.js';
import { ProtocolError } from '../protocol/frame.js';
import { WebSocketFrameReader, WebSocketOpcode } from './websocket-frame-reader.js';

/** The TCP host and port of a ws:// or wss:// URL (default ports 80 and 443; IPv6 without brackets). */
export function socketAddressOf(url: URL): { host: string; port: number; secure: boolean } {
  const secure = url.protocol === 'wss:';
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const port = url.port === '' ? (secure ? 443 : 80) : Number(url.port);
  return { host, port, secure };
}

export interface WebSocketConnectionOptions {
  /** Bytes one received message may hold. */
  maxPayload: number;
  /** Opening the socket, TLS and the upgrade; past it the attempt fails. */
  handshakeTimeoutMs: number;
  /** wss://: certificate authorities to trust instead of Node's default list. */
  ca?: string | Buffer | Array<string | Buffer> | undefined;
}

/** Payloads up to this are copied behind their frame header into one buffer (one write instead of two). */
export const joinPayloadBytesMax = 1024;

const acceptGuid = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const zeroMask = Buffer.alloc(4);

type ConnectionState = 'connecting' | 'open' | 'closing' | 'closed';

/** The header of a client frame (FIN, opcode, masked length, zero masking key). */
function frameHeader(opcode: number, fin: boolean, length: number): Buffer {
  const extended = length < 126 ? 0 : length < 65_536 ? 2 : 8;
  const header = Buffer.allocUnsafe(2 + extended + 4);
  header[0] = (fin ? 0x80 : 0) | opcode;
  if (extended === 0) header[1] = 0x80 | length;
  else if (extended === 2) {
    header[1] = 0x80 | 126;
    header.writeUInt16BE(length, 2);
  } else {
    header[1] = 0x80 | 127;
    header.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
    header.writeUInt32BE(length >>> 0, 6);
  }
  zeroMask.copy(header, 2 + extended);
  return header;
}

export class WebSocketConnection {
  /** The TCP or TLS socket under the connection (the transport corks it per turn). */
  readonly socket: net.Socket;
  private messageHandler: ((fragments: Uint8Array[], binary: boolean) => void) | null = null;
  /**
   * Messages read before `onMessage` was set: those in the same read as the 101 answer, processed
   * before `open()`'s caller runs (bounded by that one read, wsReceiveBufferBytes). Handed over when
   * `onMessage` is set.
   */
  private early: Array<[Uint8Array[], boolean]> = [];
  private closeHandler: ((code: number, reason: string) => void) | null = null;
  /** The connection ended before `onClose` was set: the handler is called as soon as it is. */
  private closeUnheard = false;
  /** The buffer a large data payload is read into (WebSocketFrameReader's `allocate`); null: a new one. */
  allocate: (bytes: number, fragmentsBefore: readonly Uint8Array[]) => Buffer | null = () => null;
  private state: ConnectionState = 'connecting';
  private readonly reader: WebSocketFrameReader;
  /** Inside a fragmented message being sent. */
  private sendingFragments = false;
  private closeCode = 1006;
  private closeReason = '';
  private readonly closedPromise: Promise<void>;
  private resolveClosed: () => void = () => undefined;
  private handshakeDone: ((error: Error | null) => void) | null = null;
  /** Destroys the socket if the close handshake outlasts wsCloseHandshakeMs. */
  private closeTimer: NodeJS.Timeout | null = null;

  private constructor(url: URL, options: WebSocketConnectionOptions) {
    const key = randomBytes(16).toString('base64');
    this.closedPromise = new Promise<void>((resolve) => {
      this.resolveClosed = resolve;
    });
    this.reader = new WebSocketFrameReader(
      {
        handshake: (head) => this.onHandshake(head, key),
        // Nothing after a close frame reaches the user, even in the same read.
        message: (fragments, binary) => {
          if (this.state !== 'open') return;
          if (this.messageHandler !== null) this.messageHandler(fragments, binary);
          else this.early.push([fragments, binary]);
        },
        control: (opcode, payload) => this.onControl(opcode, payload),
        allocate: (bytes, fragmentsBefore) => this.allocate(bytes, fragmentsBefore),
      },
      options.maxPayload,
    );
    const { host, port, secure } = socketAddressOf(url);
    const request =
      `GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\n` +
      `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`;
    if (secure) {
      this.socket = tls.connect({
        host,
        port,
        ...(net.isIP(host) === 0 ? { servername: host } : {}),
        ...(options.ca !== undefined ? { ca: options.ca } : {}),
      });
      this.socket.once('secureConnect', () => this.socket.write(request));
      this.socket.on('data', (chunk: Buffer) => this.received(() => this.reader.push(chunk)));
    } else {
      this.socket = net.connect({
        host,
        port,
        onread: {
          buffer: () => this.reader.readBuffer(),
          callback: (bytes: number) => {
            this.received(() => this.reader.advance(bytes));
            return this.state !== 'closed';
          },
        },
      });
      this.socket.once('connect', () => this.socket.write(request));
    }
    this.socket.setNoDelay(true);
    this.socket.on('error', (error) => {
      this.handshakeDone?.(error);
      this.closeReason ||= error.message;
    });
    this.socket.on('close', () => this.finish());
  }

  /** Opens a connection to `url` (ws:// or wss://); see the header. */
  static open(url: URL, options: WebSocketConnectionOptions): Promise<WebSocketConnection> {
    const connection = new WebSocketConnection(url, options);
    return new Promise<WebSocketConnection>((resolve, reject) => {
      const timer = setTimeout(() => {
        connection.handshakeDone?.(new Error('opening the WebSocket connection timed out'));
      }, options.handshakeTimeoutMs);
      connection.handshakeDone = (error) => {
        connection.handshakeDone = null;
        clearTimeout(timer);
        if (error === null) {
          resolve(connection);
          return;
        }
        connection.terminate();
        reject(error);
      };
    });
  }

  /** Gets every message; messages read before it was set are handed to it when it is. */
  set onMessage(handler: (fragments: Uint8Array[], binary: boolean) => void) {
    this.messageHandler = handler;
    const early = this.early;
    this.early = [];
    for (const [fragments, binary] of early) handler(fragments, binary);
  }

  /** Runs once when the connection is gone; set after that, it runs at once (in a microtask). */
  set onClose(handler: (code: number, reason: string) => void) {
    this.closeHandler = handler;
    if (this.closeUnheard) {
      this.closeUnheard = false;
      queueMicrotask(() => handler(this.closeCode, this.closeReason));
    }
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  /** Resolves once the connection is gone (after onClose). */
  get closed(): Promise<void> {
    return this.closedPromise;
  }

  /** Sends `data` as a binary message, or as a fragment of one when `fin` is false (see the header). */
  send(data: Uint8Array, fin = true): void {
    if (this.state !== 'open') return;
    const opcode = this.sendingFragments ? WebSocketOpcode.continuation : WebSocketOpcode.binary;
    this.sendingFragments = !fin;
    this.writeFrame(opcode, fin, data);
  }

  /** Starts the close handshake; the socket ends when the broker answers it (or at once if not open). */
  close(code: number, reason: string): void {
    if (this.state === 'connecting' || this.state === 'closed') {
      this.terminate();
      return;
    }
    if (this.state === 'closing') return;
    this.state = 'closing';
    this.closeCode = code;
    this.closeReason = reason;
    this.writeFrame(WebSocketOpcode.close, true, closePayload(code, reason));
    this.armCloseTimer();
  }

  /** A broker that answers the close but keeps TCP open (or never answers) is cut off. */
  private armCloseTimer(): void {
    if (this.closeTimer !== null) return;
    this.closeTimer = setTimeout(() => this.terminate(), wsCloseHandshakeMs);
    this.closeTimer.unref();
  }

  /** Destroys the socket now. */
  terminate(): void {
    this.socket.destroy();
    this.finish();
  }

  private writeFrame(opcode: number, fin: boolean, data: Uint8Array): void {
    const header = frameHeader(opcode, fin, data.length);
    if (data.length <= joinPayloadBytesMax) {
      const joined = Buffer.allocUnsafe(header.length + data.length);
      header.copy(joined, 0);
      joined.set(data, header.length);
      this.socket.write(joined);
      return;
    }
    this.socket.write(header);
    this.socket.write(data);
  }

  /** Runs the reader on new bytes; a protocol violation closes the connection with 1002. */
  private received(read: () => void): void {
    if (this.state === 'closed') return;
    try {
      read();
    } catch (error) {
      const failure =
        error instanceof SpillwayError ? error : new ProtocolError(`bad WebSocket input: ${String(error)}`);
      this.closeCode = 1002;
      this.closeReason = failure.message;
      if (this.handshakeDone !== null) this.handshakeDone(failure);
      else this.terminate();
    }
  }

  private onHandshake(head: string, key: string): void {
    const lines = head.split('\r\n');
    const status = /^HTTP\/1\.1 (\d{3})(?: |$)/.exec(lines[0] ?? '');
    if (status === null || status[1] !== '101') {
      throw new SpillwayError(
        'CONNECTION_CLOSED',
        `Unexpected server response: ${status === null ? JSON.stringify(lines[0]) : status[1]}`,
        { retriable: true },
      );
    }
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const expected = createHash('sha1')
      .update(key + acceptGuid)
      .digest('base64');
    if (
      headers.get('upgrade')?.toLowerCase() !== 'websocket' ||
      headers.get('sec-websocket-accept') !== expected
    ) {
      throw new ProtocolError(
        'the broker answered the WebSocket upgrade without a valid Sec-WebSocket-Accept',
      );
    }
    if (headers.has('sec-websocket-extensions')) {
      throw new ProtocolError(
        'the broker answered the WebSocket upgrade with an extension none was asked for',
      );
    }
    this.state = 'open';
    this.handshakeDone?.(null);
  }

  private onControl(opcode: number, payload: Uint8Array): void {
    if (opcode === WebSocketOpcode.ping) {
      // Bounded: a broker that pings and never reads gets no more pongs once the socket holds
      // wsPongBacklogBytesMax unsent (anything it does read later counts as life too).
      if (this.state === 'open' && this.socket.writableLength <= wsPongBacklogBytesMax) {
        this.writeFrame(WebSocketOpcode.pong, true, payload);
      }
      return;
    }
    if (opcode !== WebSocketOpcode.close) return; // pong
    if (payload.length === 1) throw new ProtocolError('a WebSocket close frame of 1 byte');
    const code = payload.length >= 2 ? (payload[0]! << 8) | payload[1]! : 1005;
    // An empty close frame is legal (no code: 1005); it has no reason either.
    const reason =
      payload.length > 2
        ? Buffer.from(payload.buffer, payload.byteOffset + 2, payload.length - 2).toString()
        : '';
    if (this.state === 'open') {
      this.writeFrame(WebSocketOpcode.close, true, payload.length >= 2 ? closePayload(code, '') : payload);
    }
    this.state = 'closing';
    this.closeCode = code;
    this.closeReason = reason;
    this.socket.end();
    this.armCloseTimer();
  }

  private finish(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    if (this.closeTimer !== null) clearTimeout(this.closeTimer);
    this.closeTimer = null;
    this.handshakeDone?.(
      new Error(this.closeReason || 'the connection closed during the WebSocket handshake'),
    );
    if (this.closeHandler !== null) this.closeHandler(this.closeCode, this.closeReason);
    else this.closeUnheard = true;
    this.resolveClosed();
  }
}

/** The payload of a close frame: the code, then the reason (UTF-8, cut to fit 125 bytes). */
function closePayload(code: number, reason: string): Buffer {
  const text = Buffer.from(reason).subarray(0, 123);
  const payload = Buffer.allocUnsafe(2 + text.length);
  payload.writeUInt16BE(code, 0);
  text.copy(payload, 2);
  return payload;
}
