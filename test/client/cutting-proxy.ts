/**
 * A TCP proxy for fault tests: forwards to a local port and, while cutting, destroys both sides of a
 * connection on a share of the chunks it carries (that chunk is lost): mostly on answers, so that
 * the broker did the work and the client does not know. Closed after the test.
 */
import { type AddressInfo, createConnection, createServer, type Socket } from 'node:net';
import { onCleanup } from './helpers.js';

/** A TCP proxy that cuts the connection (dropping what it carried) on a share of the chunks. */
export async function cuttingProxy(backendPort: number, random: () => number, cutShare: number) {
  const sockets = new Set<Socket>();
  let cuts = 0;
  let cutting = false;
  const server = createServer((client) => {
    const upstream = createConnection({ host: '127.0.0.1', port: backendPort });
    sockets.add(client);
    sockets.add(upstream);
    const cut = (): void => {
      cuts++;
      client.destroy();
      upstream.destroy();
    };
    client.on('close', () => {
      sockets.delete(client);
      upstream.destroy();
    });
    upstream.on('close', () => {
      sockets.delete(upstream);
      client.destroy();
    });
    client.on('error', () => client.destroy());
    upstream.on('error', () => upstream.destroy());
    client.on('data', (chunk: Buffer) => {
      if (cutting && random() < cutShare / 4) cut();
      else upstream.write(chunk);
    });
    // Mostly answers are lost: the broker did the work, the client does not know.
    upstream.on('data', (chunk: Buffer) => {
      if (cutting && random() < cutShare) cut();
      else client.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onCleanup(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return {
    url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get cuts() {
      return cuts;
    },
    start() {
      cutting = true;
    },
    stop() {
      cutting = false;
    },
  };
}
