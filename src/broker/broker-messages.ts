/**
 * The message service of a broker: produce, fetch with long-polling, and offset lookup on the
 * partitions the topic service (broker-topics.ts) serves.
 *
 * Visibility: a consumer sees what was appended, except with durability `always`, where it sees only
 * what is on disk (Partition.visibleEndOffset), so nothing it read can be lost in a crash.
 *
 * Produce reads the caller's batch only until its first await (MessageService.produce): the plain
 * append is synchronous up to the log's write; the delayed, idempotent and msg-id dedup paths,
 * which may wait first, take a copy.
 *
 * Concurrency: one event loop; produce and fetch run concurrently with everything, including topic
 * administration. Each call is counted in the broker's Lifecycle so close() can wait for it.
 */
import type { Clock } from '../clock.js';
import { InvalidArgumentError, InvalidBatchError, UnknownTopicError } from '../errors.js';
import { BatchAttributes } from '../format/batch-header.js';
import { validateBatch } from '../format/record-batch.js';
import {
  fetchMaxBytesMax,
  fetchMaxWaitMsMax,
  fetchWaitersPerPartitionMax,
  fetchWaitersTotalMax,
} from '../limits.js';
import { crc32c as nativeCrc32c } from '../native.js';
import type {
  FetchOptions,
  FetchResult,
  MessageService,
  OffsetSpec,
  ProduceResult,
} from '../protocol/broker-api.js';
import type { ProduceOptions } from '../protocol/replication-api.js';
import { type BrokerTopics, checkInteger } from './broker-topics.js';
import { batchMsgIds } from './dedup/batch-msg-ids.js';
import type { BrokerDedup } from './dedup/broker-dedup.js';
import type { DiskReserve } from './disk-reserve.js';
import { FetchWaiters } from './fetch-waiters.js';
import type { Lifecycle } from './lifecycle.js';
import type { Partition } from './partition.js';
import type { BrokerProducers } from './producers/broker-producers.js';
import { isInternalTopicName } from './topic-name.js';

/** Attribute bits PRODUCE refuses, with why (INVALID_BATCH). */
const unsupportedAttributes: ReadonlyArray<readonly [number, string]> = [
  [BatchAttributes.transactional, 'transactional batches go through TXN_SEND (a transaction), not PRODUCE'],
  [BatchAttributes.control, 'control batches are written by the broker only'],
];

/** record-batch's Crc32cFunction takes only the bytes; the native one takes optional ranges too. */
const crc32cOfBytes = (bytes: Uint8Array): number => nativeCrc32c(bytes);

interface ResolvedFetchOptions {
  maxBytes: number;
  maxWaitMs: number;
  minBytes: number;
  signal: AbortSignal | undefined;
}

function resolveFetchOptions(options: FetchOptions): ResolvedFetchOptions {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('fetch options must be an object');
  }
  const signal = options.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new InvalidArgumentError('fetch option signal must be an AbortSignal');
  }
  return {
    maxBytes: checkInteger('fetch option maxBytes', options.maxBytes, 1, fetchMaxBytesMax),
    maxWaitMs: checkInteger('fetch option maxWaitMs', options.maxWaitMs, 0, fetchMaxWaitMsMax),
    minBytes: checkInteger('fetch option minBytes', options.minBytes ?? 1, 1, fetchMaxBytesMax),
    signal,
  };
}

export class BrokerMessages implements MessageService {
  private readonly topics: BrokerTopics;
  private readonly lifecycle: Lifecycle;
  /** The broker's clock: long-poll deadlines and timeouts. */
  private readonly clock: Clock;
  private readonly diskReserve: DiskReserve;
  private readonly waiters: FetchWaiters<Partition>;
  /** Msg-id dedup of topics with dedupWindowMs > 0 (set by the engine; null: none, e.g. in unit tests). */
  dedup: BrokerDedup | null = null;
  /** Takes a delayed batch (the delay service, delay/broker-delay.ts); null: delayed batches are refused. */
  scheduleDelayed: ((topic: string, partition: number, batch: Uint8Array) => Promise<ProduceResult>) | null =
    null;
  /** Told after each produce to `topic` (the queue service wakes its waiting receives). */
  onAppended: ((topic: string) => void) | null = null;
  /** The idempotent producer service (producers/broker-producers.ts), set by the engine. */
  producers: BrokerProducers | null = null;

  constructor(topics: BrokerTopics, lifecycle: Lifecycle, clock: Clock, diskReserve: DiskReserve) {
    this.topics = topics;
    this.lifecycle = lifecycle;
    this.clock = clock;
    this.diskReserve = diskReserve;
    this.waiters = new FetchWaiters(fetchWaitersPerPartitionMax, fetchWaitersTotalMax, clock);
    topics.onTopicDeleted((topic) => {
      for (const partition of topic.partitions) this.waiters.wake(partition);
    });
  }

  /** Fetches long-polling right now (for metrics). */
  get waitingFetchCount(): number {
    return this.waiters.waitingCount;
  }

  async produce(
    topic: string,
    partition: number,
    batch: Uint8Array,
    options?: ProduceOptions,
  ): Promise<ProduceResult> {
    this.lifecycle.assertOpen();
    const target = this.topics.partitionOf(topic, partition);
    // Replication: only the leader at the producer's epoch takes produces (and acks 'all' only
    // with enough in-sync replicas). Null on a broker without replication.
    target.replica?.admitProduce(options);
    if (isInternalTopicName(topic)) {
      throw new InvalidArgumentError(`topic '${topic}' is internal: only the broker writes to it`);
    }
    if (!(batch instanceof Uint8Array)) throw new InvalidArgumentError('batch must be a Uint8Array');
    const fields = validateBatch(batch, { crc32c: crc32cOfBytes, baseOffset: 0 });
    if (fields.batchLength !== batch.length) {
      throw new InvalidBatchError(
        `${batch.length} bytes given for a batch of ${fields.batchLength}: produce takes exactly one batch`,
      );
    }
    for (const [bit, feature] of unsupportedAttributes) {
      if ((fields.attributes & bit) !== 0) {
        throw new InvalidBatchError(feature);
      }
    }
    if ((fields.attributes & BatchAttributes.delayed) !== 0) {
      if (this.scheduleDelayed === null)
        throw new InvalidBatchError('delayed batches are not supported here');
      return this.scheduleDelayed(topic, partition, batch.slice()); // kept: a copy (see MessageService)
    }
    const owner = this.topics.topicNamed(topic);
    const deduplicated = owner.config.dedupWindowMs > 0 && this.dedup !== null;
    // (3) Idempotent producer: a repeat of a recent batch is answered with its offsets, not written.
    if (fields.producerId >= 0 && this.producers !== null) {
      // Msg-id dedup may drop records and wait for another copy's claim, both of which the sequence
      // check cannot follow (docs/PROTOCOL.md, "Msg-id dedup"): refused rather than half-deduplicated.
      if (deduplicated && batchMsgIds(batch) !== null) {
        throw new InvalidBatchError(
          `topic '${topic}' deduplicates by msgId (dedupWindowMs ${owner.config.dedupWindowMs}): an idempotent producer's batch cannot carry msgIds to it; send msgIds from a producer without idempotent: true (idempotence already keeps its own retries from doubling)`,
        );
      }
      // The producer service may wait before the append: it gets a copy (see MessageService.produce).
      return this.producers.produce(
        target,
        fields,
        batch.slice(),
        (checked) => this.append(topic, partition, target, checked, options),
        options,
      );
    }
    // (4) Msg-id dedup: only topics with a window decode the batch (dedup/broker-dedup.ts).
    if (deduplicated) {
      return this.dedup!.produce(owner, partition, batch.slice(), fields, (bytes) =>
        this.append(topic, partition, target, bytes, options),
      );
    }
    return this.append(topic, partition, target, batch, options);
  }

  /**
   * The append of a checked batch. Reaches the log's append without awaiting anything first: the
   * producer service relies on it (the log assigns offsets in the call).
   */
  private async append(
    topic: string,
    partition: number,
    target: Partition,
    batch: Uint8Array,
    options?: ProduceOptions,
  ): Promise<ProduceResult> {
    // Early and clean: refused before the log has to grow into the last bytes of the disk.
    this.diskReserve.admit(batch.length, `produce to ${topic}/${partition}`);
    this.lifecycle.begin();
    try {
      const appended = await target.log.append(batch);
      // Long-polls on this partition read again (with `always`, now that the batch is on disk).
      this.waiters.wake(target);
      this.onAppended?.(topic);
      const replica = target.replica;
      if (replica !== null) {
        replica.appended();
        await replica.replicated(appended.lastOffset + 1, options);
      }
      return {
        partition,
        baseOffset: appended.baseOffset,
        lastOffset: appended.lastOffset,
        durability: appended.durability,
      };
    } finally {
      this.lifecycle.settled();
    }
  }

  async fetch(topic: string, partition: number, offset: number, options: FetchOptions): Promise<FetchResult> {
    this.lifecycle.assertOpen();
    const owner = this.topics.topicNamed(topic);
    const target = this.topics.partitionOf(topic, partition);
    const { maxBytes, maxWaitMs, minBytes, signal } = resolveFetchOptions(options);
    if (!Number.isSafeInteger(offset))
      throw new InvalidArgumentError(`offset must be an integer, got ${offset}`);
    this.lifecycle.begin();
    try {
      const deadline = this.clock.monotonicMs() + maxWaitMs;
      for (;;) {
        if (owner.deleted) throw new UnknownTopicError(topic);
        const result = target.read(offset, maxBytes);
        // Enough bytes, or as many whole batches as maxBytes allows while more are there.
        const enough =
          result.records.length >= minBytes ||
          (result.batchCount > 0 && result.nextOffset < result.highWatermark);
        const remainingMs = deadline - this.clock.monotonicMs();
        if (enough || remainingMs <= 0 || this.lifecycle.closing || signal?.aborted) return result;
        const reason = await this.waiters.wait(target, Math.ceil(remainingMs), signal);
        if (reason !== 'data') {
          if (owner.deleted) throw new UnknownTopicError(topic);
          return target.read(offset, maxBytes);
        }
      }
    } finally {
      this.lifecycle.settled();
    }
  }

  listOffset(topic: string, partition: number, spec: OffsetSpec): number {
    this.lifecycle.assertOpen();
    const target = this.topics.partitionOf(topic, partition);
    const end = target.visibleEndOffset;
    if (spec === 'earliest') return target.log.logStartOffset;
    if (spec === 'latest') return end;
    if (typeof spec === 'object' && spec !== null && 'timestamp' in spec) {
      const timestamp = checkInteger('timestamp', spec.timestamp, 0, Number.MAX_SAFE_INTEGER);
      return Math.min(target.log.offsetForTime(timestamp) ?? end, end);
    }
    throw new InvalidArgumentError(
      `offset spec must be 'earliest', 'latest' or { timestamp }, got ${JSON.stringify(spec)}`,
    );
  }

  /**
   * Long-polls on `partition` read again (something was appended to it outside produce, or its high
   * watermark moved under replication); the queue service's waiting receives look again too.
   */
  wake(partition: Partition): void {
    this.waiters.wake(partition);
    this.onAppended?.(partition.topic);
  }

  /** Answers every waiting long-poll with what is there (the broker is closing). */
  wakeAll(): void {
    this.waiters.wakeAll('close');
  }
}
