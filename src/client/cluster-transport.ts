/**
 * The client's transport in a cluster (docs/CLUSTER.md, "Clients"): one Transport over one WebSocket
 * connection per broker it needs, so the producer, the consumers and the admin are unchanged.
 *
 * `ClusterTransport.over(first)` asks the broker the client connected to for METADATA; a single
 * broker (`cluster: false`), an older broker or any error leaves `first` as the client's transport:
 * nothing of this file runs per request then. In a cluster, each request goes where
 * request-route.ts says: a data partition's request (PRODUCE, FETCH, LIST_OFFSET) to the partition's
 * leader, a PRODUCE carrying the `leaderEpoch` the client knows; a service request to the leader of
 * its internal topic's partition 0; the rest, or a partition without a known leader, to any broker
 * (the first one while it is reachable). Connections are opened on first need, to the brokers'
 * advertised URLs, with the options of the first one (token, CA, timeouts), at most
 * `clientBrokerConnectionsMax`; one to a broker that left the metadata (or changed its URL) is closed.
 *
 * Rerouting: a request failing with NOT_LEADER, FENCED_LEADER_EPOCH, NOT_COORDINATOR, a lost or
 * refused connection (CONNECTION_CLOSED, retriable), or UNKNOWN_TOPIC / UNKNOWN_PARTITION for a
 * partition METADATA listed (the broker has not created it yet), is sent again after refreshing the
 * metadata: waits of 50 ms doubling to 1 s, until `rerouteTimeoutMs` (default 30 s) would be passed,
 * then the last error reaches the caller. UNKNOWN_TOPIC / UNKNOWN_PARTITION of a data partition
 * request or a DESCRIBE_TOPIC naming a topic no METADATA lists (the brokers' view of etcd may lag
 * behind a topic just created) is retried the same way for at most `clientUnknownTopicWaitMs` (2 s,
 * within `rerouteTimeoutMs`): a topic that does not exist fails with UNKNOWN_TOPIC after that. At most one METADATA is in flight per client: concurrent
 * refreshes share it (it asks for every topic known, up to metadataTopicsMax). The resent request is
 * the same header and body: an idempotent producer's batch keeps its sequence. A request whose
 * connection dropped may have been carried out: a plain PRODUCE may be written twice
 * (at-least-once, as the producer's own retries). Resends of one partition's requests failing
 * together go out in the order they failed.
 */
import { InvalidArgumentError, SpillwayError } from '../errors.js';
import {
  clientBrokerConnectionsMax,
  clientRerouteBackoffMsMax,
  clientRerouteBackoffMsMin,
  clientRerouteTimeoutMsDefault,
  clientUnknownTopicWaitMs,
} from '../limits.js';
import { coordinatorTopics } from '../protocol/coordinator-routing.js';
import { Opcode } from '../protocol/opcodes.js';
import { clusterMetadataOf } from './admin.js';
import { LeaderTable } from './leader-table.js';
import { type RequestRoute, requestRoute, reroutable, rerouteBackoffMs } from './request-route.js';
import type { ServerRequestHandler } from './server-requests.js';
import type {
  DisconnectListener,
  HelloInfo,
  RequestOptions,
  Transport,
  TransportResponse,
} from './transport.js';
import { WebSocketTransport, type WebSocketTransportOptions } from './websocket-transport.js';
import { closedError } from './wire.js';

export interface ClusterTransportOptions extends WebSocketTransportOptions {
  /** Longest time one request spends being rerouted before its last error is given up. Default 30 000. */
  rerouteTimeoutMs?: number;
}

interface Connection {
  readonly brokerId: number;
  readonly url: string;
  transport: WebSocketTransport | null;
  opening: Promise<WebSocketTransport> | null;
}

/** Where a request goes this attempt. */
interface Target {
  transport: WebSocketTransport;
  /** The leader epoch a PRODUCE carries; undefined: none known. */
  leaderEpoch: number | undefined;
}

const retryCodesWhenListed: ReadonlySet<string> = new Set(['UNKNOWN_TOPIC', 'UNKNOWN_PARTITION']);

/** The topic (and partition) a request's UNKNOWN_TOPIC / UNKNOWN_PARTITION would be about. */
interface NamedTopic {
  readonly topic: string;
  readonly partition: number;
}

/**
 * The topic a data partition request (PRODUCE, FETCH, LIST_OFFSET) or a DESCRIBE_TOPIC (the
 * producer's partition count) names; undefined for other requests (their errors are the caller's).
 */
function namedTopic(opcode: number, header: unknown, route: RequestRoute): NamedTopic | undefined {
  if (route.kind === 'partition') return { topic: route.topic, partition: route.partition };
  if (opcode !== Opcode.describeTopic || header === null || typeof header !== 'object') return undefined;
  const name = (header as { name?: unknown }).name;
  return typeof name === 'string' ? { topic: name, partition: 0 } : undefined;
}

export class ClusterTransport implements Transport {
  private readonly table = new LeaderTable();
  private readonly connections = new Map<number, Connection>();
  /** Transports this router closed (their CONNECTION_CLOSED is a reason to reroute, not the caller's close). */
  private readonly retired = new WeakSet<WebSocketTransport>();
  private readonly disconnectListeners = new Set<DisconnectListener>();
  private readonly serverHandlers = new Map<number, ServerRequestHandler>();
  /** Per transport, its registrations (unregister functions) of serverHandlers. */
  private readonly registrations = new Map<WebSocketTransport, Map<number, () => void>>();
  private readonly rerouteTimeoutMs: number;
  /** The METADATA in flight, and the topics it asked for. */
  private refreshing: { promise: Promise<void>; topics: ReadonlySet<string> } | null = null;
  private isClosed = false;
  private closing: Promise<void> | null = null;
  /** The first connection: its HELLO answer (as of its last reconnect) is this transport's. */
  private readonly first: WebSocketTransport;

  private constructor(
    first: WebSocketTransport,
    private readonly firstBrokerId: number,
    firstUrl: string,
    private readonly options: ClusterTransportOptions,
  ) {
    this.first = first;
    this.rerouteTimeoutMs = options.rerouteTimeoutMs ?? clientRerouteTimeoutMsDefault;
    this.connections.set(firstBrokerId, {
      brokerId: firstBrokerId,
      url: firstUrl,
      transport: first,
      opening: null,
    });
    this.adopt(first);
  }

  /**
   * The transport for a client connected to `first`: a ClusterTransport when the broker says it is in
   * a cluster, else `first` itself (a single broker, a broker without METADATA, or METADATA refused).
   */
  static checkOptions(options: ClusterTransportOptions): void {
    const timeoutMs = options.rerouteTimeoutMs;
    if (timeoutMs !== undefined && (!Number.isSafeInteger(timeoutMs) || timeoutMs < 0)) {
      throw new InvalidArgumentError(`rerouteTimeoutMs must be an integer >= 0, got ${timeoutMs}`);
    }
  }

  static async over(first: WebSocketTransport, options: ClusterTransportOptions = {}): Promise<Transport> {
    const asked = [coordinatorTopics.groups];
    let answer: unknown;
    try {
      answer = (await first.request(Opcode.metadata, { topics: asked })).header;
    } catch {
      return first;
    }
    const metadata = clusterMetadataOf(answer);
    if (!metadata.cluster || metadata.brokerId === null) return first;
    const advertised = metadata.brokers.find((broker) => broker.brokerId === metadata.brokerId)?.url;
    const transport = new ClusterTransport(first, metadata.brokerId, advertised ?? first.url, options);
    transport.table.update(metadata, asked);
    return transport;
  }

  get hello(): HelloInfo {
    return this.first.hello;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Brokers this client holds a connection object to (open or reconnecting), by id. */
  get connectedBrokers(): number[] {
    return [...this.connections.keys()];
  }

  onDisconnect(listener: DisconnectListener): () => void {
    this.disconnectListeners.add(listener);
    return () => this.disconnectListeners.delete(listener);
  }

  onServerRequest(opcode: number, handler: ServerRequestHandler): () => void {
    if (this.serverHandlers.has(opcode)) {
      throw new InvalidArgumentError(`a handler for server request opcode ${opcode} is registered`);
    }
    this.serverHandlers.set(opcode, handler);
    for (const [transport, registered] of this.registrations) {
      registered.set(opcode, transport.onServerRequest(opcode, handler));
    }
    return () => {
      if (this.serverHandlers.get(opcode) !== handler) return;
      this.serverHandlers.delete(opcode);
      for (const registered of this.registrations.values()) {
        registered.get(opcode)?.();
        registered.delete(opcode);
      }
    };
  }

  async request(
    opcode: number,
    header: unknown,
    body?: Uint8Array,
    options?: RequestOptions,
  ): Promise<TransportResponse> {
    if (this.isClosed) throw closedError('the client');
    const route = requestRoute(opcode, header);
    const startedMs = Date.now();
    const deadline = startedMs + this.rerouteTimeoutMs;
    const unlistedDeadline = startedMs + Math.min(this.rerouteTimeoutMs, clientUnknownTopicWaitMs);
    const named = namedTopic(opcode, header, route);
    for (let attempt = 1; ; attempt++) {
      let used: WebSocketTransport | undefined;
      try {
        const target = await this.targetOf(route);
        used = target.transport;
        const sent =
          opcode === Opcode.produce && target.leaderEpoch !== undefined
            ? { ...(header as object), leaderEpoch: target.leaderEpoch }
            : header;
        return await target.transport.request(opcode, sent, body, options);
      } catch (error) {
        if (this.isClosed || options?.signal?.aborted === true) throw error;
        const resend = this.resendable(error, route, used, named);
        if (resend === null) throw error;
        const waitMs = rerouteBackoffMs(attempt, clientRerouteBackoffMsMin, clientRerouteBackoffMsMax);
        if (Date.now() + waitMs > (resend === 'unlisted' ? unlistedDeadline : deadline)) throw error;
        await Promise.all([
          sleep(waitMs, options?.signal),
          this.refresh(named === undefined ? [] : [named.topic]).catch(() => undefined),
        ]);
        if (this.isClosed) throw error;
      }
    }
  }

  close(): Promise<void> {
    if (this.closing === null) {
      this.isClosed = true;
      const transports: Promise<void>[] = [];
      for (const connection of this.connections.values()) {
        if (connection.transport !== null) transports.push(connection.transport.close());
        if (connection.opening !== null)
          transports.push(connection.opening.then((transport) => transport.close()).catch(() => undefined));
      }
      this.connections.clear();
      this.closing = Promise.allSettled(transports).then(() => undefined);
    }
    return this.closing;
  }

  /**
   * Refreshes the leader table, asking for the known topics plus `topics` (one METADATA at a time:
   * a caller needing a topic the running one does not ask for waits for it, then starts another).
   */
  async refresh(topics: readonly string[] = []): Promise<void> {
    for (;;) {
      const running = this.refreshing;
      if (running === null) break;
      await running.promise.catch(() => undefined);
      if (topics.every((topic) => running.topics.has(topic))) return;
    }
    const asked = this.table.topicsToAsk(topics);
    const promise = this.askMetadata(asked).finally(() => {
      this.refreshing = null;
    });
    this.refreshing = { promise, topics: new Set(asked) };
    return promise;
  }

  /**
   * Whether a failed request is sent again, and until which bound: 'reroute' (the reroute timeout)
   * for a wrong or lost broker and for UNKNOWN_TOPIC / UNKNOWN_PARTITION of a partition METADATA
   * listed; 'unlisted' (clientUnknownTopicWaitMs) for those codes on a topic no METADATA lists yet
   * (the answering brokers' view of etcd may lag behind its creation); null: the caller gets it.
   */
  private resendable(
    error: unknown,
    route: RequestRoute,
    used: WebSocketTransport | undefined,
    named: NamedTopic | undefined,
  ): 'reroute' | 'unlisted' | null {
    if (reroutable(error, used !== undefined && this.retired.has(used))) return 'reroute';
    if (named === undefined || !(error instanceof SpillwayError) || !retryCodesWhenListed.has(error.code)) {
      return null;
    }
    if (route.kind === 'partition' && this.table.listed(route.topic, route.partition)) return 'reroute';
    return this.table.listed(named.topic, named.partition) ? 'reroute' : 'unlisted';
  }

  private async targetOf(route: RequestRoute): Promise<Target> {
    if (route.kind === 'any') return { transport: await this.anyTransport(), leaderEpoch: undefined };
    const partition = route.kind === 'partition' ? route.partition : 0;
    if (!this.table.knows(route.topic)) await this.refresh([route.topic]);
    const leader = this.table.leaderOf(route.topic, partition);
    if (leader === undefined) return { transport: await this.anyTransport(), leaderEpoch: undefined };
    return { transport: await this.transportTo(leader.leaderId), leaderEpoch: leader.leaderEpoch };
  }

  /** The first broker's connection while it is open, else another open one, else one to a live broker. */
  private anyTransport(): Promise<WebSocketTransport> {
    const first = this.connections.get(this.firstBrokerId)?.transport ?? null;
    if (first?.connected === true) return Promise.resolve(first);
    for (const connection of this.connections.values()) {
      if (connection.transport?.connected === true) return Promise.resolve(connection.transport);
    }
    if (first !== null && (this.table.brokers.size === 0 || this.table.brokers.has(this.firstBrokerId))) {
      return Promise.resolve(first);
    }
    const live = [...this.table.brokers.keys()];
    if (live.length === 0) return Promise.reject(noBrokerError());
    return this.transportTo(live[Math.floor(Math.random() * live.length)]!);
  }

  /** The connection to `brokerId` (at its advertised URL), opened if needed. */
  private transportTo(brokerId: number): Promise<WebSocketTransport> {
    const url = this.table.urlOf(brokerId);
    let connection = this.connections.get(brokerId);
    if (connection !== undefined && url !== undefined && connection.url !== url) {
      this.retire(connection);
      connection = undefined;
    }
    if (connection?.transport != null) return Promise.resolve(connection.transport);
    if (connection?.opening != null) return connection.opening;
    if (url === undefined) return Promise.reject(noBrokerError(brokerId));
    if (this.connections.size >= clientBrokerConnectionsMax) {
      return Promise.reject(
        new SpillwayError(
          'BACKPRESSURE',
          `this client holds ${clientBrokerConnectionsMax} broker connections (clientBrokerConnectionsMax)`,
          { retriable: true },
        ),
      );
    }
    const entry: Connection = { brokerId, url, transport: null, opening: null };
    entry.opening = WebSocketTransport.connect(url, this.options).then(
      (transport) => {
        entry.opening = null;
        if (this.isClosed || this.connections.get(brokerId) !== entry) {
          this.retired.add(transport);
          void transport.close();
          throw this.isClosed ? closedError('the client') : reroutedError(brokerId);
        }
        entry.transport = transport;
        this.adopt(transport);
        return transport;
      },
      (error: unknown) => {
        // Not kept: the next request to this broker tries again (after the caller's backoff).
        if (this.connections.get(brokerId) === entry) this.connections.delete(brokerId);
        throw error;
      },
    );
    this.connections.set(brokerId, entry);
    return entry.opening;
  }

  /** Registers the server request handlers and the disconnect forwarding on a new connection. */
  private adopt(transport: WebSocketTransport): void {
    const registered = new Map<number, () => void>();
    for (const [opcode, handler] of this.serverHandlers)
      registered.set(opcode, transport.onServerRequest(opcode, handler));
    this.registrations.set(transport, registered);
    transport.onDisconnect((error) => {
      for (const listener of this.disconnectListeners) listener(error);
    });
  }

  private retire(connection: Connection): void {
    if (this.connections.get(connection.brokerId) === connection)
      this.connections.delete(connection.brokerId);
    const transport = connection.transport;
    if (transport === null) return; // an opening one is closed when it opens (see transportTo)
    this.retired.add(transport);
    this.registrations.delete(transport);
    void transport.close();
  }

  /** One METADATA, to the first broker that answers (the usual one first, then the other live ones). */
  private async askMetadata(topics: string[]): Promise<void> {
    if (topics.length === 0) topics = [coordinatorTopics.groups];
    const tried = new Set<WebSocketTransport>();
    let lastError: unknown = noBrokerError();
    const brokerIds = [undefined, ...this.table.brokers.keys()];
    for (const brokerId of brokerIds) {
      if (this.isClosed) throw closedError('the client');
      let transport: WebSocketTransport;
      try {
        transport = brokerId === undefined ? await this.anyTransport() : await this.transportTo(brokerId);
      } catch (error) {
        lastError = error;
        continue;
      }
      if (tried.has(transport)) continue;
      tried.add(transport);
      try {
        const answer = await transport.request(Opcode.metadata, { topics });
        const metadata = clusterMetadataOf(answer.header);
        if (!metadata.cluster) continue; // a broker that left the cluster: ask another
        this.table.update(metadata, topics);
        this.retireGone();
        return;
      } catch (error) {
        lastError = error;
      }
    }
    throw lastError;
  }

  /** Closes the connections to brokers no longer live in the metadata (or at another URL now). */
  private retireGone(): void {
    for (const connection of [...this.connections.values()]) {
      const url = this.table.urlOf(connection.brokerId);
      if (url === undefined || url !== connection.url) this.retire(connection);
    }
  }
}

function noBrokerError(brokerId?: number): SpillwayError {
  return new SpillwayError(
    'CONNECTION_CLOSED',
    brokerId === undefined
      ? 'no live broker is known to this client'
      : `broker ${brokerId} is not among the live brokers the metadata names`,
    { retriable: true },
  );
}

function reroutedError(brokerId: number): SpillwayError {
  return new SpillwayError('CONNECTION_CLOSED', `the connection to broker ${brokerId} was replaced`, {
    retriable: true,
  });
}

/** Waits `ms`, or less if `signal` aborts. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted === true) {
      resolve();
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
