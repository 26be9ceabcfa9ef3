/** Shared by the server tests: a real broker in a temporary directory, a real server, a ws client. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import type { BrokerOptions } from '../../src/broker/broker-options.js';
import type { BrokerApi } from '../../src/protocol/broker-api.js';
import { decodeFrame, encodeFrame, type Frame, FrameFlags } from '../../src/protocol/frame.js';
import type { ErrorHeader } from '../../src/protocol/messages.js';
import { type BrokerServer, type ServerOptions, startServer } from '../../src/server/server.js';
import { Broker } from '../../src/spillway-broker.js';

export interface TestServer {
  broker: Broker;
  server: BrokerServer;
  /** http://host:port */
  http: string;
  stop(): Promise<void>;
}

/**
 * A broker (small segments, durability none: fast) and a server on an ephemeral port. `wrap` may put
 * a different BrokerApi in front of the broker (to slow a call down, say).
 */
export async function startTestServer(
  options: ServerOptions = {},
  brokerOptions: BrokerOptions = {},
  wrap: (broker: Broker) => BrokerApi = (broker) => broker,
): Promise<TestServer> {
  const dataDir = mkdtempSync(join(tmpdir(), 'spillway-server-'));
  const broker = await Broker.open({
    dataDir,
    durability: 'none',
    segmentBytes: 1024 * 1024,
    ...brokerOptions,
  });
  const server = await startServer(wrap(broker), { port: 0, onInternalError: () => {}, ...options });
  let stopped = false;
  return {
    broker,
    server,
    http: `http://${server.host}:${server.port}`,
    async stop() {
      if (stopped) return;
      stopped = true;
      await server.close();
      await broker.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A BrokerApi that forwards to a broker except for some methods: shared with the client tests. */
export { delegate } from '../client/helpers.js';

export class TestClient {
  readonly socket: WebSocket;
  readonly unaddressed: Frame[] = [];
  private nextCorrelationId = 1;
  private readonly pending = new Map<number, (frame: Frame) => void>();
  private readonly waitersForUnaddressed: Array<(frame: Frame) => void> = [];
  closeEvent: { code: number; reason: string } | undefined;
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(socket: WebSocket) {
    this.socket = socket;
    socket.binaryType = 'nodebuffer';
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) throw new Error('the server sent a text frame');
      const frame = decodeFrame(new Uint8Array(data));
      const resolve = this.pending.get(frame.correlationId);
      if (frame.correlationId !== 0 && resolve !== undefined) {
        this.pending.delete(frame.correlationId);
        resolve(frame);
      } else {
        const waiter = this.waitersForUnaddressed.shift();
        if (waiter) waiter(frame);
        else this.unaddressed.push(frame);
      }
    });
    this.closed = new Promise((resolve) => {
      socket.on('close', (code, reason) => {
        this.closeEvent = { code, reason: reason.toString() };
        resolve(this.closeEvent);
      });
    });
  }

  static connect(url: string): Promise<TestClient> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url, { perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 });
      socket.once('open', () => resolve(new TestClient(socket)));
      socket.once('error', reject);
      socket.once('unexpected-response', (_request, response) =>
        reject(new Error(`upgrade refused with HTTP ${response.statusCode}`)),
      );
    });
  }

  get open(): boolean {
    return this.socket.readyState === WebSocket.OPEN;
  }

  /** Sends a request and resolves with its answer (any order: pipelining). */
  request(opcode: number, header: unknown, body?: Uint8Array): Promise<Frame> {
    const correlationId = this.nextCorrelationId++;
    const answer = new Promise<Frame>((resolve) => this.pending.set(correlationId, resolve));
    this.socket.send(encodeFrame({ opcode, flags: 0, correlationId, header, body }));
    return answer;
  }

  sendRaw(data: Uint8Array | string): void {
    this.socket.send(data, { binary: typeof data !== 'string' });
  }

  /** The next frame with correlation id 0 (or one the client did not ask for). */
  nextUnaddressed(): Promise<Frame> {
    const frame = this.unaddressed.shift();
    if (frame) return Promise.resolve(frame);
    return new Promise((resolve) => this.waitersForUnaddressed.push(resolve));
  }

  close(): Promise<unknown> {
    if (this.socket.readyState === WebSocket.CLOSED) return Promise.resolve();
    this.socket.close(1000);
    return this.closed;
  }
}

export function isError(frame: Frame): boolean {
  return (frame.flags & FrameFlags.error) !== 0;
}

export function errorCode(frame: Frame): string | undefined {
  return isError(frame) ? (frame.header as ErrorHeader).code : undefined;
}

/** The header of a successful answer; throws with the error otherwise. */
export function ok<T = Record<string, unknown>>(frame: Frame): T {
  if (isError(frame)) {
    const header = frame.header as ErrorHeader;
    throw new Error(`error answer ${header.code}: ${header.message}`);
  }
  return frame.header as T;
}

/** Reads a Prometheus sample value from /metrics text. */
export function metricValue(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}
