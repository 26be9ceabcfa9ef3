/**
 * Crash detection ahead of the session timeout (docs/CLUSTER.md, "Crash detection").
 *
 * A broker's etcd session ends when its lease expires: `sessionTimeoutMs` (default 6 s) after the
 * last keep-alive, plus up to half a second of etcd's own expiry check. When a broker *process*
 * dies on a host that stays up (a crash, `kill -9`, an OOM kill), its host's kernel says so at once:
 * the process's sockets are closed and its port refuses connections. This detector turns that into
 * an early end of the session: it holds one idle TCP connection to each broker it watches, and when
 * such a connection closes it connects again at once; if that connect is **refused** (ECONNREFUSED:
 * nothing listens on the port), the process that held the watched lease is gone, and the detector
 * revokes that lease in etcd. From there everything is the ordinary path of an expired session: etcd
 * deletes the registration (and the controller key), the controller elects new leaders from the ISR
 * with higher epochs, the broker's partitions and services move.
 *
 * What is never taken for a crash: a refused connect before a connection to that lease's broker was
 * ever established (a broker registered before it listens, or one nobody can reach); timeouts,
 * unreachable hosts, resets of a live listener, silence (a stopped process, a network partition, a
 * dead host): those end by the session timeout as before. A revocation is safe even if wrong: it is
 * what a lease expiry does, the broker registers again with a new session (broker-session.ts), and a
 * deposed leader cannot acknowledge `acks: 'all'` writes (its followers move to the new epoch).
 *
 * Who watches whom (`track`): the controller watches every other live broker; every other broker
 * watches the controller. So the controller's crash is seen by every broker (revoking a lease that
 * is already gone is harmless), any other broker's by the controller. Connections are bounded by the
 * brokers etcd lists (clusterBrokersMax). The connections carry no bytes: the broker's HTTP server may
 * close them when idle, which is answered by a connect that succeeds.
 */
import * as net from 'node:net';
import { socketAddressOf } from '../../client/websocket-connection.js';
import { crashProbeRetryMsMax, crashProbeRetryMsMin } from '../../limits.js';

/** A broker as the last etcd snapshot lists it. */
export interface WatchedBroker {
  brokerId: number;
  /** ws:// or wss:// URL it advertises. */
  url: string;
  /** Its session lease (decimal string). */
  lease: string;
}

export interface CrashDetectorOptions {
  /** This broker's id (never watched). */
  brokerId: number;
  /** Revokes a lease in etcd; a lease already gone must resolve (or reject: the error is logged). */
  revokeLease: (lease: string) => Promise<void>;
  /** One line per detection and revocation failure. */
  log: (line: string) => void;
}

/** One watched broker session: a connection kept to its advertised address. */
class Probe {
  private socket: net.Socket | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryMs = crashProbeRetryMsMin;
  /** A connection to this session's broker was established at least once. */
  private established = false;
  private stopped = false;

  constructor(
    readonly target: WatchedBroker,
    private readonly host: string,
    private readonly port: number,
    private readonly crashed: (probe: Probe) => void,
  ) {
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.socket?.destroy();
    this.socket = undefined;
  }

  private connect(): void {
    if (this.stopped) return;
    const socket = net.connect({ host: this.host, port: this.port });
    this.socket = socket;
    let connected = false;
    let refused = false;
    socket.on('connect', () => {
      connected = true;
      this.established = true;
      this.retryMs = crashProbeRetryMsMin;
    });
    socket.on('data', () => {}); // nothing is asked: anything sent is dropped
    socket.on('error', (error: NodeJS.ErrnoException) => {
      refused = !connected && error.code === 'ECONNREFUSED';
    });
    socket.on('close', () => {
      if (this.stopped || this.socket !== socket) return;
      this.socket = undefined;
      if (refused && this.established) {
        this.stopped = true;
        this.crashed(this);
        return;
      }
      if (connected) {
        this.connect(); // it was up: ask again at once whether something still listens
        return;
      }
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.connect();
      }, this.retryMs);
      this.retryTimer.unref();
      this.retryMs = Math.min(crashProbeRetryMsMax, this.retryMs * 2);
    });
  }
}

export class CrashDetector {
  /** By lease. */
  private readonly probes = new Map<string, Probe>();
  /** Leases revoked or being revoked: never probed again (kept while the snapshot still lists them). */
  private readonly revoked = new Set<string>();
  private closed = false;

  constructor(private readonly options: CrashDetectorOptions) {}

  /**
   * Sets whom to watch from the latest snapshot: every other broker when `controllerId` is this
   * broker, else the controller alone (none when there is no controller, or it is this broker's
   * previous session). Probes of sessions no longer listed stop.
   */
  track(brokers: readonly WatchedBroker[], controllerId: number | undefined): void {
    if (this.closed) return;
    const self = this.options.brokerId;
    const wanted = brokers.filter((broker) =>
      broker.brokerId === self
        ? false
        : controllerId === self || (controllerId !== undefined && broker.brokerId === controllerId),
    );
    const leases = new Set(wanted.map((broker) => broker.lease));
    const listed = new Set(brokers.map((broker) => broker.lease));
    for (const lease of this.revoked) if (!listed.has(lease)) this.revoked.delete(lease);
    for (const [lease, probe] of this.probes) {
      if (leases.has(lease)) continue;
      probe.stop();
      this.probes.delete(lease);
    }
    for (const broker of wanted) {
      if (this.probes.has(broker.lease) || this.revoked.has(broker.lease)) continue;
      const address = probeAddress(broker.url);
      if (address === undefined) continue;
      this.probes.set(
        broker.lease,
        new Probe(broker, address.host, address.port, (probe) => this.crashed(probe)),
      );
    }
  }

  /** Brokers watched now (for tests and diagnostics). */
  watchedBrokerIds(): number[] {
    return [...this.probes.values()].map((probe) => probe.target.brokerId).sort((a, b) => a - b);
  }

  close(): void {
    this.closed = true;
    for (const probe of this.probes.values()) probe.stop();
    this.probes.clear();
  }

  private crashed(probe: Probe): void {
    const { brokerId, url, lease } = probe.target;
    this.probes.delete(lease);
    if (this.closed || this.revoked.has(lease)) return;
    this.revoked.add(lease);
    this.options.log(
      `crash detector: broker ${brokerId} (${url}) closed its connection and refuses new ones: revoking its session lease ${lease}`,
    );
    this.options.revokeLease(lease).catch((error: unknown) => {
      this.options.log(
        `crash detector: cannot revoke the lease of broker ${brokerId} (${(error as Error).message}); its session ends by timeout`,
      );
    });
  }
}

/** Host and port of a ws:// or wss:// URL (default ports 80 and 443), or undefined. */
export function probeAddress(url: string): { host: string; port: number } | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') return undefined;
  const { host, port } = socketAddressOf(parsed);
  return { host, port };
}
