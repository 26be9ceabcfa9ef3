/**
 * The client's entry point: `await Spillway.connect('ws://host:port')` for a broker over the
 * network, `await Spillway.connect(broker)` for a broker in this process (anything with the
 * BrokerApi methods, e.g. what `Broker.open()` returns), with the same API and the same errors.
 * One Spillway holds one transport (one WebSocket connection), shared by its admin, producers
 * and consumers; in a cluster (the broker's METADATA says so) one connection per broker it needs,
 * each request sent to the broker leading its partition or service (cluster-transport.ts).
 * close() closes the consumers, flushes and closes the producers, then the transport.
 */
import { InvalidArgumentError } from '../errors.js';
import type { BrokerApi } from '../protocol/broker-api.js';
import { Admin } from './admin.js';
import { ClusterTransport } from './cluster-transport.js';
import { Consumer, type ConsumerOptions } from './consumer.js';
import { GroupConsumer, type GroupConsumerOptions } from './group-consumer.js';
import { InProcessTransport, isBrokerApi } from './in-process-transport.js';
import { MetadataCache } from './metadata-cache.js';
import { Producer, type ProducerOptions } from './producer.js';
import { QueueConsumer, type QueueConsumerOptions } from './queue-consumer.js';
import type { ServerRequestHandler } from './server-requests.js';
import { TransactionalProducer, type TransactionalProducerOptions } from './transactional-producer.js';
import type { HelloInfo, Transport } from './transport.js';
import { WebSocketTransport } from './websocket-transport.js';

export interface SpillwayOptions {
  /** Sent to the broker in HELLO. */
  clientId?: string;
  /**
   * The principal's token (`NAME.SECRET`), sent in HELLO, for a broker started with --auth-file
   * (docs/SECURITY.md). Ignored in-process: in-process clients are trusted.
   */
  token?: string;
  /** wss://: trusted certificate authorities (PEM), e.g. a self-signed broker certificate. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** A request not answered within this fails with TIMEOUT (retriable). Default 30 000. */
  requestTimeoutMs?: number;
  /** WebSocket: opening the connection plus HELLO. Default 10 000. */
  connectTimeoutMs?: number;
  /** WebSocket: first wait before reconnecting after a failed attempt; doubles. Default 100. */
  reconnectBackoffMs?: number;
  /** WebSocket: longest wait between reconnect attempts. Default 5 000. */
  reconnectBackoffMaxMs?: number;
  /** Requests in flight on the connection (at most what the broker allows, 1024). */
  inFlightRequestsMax?: number;
  /** Requests waiting for an in-flight slot before more fail with BACKPRESSURE. Default 100 000. */
  queuedRequestsMax?: number;
  /** Producers fetch a topic's partition count again when it is older than this. Default 60 000. */
  metadataMaxAgeMs?: number;
  /**
   * In a cluster: send each request to the broker leading its partition or service, following leader
   * changes (docs/CLUSTER.md, "Clients"). Default true; false: every request to the broker connected to.
   */
  clusterRouting?: boolean;
  /** In a cluster: longest time one request is rerouted (leader changes, lost brokers) before its error is given up. Default 30 000. */
  rerouteTimeoutMs?: number;
}

export const spillwayDefaults = {
  metadataMaxAgeMs: 60_000,
} as const;

export class Spillway {
  readonly admin: Admin;
  private readonly transport: Transport;
  private readonly metadata: MetadataCache;
  private readonly producers = new Set<Producer>();
  private readonly consumers = new Set<Consumer | GroupConsumer | QueueConsumer>();
  private readonly clientId: string | undefined;
  private closing: Promise<void> | null = null;

  private constructor(transport: Transport, options: SpillwayOptions) {
    this.transport = transport;
    this.clientId = options.clientId;
    this.admin = new Admin(transport);
    this.metadata = new MetadataCache(
      this.admin,
      options.metadataMaxAgeMs ?? spillwayDefaults.metadataMaxAgeMs,
    );
  }

  /**
   * Connects to a broker: a `ws://` / `wss://` URL, or a broker object in this process.
   * Rejects if the broker cannot be reached or speaks another protocol version.
   */
  static async connect(target: string | BrokerApi, options: SpillwayOptions = {}): Promise<Spillway> {
    const maxAgeMs = options.metadataMaxAgeMs;
    if (maxAgeMs !== undefined && (!Number.isSafeInteger(maxAgeMs) || maxAgeMs < 0)) {
      throw new InvalidArgumentError(`metadataMaxAgeMs must be an integer >= 0, got ${maxAgeMs}`);
    }
    if (options.clusterRouting !== undefined && typeof options.clusterRouting !== 'boolean') {
      throw new InvalidArgumentError('clusterRouting must be a boolean');
    }
    ClusterTransport.checkOptions(options);
    if (typeof target === 'string') {
      const first = await WebSocketTransport.connect(target, options);
      if (options.clusterRouting === false) return new Spillway(first, options);
      try {
        return new Spillway(await ClusterTransport.over(first, options), options);
      } catch (error) {
        await first.close();
        throw error;
      }
    }
    if (isBrokerApi(target)) return new Spillway(await InProcessTransport.connect(target, options), options);
    throw new InvalidArgumentError(
      'Spillway.connect takes a ws:// URL or a broker (an object with the BrokerApi services)',
    );
  }

  /** What the broker said when the client connected: versions and limits. */
  get broker(): HelloInfo {
    return this.transport.hello;
  }

  /**
   * Registers the handler answering the broker's requests of `opcode` on this client's connection
   * (and on the next ones after a reconnect); returns an unregister function. One handler per
   * opcode. A request with no handler is answered NO_HANDLER, a handler that throws HANDLER_FAILED;
   * PING is answered built in. Needs protocol version 2 (`broker.protocolVersion`): an older broker
   * sends no server requests.
   */
  onServerRequest(opcode: number, handler: ServerRequestHandler): () => void {
    this.assertOpen();
    return this.transport.onServerRequest(opcode, handler);
  }

  /** A producer; with `group` and `checkTransaction`, a TransactionalProducer (transactional-producer.ts). */
  producer(options: TransactionalProducerOptions): TransactionalProducer;
  producer(options?: ProducerOptions): Producer;
  producer(options: ProducerOptions | TransactionalProducerOptions = {}): Producer {
    this.assertOpen();
    const transactional =
      options !== null &&
      typeof options === 'object' &&
      (options.group !== undefined || options.checkTransaction !== undefined);
    const producer = transactional
      ? new TransactionalProducer(this.transport, this.metadata, options as TransactionalProducerOptions)
      : new Producer(this.transport, this.metadata, options as ProducerOptions);
    this.producers.add(producer);
    return producer;
  }

  /**
   * A consumer, by mode: 'shared' or 'key_shared' (with `group`): a QueueConsumer (queue-consumer.ts);
   * 'group' (the default with a group) or 'broadcast': a GroupConsumer (group-consumer.ts); without a
   * group: the log consumer (consumer.ts).
   */
  consumer(options: QueueConsumerOptions): QueueConsumer;
  consumer(options: GroupConsumerOptions & { group: string }): GroupConsumer;
  consumer(options: ConsumerOptions): Consumer;
  consumer(
    options: ConsumerOptions | GroupConsumerOptions | QueueConsumerOptions,
  ): Consumer | GroupConsumer | QueueConsumer {
    this.assertOpen();
    const mode = (options as { mode?: unknown } | null)?.mode;
    const group = (options as { group?: unknown } | null)?.group;
    let consumer: Consumer | GroupConsumer | QueueConsumer;
    if (mode === 'shared' || mode === 'key_shared') {
      consumer = new QueueConsumer(this.transport, options as QueueConsumerOptions);
    } else if (group !== undefined && (mode === undefined || mode === 'group' || mode === 'broadcast')) {
      consumer = new GroupConsumer(this.transport, this.admin, {
        ...(options as GroupConsumerOptions),
        ...(this.clientId !== undefined ? { clientId: this.clientId } : {}),
      });
    } else {
      consumer = new Consumer(this.transport, this.admin, options as ConsumerOptions);
    }
    this.consumers.add(consumer);
    return consumer;
  }

  /** Closes consumers, flushes and closes producers, then the connection. Idempotent. */
  close(): Promise<void> {
    if (this.closing === null) {
      this.closing = (async () => {
        try {
          await Promise.allSettled([...this.consumers].map((consumer) => consumer.close()));
          await Promise.allSettled([...this.producers].map((producer) => producer.close()));
        } finally {
          await this.transport.close();
        }
      })();
    }
    return this.closing;
  }

  private assertOpen(): void {
    if (this.closing !== null || this.transport.closed)
      throw new InvalidArgumentError('this Spillway client is closed');
  }
}
