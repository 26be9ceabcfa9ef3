/**
 * Connections from this broker to other brokers, for broker → broker calls (replication fetches,
 * forwarding): one WebSocket per broker URL, opened on first use with the cluster token, reopened by
 * the transport after a loss (backoff 50 ms .. 1 s). A first connection that failed is forgotten, so
 * the next call opens a new one. After `close()` every call rejects.
 */
import { WebSocketTransport } from '../client/websocket-transport.js';

export class BrokerConnections {
  private readonly connections = new Map<string, Promise<WebSocketTransport>>();
  private closed = false;

  constructor(
    /** The clientId the other brokers see (their logs, metrics). */
    private readonly clientId: string,
    private readonly token: string | undefined,
    /** What is closed, for the error after close(). */
    private readonly what: string,
  ) {}

  /** The connection to the broker at `url` (opened now if there is none). */
  to(url: string): Promise<WebSocketTransport> {
    if (this.closed) return Promise.reject(new Error(`${this.what} is closed`));
    let connection = this.connections.get(url);
    if (connection === undefined) {
      connection = WebSocketTransport.connect(url, {
        clientId: this.clientId,
        ...(this.token !== undefined ? { token: this.token } : {}),
        connectTimeoutMs: 5_000,
        reconnectBackoffMs: 50,
        reconnectBackoffMaxMs: 1_000,
      });
      this.connections.set(url, connection);
      connection.catch(() => {
        if (this.connections.get(url) === connection) this.connections.delete(url);
      });
    }
    return connection;
  }

  /** Closes every connection; later calls reject. */
  async close(): Promise<void> {
    this.closed = true;
    const open = [...this.connections.values()];
    this.connections.clear();
    for (const connection of open)
      await connection.then((transport) => transport.close()).catch(() => undefined);
  }
}
