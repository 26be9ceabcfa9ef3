/**
 * How the worker pool hands messages to a worker thread: a batch of messages packed as plain data
 * in two buffers that are transferred (moved, not copied) to the worker, and the worker's answer.
 * One pack per batch, whatever its size: the key, value and header value bytes are copied once
 * into `data` (a ConsumedMessage's Buffers view a whole fetch answer, which structured cloning would
 * copy whole for each message); `meta` holds the numbers, `meta[i * metaFields + field]`.
 *
 * Shared by worker-pool.ts (main thread: packBatch) and pool-worker.ts (worker: unpackBatch).
 */
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

/** A task for pool-worker.ts's runBatch. */
export interface BatchTask {
  /** URL of the user's worker module (imported once per thread). */
  module: string;
  /** On a failure, skip the rest of that partition's messages in the batch (status 'skipped'). */
  stopPartitionOnFailure: boolean;
  count: number;
  topics: string[];
  meta: Float64Array;
  data: Uint8Array;
  headerNames: string[];
  /** Per header: value start, value length (-1: null). */
  headerMeta: Float64Array;
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

/** Packs `messages` into a task; `buffers` lists what to transfer. */
export function packBatch(
  module: string,
  stopPartitionOnFailure: boolean,
  messages: readonly ConsumedMessage[],
): { task: BatchTask; buffers: ArrayBuffer[] } {
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
  return {
    task: { module, stopPartitionOnFailure, count, topics, meta, data, headerNames, headerMeta },
    buffers: [data.buffer, meta.buffer, headerMeta.buffer],
  };
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
  private readonly task: BatchTask;
  private readonly data: Buffer;
  private readonly base: number;

  constructor(task: BatchTask, data: Buffer, index: number) {
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

/** The messages of a task, as the worker hands them to the handler. */
export function unpackBatch(task: BatchTask): WorkerMessage[] {
  const data = Buffer.from(task.data.buffer, task.data.byteOffset, task.data.byteLength);
  const messages: WorkerMessage[] = new Array(task.count);
  for (let index = 0; index < task.count; index++) messages[index] = new BatchMessage(task, data, index);
  return messages;
}

/** Identifies a message's partition within a task (for stopPartitionOnFailure). */
export function partitionIdOf(task: BatchTask, index: number): number {
  const base = index * metaFields;
  return task.meta[base + field.topic]! * 0x1_0000_0000 + task.meta[base + field.partition]!;
}
