/**
 * The network front end of a broker: uWebSockets.js serving, on one port, the binary WebSocket
 * protocol (routes `/` and `/v1/ws`, connection.ts), the HTTP API (http-api.ts), `/healthz` and
 * `/metrics`. Thin: it decodes frames, calls the broker through BrokerApi (protocol/dispatch.ts),
 * encodes the answers and respects backpressure. docs/PROTOCOL.md describes all of it.
 *
 * close(): stops accepting (listen socket closed, new upgrades 503, new requests BROKER_CLOSING),
 * aborts long-polls, waits for in-flight requests and for answers still being sent (bounded by
 * closeTimeoutMs), closes every WebSocket with 1001, then closes the remaining sockets, and resolves
 * once the sessions of those connections are closed (their close hooks run). It does not close the
 * broker: the owner does that after the server.
 *
 * Security (docs/SECURITY.md): with `auth` (the parsed --auth-file), WebSocket sessions authenticate
 * in HELLO and HTTP requests with `Authorization: Bearer` (every route but /healthz), and every
 * request is authorized by the opcode table (protocol/opcode-access.ts) or its HTTP route's
 * equivalent; with `tls`, the same port speaks TLS (uWS SSLApp: wss:// and https://).
 *
 * Everything runs on the event loop thread that called startServer; nothing here is thread-safe.
 */
import { accessSync, constants } from 'node:fs';
import { createServer as createNetServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import uWS, {
  type HttpRequest,
  type HttpResponse,
  type us_listen_socket,
  type us_socket_context_t,
} from '@trufflesuite/uws-js-unofficial';
import { type Clock, systemClock } from '../clock.js';
import { InvalidArgumentError, SpillwayError } from '../errors.js';
import {
  connectionsMax,
  connectionsPerAddressDefault,
  frameBytesMax,
  handshakeTimeoutMsDefault,
  httpBodyBudgetBytesDefault,
  httpBodyTimeoutMsDefault,
  httpSendBudgetBytesDefault,
  memoryBudgetBytesDefault,
  memoryCeilingBytesDefault,
  portMax,
  sendBufferBytesHardMax,
  serverCloseTimeoutMs,
} from '../limits.js';
import { readPackageVersion } from '../package-version.js';
import type { BrokerApi } from '../protocol/broker-api.js';
import type { Frame } from '../protocol/frame.js';
import type { AuthConfig } from './auth/auth-file.js';
import { Authenticator } from './auth/authenticator.js';
import { PrincipalQuotaTracker } from './auth/principal-quotas.js';
import { Connection, type ConnectionContext, type ConnectionData, closeCodeGoingAway } from './connection.js';
import { HttpApi } from './http-api.js';
import { HttpBudget } from './http-budget.js';
import type { HttpExchange } from './http-exchange.js';
import { MemoryGuard } from './memory-guard.js';
import { ServerMetrics } from './metrics.js';
import { RequestGuard } from './request-guard.js';

export interface ServerOptions {
  /** Address to listen on. Default 127.0.0.1. */
  host?: string;
  /** Port; 0 picks a free one (read it from BrokerServer.port). Default 7070. */
  port?: number;
  /** Reported by HELLO. Default: the package version. */
  brokerVersion?: string;
  /** Open WebSocket connections before upgrades are refused with 503. Default limits.connectionsMax. */
  maxConnections?: number;
  /** How long close() waits for in-flight requests and unsent answers. Default limits.serverCloseTimeoutMs. */
  closeTimeoutMs?: number;
  /** Seconds without any traffic (pings included) before uWS closes a WebSocket. Default 120. */
  idleTimeoutSeconds?: number;
  /**
   * Web page origins (as browsers send them in `Origin`, e.g. `https://app.example:8443`) allowed to
   * use the HTTP API and open WebSockets; `*` allows any. Default none: every request that carries
   * an Origin header is refused with 403 ORIGIN_NOT_ALLOWED (programs send none).
   */
  allowedOrigins?: readonly string[];
  /**
   * Host names (optionally `name:port`) accepted in the Host header besides localhost, 127.0.0.1 and
   * [::1] with the port, when the server listens on a loopback address. Default none.
   */
  allowedHosts?: readonly string[];
  /** Open WebSocket connections from one source address. Default limits.connectionsPerAddressDefault. */
  maxConnectionsPerAddress?: number;
  /** A WebSocket that sends no HELLO within this time is closed (1008); 0: never. Default 10 000. */
  handshakeTimeoutMs?: number;
  /** Bytes of HTTP request bodies held at once, all requests together. Default 256 MiB. */
  httpBodyBudgetBytes?: number;
  /** Bytes of HTTP answers waiting for slow readers before fetches are refused. Default 256 MiB. */
  httpSendBudgetBytes?: number;
  /** Longest time an HTTP request body may take to arrive (408). Default 30 000. */
  httpBodyTimeoutMs?: number;
  /** Clock of the server's timers (handshake and body timeouts). Broker.listen passes the broker's. */
  clock?: Clock;
  /** Called with unexpected exceptions (bugs), which are answered INTERNAL. Default: print to stderr. */
  onInternalError?: (error: unknown, request?: Frame) => void;
  /**
   * Principals, token hashes, access rules and quotas (server/auth/auth-file.ts, `loadAuthFile`).
   * Absent: no authentication (every network client may do everything).
   */
  auth?: AuthConfig;
  /** Certificate chain and private key files (PEM): the server speaks TLS (wss://, https://). */
  tls?: { certFile: string; keyFile: string; passphrase?: string };
  /**
   * Unsent WebSocket answer bytes, all connections together, above which large-answer requests are
   * held and non-reading connections closed (memory-guard.ts). Default limits.memoryBudgetBytesDefault.
   */
  memoryBudgetBytes?: number;
  /**
   * Anonymous resident memory the process is kept under: a margin before it, new connections are
   * refused and silent connections (partial frames) closed (memory-guard.ts). Default
   * limits.memoryCeilingBytesDefault.
   */
  memoryCeilingBytes?: number;
}

export interface BrokerServer {
  readonly host: string;
  readonly port: number;
  /** `ws://host:port` (`wss://` with TLS): what clients connect to. */
  readonly url: string;
  /** The server's counters (also served by GET /metrics). */
  readonly metrics: ServerMetrics;
  /**
   * Replaces the principals, rules and quotas (auth file reload, docs/SECURITY.md): new checks use
   * them at once; open WebSocket connections take their principal's new entry, or are closed
   * (1008) when it is gone or its token hash changed. INVALID_ARGUMENT when the server was started
   * without `auth`. Returns the number of connections closed.
   */
  reloadAuth(config: AuthConfig): number;
  close(): Promise<void>;
}

const defaultPort = 7070;
const defaultIdleTimeoutSeconds = 120;
/**
 * uWS drops (does not send) a message once a socket buffers more than maxBackpressure: set above
 * anything the connection lets accumulate (it disconnects at sendBufferBytesHardMax), so an answer,
 * or the second fragment of one, is never dropped.
 */
const uwsMaxBackpressureBytes = sendBufferBytesHardMax + 2 * frameBytesMax;
/**
 * uWS listens with SO_REUSEPORT, so a second broker on the same port would silently share it; its
 * exclusive-port option instead also refuses a port whose last connections are in TIME_WAIT (a quick
 * restart fails for a minute). So: probe the port with Node's net (SO_REUSEADDR, no SO_REUSEPORT),
 * which fails only when something listens there, then let uWS listen with its defaults.
 */
function probePortFree(host: string, port: number): Promise<boolean> {
  if (port === 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const probe = createNetServer();
    probe.once('error', () => resolve(false));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(true)));
  });
}

/** Resolves after `ms` unless cancelled; cancel() clears the timer. */
function cancellableTimeout(ms: number): { promise: Promise<void>; cancel(): void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  return { promise, cancel: () => clearTimeout(timer) };
}

function defaultInternalErrorHandler(error: unknown): void {
  const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
  process.stderr.write(`spillway server: internal error: ${detail}\n`);
}

function checkOptions(options: ServerOptions): void {
  const { port, maxConnections, closeTimeoutMs, idleTimeoutSeconds } = options;
  const positive = {
    memoryBudgetBytes: options.memoryBudgetBytes,
    memoryCeilingBytes: options.memoryCeilingBytes,
    maxConnectionsPerAddress: options.maxConnectionsPerAddress,
    httpBodyBudgetBytes: options.httpBodyBudgetBytes,
    httpSendBudgetBytes: options.httpSendBudgetBytes,
    httpBodyTimeoutMs: options.httpBodyTimeoutMs,
  };
  for (const [name, value] of Object.entries(positive)) {
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 1)) {
      throw new InvalidArgumentError(`${name} must be a positive integer, got ${value}`);
    }
  }
  const { handshakeTimeoutMs } = options;
  if (
    handshakeTimeoutMs !== undefined &&
    (!Number.isSafeInteger(handshakeTimeoutMs) || handshakeTimeoutMs < 0)
  ) {
    throw new InvalidArgumentError(`handshakeTimeoutMs must be an integer >= 0, got ${handshakeTimeoutMs}`);
  }
  for (const [name, list] of [
    ['allowedOrigins', options.allowedOrigins],
    ['allowedHosts', options.allowedHosts],
  ] as const) {
    if (
      list !== undefined &&
      (!Array.isArray(list) || list.some((item) => typeof item !== 'string' || item === ''))
    ) {
      throw new InvalidArgumentError(`${name} must be an array of non-empty strings`);
    }
  }
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > portMax)) {
    throw new InvalidArgumentError(`port must be an integer in [0, ${portMax}], got ${port}`);
  }
  if (maxConnections !== undefined && (!Number.isInteger(maxConnections) || maxConnections < 1)) {
    throw new InvalidArgumentError(`maxConnections must be a positive integer, got ${maxConnections}`);
  }
  if (closeTimeoutMs !== undefined && (!Number.isInteger(closeTimeoutMs) || closeTimeoutMs < 0)) {
    throw new InvalidArgumentError(`closeTimeoutMs must be an integer >= 0, got ${closeTimeoutMs}`);
  }
  if (
    idleTimeoutSeconds !== undefined &&
    (!Number.isInteger(idleTimeoutSeconds) || (idleTimeoutSeconds !== 0 && idleTimeoutSeconds < 8))
  ) {
    throw new InvalidArgumentError(`idleTimeoutSeconds must be 0 (off) or an integer >= 8`);
  }
}

export async function startServer(api: BrokerApi, options: ServerOptions = {}): Promise<BrokerServer> {
  checkOptions(options);
  const host = options.host ?? '127.0.0.1';
  const requestedPort = options.port ?? defaultPort;
  const brokerVersion = options.brokerVersion ?? (await readPackageVersion());
  const maxConnections = Math.min(options.maxConnections ?? connectionsMax, connectionsMax);
  const closeTimeoutMs = options.closeTimeoutMs ?? serverCloseTimeoutMs;
  const onInternalError = options.onInternalError ?? defaultInternalErrorHandler;

  const clock = options.clock ?? systemClock;
  const maxConnectionsPerAddress = options.maxConnectionsPerAddress ?? connectionsPerAddressDefault;
  const metrics = new ServerMetrics();
  const budget = new HttpBudget(
    options.httpBodyBudgetBytes ?? httpBodyBudgetBytesDefault,
    options.httpSendBudgetBytes ?? httpSendBudgetBytesDefault,
    options.httpBodyTimeoutMs ?? httpBodyTimeoutMsDefault,
    clock,
  );
  metrics.httpBudget = budget;
  const connections = new Set<Connection>();
  const security =
    options.auth === undefined
      ? null
      : { authenticator: new Authenticator(options.auth, clock), quotas: new PrincipalQuotaTracker(clock) };
  const memory = new MemoryGuard(
    options.memoryBudgetBytes ?? memoryBudgetBytesDefault,
    options.memoryCeilingBytes ?? memoryCeilingBytesDefault,
    () => connections,
    clock,
  );
  metrics.memory = memory;
  metrics.security = security;
  /** Open WebSocket connections (and upgrades in progress) per source address. */
  const connectionsByAddress = new Map<string, number>();
  const releaseAddress = (address: string): void => {
    const count = (connectionsByAddress.get(address) ?? 1) - 1;
    if (count <= 0) connectionsByAddress.delete(address);
    else connectionsByAddress.set(address, count);
  };
  // Set once listening: the Host check needs the port.
  let guard = new RequestGuard({
    allowedOrigins: [],
    allowedHosts: [],
    listenHost: host,
    port: requestedPort,
  });
  const exchanges = new Set<HttpExchange>();
  const running = new Set<Promise<unknown>>();
  let closing = false;

  const track = (work: Promise<unknown>): void => {
    running.add(work);
    void work.finally(() => running.delete(work));
  };
  const connectionContext: ConnectionContext = {
    api,
    brokerVersion,
    metrics,
    isClosing: () => closing,
    track,
    onInternalError,
    handshakeTimeoutMs: options.handshakeTimeoutMs ?? handshakeTimeoutMsDefault,
    clock,
    security,
    memory,
    deferWrites: options.tls !== undefined,
  };

  let app: uWS.TemplatedApp;
  if (options.tls === undefined) {
    app = uWS.App();
  } else {
    for (const file of [options.tls.certFile, options.tls.keyFile]) {
      try {
        accessSync(file, constants.R_OK);
      } catch {
        throw new InvalidArgumentError(`cannot read TLS file ${file}`);
      }
    }
    app = uWS.SSLApp({
      cert_file_name: options.tls.certFile,
      key_file_name: options.tls.keyFile,
      ...(options.tls.passphrase !== undefined ? { passphrase: options.tls.passphrase } : {}),
    });
  }
  const refuseUpgrade = (
    response: HttpResponse,
    message: string,
    code?: string,
    status = '503 Service Unavailable',
  ): void => {
    metrics.connectionsRejected++;
    response.cork(() => {
      response
        .writeStatus(status)
        .writeHeader('content-type', 'application/json')
        .writeHeader('retry-after', '1')
        .end(
          JSON.stringify({
            error: { code: code ?? (closing ? 'BROKER_CLOSING' : 'TOO_MANY_REQUESTS'), message },
          }),
          true,
        );
    });
  };
  const behavior = {
    maxPayloadLength: frameBytesMax,
    maxBackpressure: uwsMaxBackpressureBytes,
    closeOnBackpressureLimit: 0,
    idleTimeout: options.idleTimeoutSeconds ?? defaultIdleTimeoutSeconds,
    sendPingsAutomatically: true,
    maxLifetime: 0,
    compression: uWS.DISABLED,
    upgrade: (response: HttpResponse, request: HttpRequest, context: us_socket_context_t) => {
      if (closing) return refuseUpgrade(response, 'the broker is shutting down');
      const refusal = guard.check(request.getHeader('origin'), request.getHeader('host'));
      if (refusal !== null) {
        metrics.requestsRefusedByGuard++;
        return refuseUpgrade(response, refusal.message, refusal.code, '403 Forbidden');
      }
      if (connections.size >= maxConnections) {
        return refuseUpgrade(response, `connection limit of ${maxConnections} reached`);
      }
      if (memory.checkPressure()) {
        return refuseUpgrade(response, 'the broker is over its memory ceiling: connect again later');
      }
      const address = Buffer.from(response.getRemoteAddressAsText()).toString();
      const fromAddress = connectionsByAddress.get(address) ?? 0;
      if (fromAddress >= maxConnectionsPerAddress) {
        return refuseUpgrade(
          response,
          `connection limit of ${maxConnectionsPerAddress} per source address reached for ${address}`,
        );
      }
      let connection: Connection;
      try {
        connection = new Connection(connectionContext, address); // opens its session
      } catch (error) {
        if (!(error instanceof SpillwayError)) throw error;
        return refuseUpgrade(response, error.message, error.code);
      }
      connectionsByAddress.set(address, fromAddress + 1);
      // upgrade() calls `open` before it returns: the connection is counted at once.
      const data: ConnectionData = { connection };
      response.upgrade(
        data,
        request.getHeader('sec-websocket-key'),
        request.getHeader('sec-websocket-protocol'),
        request.getHeader('sec-websocket-extensions'),
        context,
      );
      // Should uWS not have opened it, no close event will come: end the session here.
      if (!connections.has(connection)) {
        connection.onClose();
        releaseAddress(address);
      }
    },
    open: (socket: uWS.WebSocket<ConnectionData>) => {
      const { connection } = socket.getUserData();
      connection.opened(socket);
      connections.add(connection);
      metrics.connectionsAccepted++;
      metrics.connectionsOpen = connections.size;
      if (closing) connection.end(closeCodeGoingAway, 'server closing');
    },
    message: (socket: uWS.WebSocket<ConnectionData>, message: ArrayBuffer, isBinary: boolean) => {
      socket.getUserData().connection.onMessage(message, isBinary);
    },
    drain: (socket: uWS.WebSocket<ConnectionData>) => {
      socket.getUserData().connection.onDrain();
    },
    pong: (socket: uWS.WebSocket<ConnectionData>) => {
      socket.getUserData().connection.onPong();
    },
    close: (socket: uWS.WebSocket<ConnectionData>) => {
      const { connection } = socket.getUserData();
      connection.onClose();
      if (connections.delete(connection)) releaseAddress(connection.remoteAddress);
      metrics.connectionsOpen = connections.size;
    },
  };
  app.ws<ConnectionData>('/', behavior);
  app.ws<ConnectionData>('/v1/ws', behavior);

  const httpApi = new HttpApi({
    api,
    metrics,
    isClosing: () => closing,
    track,
    exchanges,
    onInternalError: (error) => onInternalError(error),
    get guard() {
      return guard;
    },
    budget,
    security,
    clock,
  });
  httpApi.register(app, () =>
    metrics.render(
      () => api.topics.list({ internal: true }),
      () => [...connections].map((connection) => connection.bufferedBytes),
      api.sessions,
      () => api.integrity.report(),
      () => api.storageStats?.() ?? null,
      () => api.groups.list().map((group) => api.groups.describe(group.group)),
      () => api.queues.describe(),
      () => api.transactions.stats(),
      () => api.delay?.stats() ?? null,
      () => api.dedupStats?.() ?? null,
      () => api.replication?.stats() ?? null,
    ),
  );

  const cannotListen = () =>
    new InvalidArgumentError(
      `cannot listen on ${host}:${requestedPort} (address in use, or not an address of this machine)`,
    );
  if (!(await probePortFree(host, requestedPort))) throw cannotListen();
  const listenSocket = await new Promise<us_listen_socket>((resolve, reject) => {
    app.listen(host, requestedPort, (socket: us_listen_socket | false) => {
      if (socket === false) {
        reject(cannotListen());
      } else {
        resolve(socket);
      }
    });
  });
  const port = uWS.us_socket_local_port(listenSocket as unknown as uWS.us_socket);
  guard = new RequestGuard({
    allowedOrigins: options.allowedOrigins ?? [],
    allowedHosts: options.allowedHosts ?? [],
    listenHost: host,
    port,
  });
  const urlHost = host.includes(':') ? `[${host}]` : host;
  memory.start();

  let closed: Promise<void> | undefined;
  const close = async (): Promise<void> => {
    closing = true;
    api.clusterMetadata?.leaving?.();
    memory.stop();
    uWS.us_listen_socket_close(listenSocket);
    for (const connection of connections) connection.abort();
    for (const exchange of exchanges) exchange.abortController.abort();
    const deadline = Date.now() + closeTimeoutMs;
    // In-flight requests (long-polls end at once: their signals are aborted).
    while (running.size > 0 && Date.now() < deadline) {
      // The deadline timer is cleared once the requests settle: left pending, it would keep the
      // process alive until closeTimeoutMs after a shutdown that took milliseconds.
      const timeout = cancellableTimeout(Math.max(0, deadline - Date.now()));
      try {
        await Promise.race([Promise.allSettled([...running]), timeout.promise]);
      } finally {
        timeout.cancel();
      }
    }
    // Answers still queued or buffered for clients that read them.
    while (Date.now() < deadline && [...connections].some((connection) => connection.hasUnsentAnswers)) {
      await sleep(10);
    }
    const open = [...connections];
    for (const connection of open) connection.end(closeCodeGoingAway, 'server closing');
    for (const exchange of [...exchanges]) {
      exchange.answerError(new SpillwayError('BROKER_CLOSING', 'the broker is shutting down'));
    }
    // Outside any uWS callback, so the close frames are written before the sockets go.
    await sleep(0);
    (app as unknown as { close(): void }).close();
    // The sessions' close hooks have run (each bounded by sessionCloseHooksWaitMs) when close() resolves.
    await Promise.allSettled(open.map((connection) => connection.sessionClosed));
  };

  return {
    host,
    port,
    url: `${options.tls === undefined ? 'ws' : 'wss'}://${urlHost}:${port}`,
    metrics,
    reloadAuth: (config: AuthConfig): number => {
      if (security === null) {
        throw new InvalidArgumentError('this server was started without an auth file: nothing to reload');
      }
      security.authenticator.replace(config);
      let closedCount = 0;
      for (const connection of [...connections]) {
        if (!connection.onAuthReload(security)) closedCount++;
      }
      return closedCount;
    },
    close: () => {
      closed ??= close();
      return closed;
    },
  };
}
