/**
 * The queue service of a broker (`BrokerApi.queues`): shared and key_shared consumption with
 * per-message acknowledgement, ack timeouts, nack with delay, a retry backoff schedule and dead
 * letters. docs/PROTOCOL.md ("Queues") states the semantics; docs/STATE.md the `__queue_state` log.
 *
 * A queue group is (group, topic); it has one PartitionQueue (partition-queue.ts) per partition and
 * the settings of its latest receive. Its members are the sessions receiving for it (WebSocket and
 * in-process): when one closes, its in-flight deliveries are released at once (a failed delivery,
 * counted towards maxDeliveries) and key_shared keys it held move. HTTP sessions last one request:
 * their deliveries stay until acked by receipt or expired.
 *
 * Durability: acks and retry times are committed to `__queue_state` before ACK / NACK answer (group
 * commit, durability `always`); delivery counts are committed without waiting (a crash may lose the
 * last increments: a message may then be delivered a little more than maxDeliveries times). A dead
 * letter is produced to the dead-letter topic first, then settled: a crash between the two produces it
 * again (at least once). After a restart nothing settled is delivered again and everything unsettled
 * is (the in-flight deliveries of before are gone; their late acks are ignored).
 *
 * Time: deadlines and retry times run on the broker's clock (BrokerOptions.clock): one timer for the
 * earliest due time of all queues (a binary heap of due times, stale entries skipped).
 *
 * Retention (`retentionMs`, the broker's groupRetentionMs): a queue group is in use while it has
 * members, receives waiting or deliveries in flight; an HTTP receive, ack or nack uses it too. One
 * idle (none of that) for retentionMs is forgotten: a `forgotten` entry in `__queue_state` drops the
 * ack state of all its partitions, and it no longer counts towards queueGroupsMax. The time it became
 * idle is durable (`idle` entries: written when its last member leaves, when it is first seen idle,
 * and at most once per check for a group used over HTTP since), so a restart does not restart the
 * count; a group with state but no idle time recorded (in use when the broker stopped) is idle from
 * the open. Checked every min(groupExpiryCheckIntervalMsMax, retentionMs) on the broker's clock; HTTP
 * use written at the checks only, so after a crash such a group may be forgotten up to one check
 * interval early.
 *
 * In a cluster (`clusterMember`, docs/CLUSTER.md "Built: shared and key_shared queues") the service
 * runs only on the leader of `__queue_state`, for one term at a time (src/cluster/state-services/):
 * it starts stopped; `startServing` recovers the state from the log as replication left it (like a
 * restart: everything unsettled is delivered again), `stopServing` drops every queue group from memory
 * at once (in-flight deliveries, waiting receives: NOT_COORDINATOR), detaches the state log and stops
 * the sources. Each state-log write is answered once on the in-sync replicas (`joinCluster`); an
 * answer awaited across a stop is NOT_COORDINATOR. Topic partitions are read through
 * `QueueSources` (queue-partition-source.ts; local or remote) and dead letters appended through the
 * term's `DeadLetterWriter` (the forwarder).
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { Clock, ClockTimer } from '../../clock.js';
import { InvalidArgumentError, SpillwayError, UnknownTopicError } from '../../errors.js';
import { BatchBuilder, decodeRecords } from '../../format/record-batch.js';
import {
  batchBytesMax,
  fetchMaxBytesDefault,
  groupExpiryCheckIntervalMsMax,
  groupRetentionMsDefault,
  queueDelayMsMax,
  queueErrorTextLengthMax,
  queueGroupsMax,
  queueMaxDeliveriesMax,
  queueReceiveMessagesMax,
  queueReceiveWaitersMax,
  queueRetryBackoffStepsMax,
  queueSettleOffsetsMax,
} from '../../limits.js';
import { crc32c } from '../../native.js';
import type {
  NackSettings,
  QueueGroupDescription,
  QueueMode,
  QueueService,
  QueueSettings,
  ReceivedPartition,
  ReceiveRequest,
  ReceiveResult,
  SettleResult,
} from '../../protocol/queue-api.js';
import type { Session } from '../../protocol/session.js';
import type { BrokerTopics } from '../broker-topics.js';
import type { Lifecycle } from '../lifecycle.js';
import { isInternalTopicName, validateUserTopicName } from '../topic-name.js';
import { type DeliveryBatch, PartitionQueue } from './partition-queue.js';
import { localQueueSources, type QueueSources } from './queue-partition-source.js';
import { parseQueueGroupKey, type QueueEntry, queueGroupKey, queuePartitionKey } from './queue-state.js';
import type { QueueStateStore } from './queue-state-store.js';

export const queueDefaults = {
  ackTimeoutMs: 30_000,
  maxDeliveries: 16,
  retryBackoffMs: [1000, 5000, 30_000],
} as const;

/** Header names of a dead letter (docs/PROTOCOL.md). */
export const deadLetterHeaders = {
  topic: 'spillway-dlq-topic',
  partition: 'spillway-dlq-partition',
  offset: 'spillway-dlq-offset',
  deliveryCount: 'spillway-dlq-delivery-count',
  error: 'spillway-dlq-error',
  time: 'spillway-dlq-time',
  group: 'spillway-dlq-group',
} as const;

/** The dead-letter topic of `topic` when none is configured. */
export function defaultDeadLetterTopic(topic: string): string {
  return `${topic}.dlq`;
}

interface Waiter {
  wake: () => void;
}

class QueueGroup {
  readonly group: string;
  readonly topic: string;
  readonly mode: QueueMode;
  settings: Required<QueueSettings>;
  readonly partitions: PartitionQueue[] = [];
  /** Sorted session ids receiving for this group (WebSocket and in-process sessions). */
  members: number[] = [];
  readonly waiters = new Set<Waiter>();
  rotation = 0;
  /** Wall ms of its last use without members (HTTP, or its last member leaving); null: in use now. */
  idleSinceMs: number | null;
  /** createdAtMs of the topic it consumes (undefined while not known): another value = another topic. */
  topicCreatedAtMs: number | undefined = undefined;

  constructor(
    group: string,
    topic: string,
    mode: QueueMode,
    settings: Required<QueueSettings>,
    idleSinceMs: number | null,
  ) {
    this.group = group;
    this.topic = topic;
    this.mode = mode;
    this.settings = settings;
    this.idleSinceMs = idleSinceMs;
  }

  /** Members, receives waiting or deliveries in flight. */
  get inUse(): boolean {
    return (
      this.members.length > 0 ||
      this.waiters.size > 0 ||
      this.partitions.some((queue) => queue.inFlight.size > 0)
    );
  }

  wakeAll(): void {
    for (const waiter of [...this.waiters]) waiter.wake();
  }
}

/** A retry time of one offset, or the deadline of a batch of deliveries. */
interface DueEntry {
  dueMs: number;
  queue: PartitionQueue;
  group: QueueGroup;
  /** Retry: the offset; deadline: -1. */
  offset: number;
  batch: DeliveryBatch | null;
}

/** A binary min-heap of due times. */
class DueHeap {
  private readonly items: DueEntry[] = [];

  get size(): number {
    return this.items.length;
  }

  peek(): DueEntry | undefined {
    return this.items[0];
  }

  push(item: DueEntry): void {
    const items = this.items;
    items.push(item);
    let index = items.length - 1;
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (items[parent]!.dueMs <= item.dueMs) break;
      items[index] = items[parent]!;
      index = parent;
    }
    items[index] = item;
  }

  pop(): DueEntry | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (top === undefined || last === undefined || items.length === 0) return top;
    let index = 0;
    for (;;) {
      const left = index * 2 + 1;
      if (left >= items.length) break;
      const right = left + 1;
      const child = right < items.length && items[right]!.dueMs < items[left]!.dueMs ? right : left;
      if (items[child]!.dueMs >= last.dueMs) break;
      items[index] = items[child]!;
      index = child;
    }
    items[index] = last;
    return top;
  }
}

function checkSettings(request: QueueSettings, topic: string): Required<QueueSettings> {
  const integer = (name: string, value: unknown, min: number, max: number, fallback: number): number => {
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
      throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
    }
    return value;
  };
  const ackTimeoutMs = integer(
    'ackTimeoutMs',
    request.ackTimeoutMs,
    1,
    queueDelayMsMax,
    queueDefaults.ackTimeoutMs,
  );
  const maxDeliveries = integer(
    'maxDeliveries',
    request.maxDeliveries,
    1,
    queueMaxDeliveriesMax,
    queueDefaults.maxDeliveries,
  );
  let retryBackoffMs: number[] = [...queueDefaults.retryBackoffMs];
  if (request.retryBackoffMs !== undefined) {
    const steps = request.retryBackoffMs;
    if (!Array.isArray(steps) || steps.length === 0 || steps.length > queueRetryBackoffStepsMax) {
      throw new InvalidArgumentError(
        `retryBackoffMs must be a list of 1 to ${queueRetryBackoffStepsMax} delays in ms`,
      );
    }
    retryBackoffMs = steps.map((step, index) =>
      integer(`retryBackoffMs[${index}]`, step, 0, queueDelayMsMax, 0),
    );
  }
  const deadLetterTopic = request.deadLetterTopic ?? defaultDeadLetterTopic(topic);
  validateUserTopicName(deadLetterTopic);
  if (deadLetterTopic === topic)
    throw new InvalidArgumentError('deadLetterTopic must not be the topic itself');
  return { ackTimeoutMs, maxDeliveries, retryBackoffMs, deadLetterTopic };
}

/** Flat [from, to) ranges of a sorted list of offsets. */
function rangesOf(offsets: readonly number[]): number[] {
  const ranges: number[] = [];
  for (const offset of offsets) {
    const last = ranges.length - 1;
    if (last > 0 && ranges[last] === offset) ranges[last] = offset + 1;
    else ranges.push(offset, offset + 1);
  }
  return ranges;
}

/** Where dead letters go: the dead-letter topic's partition count, and the append. */
export interface DeadLetterWriter {
  /** The partition count of `topic`; creates it on a single broker; UNKNOWN_TOPIC when it cannot. */
  partitionCount(topic: string): Promise<number>;
  /** Appends one batch; resolves once it counts (durable; in a cluster on the in-sync replicas). */
  append(topic: string, partition: number, batch: Uint8Array): Promise<unknown>;
  /** The term ended (cluster): pending appends fail. */
  close?(why: string): void;
}

export interface BrokerQueuesOptions {
  topics: BrokerTopics;
  lifecycle: Lifecycle;
  clock: Clock;
  /** `__queue_state` (its state log and machine; new ones after `reopen` in a cluster). */
  store: Pick<QueueStateStore, 'state' | 'machine' | 'detach' | 'reopen'>;
  /** Appends a batch to a partition (the broker's produce, used for dead letters on a single broker). */
  produce(topic: string, partition: number, batch: Uint8Array): Promise<unknown>;
  /** A queue group idle this long is forgotten (the broker's groupRetentionMs). Default 7 days. */
  retentionMs?: number;
  /** A cluster member: stopped until `startServing` (docs/CLUSTER.md). Default false. */
  clusterMember?: boolean;
}

export class BrokerQueues implements QueueService {
  private readonly options: BrokerQueuesOptions;
  private readonly groups = new Map<string, QueueGroup>();
  /** Topic -> its queue groups (a produce wakes only those). */
  private readonly groupsByTopic = new Map<string, Set<QueueGroup>>();
  private readonly modes = new Map<string, QueueMode>();
  /** Session id -> groups it is a member of. */
  private readonly memberships = new Map<number, Set<QueueGroup>>();
  private due = new DueHeap();
  private timer: ClockTimer | null = null;
  private timerDueMs = Number.POSITIVE_INFINITY;
  private leaseCounter = randomBytes(4).readUInt32BE(0) & 0x3fffffff;
  private readonly receiptKey = randomBytes(32);
  private readonly groupTags = new Map<string, string>();
  private closed = false;
  private readonly retentionMs: number;
  private readonly expiryTimer: ClockTimer;
  /** Queue groups being forgotten (their `forgotten` entry not yet applied): a receive waits. */
  private readonly forgetting = new Map<string, Promise<unknown>>();
  /** Dead letters produced since the broker started (tests, describe). */
  deadLettered = 0;
  /** Queue groups forgotten after retentionMs idle since the broker started. */
  expiredGroups = 0;
  /** Retry times that could not be written (the state log failed or is closing); the redelivery still happens. */
  backgroundFailures = 0;
  /** Why this broker does not serve queues now (a cluster member not leading `__queue_state`); null: serving. */
  private notServing: string | null = null;
  /** Bumped at every stop and start: an answer awaited across one is NOT_COORDINATOR. */
  private serviceEpoch = 0;
  private sources: QueueSources = localQueueSources;
  private deadLetters: DeadLetterWriter;

  constructor(options: BrokerQueuesOptions) {
    this.options = options;
    this.retentionMs = options.retentionMs ?? groupRetentionMsDefault;
    this.deadLetters = this.localDeadLetters();
    if (options.clusterMember === true)
      this.notServing = 'waiting for the cluster to name the leader of __queue_state';
    else this.load();
    this.expiryTimer = options.clock.setInterval(
      () => this.expireGroups(),
      Math.min(groupExpiryCheckIntervalMsMax, this.retentionMs),
      { unref: true },
    );
    options.topics.onTopicDeleted((topic) => {
      // In a cluster the topic's record in etcd decides (topicCreatedAtMs); a replica going is not the topic.
      if (this.notServing !== null || this.sources.topicCreatedAtMs !== undefined) return;
      this.topicGone(topic.name);
    });
  }

  /**
   * `topic` was deleted (or created again: another incarnation): its queue groups are dropped from
   * memory (waiting receives answer UNKNOWN_TOPIC, sources close) and their state is forgotten in
   * `__queue_state` (a receive for the group waits for that), in memory or not: a topic created again
   * with the name starts afresh.
   */
  private topicGone(topic: string): void {
    for (const group of [...(this.groupsByTopic.get(topic) ?? [])]) {
      this.forget(groupKey(group.group, group.topic), group, false);
    }
    for (const key of [...this.options.store.machine.groups().keys()]) {
      if (this.forgetting.has(key) || parseQueueGroupKey(key).topic !== topic) continue;
      this.forget(key, null, false);
    }
  }

  /** The createdAtMs of `topic` where it is decided (a cluster: etcd); undefined: it does not exist. */
  private topicCreatedAtMs(topic: string): number | undefined {
    const sources = this.sources;
    if (sources.topicCreatedAtMs !== undefined) return sources.topicCreatedAtMs(topic);
    return this.options.topics.topicIfExists(topic)?.createdAtMs;
  }

  /**
   * Drops what `__queue_state` and memory hold for (group, topic) about another incarnation of the
   * topic (deleted, perhaps created again): true when the in-memory group was dropped.
   */
  private checkIncarnation(key: string, topic: string): boolean {
    const createdAtMs = this.topicCreatedAtMs(topic);
    const group = this.groups.get(key);
    if (group !== undefined) {
      if (group.topicCreatedAtMs === undefined) {
        if (createdAtMs !== undefined) this.recordIncarnation(key, group, createdAtMs);
      } else if (group.topicCreatedAtMs !== createdAtMs) {
        this.forget(key, group, false);
        return true;
      }
      return false;
    }
    const recorded = this.options.store.machine.groups().get(key)?.topicCreatedAtMs ?? null;
    if (
      recorded !== null &&
      recorded !== createdAtMs &&
      createdAtMs !== undefined &&
      !this.forgetting.has(key)
    ) {
      this.forget(key, null, false);
    }
    return false;
  }

  private recordIncarnation(key: string, group: QueueGroup, createdAtMs: number): void {
    group.topicCreatedAtMs = createdAtMs;
    if (this.options.store.machine.groups().get(key)?.topicCreatedAtMs !== createdAtMs) {
      this.commitInBackground({ type: 'topic', group: key, createdAtMs });
    }
  }

  /** Groups with state but no idle time recorded were in use when the service stopped: idle from now. */
  private load(): void {
    const now = this.options.clock.nowMs();
    for (const [key, record] of this.options.store.machine.groups()) {
      if (record.idleSinceMs === null) this.commitInBackground({ type: 'idle', group: key, sinceMs: now });
    }
  }

  /** True while this broker serves queues (always on a single broker). */
  get serving(): boolean {
    return this.notServing === null;
  }

  /**
   * In a cluster: each `__queue_state` write is answered once `replicate(endOffset)` resolves (the
   * in-sync replicas have it), and topic partitions are read through `sources`.
   */
  joinCluster(replicate: (endOffset: number) => Promise<void>, sources: QueueSources): void {
    this.options.store.state.replicate = replicate;
    this.sources = sources;
  }

  /**
   * Stops serving at once (this broker no longer leads `__queue_state`): every queue group is dropped
   * from memory (deliveries in flight forgotten, waiting receives answered NOT_COORDINATOR), the state
   * log refuses every write, timers stop, sources close. Idempotent.
   */
  stopServing(why: string): void {
    if (this.notServing !== null) return;
    this.notServing = why;
    this.serviceEpoch++;
    this.options.clock.clearTimer(this.timer);
    this.timer = null;
    this.timerDueMs = Number.POSITIVE_INFINITY;
    this.due = new DueHeap();
    const groups = [...this.groups.values()];
    this.groups.clear();
    this.groupsByTopic.clear();
    this.modes.clear();
    this.memberships.clear();
    this.forgetting.clear();
    for (const group of groups) {
      closeSources(group);
      group.wakeAll();
    }
    this.deadLetters.close?.(why);
    this.options.store.detach(new SpillwayError('NOT_COORDINATOR', `queues are not served here: ${why}`));
  }

  /**
   * Serves again from the state `__queue_state` holds now (recovered: snapshot + replay), as after a
   * restart: everything unsettled is delivered again. Dead letters go through `deadLetters` (the
   * term's forwarder).
   */
  startServing(deadLetters: DeadLetterWriter): void {
    if (this.notServing === null) return;
    this.options.store.reopen();
    this.deadLetters = deadLetters;
    this.notServing = null;
    this.serviceEpoch++;
    this.load();
  }

  private assertServing(): void {
    this.options.lifecycle.assertOpen();
    if (this.notServing !== null) {
      throw new SpillwayError('NOT_COORDINATOR', `queues are not served here: ${this.notServing}`);
    }
  }

  /** NOT_COORDINATOR when the service stopped (or restarted) since `epoch`: the answer would be stale. */
  private assertServingSince(epoch: number): void {
    if (this.serviceEpoch === epoch) return;
    throw new SpillwayError(
      'NOT_COORDINATOR',
      `queues are not served here: ${this.notServing ?? 'the queue service moved meanwhile'}`,
    );
  }

  /** Awaits `work`; a failure or success across a stop of the service is NOT_COORDINATOR. */
  private async served<T>(work: Promise<T>): Promise<T> {
    const epoch = this.serviceEpoch;
    let result: T;
    try {
      result = await work;
    } catch (error) {
      this.assertServingSince(epoch);
      throw error;
    }
    this.assertServingSince(epoch);
    return result;
  }

  /** Something was appended to `topic`: waiting receives look again. */
  appended(topic: string): void {
    const groups = this.groupsByTopic.get(topic);
    if (groups === undefined) return;
    for (const group of groups) if (group.waiters.size > 0) group.wakeAll();
  }

  async receive(session: Session, request: ReceiveRequest): Promise<ReceiveResult> {
    const { lifecycle, clock } = this.options;
    this.assertServing();
    const epoch = this.serviceEpoch;
    const max = checkInteger('max', request.max, 1, queueReceiveMessagesMax);
    const waitMs = checkInteger('waitMs', request.waitMs, 0, queueDelayMsMax);
    const maxBytes = checkInteger('maxBytes', request.maxBytes ?? fetchMaxBytesDefault, 1, batchBytesMax);
    if (request.mode !== 'shared' && request.mode !== 'key_shared') {
      throw new InvalidArgumentError(`mode must be 'shared' or 'key_shared', got ${String(request.mode)}`);
    }
    if (request.mode === 'key_shared' && session.kind === 'http') {
      throw new InvalidArgumentError(
        'key_shared needs a session that lasts (WebSocket or in-process): HTTP receives are shared',
      );
    }
    if (typeof request.topic === 'string')
      this.checkIncarnation(groupKey(request.group, request.topic), request.topic);
    const forgetting = this.forgetting.get(groupKey(request.group, request.topic));
    if (forgetting !== undefined) {
      await forgetting;
      this.assertServingSince(epoch);
    }
    const group = this.groupOf(request, session);
    if (session.kind === 'http') group.idleSinceMs = clock.nowMs();
    lifecycle.begin();
    try {
      const deadline = clock.monotonicMs() + waitMs;
      for (;;) {
        const result = this.collect(group, session.id, max, maxBytes);
        const remainingMs = deadline - clock.monotonicMs();
        if (result.partitions.length > 0 || remainingMs <= 0 || lifecycle.closing || session.closed)
          return result;
        if (request.signal?.aborted) return result;
        await this.wait(group, remainingMs, request.signal ?? null, session);
        this.assertServingSince(epoch);
        const key = groupKey(group.group, group.topic);
        if (this.groups.get(key) === group) this.checkIncarnation(key, group.topic);
        if (this.groups.get(key) !== group) throw new UnknownTopicError(group.topic);
      }
    } finally {
      lifecycle.settled();
    }
  }

  async ack(
    group: string,
    topic: string,
    partitions: ReadonlyArray<{ partition: number; ranges: number[] }>,
  ): Promise<SettleResult> {
    this.assertServing();
    const queueGroup = this.groups.get(groupKey(group, topic));
    let total = 0;
    for (const { ranges } of partitions)
      for (let i = 0; i < ranges.length; i += 2) total += ranges[i + 1]! - ranges[i]!;
    if (total > queueSettleOffsetsMax) {
      throw new InvalidArgumentError(
        `one ACK settles at most ${queueSettleOffsetsMax} offsets, got ${total}`,
      );
    }
    if (queueGroup === undefined) return { settled: 0, ignored: total };
    this.used(queueGroup);
    const result: SettleResult = { settled: 0, ignored: 0 };
    const commits: Array<Promise<unknown>> = [];
    for (const { partition, ranges } of partitions) {
      const queue = queueGroup.partitions[partition];
      if (queue === undefined) {
        for (let i = 0; i < ranges.length; i += 2) result.ignored += ranges[i + 1]! - ranges[i]!;
        continue;
      }
      const offsets: number[] = [];
      for (let i = 0; i < ranges.length; i += 2) {
        for (let offset = ranges[i]!; offset < ranges[i + 1]!; offset++) {
          if (offset >= queue.cursor || queue.isSettled(offset)) {
            result.ignored++;
            continue;
          }
          offsets.push(offset);
        }
      }
      if (offsets.length === 0) continue;
      offsets.sort((a, b) => a - b);
      result.settled += offsets.length;
      commits.push(this.settle(queueGroup, queue, offsets));
    }
    await this.served(Promise.all(commits));
    if (result.settled > 0) queueGroup.wakeAll();
    return result;
  }

  async nack(
    group: string,
    topic: string,
    partitions: ReadonlyArray<{ partition: number; offsets: number[] }>,
    settings: NackSettings,
  ): Promise<SettleResult> {
    this.assertServing();
    const { delayMs, error } = checkNack(settings);
    const queueGroup = this.groups.get(groupKey(group, topic));
    let total = 0;
    for (const { offsets } of partitions) total += offsets.length;
    if (total > queueSettleOffsetsMax) {
      throw new InvalidArgumentError(
        `one NACK settles at most ${queueSettleOffsetsMax} offsets, got ${total}`,
      );
    }
    if (queueGroup === undefined) return { settled: 0, ignored: total };
    this.used(queueGroup);
    const result: SettleResult = { settled: 0, ignored: 0 };
    const work: Array<Promise<unknown>> = [];
    for (const { partition, offsets } of partitions) {
      const queue = queueGroup.partitions[partition];
      for (const offset of offsets) {
        const delivery = queue?.endDelivery(offset);
        if (queue === undefined || delivery === undefined) {
          result.ignored++;
          continue;
        }
        result.settled++;
        work.push(
          this.failed(queueGroup, queue, offset, delivery.key, delivery.deliveryCount, error, delayMs),
        );
      }
    }
    await this.served(Promise.all(work));
    return result;
  }

  async ackReceipts(group: string, receipts: readonly string[]): Promise<SettleResult> {
    this.assertServing();
    const found = this.resolveReceipts(group, receipts);
    this.used(found.group);
    const result: SettleResult = { settled: 0, ignored: 0 };
    const commits: Array<Promise<unknown>> = [];
    for (const [queue, entries] of found.byQueue) {
      const offsets = entries.map((entry) => entry.offset).sort((a, b) => a - b);
      result.settled += offsets.length;
      commits.push(this.settle(found.group, queue, offsets));
    }
    await this.served(Promise.all(commits));
    found.group.wakeAll();
    return result;
  }

  async nackReceipts(
    group: string,
    receipts: readonly string[],
    settings: NackSettings,
  ): Promise<SettleResult> {
    this.assertServing();
    const { delayMs, error } = checkNack(settings);
    const found = this.resolveReceipts(group, receipts);
    this.used(found.group);
    const result: SettleResult = { settled: 0, ignored: 0 };
    const work: Array<Promise<unknown>> = [];
    for (const [queue, entries] of found.byQueue) {
      for (const { offset } of entries) {
        const delivery = queue.endDelivery(offset);
        if (delivery === undefined) continue;
        result.settled++;
        work.push(
          this.failed(found.group, queue, offset, delivery.key, delivery.deliveryCount, error, delayMs),
        );
      }
    }
    await this.served(Promise.all(work));
    return result;
  }

  receipt(group: string, partition: number, offset: number, lease: number): string {
    return `${this.groupTag(group)}.${partition}.${offset}.${lease}`;
  }

  /** The queue groups served here (none while a cluster member does not serve queues: metrics ask every broker). */
  describe(group?: string): QueueGroupDescription[] {
    const descriptions: QueueGroupDescription[] = [];
    for (const queueGroup of this.groups.values()) {
      if (group !== undefined && queueGroup.group !== group) continue;
      descriptions.push({
        group: queueGroup.group,
        topic: queueGroup.topic,
        mode: queueGroup.mode,
        members: [...queueGroup.members],
        settings: { ...queueGroup.settings, retryBackoffMs: [...queueGroup.settings.retryBackoffMs] },
        partitions: queueGroup.partitions.map((queue, partition) => {
          if (queue.partition.damage === null) this.skipGone(queue);
          const ack = queue.ack();
          const end = queue.partition.visibleEndOffset;
          const ranges = ack.settledRanges;
          let settledAbove = 0;
          for (let index = 0; index < ranges.length; index += 2) {
            settledAbove += Math.min(ranges[index + 1]!, end) - Math.min(ranges[index]!, end);
          }
          const backlog = Math.max(0, end - ack.floor);
          return {
            partition,
            logEndOffset: end,
            ackFloor: ack.floor,
            settledRanges: ranges.length / 2,
            inFlight: queue.inFlight.size,
            scheduled: queue.scheduled.size,
            ready: queue.ready.length,
            cursor: queue.cursor,
            backlog,
            lag: Math.max(0, backlog - settledAbove),
            // Counted durably once the `gone` entry applies; until then the queue partition's own count.
            skippedByRetention: ack.skipped + queue.skippedPending,
          };
        }),
      });
    }
    return descriptions.sort((a, b) =>
      a.group === b.group ? a.topic.localeCompare(b.topic) : a.group.localeCompare(b.group),
    );
  }

  /** Stops the timer and answers waiting receives (the broker is closing). */
  close(): void {
    this.closed = true;
    this.options.clock.clearTimer(this.expiryTimer);
    this.options.clock.clearTimer(this.timer);
    this.timer = null;
    for (const group of this.groups.values()) {
      closeSources(group);
      group.wakeAll();
    }
    this.deadLetters.close?.('the broker is closing');
  }

  // --- receiving -------------------------------------------------------------------------------

  private groupOf(request: ReceiveRequest, session: Session): QueueGroup {
    const { topics } = this.options;
    if (typeof request.group !== 'string' || request.group.length === 0 || request.group.length > 255) {
      throw new InvalidArgumentError('group must be a non-empty string of at most 255 characters');
    }
    if (request.group.includes('\u0000')) throw new InvalidArgumentError('group must not contain NUL');
    if (typeof request.topic !== 'string') throw new InvalidArgumentError('topic must be a string');
    if (isInternalTopicName(request.topic)) {
      throw new InvalidArgumentError(
        `topic '${request.topic}' is internal: it cannot be consumed as a queue`,
      );
    }
    // A cluster knows topics this broker holds no replica of (their partitions are read remotely).
    const partitionCount =
      this.sources.partitionCount?.(request.topic) ?? topics.topicNamed(request.topic).partitionCount;
    const settings = checkSettings(request, request.topic);
    const knownMode = this.modes.get(request.group);
    if (knownMode !== undefined && knownMode !== request.mode) {
      throw new InvalidArgumentError(
        `group '${request.group}' consumes in mode '${knownMode}': a '${request.mode}' receive cannot join it`,
      );
    }
    const key = groupKey(request.group, request.topic);
    let group = this.groups.get(key);
    if (group === undefined) {
      if (this.groups.size >= queueGroupsMax) {
        throw new SpillwayError(
          'TOO_MANY_REQUESTS',
          `more than ${queueGroupsMax} queue groups (group, topic)`,
        );
      }
      // A group known from the state log keeps its recorded idle time until a member joins.
      const idleSinceMs =
        this.options.store.machine.groups().get(key)?.idleSinceMs ?? this.options.clock.nowMs();
      group = new QueueGroup(request.group, request.topic, request.mode, settings, idleSinceMs);
      this.groups.set(key, group);
      const createdAtMs = this.topicCreatedAtMs(request.topic);
      if (createdAtMs !== undefined) this.recordIncarnation(key, group, createdAtMs);
      let forTopic = this.groupsByTopic.get(request.topic);
      if (forTopic === undefined) {
        forTopic = new Set();
        this.groupsByTopic.set(request.topic, forTopic);
      }
      forTopic.add(group);
      this.modes.set(request.group, request.mode);
    }
    group.settings = settings;
    // Partitions added since: their queues start at their ack floor.
    const topicName = group.topic;
    const store = this.options.store;
    for (let index = group.partitions.length; index < partitionCount; index++) {
      const queueKey = queuePartitionKey(group.group, topicName, index);
      const source = this.sources.open(
        topicName,
        index,
        () => topics.topicIfExists(topicName)?.partitions[index],
        () => store.machine.stateOf(queueKey).floor,
        () => this.appended(topicName),
      );
      group.partitions.push(
        new PartitionQueue(queueKey, source, group.mode, () => store.machine.stateOf(queueKey)),
      );
    }
    if (session.kind !== 'http' && !group.members.includes(session.id)) this.join(group, session);
    return group;
  }

  private join(group: QueueGroup, session: Session): void {
    if (group.members.length === 0) {
      // In use again: recorded, so that a restart does not count it idle since it was last idle.
      group.idleSinceMs = null;
      this.commitInBackground({ type: 'idle', group: groupKey(group.group, group.topic), sinceMs: null });
    }
    group.members.push(session.id);
    group.members.sort((a, b) => a - b);
    let groups = this.memberships.get(session.id);
    if (groups === undefined) {
      groups = new Set();
      this.memberships.set(session.id, groups);
      session.onClose(() => this.leave(session.id));
    }
    groups.add(group);
    group.wakeAll();
  }

  /** A member's session closed: its deliveries fail (released for redelivery), its keys move. */
  private leave(member: number): void {
    const groups = this.memberships.get(member);
    this.memberships.delete(member);
    if (groups === undefined) return;
    for (const group of groups) {
      group.members = group.members.filter((id) => id !== member);
      if (group.members.length === 0 && this.groups.get(groupKey(group.group, group.topic)) === group) {
        group.idleSinceMs = this.options.clock.nowMs();
        this.commitInBackground({
          type: 'idle',
          group: groupKey(group.group, group.topic),
          sinceMs: group.idleSinceMs,
        });
      }
      for (const queue of group.partitions) {
        for (const offset of queue.deliveriesOf(member)) {
          const delivery = queue.endDelivery(offset);
          if (delivery === undefined) continue;
          this.failInBackground(
            group,
            queue,
            offset,
            delivery.key,
            delivery.deliveryCount,
            'the consumer went away',
          );
        }
      }
      group.wakeAll();
    }
  }

  private collect(group: QueueGroup, member: number, max: number, maxBytes: number): ReceiveResult {
    const { clock } = this.options;
    const result: ReceiveResult = { topic: group.topic, partitions: [] };
    const partitionCount = group.partitions.length;
    if (partitionCount === 0) return result;
    const members = group.members.length > 0 ? group.members : [member];
    const nowMonotonicMs = clock.monotonicMs();
    const nowWallMs = clock.nowMs();
    const deadlineMs = nowMonotonicMs + group.settings.ackTimeoutMs;
    const start = group.rotation++ % partitionCount;
    if (group.rotation >= 0x3fffffff) group.rotation = 0;
    let remaining = max;
    for (let step = 0; step < partitionCount && remaining > 0; step++) {
      const index = (start + step) % partitionCount;
      const queue = group.partitions[index]!;
      if (queue.partition.damage !== null) continue;
      this.skipGone(queue);
      const collected = queue.collect(
        member,
        members,
        remaining,
        maxBytes,
        deadlineMs,
        () => this.nextLease(),
        nowWallMs,
        nowMonotonicMs,
        (offset, dueMs) => this.pushDue({ dueMs, queue, group, offset, batch: null }),
      );
      const count = collected.offsets.length;
      if (count === 0) continue;
      remaining -= count;
      const offsets = collected.offsets.slice().sort((a, b) => a - b);
      this.pushDue({ dueMs: deadlineMs, queue, group, offset: -1, batch: collected.batch });
      // Written behind: the answer does not wait for delivery counts to be durable.
      this.options.store.state
        .commit({ type: 'delivered', queue: queue.key, ranges: rangesOf(offsets) })
        .catch(() => undefined);
      const received: ReceivedPartition = {
        partition: index,
        records: collected.records,
        offsets: collected.offsets.slice(),
        deliveryCounts: collected.deliveryCounts,
        leases: collected.leases.slice(),
      };
      result.partitions.push(received);
    }
    return result;
  }

  private wait(
    group: QueueGroup,
    waitMs: number,
    signal: AbortSignal | null,
    session: Session,
  ): Promise<void> {
    if (group.waiters.size >= queueReceiveWaitersMax) {
      throw new SpillwayError(
        'TOO_MANY_REQUESTS',
        `more than ${queueReceiveWaitersMax} receives waiting on group '${group.group}' topic '${group.topic}'`,
      );
    }
    return new Promise<void>((resolve) => {
      const { clock } = this.options;
      let timer: ClockTimer | null = null;
      const finish = (): void => {
        group.waiters.delete(waiter);
        clock.clearTimer(timer);
        signal?.removeEventListener('abort', finish);
        session.signal.removeEventListener('abort', finish);
        resolve();
      };
      const waiter: Waiter = { wake: finish };
      group.waiters.add(waiter);
      timer = clock.setTimeout(finish, Math.ceil(waitMs));
      signal?.addEventListener('abort', finish, { once: true });
      session.signal.addEventListener('abort', finish, { once: true });
    });
  }

  // --- settling --------------------------------------------------------------------------------

  /** Acks sorted `offsets` of `queue`: out of every list at once, durable when the promise resolves. */
  private async settle(group: QueueGroup, queue: PartitionQueue, offsets: number[]): Promise<void> {
    const keys =
      queue.mode === 'key_shared'
        ? offsets.map((offset) => queue.inFlight.get(offset)?.key ?? queue.waitingKey(offset))
        : null;
    for (const offset of offsets) queue.beginSettle(offset);
    try {
      await this.options.store.state.commit({ type: 'settled', queue: queue.key, ranges: rangesOf(offsets) });
    } catch (error) {
      // Not durable: the offsets are unsettled again and may be delivered again.
      offsets.forEach((offset, index) => {
        queue.endSettle(offset);
        queue.makeReady(offset, keys?.[index] ?? null);
      });
      throw error;
    }
    for (const offset of offsets) queue.endSettle(offset);
    queue.partition.settled?.();
    group.wakeAll();
  }

  /**
   * Offsets below the source's log start are gone (retention): the queue partition skips them at once
   * and a `gone` entry records it (written behind, like delivery counts: lost in a crash, the skip is
   * made again after the restart since the log start only moves forward).
   */
  private skipGone(queue: PartitionQueue): void {
    const to = queue.skipGone();
    if (to === null) return;
    const pending = queue.ack().unsettledBelow(to);
    queue.skippedPending += pending;
    this.options.store.state
      .commit({ type: 'gone', queue: queue.key, to })
      .then(
        () => queue.partition.settled?.(),
        () => {
          this.backgroundFailures++;
        },
      )
      .finally(() => {
        queue.skippedPending -= pending;
      });
  }

  /** `failed` for callers that cannot wait (timers, session close): a failure is counted, never thrown. */
  private failInBackground(
    group: QueueGroup,
    queue: PartitionQueue,
    offset: number,
    key: string | null,
    deliveryCount: number,
    error: string,
  ): void {
    this.failed(group, queue, offset, key, deliveryCount, error, 0).catch(() => {
      this.backgroundFailures++;
    });
  }

  /**
   * A delivery failed (nack, ack timeout, session gone): dead-lettered after maxDeliveries, else
   * delivered again after `delayMs` (undefined: the backoff schedule; timeouts and releases: 0).
   */
  private async failed(
    group: QueueGroup,
    queue: PartitionQueue,
    offset: number,
    key: string | null,
    deliveryCount: number,
    error: string,
    delayMs: number | undefined,
  ): Promise<void> {
    const { maxDeliveries, retryBackoffMs } = group.settings;
    if (deliveryCount >= maxDeliveries) {
      await this.deadLetter(group, queue, offset, deliveryCount, error);
      return;
    }
    const delay = delayMs ?? retryBackoffMs[Math.min(deliveryCount - 1, retryBackoffMs.length - 1)]!;
    const { clock } = this.options;
    if (delay <= 0) {
      queue.makeReady(offset, key);
      group.wakeAll();
    } else {
      const dueMs = clock.monotonicMs() + delay;
      queue.schedule(offset, key, dueMs);
      this.pushDue({ dueMs, queue, group, offset, batch: null });
    }
    if (delay > 0 || error !== '') {
      await this.options.store.state.commit({
        type: 'retry',
        queue: queue.key,
        offset,
        atMs: clock.nowMs() + Math.max(0, delay),
        error,
      });
    }
  }

  /** Produces the message to the dead-letter topic, then settles it. On failure it is retried later. */
  private async deadLetter(
    group: QueueGroup,
    queue: PartitionQueue,
    offset: number,
    deliveryCount: number,
    error: string,
  ): Promise<void> {
    queue.beginSettle(offset, true);
    const { clock } = this.options;
    const target = group.settings.deadLetterTopic;
    try {
      const read = queue.partition.read(offset, 1);
      if (read.batchCount === 0) {
        throw new SpillwayError('NOT_LEADER', `offset ${offset} is not cached here yet (read again)`);
      }
      const record = [...decodeRecords(read.records, 0)].find((candidate) => candidate.offset === offset);
      if (record === undefined)
        throw new SpillwayError('INTERNAL', `offset ${offset} not found for dead-lettering`);
      const headers: Array<[string, string | Uint8Array | null]> = record.headers.filter(
        ([name]) => !name.startsWith('spillway-dlq-'),
      );
      headers.push(
        [deadLetterHeaders.topic, group.topic],
        [deadLetterHeaders.partition, String(queue.partition.index)],
        [deadLetterHeaders.offset, String(offset)],
        [deadLetterHeaders.deliveryCount, String(deliveryCount)],
        [deadLetterHeaders.error, error],
        [deadLetterHeaders.time, String(clock.nowMs())],
        [deadLetterHeaders.group, group.group],
      );
      const builder = new BatchBuilder();
      builder.append({ key: record.key, value: record.value, headers, timestamp: record.timestamp });
      const batch = builder.finishCopy({ crc32c: (bytes) => crc32c(bytes) });
      const deadLetters = this.deadLetters;
      const partition = queue.partition.index % (await deadLetters.partitionCount(target));
      await deadLetters.append(target, partition, batch);
      await this.options.store.state.commit({
        type: 'settled',
        queue: queue.key,
        ranges: [offset, offset + 1],
      });
      this.deadLettered++;
    } catch (cause) {
      // Not dead-lettered: it stays unsettled and is tried again in a second (or after a restart).
      queue.endSettle(offset);
      if (!this.closed) {
        const dueMs = clock.monotonicMs() + 1000;
        queue.schedule(offset, null, dueMs);
        this.pushDue({ dueMs, queue, group, offset, batch: null });
      }
      void cause;
      return;
    }
    queue.endSettle(offset);
    queue.partition.settled?.();
    group.wakeAll();
  }

  /** A single broker's dead letters: the topic created when missing, appended by the broker's produce. */
  private localDeadLetters(): DeadLetterWriter {
    const { topics } = this.options;
    return {
      partitionCount: async (target) => {
        try {
          return topics.describe(target).partitionCount;
        } catch (cause) {
          if (!(cause instanceof SpillwayError) || cause.code !== 'UNKNOWN_TOPIC') throw cause;
          try {
            return (await topics.create(target, { partitions: 1 })).partitionCount;
          } catch (createError) {
            if (!(createError instanceof SpillwayError) || createError.code !== 'TOPIC_EXISTS')
              throw createError;
            return topics.describe(target).partitionCount;
          }
        }
      },
      append: (target, partition, batch) => this.options.produce(target, partition, batch),
    };
  }

  // --- retention -------------------------------------------------------------------------------

  /** An HTTP ack or nack: the group was used (it has no members to say so). */
  private used(group: QueueGroup): void {
    if (group.members.length === 0) group.idleSinceMs = this.options.clock.nowMs();
  }

  private commitInBackground(entry: QueueEntry): Promise<unknown> {
    return this.options.store.state.commit(entry).catch(() => {
      this.backgroundFailures++;
    });
  }

  /**
   * Forgets the queue groups idle for retentionMs (in memory, and those only in the state log since
   * a restart), and records the idle time of groups whose recorded one is older (used over HTTP).
   */
  private expireGroups(): void {
    if (this.closed || this.options.lifecycle.closing || this.notServing !== null) return;
    const now = this.options.clock.nowMs();
    const records = this.options.store.machine.groups();
    const seen = new Set<string>();
    for (const [key, group] of [...this.groups]) {
      seen.add(key);
      if (this.checkIncarnation(key, group.topic)) continue;
      if (group.inUse) {
        group.idleSinceMs = null;
        continue;
      }
      group.idleSinceMs ??= now;
      if (now - group.idleSinceMs >= this.retentionMs) {
        this.forget(key, group);
        continue;
      }
      const recorded = records.get(key)?.idleSinceMs ?? null;
      if (recorded === null || recorded < group.idleSinceMs) {
        this.commitInBackground({ type: 'idle', group: key, sinceMs: group.idleSinceMs });
      }
    }
    for (const [key, record] of [...records]) {
      if (seen.has(key) || this.forgetting.has(key) || record.idleSinceMs === null) continue;
      if (now - record.idleSinceMs >= this.retentionMs) this.forget(key, null);
    }
  }

  /**
   * Forgets a queue group: out of memory now, its state out of `__queue_state` once committed.
   * `expired`: idle for retentionMs (counted), else its topic went.
   */
  private forget(key: string, group: QueueGroup | null, expired = true): void {
    if (group !== null) {
      this.groups.delete(key);
      closeSources(group);
      const forTopic = this.groupsByTopic.get(group.topic);
      forTopic?.delete(group);
      if (forTopic?.size === 0) this.groupsByTopic.delete(group.topic);
      group.wakeAll();
    }
    const { group: name } = parseQueueGroupKey(key);
    let named = false;
    for (const other of this.groups.values()) {
      if (other.group === name) {
        named = true;
        break;
      }
    }
    if (!named) {
      this.modes.delete(name);
      this.groupTags.delete(name);
    }
    if (expired) this.expiredGroups++;
    const forgotten = this.commitInBackground({ type: 'forgotten', group: key }).finally(() =>
      this.forgetting.delete(key),
    );
    this.forgetting.set(key, forgotten);
  }

  // --- receipts --------------------------------------------------------------------------------

  private groupTag(group: string): string {
    let tag = this.groupTags.get(group);
    if (tag === undefined) {
      tag = createHmac('sha256', this.receiptKey).update(group).digest('base64url').slice(0, 16);
      if (this.groupTags.size >= queueGroupsMax) this.groupTags.clear();
      this.groupTags.set(group, tag);
    }
    return tag;
  }

  /** Receipt = `<group tag>.<partition>.<offset>.<lease>`; the topic is the queue group's. */
  private resolveReceipts(
    group: string,
    receipts: readonly string[],
  ): { group: QueueGroup; byQueue: Map<PartitionQueue, Array<{ offset: number }>> } {
    if (!Array.isArray(receipts) || receipts.length === 0) {
      throw new InvalidArgumentError('receipts must be a non-empty list');
    }
    if (receipts.length > queueSettleOffsetsMax) {
      throw new InvalidArgumentError(`at most ${queueSettleOffsetsMax} receipts at once`);
    }
    const tag = this.groupTag(group);
    const nowMs = this.options.clock.monotonicMs();
    let queueGroup: QueueGroup | null = null;
    const byQueue = new Map<PartitionQueue, Array<{ offset: number }>>();
    const expired: string[] = [];
    for (const receipt of receipts) {
      const parsed = typeof receipt === 'string' ? parseReceipt(receipt) : null;
      if (parsed === null) throw receiptInvalid(`receipt ${JSON.stringify(receipt)} is malformed`);
      if (parsed.tag !== tag)
        throw receiptInvalid(
          `receipt ${receipt} belongs to another group than '${group}' (or was given before the broker restarted)`,
        );
      let found: { group: QueueGroup; queue: PartitionQueue } | null = null;
      for (const candidate of this.groups.values()) {
        if (candidate.group !== group) continue;
        const queue = candidate.partitions[parsed.partition];
        const delivery = queue?.inFlight.get(parsed.offset);
        if (queue !== undefined && delivery !== undefined && delivery.lease === parsed.lease) {
          found = { group: candidate, queue };
          if (delivery.deadlineMs <= nowMs) found = null;
          break;
        }
      }
      if (found === null) {
        expired.push(receipt);
        continue;
      }
      if (queueGroup !== null && queueGroup !== found.group) {
        throw new InvalidArgumentError('receipts of one call must be of one topic');
      }
      queueGroup = found.group;
      let list = byQueue.get(found.queue);
      if (list === undefined) {
        list = [];
        byQueue.set(found.queue, list);
      }
      list.push({ offset: parsed.offset });
    }
    if (expired.length > 0 || queueGroup === null) {
      throw new SpillwayError(
        'RECEIPT_EXPIRED',
        `${expired.length} of ${receipts.length} receipt(s) no longer awaited (deadline passed, settled, or delivered again), e.g. ${expired[0]}: nothing was settled`,
      );
    }
    return { group: queueGroup, byQueue };
  }

  // --- time ------------------------------------------------------------------------------------

  private nextLease(): number {
    this.leaseCounter = (this.leaseCounter + 1) & 0x3fffffff;
    return this.leaseCounter;
  }

  private pushDue(entry: DueEntry): void {
    this.due.push(entry);
    if (entry.dueMs < this.timerDueMs) this.armTimer();
  }

  private armTimer(): void {
    if (this.closed) return;
    const { clock } = this.options;
    const next = this.due.peek();
    clock.clearTimer(this.timer);
    this.timer = null;
    this.timerDueMs = Number.POSITIVE_INFINITY;
    if (next === undefined) return;
    this.timerDueMs = next.dueMs;
    this.timer = clock.setTimeout(() => this.onTimer(), Math.max(0, next.dueMs - clock.monotonicMs()), {
      unref: true,
    });
  }

  private onTimer(): void {
    this.timer = null;
    this.timerDueMs = Number.POSITIVE_INFINITY;
    const nowMs = this.options.clock.monotonicMs();
    const woken = new Set<QueueGroup>();
    for (;;) {
      const next = this.due.peek();
      if (next === undefined || next.dueMs > nowMs) break;
      this.due.pop();
      const { queue, group, offset, batch } = next;
      if (this.groups.get(groupKey(group.group, group.topic)) !== group) continue;
      if (batch === null) {
        if (queue.scheduleDue(offset, next.dueMs)) woken.add(group);
        continue;
      }
      const offsets = batch.offsets;
      const leases = batch.leases;
      if (offsets === null || leases === null) continue;
      for (let i = 0; i < offsets.length; i++) {
        const delivery = queue.inFlight.get(offsets[i]!);
        if (delivery === undefined || delivery.lease !== leases[i]) continue;
        queue.endDelivery(offsets[i]!);
        this.failInBackground(group, queue, offsets[i]!, delivery.key, delivery.deliveryCount, 'ack timeout');
        woken.add(group);
      }
    }
    for (const group of woken) group.wakeAll();
    this.armTimer();
  }
}

/** Releases the sources of a queue group's partitions (remote readers stop, their caches go). */
function closeSources(group: QueueGroup): void {
  for (const queue of group.partitions) queue.partition.close?.();
}

function groupKey(group: string, topic: string): string {
  return queueGroupKey(group, topic);
}

function checkInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

function checkNack(settings: NackSettings): { delayMs: number | undefined; error: string } {
  const delayMs =
    settings.delayMs === undefined
      ? undefined
      : checkInteger('delayMs', settings.delayMs, 0, queueDelayMsMax);
  const error = settings.error ?? '';
  if (typeof error !== 'string') throw new InvalidArgumentError('error must be a string');
  return { delayMs, error: error.slice(0, queueErrorTextLengthMax) };
}

const receiptPattern = /^([A-Za-z0-9_-]{16})\.(\d{1,9})\.(\d{1,16})\.(\d{1,10})$/;

function parseReceipt(
  receipt: string,
): { tag: string; partition: number; offset: number; lease: number } | null {
  const match = receiptPattern.exec(receipt);
  if (match === null) return null;
  const offset = Number(match[3]);
  if (!Number.isSafeInteger(offset)) return null;
  return { tag: match[1]!, partition: Number(match[2]), offset, lease: Number(match[4]) };
}

function receiptInvalid(message: string): SpillwayError {
  return new SpillwayError('RECEIPT_INVALID', message);
}
