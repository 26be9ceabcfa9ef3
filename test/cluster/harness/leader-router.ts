/**
 * The failure tests' stand-in for client-side cluster routing (the client does not route by METADATA
 * yet; when it does, this file is what gets replaced): one Spillway client per broker URL, METADATA
 * (`sw.admin.metadata`) asked of every known broker with the highest leader epoch per partition
 * believed, produce with `acks: 'all'` sent to the partition's leader, and on a retriable error
 * (NOT_LEADER, FENCED_LEADER_EPOCH, NOT_ENOUGH_REPLICAS, connection loss, timeout, ...) a metadata
 * refresh and a resend of the same value, until `sendDeadlineMs`. The caller hears of each resend
 * (`onResend`): the earlier send may have been written, so the value is "maybe written twice".
 *
 * Reads (`read`) are what a consumer sees: FETCH from offset 0 up to the answering broker's high
 * watermark, over a connection of their own.
 *
 * The producers send with `retries: 0` so that every resend goes through here (and is recorded).
 * A client whose request failed other than with a definite broker answer is dropped and reconnected.
 */
import { Spillway } from '../../../src/client/index.js';
import type { Producer } from '../../../src/client/producer.js';
import { WebSocketTransport } from '../../../src/client/websocket-transport.js';
import { batchLengthAt } from '../../../src/format/batch-header.js';
import { type DecodedRecord, decodeRecords } from '../../../src/format/record-batch.js';
import type { MetadataPartition } from '../../../src/protocol/cluster-metadata-api.js';
import { Opcode } from '../../../src/protocol/opcodes.js';
import type { ReadRecord } from './operation-history.js';

export interface LeaderRouterOptions {
  topic: string;
  /** Broker URLs to ask for METADATA besides those METADATA names. */
  bootstrap: readonly string[];
  /** A produce or METADATA request's time bound. Default 3000. */
  requestTimeoutMs?: number;
  /** Resends stop this long after the first send. Default 20 000. */
  sendDeadlineMs?: number;
}

interface RoutedClient {
  sw: Spillway;
  producer: Producer;
}

/** Broker answers that say the request was not (or may not have been) taken here: resend elsewhere. */
const resendCodes = new Set([
  'NOT_LEADER',
  'FENCED_LEADER_EPOCH',
  'NOT_ENOUGH_REPLICAS',
  'CLUSTER_UNAVAILABLE',
  'BROKER_CLOSING',
  'BACKPRESSURE',
  'TIMEOUT',
  'CONNECTION_CLOSED',
  'LOG_CLOSED',
  'TOO_MANY_REQUESTS',
]);
/** Answers from a live broker that leave its connection usable. */
const brokerAnswerCodes = new Set(['NOT_LEADER', 'FENCED_LEADER_EPOCH', 'NOT_ENOUGH_REPLICAS']);

export const errorCode = (error: unknown): string =>
  typeof error === 'object' && error !== null && typeof (error as { code?: unknown }).code === 'string'
    ? (error as { code: string }).code
    : error instanceof Error
      ? `${error.name}: ${error.message}`
      : String(error);

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => {
      timer = setTimeout(
        () => reject(Object.assign(new Error(`${what}: no answer in ${ms} ms`), { code: 'TIMEOUT' })),
        ms,
      );
    }),
  ]).finally(() => clearTimeout(timer));
}

export class LeaderRouter {
  private readonly clients = new Map<string, Promise<RoutedClient>>();
  private readonly leaders = new Map<number, MetadataPartition & { url: string }>();
  private readonly known = new Set<string>();
  private refreshing: Promise<void> | undefined;
  private closed = false;
  private readonly requestTimeoutMs: number;
  private readonly sendDeadlineMs: number;
  readonly topic: string;

  constructor(options: LeaderRouterOptions) {
    this.topic = options.topic;
    for (const url of options.bootstrap) this.known.add(url);
    this.requestTimeoutMs = options.requestTimeoutMs ?? 3000;
    this.sendDeadlineMs = options.sendDeadlineMs ?? 20_000;
  }

  /** The leader this router believes in for `partition` (after `refresh`). */
  leaderOf(partition: number): (MetadataPartition & { url: string }) | undefined {
    return this.leaders.get(partition);
  }

  private client(url: string): Promise<RoutedClient> {
    let client = this.clients.get(url);
    if (client === undefined) {
      client = (async () => {
        // The client's own cluster routing is off: this router is the only one that resends, so every
        // resend is counted in the history (a resend the client made by itself would look like a
        // duplicate). test/cluster/cluster-client.test.ts covers the client's routing.
        const sw = await Spillway.connect(url, {
          clusterRouting: false,
          requestTimeoutMs: this.requestTimeoutMs,
          connectTimeoutMs: this.requestTimeoutMs,
        });
        return { sw, producer: sw.producer({ acks: 'all', retries: 0 }) };
      })();
      client.catch(() => this.drop(url, client as Promise<RoutedClient>));
      this.clients.set(url, client);
    }
    return client;
  }

  private drop(url: string, client: Promise<RoutedClient>): void {
    if (this.clients.get(url) !== client) return;
    this.clients.delete(url);
    void client.then(
      ({ sw }) => sw.close().catch(() => undefined),
      () => undefined,
    );
  }

  /** Asks every known broker for METADATA (bounded in time) and keeps, per partition, the highest epoch. */
  refresh(): Promise<void> {
    this.refreshing ??= this.refreshNow().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async refreshNow(): Promise<void> {
    const answers = await Promise.allSettled(
      [...this.known].map(async (url) => {
        const client = this.client(url);
        try {
          const { sw } = await withTimeout(client, this.requestTimeoutMs, `connect ${url}`);
          return await withTimeout(sw.admin.metadata([this.topic]), this.requestTimeoutMs, `METADATA ${url}`);
        } catch (error) {
          this.drop(url, client);
          throw error;
        }
      }),
    );
    const best = new Map<number, MetadataPartition>();
    const urls = new Map<number, string>();
    for (const answer of answers) {
      if (answer.status !== 'fulfilled') continue;
      for (const broker of answer.value.brokers) {
        urls.set(broker.brokerId, broker.url);
        this.known.add(broker.url);
      }
      for (const partition of answer.value.partitions) {
        if (partition.topic !== this.topic) continue;
        const current = best.get(partition.partition);
        if (current === undefined || partition.leaderEpoch > current.leaderEpoch)
          best.set(partition.partition, partition);
      }
    }
    for (const [partition, record] of best) {
      const url = urls.get(record.leaderId);
      if (record.leaderId < 0 || url === undefined) this.leaders.delete(partition);
      else this.leaders.set(partition, { ...record, url });
    }
  }

  /**
   * Produces `value` to `partition` with acks 'all' at its leader, resending after retriable errors;
   * resolves with the acknowledged offset, rejects with the last error once the deadline passed.
   */
  async send(partition: number, value: string, onResend: (error: string) => void): Promise<number> {
    const deadline = Date.now() + this.sendDeadlineMs;
    let backoffMs = 25;
    let lastError = 'no leader known';
    let sent = false;
    for (;;) {
      if (this.closed) throw new Error(`router closed (last error ${lastError})`);
      let leader = this.leaders.get(partition);
      if (leader === undefined) {
        await this.refresh();
        leader = this.leaders.get(partition);
      }
      if (leader !== undefined) {
        const url = leader.url;
        const client = this.client(url);
        try {
          const { producer } = await withTimeout(client, this.requestTimeoutMs, `connect ${url}`);
          // Counted only when the value really goes out again (a failed connect sent nothing).
          if (sent) onResend(lastError);
          sent = true;
          const result = await producer.send(this.topic, { value, partition });
          return result.offset;
        } catch (error) {
          const code = errorCode(error);
          lastError = code;
          if (!resendCodes.has(code) && !code.startsWith('Error:')) throw error;
          if (!brokerAnswerCodes.has(code)) this.drop(url, client);
        }
      }
      if (Date.now() + backoffMs > deadline) throw new Error(`gave up sending ${value}: ${lastError}`);
      await new Promise((resolve) => setTimeout(resolve, backoffMs));
      backoffMs = Math.min(backoffMs * 2, 500);
      await this.refresh();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const clients = [...this.clients.values()];
    this.clients.clear();
    await Promise.all(
      clients.map((client) =>
        client.then(
          ({ sw }) => sw.close().catch(() => undefined),
          () => undefined,
        ),
      ),
    );
  }
}

/**
 * Every record of `topic`/`partition` below the high watermark at `url`, decoded, read from offset 0
 * (FETCH until the high watermark, bounded by `timeoutMs` per request).
 */
export async function readDecoded(
  url: string,
  topic: string,
  partition: number,
  timeoutMs = 5000,
): Promise<{ records: DecodedRecord[]; highWatermark: number }> {
  const transport = await WebSocketTransport.connect(url, {
    requestTimeoutMs: timeoutMs,
    connectTimeoutMs: timeoutMs,
  });
  try {
    const records: DecodedRecord[] = [];
    let offset = 0;
    for (;;) {
      const answer = await transport.request(Opcode.fetch, {
        topic,
        partition,
        offset,
        maxBytes: 1 << 20,
        maxWaitMs: 0,
      });
      const header = answer.header as { nextOffset: number; highWatermark: number };
      const body = answer.body;
      let position = 0;
      while (position < body.length) {
        const length = batchLengthAt(body, position);
        for (const record of decodeRecords(body.subarray(position, position + length))) {
          if (record.offset >= offset && record.offset < header.highWatermark) records.push(record);
        }
        position += length;
      }
      if (header.nextOffset >= header.highWatermark || body.length === 0) {
        return { records, highWatermark: header.highWatermark };
      }
      offset = header.nextOffset;
    }
  } finally {
    await transport.close();
  }
}

/**
 * What a consumer reading `topic`/`partition` from offset 0 at `url` sees: every record below the
 * broker's high watermark, values as text.
 */
export async function readPartition(
  url: string,
  topic: string,
  partition: number,
  timeoutMs = 5000,
): Promise<{ records: ReadRecord[]; highWatermark: number }> {
  const read = await readDecoded(url, topic, partition, timeoutMs);
  return {
    records: read.records.map((record) => ({
      offset: record.offset,
      value: Buffer.from(record.value ?? []).toString(),
    })),
    highWatermark: read.highWatermark,
  };
}
