/**
 * The producer: send() puts a record into its partition's open batch (accumulator.ts) and resolves
 * with the record's { partition, offset } once the broker acknowledged the batch under the topic's
 * durability. sendBatch() takes many records with one promise for all of them. Batches are
 * pipelined, bounded in bytes: another batch of a partition is sent while its batches in flight hold
 * less than `inFlightBytesPerPartitionMax` and the producer's (on its one connection) less than
 * `inFlightBytesMax` (so each bound may be passed by one batch); the batch counts
 * `inFlightBatchesPerPartitionMax` / `inFlightBatchesMax` bound it too. More wait, sealed or still
 * filling. Batches are `batchBytes` long; unless batchBytes is set, larger for large records
 * (accumulator.ts, adaptive size).
 *
 * Failures: a batch that fails with a retriable error (connection lost, timeout, broker closing,
 * backpressure, ...) is sent again after an exponential backoff (retryBackoffMs doubling up to
 * retryBackoffMaxMs, ±20 % jitter), at most `retries` times and never past `deliveryTimeoutMs`
 * after the batch was opened; then, or on a non-retriable error, its records' send() promises
 * reject with that error. The transport reconnects on the retry. While a failed batch of a
 * partition waits for its retry nothing else is sent to that partition and the retry goes before
 * later batches; order can still change if a batch fails after a later one succeeded, and a batch
 * whose connection dropped may be appended twice: at-least-once delivery.
 *
 * Idempotent (`idempotent: true`, idempotence.ts): the producer registers for a producer id and
 * epoch at first use (again when the broker has dropped it), stamps per-partition sequences into
 * each batch, keeps at most 5 batches in flight per partition, and resends failed batches of a
 * partition in order only once its other batches in flight have settled: the broker writes each
 * batch once, in send order, and answers a repeat with its original offsets (exactly once per
 * partition while the producer lives; a batch failed for good starts a new session for the rest).
 *
 * Backpressure: while the bytes of unacknowledged batches reach `bufferMemoryBytes`, send() waits
 * (sends are taken in call order), or with `onBufferFull: 'reject'` rejects at once with BACKPRESSURE
 * (retriable). Waiting sends are bounded too: batches and waiting messages (estimated bytes plus a
 * fixed overhead each) together may hold twice `bufferMemoryBytes`; a send past that rejects with
 * BACKPRESSURE, so a caller that never awaits cannot grow the client without bound. flush() sends every batch now and waits for all records sent
 * before it to settle. close() flushes, then refuses sends (CONNECTION_CLOSED, not retriable).
 *
 * Partition counts come from describeTopic, cached (metadata-cache.ts) and refreshed every
 * the client's metadataMaxAgeMs and after UNKNOWN_PARTITION. Single-threaded; send() may be called any number
 * of times without awaiting.
 */
import { InvalidArgumentError, SpillwayError } from '../errors.js';
import { BatchAttributes, batchBytesMin, setBatchBaseOffset } from '../format/batch-header.js';
import {
  batchBytesMax,
  producerBatchesRememberedMax,
  producerInFlightBatchesMax,
  producerInFlightBatchesPerPartitionMax,
  producerInFlightBytesDefault,
  producerInFlightBytesPerPartitionDefault,
  producerLingerMsMax,
  retryBackoffMsMax,
  sendBatchRecordsMax,
} from '../limits.js';
import { delayedRecord, dueTimeOf } from '../protocol/delayed-record.js';
import { Opcode } from '../protocol/opcodes.js';
import { Accumulator, PartitionQueue, type ProducerBatch } from './accumulator.js';
import { checkProducerName, IdempotentSequencer } from './idempotence.js';
import type { MetadataCache, TopicMetadata } from './metadata-cache.js';
import { type RecordPositions, recordPositionsOf, recordWithMsgId } from './msg-id-send.js';
import { nextStickyPartition, partitionOfKey } from './partition-chooser.js';
import { SendBatchCollector } from './send-batch-collector.js';
import type { Transport, TransportResponse } from './transport.js';
import { closedError, integerOf } from './wire.js';

/** Bytes of a key, value or header value: a string is sent as UTF-8. */
export type MessageBytes = string | Uint8Array;

export interface ProducerMessage {
  /** Keyed records go to partition murmur2(key) % partitionCount (Kafka's rule); null/absent: sticky. */
  key?: MessageBytes | null;
  value: MessageBytes | null;
  headers?: Readonly<Record<string, MessageBytes | null>>;
  /** Sends to this partition, whatever the key. */
  partition?: number;
  /** Milliseconds since the epoch. Default: now. */
  timestamp?: number;
  /**
   * Delayed message: appended to the topic this many ms after the send (0 .. 10 years); the broker
   * keeps it meanwhile. Its send() resolves once stored, with its offset in `__delay` (where it
   * waits; the fired copy carries it in `sw-delay-ref`). Not with deliverAt.
   */
  delayMs?: number;
  /** Delayed message: appended to the topic at this time (epoch ms). Not with delayMs. */
  deliverAt?: number;
  /**
   * Deduplicated within the topic's dedupWindowMs (docs/PROTOCOL.md): a message whose msgId was
   * written to the topic within the window is not written again, and send() resolves with the first
   * copy's partition and offset. 1 to 256 UTF-8 bytes; sent as the record header `sw-msg-id`.
   */
  msgId?: string;
}

export interface SendResult {
  partition: number;
  offset: number;
}

export interface ProducerOptions {
  /** How long a batch waits for more records before it is sent. 0 (default): the next tick. */
  lingerMs?: number;
  /**
   * A batch is sent once it reaches this size (one record may take it past). Default 65 536, and
   * then a batch of large records grows to hold 16 of them, up to 256 KiB; set, it is the size.
   */
  batchBytes?: number;
  /**
   * Bytes of unacknowledged batches above which send() waits (or rejects, see onBufferFull); once
   * batches and waiting sends together hold twice this, send() rejects with BACKPRESSURE. Default 32 MiB.
   */
  bufferMemoryBytes?: number;
  /** What send() does while the buffer is full: 'wait' (default) in line, or 'reject' with BACKPRESSURE. */
  onBufferFull?: 'wait' | 'reject';
  /** Resends of a batch after retriable errors. Default 10. */
  retries?: number;
  /** First retry backoff; doubles per attempt. Default 100. */
  retryBackoffMs?: number;
  /** Longest retry backoff. Default 5 000. */
  retryBackoffMaxMs?: number;
  /**
   * No retry of a batch starts once it would end past this long after the batch was opened (the
   * batch then fails with its last error); for an idempotent producer this bounds its resends in a
   * new session too (after UNKNOWN_PRODUCER_ID or OUT_OF_ORDER_SEQUENCE). It bounds retries only: a batch waiting for its first send
   * is not failed by it, and a send in flight ends by the transport's request timeout. Default 120 000.
   */
  deliveryTimeoutMs?: number;
  /** Bytes of batches in flight per partition before the next waits (one batch may pass it). Default 4 MiB. */
  inFlightBytesPerPartitionMax?: number;
  /** Bytes of batches in flight in all (this producer's connection). Default 16 MiB. */
  inFlightBytesMax?: number;
  /** Batches in flight per partition. Default 1 024 (the bytes bound it first). */
  inFlightBatchesPerPartitionMax?: number;
  /** Batches in flight in all. Default 4 096. */
  inFlightBatchesMax?: number;
  /**
   * Exactly once per partition, in send order, across lost answers, reconnects and broker restarts
   * (docs/PROTOCOL.md, "Idempotent PRODUCE"). inFlightBatchesPerPartitionMax is then at most 5.
   */
  idempotent?: boolean;
  /**
   * In a cluster (docs/CLUSTER-REPLICATION.md): `all` (the broker's default there) acknowledges a
   * batch once every in-sync replica has it under the topic's durability; `leader` once the leader
   * appended it (lost if the leader dies before its followers copied it). A single broker ignores it.
   * Default: not sent (the broker's default).
   */
  acks?: 'all' | 'leader';
  /**
   * Idempotent producers: a stable identity. A producer registering with the same name fences the
   * earlier one (its sends fail with PRODUCER_FENCED). Default: none (a new producer id each time).
   */
  producerName?: string;
  /** Transactional producers only (Spillway.producer makes a TransactionalProducer): rejected here. */
  group?: string;
  /** Transactional producers only (Spillway.producer makes a TransactionalProducer): rejected here. */
  checkTransaction?: unknown;
}

export const producerDefaults = {
  lingerMs: 0,
  batchBytes: 64 * 1024,
  bufferMemoryBytes: 32 * 1024 * 1024,
  retries: 10,
  retryBackoffMs: 100,
  retryBackoffMaxMs: 5_000,
  deliveryTimeoutMs: 120_000,
  inFlightBytesPerPartitionMax: producerInFlightBytesPerPartitionDefault,
  inFlightBytesMax: producerInFlightBytesDefault,
  inFlightBatchesPerPartitionMax: 1024,
  inFlightBatchesMax: 4096,
} as const;

type ResolvedProducerOptions = { -readonly [K in keyof typeof producerDefaults]: number };

function integerOption(
  options: ProducerOptions,
  name: keyof ResolvedProducerOptions,
  min: number,
  max: number,
): number {
  const value = options[name] ?? producerDefaults[name];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(
      `producer option ${name} must be an integer in [${min}, ${max}], got ${String(value)}`,
    );
  }
  return value;
}

function resolveOptions(options: ProducerOptions): ResolvedProducerOptions {
  if (options.acks !== undefined && options.acks !== 'all' && options.acks !== 'leader') {
    throw new InvalidArgumentError(
      `producer option acks must be 'all' or 'leader', got ${String(options.acks)}`,
    );
  }
  if (options.idempotent !== undefined && typeof options.idempotent !== 'boolean') {
    throw new InvalidArgumentError('producer option idempotent must be a boolean');
  }
  if (options.producerName !== undefined && options.idempotent !== true) {
    throw new InvalidArgumentError('producer option producerName needs idempotent: true');
  }
  checkProducerName(options.producerName);
  if (options.group !== undefined || options.checkTransaction !== undefined) {
    throw new InvalidArgumentError(
      'group and checkTransaction make a transactional producer: use Spillway.producer',
    );
  }
  const max = Number.MAX_SAFE_INTEGER;
  return {
    lingerMs: integerOption(options, 'lingerMs', 0, producerLingerMsMax),
    batchBytes: integerOption(options, 'batchBytes', batchBytesMin, batchBytesMax),
    bufferMemoryBytes: integerOption(options, 'bufferMemoryBytes', batchBytesMin, max),
    retries: integerOption(options, 'retries', 0, max),
    retryBackoffMs: integerOption(options, 'retryBackoffMs', 1, retryBackoffMsMax),
    retryBackoffMaxMs: integerOption(options, 'retryBackoffMaxMs', 1, retryBackoffMsMax),
    deliveryTimeoutMs: integerOption(options, 'deliveryTimeoutMs', 1, max),
    // Idempotent: a retried batch must be among the broker's remembered ones, so at most that many
    // in flight per partition (the default then too); the byte bounds still apply.
    inFlightBatchesPerPartitionMax:
      options.idempotent === true && options.inFlightBatchesPerPartitionMax === undefined
        ? producerBatchesRememberedMax
        : integerOption(
            options,
            'inFlightBatchesPerPartitionMax',
            1,
            options.idempotent === true
              ? producerBatchesRememberedMax
              : producerInFlightBatchesPerPartitionMax,
          ),
    inFlightBatchesMax: integerOption(options, 'inFlightBatchesMax', 1, producerInFlightBatchesMax),
    inFlightBytesPerPartitionMax: integerOption(options, 'inFlightBytesPerPartitionMax', 1, max),
    inFlightBytesMax: integerOption(options, 'inFlightBytesMax', 1, max),
  };
}

/** Which queue of a partition a message goes to (see Producer.append). */
type QueueKind = 'plain' | 'delayed' | 'msgId';

/** Per topic: its partition count (shared with the metadata cache), its queues, its sticky partition. */
interface ProducerTopic {
  readonly metadata: TopicMetadata;
  readonly queues: Array<PartitionQueue | undefined>;
  /** Queues of delayed messages (batches with the delayed attribute), delayed-send.ts. */
  readonly delayedQueues: Array<PartitionQueue | undefined>;
  /** Idempotent producers: queues of messages with a msgId, outside the sequences (see append). */
  readonly msgIdQueues: Array<PartitionQueue | undefined>;
  sticky: number;
}

/** A send waiting in line for its topic's partition count or for buffer memory. */
interface WaitingSend {
  topic: string;
  message: ProducerMessage;
  resolve: (result: SendResult | Promise<SendResult>) => void;
  reject: (error: unknown) => void;
  /** What send() returned (flush waits for it). */
  promise: Promise<SendResult>;
  /** Counted in waitingBytes: the message's estimated bytes plus waitingSendOverheadBytes. */
  bytes: number;
}

/** What a waiting send costs beyond its message bytes (the entry, its promise and closures). */
const waitingSendOverheadBytes = 256;

/** A lower bound of a message's bytes (a string has at least a byte per UTF-16 unit). */
function estimatedBytes(message: ProducerMessage): number {
  const size = (value: unknown): number =>
    typeof value === 'string' || value instanceof Uint8Array ? value.length : 0;
  let bytes = size(message.value) + size(message.key);
  if (message.headers !== undefined && message.headers !== null && typeof message.headers === 'object') {
    for (const [name, value] of Object.entries(message.headers)) bytes += name.length + size(value);
  }
  return bytes;
}

function isBytes(value: unknown): value is MessageBytes {
  return typeof value === 'string' || value instanceof Uint8Array;
}

export class Producer {
  private readonly transport: Transport;
  private readonly metadata: MetadataCache;
  private readonly options: ResolvedProducerOptions;
  /** `acks` of every produce request (ProducerOptions.acks); undefined: not sent. */
  private readonly acks: 'all' | 'leader' | undefined;
  private readonly accumulator: Accumulator;
  private readonly topics = new Map<string, ProducerTopic>();
  private state: 'open' | 'closing' | 'closed' = 'open';
  private closing: Promise<void> | null = null;
  private inFlightTotal = 0;
  private inFlightBytesTotal = 0;
  /** Partitions with something to send, waiting for a slot of inFlightBatchesMax. */
  private readonly waitingForSlot = new Set<PartitionQueue>();
  /**
   * Sends not yet in a batch, in call order: waiting for their topic's partition count or for
   * buffer memory (and every send behind them, so that order holds). `waitingHead` indexes the first.
   */
  private waiting: Array<WaitingSend | undefined> = [];
  private waitingHead = 0;
  /** Bytes of the waiting sends (bounded by bufferMemoryBytes). */
  private waitingBytes = 0;
  private readonly rejectWhenFull: boolean;
  /** Topics whose partition count is being fetched for waiting sends. */
  private readonly loadingTopics = new Set<string>();
  /** Why a topic's partition count could not be fetched: fails the sends that waited for it. */
  private readonly topicErrors = new Map<string, unknown>();
  /** Sends whose explicit partition was beyond the known count, waiting for a refresh. */
  private readonly refreshingSends = new Set<Promise<SendResult>>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  /** Idempotent producers: the producer id, epoch and sequences (idempotence.ts); null otherwise. */
  private readonly idempotence: IdempotentSequencer | null;
  /** Idempotent: partitions whose resend waits for their batches in flight to settle. */
  private readonly held = new Set<PartitionQueue>();
  /** Idempotent: a registration (INIT_PRODUCER) is on its way or waiting for its retry. */
  private sessionStarting = false;
  /** Idempotent: sessions started since a batch was last acknowledged (the next one backs off past 1). */
  private sessionsSinceAck = 0;

  /** @internal Made by Spillway.producer(). */
  constructor(transport: Transport, metadata: MetadataCache, options: ProducerOptions = {}) {
    this.transport = transport;
    this.metadata = metadata;
    this.options = resolveOptions(options);
    this.acks = options.acks;
    if (
      options.onBufferFull !== undefined &&
      options.onBufferFull !== 'wait' &&
      options.onBufferFull !== 'reject'
    ) {
      throw new InvalidArgumentError(
        `producer option onBufferFull must be 'wait' or 'reject', got ${String(options.onBufferFull)}`,
      );
    }
    this.rejectWhenFull = options.onBufferFull === 'reject';
    const idempotence =
      options.idempotent === true ? new IdempotentSequencer(transport, options.producerName) : null;
    this.idempotence = idempotence;
    this.accumulator = new Accumulator({
      batchBytes: this.options.batchBytes,
      adaptive: options.batchBytes === undefined,
      lingerMs: this.options.lingerMs,
      onSendable: (queue) => this.drain(queue),
      onSealed: (queue) => this.moveSticky(queue),
      recycle: transport.bodyReusableAfterAnswer === true,
      ...(idempotence !== null
        ? { sealFields: (batch, recordCount) => idempotence.sealFields(batch, recordCount) }
        : {}),
    });
  }

  /** Bytes of batches not yet acknowledged (what bufferMemoryBytes bounds). */
  get bufferedBytes(): number {
    return this.accumulator.bufferedBytes;
  }

  /**
   * Sends one record; resolves with its partition and offset once the broker acknowledged it.
   * Rejects with INVALID_ARGUMENT / INVALID_BATCH for a bad record (nothing sent), UNKNOWN_TOPIC,
   * UNKNOWN_PARTITION, or the error that ended the retries of its batch.
   */
  send(topic: string, message: ProducerMessage): Promise<SendResult> {
    if (this.state !== 'open') return Promise.reject(closedError('the producer'));
    const state = this.topics.get(topic) ?? this.topicFromCache(topic);
    const full = this.accumulator.bufferedBytes >= this.options.bufferMemoryBytes;
    if (full && this.rejectWhenFull) {
      return Promise.reject(
        new SpillwayError(
          'BACKPRESSURE',
          `the producer buffer is full (${this.accumulator.bufferedBytes} bytes unacknowledged, bufferMemoryBytes ${this.options.bufferMemoryBytes}): send again once earlier sends settle`,
        ),
      );
    }
    if (state === undefined || this.waitingHead < this.waiting.length || full) {
      return this.enqueue(topic, message);
    }
    try {
      return this.append(state, message) ?? this.sendAfterRefresh(state, message);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Sends many records with one promise: resolves with each record's { partition, offset }, in the
   * order of `messages`, once every batch holding one of them was acknowledged; rejects with the
   * first error that ended a batch's retries (records in other batches may be stored: at-least-once,
   * as with send()). Partitions, validation and errors per record are those of send(); a bad record
   * rejects the call and the records after it are not sent (those before it are). The records go
   * into batches of their own (no send() promise per record). While earlier sends wait (buffer full,
   * topic not known yet) the records are sent one by one behind them, as send() would.
   * More than sendBatchRecordsMax records: INVALID_ARGUMENT, nothing sent.
   */
  async sendBatch(topic: string, messages: readonly ProducerMessage[]): Promise<SendResult[]> {
    if (!Array.isArray(messages)) throw new InvalidArgumentError('sendBatch takes an array of messages');
    if (messages.length > sendBatchRecordsMax) {
      throw new InvalidArgumentError(
        `sendBatch takes at most ${sendBatchRecordsMax} messages, got ${messages.length}`,
      );
    }
    if (this.state !== 'open') throw closedError('the producer');
    const state = this.topics.get(topic) ?? this.topicFromCache(topic);
    if (
      state === undefined ||
      this.waitingHead < this.waiting.length ||
      this.accumulator.bufferedBytes >= this.options.bufferMemoryBytes
    ) {
      return Promise.all(messages.map((message) => this.send(topic, message)));
    }
    const collector = new SendBatchCollector();
    this.accumulator.collector = collector;
    try {
      for (const message of messages) {
        if (this.append(state, message) === null) collector.addPending(this.sendAfterRefresh(state, message));
      }
    } catch (error) {
      // The records before the bad one are in batches nobody else waits for: observe their outcome.
      collector.result().catch(() => undefined);
      throw error;
    } finally {
      this.accumulator.collector = null;
    }
    return collector.result();
  }

  /** Sends every batch now and waits until every record sent before this call is acked or failed. */
  async flush(): Promise<void> {
    this.accumulator.beginFlush();
    try {
      const waits: Array<Promise<unknown>> = [];
      for (const batch of this.accumulator.unsettled) waits.push(batch.whenSettled());
      for (let index = this.waitingHead; index < this.waiting.length; index++)
        waits.push(this.waiting[index]!.promise);
      for (const send of this.refreshingSends) waits.push(send);
      await Promise.allSettled(waits);
    } finally {
      this.accumulator.endFlush();
    }
  }

  /** Flushes, then refuses further sends. Idempotent. */
  close(): Promise<void> {
    if (this.closing === null) {
      this.state = 'closing';
      this.closing = (async () => {
        try {
          await this.flush();
        } finally {
          this.accumulator.stop();
          for (const timer of this.retryTimers) clearTimeout(timer);
          this.retryTimers.clear();
          this.state = 'closed';
        }
      })();
    }
    return this.closing;
  }

  /**
   * Appends to the record's partition; returns its result promise, or null when the partition asked
   * for is beyond the cached count (the caller refreshes the count and tries again). Throws for a
   * bad record.
   */
  private append(state: ProducerTopic, message: ProducerMessage): Promise<SendResult> | null {
    if (message === null || typeof message !== 'object') {
      throw new InvalidArgumentError('a message must be an object { key?, value, headers?, partition? }');
    }
    const value = message.value;
    if (value !== null && !isBytes(value)) {
      throw new InvalidArgumentError('message value must be a string, a Uint8Array or null');
    }
    const key = message.key;
    if (key != null && !isBytes(key)) {
      throw new InvalidArgumentError('message key must be a string, a Uint8Array, null or absent');
    }
    const dueMs = dueTimeOf(message, Date.now());
    const withMsgId = message.msgId === undefined ? message : recordWithMsgId(message);
    const partitionCount = state.metadata.partitionCount;
    let partition: number;
    const explicit = message.partition;
    if (explicit !== undefined) {
      if (!Number.isSafeInteger(explicit) || explicit < 0) {
        throw new InvalidArgumentError(`message partition must be an integer >= 0, got ${String(explicit)}`);
      }
      if (explicit >= partitionCount) return null;
      partition = explicit;
    } else if (key != null) {
      partition = partitionOfKey(key, partitionCount);
    } else {
      if (state.sticky >= partitionCount) state.sticky = nextStickyPartition(-1, partitionCount);
      partition = state.sticky;
    }
    // An idempotent producer keeps delayed messages (they wait in the broker's delay log, outside
    // the partition) and messages with a msgId (msg-id dedup may drop records of a batch) out of its
    // sequences: their batches go unsequenced, a retry of them is folded by msgId on a dedup topic
    // and may be written twice otherwise (docs/PROTOCOL.md, "Idempotent PRODUCE").
    const kind: QueueKind =
      dueMs !== null
        ? 'delayed'
        : this.idempotence !== null && message.msgId !== undefined
          ? 'msgId'
          : 'plain';
    const queue = this.queuesOf(state, kind)[partition] ?? this.createQueue(state, partition, kind);
    // UTF-8 takes at least a byte per UTF-16 unit: a lower bound of the record's size.
    const leastBytes = (value === null ? 0 : value.length) + (key == null ? 0 : key.length);
    return this.accumulator.append(
      queue,
      dueMs === null ? withMsgId : delayedRecord(withMsgId, dueMs),
      leastBytes,
    );
  }

  /** The topic's state if the client's metadata cache knows its partition count (another producer asked). */
  private topicFromCache(topic: string): ProducerTopic | undefined {
    const metadata = this.metadata.peek(topic);
    return metadata === undefined ? undefined : this.addTopic(metadata);
  }

  private addTopic(metadata: TopicMetadata): ProducerTopic {
    let state = this.topics.get(metadata.name);
    if (state === undefined) {
      state = {
        metadata,
        queues: [],
        delayedQueues: [],
        msgIdQueues: [],
        sticky: nextStickyPartition(-1, metadata.partitionCount),
      };
      this.topics.set(metadata.name, state);
    }
    return state;
  }

  /** A send that cannot go into a batch now: it waits in line (see `waiting`). */
  private enqueue(topic: string, message: ProducerMessage): Promise<SendResult> {
    const bytes = estimatedBytes(message) + waitingSendOverheadBytes;
    const held = this.accumulator.bufferedBytes + this.waitingBytes + bytes;
    if (held > 2 * this.options.bufferMemoryBytes && this.waitingHead < this.waiting.length) {
      return Promise.reject(
        new SpillwayError(
          'BACKPRESSURE',
          `the producer holds ${held - bytes} bytes of batches and waiting sends (twice bufferMemoryBytes ${this.options.bufferMemoryBytes} at most): await send() before sending more`,
        ),
      );
    }
    this.waitingBytes += bytes;
    let resolve!: WaitingSend['resolve'];
    let reject!: WaitingSend['reject'];
    const promise = new Promise<SendResult>((resolvePromise, rejectPromise) => {
      resolve = resolvePromise;
      reject = rejectPromise;
    });
    this.waiting.push({ topic, message, resolve, reject, promise, bytes });
    if (!this.topics.has(topic)) this.loadTopic(topic);
    return promise;
  }

  /** Fetches a topic's partition count for the sends waiting for it, then lets them go. */
  private loadTopic(topic: string): void {
    if (this.loadingTopics.has(topic)) return;
    this.loadingTopics.add(topic);
    this.metadata.load(topic).then(
      (metadata) => {
        this.loadingTopics.delete(topic);
        this.addTopic(metadata);
        this.pump();
      },
      (error: unknown) => {
        this.loadingTopics.delete(topic);
        this.topicErrors.set(topic, error);
        this.pump();
        this.topicErrors.delete(topic);
      },
    );
  }

  /**
   * Moves waiting sends into batches, in order, while their topics are known and memory is left.
   * Each runs synchronously: no hop through the event loop per waiting send.
   */
  private pump(): void {
    const waiting = this.waiting;
    while (this.waitingHead < waiting.length) {
      const entry = waiting[this.waitingHead]!;
      const state = this.topics.get(entry.topic);
      if (state === undefined) {
        const error = this.topicErrors.get(entry.topic);
        if (error === undefined) {
          this.loadTopic(entry.topic);
          break;
        }
        this.dequeue();
        entry.reject(error);
        continue;
      }
      if (this.accumulator.bufferedBytes >= this.options.bufferMemoryBytes) break;
      this.dequeue();
      if (this.state === 'closed') {
        entry.reject(closedError('the producer'));
        continue;
      }
      try {
        entry.resolve(this.append(state, entry.message) ?? this.sendAfterRefresh(state, entry.message));
      } catch (error) {
        entry.reject(error);
      }
    }
    if (this.waitingHead === waiting.length) {
      this.waiting = [];
      this.waitingHead = 0;
    } else if (this.waitingHead > 1024 && this.waitingHead * 2 > waiting.length) {
      this.waiting = waiting.slice(this.waitingHead);
      this.waitingHead = 0;
    }
  }

  private dequeue(): void {
    this.waitingBytes -= this.waiting[this.waitingHead]!.bytes;
    this.waiting[this.waitingHead] = undefined;
    this.waitingHead++;
  }

  /** A send to a partition beyond the count we know: it may have been added since. */
  private sendAfterRefresh(state: ProducerTopic, message: ProducerMessage): Promise<SendResult> {
    const topic = state.metadata.name;
    const promise = this.metadata.refresh(topic).then(() => {
      const result = this.append(state, message);
      if (result === null) {
        throw new SpillwayError(
          'UNKNOWN_PARTITION',
          `topic '${topic}' has no partition ${String(message.partition)} (it has ${state.metadata.partitionCount})`,
        );
      }
      return result;
    });
    this.refreshingSends.add(promise);
    const forget = (): void => {
      this.refreshingSends.delete(promise);
    };
    promise.then(forget, forget);
    return promise;
  }

  private queuesOf(state: ProducerTopic, kind: QueueKind): Array<PartitionQueue | undefined> {
    return kind === 'plain' ? state.queues : kind === 'delayed' ? state.delayedQueues : state.msgIdQueues;
  }

  private createQueue(state: ProducerTopic, partition: number, kind: QueueKind = 'plain'): PartitionQueue {
    const queue = new PartitionQueue(
      state.metadata.name,
      partition,
      kind === 'delayed' ? BatchAttributes.delayed : 0,
      kind !== 'plain',
      this.acks,
    );
    this.queuesOf(state, kind)[partition] = queue;
    return queue;
  }

  /** True when `queue`'s batches carry the idempotent producer's id, epoch and sequences. */
  private sequenced(queue: PartitionQueue): boolean {
    return this.idempotence !== null && !queue.unsequenced;
  }

  private moveSticky(queue: PartitionQueue): void {
    const state = this.topics.get(queue.topic);
    if (state !== undefined && state.sticky === queue.partition) {
      state.sticky = nextStickyPartition(queue.partition, state.metadata.partitionCount);
    }
    if (state !== undefined) this.metadata.refreshIfOld(state.metadata, Date.now());
  }

  /** Sends what `queue` may send now, within the in-flight bounds. */
  private drain(queue: PartitionQueue): void {
    if (this.sequenced(queue) && !this.idempotentSendable(queue)) return;
    const perPartitionMax = this.options.inFlightBatchesPerPartitionMax;
    const perPartitionBytes = this.options.inFlightBytesPerPartitionMax;
    while (!queue.paused && queue.inFlight < perPartitionMax && queue.inFlightBytes < perPartitionBytes) {
      if (this.connectionWindowFull()) {
        this.waitingForSlot.add(queue);
        return;
      }
      if (this.sequenced(queue) && !this.idempotence!.mayTake(queue, perPartitionMax)) return;
      const batch = this.accumulator.takeSendable(queue);
      if (batch === null) return;
      this.transmit(batch);
    }
  }

  /** True while the producer's batches in flight reach inFlightBatchesMax or inFlightBytesMax. */
  private connectionWindowFull(): boolean {
    return (
      this.inFlightTotal >= this.options.inFlightBatchesMax ||
      this.inFlightBytesTotal >= this.options.inFlightBytesMax
    );
  }

  private drainWaiting(): void {
    for (const queue of this.waitingForSlot) {
      if (this.connectionWindowFull()) return;
      this.waitingForSlot.delete(queue);
      this.drain(queue);
    }
  }

  private transmit(batch: ProducerBatch): void {
    const queue = batch.queue;
    const bytes = batch.bytes!;
    queue.inFlight++;
    this.inFlightTotal++;
    queue.inFlightBytes += bytes.length;
    this.inFlightBytesTotal += bytes.length;
    batch.attempts++;
    // The broker writes offsets into its own copy; make sure a resend carries a producer's batch.
    if (batch.attempts > 1) setBatchBaseOffset(bytes, 0);
    if (this.sequenced(queue)) {
      const sequencer = this.idempotence!;
      if (!sequencer.isCurrent(batch)) sequencer.stampReady(queue, [batch]);
      sequencer.noteSent(batch);
    }
    this.transport.request(Opcode.produce, queue.requestHeader, bytes).then(
      (response) => this.onProduced(batch, response),
      (error: unknown) => this.onProduceFailed(batch, error),
    );
  }

  private onProduced(batch: ProducerBatch, response: TransportResponse): void {
    const queue = batch.queue;
    this.landed(batch);
    this.sessionsSinceAck = 0;
    let baseOffset = -1;
    let positions: RecordPositions | null = null;
    let answerError: unknown = null;
    try {
      positions = recordPositionsOf(response.header, batch.recordCount);
      if (positions === null) baseOffset = integerOf(response.header, 'baseOffset', 'produce');
    } catch (error) {
      answerError = error;
    }
    if (answerError === null) this.accumulator.resolve(batch, baseOffset, positions);
    else this.accumulator.reject(batch, answerError);
    this.afterSettle(queue);
  }

  private onProduceFailed(batch: ProducerBatch, error: unknown): void {
    const queue = batch.queue;
    this.landed(batch);
    const code = error instanceof SpillwayError ? error.code : undefined;
    if (code === 'UNKNOWN_PARTITION' || code === 'UNKNOWN_TOPIC') this.metadata.refreshQuietly(queue.topic);
    const backoffMs = this.backoffMs(batch.attempts);
    if (this.sequenced(queue)) {
      this.onIdempotentFailure(batch, error, backoffMs);
      this.afterSettle(queue);
      return;
    }
    if (
      error instanceof SpillwayError &&
      error.retriable &&
      batch.attempts <= this.options.retries &&
      Date.now() + backoffMs - batch.createdAtMs < this.options.deliveryTimeoutMs &&
      !this.transport.closed
    ) {
      this.accumulator.requeue(batch);
      if (!queue.paused) {
        queue.paused = true;
        const timer = setTimeout(() => {
          this.retryTimers.delete(timer);
          queue.paused = false;
          this.drain(queue);
        }, backoffMs);
        this.retryTimers.add(timer);
      }
    } else {
      this.accumulator.reject(batch, error);
    }
    this.afterSettle(queue);
  }

  /** A batch sent by transmit() is no longer in flight (answered or failed). */
  private landed(batch: ProducerBatch): void {
    const queue = batch.queue;
    const length = batch.bytes!.length;
    queue.inFlight--;
    this.inFlightTotal--;
    queue.inFlightBytes -= length;
    this.inFlightBytesTotal -= length;
  }

  private afterSettle(queue: PartitionQueue): void {
    if (this.sequenced(queue)) this.idempotentSettled(queue);
    this.drain(queue);
    if (this.waitingForSlot.size > 0) this.drainWaiting();
    if (this.waitingHead < this.waiting.length) this.pump();
  }

  /**
   * Idempotent: may `queue` send? Not while no session holds (one is started once nothing is in
   * flight); after a fatal error, its batches fail with it.
   */
  private idempotentSendable(queue: PartitionQueue): boolean {
    const sequencer = this.idempotence!;
    if (sequencer.fatal !== null) {
      for (
        let batch = this.accumulator.takeSendable(queue);
        batch !== null;
        batch = this.accumulator.takeSendable(queue)
      ) {
        this.accumulator.reject(batch, sequencer.fatal);
      }
      return false;
    }
    if (sequencer.ready) return true;
    this.startSession();
    return false;
  }

  /** Registers for a new session once nothing is in flight, stamps what waits, and sends it. */
  private startSession(): void {
    const sequencer = this.idempotence!;
    if (sequencer.ready || sequencer.fatal !== null || this.sessionStarting) return;
    if (this.inFlightTotal > 0 || this.state === 'closed') return;
    this.sessionStarting = true;
    // Sessions that end before anything is acknowledged (a broker answering UNKNOWN_PRODUCER_ID
    // again and again) start after the usual retry backoff, not in a tight loop.
    this.sessionsSinceAck++;
    let attempts = 0;
    const attempt = (): void => {
      attempts++;
      sequencer.register().then(
        () => {
          this.sessionStarting = false;
          const queues = this.allQueues();
          for (const queue of queues) sequencer.stampReady(queue, queue.ready);
          for (const queue of queues) this.drain(queue);
        },
        (error: unknown) => {
          if (sequencer.fatal !== null || this.transport.closed) {
            this.sessionStarting = false;
            sequencer.fatal ??= closedError('the producer');
            for (const queue of this.allQueues()) this.drain(queue);
            return;
          }
          // Batches waiting past deliveryTimeoutMs for a session fail with the registration's error.
          for (const queue of this.allQueues()) {
            for (;;) {
              const next = queue.ready[0] ?? queue.open;
              if (next === null || next === undefined) break;
              if (Date.now() - next.createdAtMs < this.options.deliveryTimeoutMs) break;
              const batch = this.accumulator.takeSendable(queue);
              if (batch === null) break;
              this.accumulator.reject(batch, error);
            }
          }
          const timer = setTimeout(() => {
            this.retryTimers.delete(timer);
            attempt();
          }, this.backoffMs(attempts));
          this.retryTimers.add(timer);
        },
      );
    };
    if (this.sessionsSinceAck <= 1) {
      attempt();
      return;
    }
    const timer = setTimeout(
      () => {
        this.retryTimers.delete(timer);
        attempt();
      },
      this.backoffMs(this.sessionsSinceAck - 1),
    );
    this.retryTimers.add(timer);
  }

  /** Idempotent: what a failed batch means (idempotence.ts, classify), then resend or fail it. */
  private onIdempotentFailure(batch: ProducerBatch, error: unknown, backoffMs: number): void {
    const sequencer = this.idempotence!;
    const queue = batch.queue;
    const verdict = sequencer.classify(batch, error, this.hasEarlierUnacked(batch));
    // A resend (in a new session, or after an earlier batch) is not a retry, but it too ends once
    // deliveryTimeoutMs has passed: a broker that keeps answering UNKNOWN_PRODUCER_ID must not keep
    // the producer registering and resending for ever.
    if (verdict === 'resend' && Date.now() - batch.createdAtMs < this.options.deliveryTimeoutMs) {
      batch.attempts--;
      this.accumulator.requeue(batch);
      this.pauseForResend(queue, 0);
      return;
    }
    if (
      verdict === 'usual' &&
      error instanceof SpillwayError &&
      error.retriable &&
      batch.attempts <= this.options.retries &&
      Date.now() + backoffMs - batch.createdAtMs < this.options.deliveryTimeoutMs &&
      !this.transport.closed
    ) {
      this.accumulator.requeue(batch);
      this.pauseForResend(queue, backoffMs);
      return;
    }
    // Failed for good: the partition's later batches would leave a gap, so they go in a new session.
    if (sequencer.isCurrent(batch)) sequencer.endSession();
    this.accumulator.reject(batch, error);
    if (sequencer.fatal !== null)
      for (const other of this.allQueues()) if (other !== queue) this.drain(other);
  }

  /** Idempotent: `queue` sends again after `backoffMs` and once its batches in flight have settled. */
  private pauseForResend(queue: PartitionQueue, backoffMs: number): void {
    if (queue.paused) return;
    queue.paused = true;
    const timer = setTimeout(() => {
      this.retryTimers.delete(timer);
      if (queue.inFlight > 0) {
        this.held.add(queue);
        return;
      }
      queue.paused = false;
      this.drain(queue);
    }, backoffMs);
    this.retryTimers.add(timer);
  }

  private idempotentSettled(queue: PartitionQueue): void {
    if (queue.inFlight === 0 && this.held.delete(queue)) queue.paused = false;
    if (!this.idempotence!.ready && this.inFlightTotal === 0) this.startSession();
  }

  /** An earlier batch of the same partition is not acknowledged yet (in flight or waiting to go again). */
  private hasEarlierUnacked(batch: ProducerBatch): boolean {
    for (const other of this.accumulator.unsettled) {
      if (other.queue === batch.queue && other.sequence < batch.sequence && other.bytes !== null) return true;
    }
    return false;
  }

  private allQueues(): PartitionQueue[] {
    const queues: PartitionQueue[] = [];
    for (const topic of this.topics.values()) {
      for (const queue of topic.queues) if (queue !== undefined) queues.push(queue);
    }
    return queues;
  }

  /** retryBackoffMs * 2^(attempts-1), at most retryBackoffMaxMs, ±20 % so that clients spread out. */
  private backoffMs(attempts: number): number {
    const base = Math.min(
      this.options.retryBackoffMs * 2 ** Math.min(Math.max(attempts - 1, 0), 30),
      this.options.retryBackoffMaxMs,
    );
    return Math.round(base * (0.8 + 0.4 * Math.random()));
  }
}
