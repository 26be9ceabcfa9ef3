/**
 * RabbitMQ as a peer: a private node (`bench@localhost`) of the Debian rabbitmq-server, one quorum
 * queue per measurement, publisher confirms. Driven with the official client (`amqplib`).
 *
 * The private node needs its own everything, all under the scratch directory or on free ports:
 * an epmd (port mapper) we start ourselves on a free port (ERL_EPMD_PORT) so the system's epmd on
 * 4369 is neither used nor started; the AMQP port; the Erlang distribution port (bound to
 * 127.0.0.1); HOME (the Erlang cookie is written there); the Mnesia, log, config, plugins and env
 * files (RABBITMQ_CONF_ENV_FILE points at an empty file, so /etc/rabbitmq/rabbitmq-env.conf is not
 * read). We run `/usr/lib/rabbitmq/bin/rabbitmq-server` directly, as the current user: the
 * /usr/sbin wrapper would switch to the rabbitmq user and the system's directories.
 *
 * - produce: a confirm channel per producer connection, `sendToQueue(persistent)`, `publishWindow`
 *   unconfirmed messages in flight.
 * - consume: a channel per consumer with prefetch `consumeUnackedMax`, acknowledging every
 *   `consumeBatchMessages`-th delivery with `allUpTo`; with `ack: 'each'` (queue mode) every delivery
 *   is acknowledged on its own (basic.ack, multiple false). AMQP does not confirm acks: the clock
 *   stops at the last ack sent.
 * - latency: confirmed publishes at a fixed rate; a live consumer acknowledging each delivery.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage, connect } from 'amqplib';
import { findExecutable } from './install.js';
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
import { ServerPeer } from './server-peer.js';
import { canConnect, freePort, ServerProcess } from './server-process.js';
import { freshDirectory } from './workload.js';

/** The server script itself (not the /usr/sbin wrapper that switches user). */
const serverScript = '/usr/lib/rabbitmq/bin/rabbitmq-server';

/** Boot takes ~5–10 s here; a loaded machine may need more. */
const startTimeoutMs = 90_000;

export class RabbitmqQuorumPeer extends ServerPeer<ChannelModel> {
  readonly name = 'rabbitmq quorum queue (confirms)';
  readonly durability =
    'quorum queue, publisher confirms, persistent messages: the confirm is sent once the message is in ' +
    'the Raft log and fsynced on a majority of the members; a single member here, so after the local ' +
    'fsync (the write-ahead log is fsynced in batches, which the confirms wait for): a confirmed ' +
    'message is on disk';
  private epmd: ServerProcess | undefined;
  private port = 0;
  private queueNumber = 0;
  private producedQueue: string | undefined;

  async start(scratchDirectory: string): Promise<void> {
    const scratchDir = path.resolve(scratchDirectory); // the servers run in their own directories
    const epmdExecutable = findExecutable('epmd');
    if (findExecutable('rabbitmq-server') === undefined || epmdExecutable === undefined) {
      throw new PeerUnavailableError('rabbitmq-server is not installed (node dist/bench/peers/install.js)');
    }
    if (findExecutable(serverScript) === undefined) {
      throw new PeerUnavailableError(`${serverScript} not found: not the Debian package layout`);
    }
    const base = path.join(scratchDir, 'rabbitmq');
    freshDirectory(base); // a fresh node every start
    const directories = {
      home: path.join(base, 'home'),
      mnesia: path.join(base, 'mnesia'),
      log: path.join(base, 'log'),
      pluginsExpand: path.join(base, 'plugins-expand'),
    };
    for (const directory of Object.values(directories)) mkdirSync(directory, { recursive: true });
    const ports = await distinctFreePorts(3);
    const [amqpPort, distributionPort, epmdPort] = ports as [number, number, number];
    this.port = amqpPort;
    const configFile = path.join(base, 'rabbitmq.conf');
    writeFileSync(
      configFile,
      [
        `listeners.tcp.1 = 127.0.0.1:${amqpPort}`,
        'log.file.level = warning',
        'log.console = true',
        'log.console.level = warning',
        '',
      ].join('\n'),
    );
    const pluginsFile = path.join(base, 'enabled_plugins');
    writeFileSync(pluginsFile, '[].\n');
    const envFile = path.join(base, 'rabbitmq-env.conf');
    writeFileSync(envFile, '');

    this.epmd = await ServerProcess.start({
      name: 'epmd (rabbitmq)',
      command: epmdExecutable,
      args: ['-port', String(epmdPort), '-address', '127.0.0.1'],
      logFile: path.join(scratchDir, 'rabbitmq-epmd.log'),
      ready: () => canConnect(epmdPort),
      startTimeoutMs: 10_000,
      stopTimeoutMs: 5000,
    });
    const environment: NodeJS.ProcessEnv = {
      ...process.env,
      HOME: directories.home,
      ERL_EPMD_PORT: String(epmdPort),
      ERL_EPMD_ADDRESS: '127.0.0.1',
      RABBITMQ_NODENAME: 'bench@localhost',
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(amqpPort),
      RABBITMQ_DIST_PORT: String(distributionPort),
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
      RABBITMQ_MNESIA_BASE: directories.mnesia,
      RABBITMQ_LOG_BASE: directories.log,
      RABBITMQ_CONFIG_FILE: configFile,
      RABBITMQ_ADVANCED_CONFIG_FILE: path.join(base, 'advanced.config'),
      RABBITMQ_ENABLED_PLUGINS_FILE: pluginsFile,
      RABBITMQ_PLUGINS_EXPAND_DIR: directories.pluginsExpand,
      RABBITMQ_CONF_ENV_FILE: envFile,
      RABBITMQ_PID_FILE: path.join(base, 'rabbitmq.pid'),
    };
    try {
      this.server = await ServerProcess.start({
        name: 'rabbitmq-server',
        command: serverScript,
        args: [],
        env: environment,
        cwd: base,
        logFile: path.join(scratchDir, 'rabbitmq.log'),
        ready: () => canConnect(amqpPort),
        startTimeoutMs,
        stopTimeoutMs: 30_000,
      });
    } catch (error) {
      throw new PeerUnavailableError(
        `rabbitmq-server did not start: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    const connection = await this.connection();
    this.version = `rabbitmq ${String(connection.connection.serverProperties.version ?? 'unknown')}`;
    await this.clients.release([connection]);
  }

  override async stop(): Promise<void> {
    await super.stop();
    await this.epmd?.stop();
    this.epmd = undefined;
  }

  async produce(options: ProduceOptions): Promise<ProduceResult> {
    const queue = await this.newQueue();
    this.producedQueue = queue;
    return this.produceWorkload(options, {
      connect: () => this.connection(),
      producer: (connection) => connection.createConfirmChannel(),
      publish: (channel, messages, deadline, pool) =>
        pipelined(messages, publishWindow, deadline, (index) =>
          publishConfirmed(channel, queue, pool[index % pool.length]!),
        ),
    });
  }

  async consume(options: ConsumeOptions): Promise<ConsumeResult> {
    const queue = this.producedQueue;
    if (queue === undefined) throw new Error('consume before produce');
    const target = Math.min(options.messages, this.producedCount);
    const consumers = await Promise.all(Array.from({ length: options.consumers }, () => this.connection()));
    const channels = await Promise.all(consumers.map((connection) => connection.createChannel()));
    for (const channel of channels) await channel.prefetch(consumeUnackedMax);
    let received = 0;
    let finish: () => void = () => {};
    const finished = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const start = performance.now();
    const timer = setTimeout(() => finish(), options.durationMsMax);
    const lastOf = new Map<Channel, { message: ConsumeMessage; unacked: number }>();
    const tags = await Promise.all(
      channels.map((channel) =>
        channel.consume(
          queue,
          (message) => {
            if (message === null) return; // cancelled by the server
            checkPayloadBytes(message.content, this.messageBytes);
            received += 1;
            if (options.ack === 'each') {
              channel.ack(message); // this delivery only
              if (received >= target) finish();
              return;
            }
            const last = { message, unacked: (lastOf.get(channel)?.unacked ?? 0) + 1 };
            if (last.unacked === consumeBatchMessages) {
              channel.ack(message, true);
              last.unacked = 0;
            }
            lastOf.set(channel, last);
            if (received >= target) finish();
          },
          { noAck: false },
        ),
      ),
    );
    if (target === 0) finish();
    await finished;
    clearTimeout(timer);
    const elapsedMs = performance.now() - start;
    for (const [index, channel] of channels.entries()) {
      await channel.cancel(tags[index]!.consumerTag);
      const last = lastOf.get(channel);
      if (last !== undefined && last.unacked > 0) channel.ack(last.message, true);
      await channel.close();
    }
    await this.clients.release(consumers);
    return { ...throughput(Math.min(received, target), this.messageBytes, elapsedMs), received };
  }

  async endToEndLatency(options: LatencyOptions): Promise<LatencyResult> {
    const queue = await this.newQueue();
    this.producedQueue = undefined;
    const producer = await this.connection();
    const consumer = await this.connection();
    const publishChannel = await producer.createConfirmChannel();
    const consumeChannel = await consumer.createChannel();
    await consumeChannel.prefetch(consumeUnackedMax);
    let consumerTag: string | undefined;
    try {
      return await measureLatency(options, {
        startConsumer: async (onPayload) => {
          const reply = await consumeChannel.consume(
            queue,
            (message) => {
              if (message === null) return;
              onPayload(message.content);
              consumeChannel.ack(message);
            },
            { noAck: false },
          );
          consumerTag = reply.consumerTag;
        },
        send: (payload) => publishConfirmed(publishChannel, queue, payload),
        stopConsumer: async () => {
          if (consumerTag !== undefined) await consumeChannel.cancel(consumerTag);
        },
      });
    } finally {
      await this.clients.release([producer, consumer]);
    }
  }

  /** Deletes the previous queue and declares a new, empty quorum queue. */
  private async newQueue(): Promise<string> {
    const connection = await this.connection();
    try {
      const channel = await connection.createChannel();
      if (this.producedQueue !== undefined) await channel.deleteQueue(this.producedQueue);
      this.producedQueue = undefined;
      this.queueNumber += 1;
      const queue = `bench-${this.queueNumber}`;
      await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
      return queue;
    } finally {
      await this.clients.release([connection]);
    }
  }

  private async connection(): Promise<ChannelModel> {
    const connection = await connect(`amqp://guest:guest@127.0.0.1:${this.port}`);
    connection.on('error', () => {}); // surfaced by the failing operation
    return this.clients.add(connection);
  }
}

/** Publishes one persistent message; resolves with 1 when the broker confirms it, rejects on a nack. */
function publishConfirmed(channel: ConfirmChannel, queue: string, payload: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    channel.sendToQueue(queue, payload, { persistent: true }, (error: unknown) => {
      if (error === null || error === undefined) resolve(1);
      else reject(error instanceof Error ? error : new Error(`publish nacked: ${String(error)}`));
    });
  });
}

async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  for (let attempt = 0; ports.size < count && attempt < 100; attempt += 1) ports.add(await freePort());
  if (ports.size < count) throw new Error(`no ${count} distinct free ports`);
  return [...ports];
}
