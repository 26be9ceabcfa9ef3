/**
 * NATS JetStream as a peer: a private `nats-server` with JetStream on file storage, once with the
 * default sync setting and once with `sync_interval: always` (only where the installed nats-server
 * knows that option: it is checked with `nats-server -t`, and the peer is reported unavailable
 * otherwise). Driven with the official client (`nats`, nats.js v2).
 *
 * - produce: `js.publish` awaiting each PubAck, `publishWindow` publishes in flight per connection.
 * - consume: one durable pull consumer (AckPolicy.All) per stream; each consumer `consume()`s in
 *   batches of `consumeBatchMessages` and acknowledges every `consumeBatchMessages`-th message
 *   (which acknowledges all before it). With `ack: 'each'` (queue mode) the consumer is
 *   AckPolicy.Explicit and every message is acknowledged on its own; a flush (one round trip) after
 *   the last ack stops the clock once the server has taken them all.
 * - latency: `js.publish` at a fixed rate; a live pull consumer on its own connection.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import {
  AckPolicy,
  type ConsumerMessages,
  connect,
  DeliverPolicy,
  type JetStreamManager,
  type JsMsg,
  type NatsConnection,
  RetentionPolicy,
  StorageType,
} from 'nats';
import {
  checkPayloadBytes,
  consumeBatchMessages,
  consumeUnackedMax,
  measureLatency,
  pipelined,
  publishWindow,
  throughput,
} from './load.js';
import {
  type ConsumeOptions,
  type ConsumeResult,
  type LatencyOptions,
  type LatencyResult,
  PeerUnavailableError,
  type ProduceOptions,
  type ProduceResult,
} from './peer.js';
import { requireExecutable, ServerPeer } from './server-peer.js';
import { canConnect, freePort, ServerProcess } from './server-process.js';
import { freshDirectory, timedUntil } from './workload.js';

export type NatsSync = 'default' | 'always';

const durabilityOf: Record<NatsSync, string> = {
  default:
    'JetStream file storage, default sync: the PubAck is sent once the message is written to the OS ' +
    '(page cache), before any fsync; the file store syncs only in the background (every 2 min by ' +
    'default in releases that have sync_interval; with nats-server 2.9.10, strace showed no fsync at ' +
    'all in the 12 s after 2,000 publishes), so a power failure or kernel crash can lose acknowledged ' +
    'messages; a crash of nats-server alone cannot',
  always:
    'JetStream file storage, sync_interval always: every write is fsynced before the PubAck: an ' +
    'acknowledged message is on disk',
};

const durableName = 'bench';

export class NatsJetStreamPeer extends ServerPeer<NatsConnection> {
  readonly name: string;
  readonly durability: string;
  private port = 0;
  private streamNumber = 0;
  private producedStream: string | undefined;
  private admin: NatsConnection | undefined;
  private manager: JetStreamManager | undefined;

  constructor(readonly sync: NatsSync) {
    super();
    this.name = `nats-jetstream file (sync ${sync})`;
    this.durability = durabilityOf[sync];
  }

  async start(scratchDirectory: string): Promise<void> {
    const scratchDir = path.resolve(scratchDirectory); // the servers run in their own directories
    const executable = requireExecutable('nats-server');
    const storeDirectory = path.join(scratchDir, `nats-${this.sync}`);
    freshDirectory(storeDirectory); // a fresh, empty store every start
    this.port = await freePort();
    const port = this.port;
    const configFile = path.join(scratchDir, `nats-${this.sync}.conf`);
    const syncLine = this.sync === 'always' ? '\n  sync_interval: always' : '';
    writeFileSync(
      configFile,
      `listen: "127.0.0.1:${port}"\njetstream {\n  store_dir: ${JSON.stringify(storeDirectory)}${syncLine}\n}\n`,
    );
    const version = spawnSync(executable, ['--version'], { encoding: 'utf8' }).stdout.trim();
    this.version = version;
    const check = spawnSync(executable, ['-c', configFile, '-t'], { encoding: 'utf8', timeout: 10_000 });
    if (check.status !== 0) {
      const message = `${check.stderr}${check.stdout}`.trim().split('\n')[0] ?? '';
      const reason = message.includes('unknown field "sync_interval"')
        ? `${version} does not support the jetstream option sync_interval (config test: ${message})`
        : `${version} rejects the configuration: ${message}`;
      throw new PeerUnavailableError(reason);
    }
    this.server = await ServerProcess.start({
      name: 'nats-server',
      command: executable,
      args: ['-c', configFile],
      cwd: storeDirectory,
      logFile: path.join(scratchDir, `nats-${this.sync}.log`),
      ready: () => canConnect(port),
      startTimeoutMs: 15_000,
      stopTimeoutMs: 10_000,
    });
    this.admin = await this.connection();
    this.manager = await this.admin.jetstreamManager({ timeout: 10_000 });
    const account = await this.manager.getAccountInfo();
    if (account.limits.max_storage === 0) throw new Error('nats-server: JetStream has no file storage');
  }

  protected override async closeClients(): Promise<void> {
    await super.closeClients();
    this.admin = undefined;
    this.manager = undefined;
  }

  async produce(options: ProduceOptions): Promise<ProduceResult> {
    const { stream, subject } = await this.newStream();
    this.producedStream = stream;
    return this.produceWorkload(options, {
      connect: () => this.connection(),
      producer: (connection) => connection,
      publish: (connection, messages, deadline, pool) => {
        const jetstream = connection.jetstream();
        return pipelined(messages, publishWindow, deadline, async (index) => {
          await jetstream.publish(subject, pool[index % pool.length]!);
          return 1;
        });
      },
    });
  }

  async consume(options: ConsumeOptions): Promise<ConsumeResult> {
    const stream = this.producedStream;
    if (stream === undefined) throw new Error('consume before produce');
    const target = Math.min(options.messages, this.producedCount);
    const each = options.ack === 'each';
    await this.jsm().consumers.add(stream, {
      durable_name: durableName,
      ack_policy: each ? AckPolicy.Explicit : AckPolicy.All,
      deliver_policy: DeliverPolicy.All,
      max_ack_pending: consumeUnackedMax,
    });
    const consumers = await Promise.all(Array.from({ length: options.consumers }, () => this.connection()));
    const subscriptions: ConsumerMessages[] = [];
    let received = 0;
    const stopAll = (): void => {
      for (const subscription of subscriptions) subscription.stop();
    };
    const elapsedMs = await timedUntil(options.durationMsMax, stopAll, () =>
      Promise.all(
        consumers.map(async (connection) => {
          const consumer = await connection.jetstream().consumers.get(stream, durableName);
          const messages = await consumer.consume({ max_messages: consumeBatchMessages });
          subscriptions.push(messages);
          let sinceAck = 0;
          let last: JsMsg | undefined;
          for await (const message of messages) {
            checkPayloadBytes(message.data, this.messageBytes);
            received += 1;
            sinceAck += 1;
            last = message;
            if (each || sinceAck === consumeBatchMessages) {
              message.ack();
              sinceAck = 0;
            }
            if (received >= target) break;
          }
          messages.stop();
          if (last !== undefined && sinceAck > 0) await last.ackAck();
          if (each) await connection.flush(); // a round trip: the server has taken every ack before it
          if (received >= target) stopAll();
        }),
      ),
    );
    await this.clients.release(consumers);
    await this.jsm().consumers.delete(stream, durableName);
    return { ...throughput(received, this.messageBytes, elapsedMs), received };
  }

  async endToEndLatency(options: LatencyOptions): Promise<LatencyResult> {
    const { stream, subject } = await this.newStream();
    this.producedStream = undefined;
    await this.jsm().consumers.add(stream, {
      durable_name: durableName,
      ack_policy: AckPolicy.All,
      deliver_policy: DeliverPolicy.New,
      max_ack_pending: consumeUnackedMax,
    });
    const producer = await this.connection();
    const consumerConnection = await this.connection();
    let messages: ConsumerMessages | undefined;
    let loop: Promise<void> = Promise.resolve();
    try {
      return await measureLatency(options, {
        startConsumer: async (onPayload) => {
          const consumer = await consumerConnection.jetstream().consumers.get(stream, durableName);
          const subscription = await consumer.consume({ max_messages: consumeBatchMessages });
          messages = subscription;
          loop = (async () => {
            for await (const message of subscription) {
              onPayload(message.data);
              message.ack();
            }
          })();
        },
        send: (payload) => producer.jetstream().publish(subject, payload),
        stopConsumer: async () => {
          messages?.stop();
          await loop;
        },
      });
    } finally {
      await this.clients.release([producer, consumerConnection]);
      await this.jsm().streams.delete(stream);
    }
  }

  /** Deletes the previous stream and makes a new, empty one on file storage. */
  private async newStream(): Promise<{ stream: string; subject: string }> {
    if (this.producedStream !== undefined) await this.jsm().streams.delete(this.producedStream);
    this.producedStream = undefined;
    this.streamNumber += 1;
    const stream = `BENCH_${this.streamNumber}`;
    const subject = `bench.${this.streamNumber}`;
    await this.jsm().streams.add({
      name: stream,
      subjects: [subject],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      num_replicas: 1,
    });
    return { stream, subject };
  }

  private jsm(): JetStreamManager {
    if (this.manager === undefined) throw new Error('nats peer not started');
    return this.manager;
  }

  private async connection(): Promise<NatsConnection> {
    const connection = await connect({ servers: `127.0.0.1:${this.port}`, reconnect: false, timeout: 5000 });
    return this.clients.add(connection);
  }
}
