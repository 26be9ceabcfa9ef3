/**
 * A message as a consumer yields it, and the contract every consumption mode shares for settling it.
 *
 * Key, value and header values are Buffers viewing the fetched bytes (no copy): `msg.value.toString()`
 * gives UTF-8 text. They stay valid as long as the message is referenced.
 *
 * Settling: `await msg.ack()` says the message is done, `await msg.nack({ delayMs, error })` that it
 * failed and should come again. Both delegate to the consumer's MessageSettler (one per consumer,
 * given at construction), which decides what they mean in its mode (see each consumer's header).
 * A message is settled once: a second ack() (or nack()) returns the first call's promise, an ack()
 * after a nack() or the other way round rejects with INVALID_ARGUMENT and changes nothing.
 */
import { InvalidArgumentError } from '../errors.js';
import type { RecordCursor } from '../format/record-batch.js';
import { nackErrorTextLengthMax, retryBackoffMsMax } from '../limits.js';

export type MessageHeaders = Record<string, Buffer | null>;

export interface NackOptions {
  /** Wait at least this long before the message comes again. Default 0 (the mode's own schedule). */
  delayMs?: number;
  /** Why it failed (e.g. the handler's error text); cut to nackErrorTextLengthMax characters. */
  error?: string;
}

/**
 * How a consumer settles its messages; each consumption mode provides one.
 * `redelivery` tells consumer.run and the worker pool what a nack brings back:
 * - 'rewind': the partition is read again from the nacked message on, so messages of that
 *   partition taken after it come again too (log and group modes). An ordered runner drops the
 *   messages of that partition it holds after the nacked one: they will be delivered again.
 * - 'message': only the nacked message comes again (shared and key_shared modes).
 */
export interface MessageSettler {
  readonly redelivery: 'rewind' | 'message';
  ack(message: ConsumedMessage): Promise<void>;
  /** `options` is validated (delayMs an integer in [0, retryBackoffMsMax]) and `error` cut to length. */
  nack(message: ConsumedMessage, options: NackOptions): Promise<void>;
}

export class ConsumedMessage {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  /** Header values by key (if a key repeats, the last value). */
  readonly headers: MessageHeaders;
  /** Milliseconds since the epoch, as the producer set it. */
  readonly timestamp: number;
  /** Times this message was delivered to this consumer (its group in queue modes): 1 the first time. */
  readonly deliveryCount: number;
  private readonly settler: MessageSettler;
  private settledAs: 'ack' | 'nack' | null = null;
  private settlement: Promise<void> | null = null;

  constructor(
    topic: string,
    partition: number,
    offset: number,
    key: Buffer | null,
    value: Buffer | null,
    headers: MessageHeaders,
    timestamp: number,
    deliveryCount: number,
    settler: MessageSettler,
  ) {
    this.topic = topic;
    this.partition = partition;
    this.offset = offset;
    this.key = key;
    this.value = value;
    this.headers = headers;
    this.timestamp = timestamp;
    this.deliveryCount = deliveryCount;
    this.settler = settler;
  }

  /** Whether ack() or nack() was called, and which. */
  get settled(): 'ack' | 'nack' | null {
    return this.settledAs;
  }

  /** The message is done: what that stores depends on the consumer's mode. */
  ack(): Promise<void> {
    return this.settle('ack', () => this.settler.ack(this));
  }

  /** The message failed: it comes again (how and when depends on the consumer's mode). */
  nack(options: NackOptions = {}): Promise<void> {
    let checked: NackOptions;
    try {
      checked = checkNackOptions(options);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.settle('nack', () => this.settler.nack(this, checked));
  }

  private settle(kind: 'ack' | 'nack', call: () => Promise<void>): Promise<void> {
    if (this.settledAs !== null) {
      if (this.settledAs === kind && this.settlement !== null) return this.settlement;
      return Promise.reject(
        new InvalidArgumentError(
          `message ${this.topic}/${this.partition}@${this.offset} was already ${this.settledAs === 'ack' ? 'acked' : 'nacked'}`,
        ),
      );
    }
    this.settledAs = kind;
    let settlement: Promise<void>;
    try {
      settlement = call();
    } catch (error) {
      settlement = Promise.reject(error);
    }
    this.settlement = settlement;
    return settlement;
  }

  /** The fields as plain JSON-friendly values: key, value and headers as UTF-8 text. */
  toJSON(): {
    topic: string;
    partition: number;
    offset: number;
    key: string | null;
    value: string | null;
    headers: Record<string, string | null>;
    timestamp: number;
    deliveryCount: number;
  } {
    const headers: Record<string, string | null> = {};
    for (const name of Object.keys(this.headers)) headers[name] = this.headers[name]?.toString() ?? null;
    return {
      topic: this.topic,
      partition: this.partition,
      offset: this.offset,
      key: this.key?.toString() ?? null,
      value: this.value?.toString() ?? null,
      headers,
      timestamp: this.timestamp,
      deliveryCount: this.deliveryCount,
    };
  }
}

/** Validates nack options: delayMs an integer in [0, retryBackoffMsMax], error a string (cut to length). */
export function checkNackOptions(options: NackOptions): NackOptions {
  if (options === null || typeof options !== 'object')
    throw new InvalidArgumentError('nack options must be an object');
  const checked: NackOptions = {};
  const { delayMs, error } = options;
  if (delayMs !== undefined) {
    if (!Number.isSafeInteger(delayMs) || delayMs < 0 || delayMs > retryBackoffMsMax) {
      throw new InvalidArgumentError(
        `nack option delayMs must be an integer in [0, ${retryBackoffMsMax}], got ${String(delayMs)}`,
      );
    }
    checked.delayMs = delayMs;
  }
  if (error !== undefined) {
    if (typeof error !== 'string') throw new InvalidArgumentError('nack option error must be a string');
    checked.error = error.length > nackErrorTextLengthMax ? error.slice(0, nackErrorTextLengthMax) : error;
  }
  return checked;
}

const emptyHeaders: MessageHeaders = Object.freeze({}) as MessageHeaders;

/**
 * The message at `cursor`'s current record: key and value are views of `text` (the fetched bytes as a
 * Buffer, the cursor's `bytes`), header values views too. Shared by every consumer kind.
 */
export function messageAt(
  topic: string,
  partition: number,
  cursor: RecordCursor,
  text: Buffer,
  deliveryCount: number,
  settler: MessageSettler,
): ConsumedMessage {
  const key =
    cursor.keyLength < 0 ? null : text.subarray(cursor.keyPosition, cursor.keyPosition + cursor.keyLength);
  const value =
    cursor.valueLength < 0
      ? null
      : text.subarray(cursor.valuePosition, cursor.valuePosition + cursor.valueLength);
  let headers = emptyHeaders;
  if (cursor.headerCount > 0) {
    headers = {};
    for (const [name, headerValue] of cursor.headers()) {
      headers[name] =
        headerValue === null
          ? null
          : Buffer.from(headerValue.buffer, headerValue.byteOffset, headerValue.byteLength);
    }
  }
  return new ConsumedMessage(
    topic,
    partition,
    cursor.offset,
    key,
    value,
    headers,
    cursor.timestamp,
    deliveryCount,
    settler,
  );
}
