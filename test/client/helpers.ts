/** Shared by the client tests: a real broker in a temporary directory, a server, BrokerApi wrappers. */
import { mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import type { BrokerOptions } from '../../src/broker/broker-options.js';
import { Spillway, type SpillwayOptions } from '../../src/client/index.js';
import type { BrokerApi, MessageService } from '../../src/protocol/broker-api.js';
import { type BrokerServer, type ServerOptions, startServer } from '../../src/server/server.js';
import { Broker } from '../../src/spillway-broker.js';

const cleanups: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Runs `cleanup` after the current test (last registered, first run). */
export function onCleanup(cleanup: () => Promise<void> | void): void {
  cleanups.push(cleanup);
}

/** A broker in a fresh temporary directory (durability none, small segments), closed after the test. */
export async function openBroker(options: BrokerOptions = {}): Promise<Broker> {
  const dataDir = mkdtempSync(join(tmpdir(), 'spillway-client-'));
  const broker = await Broker.open({
    dataDir,
    durability: 'none',
    segmentBytes: 16 * 1024 * 1024,
    ...options,
  });
  cleanups.push(async () => {
    await broker.close().catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
  });
  return broker;
}

/** A server in front of `api` on an ephemeral port (or `port`), closed after the test. */
export async function serve(api: BrokerApi, options: ServerOptions = {}): Promise<BrokerServer> {
  const server = await startServer(api, { port: 0, onInternalError: () => {}, ...options });
  let closed = false;
  const close = server.close.bind(server);
  cleanups.push(async () => {
    if (!closed) await close().catch(() => undefined);
  });
  return Object.assign(server, {
    close: async () => {
      closed = true;
      await close();
    },
  });
}

/** A client, closed after the test. */
export async function connect(target: string | BrokerApi, options: SpillwayOptions = {}): Promise<Spillway> {
  const client = await Spillway.connect(target, options);
  cleanups.push(() => client.close().catch(() => undefined));
  return client;
}

/** A BrokerApi that forwards to `broker` except for the message methods in `overrides` and the services in `services`. */
export function delegate(
  broker: BrokerApi,
  overrides: Partial<MessageService> = {},
  services: Partial<Pick<BrokerApi, 'sessions'>> = {},
): BrokerApi {
  const messages = broker.messages;
  return {
    topics: broker.topics,
    sessions: services.sessions ?? broker.sessions,
    integrity: broker.integrity,
    groups: broker.groups,
    queues: broker.queues,
    transactions: broker.transactions,
    producers: broker.producers,
    messages: {
      produce: (topic, partition, batch) => messages.produce(topic, partition, batch),
      fetch: (topic, partition, offset, options) => messages.fetch(topic, partition, offset, options),
      listOffset: (topic, partition, spec) => messages.listOffset(topic, partition, spec),
      ...overrides,
    },
  };
}

/** A promise with its resolve function outside. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((done) => {
    resolve = done;
  });
  return { promise, resolve };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits until `condition` holds, polling every few ms; fails after `timeoutMs`. */
export async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('waitFor: condition not met in time');
    await sleep(2);
  }
}

/**
 * A TCP relay on a fixed local port to whatever backend port is set (null: refuse, by closing
 * accepted connections at once). Stands for "the broker restarted on the same address": the uWS
 * server cannot listen again on a port it just closed while the port is in TIME_WAIT.
 */
export async function tcpRelay(backendPort: number | null): Promise<{
  port: number;
  url: string;
  setBackend(port: number | null): void;
  dropConnections(): void;
}> {
  const sockets = new Set<Socket>();
  let backend = backendPort;
  const server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    if (backend === null) {
      client.destroy();
      return;
    }
    const upstream = createConnection({ host: '127.0.0.1', port: backend });
    sockets.add(upstream);
    upstream.on('close', () => {
      sockets.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const dropConnections = (): void => {
    for (const socket of sockets) socket.destroy();
  };
  cleanups.push(async () => {
    dropConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return {
    port,
    url: `ws://127.0.0.1:${port}`,
    setBackend(next) {
      backend = next;
    },
    dropConnections,
  };
}
