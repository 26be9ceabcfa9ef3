/**
 * The composition root of an embedded broker: the engine (src/broker/broker-engine.ts) plus its
 * network front end (src/server/server.ts). This is the `Broker` that `spillway` exports and that
 * `spillway broker` runs; the engine itself knows nothing of the network.
 *
 * The server module is imported on first `listen()`, so an embedded broker that never listens does
 * not load uWebSockets.js.
 */
import { BrokerEngine } from './broker/broker-engine.js';
import type { BrokerOptions } from './broker/broker-options.js';
import type { BrokerServer, ServerOptions } from './server/server.js';

/** Options of `Broker.listen`: the server's (host, port, limits). */
export type ListenOptions = ServerOptions;

export class Broker extends BrokerEngine {
  static override async open(options: BrokerOptions = {}): Promise<Broker> {
    return BrokerEngine.recovered(new Broker(await BrokerEngine.openParts(options)));
  }

  /** Starts the network front end (WebSocket protocol, HTTP API, metrics) on this broker. */
  async listen(options: ListenOptions = {}): Promise<BrokerServer> {
    this.assertOpen();
    const { startServer } = await import('./server/server.js');
    // The server's timers (handshake, body timeouts) run on the broker's clock unless told otherwise.
    return startServer(this, { clock: this.clock, ...options });
  }
}
