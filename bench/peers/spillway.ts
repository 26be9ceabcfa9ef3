/**
 * Spillway as a peer: a private broker started as a child process (`node dist/src/cli/main.js broker
 * --data-dir <scratch>/spillway-<mode> --port <free> --durability <mode>`, the built CLI, so it runs
 * in its own process like every other peer) and driven through the public client (`spillway/client`,
 * one WebSocket connection per producer or consumer) with the common workload of peer.ts.
 *
 * - produce: a NEW topic of `partitions` partitions (default 1) with the durability of the peer (the
 *   previous topic is deleted); per connection one producer with the settings of
 *   bench/spillway-producer.ts (the broker suite's too; keyless records, so batches go to a sticky
 *   partition that moves on when a batch is sealed), sending with sendBatch calls of 250 messages,
 *   `publishWindow` messages unacknowledged (as every peer): a message counts once the broker
 *   acknowledged its batch under the topic's durability.
 * - consume: the topic's offsets [logStart, logEnd) are cut into work items (whole partitions when
 *   there are at least as many partitions as consumers, else each partition split into equal offset
 *   ranges) dealt round-robin to `consumers` connections, each reading its items with one consumer
 *   per item (long-poll fetch, 1 MiB per fetch). Spillway has no consumer groups and no
 *   acknowledgements in this version: the position lives in the client, the broker stores nothing
 *   per read, which is less work than the peers' acknowledged group reads (stated in every row).
 *   With `ack: 'each'` (queue mode): one shared-mode queue consumer (new group) per connection,
 *   `msg.ack()` on every message, counted once the broker confirmed the ack durable.
 * - latency: a 1-partition topic; a producer on one connection sending at a fixed rate, a consumer
 *   from 'latest' on another (with `reuseReceiveBuffers`, like the consume cells: each payload is
 *   read before the next message is taken). With `always` a consumer only sees synced data, so the
 *   latency includes the fdatasync.
 *
 * Not safe for concurrent measurements on one instance (like every Peer).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { type Consumer, Spillway } from '../../src/client/index.js';
import type { Durability } from '../../src/protocol/types.js';
import { findRepositoryRoot } from '../harness.js';
import { produceWithSendBatch, spillwayProducerOptions } from '../spillway-producer.js';
import { checkPayloadBytes, measureLatency, publishWindow, split, throughput } from './load.js';
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
import { freePort, ServerProcess } from './server-process.js';
import { freshDirectory, timedUntil } from './workload.js';

/** What an acknowledgement guarantees in each mode (docs/OPERATIONS.md), stated like the peers'. */
export const spillwayDurabilityOf: Readonly<Record<Durability, string>> = {
  none:
    'durability none: the produce is acknowledged once the batch is written (pwritev) into the ' +
    'segment file (page cache), before any fsync, and is never synced for the append: survives a crash of ' +
    'the broker process, a power failure or kernel crash can lose what the kernel had not written back',
  interval:
    'durability interval (flushIntervalMs 200): acknowledged after the copy into the page cache, before ' +
    'any fsync; a timer fdatasyncs everything appended every 200 ms, so a power failure can lose up to ' +
    'about 200 ms of acknowledged messages; a crash of the broker process alone loses nothing',
  always:
    'durability always: acknowledged only after an fdatasync covering the batch (group commit: ' +
    'concurrent batches share one fdatasync); consumers only see synced messages: an acknowledged ' +
    'message is on disk',
};

/** The workload's produce options plus the one dimension only Spillway offers here. */
export interface SpillwayProduceOptions extends ProduceOptions {
  /** Partitions of the new topic. Default 1. */
  partitions?: number;
}

/** Broker start (Node + open of an empty data dir) takes ~0.3 s here; a loaded machine needs more. */
const startTimeoutMs = 30_000;

/** SIGTERM makes the broker flush and exit; a hung one is killed after this. */
const stopTimeoutMs = 15_000;

/** Client request timeout: the bench fails visibly rather than hang on a broker that stopped answering. */
const requestTimeoutMs = 30_000;

/** Producer settings of every run (bench/spillway-producer.ts). */
const producerOptions = spillwayProducerOptions;

/** Bytes a consumer's fetch asks for. */
const fetchMaxBytes = 1024 * 1024;

/** Queue mode (consume with ack 'each'): most messages per receive, buffered ones, receive long-poll. */
const queueReceiveMessages = 2000;
const queueBufferMessages = 8192;
const queueWaitMs = 20;

/** The built CLI (the broker runs as its own process, like every peer). */
export function spillwayCliPath(): string {
  return path.join(findRepositoryRoot(), 'dist', 'src', 'cli', 'main.js');
}

/** One consumer's share of the topic: offsets [start, end) of one partition. */
export interface ConsumeItem {
  partition: number;
  start: number;
  end: number;
}

/**
 * Cuts partitions (each `[start, end)`) into work items for `consumers` readers and deals them
 * round-robin: whole partitions when there are at least as many partitions as consumers, else each
 * partition split into ceil(consumers / partitions) offset ranges of equal size (empty ones dropped).
 */
export function consumeAssignment(
  partitions: ReadonlyArray<{ partition: number; start: number; end: number }>,
  consumers: number,
): ConsumeItem[][] {
  if (!Number.isSafeInteger(consumers) || consumers < 1)
    throw new RangeError(`consumers must be >= 1, got ${consumers}`);
  const splits = Math.max(1, Math.ceil(consumers / Math.max(1, partitions.length)));
  const items: ConsumeItem[] = [];
  for (const { partition, start, end } of partitions) {
    const lengths = split(Math.max(0, end - start), splits);
    let from = start;
    for (const length of lengths) {
      if (length > 0) items.push({ partition, start: from, end: from + length });
      from += length;
    }
  }
  const assignment: ConsumeItem[][] = Array.from({ length: consumers }, () => []);
  for (const [index, item] of items.entries()) assignment[index % consumers]!.push(item);
  return assignment;
}

export class SpillwayPeer extends ServerPeer<Spillway> {
  readonly name: string;
  readonly durability: string;
  private url = '';
  private topicNumber = 0;
  private producedTopic: string | undefined;
  private queueGroupNumber = 0;
  private admin: Spillway | undefined;

  constructor(readonly mode: Durability) {
    super();
    this.name = `spillway (durability ${mode})`;
    this.durability = spillwayDurabilityOf[mode];
  }

  async start(scratchDirectory: string): Promise<void> {
    const scratchDir = path.resolve(scratchDirectory);
    const cli = spillwayCliPath();
    if (!existsSync(cli)) {
      throw new PeerUnavailableError(`${cli} does not exist: build first (npm run build)`);
    }
    const dataDirectory = path.join(scratchDir, `spillway-${this.mode}`);
    freshDirectory(dataDirectory); // a fresh, empty data directory every start
    const port = await freePort();
    this.url = `ws://127.0.0.1:${port}`;
    this.version = spillwayVersion();
    this.server = await ServerProcess.start({
      name: 'spillway broker',
      command: process.execPath,
      // biome-ignore format: one option per line
      args: [
        cli, 'broker',
        '--data-dir', dataDirectory,
        '--host', '127.0.0.1',
        '--port', String(port),
        '--durability', this.mode,
      ],
      cwd: dataDirectory,
      logFile: path.join(scratchDir, `spillway-${this.mode}.log`),
      ready: () => answersHealthz(port),
      startTimeoutMs,
      stopTimeoutMs,
    });
    this.admin = await this.client();
  }

  protected override async closeClients(): Promise<void> {
    await super.closeClients();
    this.admin = undefined;
  }

  async produce(options: SpillwayProduceOptions): Promise<ProduceResult> {
    const topic = await this.newTopic(options.partitions ?? 1);
    this.producedTopic = topic;
    return this.produceWorkload(options, {
      connect: () => this.client(),
      producer: (client) => client.producer(producerOptions),
      publish: (producer, messages, deadline, pool) =>
        produceWithSendBatch(producer, topic, pool, messages, publishWindow, deadline),
    });
  }

  async consume(options: ConsumeOptions): Promise<ConsumeResult> {
    const topic = this.producedTopic;
    if (topic === undefined) throw new Error('consume before produce');
    const description = await this.adminClient().admin.describeTopic(topic);
    const stored = description.partitions.reduce(
      (sum, partition) => sum + partition.logEndOffset - partition.logStartOffset,
      0,
    );
    if (stored !== this.producedCount) {
      throw new Error(`topic ${topic} holds ${stored} messages, ${this.producedCount} were acknowledged`);
    }
    if (options.ack === 'each') return this.consumeQueue(topic, options);
    // Read back at most `messages`: whole partitions in order, the last one cut short.
    let remaining = Math.min(options.messages, this.producedCount);
    const target = remaining;
    const ranges = description.partitions.map((partition) => {
      const take = Math.min(partition.logEndOffset - partition.logStartOffset, remaining);
      remaining -= take;
      return {
        partition: partition.partition,
        start: partition.logStartOffset,
        end: partition.logStartOffset + take,
      };
    });
    const assignment = consumeAssignment(ranges, options.consumers);
    const clients = await Promise.all(assignment.map(() => this.client()));
    const consumers: Consumer[] = [];
    let received = 0;
    const closeAll = (): void => {
      for (const consumer of consumers) void consumer.close();
    };
    const elapsedMs = await timedUntil(options.durationMsMax, closeAll, () =>
      Promise.all(
        assignment.flatMap((items, index) =>
          items.map(async (item) => {
            const consumer = clients[index]!.consumer({
              topics: [topic],
              partitions: [item.partition],
              from: { offset: item.start },
              maxBytes: fetchMaxBytes,
              // Each value is checked before the next message is taken: it may live in a reused
              // receive buffer (consumer option reuseReceiveBuffers, src/client/consumer.ts).
              reuseReceiveBuffers: true,
            });
            consumers.push(consumer); // synchronously, before the deadline timer can fire
            for await (const message of consumer) {
              if (message.offset >= item.end) break;
              checkPayloadBytes(message.value ?? new Uint8Array(0), this.messageBytes);
              received += 1;
              if (message.offset === item.end - 1) break;
            }
          }),
        ),
      ),
    );
    await this.clients.release(clients);
    if (received > target) throw new Error(`consumed ${received} of ${target}: duplicates`);
    return { ...throughput(received, this.messageBytes, elapsedMs), received };
  }

  /**
   * Queue mode: `consumers` connections, each one shared-mode consumer of a new group on `topic`,
   * every message acked on its own with `msg.ack()` (not awaited: the client gathers the acks of one
   * turn of the event loop into one QUEUE_ACK of ranges). Counts acks the broker confirmed durable;
   * the clock stops at the last one, or at `durationMsMax`.
   */
  private async consumeQueue(topic: string, options: ConsumeOptions): Promise<ConsumeResult> {
    const target = Math.min(options.messages, this.producedCount);
    this.queueGroupNumber += 1;
    const group = `bench-queue-${this.queueGroupNumber}`;
    const clients = await Promise.all(Array.from({ length: options.consumers }, () => this.client()));
    let acked = 0;
    let taken = 0;
    let allAcked: () => void = () => undefined;
    const done = new Promise<void>((resolve) => {
      allAcked = resolve;
    });
    const onAcked = (): void => {
      acked += 1;
      if (acked >= target) allAcked();
    };
    if (target === 0) allAcked();
    const consumers = clients.map((client) =>
      client.consumer({
        group,
        topics: [topic],
        mode: 'shared',
        maxMessages: queueReceiveMessages,
        bufferMessagesMax: queueBufferMessages,
        maxWaitMs: queueWaitMs,
      }),
    );
    let failure: unknown;
    const loops = consumers.map(async (consumer) => {
      for (;;) {
        const next = await consumer.next();
        if (next.done) return;
        checkPayloadBytes(next.value.value ?? new Uint8Array(0), this.messageBytes);
        taken += 1;
        next.value.ack().then(onAcked, (error: unknown) => {
          failure ??= error;
          allAcked();
        });
      }
    });
    const closeAll = (): void => allAcked();
    const elapsedMs = await timedUntil(options.durationMsMax, closeAll, () => done);
    const counted = acked;
    await Promise.all(consumers.map((consumer) => consumer.close()));
    await Promise.all(loops);
    await this.clients.release(clients);
    if (failure !== undefined) throw failure;
    if (taken > target) throw new Error(`took ${taken} of ${target}: duplicates`);
    return { ...throughput(counted, this.messageBytes, elapsedMs), received: counted };
  }

  async endToEndLatency(options: LatencyOptions): Promise<LatencyResult> {
    const topic = await this.newTopic(1);
    this.producedTopic = undefined;
    const producerClient = await this.client();
    const consumerClient = await this.client();
    const producer = producerClient.producer(producerOptions);
    let consumer: Consumer | undefined;
    let loop: Promise<void> = Promise.resolve();
    try {
      return await measureLatency(options, {
        startConsumer: async (onPayload) => {
          // onPayload reads the payload before the next message is taken: it may live in a reused
          // receive buffer (consumer option reuseReceiveBuffers), as in the consume cells.
          const live = consumerClient.consumer({
            topics: [topic],
            from: 'latest',
            maxBytes: fetchMaxBytes,
            reuseReceiveBuffers: true,
          });
          consumer = live;
          await live.ready();
          loop = (async () => {
            for await (const message of live) onPayload(message.value ?? new Uint8Array(0));
          })();
        },
        send: (payload) => producer.send(topic, { value: payload }),
        stopConsumer: async () => {
          await consumer?.close();
          await loop;
        },
      });
    } finally {
      await this.clients.release([producerClient, consumerClient]);
      await this.adminClient().admin.deleteTopic(topic);
    }
  }

  /** Deletes the previous topic and creates a new, empty one with the peer's durability. */
  private async newTopic(partitions: number): Promise<string> {
    const admin = this.adminClient().admin;
    if (this.producedTopic !== undefined) await admin.deleteTopic(this.producedTopic);
    this.producedTopic = undefined;
    this.topicNumber += 1;
    const topic = `bench-${this.topicNumber}`;
    await admin.createTopic(topic, { partitions, durability: this.mode });
    return topic;
  }

  private adminClient(): Spillway {
    if (this.admin === undefined) throw new Error('spillway peer not started');
    return this.admin;
  }

  private async client(): Promise<Spillway> {
    const client = await Spillway.connect(this.url, { requestTimeoutMs, clientId: 'spillway-bench' });
    return this.clients.add(client);
  }
}

/** 'spillway 0.1.0 (abc1234)': the package version and the commit the broker was built from, if known. */
function spillwayVersion(): string {
  const root = findRepositoryRoot();
  let version = 'unknown';
  try {
    version = (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version?: string })
      .version!;
  } catch {
    // reported as unknown
  }
  const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' });
  return `spillway ${version}${commit.status === 0 ? ` (${commit.stdout.trim()})` : ''}`;
}

/** True when GET /healthz answers 200 (the broker listens and its engine is open). */
async function answersHealthz(port: number): Promise<boolean> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(500) });
    await response.body?.cancel();
    return response.status === 200;
  } catch {
    return false;
  }
}
