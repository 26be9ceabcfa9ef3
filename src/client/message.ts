/**
 * A message as a consumer yields it. Key, value and header values are Buffers viewing the fetched
 * bytes (no copy): `msg.value.toString()` gives UTF-8 text. They stay valid as long as the message
 * is referenced.
 */
export type MessageHeaders = Record<string, Buffer | null>;

export interface NackOptions {
  /** Wait this long before the message is delivered again. Default 0. */
  delayMs?: number;
  /** Why it failed (kept with the message where the mode stores it, e.g. dead letters). */
  error?: string;
}

/**
 * What `msg.ack()` / `msg.nack()` call: each consumption mode gives its messages one. Group and
 * broadcast mode (group-consumer.ts): ack marks the message finished (the contiguous finished prefix
 * is committed in batches); nack rewinds its partition to it (see GroupConsumer).
 */
export interface MessageSettler {
  ack(message: ConsumedMessage): Promise<void>;
  nack(message: ConsumedMessage, options?: NackOptions): Promise<void>;
}

/** The settler of consumers that store nothing (no group): ack and nack do nothing. */
export const noStoreSettler: MessageSettler = {
  ack: () => Promise.resolve(),
  nack: () => Promise.resolve(),
};

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
  /** Times this message was delivered to this consumer (more than 1 after a nack rewound to it). */
  readonly deliveryCount: number;
  private readonly settler: MessageSettler;

  constructor(
    topic: string,
    partition: number,
    offset: number,
    key: Buffer | null,
    value: Buffer | null,
    headers: MessageHeaders,
    timestamp: number,
    settler: MessageSettler = noStoreSettler,
    deliveryCount = 1,
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

  /** Marks the message finished (what that stores depends on the mode: see MessageSettler). */
  ack(): Promise<void> {
    return this.settler.ack(this);
  }

  /** Marks the message failed: it is delivered again (when and how depends on the mode). */
  nack(options?: NackOptions): Promise<void> {
    return this.settler.nack(this, options);
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
