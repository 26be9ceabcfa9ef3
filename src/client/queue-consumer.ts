/**
 * The consumer of the queue modes, `mode: 'shared' | 'key_shared'` (competing consumers with
 * per-message acknowledgement; docs/PROTOCOL.md "Queues"). An async iterator:
 * `for await (const msg of consumer) { ...; await msg.ack(); }`; leaving the loop closes it.
 *
 * Per topic one long-poll QUEUE_RECEIVE is in flight at a time, asking for up to `maxMessages` (at
 * most as many as the buffer has room for: `bufferMessagesMax` messages received and not yet taken;
 * it waits until there is room for min(maxMessages, bufferMessagesMax / 2), so receives stay large).
 * The broker hands out each message to one member of the group; unacked ones come back after
 * `ackTimeoutMs`, nacked ones after `delayMs` or the `retryBackoffMs` schedule; after `maxDeliveries`
 * a message goes to `deadLetterTopic`. In key_shared mode one key is with one member at a time, in order.
 *
 * Settling (its MessageSettler, redelivery 'message'): `msg.ack()` and `msg.nack()` are gathered and
 * sent together: everything settled in one turn of the event loop (or 4096 acks) goes out as one
 * QUEUE_ACK of offset ranges per topic (one QUEUE_NACK per delay and error). The promise resolves
 * once the broker made the acks durable. Awaiting each ack before taking the next message sends one
 * ACK per message: to go fast, ack without awaiting and await the last one (or use consumer.run).
 *
 * close() stops receiving, nacks (delay 0) the messages received and not taken so they go to other
 * members at once, sends the pending acks, and ends the iteration. Messages taken and not settled
 * come back after their ack timeout (or when the connection closes).
 *
 * Errors: retriable receive errors (connection lost, broker closing) are retried with backoff; any
 * other is thrown by the iterator after the buffered messages, and the consumer closes.
 */

import { CorruptBatchError, InvalidArgumentError, SpillwayError } from '../errors.js';
import { RecordCursor, verifyBatchCrc } from '../format/record-batch.js';
import {
  batchBytesMax,
  fetchMaxBytesDefault,
  fetchMaxWaitMsMax,
  queueReceiveMessagesMax,
} from '../limits.js';
import { Opcode } from '../protocol/opcodes.js';
import type { QueueMode, QueueSettings } from '../protocol/queue-api.js';
import type { ReceiveResponsePartition } from '../protocol/queue-messages.js';
import { sleepUnlessAborted } from './abortable-sleep.js';
import { clientCrc32c } from './client-crc32c.js';
import { BufferQueue, ConsumerInbox } from './consumer-inbox.js';
import { consumerIntegerOption, consumerTopicsOption } from './consumer-options.js';
import { type RunOptions, type RunSummary, runConsumer } from './consumer-run.js';
import { type ConsumedMessage, type MessageSettler, messageAt, type NackOptions } from './message.js';
import type { Transport } from './transport.js';
import { closedError } from './wire.js';

export interface QueueConsumerOptions extends QueueSettings {
  group: string;
  topics: string[];
  mode: QueueMode;
  /** Most messages one receive asks for. Default 1000. */
  maxMessages?: number;
  /** Messages received and not yet taken, at most (a receive asks only for the room left). Default 4096. */
  bufferMessagesMax?: number;
  /** How long the broker holds a receive waiting for messages. Default 500. */
  maxWaitMs?: number;
  /** Bytes of batches a receive reads per partition, about. Default 1 MiB. */
  maxBytes?: number;
  /** Timeout of a request on top of maxWaitMs. Default 30 000. */
  requestTimeoutMs?: number;
  /** Not for queue modes: the broker decides where the group is (its ack floor). */
  from?: unknown;
}

export const queueConsumerDefaults = {
  maxMessages: 1000,
  bufferMessagesMax: 4096,
  maxWaitMs: 500,
  requestTimeoutMs: 30_000,
} as const;

/** Acks gathered before a flush is sent at once (without waiting for the end of the turn). */
const ackFlushCount = 4096;
const retryBackoffMsFirst = 100;
const retryBackoffMsLast = 5000;
const knownOptions = new Set([
  'group',
  'topics',
  'mode',
  'ackTimeoutMs',
  'maxDeliveries',
  'retryBackoffMs',
  'deadLetterTopic',
  'maxMessages',
  'bufferMessagesMax',
  'maxWaitMs',
  'maxBytes',
  'requestTimeoutMs',
]);

/** Acks (or nacks of one delay and error) of one topic waiting to be sent: one promise for all. */
class PendingSettle {
  readonly byPartition = new Map<number, number[]>();
  count = 0;
  readonly promise: Promise<void>;
  resolve: () => void = () => undefined;
  reject: (error: unknown) => void = () => undefined;

  constructor() {
    this.promise = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    // Rejections reach every caller of ack()/nack(); this keeps an unobserved one from being unhandled.
    this.promise.catch(() => undefined);
  }
}

export class QueueConsumer implements AsyncIterableIterator<ConsumedMessage>, MessageSettler {
  readonly redelivery = 'message' as const;
  readonly group: string;
  readonly topics: readonly string[];
  readonly mode: QueueMode;
  private readonly transport: Transport;
  private readonly settings: QueueSettings;
  private readonly maxMessages: number;
  private readonly bufferMessagesMax: number;
  private readonly maxWaitMs: number;
  private readonly maxBytes: number;
  private readonly requestTimeoutMs: number;
  /** A receive is sent only once the buffer has room for this many (no trickle of tiny receives). */
  private readonly receiveRoomMin: number;
  private readonly buffer = new BufferQueue<ConsumedMessage>();
  private readonly roomWaiters: Array<() => void> = [];
  private readonly lifetime = new AbortController();
  private readonly inbox = new ConsumerInbox(this.lifetime.signal);
  private readonly loops: Array<Promise<void>>;
  private closing: Promise<void> | null = null;
  private acks = new Map<string, PendingSettle>();
  /** Key: topic NUL delayMs NUL error. */
  private nacks = new Map<string, PendingSettle & { topic: string; options: NackOptions }>();
  private flushScheduled = false;
  private readonly inFlightSettles = new Set<Promise<void>>();

  /** @internal Made by Spillway.consumer(). */
  constructor(transport: Transport, options: QueueConsumerOptions) {
    for (const name of Object.keys(options)) {
      if (!knownOptions.has(name) && (options as unknown as Record<string, unknown>)[name] !== undefined) {
        throw new InvalidArgumentError(`consumer option ${name} is not supported in mode '${options.mode}'`);
      }
    }
    if (typeof options.group !== 'string' || options.group.length === 0) {
      throw new InvalidArgumentError(`mode '${options.mode}' needs a group (consumer option group)`);
    }
    const topics = consumerTopicsOption(options.topics);
    this.group = options.group;
    this.topics = topics;
    this.mode = options.mode;
    this.transport = transport;
    this.settings = {
      ...(options.ackTimeoutMs !== undefined ? { ackTimeoutMs: options.ackTimeoutMs } : {}),
      ...(options.maxDeliveries !== undefined ? { maxDeliveries: options.maxDeliveries } : {}),
      ...(options.retryBackoffMs !== undefined ? { retryBackoffMs: options.retryBackoffMs } : {}),
      ...(options.deadLetterTopic !== undefined ? { deadLetterTopic: options.deadLetterTopic } : {}),
    };
    this.maxMessages = consumerIntegerOption(
      options.maxMessages,
      'maxMessages',
      1,
      queueReceiveMessagesMax,
      queueConsumerDefaults.maxMessages,
    );
    this.bufferMessagesMax = consumerIntegerOption(
      options.bufferMessagesMax,
      'bufferMessagesMax',
      1,
      1_000_000,
      queueConsumerDefaults.bufferMessagesMax,
    );
    this.maxWaitMs = consumerIntegerOption(
      options.maxWaitMs,
      'maxWaitMs',
      0,
      fetchMaxWaitMsMax,
      queueConsumerDefaults.maxWaitMs,
    );
    this.maxBytes = consumerIntegerOption(
      options.maxBytes,
      'maxBytes',
      1,
      batchBytesMax,
      fetchMaxBytesDefault,
    );
    this.requestTimeoutMs = consumerIntegerOption(
      options.requestTimeoutMs,
      'requestTimeoutMs',
      1,
      Number.MAX_SAFE_INTEGER,
      queueConsumerDefaults.requestTimeoutMs,
    );
    this.receiveRoomMin = Math.max(1, Math.min(this.maxMessages, Math.floor(this.bufferMessagesMax / 2)));
    this.loops = this.topics.map((topic) => this.receiveLoop(topic));
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<ConsumedMessage, undefined>> {
    return this.inbox.next(
      () => this.takeBuffered(),
      () => this.close(),
    );
  }

  private takeBuffered(): ConsumedMessage | null {
    const message = this.buffer.front();
    if (message === undefined) return null;
    this.buffer.shift();
    this.wakeRoom();
    return message;
  }

  async return(): Promise<IteratorResult<ConsumedMessage, undefined>> {
    await this.close();
    return { done: true, value: undefined };
  }

  /** Messages received and not yet taken. */
  get bufferedCount(): number {
    return this.buffer.length;
  }

  /** MessageSettler: gathers the ack; resolves once the broker made it durable. */
  ack(message: ConsumedMessage): Promise<void> {
    let pending = this.acks.get(message.topic);
    if (pending === undefined) {
      pending = new PendingSettle();
      this.acks.set(message.topic, pending);
    }
    return this.gather(pending, message);
  }

  /** MessageSettler: gathers the nack (by topic, delay and error). */
  nack(message: ConsumedMessage, options: NackOptions): Promise<void> {
    const key = `${message.topic}\u0000${options.delayMs ?? ''}\u0000${options.error ?? ''}`;
    let pending = this.nacks.get(key);
    if (pending === undefined) {
      pending = Object.assign(new PendingSettle(), { topic: message.topic, options });
      this.nacks.set(key, pending);
    }
    return this.gather(pending, message);
  }

  /**
   * Runs a handler over the messages, in this thread or in worker threads (consumer-run.ts): what it
   * handles is acked, what it fails is nacked with the error text (redelivered after the backoff, or
   * dead-lettered after maxDeliveries, by the broker).
   */
  run<Extra extends object = object>(options: RunOptions<Extra>): Promise<RunSummary> {
    return runConsumer(this, options, this);
  }

  /** Stops receiving, hands back what was not taken, sends pending settlements. Idempotent. */
  close(): Promise<void> {
    if (this.closing === null) {
      this.lifetime.abort(closedError('the consumer'));
      this.inbox.wake();
      this.wakeRoom();
      this.closing = (async () => {
        await Promise.allSettled(this.loops);
        const untaken = this.buffer.drain();
        for (const message of untaken) void this.nack(message, { delayMs: 0 }).catch(() => undefined);
        await this.flush();
        await Promise.allSettled([...this.inFlightSettles]);
      })();
    }
    return this.closing;
  }

  private gather(pending: PendingSettle, message: ConsumedMessage): Promise<void> {
    let list = pending.byPartition.get(message.partition);
    if (list === undefined) {
      list = [];
      pending.byPartition.set(message.partition, list);
    }
    list.push(message.offset);
    pending.count++;
    const promise = pending.promise;
    if (pending.count >= ackFlushCount) void this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => void this.flush());
    }
    return promise;
  }

  /** Sends every gathered ack and nack. */
  private flush(): Promise<void> {
    this.flushScheduled = false;
    const acks = this.acks;
    const nacks = this.nacks;
    this.acks = new Map();
    this.nacks = new Map();
    const sends: Array<Promise<void>> = [];
    for (const [topic, pending] of acks) {
      const partitions = [...pending.byPartition].map(([partition, offsets]) => ({
        partition,
        ranges: rangesOf(offsets),
      }));
      sends.push(this.send(Opcode.queueAck, { group: this.group, topic, partitions }, pending));
    }
    for (const pending of nacks.values()) {
      const partitions = [...pending.byPartition].map(([partition, offsets]) => ({ partition, offsets }));
      const header: Record<string, unknown> = { group: this.group, topic: pending.topic, partitions };
      if (pending.options.delayMs !== undefined) header['delayMs'] = pending.options.delayMs;
      if (pending.options.error !== undefined) header['error'] = pending.options.error;
      sends.push(this.send(Opcode.queueNack, header, pending));
    }
    return Promise.all(sends).then(() => undefined);
  }

  private send(opcode: number, header: unknown, pending: PendingSettle): Promise<void> {
    const sent = this.transport.request(opcode, header).then(
      () => pending.resolve(),
      (error: unknown) => pending.reject(error),
    );
    this.inFlightSettles.add(sent);
    void sent.finally(() => this.inFlightSettles.delete(sent));
    return sent;
  }

  private async receiveLoop(topic: string): Promise<void> {
    const signal = this.lifetime.signal;
    const timeoutMs = this.maxWaitMs + this.requestTimeoutMs;
    let failures = 0;
    const header: Record<string, unknown> = {
      group: this.group,
      topic,
      mode: this.mode,
      max: this.maxMessages,
      waitMs: this.maxWaitMs,
      maxBytes: this.maxBytes,
      ...this.settings,
    };
    while (!signal.aborted) {
      const room = this.bufferMessagesMax - this.bufferedCount;
      if (room < this.receiveRoomMin) {
        await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
        continue;
      }
      header['max'] = Math.min(this.maxMessages, room);
      try {
        const response = await this.transport.request(Opcode.queueReceive, header, undefined, {
          timeoutMs,
          signal,
        });
        failures = 0;
        const messages = decodeReceive(topic, response.header, response.body, this);
        if (signal.aborted) {
          // Received after close began: hand them back at once.
          for (const message of messages) void this.nack(message, { delayMs: 0 }).catch(() => undefined);
          return;
        }
        if (messages.length > 0) {
          for (const message of messages) this.buffer.push(message);
          this.inbox.wake();
        }
      } catch (error) {
        if (signal.aborted) return;
        if (error instanceof SpillwayError && error.retriable) {
          failures++;
          await this.sleep(
            Math.min(retryBackoffMsFirst * 2 ** Math.min(failures - 1, 10), retryBackoffMsLast),
          );
          continue;
        }
        this.inbox.fail(error);
        return;
      }
    }
  }

  private wakeRoom(): void {
    if (this.roomWaiters.length === 0) return;
    if (this.bufferMessagesMax - this.bufferedCount >= this.receiveRoomMin || this.lifetime.signal.aborted) {
      for (const wake of this.roomWaiters.splice(0)) wake();
    }
  }

  private sleep(ms: number): Promise<void> {
    return sleepUnlessAborted(ms, this.lifetime.signal);
  }
}

/** Flat [from, to) ranges of offsets (sorted here). */
export function rangesOf(offsets: number[]): number[] {
  offsets.sort((a, b) => a - b);
  const ranges: number[] = [];
  for (const offset of offsets) {
    const last = ranges.length - 1;
    if (last > 0 && offset < ranges[last]!) continue; // a repeat
    if (last > 0 && offset === ranges[last]) ranges[last] = offset + 1;
    else ranges.push(offset, offset + 1);
  }
  return ranges;
}

/** The messages of a QUEUE_RECEIVE answer: the delivered offsets of each partition's batches. */
function decodeReceive(
  topic: string,
  header: unknown,
  body: Uint8Array,
  settler: MessageSettler,
): ConsumedMessage[] {
  const partitions = (header as { partitions?: unknown } | null)?.partitions;
  if (!Array.isArray(partitions)) {
    throw new SpillwayError('PROTOCOL_ERROR', "QUEUE_RECEIVE: the broker's answer has no partitions list");
  }
  const text = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const messages: ConsumedMessage[] = [];
  let position = 0;
  for (const entry of partitions as ReceiveResponsePartition[]) {
    const { partition, bytes, deliveries } = entry;
    if (
      !Number.isSafeInteger(partition) ||
      !Number.isSafeInteger(bytes) ||
      bytes < 0 ||
      position + bytes > body.length ||
      !Array.isArray(deliveries)
    ) {
      throw new SpillwayError('PROTOCOL_ERROR', 'QUEUE_RECEIVE: malformed partition entry in the answer');
    }
    // Deliveries and batches both come in ascending offset order (docs/PROTOCOL.md): walk them together.
    const wanted = deliveries.length / 2;
    let next = 0;
    const end = position + bytes;
    while (position < end) {
      if (!verifyBatchCrc(body, position, clientCrc32c)) {
        throw new CorruptBatchError(
          `batch at byte ${position} of a receive of ${topic}/${partition} fails its CRC32C or length check`,
        );
      }
      const cursor = new RecordCursor(body, position);
      while (next < wanted && cursor.next()) {
        const offset = cursor.offset;
        const want = deliveries[next * 2]!;
        if (offset < want) continue;
        if (offset > want) break;
        messages.push(messageAt(topic, partition, cursor, text, deliveries[next * 2 + 1]!, settler));
        next++;
      }
      position = cursor.batchEnd;
    }
    if (next < wanted) {
      throw new SpillwayError(
        'PROTOCOL_ERROR',
        `QUEUE_RECEIVE: ${wanted - next} delivered offset(s) of ${topic}/${partition} missing from the batches (or out of order)`,
      );
    }
  }
  return messages;
}
