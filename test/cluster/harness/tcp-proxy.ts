/**
 * A TCP proxy on loopback in front of one server (a broker, or etcd for one broker), for network
 * partition tests. `blackhole()` cuts it the way a partition does: connections stay open but every
 * byte either way is dropped (no RST, no FIN: the peers see silence until their own timeouts), and new
 * connections are accepted and then ignored. `heal()` destroys the connections that lived through
 * the blackhole (their streams lost bytes: they cannot continue) and forwards new ones again.
 *
 * Bounds: at most `connectionsMax` connections (more are refused); a side that cannot take more data
 * pauses the other (no buffer grows), and a client's bytes wait for the upstream connect paused.
 */
import * as net from 'node:net';

const connectionsMax = 256;

export class TcpProxy {
  private mode: 'pass' | 'blackhole' = 'pass';
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
    private readonly targetPort: number,
  ) {}

  static async start(targetPort: number): Promise<TcpProxy> {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const proxy = new TcpProxy(server, (server.address() as net.AddressInfo).port, targetPort);
    server.on('connection', (client) => proxy.accept(client));
    return proxy;
  }

  get blackholed(): boolean {
    return this.mode === 'blackhole';
  }

  /** Drops every byte either way, keeps connections open, ignores new ones. */
  blackhole(): void {
    this.mode = 'blackhole';
  }

  /** Forwards again; connections that lived through the blackhole are destroyed. */
  heal(): void {
    if (this.mode === 'pass') return;
    this.mode = 'pass';
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private track(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  }

  private accept(client: net.Socket): void {
    if (this.sockets.size >= connectionsMax) {
      client.destroy();
      return;
    }
    this.track(client);
    if (this.mode === 'blackhole') {
      client.on('data', () => {}); // swallowed: a partitioned network answers nothing
      return;
    }
    client.pause();
    const upstream = net.connect(this.targetPort, '127.0.0.1');
    this.track(upstream);
    upstream.once('connect', () => client.resume());
    this.forward(client, upstream);
    this.forward(upstream, client);
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
  }

  private forward(from: net.Socket, to: net.Socket): void {
    from.on('data', (chunk: Buffer) => {
      if (this.mode === 'blackhole' || to.destroyed) return;
      if (!to.write(chunk)) {
        from.pause();
        to.once('drain', () => from.resume());
      }
    });
  }
}
