/**
 * The parts of the workload (peer.ts) that every peer drives the same way: the open client
 * connections of a peer, the produce skeleton (payload pool, split over producers, one timed
 * window of publishes per connection, throughput of what was acknowledged) and a fresh data directory.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { split, throughput } from './load.js';
import { payloadPool } from './payload.js';
import type { ProduceOptions, ProduceResult } from './peer.js';

/** The client connections a peer has open, so `stop` can close whatever a failed measurement left. */
export class OpenClients<C extends { close(): Promise<unknown> }> {
  private readonly open = new Set<C>();

  /** Registers a newly connected client and returns it. */
  add(client: C): C {
    this.open.add(client);
    return client;
  }

  /** Closes the clients, one after the other, and forgets them. */
  async release(clients: readonly C[]): Promise<void> {
    for (const client of clients) {
      this.open.delete(client);
      await client.close();
    }
  }

  /** Closes every client still open with `close` (by default `close()`, errors ignored). */
  async closeAll(close: (client: C) => unknown = (client) => client.close().catch(() => {})): Promise<void> {
    for (const client of this.open) await close(client);
    this.open.clear();
  }
}

export interface ProduceDriver<C, P> {
  /** Opens one producer connection (before the clock starts). */
  connect(): Promise<C>;
  /** What publishes on a connection (a channel, a producer), made before the clock starts. */
  producer(connection: C): P | Promise<P>;
  /** Publishes `messages` payloads from `pool`, stopping at `deadline`; resolves with how many were acknowledged. */
  publish(producer: P, messages: number, deadline: number, pool: readonly Buffer[]): Promise<number>;
  /** Closes the connections (after the clock stopped). */
  release(connections: readonly C[]): Promise<void>;
}

/**
 * The common `produce`: `options.messages` split over `options.producers` connections, timed from the
 * first publish to the last acknowledgement; the result counts acknowledged messages only.
 */
export async function produceWorkload<C, P>(
  options: ProduceOptions,
  driver: ProduceDriver<C, P>,
): Promise<ProduceResult> {
  const pool = payloadPool(options.messageBytes);
  const counts = split(options.messages, options.producers);
  const connections = await Promise.all(counts.map(() => driver.connect()));
  const producers = await Promise.all(connections.map((connection) => driver.producer(connection)));
  const start = performance.now();
  const deadline = start + options.durationMsMax;
  const acked = await Promise.all(
    producers.map((producer, index) => driver.publish(producer, counts[index]!, deadline, pool)),
  );
  const elapsedMs = performance.now() - start;
  await driver.release(connections);
  const total = acked.reduce((sum, count) => sum + count, 0);
  return { ...throughput(total, options.messageBytes, elapsedMs), acked: total };
}

/** Removes `directory` with everything in it and makes it again, empty. */
export function freshDirectory(directory: string): void {
  rmSync(directory, { recursive: true, force: true });
  mkdirSync(directory, { recursive: true });
}

/**
 * Runs `run`, calling `onDeadline` if it is still running after `durationMsMax` (it should make `run`
 * finish: stop the subscriptions, close the consumers); resolves with the elapsed milliseconds.
 */
export async function timedUntil(
  durationMsMax: number,
  onDeadline: () => void,
  run: () => Promise<unknown>,
): Promise<number> {
  const start = performance.now();
  const timer = setTimeout(onDeadline, durationMsMax);
  try {
    await run();
  } finally {
    clearTimeout(timer);
  }
  return performance.now() - start;
}
