/**
 * What every peer that runs its broker as a child process holds the same way: the server process,
 * the client connections it has open, what the last `produce` acknowledged, and the stop by PID.
 */
import { findExecutable } from './install.js';
import {
  type ConsumeOptions,
  type ConsumeResult,
  type LatencyOptions,
  type LatencyResult,
  type Peer,
  PeerUnavailableError,
  type ProduceOptions,
  type ProduceResult,
} from './peer.js';
import type { ServerProcess } from './server-process.js';
import { OpenClients, type ProduceDriver, produceWorkload } from './workload.js';

export abstract class ServerPeer<C extends { close(): Promise<unknown> }> implements Peer {
  abstract readonly name: string;
  abstract readonly durability: string;
  version: string | undefined;
  protected server: ServerProcess | undefined;
  /** Messages the last `produce` had acknowledged (what `consume` reads back). */
  protected producedCount = 0;
  /** Payload size of the last `produce`. */
  protected messageBytes = 0;
  protected readonly clients = new OpenClients<C>();

  abstract start(scratchDir: string): Promise<void>;
  abstract produce(options: ProduceOptions): Promise<ProduceResult>;
  abstract consume(options: ConsumeOptions): Promise<ConsumeResult>;
  abstract endToEndLatency(options: LatencyOptions): Promise<LatencyResult>;

  /** Closes the clients still open, then stops the server by PID. */
  async stop(): Promise<void> {
    await this.closeClients();
    await this.server?.stop();
    this.server = undefined;
  }

  /** The server's PID while it runs (tests check it is gone after stop). */
  get pid(): number | undefined {
    return this.server?.pid;
  }

  /**
   * The common `produce` (workload.ts) on this peer's clients: records the payload size, and what was
   * acknowledged for the next `consume` (0 when it fails).
   */
  protected async produceWorkload<P>(
    options: ProduceOptions,
    driver: Omit<ProduceDriver<C, P>, 'release'>,
  ): Promise<ProduceResult> {
    this.producedCount = 0;
    this.messageBytes = options.messageBytes;
    const result = await produceWorkload(options, {
      ...driver,
      release: (clients) => this.clients.release(clients),
    });
    this.producedCount = result.acked;
    return result;
  }

  /** Closes every client still open and forgets the administration handles; `stop` calls it first. */
  protected async closeClients(): Promise<void> {
    await this.clients.closeAll();
  }
}

/** The path of an installed server executable; PeerUnavailableError when it is not installed. */
export function requireExecutable(name: string): string {
  const executable = findExecutable(name);
  if (executable === undefined) {
    throw new PeerUnavailableError(`${name} is not installed (node dist/bench/peers/install.js)`);
  }
  return executable;
}
