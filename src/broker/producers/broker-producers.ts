/**
 * The idempotent producer service: producer ids and epochs (INIT_PRODUCER), and the sequence check
 * of every batch with producerId >= 0 on its way to a partition (docs/PROTOCOL.md, "Idempotent
 * PRODUCE"; docs/STATE.md, `__producer_state`).
 *
 * Contracts:
 *  - A producer id is never handed out twice for a data directory: the next id is committed with
 *    each new one. A registration is answered once durable.
 *  - `produce` appends a batch (through the caller's `append`) only if its sequence follows the
 *    producer's last one on the partition; a repeat of one of the last producerBatchesRememberedMax
 *    batches is answered with that batch's offsets (its own answer, if it is still on its way) and
 *    not written. The check and the recording run in the same turn as the log's append, which
 *    assigns offsets synchronously: `append` must reach the log's append without awaiting anything.
 *  - Durability: the dedup information of a batch is its own header (producerId, epoch,
 *    baseSequence), written by the same append; the state log holds producer ids and, every
 *    `snapshotIntervalMs`, a sequence snapshot per changed partition as of its log end then (not
 *    synced: the data may be, the state log is `always`). At open each partition's state is its
 *    snapshot, less the batches the log no longer has (lost unsynced when the machine went down),
 *    plus the batch headers after it. A partition's idempotent batches are appended only while a
 *    snapshot of it that the log does not end before is durable: one is written before the first
 *    idempotent batch, and again (the recovered state) after an open found the log shorter than its
 *    snapshot, so the headers of every idempotent batch are always read back.
 *  - Memory: at most producersMax producers (the one idle the longest is dropped to make room), each
 *    with producerBatchesRememberedMax batches per partition it wrote to; a producer idle for
 *    idleExpiryMs is dropped (its id then gets UNKNOWN_PRODUCER_ID).
 *  - Cluster mode (`joinCluster`, docs/CLUSTER.md "Built: idempotent producers"): producer ids come
 *    from the cluster (`ProducerIdSource`, unique cluster-wide), named producers' (id, epoch) from
 *    the cluster-wide registry (`ProducerNameRegistry`), and nothing is written to
 *    `__producer_state`; a partition's state is rebuilt from its local log's batch headers (log start
 *    to log end) on the first idempotent batch of each leadership (`Partition.replica`, a new role
 *    object per leader epoch), so a new leader has every batch the old one acknowledged with acks
 *    'all'. The rebuild reads producerRebuildBatchesPerSlice headers per event-loop turn; the
 *    partition's idempotent batches wait for it (at most producerRebuildWaitersMax, then
 *    BACKPRESSURE) and are then admitted again (NOT_LEADER if the leadership moved). A producer
 *    without state on the partition is taken from sequence 0 (else UNKNOWN_PRODUCER_ID); an epoch
 *    older than the partition's, or than the registry's for a named id, is fenced. A repeat is
 *    answered once replicated as `options` asks (acks), like a first append.
 * Single-threaded (one event loop).
 */
import type { Clock, ClockTimer } from '../../clock.js';
import {
  BackpressureError,
  ClusterUnavailableError,
  InvalidBatchError,
  ProducerFencedError,
  UnknownProducerIdError,
} from '../../errors.js';
import type { BatchHeaderFields } from '../../format/batch-header.js';
import { producerEpochMax, producerRebuildBatchesPerSlice, producerRebuildWaitersMax } from '../../limits.js';
import type { ProduceResult } from '../../protocol/broker-api.js';
import type {
  InitProducerRequest,
  InitProducerResult,
  ProducerService,
} from '../../protocol/producer-api.js';
import type { ProduceOptions } from '../../protocol/replication-api.js';
import type { LogStore } from '../../storage/log-store.js';
import type { BrokerTopics } from '../broker-topics.js';
import type { Lifecycle } from '../lifecycle.js';
import type { Partition } from '../partition.js';
import type { Topic } from '../topic.js';
import type { ProducerIdSource } from './producer-id-source.js';
import type { ProducerNameRegistry } from './producer-name-registry.js';
import { lastSequenceOf, PartitionSequences, type ProducerOnPartition } from './producer-sequences.js';
import {
  nextIdKey,
  type ProducerRecord,
  type ProducerStateStore,
  parseSequenceKey,
  producerKey,
  type SequenceSnapshot,
  sequenceKey,
} from './producer-state-store.js';

export interface BrokerProducersOptions {
  store: ProducerStateStore;
  topics: BrokerTopics;
  lifecycle: Lifecycle;
  clock: Clock;
  /** A producer unused this long is dropped. */
  idleExpiryMs: number;
  /** Producers held at once; one more registration drops the one idle the longest. */
  producersMax: number;
  /** How often changed partitions get a sequence snapshot. */
  snapshotIntervalMs: number;
}

const noop = (): void => undefined;

/** Appends a checked batch to the partition; reaches the log's append synchronously. */
export type AppendBatch = (batch: Uint8Array) => Promise<ProduceResult>;

interface LiveProducer {
  readonly id: number;
  epoch: number;
  readonly name: string | null;
  lastUsedMs: number;
  /** Partitions holding sequence state of this producer. */
  readonly partitions: Set<PartitionSequences>;
}

/** What the service holds and did (for describe, metrics and tests). */
export interface ProducerStats {
  producers: number;
  partitions: number;
  expired: number;
  evicted: number;
  duplicates: number;
  snapshotsWritten: number;
  /** Batch headers read back at open, and from how many partitions. */
  replayedBatches: number;
  replayedPartitions: number;
  /** Cluster mode: event-loop turns the rebuilds took (one per slice of batch headers). */
  replayedSlices: number;
}

/** Cluster mode: a partition's producer state being rebuilt for a leadership. */
interface Rebuild {
  readonly leadership: object | null;
  done: Promise<void>;
  /** Idempotent batches waiting for it (bounded by producerRebuildWaitersMax). */
  waiters: number;
}

/** Lets the event loop run what is waiting (I/O included) before going on. */
const yieldTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class BrokerProducers implements ProducerService {
  private readonly store: ProducerStateStore;
  private readonly topics: BrokerTopics;
  private readonly lifecycle: Lifecycle;
  private readonly clock: Clock;
  private readonly idleExpiryMs: number;
  private readonly producersMax: number;
  private readonly live = new Map<number, LiveProducer>();
  private readonly names = new Map<string, number>();
  private readonly sequences = new Map<Partition, PartitionSequences>();
  private nextId = 0;
  private snapshotTimer: ClockTimer | null;
  private expiryTimer: ClockTimer | null;
  private snapshotting: Promise<void> | null = null;
  private readonly counts = { expired: 0, evicted: 0, duplicates: 0, snapshotsWritten: 0 };
  private readonly replayed = { batches: 0, partitions: 0, slices: 0 };
  /**
   * Cluster mode (joinCluster): where producer ids and named producers' (id, epoch) come from (null
   * until the cluster is joined).
   */
  private cluster: { ids: ProducerIdSource | null; names: ProducerNameRegistry | null } | null = null;
  /** Cluster mode: partitions whose state is being rebuilt from the log (produces to them wait). */
  private readonly rebuilds = new Map<Partition, Rebuild>();

  constructor(options: BrokerProducersOptions) {
    this.store = options.store;
    this.topics = options.topics;
    this.lifecycle = options.lifecycle;
    this.clock = options.clock;
    this.idleExpiryMs = options.idleExpiryMs;
    this.producersMax = options.producersMax;
    this.load();
    this.snapshotTimer = this.clock.setInterval(
      () => void this.snapshotChanged(),
      options.snapshotIntervalMs,
      {
        unref: true,
      },
    );
    this.expiryTimer = this.clock.setInterval(
      () => this.expireIdle(),
      Math.max(10, Math.min(Math.floor(this.idleExpiryMs / 4), 60_000)),
      { unref: true },
    );
    this.topics.onTopicDeleted((topic) => this.topicDeleted(topic));
  }

  stats(): ProducerStats {
    return {
      producers: this.live.size,
      partitions: this.sequences.size,
      ...this.counts,
      replayedBatches: this.replayed.batches,
      replayedPartitions: this.replayed.partitions,
      replayedSlices: this.replayed.slices,
    };
  }

  /** The sequence state held for `target` (its producers by id), if any (describe, tests). */
  partitionState(target: Partition): ReadonlyMap<number, ProducerOnPartition> | undefined {
    return this.sequences.get(target)?.producers;
  }

  /**
   * Cluster mode from now on: ids from `ids` (or, until it is given, CLUSTER_UNAVAILABLE), the state
   * of each partition rebuilt from its log when this broker starts leading it; what a single broker
   * had loaded from `__producer_state` is forgotten (not deleted), and no snapshot is written.
   */
  joinCluster(ids: ProducerIdSource | null = null, names: ProducerNameRegistry | null = null): void {
    this.cluster = { ids, names };
    this.clock.clearTimer(this.snapshotTimer);
    this.snapshotTimer = null;
    this.live.clear();
    this.names.clear();
    this.sequences.clear();
  }

  /** Cluster mode: the source of producer ids and the name registry (given once the cluster is joined). */
  useProducerIds(ids: ProducerIdSource, names?: ProducerNameRegistry): void {
    if (this.cluster === null) return;
    this.cluster.ids = ids;
    if (names !== undefined) this.cluster.names = names;
  }

  async initProducer(request: InitProducerRequest): Promise<InitProducerResult> {
    this.lifecycle.assertOpen();
    if (this.cluster !== null) return this.initInCluster(request);
    const name = request.name ?? null;
    const now = this.clock.monotonicMs();
    if (name !== null) {
      const existing = this.live.get(this.names.get(name) ?? -1);
      if (existing !== undefined && existing.epoch < producerEpochMax) {
        existing.epoch++;
        existing.lastUsedMs = now;
        const epoch = existing.epoch;
        await this.store.put(producerKey(existing.id), { e: epoch, n: name });
        return { producerId: existing.id, producerEpoch: epoch };
      }
      if (existing !== undefined) this.drop(existing);
    }
    while (this.live.size >= this.producersMax) {
      this.counts.evicted++;
      this.drop(this.idlest()!);
    }
    const id = this.nextId++;
    const producer: LiveProducer = { id, epoch: 0, name, lastUsedMs: now, partitions: new Set() };
    this.live.set(id, producer);
    if (name !== null) this.names.set(name, id);
    const record: ProducerRecord = name === null ? { e: 0 } : { e: 0, n: name };
    await Promise.all([this.store.put(nextIdKey, this.nextId), this.store.put(producerKey(id), record)]);
    return { producerId: id, producerEpoch: 0 };
  }

  /**
   * The idempotent branch of produce: checks the batch's producer, epoch and sequence against
   * `target`'s state; a repeat is answered with its original offsets, a new batch goes to `append`
   * and is recorded. Throws UNKNOWN_PRODUCER_ID, PRODUCER_FENCED, OUT_OF_ORDER_SEQUENCE.
   */
  produce(
    target: Partition,
    fields: BatchHeaderFields,
    batch: Uint8Array,
    append: AppendBatch,
    options?: ProduceOptions,
  ): Promise<ProduceResult> {
    if (this.cluster !== null) return this.produceInCluster(target, fields, batch, append, options);
    const producerId = fields.producerId;
    const epoch = fields.producerEpoch;
    const producer = this.live.get(producerId);
    if (producer === undefined) {
      throw new UnknownProducerIdError(
        `producer id ${producerId} is not known to the broker (expired, evicted or never assigned): register again`,
      );
    }
    if (epoch < producer.epoch) {
      throw new ProducerFencedError(
        `producer ${producerId} epoch ${epoch} was fenced by epoch ${producer.epoch} (the same producer identity registered again)`,
      );
    }
    if (epoch > producer.epoch) {
      throw new UnknownProducerIdError(
        `producer ${producerId} epoch ${epoch} is newer than the broker's ${producer.epoch}: register again`,
      );
    }
    if (fields.baseSequence < 0) {
      throw new InvalidBatchError(`idempotent batch of producer ${producerId} without a baseSequence`);
    }
    producer.lastUsedMs = this.clock.monotonicMs();
    // PARTITION_DAMAGED for a stopped partition, before anything else.
    const log = target.log;
    const sequences = this.sequencesOf(target);
    if (!sequences.marked) {
      if (sequences.marking === null) this.markTopic(target);
      return sequences.marking!.then(() => this.produce(target, fields, batch, append));
    }
    const lastSequence = lastSequenceOf(fields.baseSequence, fields.recordCount);
    const repeated = sequences.check(producerId, epoch, fields.baseSequence, lastSequence);
    if (repeated !== null) {
      this.counts.duplicates++;
      return (
        repeated.result ??
        Promise.resolve({
          partition: target.index,
          baseOffset: repeated.baseOffset,
          lastOffset: repeated.lastOffset,
          durability: target.durability,
        })
      );
    }
    return appendRemembered(log, sequences, producer, fields, lastSequence, batch, append);
  }

  /** Writes a sequence snapshot of every partition changed since its last one. */
  snapshotChanged(): Promise<void> {
    if (this.cluster !== null) return Promise.resolve();
    if (this.snapshotting !== null) return this.snapshotting;
    const run = async (): Promise<void> => {
      for (const [partition, sequences] of this.sequences) {
        if (!sequences.dirty || !sequences.marked) continue;
        const log = partition.openLog;
        if (log === null) continue;
        const value = sequences.snapshot(log.logEndOffset);
        sequences.dirty = false;
        try {
          await this.store.put(sequenceKey(sequences.topic, sequences.partition), value);
          this.counts.snapshotsWritten++;
        } catch {
          // The log or the state log failed (closing, I/O): the next pass tries again.
          sequences.dirty = true;
        }
      }
    };
    this.snapshotting = run().finally(() => {
      this.snapshotting = null;
    });
    return this.snapshotting;
  }

  /** Drops producers idle for idleExpiryMs. */
  expireIdle(): void {
    const oldest = this.clock.monotonicMs() - this.idleExpiryMs;
    for (const producer of [...this.live.values()]) {
      if (producer.lastUsedMs <= oldest) {
        this.counts.expired++;
        this.drop(producer);
      }
    }
  }

  /** Stops the timers and writes the last sequence snapshots (before the logs close). */
  async close(): Promise<void> {
    this.clock.clearTimer(this.snapshotTimer);
    this.clock.clearTimer(this.expiryTimer);
    this.snapshotTimer = null;
    this.expiryTimer = null;
    await this.snapshotting;
    await this.snapshotChanged();
  }

  private idlest(): LiveProducer | undefined {
    let idlest: LiveProducer | undefined;
    for (const producer of this.live.values()) {
      if (idlest === undefined || producer.lastUsedMs < idlest.lastUsedMs) idlest = producer;
    }
    return idlest;
  }

  private drop(producer: LiveProducer): void {
    this.live.delete(producer.id);
    if (producer.name !== null && this.names.get(producer.name) === producer.id)
      this.names.delete(producer.name);
    for (const sequences of producer.partitions) sequences.forget(producer.id);
    if (this.cluster !== null) return;
    // Not awaited: a lost delete only brings an idle producer back after a restart.
    this.store.delete(producerKey(producer.id)).catch(() => undefined);
  }

  private sequencesOf(target: Partition): PartitionSequences {
    let sequences = this.sequences.get(target);
    if (sequences === undefined) {
      const topic = this.topics.topicNamed(target.topic);
      sequences = new PartitionSequences(target.topic, target.index, topic.createdAtMs, false);
      this.sequences.set(target, sequences);
    }
    return sequences;
  }

  /**
   * Marks every partition of `target`'s topic not marked yet, in one turn: one group commit (one
   * fdatasync) instead of one per partition as the producer's batches reach them.
   */
  private markTopic(target: Partition): void {
    const topic = this.topics.topicNamed(target.topic);
    for (const partition of topic.partitions) {
      if (partition.openLog === null) continue;
      const sequences = this.sequencesOf(partition);
      if (!sequences.marked && sequences.marking === null)
        sequences.marking = this.mark(sequences, partition);
    }
  }

  /**
   * Makes a snapshot of the partition's state as of its log end durable before idempotent batches
   * are appended (the first time, or after an open found the log shorter than its snapshot).
   */
  private async mark(sequences: PartitionSequences, target: Partition): Promise<void> {
    try {
      const value: SequenceSnapshot = sequences.snapshot(target.log.logEndOffset);
      await this.store.put(sequenceKey(sequences.topic, sequences.partition), value);
      sequences.marked = true;
    } finally {
      sequences.marking = null;
    }
  }

  private topicDeleted(topic: Topic): void {
    for (const partition of topic.partitions) {
      const sequences = this.sequences.get(partition);
      if (sequences === undefined) continue;
      this.sequences.delete(partition);
      for (const producerId of sequences.producers.keys())
        this.live.get(producerId)?.partitions.delete(sequences);
      if (this.cluster !== null) continue;
      this.store.delete(sequenceKey(topic.name, partition.index)).catch(() => undefined);
    }
  }

  /**
   * Cluster mode: a new producer id from the cluster at epoch 0; a named producer's id with an epoch
   * above every one given for the name before (the cluster-wide registry, producer-names.ts).
   */
  private async initInCluster(request: InitProducerRequest): Promise<InitProducerResult> {
    const { ids, names } = this.cluster!;
    const name = request.name ?? null;
    if (ids === null || (name !== null && names === null)) {
      throw new ClusterUnavailableError(
        'this broker has not joined the cluster yet: no producer ids to give',
      );
    }
    const result =
      name === null
        ? { producerId: await ids.nextProducerId(), producerEpoch: 0 }
        : await names!.register(name);
    this.lifecycle.assertOpen();
    return result;
  }

  /** Cluster mode: the idempotent branch of produce (this broker leads `target`: admitProduce passed). */
  private produceInCluster(
    target: Partition,
    fields: BatchHeaderFields,
    batch: Uint8Array,
    append: AppendBatch,
    options: ProduceOptions | undefined,
  ): Promise<ProduceResult> {
    const { producerId, producerEpoch: epoch, baseSequence } = fields;
    if (baseSequence < 0) {
      throw new InvalidBatchError(`idempotent batch of producer ${producerId} without a baseSequence`);
    }
    // PARTITION_DAMAGED for a stopped partition, before anything else.
    const log = target.log;
    const sequences = this.leaderSequences(target, log);
    if (sequences === null) return this.afterRebuild(target, fields, batch, append, options);
    const state = sequences.producers.get(producerId);
    const where = `${target.topic}/${target.index}`;
    if (state !== undefined && epoch < state.epoch) {
      throw new ProducerFencedError(
        `producer ${producerId} epoch ${epoch} was fenced by epoch ${state.epoch} on ${where}`,
      );
    }
    // A named producer registered again (on any broker): its older instances are fenced here too,
    // before the new instance has written to this partition.
    const registered = this.cluster!.names?.epochOf(producerId);
    if (registered !== undefined && epoch < registered) {
      throw new ProducerFencedError(
        `producer ${producerId} epoch ${epoch} was fenced by epoch ${registered} (the same producerName registered again)`,
      );
    }
    if (state === undefined && baseSequence !== 0) {
      throw new UnknownProducerIdError(
        `producer ${producerId} has no state on ${where} (expired, evicted, or its batches left the log) and sends sequence ${baseSequence}: register again`,
      );
    }
    const lastSequence = lastSequenceOf(baseSequence, fields.recordCount);
    const repeated = sequences.check(producerId, epoch, baseSequence, lastSequence);
    const producer = this.liveInCluster(producerId, epoch);
    if (repeated !== null) {
      this.counts.duplicates++;
      const answer: ProduceResult = {
        partition: target.index,
        baseOffset: repeated.baseOffset,
        lastOffset: repeated.lastOffset,
        durability: target.durability,
      };
      // In the log (this leader's own, or copied from the previous leader): answered once replicated
      // as the repeat asks, whatever became of the first attempt's answer.
      const replica = target.replica;
      const first = repeated.result === null ? Promise.resolve() : repeated.result.then(noop, noop);
      return first.then(() => replica?.replicated(repeated.lastOffset + 1, options)).then(() => answer);
    }
    return appendRemembered(log, sequences, producer, fields, lastSequence, batch, append);
  }

  /**
   * Cluster mode: `target`'s state for the leadership it has now; null while it is being rebuilt
   * from the batch headers of its log (started here when the leadership changed since it was built,
   * or it never was; the caller waits for `rebuilds`).
   */
  private leaderSequences(target: Partition, log: LogStore): PartitionSequences | null {
    const leadership = target.replica;
    const built = this.sequences.get(target);
    if (built !== undefined && built.leadership === leadership) return built;
    const running = this.rebuilds.get(target);
    if (running !== undefined && running.leadership === leadership) return null;
    if (built !== undefined) {
      this.sequences.delete(target);
      for (const producerId of built.producers.keys()) this.live.get(producerId)?.partitions.delete(built);
    }
    const topic = this.topics.topicNamed(target.topic);
    const sequences = new PartitionSequences(target.topic, target.index, topic.createdAtMs, true);
    sequences.leadership = leadership;
    const rebuild: Rebuild = { leadership, done: Promise.resolve(), waiters: 0 };
    rebuild.done = this.rebuild(target, log, sequences).finally(() => {
      if (this.rebuilds.get(target) === rebuild) this.rebuilds.delete(target);
    });
    // Its failure (the log closed or failed under it) reaches the batches waiting for it, if any.
    rebuild.done.catch(() => undefined);
    if (this.sequences.get(target) === sequences) return sequences; // rebuilt in one slice
    this.rebuilds.set(target, rebuild);
    return null;
  }

  /**
   * Reads `target`'s batch headers from the log start to its end into `sequences`,
   * producerRebuildBatchesPerSlice per event-loop turn, and installs them in the turn that reads the
   * last slice up to the log's end then. Stops (installing nothing) if the leadership changes or the
   * partition stops meanwhile: the next idempotent batch starts again.
   */
  private async rebuild(target: Partition, log: LogStore, sequences: PartitionSequences): Promise<void> {
    let offset = log.logStartOffset;
    let slices = 0;
    for (;;) {
      if (slices > 0) {
        await yieldTurn();
        if (target.replica !== sequences.leadership || target.openLog !== log) return;
      }
      const step = sequences.replaySlice(log, offset, producerRebuildBatchesPerSlice, () => 0);
      slices++;
      this.replayed.batches += step.batches;
      offset = step.next;
      if (offset >= log.logEndOffset || step.batches === 0) break;
    }
    this.replayed.partitions++;
    this.replayed.slices += slices;
    sequences.keepNewest(this.producersMax);
    sequences.dirty = false;
    this.sequences.set(target, sequences);
    for (const [producerId, state] of sequences.producers) {
      this.liveInCluster(producerId, state.epoch).partitions.add(sequences);
    }
  }

  /** Cluster mode: a batch that came while its partition's state is rebuilt, checked once it is (bounded). */
  private afterRebuild(
    target: Partition,
    fields: BatchHeaderFields,
    batch: Uint8Array,
    append: AppendBatch,
    options: ProduceOptions | undefined,
  ): Promise<ProduceResult> {
    const rebuild = this.rebuilds.get(target)!;
    if (rebuild.waiters >= producerRebuildWaitersMax) {
      throw new BackpressureError(
        `${rebuild.waiters} idempotent batches wait for the producer state of ${target.topic}/${target.index} to be rebuilt (producerRebuildWaitersMax): try again`,
      );
    }
    rebuild.waiters++;
    // `batch` is the produce path's own copy: it may wait.
    const waited = rebuild.done.finally(() => {
      rebuild.waiters--;
    });
    return waited.then(() => {
      this.lifecycle.assertOpen();
      // The leadership may have moved meanwhile: NOT_LEADER as for any produce.
      target.replica?.admitProduce(options);
      return this.produceInCluster(target, fields, batch, append, options);
    });
  }

  /** Cluster mode: the producer's entry (made, dropping the idlest one when producersMax are held). */
  private liveInCluster(producerId: number, epoch: number): LiveProducer {
    const now = this.clock.monotonicMs();
    let producer = this.live.get(producerId);
    if (producer === undefined) {
      while (this.live.size >= this.producersMax) {
        this.counts.evicted++;
        this.drop(this.idlest()!);
      }
      producer = { id: producerId, epoch, name: null, lastUsedMs: now, partitions: new Set() };
      this.live.set(producerId, producer);
    }
    producer.epoch = Math.max(producer.epoch, epoch);
    producer.lastUsedMs = now;
    return producer;
  }

  /** Builds the producers and every partition's sequences from the state log and the logs' tails. */
  private load(): void {
    const now = this.clock.monotonicMs();
    const snapshots: Array<[string, SequenceSnapshot]> = [];
    for (const [key, value] of this.store.entries()) {
      if (key === nextIdKey && typeof value === 'number') {
        this.nextId = Math.max(this.nextId, value);
      } else if (key[0] === 'p' && typeof value === 'object' && 'e' in value) {
        const id = Number(key.slice(1));
        if (!Number.isSafeInteger(id) || id < 0) continue;
        const name = value.n ?? null;
        this.live.set(id, { id, epoch: value.e, name, lastUsedMs: now, partitions: new Set() });
        if (name !== null) this.names.set(name, id);
        this.nextId = Math.max(this.nextId, id + 1);
      } else if (key[0] === 's' && typeof value === 'object' && 'u' in value) {
        snapshots.push([key, value]);
      }
    }
    const known = (producerId: number): number | undefined => this.live.get(producerId)?.epoch;
    for (const [key, snapshot] of snapshots) {
      const where = parseSequenceKey(key);
      const topic = where === null ? undefined : this.topicOrUndefined(where.topic);
      const target = where === null ? undefined : topic?.partitions[where.partition];
      if (topic === undefined || target === undefined || topic.createdAtMs !== snapshot.c) {
        // Of a topic deleted (and maybe created again) since: nothing to keep.
        this.store.delete(key).catch(() => undefined);
        continue;
      }
      const log = target.openLog;
      if (log === null) {
        // Stopped for damage: what it holds is unknown until repaired; its producers take any sequence.
        this.sequences.set(
          target,
          new PartitionSequences(topic.name, target.index, topic.createdAtMs, true, true),
        );
        continue;
      }
      const end = log.logEndOffset;
      // A log shorter than its snapshot (an unsynced tail lost): snapshot again before appending.
      const sequences = new PartitionSequences(
        topic.name,
        target.index,
        topic.createdAtMs,
        snapshot.u <= end,
      );
      sequences.restore(snapshot, end, known);
      const replayed = sequences.replay(log, Math.min(snapshot.u, end), known);
      this.replayed.batches += replayed;
      this.replayed.partitions++;
      sequences.dirty = replayed > 0 || snapshot.u !== end;
      this.sequences.set(target, sequences);
      for (const producerId of sequences.producers.keys())
        this.live.get(producerId)?.partitions.add(sequences);
    }
  }

  private topicOrUndefined(name: string): Topic | undefined {
    try {
      return this.topics.topicNamed(name);
    } catch {
      return undefined;
    }
  }
}

/**
 * Appends an idempotent batch and remembers its sequences and offsets for `producer` (both paths,
 * single broker and cluster). The log assigns offsets in the `append` call: written now, or refused
 * before writing; only a written batch is remembered. Once answered, a repeat is answered from the
 * offsets (a failed append keeps its error for the repeat).
 */
function appendRemembered(
  log: { readonly logEndOffset: number },
  sequences: PartitionSequences,
  producer: LiveProducer,
  fields: BatchHeaderFields,
  lastSequence: number,
  batch: Uint8Array,
  append: AppendBatch,
): Promise<ProduceResult> {
  const endBefore = log.logEndOffset;
  const result = append(batch);
  if (log.logEndOffset === endBefore + fields.recordCount) {
    const remembered = {
      baseSequence: fields.baseSequence,
      lastSequence,
      baseOffset: endBefore,
      lastOffset: endBefore + fields.recordCount - 1,
      result: result as Promise<ProduceResult> | null,
    };
    sequences.record(fields.producerId, fields.producerEpoch, remembered);
    producer.partitions.add(sequences);
    result.then(
      () => {
        remembered.result = null;
      },
      () => undefined,
    );
  }
  return result;
}
