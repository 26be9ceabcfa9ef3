/**
 * How the worker pool hands messages to a worker thread: a task of one or more parts, each a run of
 * messages packed as plain data in buffers that are transferred (moved, not copied) to the worker,
 * and the worker's answer. A part's key, value and header value bytes are in `data` (copied once
 * from the fetched bytes: a fetch answer is not the pool's to move, and structured cloning would copy
 * it whole for each message); `meta` holds the numbers, `meta[i * metaFields + field]`.
 *
 * Two ways to make a part:
 * - packMessages(messages): from ConsumedMessages (any consumer, any ordering);
 * - RecordPartBuilder: straight from a fetched record batch's cursor, without a ConsumedMessage or a
 *   Buffer per message; the record bytes of the part are copied with one copy of the byte range they
 *   span (positions rebased). The group consumer makes RecordSpans this way (group-consumer.ts), which
 *   the worker pool runs with ordering 'partition' (pool-span-run.ts).
 *
 * Shared by the main thread (worker-pool.ts, pool-span-run.ts, group-consumer.ts) and pool-worker.ts
 * (worker: unpackBatch).
 */
import type { RecordCursor } from '../format/record-batch.js';
import type { ConsumedMessage } from './message.js';

/**
 * What a worker module's `handler` receives: the message as data (no ack/nack: the return or throw
 * decides). key, value and header values are Buffers viewing the batch's bytes, made on each access.
 */
export interface WorkerMessage {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly headers: Record<string, Buffer | null>;
  readonly timestamp: number;
  readonly deliveryCount: number;
}

/** Messages packed as data: one part of a task. */
export interface BatchPart {
  count: number;
  topics: string[];
  meta: Float64Array;
  data: Uint8Array;
  headerNames: string[];
  /** Per header: value start, value length (-1: null). */
  headerMeta: Float64Array;
}

/** A task for pool-worker.ts's runBatch: its messages are the parts' messages, in order. */
export interface BatchTask {
  /** URL of the user's worker module (imported once per thread). */
  module: string;
  /** On a failure, skip the rest of that partition's messages in the batch (status 'skipped'). */
  stopPartitionOnFailure: boolean;
  parts: BatchPart[];
}

/** The buffers of `parts`, to transfer. */
export function partBuffers(parts: readonly BatchPart[]): ArrayBuffer[] {
  const buffers: ArrayBuffer[] = [];
  for (const part of parts) {
    buffers.push(part.meta.buffer as ArrayBuffer, part.data.buffer as ArrayBuffer);
    if (part.headerMeta.length > 0) buffers.push(part.headerMeta.buffer as ArrayBuffer);
  }
  return buffers;
}

/**
 * How a run of one partition's records made by RecordPartBuilder is settled: acked offsets as a
 * range, a failed one nacked (in group mode the partition rewinds to it).
 */
export interface SpanSettler {
  ackRange(from: number, to: number): void;
  nackAt(offset: number, error: string): void;
}

/** Consecutive records of one partition, packed for a worker, and how to settle them. */
export interface RecordSpan {
  readonly topic: string;
  readonly partition: number;
  /** Records firstOffset .. firstOffset + count - 1, in order. */
  readonly firstOffset: number;
  readonly count: number;
  readonly part: BatchPart;
  readonly settler: SpanSettler;
}

export const batchStatus = { handled: 0, failed: 1, skipped: 2 } as const;

export interface BatchResult {
  /** Per message: a batchStatus value. */
  status: Uint8Array;
  /** Error texts of the failed messages. */
  errors: Array<{ index: number; error: string }>;
  /** Set when the worker module could not be used (not loaded, no `handler` function). */
  fatal?: string;
}

const field = {
  topic: 0,
  partition: 1,
  offset: 2,
  timestamp: 3,
  deliveryCount: 4,
  keyStart: 5,
  keyLength: 6,
  valueStart: 7,
  valueLength: 8,
  headerStart: 9,
  headerCount: 10,
} as const;
const metaFields = 11;

/** Packs `messages` into a part. */
export function packMessages(messages: readonly ConsumedMessage[]): BatchPart {
  const count = messages.length;
  let bytes = 0;
  let headerCount = 0;
  for (const message of messages) {
    bytes += (message.key?.length ?? 0) + (message.value?.length ?? 0);
    for (const name in message.headers) {
      headerCount++;
      bytes += message.headers[name]?.length ?? 0;
    }
  }
  const data = new Uint8Array(bytes);
  const meta = new Float64Array(count * metaFields);
  const headerMeta = new Float64Array(headerCount * 2);
  const headerNames: string[] = [];
  const topics: string[] = [];
  let lastTopic = '';
  let topicIndex = -1;
  let position = 0;
  const put = (bytesIn: Buffer | null, at: number): void => {
    if (bytesIn === null) {
      meta[at] = 0;
      meta[at + 1] = -1;
      return;
    }
    data.set(bytesIn, position);
    meta[at] = position;
    meta[at + 1] = bytesIn.length;
    position += bytesIn.length;
  };
  for (let index = 0; index < count; index++) {
    const message = messages[index]!;
    const base = index * metaFields;
    if (topicIndex < 0 || message.topic !== lastTopic) {
      topicIndex = topics.indexOf(message.topic);
      if (topicIndex < 0) topicIndex = topics.push(message.topic) - 1;
      lastTopic = message.topic;
    }
    meta[base + field.topic] = topicIndex;
    meta[base + field.partition] = message.partition;
    meta[base + field.offset] = message.offset;
    meta[base + field.timestamp] = message.timestamp;
    meta[base + field.deliveryCount] = message.deliveryCount;
    put(message.key, base + field.keyStart);
    put(message.value, base + field.valueStart);
    meta[base + field.headerStart] = headerNames.length;
    let headers = 0;
    for (const name in message.headers) {
      const value = message.headers[name] ?? null;
      const at = headerNames.length * 2;
      headerNames.push(name);
      if (value === null) {
        headerMeta[at] = 0;
        headerMeta[at + 1] = -1;
      } else {
        data.set(value, position);
        headerMeta[at] = position;
        headerMeta[at + 1] = value.length;
        position += value.length;
      }
      headers++;
    }
    meta[base + field.headerCount] = headers;
  }
  return { count, topics, meta, data, headerNames, headerMeta };
}

const noHeaderMeta = new Float64Array(0);

/**
 * Packs consecutive records of one partition from record cursors (one fetch answer's bytes, `body`):
 * add() after each cursor.next(), then finish(). Positions are noted as they are read; finish()
 * copies the byte range the records span once and rebases them.
 */
export class RecordPartBuilder {
  private readonly body: Uint8Array;
  private readonly topics: string[];
  private readonly partition: number;
  private meta: Float64Array;
  private count = 0;
  private low = -1;
  private high = 0;
  private readonly headerNames: string[] = [];
  private readonly headerMeta: number[] = [];

  constructor(topic: string, partition: number, body: Uint8Array, capacity: number) {
    this.body = body;
    this.topics = [topic];
    this.partition = partition;
    this.meta = new Float64Array(capacity * metaFields);
  }

  get size(): number {
    return this.count;
  }

  /** Adds the cursor's current record (at most `capacity` records). */
  add(cursor: RecordCursor, deliveryCount: number): void {
    const meta = this.meta;
    const base = this.count * metaFields;
    if (this.low < 0) this.low = cursor.keyPosition;
    meta[base + field.topic] = 0;
    meta[base + field.partition] = this.partition;
    meta[base + field.offset] = cursor.offset;
    meta[base + field.timestamp] = cursor.timestamp;
    meta[base + field.deliveryCount] = deliveryCount;
    meta[base + field.keyStart] = cursor.keyPosition;
    meta[base + field.keyLength] = cursor.keyLength;
    meta[base + field.valueStart] = cursor.valuePosition;
    meta[base + field.valueLength] = cursor.valueLength;
    let end = cursor.valueLength > 0 ? cursor.valuePosition + cursor.valueLength : cursor.valuePosition;
    const headerCount = cursor.headerCount;
    meta[base + field.headerCount] = headerCount;
    if (headerCount > 0) {
      const names = this.headerNames;
      const headerMeta = this.headerMeta;
      meta[base + field.headerStart] = names.length;
      const bytesOffset = cursor.bytes.byteOffset;
      for (const [name, value] of cursor.headers()) {
        names.push(name);
        if (value === null) {
          headerMeta.push(0, -1);
        } else {
          const start = value.byteOffset - bytesOffset;
          headerMeta.push(start, value.length);
          if (start + value.length > end) end = start + value.length;
        }
      }
    } else {
      meta[base + field.headerStart] = 0;
    }
    if (end > this.high) this.high = end;
    this.count++;
  }

  /** The part: the records' bytes copied once, positions made relative to that copy. */
  finish(): BatchPart {
    const count = this.count;
    const low = Math.max(0, this.low);
    // A copy of its own (transferred to the worker): never a view of the fetched bytes, which are
    // not the pool's to move (Buffer#slice would give a view).
    const data = new Uint8Array(Math.max(0, this.high - low));
    data.set(this.body.subarray(low, low + data.length));
    let meta = this.meta;
    if (count * metaFields < meta.length) meta = meta.slice(0, count * metaFields);
    for (let base = 0; base < meta.length; base += metaFields) {
      meta[base + field.keyStart] = meta[base + field.keyStart]! - low;
      meta[base + field.valueStart] = meta[base + field.valueStart]! - low;
    }
    let headerMeta = noHeaderMeta;
    if (this.headerMeta.length > 0) {
      headerMeta = Float64Array.from(this.headerMeta);
      for (let at = 0; at < headerMeta.length; at += 2) {
        if (headerMeta[at + 1]! >= 0) headerMeta[at] = headerMeta[at]! - low;
      }
    }
    return { count, topics: this.topics, meta, data, headerNames: this.headerNames, headerMeta };
  }
}

const noHeaders: Record<string, Buffer | null> = Object.freeze({}) as Record<string, Buffer | null>;

/**
 * A message of a batch in the worker: numbers read at once, key/value/headers made on first access
 * (a handler that does not look at them costs no Buffer).
 */
class BatchMessage implements WorkerMessage {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly timestamp: number;
  readonly deliveryCount: number;
  private readonly task: BatchPart;
  private readonly data: Buffer;
  private readonly base: number;

  constructor(task: BatchPart, data: Buffer, index: number) {
    const meta = task.meta;
    const base = index * metaFields;
    this.task = task;
    this.data = data;
    this.base = base;
    this.topic = task.topics[meta[base + field.topic]!]!;
    this.partition = meta[base + field.partition]!;
    this.offset = meta[base + field.offset]!;
    this.timestamp = meta[base + field.timestamp]!;
    this.deliveryCount = meta[base + field.deliveryCount]!;
  }

  get key(): Buffer | null {
    const meta = this.task.meta;
    return this.view(meta[this.base + field.keyStart]!, meta[this.base + field.keyLength]!);
  }

  get value(): Buffer | null {
    const meta = this.task.meta;
    return this.view(meta[this.base + field.valueStart]!, meta[this.base + field.valueLength]!);
  }

  get headers(): Record<string, Buffer | null> {
    const { meta, headerMeta, headerNames } = this.task;
    const count = meta[this.base + field.headerCount]!;
    if (count === 0) return noHeaders;
    const headers: Record<string, Buffer | null> = {};
    const start = meta[this.base + field.headerStart]!;
    for (let header = start; header < start + count; header++) {
      headers[headerNames[header]!] = this.view(headerMeta[header * 2]!, headerMeta[header * 2 + 1]!);
    }
    return headers;
  }

  private view(start: number, length: number): Buffer | null {
    return length < 0 ? null : this.data.subarray(start, start + length);
  }
}

/** The messages of a task, as the worker hands them to the handler (every part's, in order). */
export function unpackBatch(task: BatchTask): WorkerMessage[] {
  const messages: WorkerMessage[] = [];
  for (const part of task.parts) {
    const data = Buffer.from(part.data.buffer, part.data.byteOffset, part.data.byteLength);
    for (let index = 0; index < part.count; index++) messages.push(new BatchMessage(part, data, index));
  }
  return messages;
}
