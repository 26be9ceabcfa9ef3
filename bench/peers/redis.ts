/**
 * Redis Streams as a peer: a private `redis-server` with the append-only file on, `appendfsync
 * everysec` or `always`, RDB snapshots off; driven with the official client (node-redis, RESP2).
 *
 * - produce: XADD with one field `p` = payload, sent in explicit pipelines of `pipelineMessages`;
 *   each producer connection keeps `publishWindow` XADDs in flight (10 pipelines).
 * - consume: one consumer group per stream (the broker keeps the position); each consumer loops
 *   XREADGROUP COUNT `consumeBatchMessages` and XACKs each batch, the XACK pipelined with the next read.
 *   With `ack: 'each'` (queue mode) every entry gets its own XACK (one id per command, the batch's
 *   XACKs pipelined together, their replies awaited before the next read's are used).
 * - latency: XADD at a fixed rate; a live consumer on its own connection with XREADGROUP BLOCK.
 */

import * as net from 'node:net';
import * as path from 'node:path';
import { createClient } from 'redis';
import {
  checkPayloadBytes,
  consumeBatchMessages,
  measureLatency,
  pipelined,
  publishWindow,
  throughput,
} from './load.js';
import type {
  ConsumeOptions,
  ConsumeResult,
  LatencyOptions,
  LatencyResult,
  ProduceOptions,
  ProduceResult,
} from './peer.js';
import { requireExecutable, ServerPeer } from './server-peer.js';
import { freePort, ServerProcess } from './server-process.js';
import { freshDirectory } from './workload.js';

export type RedisFsync = 'everysec' | 'always';

const durabilityOf: Record<RedisFsync, string> = {
  everysec:
    'appendonly yes, appendfsync everysec: XADD is answered after write() to the AOF, before fsync; ' +
    'fsync runs once a second in the background, so about 1 s (up to 2 s) of acknowledged writes can be ' +
    'lost on power failure or kernel crash; none on a crash of the redis process alone',
  always:
    'appendonly yes, appendfsync always: the AOF is fsynced before replies are sent (one fsync per event ' +
    'loop iteration covers every pipelined command in it): an acknowledged XADD is on disk',
};

/** How long a blocking read in the latency consumer waits, which bounds how long stopping it takes. */
const blockMs = 100;

/**
 * XADDs per explicit pipeline (MULTI-less `execAsPipeline`): node-redis sends ~3.5x more XADDs per
 * second this way than with one promise per command (measured here: 176k vs 46–62k msg/s).
 */
const pipelineMessages = 100;

const group = 'bench';
const field = 'p';

function connect(port: number) {
  return createClient({ socket: { host: '127.0.0.1', port, connectTimeout: 5000 }, RESP: 2 });
}
type RedisClient = ReturnType<typeof connect>;

export class RedisStreamsPeer extends ServerPeer<RedisClient> {
  readonly name: string;
  readonly durability: string;
  private port = 0;
  private streamNumber = 0;
  private producedStream: string | undefined;
  /** For stream and group administration, from start to stop. */
  private admin: RedisClient | undefined;

  constructor(readonly fsync: RedisFsync) {
    super();
    this.name = `redis-streams aof (appendfsync ${fsync})`;
    this.durability = durabilityOf[fsync];
  }

  async start(scratchDirectory: string): Promise<void> {
    const scratchDir = path.resolve(scratchDirectory); // the servers run in their own directories
    const executable = requireExecutable('redis-server');
    const dataDirectory = path.join(scratchDir, `redis-${this.fsync}`);
    freshDirectory(dataDirectory); // a fresh, empty AOF every start
    this.port = await freePort();
    const port = this.port;
    this.server = await ServerProcess.start({
      name: 'redis-server',
      command: executable,
      // biome-ignore format: one option per line
      args: [
        '--port', String(port),
        '--bind', '127.0.0.1',
        '--dir', dataDirectory,
        '--appendonly', 'yes',
        '--appendfsync', this.fsync,
        '--save', '',
        '--daemonize', 'no',
        '--logfile', '',
      ],
      cwd: dataDirectory,
      logFile: path.join(scratchDir, `redis-${this.fsync}.log`),
      ready: () => answersPing(port),
      startTimeoutMs: 10_000,
      stopTimeoutMs: 10_000,
    });
    const client = await this.client();
    this.admin = client;
    const appendfsync = await client.sendCommand(['CONFIG', 'GET', 'appendfsync']);
    if (!Array.isArray(appendfsync) || String(appendfsync[1]) !== this.fsync) {
      throw new Error(`redis-server: appendfsync is ${JSON.stringify(appendfsync)}, expected ${this.fsync}`);
    }
    const info = String(await client.sendCommand(['INFO', 'server']));
    this.version = `redis ${/redis_version:([^\r\n]+)/.exec(info)?.[1] ?? 'unknown'}`;
  }

  protected override async closeClients(): Promise<void> {
    await this.clients.closeAll((client) => client.destroy());
    this.admin = undefined;
  }

  async produce(options: ProduceOptions): Promise<ProduceResult> {
    const admin = this.adminClient();
    if (this.producedStream !== undefined) await admin.sendCommand(['DEL', this.producedStream]);
    this.streamNumber += 1;
    const stream = `bench:${this.streamNumber}`;
    this.producedStream = stream;
    return this.produceWorkload(options, {
      connect: () => this.client(),
      producer: (client) => client,
      publish: (client, messages, deadline, pool) => {
        const pipelines = Math.ceil(messages / pipelineMessages);
        return pipelined(pipelines, publishWindow / pipelineMessages, deadline, async (pipelineIndex) => {
          const first = pipelineIndex * pipelineMessages;
          const size = Math.min(pipelineMessages, messages - first);
          const pipeline = client.multi();
          for (let index = first; index < first + size; index += 1) {
            pipeline.addCommand(['XADD', stream, '*', field, pool[index % pool.length]!]);
          }
          const replies = await pipeline.execAsPipeline();
          if (replies.length !== size)
            throw new Error(`pipeline of ${size} XADDs got ${replies.length} replies`);
          return size;
        });
      },
    });
  }

  async consume(options: ConsumeOptions): Promise<ConsumeResult> {
    const stream = this.producedStream;
    if (stream === undefined) throw new Error('consume before produce');
    const target = Math.min(options.messages, this.producedCount);
    const admin = this.adminClient();
    await admin.sendCommand(['XGROUP', 'CREATE', stream, group, '0']);
    const consumers = await Promise.all(Array.from({ length: options.consumers }, () => this.client()));
    let received = 0;
    const start = performance.now();
    const deadline = start + options.durationMsMax;
    await Promise.all(
      consumers.map(async (client, consumer) => {
        let pendingAck: Promise<unknown> = Promise.resolve();
        while (received < target && performance.now() < deadline) {
          const reply = await client.sendCommand(
            // biome-ignore format: command words together
            ['XREADGROUP', 'GROUP', group, `c${consumer}`, 'COUNT', String(consumeBatchMessages), 'STREAMS', stream, '>'],
            { typeMapping: { [blobString]: Buffer } },
          );
          await pendingAck;
          const entries = streamEntries(reply);
          if (entries.length === 0) break; // drained: the others took the rest
          for (const entry of entries) checkPayloadBytes(entry.payload, this.messageBytes);
          received += entries.length;
          pendingAck =
            options.ack === 'each'
              ? Promise.all(entries.map((entry) => client.sendCommand(['XACK', stream, group, entry.id])))
              : client.sendCommand(['XACK', stream, group, ...entries.map((entry) => entry.id)]);
        }
        await pendingAck;
      }),
    );
    const elapsedMs = performance.now() - start;
    await this.clients.release(consumers);
    await admin.sendCommand(['XGROUP', 'DESTROY', stream, group]);
    if (received > target) throw new Error(`consumed ${received} of ${target}: duplicates`);
    return { ...throughput(received, this.messageBytes, elapsedMs), received };
  }

  async endToEndLatency(options: LatencyOptions): Promise<LatencyResult> {
    const admin = this.adminClient();
    if (this.producedStream !== undefined) await admin.sendCommand(['DEL', this.producedStream]);
    this.producedStream = undefined;
    this.streamNumber += 1;
    const stream = `bench:${this.streamNumber}`;
    await admin.sendCommand(['XGROUP', 'CREATE', stream, group, '$', 'MKSTREAM']);
    const producer = await this.client();
    const consumer = await this.client();
    let stopping = false;
    let loop: Promise<void> = Promise.resolve();
    try {
      return await measureLatency(options, {
        startConsumer: async (onPayload) => {
          loop = (async () => {
            while (!stopping) {
              const reply = await consumer.sendCommand(
                // biome-ignore format: command words together
                ['XREADGROUP', 'GROUP', group, 'c0', 'BLOCK', String(blockMs), 'COUNT', String(consumeBatchMessages), 'STREAMS', stream, '>'],
                { typeMapping: { [blobString]: Buffer } },
              );
              const entries = streamEntries(reply);
              for (const entry of entries) onPayload(entry.payload);
              if (entries.length > 0) {
                await consumer.sendCommand(['XACK', stream, group, ...entries.map((entry) => entry.id)]);
              }
            }
          })();
        },
        send: (payload) => producer.sendCommand(['XADD', stream, '*', field, payload]),
        stopConsumer: async () => {
          stopping = true;
          await loop;
        },
      });
    } finally {
      await this.clients.release([producer, consumer]);
      await admin.sendCommand(['DEL', stream]);
    }
  }

  private adminClient(): RedisClient {
    if (this.admin === undefined) throw new Error('redis peer not started');
    return this.admin;
  }

  private async client(): Promise<RedisClient> {
    const client = connect(this.port);
    client.on('error', () => {}); // surfaced by the failing command; the client must not crash the process
    await client.connect();
    return this.clients.add(client);
  }
}

/** True when the server answers PING with PONG (not LOADING or a refused connection). */
async function answersPing(port: number, timeoutMs: number = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let answer = '';
    const done = (result: boolean): void => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (data) => {
      answer += data.toString('latin1');
      if (answer.includes('\r\n')) done(answer.startsWith('+PONG'));
    });
  });
}

/** RESP type code of bulk strings ('$'); mapped to Buffer so payloads arrive as bytes, not UTF-8 text. */
const blobString = 36;

interface StreamEntry {
  id: Buffer;
  payload: Buffer;
}

/** Entries of a RESP2 XREAD/XREADGROUP reply: null, or [[stream, [[id, [field, value, ...]], ...]], ...]. */
function streamEntries(reply: unknown): StreamEntry[] {
  if (reply === null) return [];
  if (!Array.isArray(reply)) throw new Error(`unexpected XREADGROUP reply ${typeof reply}`);
  const entries: StreamEntry[] = [];
  for (const streamReply of reply) {
    const items: unknown = Array.isArray(streamReply) ? streamReply[1] : undefined;
    if (!Array.isArray(items)) throw new Error('unexpected XREADGROUP stream reply');
    for (const item of items) {
      const id: unknown = Array.isArray(item) ? item[0] : undefined;
      const fields: unknown = Array.isArray(item) ? item[1] : undefined;
      const payload: unknown = Array.isArray(fields) ? fields[1] : undefined;
      if (!Buffer.isBuffer(id) || !Buffer.isBuffer(payload)) throw new Error('unexpected XREADGROUP entry');
      entries.push({ id, payload });
    }
  }
  return entries;
}
