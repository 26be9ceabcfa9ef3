/**
 * The log consumer (no group): reads every partition of the given topics (or the partitions
 * given) from a starting point, with no group and no commits. An async iterator:
 * `for await (const msg of consumer)`; leaving the loop (break, return, throw) closes it.
 * `consumer.run(...)` (consumer-run.ts) runs a handler over it instead.
 *
 * Settling without a group (its MessageSettler, redelivery 'rewind'): nothing is stored anywhere.
 * - `msg.ack()` tells the consumer the message is done and resolves at once; the consumer's position
 *   already moved past it when it was fetched, so acking changes nothing it will fetch. It exists so
 *   that code written for groups runs unchanged.
 * - `msg.nack({ delayMs })` rewinds the message's partition to the message: the messages of that
 *   partition fetched or taken after it are dropped, and the partition is read again from its offset
 *   (after `delayMs`, default 0), so it and every later message of the partition come again with
 *   `deliveryCount` one higher (it counts this consumer's deliveries of the offset). A nack of a
 *   message a previous nack already rewound past does nothing more. `error` is not stored. After
 *   close() a nack rejects (CONNECTION_CLOSED): nothing comes again.
 *
 * Per partition one long-poll FETCH is in flight at a time (`maxWaitMs`, default 500), asking for
 * up to `maxBytes`; the answer's batches are queued whole and decoded lazily as messages are taken.
 * A partition is not fetched again while `partitionBufferBytesMax` of its bytes wait to be taken
 * (bounded memory when the application is slower than the broker). Messages of one partition come
 * in offset order; partitions interleave in the order their answers arrived.
 *
 * Each batch's CRC32C is checked (client-crc32c.ts: native when registered) before its records are
 * read. A corrupt batch is an error (CORRUPT_BATCH) by default (`onCorruptBatch: 'fail'`); with
 * `onCorruptBatch: 'skip'` it is passed over instead: its offsets go to the `onSkippedBatch`
 * callback (or a process warning when there is none) and are counted in `skippedBatches`, and the
 * consumer goes on with the next batch. A fetch answer may start with a batch holding offsets below
 * the one asked for: those records are skipped.
 *
 * Errors: a retriable fetch error (connection lost, timeout, broker closing) is retried with
 * backoff, the transport reconnecting; any other (UNKNOWN_TOPIC, OFFSET_OUT_OF_RANGE when the data
 * was deleted by retention, CORRUPT_BATCH) is thrown by the iterator after the messages already
 * taken from the partitions, and the consumer closes.
 */

import { setMaxListeners } from 'node:events';
import { CorruptBatchError, InvalidArgumentError, SpillwayError } from '../errors.js';
import { BatchHeader, batchBaseOffset, batchLengthAt, batchRecordCountAt } from '../format/batch-header.js';
import { RecordCursor, verifyBatchCrc } from '../format/record-batch.js';
import { fetchMaxBytesDefault, retryBackoffMsMax } from '../limits.js';
import type { FetchRequest, ListOffsetRequest } from '../protocol/messages.js';
import { Opcode } from '../protocol/opcodes.js';
import { sleepUnlessAborted } from './abortable-sleep.js';
import type { Admin } from './admin.js';
import { clientCrc32c } from './client-crc32c.js';
import { BufferQueue, ConsumerInbox } from './consumer-inbox.js';
import { consumerFetchOptions, consumerIntegerOption, consumerTopicsOption } from './consumer-options.js';
import { type RunOptions, type RunSummary, runConsumer } from './consumer-run.js';
import { type ConsumedMessage, type MessageSettler, messageAt, type NackOptions } from './message.js';
import { ReceiveBufferPool } from './receive-buffer-pool.js';
import type { RequestOptions, Transport } from './transport.js';
import { closedError, integerOf } from './wire.js';

export type StartPosition = 'earliest' | 'latest' | { offset: number } | { timestamp: number };

export interface ConsumerOptions {
  topics: string[];
  /** Where to start in each partition. Default 'latest' (only messages produced from now on). */
  from?: StartPosition;
  /** Only these partitions (of every topic given). Default: all partitions at start. */
  partitions?: number[];
  /** Bytes a fetch asks for (one batch larger than it still comes whole). Default 1 MiB. */
  maxBytes?: number;
  /** How long the broker holds a fetch waiting for data. Default 500. */
  maxWaitMs?: number;
  /** A partition is not fetched while this many of its bytes wait to be taken. Default: maxBytes. */
  partitionBufferBytesMax?: number;
  /** Timeout of a request on top of maxWaitMs. Default 30 000. */
  requestTimeoutMs?: number;
  /** First backoff after a retriable fetch error; doubles, up to retryBackoffMaxMs. Default 100. */
  retryBackoffMs?: number;
  retryBackoffMaxMs?: number;
  /**
   * Must be absent for this log consumer: `Spillway.consumer` gives a GroupConsumer (group-consumer.ts)
   * or a QueueConsumer (queue-consumer.ts) when a group is given.
   */
  group?: string;
  /** Must be absent here: 'group', 'broadcast', 'shared' and 'key_shared' are the group consumers'. */
  mode?: string;
  /**
   * A fetched batch that fails its CRC32C check (damaged on the broker's disk or in transit):
   * 'fail' (default) ends the iteration with CORRUPT_BATCH; 'skip' passes over it (its messages are
   * lost to this consumer), reports it to `onSkippedBatch` and counts it in `skippedBatches`.
   */
  onCorruptBatch?: 'fail' | 'skip';
  /** Called for every batch skipped with `onCorruptBatch: 'skip'`. Default: a process warning. */
  onSkippedBatch?: (skipped: SkippedBatch) => void;
  /**
   * Receive fetch answers into buffers the consumer reuses (receive-buffer-pool.ts) instead of a new
   * one per answer: much less garbage at large messages. The price is a lifetime: a message's
   * `value`, `key` and `headers` values are valid until the next call of `next()` (the next turn of
   * a for-await loop); afterwards they may read as empty (length 0): never as other bytes. Copy what
   * you keep (`Buffer.from(msg.value)`). Not with `run()` (its handlers outlive that turn).
   * Default false: every message's bytes stay valid for as long as they are held.
   */
  reuseReceiveBuffers?: boolean;
}

/** A batch passed over with `onCorruptBatch: 'skip'`: offsets [firstOffset, nextOffset) of a partition. */
export interface SkippedBatch {
  topic: string;
  partition: number;
  /** First offset skipped (the damaged batch's base offset as its header gives it). */
  firstOffset: number;
  /** Offset after the last one skipped: reading goes on from here. */
  nextOffset: number;
  reason: string;
}

/** What `onCorruptBatch: 'skip'` passed over so far. */
export interface SkippedBatches {
  batches: number;
  /** Offsets skipped (sum of nextOffset - firstOffset). */
  offsets: number;
  /** The last `skippedBatchesKept` skips, oldest first. */
  last: SkippedBatch[];
}

/** Skips kept in `Consumer.skippedBatches.last`. */
const skippedBatchesKept = 100;

export const consumerDefaults = {
  from: 'latest',
  maxBytes: fetchMaxBytesDefault,
  maxWaitMs: 500,
  requestTimeoutMs: 30_000,
  retryBackoffMs: 100,
  retryBackoffMaxMs: 5_000,
} as const;

function checkStartPosition(from: unknown): StartPosition {
  if (from === 'earliest' || from === 'latest') return from;
  if (from !== null && typeof from === 'object') {
    const fields = from as Record<string, unknown>;
    const offset = fields['offset'];
    if (typeof offset === 'number' && Number.isSafeInteger(offset) && offset >= 0) return { offset };
    const timestamp = fields['timestamp'];
    if (typeof timestamp === 'number' && Number.isSafeInteger(timestamp) && timestamp >= 0)
      return { timestamp };
  }
  throw new InvalidArgumentError(
    "consumer option from must be 'earliest', 'latest', { offset: n >= 0 } or { timestamp: ms >= 0 }",
  );
}

/** The state of one partition being read. */
class PartitionReader {
  readonly topic: string;
  readonly partition: number;
  /** Offset of the next fetch. */
  position = 0;
  /** Bytes of fetched answers not yet fully taken. */
  bufferedBytes = 0;
  /** Set while the fetch loop waits for the buffer to drain. */
  resume: (() => void) | null = null;
  /** Raised by every rewind: fetch answers and buffered chunks of an older epoch are dropped. */
  epoch = 0;
  /** Offset after the last message yielded (where a rewind sends it back from). */
  nextYield = 0;
  /** Offset ranges [from, to) being yielded again, one per rewind: each adds 1 to deliveryCount. */
  redeliveries: Array<{ from: number; to: number }> = [];
  /** Date.now() before which the partition is not fetched (a nack's delayMs). */
  notBefore = 0;
  /** Aborts the fetch in flight (a rewind does, so the partition is read again at once). */
  fetchAbort: AbortController | null = null;
  /**
   * The controller of this reader's fetches, reused from fetch to fetch until one is aborted (then a
   * new one): no AbortController and AbortSignal per fetch (at one message per fetch, a latency
   * consumer, they were a fifth of its garbage). Set as `fetchAbort` only while a fetch is in flight.
   */
  fetchController: AbortController | null = null;
  /** The request options of the fetches under `fetchController` (made with it). */
  fetchOptions: RequestOptions | null = null;
  /** The fetch request header, reused (only `offset` changes). */
  readonly request: FetchRequest;

  constructor(topic: string, partition: number, maxBytes: number, maxWaitMs: number) {
    this.topic = topic;
    this.partition = partition;
    this.request = { topic, partition, offset: 0, maxBytes, maxWaitMs, minBytes: 1 };
  }
}

/** One fetch answer being taken apart: batches back to back, read with a RecordCursor. */
class FetchedChunk {
  readonly reader: PartitionReader;
  readonly body: Uint8Array;
  /** body.length when fetched (a reused receive buffer reads as empty once released). */
  readonly bytes: number;
  /** Set when a rewind of its partition drops it (its bytes already released). */
  dropped = false;
  private readonly settler: MessageSettler;
  /** Records below this offset (the one fetched) are skipped. */
  readonly skipBelow: number;
  /** The answer's nextOffset: the offset after its last batch. */
  readonly endOffset: number;
  /** Null: a corrupt batch throws; otherwise it is passed to this and skipped. */
  private readonly onCorrupt: ((skipped: SkippedBatch) => void) | null;
  private position = 0;
  private cursor: RecordCursor | null = null;
  private readonly text: Buffer;

  constructor(
    reader: PartitionReader,
    body: Uint8Array,
    skipBelow: number,
    endOffset: number,
    onCorrupt: ((skipped: SkippedBatch) => void) | null,
    settler: MessageSettler,
  ) {
    this.reader = reader;
    this.settler = settler;
    this.body = body;
    this.bytes = body.length;
    this.skipBelow = skipBelow;
    this.endOffset = endOffset;
    this.onCorrupt = onCorrupt;
    this.text = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  }

  /**
   * Passes over the corrupt batch at `position`: by its length when that is sane and a batch
   * follows, otherwise to the end of the answer (whose nextOffset is where the next fetch starts).
   */
  private skipCorrupt(position: number): void {
    const body = this.body;
    const length = body.length - position >= BatchHeader.size ? batchLengthAt(body, position) : 0;
    const firstOffset =
      body.length - position >= BatchHeader.size
        ? Math.max(this.skipBelow, batchBaseOffset(body, position))
        : this.skipBelow;
    let end = body.length;
    let nextOffset = this.endOffset;
    const following = position + length;
    if (length >= BatchHeader.size && following + BatchHeader.size <= body.length) {
      const followingBase = batchBaseOffset(body, following);
      if (followingBase > firstOffset && followingBase <= this.endOffset) {
        end = following;
        nextOffset = followingBase;
      }
    }
    this.position = end;
    this.onCorrupt!({
      topic: this.reader.topic,
      partition: this.reader.partition,
      firstOffset: Math.min(firstOffset, nextOffset),
      nextOffset,
      reason: 'the batch fails its CRC32C or length check',
    });
  }

  /** The next message, or null at the end. Throws CorruptBatchError / InvalidBatchError. */
  next(): ConsumedMessage | null {
    const body = this.body;
    for (;;) {
      let cursor = this.cursor;
      if (cursor === null) {
        const position = this.position;
        if (position >= body.length) return null;
        if (!verifyBatchCrc(body, position, clientCrc32c)) {
          if (this.onCorrupt !== null) {
            this.skipCorrupt(position);
            continue;
          }
          throw new CorruptBatchError(
            `batch at byte ${position} of a fetch of ${this.reader.topic}/${this.reader.partition} (offset >= ${this.skipBelow}) fails its CRC32C or length check`,
          );
        }
        cursor = new RecordCursor(body, position);
        const lastOffset = batchBaseOffset(body, position) + batchRecordCountAt(body, position) - 1;
        if (lastOffset < this.skipBelow) {
          this.position = cursor.batchEnd;
          continue;
        }
        this.cursor = cursor;
      }
      if (!cursor.next()) {
        this.position = cursor.batchEnd;
        this.cursor = null;
        continue;
      }
      if (cursor.offset < this.skipBelow) continue;
      return this.message(cursor);
    }
  }

  private message(cursor: RecordCursor): ConsumedMessage {
    const reader = this.reader;
    const offset = cursor.offset;
    let deliveryCount = 1;
    if (reader.redeliveries.length > 0) {
      reader.redeliveries = reader.redeliveries.filter((range) => range.to > offset);
      for (const range of reader.redeliveries) if (range.from <= offset) deliveryCount++;
    }
    reader.nextYield = offset + 1;
    return messageAt(reader.topic, reader.partition, cursor, this.text, deliveryCount, this.settler);
  }
}

export class Consumer implements AsyncIterableIterator<ConsumedMessage> {
  readonly topics: readonly string[];
  private readonly transport: Transport;
  private readonly admin: Admin;
  private readonly from: StartPosition;
  private readonly partitionsWanted: readonly number[] | undefined;
  private readonly maxBytes: number;
  private readonly maxWaitMs: number;
  private readonly partitionBufferBytesMax: number;
  private readonly requestTimeoutMs: number;
  private readonly retryBackoffMs: number;
  private readonly retryBackoffMaxMs: number;
  /** Null with onCorruptBatch 'fail'. */
  private readonly onCorrupt: ((skipped: SkippedBatch) => void) | null;
  private readonly skipped: SkippedBatches = { batches: 0, offsets: 0, last: [] };
  /** Null unless reuseReceiveBuffers. */
  private readonly receiveBuffers: ReceiveBufferPool | null;
  private readonly readers: PartitionReader[] = [];
  private readonly readersByName = new Map<string, PartitionReader>();
  /** What msg.ack()/nack() call: see the header. */
  private readonly settler: MessageSettler = {
    redelivery: 'rewind',
    ack: () => Promise.resolve(),
    nack: (message, options) => this.rewind(message, options),
  };
  /** Fetched answers in arrival order. */
  private readonly chunks = new BufferQueue<FetchedChunk>();
  private readonly lifetime = new AbortController();
  private readonly inbox = new ConsumerInbox(this.lifetime.signal);
  private readonly loops: Array<Promise<void>> = [];
  private readonly starting: Promise<void>;
  private closing: Promise<void> | null = null;

  /** @internal Made by Spillway.consumer(). */
  constructor(transport: Transport, admin: Admin, options: ConsumerOptions) {
    if (options === null || typeof options !== 'object')
      throw new InvalidArgumentError('consumer options must be an object');
    if (options.group !== undefined || options.mode !== undefined) {
      throw new InvalidArgumentError(
        `mode ${JSON.stringify(options.mode)} with group ${JSON.stringify(options.group)}: the mode must be 'group', 'broadcast', 'shared' or 'key_shared' (the queue modes need a group)`,
      );
    }
    const topics = consumerTopicsOption(options.topics);
    if (options.partitions !== undefined) {
      const partitions = options.partitions;
      if (
        !Array.isArray(partitions) ||
        partitions.length === 0 ||
        !partitions.every((partition) => Number.isSafeInteger(partition) && partition >= 0)
      ) {
        throw new InvalidArgumentError(
          'consumer option partitions must be a non-empty array of integers >= 0',
        );
      }
      this.partitionsWanted = [...new Set(partitions)].sort((a, b) => a - b);
    }
    this.topics = topics;
    this.transport = transport;
    this.admin = admin;
    this.from = checkStartPosition(options.from ?? consumerDefaults.from);
    ({
      maxBytes: this.maxBytes,
      maxWaitMs: this.maxWaitMs,
      partitionBufferBytesMax: this.partitionBufferBytesMax,
      requestTimeoutMs: this.requestTimeoutMs,
    } = consumerFetchOptions(options, consumerDefaults));
    this.retryBackoffMs = consumerIntegerOption(
      options.retryBackoffMs,
      'retryBackoffMs',
      1,
      retryBackoffMsMax,
      consumerDefaults.retryBackoffMs,
    );
    this.retryBackoffMaxMs = consumerIntegerOption(
      options.retryBackoffMaxMs,
      'retryBackoffMaxMs',
      1,
      retryBackoffMsMax,
      consumerDefaults.retryBackoffMaxMs,
    );
    const onCorruptBatch = options.onCorruptBatch ?? 'fail';
    if (onCorruptBatch !== 'fail' && onCorruptBatch !== 'skip') {
      throw new InvalidArgumentError("consumer option onCorruptBatch must be 'fail' or 'skip'");
    }
    const onSkippedBatch = options.onSkippedBatch;
    if (onSkippedBatch !== undefined && typeof onSkippedBatch !== 'function') {
      throw new InvalidArgumentError('consumer option onSkippedBatch must be a function');
    }
    this.onCorrupt =
      onCorruptBatch === 'fail'
        ? null
        : (skipped) => {
            this.skipped.batches++;
            this.skipped.offsets += skipped.nextOffset - skipped.firstOffset;
            this.skipped.last.push(skipped);
            if (this.skipped.last.length > skippedBatchesKept) this.skipped.last.shift();
            if (onSkippedBatch !== undefined) onSkippedBatch(skipped);
            else {
              process.emitWarning(
                `skipped a corrupt batch of ${skipped.topic}/${skipped.partition}: offsets ${skipped.firstOffset}..${skipped.nextOffset - 1} (${skipped.reason})`,
                'SpillwayCorruptBatch',
              );
            }
          };
    if (options.reuseReceiveBuffers !== undefined && typeof options.reuseReceiveBuffers !== 'boolean') {
      throw new InvalidArgumentError('consumer option reuseReceiveBuffers must be a boolean');
    }
    this.receiveBuffers = options.reuseReceiveBuffers === true ? new ReceiveBufferPool() : null;
    // One listener per partition's pending fetch.
    setMaxListeners(0, this.lifetime.signal);
    this.starting = this.start();
    // Failures are reported through next(); this catch only keeps the promise from being unhandled.
    this.starting.catch(() => undefined);
  }

  /** Resolves once every partition's starting offset is known (so 'latest' is pinned). */
  ready(): Promise<void> {
    return this.starting;
  }

  /** What `onCorruptBatch: 'skip'` passed over so far (a copy). */
  get skippedBatches(): SkippedBatches {
    return { ...this.skipped, last: [...this.skipped.last] };
  }

  /** The partitions being read, with the offset each will fetch next. */
  assignment(): Array<{ topic: string; partition: number; position: number }> {
    return this.readers.map((reader) => ({
      topic: reader.topic,
      partition: reader.partition,
      position: reader.position,
    }));
  }

  /**
   * Runs a handler over the messages, in this thread or in worker threads, acking what it handles
   * and nacking what it fails (here: a rewind); resolves when the consumer closes. See consumer-run.ts.
   */
  run<Extra extends object = object>(options: RunOptions<Extra>): Promise<RunSummary> {
    if (this.receiveBuffers !== null) {
      return Promise.reject(
        new InvalidArgumentError(
          'run() cannot be used with reuseReceiveBuffers: its handlers outlive the lifetime of the message bytes',
        ),
      );
    }
    return runConsumer(this, options, this.settler);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<ConsumedMessage, undefined>> {
    // A buffered message is answered without an async function frame (one fewer object and
    // suspension per message); everything else takes the slow path, which starts the same way.
    if (!this.chunks.isEmpty) {
      let message: ConsumedMessage | null;
      try {
        message = this.takeBuffered();
      } catch (error) {
        return this.closeAndThrow(error);
      }
      if (message !== null) return Promise.resolve({ done: false, value: message });
    }
    return this.nextWaiting();
  }

  private async closeAndThrow(error: unknown): Promise<never> {
    await this.close();
    throw error;
  }

  private nextWaiting(): Promise<IteratorResult<ConsumedMessage, undefined>> {
    return this.inbox.next(
      () => this.takeBuffered(),
      () => this.close(),
    );
  }

  /** Called when a for-await loop is left early: closes the consumer. */
  async return(): Promise<IteratorResult<ConsumedMessage, undefined>> {
    await this.close();
    return { done: true, value: undefined };
  }

  /** Stops fetching and ends the iteration (pending next() calls resolve as done). Idempotent. */
  close(): Promise<void> {
    if (this.closing === null) {
      this.lifetime.abort(closedError('the consumer'));
      for (const reader of this.readers) {
        reader.fetchAbort?.abort(closedError('the consumer'));
        this.wakeFetch(reader);
      }
      this.inbox.wake();
      this.closing = (async () => {
        await this.starting.catch(() => undefined);
        await Promise.allSettled(this.loops);
        this.chunks.clear();
        this.receiveBuffers?.clear();
      })();
    }
    return this.closing;
  }

  private get closed(): boolean {
    return this.lifetime.signal.aborted;
  }

  private async start(): Promise<void> {
    try {
      const descriptions = await Promise.all(this.topics.map((topic) => this.admin.describeTopic(topic)));
      for (const description of descriptions) {
        const partitions =
          this.partitionsWanted ?? Array.from({ length: description.partitionCount }, (_, index) => index);
        for (const partition of partitions) {
          if (partition >= description.partitionCount) {
            throw new SpillwayError(
              'UNKNOWN_PARTITION',
              `topic '${description.name}' has no partition ${partition} (it has ${description.partitionCount})`,
            );
          }
          const reader = new PartitionReader(description.name, partition, this.maxBytes, this.maxWaitMs);
          this.readers.push(reader);
          this.readersByName.set(`${reader.topic}\u0000${partition}`, reader);
        }
      }
      await Promise.all(
        this.readers.map(async (reader) => {
          reader.position = await this.startOffset(reader);
          reader.nextYield = reader.position;
        }),
      );
    } catch (error) {
      this.inbox.fail(error);
      throw error;
    }
    if (this.closed) return;
    for (const reader of this.readers) this.loops.push(this.fetchLoop(reader));
  }

  private async startOffset(reader: PartitionReader): Promise<number> {
    const from = this.from;
    if (typeof from === 'object' && 'offset' in from) return from.offset;
    const request: ListOffsetRequest = { topic: reader.topic, partition: reader.partition, spec: from };
    const response = await this.transport.request(Opcode.listOffset, request);
    return integerOf(response.header, 'offset', 'listOffset');
  }

  private async fetchLoop(reader: PartitionReader): Promise<void> {
    const signal = this.lifetime.signal;
    const timeoutMs = this.maxWaitMs + this.requestTimeoutMs;
    let failures = 0;
    while (!signal.aborted) {
      if (reader.bufferedBytes >= this.partitionBufferBytesMax) {
        await new Promise<void>((resolve) => {
          reader.resume = resolve;
        });
        continue;
      }
      const waitMs = reader.notBefore - Date.now();
      if (waitMs > 0) {
        await this.sleep(waitMs);
        continue;
      }
      const requested = reader.position;
      const epoch = reader.epoch;
      reader.request.offset = requested;
      try {
        // Aborted by a rewind, and by close() (which aborts every reader's fetch in flight): one
        // signal per reader until aborted, not AbortSignal.any of two (costly when fetches are many
        // and small).
        let fetchAbort = reader.fetchController;
        let requestOptions = reader.fetchOptions;
        if (fetchAbort === null || requestOptions === null || fetchAbort.signal.aborted) {
          fetchAbort = new AbortController();
          requestOptions = { timeoutMs, signal: fetchAbort.signal };
          if (this.receiveBuffers !== null) requestOptions.bodyBuffer = this.receiveBuffers.take;
          reader.fetchController = fetchAbort;
          reader.fetchOptions = requestOptions;
        }
        reader.fetchAbort = fetchAbort;
        const response = await this.transport.request(
          Opcode.fetch,
          reader.request,
          undefined,
          requestOptions,
        );
        reader.fetchAbort = null;
        failures = 0;
        if (signal.aborted || reader.epoch !== epoch) {
          this.receiveBuffers?.release(response.body);
          if (signal.aborted) return;
          continue;
        }
        const nextOffset = integerOf(response.header, 'nextOffset', 'fetch');
        if (response.body.length > 0) {
          this.chunks.push(
            new FetchedChunk(reader, response.body, requested, nextOffset, this.onCorrupt, this.settler),
          );
          reader.bufferedBytes += response.body.length;
          this.inbox.wake();
        }
        if (nextOffset > requested) reader.position = nextOffset;
      } catch (error) {
        reader.fetchAbort = null;
        if (signal.aborted) return;
        if (reader.epoch !== epoch) continue;
        if (error instanceof SpillwayError && error.retriable) {
          failures++;
          await this.sleep(this.backoffMs(failures));
          continue;
        }
        this.inbox.fail(error);
        return;
      }
    }
  }

  /** The next buffered message, or null. Releases fully taken answers (and resumes their fetches). */
  private takeBuffered(): ConsumedMessage | null {
    const chunks = this.chunks;
    while (!chunks.isEmpty) {
      const chunk = chunks.front()!;
      if (!chunk.dropped) {
        const message = chunk.next();
        if (message !== null) return message;
      }
      chunks.shift();
      // The iteration moved past every message of this answer: its buffer may be reused (which
      // empties every view of it, chunk.body included).
      this.receiveBuffers?.release(chunk.body);
      if (chunk.dropped) continue;
      const reader = chunk.reader;
      reader.bufferedBytes -= chunk.bytes;
      if (reader.bufferedBytes < this.partitionBufferBytesMax) this.wakeFetch(reader);
    }
    return null;
  }

  /** The log mode's nack: see the header. */
  private rewind(message: ConsumedMessage, options: NackOptions): Promise<void> {
    if (this.closed) return Promise.reject(closedError('the consumer'));
    const reader = this.readersByName.get(`${message.topic}\u0000${message.partition}`);
    if (reader === undefined) {
      return Promise.reject(
        new InvalidArgumentError(`${message.topic}/${message.partition} is not read by this consumer`),
      );
    }
    const offset = message.offset;
    if (offset >= reader.nextYield) return Promise.resolve();
    reader.redeliveries.push({ from: offset, to: reader.nextYield });
    reader.epoch++;
    reader.position = offset;
    reader.nextYield = offset;
    reader.notBefore =
      options.delayMs !== undefined && options.delayMs > 0 ? Date.now() + options.delayMs : 0;
    this.chunks.forEach((chunk) => {
      if (chunk.reader === reader && !chunk.dropped) {
        chunk.dropped = true;
        reader.bufferedBytes -= chunk.bytes;
      }
    });
    reader.fetchAbort?.abort(closedError('a fetch dropped by a rewind'));
    this.wakeFetch(reader);
    return Promise.resolve();
  }

  private wakeFetch(reader: PartitionReader): void {
    const resume = reader.resume;
    reader.resume = null;
    resume?.();
  }

  private sleep(ms: number): Promise<void> {
    return sleepUnlessAborted(ms, this.lifetime.signal);
  }

  private backoffMs(failures: number): number {
    const base = Math.min(this.retryBackoffMs * 2 ** Math.min(failures - 1, 30), this.retryBackoffMaxMs);
    return Math.round(base * (0.8 + 0.4 * Math.random()));
  }
}
