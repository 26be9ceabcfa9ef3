/**
 * A message as a consumer yields it. Key, value and header values are Buffers viewing the fetched
 * bytes (no copy): `msg.value.toString()` gives UTF-8 text. They stay valid as long as the message
 * is referenced.
 */
export type MessageHeaders = Record<string, Buffer | null>;

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
  /** Times this message was delivered: always 1 until acknowledgements arrive (a later version). */
  readonly deliveryCount: number;

  constructor(
    topic: string,
    partition: number,
    offset: number,
    key: Buffer | null,
    value: Buffer | null,
    headers: MessageHeaders,
    timestamp: number,
  ) {
    this.topic = topic;
    this.partition = partition;
    this.offset = offset;
    this.key = key;
    this.value = value;
    this.headers = headers;
    this.timestamp = timestamp;
    this.deliveryCount = 1;
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
