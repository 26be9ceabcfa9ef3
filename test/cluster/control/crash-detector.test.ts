/**
 * CrashDetector against real TCP listeners on loopback (no etcd: the revocation is recorded). A
 * "broker" here is a net.Server on a free port; its crash is the listener and its connections closing.
 */
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  CrashDetector,
  probeAddress,
  type WatchedBroker,
} from '../../../src/cluster/control/crash-detector.js';
import { waitFor } from '../harness/wait-for.js';

class FakeBroker {
  private readonly sockets = new Set<net.Socket>();
  accepted = 0;

  private constructor(
    private server: net.Server,
    readonly port: number,
  ) {}

  static async listen(port = 0): Promise<FakeBroker> {
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    const broker = new FakeBroker(server, (server.address() as net.AddressInfo).port);
    broker.watch(server);
    return broker;
  }

  private watch(server: net.Server): void {
    server.on('connection', (socket) => {
      this.accepted += 1;
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => {});
    });
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  /** Closes the connections it holds but keeps listening (an HTTP server's idle timeout). */
  dropConnections(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  /** What a crash does to the process's sockets: the listener and every connection close. */
  async crash(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.dropConnections();
    await closed;
  }
}

interface Harness {
  detector: CrashDetector;
  revoked: string[];
  lines: string[];
}

const detectors: CrashDetector[] = [];
const brokers: FakeBroker[] = [];

function detectorFor(brokerId: number, revoke?: (lease: string) => Promise<void>): Harness {
  const revoked: string[] = [];
  const lines: string[] = [];
  const detector = new CrashDetector({
    brokerId,
    revokeLease: async (lease) => {
      revoked.push(lease);
      await revoke?.(lease);
    },
    log: (line) => lines.push(line),
  });
  detectors.push(detector);
  return { detector, revoked, lines };
}

async function fakeBroker(): Promise<FakeBroker> {
  const broker = await FakeBroker.listen();
  brokers.push(broker);
  return broker;
}

afterEach(async () => {
  for (const detector of detectors.splice(0)) detector.close();
  for (const broker of brokers.splice(0)) await broker.crash().catch(() => {});
});

const watched = (brokerId: number, broker: FakeBroker | { url: string }, lease: string): WatchedBroker => ({
  brokerId,
  url: broker.url,
  lease,
});

describe('CrashDetector', () => {
  it('revokes the lease of a watched broker whose connection closes and whose port then refuses', async () => {
    const broker = await fakeBroker();
    const { detector, revoked, lines } = detectorFor(1);
    detector.track([watched(1, { url: 'ws://127.0.0.1:1' }, 'self'), watched(2, broker, '77')], 1);
    expect(detector.watchedBrokerIds()).toEqual([2]);
    await waitFor('the probe connection', () => (broker.accepted > 0 ? true : undefined));
    await broker.crash();
    await waitFor('the revocation', () => (revoked.length > 0 ? true : undefined));
    expect(revoked).toEqual(['77']);
    expect(lines.join('\n')).toContain('broker 2');
    expect(detector.watchedBrokerIds()).toEqual([]);
    // Listed again (etcd has not deleted the registration yet): not probed, not revoked twice.
    detector.track([watched(2, broker, '77')], 1);
    expect(detector.watchedBrokerIds()).toEqual([]);
  });

  it('takes an idle close by a live broker for what it is: it connects again and revokes nothing', async () => {
    const broker = await fakeBroker();
    const { detector, revoked } = detectorFor(1);
    detector.track([watched(2, broker, '5')], 1);
    await waitFor('the probe connection', () => (broker.accepted > 0 ? true : undefined));
    for (let round = 1; round <= 3; round++) {
      broker.dropConnections();
      await waitFor(`connection ${round + 1}`, () => (broker.accepted > round ? true : undefined));
    }
    expect(revoked).toEqual([]);
    // The same session crashing later is still detected.
    await broker.crash();
    await waitFor('the revocation', () => (revoked.length > 0 ? true : undefined));
    expect(revoked).toEqual(['5']);
  });

  it('never revokes a session whose broker it never reached (registered before it listens)', async () => {
    const closedPort = await fakeBroker();
    await closedPort.crash(); // a port nothing listens on
    const { detector, revoked } = detectorFor(1);
    detector.track([watched(2, closedPort, '9')], 1);
    // Refused connects are retried with backoff; a few of them pass without a revocation.
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(revoked).toEqual([]);
    expect(detector.watchedBrokerIds()).toEqual([2]);
    // Once the broker listens and the probe got through, a crash is detected.
    const late = await FakeBroker.listen(closedPort.port);
    brokers.push(late);
    await waitFor('the probe connection', () => (late.accepted > 0 ? true : undefined), { boundMs: 10_000 });
    await late.crash();
    await waitFor('the revocation', () => (revoked.length > 0 ? true : undefined));
    expect(revoked).toEqual(['9']);
  });

  it('watches every other broker as controller, only the controller otherwise, and follows new sessions', async () => {
    const [a, b, c] = [await fakeBroker(), await fakeBroker(), await fakeBroker()];
    const listed = [watched(1, a, '11'), watched(2, b, '22'), watched(3, c, '33')];
    const onController = detectorFor(1);
    onController.detector.track(listed, 1);
    expect(onController.detector.watchedBrokerIds()).toEqual([2, 3]);
    await waitFor('probes of 2 and 3', () => (b.accepted > 0 && c.accepted > 0 ? true : undefined));
    const onOther = detectorFor(2);
    onOther.detector.track(listed, 1);
    expect(onOther.detector.watchedBrokerIds()).toEqual([1]);
    onOther.detector.track(listed, undefined); // no controller now: nobody to watch
    expect(onOther.detector.watchedBrokerIds()).toEqual([]);
    // Broker 3 registered again under a new lease: the old session's probe stops, the new one starts;
    // a crash of the new session revokes the new lease only.
    const acceptedBefore = c.accepted;
    onController.detector.track([listed[0]!, listed[1]!, watched(3, c, '34')], 1);
    expect(onController.detector.watchedBrokerIds()).toEqual([2, 3]);
    await waitFor('the new session probed', () => (c.accepted > acceptedBefore ? true : undefined));
    await c.crash();
    await waitFor('the revocation', () => (onController.revoked.length > 0 ? true : undefined));
    expect(onController.revoked).toEqual(['34']);
  });

  it('logs a failed revocation instead of throwing', async () => {
    const broker = await fakeBroker();
    const { detector, revoked, lines } = detectorFor(1, async () => {
      throw new Error('etcd is away');
    });
    detector.track([watched(2, broker, '3')], 1);
    await waitFor('the probe connection', () => (broker.accepted > 0 ? true : undefined));
    await broker.crash();
    await waitFor('the failure line', () =>
      lines.some((line) => line.includes('etcd is away')) ? true : undefined,
    );
    expect(revoked).toEqual(['3']);
  });
});

describe('probeAddress', () => {
  it('reads host and port of ws and wss URLs', () => {
    expect(probeAddress('ws://127.0.0.1:9092')).toEqual({ host: '127.0.0.1', port: 9092 });
    expect(probeAddress('wss://broker.example')).toEqual({ host: 'broker.example', port: 443 });
    expect(probeAddress('ws://[::1]:8080')).toEqual({ host: '::1', port: 8080 });
    expect(probeAddress('http://127.0.0.1:1')).toBeUndefined();
    expect(probeAddress('not a url')).toBeUndefined();
  });
});
