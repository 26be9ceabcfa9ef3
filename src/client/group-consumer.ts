/**
 * The consumer of a group: `sw.consumer({ group, topics, mode: 'group' | 'broadcast', from })`. An
 * async iterator of ConsumedMessage, like the log consumer; `msg.ack()` marks a message finished.
 *
 * Group mode (clustering): the broker's coordinator gives each member some partitions (sticky); the
 * consumer fetches only those (GROUP_FETCH, fenced by the broker once a partition is not its own),
 * and commits, every `commitIntervalMs` in one COMMIT_OFFSETS frame, the contiguous prefix of finished
 * (acked) messages of each partition (finished-prefix.ts). A partition starts at the group's committed
 * offset; `from` applies only when the group has none (partitions added to a topic while the consumer
 * runs start at the earliest offset, so nothing produced into them is skipped).
 *
 * Broadcast: every member reads every partition; its position is its own, stored under its member id
 * (`memberId`, default the client's `clientId`; one is required), and resumes from there.
 *
 * Rebalance (cooperative): a HEARTBEAT long-poll answers as soon as this member's view changes.
 * Partitions revoked from it stop being fetched, their buffered, not yet taken messages are dropped;
 * once every message already taken is acked (or `rebalanceTimeoutMs` passed) the prefix is committed
 * and the partitions are released to their new member, which starts from that commit. New partitions
 * start fetching at once. If the broker removed this member (session timeout, its connection
 * closed) it joins again: it drops everything it held and starts from the group's committed offsets.
 *
 * In a cluster the coordinator runs on the leader of `__consumer_offsets`; when it moves (its broker
 * died or handed over), the transport sends this member's requests to the new one, which restored
 * the members it stored (src/broker/groups/group-coordinator.ts): the member id and the client's
 * identity re-attach this member there, with its generation, and the view it answers keeps what this
 * member holds, so the partitions go on from their positions. Only when the new coordinator does not
 * know the member (UNKNOWN_MEMBER: it timed out meanwhile, or its group was too large to store) does
 * it join again as above.
 *
 * At least once: a message is delivered again when its partition moves on before the message was
 * committed: a member died, left with work unfinished, or lost its membership (session timeout, its
 * connection to the coordinator closed, a coordinator failover it was not restored from); acked
 * messages are committed every `commitIntervalMs`, so up to that much acked work is delivered again
 * then. A coordinator failover alone delivers nothing twice (test/cluster/group-failover.test.ts).
 *
 * nack: group and broadcast mode have no broker-side redelivery: `msg.nack({ delayMs })` rewinds
 * that partition to the message (after delayMs): it and the messages after it are delivered again,
 * its deliveryCount one higher. What was acked after it is delivered again too.
 *
 * Bounds: per partition one fetch in flight, not fetched while `partitionBufferBytesMax` of its bytes
 * wait; one commit and one heartbeat in flight; a partition with groupConsumerUnfinishedMessagesMax
 * messages taken and not acked yields no more until some are acked (the iterator waits).
 */

import { setMaxListeners } from 'node:events';
import { CorruptBatchError, InvalidArgumentError, SpillwayError } from '../errors.js';
import { batchBaseOffset, batchRecordCountAt } from '../format/batch-header.js';
import { RecordCursor, verifyBatchCrc } from '../format/record-batch.js';
import {
  fetchMaxBytesDefault,
  groupConsumerUnfinishedMessagesMax,
  groupNameLengthMax,
  groupSessionTimeoutMsDefault,
  groupSessionTimeoutMsMax,
  groupSessionTimeoutMsMin,
  memberIdLengthMax,
} from '../limits.js';
import type { GroupMode, GroupView, PartitionRef } from '../protocol/group-api.js';
import type { ListOffsetRequest } from '../protocol/messages.js';
import { Opcode } from '../protocol/opcodes.js';
import { sleepUnlessAborted } from './abortable-sleep.js';
import type { Admin } from './admin.js';
import { clientCrc32c } from './client-crc32c.js';
import { BufferQueue, ConsumerInbox } from './consumer-inbox.js';
import { consumerFetchOptions, consumerIntegerOption, consumerTopicsOption } from './consumer-options.js';
import { type RunOptions, type RunSummary, runConsumer } from './consumer-run.js';
import { FinishedPrefix } from './finished-prefix.js';
import { parseGroupView } from './group-view.js';
import { type ConsumedMessage, type MessageSettler, messageAt, type NackOptions } from './message.js';
import { RecordPartBuilder, type RecordSpan, type SpanSettler } from './pool-batch.js';
import type { Transport } from './transport.js';
import { closedError, integerOf } from './wire.js';

export interface GroupConsumerOptions {
  group: string;
  topics: string[];
  mode?: GroupMode;
  /** Where a partition with no committed offset (position) starts. Default 'latest'. */
  from?: 'earliest' | 'latest' | { timestamp: number };
  /** Broadcast: this member's stable id (its position is stored under it). Default: the clientId. */
  memberId?: string;
  /** The broker removes this member when no heartbeat came for this long. Default 10 000. */
  sessionTimeoutMs?: number;
  /** How long a heartbeat waits at the broker for a change. Default sessionTimeoutMs / 3. */
  heartbeatIntervalMs?: number;
  /** Finished offsets are committed this often (one frame for all partitions). Default 100. */
  commitIntervalMs?: number;
  /** A revoked partition waits this long for taken messages to be acked before it is released. Default 10 000. */
  rebalanceTimeoutMs?: number;
  maxBytes?: number;
  maxWaitMs?: number;
  partitionBufferBytesMax?: number;
  requestTimeoutMs?: number;
  /** Given by spillway.ts: the client's id (the default broadcast member id). */
  clientId?: string;
}

export const groupConsumerDefaults = {
  from: 'latest',
  sessionTimeoutMs: groupSessionTimeoutMsDefault,
  commitIntervalMs: 100,
  rebalanceTimeoutMs: 10_000,
  maxBytes: fetchMaxBytesDefault,
  maxWaitMs: 500,
  requestTimeoutMs: 30_000,
} as const;

const retryBackoffMs = 100;

function keyOf(topic: string, partition: number): string {
  return `${topic}\n${partition}`;
}

/** One partition this member holds, for one epoch (a nack rewind or a reassignment starts a new one). */
class HeldPartition implements MessageSettler, SpanSettler {
  /** A nack rewinds the partition to the message (see the file header). */
  readonly redelivery = 'rewind' as const;
  readonly topic: string;
  readonly partition: number;
  readonly prefix: FinishedPrefix;
  position: number;
  active = true;
  revoking = false;
  bufferedBytes = 0;
  resume: (() => void) | null = null;
  /** Deliveries of offsets a nack rewound to: offset -> count. */
  readonly redelivered = new Map<number, number>();
  /** Bumped by a rewind: chunks and loops of an older epoch stop. */
  epoch = 0;
  /** Its fetch loop stopped on FENCED_GENERATION / UNKNOWN_MEMBER: a view still assigning it restarts it. */
  fenced = false;
  committed: number;

  constructor(
    private readonly owner: GroupConsumer,
    topic: string,
    partition: number,
    start: number,
    committed: number | null,
  ) {
    this.topic = topic;
    this.partition = partition;
    this.position = start;
    this.prefix = new FinishedPrefix(start);
    this.committed = committed ?? -1;
  }

  ack(message: ConsumedMessage): Promise<void> {
    if (this.active && this.prefix.finish(message.offset)) this.owner.finished(this);
    return Promise.resolve();
  }

  nack(message: ConsumedMessage, options: NackOptions): Promise<void> {
    if (this.active) this.owner.rewind(this, message.offset, options.delayMs ?? 0);
    return Promise.resolve();
  }

  /** The worker pool's ack of a span's handled messages (pool-span-run.ts). */
  ackRange(from: number, to: number): void {
    if (!this.active) return;
    let progressed = false;
    for (let offset = from; offset < to; offset++) if (this.prefix.finish(offset)) progressed = true;
    if (progressed) this.owner.finished(this);
  }

  /** The worker pool's nack of a failed message: the partition rewinds to it. */
  nackAt(offset: number, _error: string): void {
    if (this.active) this.owner.rewind(this, offset, 0);
  }
}

/**
 * One fetch answer being taken apart: message by message (next) or in spans packed for the worker
 * pool (nextSpan); both go on from where the other stopped.
 */
class Chunk {
  private position = 0;
  private cursor: RecordCursor | null = null;
  private readonly text: Buffer;
  /** Offsets below are skipped: below the fetch's offset, or already taken. */
  private skipBelow: number;

  constructor(
    readonly held: HeldPartition,
    readonly epoch: number,
    readonly body: Uint8Array,
    skipBelow: number,
  ) {
    this.text = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    this.skipBelow = skipBelow;
  }

  get stale(): boolean {
    return !this.held.active || this.held.revoking || this.held.epoch !== this.epoch;
  }

  next(): ConsumedMessage | null {
    const body = this.body;
    for (;;) {
      let cursor = this.cursor;
      if (cursor === null) {
        const position = this.position;
        if (position >= body.length) return null;
        if (!verifyBatchCrc(body, position, clientCrc32c)) {
          throw new CorruptBatchError(
            `batch at byte ${position} of a fetch of ${this.held.topic}/${this.held.partition} fails its CRC32C or length check`,
          );
        }
        cursor = new RecordCursor(body, position);
        if (batchBaseOffset(body, position) + batchRecordCountAt(body, position) - 1 < this.skipBelow) {
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
      this.skipBelow = cursor.offset + 1;
      return this.message(cursor);
    }
  }

  /**
   * The next consecutive records (at most `max`, max >= 1) packed for a worker, or null at the end.
   * Throws CorruptBatchError as next() does.
   */
  nextSpan(max: number): RecordSpan | null {
    const body = this.body;
    const held = this.held;
    let builder: RecordPartBuilder | null = null;
    let first = -1;
    let count = 0;
    while (count < max) {
      let cursor = this.cursor;
      if (cursor === null) {
        const position = this.position;
        if (position >= body.length) break;
        const base = batchBaseOffset(body, position);
        // A span is consecutive offsets: a gap before the next batch ends it.
        if (count > 0 && Math.max(base, this.skipBelow) !== first + count) break;
        if (!verifyBatchCrc(body, position, clientCrc32c)) {
          throw new CorruptBatchError(
            `batch at byte ${position} of a fetch of ${held.topic}/${held.partition} fails its CRC32C or length check`,
          );
        }
        cursor = new RecordCursor(body, position);
        if (base + batchRecordCountAt(body, position) - 1 < this.skipBelow) {
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
      const offset = cursor.offset;
      if (offset < this.skipBelow) continue;
      if (builder === null) {
        builder = new RecordPartBuilder(held.topic, held.partition, body, max);
        first = offset;
      }
      builder.add(cursor, held.redelivered.size === 0 ? 1 : (held.redelivered.get(offset) ?? 1));
      count++;
      this.skipBelow = offset + 1;
    }
    if (builder === null) return null;
    return {
      topic: held.topic,
      partition: held.partition,
      firstOffset: first,
      count,
      part: builder.finish(),
      settler: held,
    };
  }

  private message(cursor: RecordCursor): ConsumedMessage {
    const held = this.held;
    const deliveries = held.redelivered.size === 0 ? 1 : (held.redelivered.get(cursor.offset) ?? 1);
    return messageAt(held.topic, held.partition, cursor, this.text, deliveries, held);
  }
}

export class GroupConsumer implements AsyncIterableIterator<ConsumedMessage> {
  readonly group: string;
  readonly topics: readonly string[];
  readonly mode: GroupMode;
  private readonly transport: Transport;
  private readonly admin: Admin;
  private readonly from: 'earliest' | 'latest' | { timestamp: number };
  private readonly stableMemberId: string | undefined;
  private readonly sessionTimeoutMs: number;
  private readonly heartbeatIntervalMs: number;
  private readonly commitIntervalMs: number;
  private readonly rebalanceTimeoutMs: number;
  private readonly maxBytes: number;
  private readonly maxWaitMs: number;
  private readonly partitionBufferBytesMax: number;
  private readonly requestTimeoutMs: number;
  private memberId: string | null = null;
  private viewVersion = -1;
  private generationSeen = 0;
  private readonly held = new Map<string, HeldPartition>();
  /** Partition counts when this consumer started: partitions added later start at 'earliest'. */
  private readonly initialPartitionCounts = new Map<string, number>();
  private readonly chunks = new BufferQueue<Chunk>();
  private readonly lifetime = new AbortController();
  private readonly inbox = new ConsumerInbox(this.lifetime.signal);
  private readonly loops = new Set<Promise<void>>();
  private readonly starting: Promise<void>;
  private commitTimer: NodeJS.Timeout | null = null;
  private commitInFlight: Promise<void> | null = null;
  private lastCommitMs = 0;
  /** The partition whose unfinished messages reached groupConsumerUnfinishedMessagesMax, if any. */
  private blockedOn: HeldPartition | null = null;
  private closing: Promise<void> | null = null;
  /** Frames sent, for tests and benchmarks. */
  readonly stats = { commits: 0, heartbeats: 0, joins: 0, releases: 0 };

  /** @internal Made by Spillway.consumer(). */
  constructor(transport: Transport, admin: Admin, options: GroupConsumerOptions) {
    const group = options.group;
    if (typeof group !== 'string' || group.length === 0 || group.length > groupNameLengthMax) {
      throw new InvalidArgumentError(
        `consumer option group must be a non-empty string of at most ${groupNameLengthMax} characters`,
      );
    }
    const topics = consumerTopicsOption(options.topics);
    const mode = options.mode ?? 'group';
    if (mode !== 'group' && mode !== 'broadcast') {
      throw new InvalidArgumentError(`GroupConsumer takes mode 'group' or 'broadcast', got ${String(mode)}`);
    }
    const from = options.from ?? groupConsumerDefaults.from;
    if (
      from !== 'earliest' &&
      from !== 'latest' &&
      !(
        typeof from === 'object' &&
        from !== null &&
        Number.isSafeInteger((from as { timestamp?: unknown }).timestamp)
      )
    ) {
      throw new InvalidArgumentError(
        "consumer option from must be 'earliest', 'latest' or { timestamp } with a group",
      );
    }
    const memberId = options.memberId ?? options.clientId;
    if (
      mode === 'broadcast' &&
      (typeof memberId !== 'string' || memberId.length === 0 || memberId.length > memberIdLengthMax)
    ) {
      throw new InvalidArgumentError(
        `a broadcast consumer needs a stable memberId (option memberId or the client's clientId) of 1 to ${memberIdLengthMax} characters`,
      );
    }
    this.group = group;
    this.topics = topics;
    this.mode = mode;
    this.transport = transport;
    this.admin = admin;
    this.from = from;
    this.stableMemberId = mode === 'broadcast' ? memberId : undefined;
    this.sessionTimeoutMs = consumerIntegerOption(
      options.sessionTimeoutMs,
      'sessionTimeoutMs',
      groupSessionTimeoutMsMin,
      groupSessionTimeoutMsMax,
      groupConsumerDefaults.sessionTimeoutMs,
    );
    this.heartbeatIntervalMs = consumerIntegerOption(
      options.heartbeatIntervalMs,
      'heartbeatIntervalMs',
      1,
      this.sessionTimeoutMs,
      Math.max(1, Math.floor(this.sessionTimeoutMs / 3)),
    );
    this.commitIntervalMs = consumerIntegerOption(
      options.commitIntervalMs,
      'commitIntervalMs',
      1,
      3_600_000,
      groupConsumerDefaults.commitIntervalMs,
    );
    this.rebalanceTimeoutMs = consumerIntegerOption(
      options.rebalanceTimeoutMs,
      'rebalanceTimeoutMs',
      0,
      3_600_000,
      groupConsumerDefaults.rebalanceTimeoutMs,
    );
    ({
      maxBytes: this.maxBytes,
      maxWaitMs: this.maxWaitMs,
      partitionBufferBytesMax: this.partitionBufferBytesMax,
      requestTimeoutMs: this.requestTimeoutMs,
    } = consumerFetchOptions(options, groupConsumerDefaults));
    setMaxListeners(0, this.lifetime.signal);
    this.starting = this.start();
    this.starting.catch(() => undefined);
  }

  /** Resolves once the member joined and its first assignment is being fetched. */
  ready(): Promise<void> {
    return this.starting;
  }

  /** This member's id in the group (null before it joined). */
  get member(): string | null {
    return this.memberId;
  }

  /** The last generation this member saw. */
  get generation(): number {
    return this.generationSeen;
  }

  /**
   * The partitions this member reads now: the offset of the next fetch, the committable offset (end
   * of the finished prefix) and the last offset the broker acknowledged as committed (-1: none yet).
   */
  assignment(): Array<{
    topic: string;
    partition: number;
    position: number;
    committable: number;
    committed: number;
    revoking: boolean;
  }> {
    return [...this.held.values()].map((held) => ({
      topic: held.topic,
      partition: held.partition,
      position: held.position,
      committable: held.prefix.committable,
      committed: held.committed,
      revoking: held.revoking,
    }));
  }

  /**
   * Runs a handler over the messages, in this thread or in worker threads (consumer-run.ts): what it
   * handles is acked (committed with the contiguous finished prefix), what it fails is nacked (the
   * partition rewinds). Messages still running when close() commits are committed only if acked
   * before; the others come again to the partition's next owner.
   */
  run<Extra extends object = object>(options: RunOptions<Extra>): Promise<RunSummary> {
    return runConsumer(this, options, { redelivery: 'rewind' });
  }

  /**
   * @internal The worker pool's way to take messages (pool-span-run.ts): the next run of at most
   * `max` consecutive messages of one partition, packed for a worker thread; done once closed. Each
   * is delivered (counts towards the partition's unfinished bound) and settled through ackRange /
   * nackAt of its settler.
   */
  nextSpan(max: number): Promise<IteratorResult<RecordSpan, undefined>> {
    return this.inbox.next(
      () => this.takeSpan(max),
      () => this.close(),
    );
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

  async return(): Promise<IteratorResult<ConsumedMessage, undefined>> {
    await this.close();
    return { done: true, value: undefined };
  }

  /**
   * Stops fetching, commits what is finished, leaves the group (its partitions go to the other
   * members at once). Idempotent.
   */
  close(): Promise<void> {
    if (this.closing === null) {
      this.lifetime.abort(closedError('the consumer'));
      if (this.commitTimer !== null) clearInterval(this.commitTimer);
      for (const held of this.held.values()) this.wakeFetch(held);
      this.inbox.wake();
      this.closing = (async () => {
        await this.starting.catch(() => undefined);
        await Promise.allSettled([...this.loops]);
        await this.commitNow().catch(() => undefined);
        const memberId = this.memberId;
        if (memberId !== null && !this.transport.closed) {
          await this.transport
            .request(Opcode.leaveGroup, { group: this.group, memberId }, undefined, {
              timeoutMs: this.requestTimeoutMs,
            })
            .catch(() => undefined);
        }
        for (const held of this.held.values()) held.active = false;
        this.held.clear();
        this.chunks.clear();
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
      for (const description of descriptions)
        this.initialPartitionCounts.set(description.name, description.partitionCount);
      await this.join();
    } catch (error) {
      this.inbox.fail(error);
      throw error;
    }
    if (this.closed) return;
    this.commitTimer = setInterval(
      () => void this.commitNow().catch((error) => this.commitFailed(error)),
      this.commitIntervalMs,
    );
    this.commitTimer.unref?.();
    this.track(this.heartbeatLoop());
  }

  private track(loop: Promise<void>): void {
    this.loops.add(loop);
    void loop.finally(() => this.loops.delete(loop));
  }

  private async join(): Promise<void> {
    const header: Record<string, unknown> = {
      group: this.group,
      topics: this.topics,
      mode: this.mode,
      sessionTimeoutMs: this.sessionTimeoutMs,
    };
    if (this.stableMemberId !== undefined) header['memberId'] = this.stableMemberId;
    const response = await this.transport.request(Opcode.joinGroup, header, undefined, {
      timeoutMs: this.requestTimeoutMs,
    });
    this.stats.joins++;
    const view = parseGroupView(response.header);
    this.memberId = view.memberId;
    await this.apply(view);
  }

  private async heartbeatLoop(): Promise<void> {
    const signal = this.lifetime.signal;
    let failures = 0;
    let rejoin = false;
    while (!signal.aborted) {
      try {
        if (rejoin) {
          await this.join();
          rejoin = false;
          failures = 0;
          continue;
        }
        const response = await this.transport.request(
          Opcode.heartbeat,
          {
            group: this.group,
            memberId: this.memberId,
            viewVersion: this.viewVersion,
            waitMs: this.heartbeatIntervalMs,
          },
          undefined,
          { timeoutMs: this.heartbeatIntervalMs + this.requestTimeoutMs, signal },
        );
        this.stats.heartbeats++;
        failures = 0;
        if (signal.aborted) return;
        await this.apply(parseGroupView(response.header));
      } catch (error) {
        if (signal.aborted) return;
        if (!rejoin && error instanceof SpillwayError && error.code === 'UNKNOWN_MEMBER') {
          // Removed (session timeout, reconnect): everything held is lost; join again.
          this.dropAll();
          rejoin = true;
          continue;
        }
        if (error instanceof SpillwayError && error.retriable) {
          failures++;
          await this.sleep(Math.min(retryBackoffMs * 2 ** Math.min(failures, 6), 5_000));
          continue;
        }
        this.inbox.fail(error);
        return;
      }
    }
  }

  /** Takes a view: drops lost partitions, starts revocations, starts fetching new partitions. */
  private async apply(view: GroupView): Promise<void> {
    if (view.memberId === this.memberId && view.viewVersion <= this.viewVersion) return; // not newer
    this.viewVersion = view.viewVersion;
    this.generationSeen = view.generation;
    const assigned = new Map(view.assigned.map((entry) => [keyOf(entry.topic, entry.partition), entry]));
    const revoking = new Set(view.revoking.map((ref) => keyOf(ref.topic, ref.partition)));
    for (const [key, held] of [...this.held]) {
      if (!assigned.has(key)) {
        held.active = false;
        this.held.delete(key);
        this.wakeFetch(held);
      } else if (revoking.has(key) && !held.revoking) {
        held.revoking = true;
        this.wakeFetch(held);
        this.track(this.revoke(held));
      } else if (held.fenced && !held.revoking) {
        // Refused while the coordinator moved, ours in this view: fetch on from where it stopped.
        held.fenced = false;
        this.track(this.fetchLoop(held, held.epoch));
      }
    }
    const starting: Array<Promise<void>> = [];
    const neverStarted: PartitionRef[] = [];
    for (const [key, entry] of assigned) {
      if (this.held.has(key)) continue;
      // Revoked before this member started it (the view it joined with was already moving it on):
      // nothing to finish or commit, hand it over at once.
      if (revoking.has(key)) neverStarted.push({ topic: entry.topic, partition: entry.partition });
      else starting.push(this.startPartition(key, entry.topic, entry.partition, entry.committed));
    }
    if (neverStarted.length > 0) this.track(this.release(neverStarted));
    await Promise.all(starting);
  }

  private async startPartition(
    key: string,
    topic: string,
    partition: number,
    committed: number | null,
  ): Promise<void> {
    let start = committed;
    if (start === null) {
      const known = this.initialPartitionCounts.get(topic) ?? 0;
      const spec = partition >= known ? 'earliest' : this.from;
      const request: ListOffsetRequest = { topic, partition, spec };
      const response = await this.transport.request(Opcode.listOffset, request, undefined, {
        timeoutMs: this.requestTimeoutMs,
      });
      start = integerOf(response.header, 'offset', 'listOffset');
    }
    if (this.closed || this.held.has(key)) return;
    const held = new HeldPartition(this, topic, partition, start, committed);
    this.held.set(key, held);
    this.track(this.fetchLoop(held, held.epoch));
  }

  /** Waits for the taken messages of a revoked partition to finish, commits, releases it. */
  private async revoke(held: HeldPartition): Promise<void> {
    this.dropBuffered(held);
    let timer: NodeJS.Timeout | null = null;
    const signal = this.lifetime.signal;
    let onAbort: (() => void) | null = null;
    await Promise.race([
      held.prefix.drained(),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.rebalanceTimeoutMs);
        const abort = (): void => resolve();
        onAbort = abort;
        signal.addEventListener('abort', abort, { once: true });
      }),
    ]);
    if (timer !== null) clearTimeout(timer);
    if (onAbort !== null) signal.removeEventListener('abort', onAbort);
    if (this.closed) return; // close() commits and leaves: the partition moves on at once
    if (!held.active) return;
    await this.commitNow().catch(() => undefined);
    held.active = false;
    const key = keyOf(held.topic, held.partition);
    if (this.held.get(key) === held) this.held.delete(key);
    await this.release([{ topic: held.topic, partition: held.partition }]);
  }

  /** RELEASE_PARTITIONS, then takes the view it answers. */
  private async release(partitions: PartitionRef[]): Promise<void> {
    if (this.memberId === null || this.transport.closed || this.closed) return;
    try {
      const response = await this.transport.request(
        Opcode.releasePartitions,
        { group: this.group, memberId: this.memberId, partitions },
        undefined,
        { timeoutMs: this.requestTimeoutMs },
      );
      this.stats.releases++;
      if (!this.closed) await this.apply(parseGroupView(response.header));
    } catch {
      // Lost the membership meanwhile: the partitions moved on without us; the heartbeat rejoins.
    }
  }

  /**
   * Something finished: commits now when the last commit is commitIntervalMs old and none is in
   * flight (a busy iteration never lets the interval timer run; the timer covers idle times).
   */
  finished(held: HeldPartition): void {
    if (this.blockedOn === held) {
      this.blockedOn = null;
      this.inbox.wake();
    }
    if (this.commitInFlight !== null) return;
    const now = performance.now();
    if (now - this.lastCommitMs < this.commitIntervalMs) return;
    this.lastCommitMs = now;
    this.commitNow().catch((error) => this.commitFailed(error));
  }

  /** A nack: the partition is read again from `offset` (after delayMs). */
  rewind(held: HeldPartition, offset: number, delayMs: number): void {
    if (!held.active || held.revoking || offset < held.prefix.committable) return;
    held.epoch++;
    held.prefix.rewind(offset);
    held.redelivered.set(offset, (held.redelivered.get(offset) ?? 1) + 1);
    this.dropBuffered(held);
    held.position = offset;
    this.wakeFetch(held);
    const epoch = held.epoch;
    const restart = (): void => {
      if (held.active && held.epoch === epoch && !this.closed) this.track(this.fetchLoop(held, epoch));
    };
    if (delayMs > 0) setTimeout(restart, delayMs).unref?.();
    else restart();
  }

  private async fetchLoop(held: HeldPartition, epoch: number): Promise<void> {
    const signal = this.lifetime.signal;
    const timeoutMs = this.maxWaitMs + this.requestTimeoutMs;
    const header = {
      group: this.group,
      memberId: this.memberId,
      topic: held.topic,
      partition: held.partition,
      offset: 0,
      maxBytes: this.maxBytes,
      maxWaitMs: this.maxWaitMs,
      minBytes: 1,
    };
    let failures = 0;
    const current = (): boolean => !signal.aborted && held.active && !held.revoking && held.epoch === epoch;
    while (current()) {
      if (held.bufferedBytes >= this.partitionBufferBytesMax) {
        await new Promise<void>((resolve) => {
          held.resume = resolve;
        });
        continue;
      }
      const requested = held.position;
      header.offset = requested;
      header.memberId = this.memberId;
      try {
        const response = await this.transport.request(Opcode.groupFetch, header, undefined, {
          timeoutMs,
          signal,
        });
        failures = 0;
        if (!current()) return;
        const nextOffset = integerOf(response.header, 'nextOffset', 'groupFetch');
        if (response.body.length > 0) {
          this.chunks.push(new Chunk(held, epoch, response.body, requested));
          held.bufferedBytes += response.body.length;
          this.inbox.wake();
        }
        if (nextOffset > requested) held.position = nextOffset;
      } catch (error) {
        if (!current()) return;
        if (
          error instanceof SpillwayError &&
          (error.code === 'FENCED_GENERATION' || error.code === 'UNKNOWN_MEMBER')
        ) {
          // Not ours any more: the heartbeat brings the new view (or rejoins); stop here.
          held.fenced = true;
          return;
        }
        if (error instanceof SpillwayError && error.retriable) {
          failures++;
          await this.sleep(Math.min(retryBackoffMs * 2 ** Math.min(failures, 6), 5_000));
          continue;
        }
        this.inbox.fail(error);
        return;
      }
    }
  }

  /** Sends one COMMIT_OFFSETS with every partition whose finished prefix grew; one at a time. */
  private commitNow(): Promise<void> {
    if (this.commitInFlight !== null) {
      // Chain: a caller (revoke, close) needs what is finished now to be committed when this resolves.
      return this.commitInFlight.then(() => this.commitNow());
    }
    const offsets: Array<PartitionRef & { offset: number }> = [];
    const committing: Array<[HeldPartition, number]> = [];
    for (const held of this.held.values()) {
      const offset = held.prefix.committable;
      if (offset > held.committed) {
        offsets.push({ topic: held.topic, partition: held.partition, offset });
        committing.push([held, offset]);
      }
    }
    if (offsets.length === 0 || this.memberId === null) return Promise.resolve();
    const request = this.transport
      .request(Opcode.commitOffsets, { group: this.group, memberId: this.memberId, offsets }, undefined, {
        timeoutMs: this.requestTimeoutMs,
      })
      .then(() => {
        this.stats.commits++;
        for (const [held, offset] of committing) if (offset > held.committed) held.committed = offset;
      });
    this.commitInFlight = request.finally(() => {
      this.commitInFlight = null;
    });
    return this.commitInFlight;
  }

  private commitFailed(error: unknown): void {
    // FENCED / UNKNOWN_MEMBER: the heartbeat brings the new view; retriable: the next tick retries.
    if (
      error instanceof SpillwayError &&
      (error.retriable || error.code === 'FENCED_GENERATION' || error.code === 'UNKNOWN_MEMBER')
    ) {
      return;
    }
    this.inbox.fail(error);
  }

  private dropAll(): void {
    for (const held of this.held.values()) {
      held.active = false;
      this.wakeFetch(held);
    }
    this.held.clear();
    this.viewVersion = -1;
  }

  /** Releases the bytes of a partition's buffered chunks (they are skipped when reached). */
  private dropBuffered(held: HeldPartition): void {
    this.chunks.removeWhere((chunk) => {
      if (chunk.held !== held || !chunk.stale) return false;
      held.bufferedBytes -= chunk.body.length;
      return true;
    });
  }

  private takeBuffered(): ConsumedMessage | null {
    const chunks = this.chunks;
    while (!chunks.isEmpty) {
      const chunk = chunks.front();
      if (chunk !== undefined && !chunk.stale) {
        if (chunk.held.prefix.pendingCount >= groupConsumerUnfinishedMessagesMax) {
          // Bounded: this partition waits for acks (its ack wakes the readers).
          this.blockedOn = chunk.held;
          return null;
        }
        const message = chunk.next();
        if (message !== null) {
          chunk.held.prefix.deliver(message.offset);
          return message;
        }
      }
      this.shiftChunk(chunk);
    }
    return null;
  }

  private takeSpan(max: number): RecordSpan | null {
    const chunks = this.chunks;
    while (!chunks.isEmpty) {
      const chunk = chunks.front();
      if (chunk !== undefined && !chunk.stale) {
        const prefix = chunk.held.prefix;
        const room = groupConsumerUnfinishedMessagesMax - prefix.pendingCount;
        if (room <= 0) {
          // Bounded: this partition waits for acks (its ack wakes the readers).
          this.blockedOn = chunk.held;
          return null;
        }
        const span = chunk.nextSpan(Math.min(max, room));
        if (span !== null) {
          const end = span.firstOffset + span.count;
          for (let offset = span.firstOffset; offset < end; offset++) prefix.deliver(offset);
          return span;
        }
      }
      this.shiftChunk(chunk);
    }
    return null;
  }

  /** Drops the front chunk (read to its end, or stale) and gives its bytes back to its partition. */
  private shiftChunk(chunk: Chunk | undefined): void {
    this.chunks.shift();
    if (chunk === undefined) return;
    const held = chunk.held;
    held.bufferedBytes -= chunk.body.length;
    if (held.bufferedBytes < this.partitionBufferBytesMax) this.wakeFetch(held);
  }

  private wakeFetch(held: HeldPartition): void {
    const resume = held.resume;
    held.resume = null;
    resume?.();
  }

  private sleep(ms: number): Promise<void> {
    return sleepUnlessAborted(ms, this.lifetime.signal);
  }
}
