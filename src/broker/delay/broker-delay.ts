/**
 * The delay service: delayed messages, from the produce that schedules them to the append that fires
 * them into their topic, exactly once across restarts and crashes (docs/STATE.md, "Delayed messages").
 *
 * Scheduling (`schedule`, called by produce and, at commit, by transactions): the batch's records
 * must each carry `sw-deliver-at`; the batch is appended to `__delay` behind a target record
 * (delay-log.ts), synced first when the topic's durability is `always`, and only then answered and
 * put into the timing wheel (timing-wheel.ts) as (due time, `__delay` offset) pairs. The answer's
 * offsets are the records' offsets in `__delay` (where they wait), marked `delayed: true`.
 *
 * Firing: one clock timer at the wheel's next due time. Due entries go to a firer per target
 * partition, which appends them in rounds (one batch of copies per round, one round in flight):
 * each copy has the key, value and headers of the original (minus `sw-deliver-at`) plus
 * `sw-original-deliver-at` and `sw-delay-ref` (its `__delay` offset), and the fire time as timestamp.
 * Once a round is appended, a fired marker (the refs, and the target's log end as the new fence) is
 * committed to `__delay_state`. Before the first round of a run to a target, a fence (the target's log
 * end) is committed and awaited. So every fired copy without a durable marker lies at or after the
 * target's last durable fence, and recovery after a crash scans only from there for `sw-delay-ref`
 * headers (markers are a prefix of the rounds, since the state log is sequential and rounds of a
 * target are serial). A clean close commits a clean flag last: the next open scans nothing.
 *
 * Dead letters: a due message whose topic is gone (deleted, or deleted and created again, or the
 * partition no longer exists) is appended to `__delay_dead` with `sw-delay-dead-reason` and
 * `sw-delay-target`, through the same firer machinery (its own fence and markers).
 *
 * Memory: the wheel holds 16 bytes per pending message; the firers' queues 24 bytes per due message
 * not yet appended; nothing else grows with the pending count.
 *
 * In a cluster (docs/CLUSTER.md, "Built: delayed messages") the service runs in terms on the leader
 * of its three topics (`joinCluster`, `startTerm`, `stopTerm`): nothing at open, recovery at each
 * term's start with every fence scanned through the term's targets (a `Forwarder`), appends counted
 * once replicated, a synchronous stop; work of an ended term stops at its next step (`generation`).
 *
 * Concurrency: one event loop. `schedule` runs concurrently with firing and with topic admin.
 */
import type { Clock, ClockTimer } from '../../clock.js';
import {
  BackpressureError,
  InvalidBatchError,
  SpillwayError,
  UnknownPartitionError,
  UnknownTopicError,
} from '../../errors.js';
import { BatchAttributes, BatchHeader } from '../../format/batch-header.js';
import { BatchBuilder, RecordCursor } from '../../format/record-batch.js';
import {
  delayAheadMsMax,
  delayFireBatchBytesMax,
  delayFireRecordsMax,
  delayPrefenceMs,
  delayRedirectsMax,
  delayResidentBytesMax,
  delayRetryMs,
  delayRewriteAheadMsMin,
  delayRewriteBytesMax,
  delayRewriteRecordsMax,
  delayRewriteScanRecordsMax,
  delayTransactionKeepMs,
  delayTransactionsKeptMax,
} from '../../limits.js';
import { crc32c as nativeCrc32c } from '../../native.js';
import type { ProduceResult } from '../../protocol/broker-api.js';
import type { DelayService, DelayStats } from '../../protocol/delay-api.js';
import {
  delayDeadReasonHeader,
  delayMsHeader,
  delayRefHeader,
  delayTargetHeader,
  deliverAtHeader,
  originalDeliverAtHeader,
} from '../../protocol/reserved-headers.js';
import type { LogStore } from '../../storage/log-store.js';
import type { DiskReserve } from '../disk-reserve.js';
import type { Lifecycle } from '../lifecycle.js';
import type { Topic } from '../topic.js';
import {
  type DelayTarget,
  dueOf,
  readScheduledBatch,
  type ScheduledBatch,
  scanScheduledBatches,
  TargetBatchEncoder,
} from './delay-log.js';
import { targetKey } from './delay-state.js';
import { type DelayStore, delayDeadTopicName, delayTopicName } from './delay-store.js';
import { type DelayTargets, findFiredCopies, LocalDelayTargets } from './delay-targets.js';
import { TimingWheel } from './timing-wheel.js';

const crc32cOfBytes = (bytes: Uint8Array): number => nativeCrc32c(bytes);
const deadKey = targetKey(delayDeadTopicName, 0);
/** The fence and marker key of the forward rewrite (copies appended to `__delay` itself). */
const rewriteKey = targetKey(delayTopicName, 0);
/** Scheduled batches a dispatch keeps at hand (due entries interleave the batches of the targets). */
const dispatchBatchesCached = 16;
/** Kept transactions from which a new one first drops those finished (at most once a second). */
const transactionsPruneFrom = 1024;
/** Lateness samples kept for the stats (a ring). */
const latenessSamplesMax = 8192;

/** Why a message went to `__delay_dead` (the header text). */
const deadReasons = [
  'the target topic was deleted',
  'the target topic was deleted and created again',
  'the target partition does not exist',
] as const;

export interface BrokerDelayOptions {
  store: DelayStore;
  clock: Clock;
  lifecycle: Lifecycle;
  diskReserve: DiskReserve;
  /** The topic named so, or undefined (deleted or never created). */
  topicNamed: (name: string) => Topic | undefined;
  /** Appends fired copies to a topic partition like a produce (waking its readers). */
  produce: (topic: string, partition: number, batch: Uint8Array) => Promise<ProduceResult>;
  /**
   * Where fired copies go and how their fences are taken (delay-targets.ts). Default: this broker's
   * logs, appended through `produce`.
   */
  targets?: DelayTargets;
  /** Called after an append to one of the delay service's own logs (wakes readers of the internal topic). */
  onInternalAppend?: (log: LogStore) => void;
  /**
   * True once transaction `id` is durably finished (or unknown): transactions recovery will never
   * deliver its batches again. Until then its scheduled batches are kept in `__delay`. `commitMs`:
   * the decision time the batch was scheduled with (a cluster member judges by it: `joinCluster`).
   */
  transactionSettled?: (id: number, commitMs: number) => boolean;
  /**
   * Cluster: transactions whose delayed batches are kept recognisable at once; past it a new one is
   * refused with BACKPRESSURE (`scheduleCommitted`). Default delayTransactionsKeptMax (limits.ts).
   */
  transactionsKeptMax?: number;
}

/** What opening found (broker.openReport). */
export interface DelayRecoveryReport {
  pending: number;
  /** The previous run closed cleanly: no fence scan was needed. */
  cleanStart: boolean;
  /** Fired copies found in target partitions whose markers were lost (now marked, not fired again). */
  copiesFound: number;
  /** Bytes of target partitions scanned for them. */
  scannedBytes: number;
  /** Batches of `__delay` out of place (a target record without its batch: an unanswered produce). */
  skippedBatches: number;
  /** Messages the forward rewrite had copied whose markers were lost (now marked at their old place). */
  movedFound: number;
}

/** What recovery prepared for the service. */
export interface RecoveredDelay {
  wheel: TimingWheel;
  report: DelayRecoveryReport;
  /** Batches of transactions not durably finished, found in `__delay`: id -> index -> base offset. */
  transactionBatches: Map<number, KeptTransaction<number>>;
}

/** A transaction's delayed batches kept recognisable: its decision time, index -> batch. */
interface KeptTransaction<Batch> {
  commitMs: number;
  indexes: Map<number, Batch>;
}

/** A committed transaction's delayed batch: being stored (a promise) or stored (at `base`). */
type TransactionBatch = number | Promise<ProduceResult>;

/** The firing queue of one target partition (or of the dead letters). */
interface Firer {
  key: string;
  topic: string;
  partition: number;
  /** Flat [ref, dueMs, deadReason (-1: none)] triples from `head`. */
  queue: number[];
  head: number;
  running: boolean;
  fenced: boolean;
  /** The fence commit under way (started early for messages due soon), or null. */
  fencing: Promise<void> | null;
  retryTimer: ClockTimer | null;
  /** The batch of the last entry built into a round and a cursor at that entry (see buildRound). */
  batch: ScheduledBatch | null;
  cursor: RecordCursor | null;
}

/**
 * A cluster member's delay service (service-leadership.ts): the in-sync replicas of each of its
 * internal topics, awaited before an append to it counts.
 */
export interface DelayReplication {
  /** Resolves once the in-sync replicas of `__delay` hold everything before `endOffset`. */
  delay(endOffset: number): Promise<void>;
  /** The same for `__delay_dead`. */
  dead(endOffset: number): Promise<void>;
  /** The same for `__delay_state` (StateLog.replicate). */
  state(endOffset: number): Promise<void>;
}

/** One term's targets in a cluster (forwarded-delay-targets.ts): closed when the term ends. */
export interface TermDelayTargets extends DelayTargets {
  close(why: string): void;
}

export class BrokerDelay implements DelayService {
  /** What the last recovery found (at open; in a cluster, at the start of the running term). */
  recovery: DelayRecoveryReport;
  /**
   * Called at each step of a rewrite pass: 'copied' once the copies are durable (before the marker),
   * 'marked' once the marker is. For crash tests (a child kills itself there); nothing else.
   */
  onRewriteStep: ((step: 'copied' | 'marked') => void) | null = null;
  private readonly store: DelayStore;
  private readonly clock: Clock;
  private readonly lifecycle: Lifecycle;
  private readonly diskReserve: DiskReserve;
  private readonly topicNamed: (name: string) => Topic | undefined;
  private targets: DelayTargets;
  /** Cluster member: the replication waits (null: a single broker). */
  private replication: DelayReplication | null = null;
  /** Bumped at each term's stop and start: work of an earlier term sees it and ends. */
  private generation = 0;
  /** Cluster member: delayed batches go there while no term runs here. */
  private elsewhere:
    | ((topic: string, partition: number, batch: Uint8Array) => Promise<ProduceResult>)
    | null = null;
  /** Cluster member: a term was started here and not stopped (recovering or serving). */
  private inTerm = false;
  private readonly onInternalAppend: (log: LogStore) => void;
  private wheel: TimingWheel;
  private readonly targetEncoder = new TargetBatchEncoder();
  private readonly fireBuilder = new BatchBuilder({ maxBatchBytes: delayFireBatchBytesMax * 2 });
  private firers = new Map<string, Firer>();
  private readonly running = new Set<Promise<void>>();
  private timer: ClockTimer | null = null;
  private timerDueMs = Number.POSITIVE_INFINITY;
  private stopped = false;
  private failure: unknown = null;
  private cleanupScheduled = false;
  private readonly counters = { scheduled: 0, fired: 0, deadLettered: 0 };
  private readonly lateness = new Float64Array(latenessSamplesMax);
  private latenessCount = 0;
  /** Messages handed to firers and not appended yet (part of `pending`). */
  private queued = 0;
  private bytesSinceRelease = 0;
  private transactionSettled: (id: number, commitMs: number) => boolean;
  private readonly transactionsKeptMax: number;
  /** When the transaction batches were last pruned (at most once a second past 1024 of them). */
  private transactionsPrunedAtMs = Number.NEGATIVE_INFINITY;
  /** Delayed batches of transactions not known to be durably finished: id -> index -> batch. */
  private transactionBatches: Map<number, KeptTransaction<TransactionBatch>>;
  /** Rewrite: wheel ref -> where the message is now, and back (moved messages only). */
  private redirects = new Map<number, number>();
  private redirectedFrom = new Map<number, number>();
  /** Rewrite: wheel refs of messages being moved; their due entries wait in `deferred`. */
  private moving = new Set<number>();
  private deferred: number[] = [];
  private rewriting = false;
  private rewriteFenced = false;
  private readonly rewriteCounters = { passes: 0, moved: 0 };

  /** Starts firing what `recover` loaded: what came due meanwhile fires at once. */
  constructor(options: BrokerDelayOptions, recovered: RecoveredDelay) {
    this.store = options.store;
    this.clock = options.clock;
    this.lifecycle = options.lifecycle;
    this.diskReserve = options.diskReserve;
    this.topicNamed = options.topicNamed;
    this.targets = options.targets ?? new LocalDelayTargets(options.topicNamed, options.produce);
    this.onInternalAppend = options.onInternalAppend ?? (() => undefined);
    this.transactionSettled = options.transactionSettled ?? (() => true);
    this.transactionsKeptMax = options.transactionsKeptMax ?? delayTransactionsKeptMax;
    this.transactionBatches = recovered.transactionBatches;
    this.wheel = recovered.wheel;
    this.recovery = recovered.report;
    this.arm();
  }

  /**
   * A cluster member at open: nothing recovered (no scan, no write: a term of the service recovers
   * once this broker leads the delay topics, `startTerm`).
   */
  static notRecovered(clock: Clock): RecoveredDelay {
    return {
      wheel: new TimingWheel(clock.nowMs()),
      report: {
        pending: 0,
        cleanStart: false,
        copiesFound: 0,
        scannedBytes: 0,
        skippedBatches: 0,
        movedFound: 0,
      },
      transactionBatches: new Map(),
    };
  }

  /**
   * Recovery, before the broker serves: marks the fired copies a crash left without markers (found
   * from the fences on), then loads every unhandled message of `__delay` into a new wheel.
   */
  static async recover(
    store: DelayStore,
    clock: Clock,
    topicNamed: (name: string) => Topic | undefined,
    transactionSettled: (id: number, commitMs: number) => boolean = () => true,
    /** Where the fired copies are looked for (default: this broker's logs). */
    targets: DelayTargets = new LocalDelayTargets(topicNamed, null),
    /** Scan from the fences even after a clean close (a cluster term: another broker may have fired). */
    forceScan = false,
  ): Promise<RecoveredDelay> {
    const machine = store.machine;
    let copiesFound = 0;
    let scannedBytes = 0;
    let movedFound = 0;
    const cleanStart = machine.closedCleanly && !forceScan;
    if (!cleanStart) {
      for (const [key, fence] of [...machine.fences]) {
        if (key === rewriteKey) {
          movedFound += await markMoved(store, fence);
          continue;
        }
        const found = await findFiredAt(store, targets, key, fence);
        if (found === null) continue;
        scannedBytes += found.scannedBytes;
        const triples: number[] = [];
        for (const ref of found.refs) {
          const batch = readScheduledBatch(store.delay.log, ref);
          if (batch === null || machine.isHandled(ref, batch.base)) continue;
          triples.push(ref, batch.base, batch.count);
        }
        if (triples.length > 0) {
          copiesFound += triples.length / 3;
          await store.state.commit({ t: 'f', key, r: triples, e: found.endOffset });
        }
      }
    }
    const wheel = new TimingWheel(clock.nowMs());
    const transactionBatches = new Map<number, KeptTransaction<number>>();
    // The scan below touches the whole log: release its pages from the resident set afterwards.
    const orphans: number[] = [];
    const skippedBatches = scanScheduledBatches(
      store.delay.log,
      store.delay.log.logStartOffset,
      (batch) => {
        const stamp = transactionStampOf(batch.bytes);
        if (stamp !== null && !transactionSettled(stamp.id, batch.target.baseMs ?? 0)) {
          let kept = transactionBatches.get(stamp.id);
          if (kept === undefined) {
            kept = { commitMs: batch.target.baseMs ?? 0, indexes: new Map() };
            transactionBatches.set(stamp.id, kept);
          }
          kept.indexes.set(stamp.index, batch.base);
        }
        if (machine.isDoneRange(batch.base - 1, batch.base + batch.count)) return;
        const cursor = new RecordCursor(batch.bytes, 0);
        while (cursor.next()) {
          const ref = batch.base + cursor.index;
          if (machine.isHandled(ref, batch.base)) continue;
          wheel.add(dueOf(cursor, batch.target.baseMs) ?? 0, ref);
        }
      },
      (offset) => {
        if (!machine.isDoneRange(offset, offset + 1)) orphans.push(offset);
      },
    );
    // Not a torn tail only: once later pairs follow, an orphan would hold its segment forever.
    if (orphans.length > 0) await store.state.commit({ t: 'x', o: orphans });
    store.delay.log.releaseResidentPages();
    return {
      wheel,
      report: { pending: wheel.size, cleanStart, copiesFound, scannedBytes, skippedBatches, movedFound },
      transactionBatches,
    };
  }

  /**
   * Why delayed produces are refused now, or null (served). A cluster member: NOT_COORDINATOR while
   * no term runs here or its recovery runs (`stopTerm`, `startTerm`); a single broker: null.
   */
  refusal: SpillwayError | null = null;

  /**
   * Makes this a cluster member's service (service-leadership.ts), before it serves: stopped (delayed
   * produces refused with NOT_COORDINATOR) until `startTerm`; the state log's writes are answered
   * once `replication.state` resolves, and `__delay` / `__delay_dead` appends count once replicated.
   * Opened without recovery (the engine skips it for a cluster member): nothing was written.
   */
  joinCluster(
    replication: DelayReplication,
    /** Takes a delayed batch to the broker running the service (DELAY_SCHEDULE) while it does not run here. */
    elsewhere: (topic: string, partition: number, batch: Uint8Array) => Promise<ProduceResult>,
  ): void {
    this.replication = replication;
    this.elsewhere = elsewhere;
    // The coordinator runs on another broker: whether a transaction is finished is not known here.
    // Its delayed batches are kept recognisable (a resend after a coordinator's failover is answered
    // with the first result) for delayTransactionKeepMs after the commit's decision.
    this.transactionSettled = (_id, commitMs) => this.clock.nowMs() - commitMs > delayTransactionKeepMs;
    this.store.state.replicate = replication.state;
    this.stopTerm('waiting for the cluster to assign __delay, __delay_state, __delay_dead');
  }

  /**
   * Stops the running term at once (this broker no longer leads the delay topics): timers and
   * firers stop, the state log refuses every later write (nothing more is appended to logs the
   * replication follower is about to write), the term's targets close (its forwards reject), and
   * delayed produces fail with NOT_COORDINATOR. Work of the term still under way ends at its next
   * step without writing. Idempotent.
   */
  stopTerm(why: string): void {
    this.generation++;
    this.inTerm = false;
    const notHere = new SpillwayError('NOT_COORDINATOR', `delayed messages are not served here: ${why}`);
    this.refusal = notHere;
    this.stopped = true;
    this.clock.clearTimer(this.timer);
    this.timer = null;
    this.timerDueMs = Number.POSITIVE_INFINITY;
    for (const firer of this.firers.values()) {
      this.clock.clearTimer(firer.retryTimer);
      firer.retryTimer = null;
    }
    this.store.state.detach(notHere);
    (this.targets as Partial<TermDelayTargets>).close?.(why);
  }

  /**
   * Starts a term (this broker leads the delay topics): the state log is recovered again from its
   * partition log as replication left it, then, in the background, recovery runs as at a broker's
   * open with each fence scan done through `targets` (the term's forwarder), and firing starts.
   * Until recovery ends delayed produces fail with NOT_COORDINATOR (retriable); a failed recovery is
   * tried again after delayRetryMs while the term lasts. Returns at once (a recovery waiting on a
   * dead target's leader must not hold up the next leadership change).
   */
  startTerm(targets: TermDelayTargets): void {
    this.stopTerm('a new term starts');
    const generation = ++this.generation;
    this.inTerm = true;
    this.targets = targets;
    this.refusal = new SpillwayError('NOT_COORDINATOR', 'delayed messages: the delay service is recovering');
    const attempt = (): void => {
      if (generation !== this.generation) return;
      this.store.reopen();
      const recovering = BrokerDelay.recover(
        this.store,
        this.clock,
        this.topicNamed,
        this.transactionSettled,
        targets,
        true,
      ).then(
        (recovered) => {
          if (generation !== this.generation) return;
          this.install(recovered);
        },
        (error: unknown) => {
          if (generation !== this.generation) return;
          process.emitWarning(`delay service recovery failed (tried again): ${String(error)}`);
          this.clock.setTimeout(attempt, delayRetryMs, { unref: true });
        },
      );
      this.running.add(recovering);
      recovering.finally(() => this.running.delete(recovering));
    };
    attempt();
  }

  /** Serves a term from what recovery loaded (a fresh wheel, firers, rewrite state). */
  private install(recovered: RecoveredDelay): void {
    this.wheel = recovered.wheel;
    this.recovery = recovered.report;
    this.transactionBatches = recovered.transactionBatches;
    this.firers = new Map();
    this.redirects = new Map();
    this.redirectedFrom = new Map();
    this.moving = new Set();
    this.deferred = [];
    this.rewriteFenced = false;
    this.queued = 0;
    this.failure = null;
    this.stopped = false;
    this.refusal = null;
    this.arm();
  }

  /** NOT_COORDINATOR when the term that began a step (`generation`) ended meanwhile. */
  private assertTerm(generation: number): void {
    if (generation !== this.generation) {
      throw new SpillwayError('NOT_COORDINATOR', 'delayed messages: the delay service moved meanwhile');
    }
  }

  /**
   * Schedules the delayed batch `batch` (validated by the caller: CRC, structure, the `delayed`
   * attribute) for `topic`/`partition` (which exist): checks every record's `sw-deliver-at`, stores
   * the batch durably under the topic's durability, then puts its records into the wheel. The one
   * entry point for delayed batches (produce now; transactions at commit, so delays count from it).
   */
  async schedule(topic: string, partition: number, batch: Uint8Array): Promise<ProduceResult> {
    this.lifecycle.assertOpen();
    // A cluster member not running the service: the broker that does takes it (the batch is ours).
    if (this.elsewhere !== null && !this.inTerm) return this.elsewhere(topic, partition, batch);
    return this.scheduleHere(topic, partition, batch);
  }

  /**
   * `schedule` on this broker's service only (DELAY_SCHEDULE from another broker: never passed on);
   * NOT_COORDINATOR while no term of it runs here.
   */
  async scheduleHere(topic: string, partition: number, batch: Uint8Array): Promise<ProduceResult> {
    this.lifecycle.assertOpen();
    if (this.refusal !== null) throw this.refusal;
    return this.storeBatch(topic, partition, batch, this.clock.nowMs(), true);
  }

  /**
   * `scheduleCommitted` on this broker's service only (DELAY_SCHEDULE_COMMITTED from a coordinator in
   * a cluster); NOT_COORDINATOR while no term of it runs here or its recovery (which rebuilds the
   * (id, index) map from `__delay`) is under way.
   */
  scheduleCommittedHere(
    topic: string,
    partition: number,
    batch: Uint8Array,
    commitMs: number,
  ): Promise<ProduceResult> {
    try {
      this.lifecycle.assertOpen();
      if (this.refusal !== null) throw this.refusal;
    } catch (error) {
      return Promise.reject(error);
    }
    return this.scheduleCommitted(topic, partition, batch, commitMs);
  }

  /**
   * Schedules the delayed batch of a committed transaction, stamped by the transactions service
   * (attribute transactional, producerId = the transaction id, baseSequence = the batch's index in
   * it): `sw-delay-ms` counts from `commitMs` (the decision time recorded with the commit, the same
   * when recovery delivers it again), `sw-deliver-at` stays absolute. Idempotent per (transaction id,
   * index): a batch stored already, or being stored, is not stored again (transactions recovery
   * delivers the halves of an unfinished commit again). The batch was checked when sent (TXN_SEND,
   * `checkDelayedBatch`): a record without a valid due time fires at commit time.
   */
  scheduleCommitted(
    topic: string,
    partition: number,
    batch: Uint8Array,
    commitMs: number,
  ): Promise<ProduceResult> {
    const stamp = transactionStampOf(batch);
    if (stamp === null) {
      return Promise.reject(new InvalidBatchError('a committed delayed batch carries its transaction stamp'));
    }
    let indexes = this.transactionBatches.get(stamp.id)?.indexes;
    const known = indexes?.get(stamp.index);
    if (known !== undefined) {
      if (typeof known !== 'number') return known;
      const durability = this.targets.topic(topic)?.durability ?? 'interval';
      return Promise.resolve({ partition, baseOffset: known, lastOffset: known, durability, delayed: true });
    }
    if (indexes === undefined) {
      // A new transaction only (a resend of a kept one is answered above, whatever the count).
      if (this.transactionBatches.size >= Math.min(transactionsPruneFrom, this.transactionsKeptMax)) {
        this.pruneTransactionBatches();
      }
      // In a cluster entries are kept for a time (joinCluster): bounded in count too. On one broker an
      // entry goes once its transaction is durably finished.
      if (this.replication !== null && this.transactionBatches.size >= this.transactionsKeptMax) {
        return Promise.reject(
          new BackpressureError(
            `${this.transactionBatches.size} transactions with delayed messages are kept recognisable for ${delayTransactionKeepMs} ms after their commit (at most ${this.transactionsKeptMax}): retry once older ones expire`,
          ),
        );
      }
      indexes = new Map<number, TransactionBatch>();
      this.transactionBatches.set(stamp.id, { commitMs, indexes });
    }
    const stored = this.storeBatch(topic, partition, batch, commitMs, false);
    indexes.set(stamp.index, stored);
    stored.then(
      (result) => {
        if (indexes.get(stamp.index) === stored) indexes.set(stamp.index, result.baseOffset);
      },
      () => {
        if (indexes.get(stamp.index) === stored) indexes.delete(stamp.index);
      },
    );
    return stored;
  }

  /**
   * Stores `batch` in `__delay` and puts its records into the wheel; `baseMs`: what `sw-delay-ms`
   * counts from; `strict`: refuse records without a valid due time or due too far ahead (a produce),
   * or fire them at `baseMs` (a commit, whose sends were checked).
   */
  private async storeBatch(
    topic: string,
    partition: number,
    batch: Uint8Array,
    baseMs: number,
    strict: boolean,
  ): Promise<ProduceResult> {
    if (this.failure !== null) throw this.failure;
    const owner = this.targets.topic(topic);
    if (owner === undefined) throw new UnknownTopicError(topic);
    if (partition >= owner.partitionCount)
      throw new UnknownPartitionError(topic, partition, owner.partitionCount);
    const nowMs = this.clock.nowMs();
    const cursor = new RecordCursor(batch, 0);
    if ((batch[BatchHeader.attributes]! & BatchAttributes.delayed) === 0) {
      throw new InvalidBatchError('the delay service takes only batches with the delayed attribute');
    }
    const dues = new Float64Array(cursor.recordCount);
    let soonest = Number.POSITIVE_INFINITY;
    while (cursor.next()) {
      let due = dueOf(cursor, baseMs);
      if (strict) checkDue(cursor.index, due, nowMs);
      due ??= baseMs;
      dues[cursor.index] = due;
      if (due < soonest) soonest = due;
    }
    const target: DelayTarget = { topic, partition, createdAtMs: owner.createdAtMs, baseMs };
    const targetBatch = this.targetEncoder.encode(target, nowMs);
    this.diskReserve.admit(batch.length + targetBatch.length, `delayed produce to ${topic}/${partition}`);
    const log = this.store.delay.log;
    const generation = this.generation;
    this.lifecycle.begin();
    try {
      // Both appends take their offsets now, back to back: nothing can land between them.
      const targetAppended = log.append(targetBatch);
      const appended = log.append(batch);
      await targetAppended;
      const { baseOffset, lastOffset } = await appended;
      const durability = owner.durability;
      if (durability === 'always') await log.flush();
      this.onInternalAppend(log);
      if (this.replication !== null) {
        this.assertTerm(generation);
        await this.replication.delay(lastOffset + 1);
      }
      this.assertTerm(generation);
      this.bytesSinceRelease += batch.length + targetBatch.length;
      if (this.bytesSinceRelease >= delayResidentBytesMax) {
        // The written pages are not read again until due: out of the resident set (page cache keeps them).
        this.bytesSinceRelease = 0;
        this.store.delay.log.releaseResidentPages();
      }
      if (soonest - this.clock.nowMs() < delayPrefenceMs) {
        const firer = this.firerFor(targetKey(topic, partition), topic, partition);
        if (!firer.fenced)
          this.fence(firer).catch((error: unknown) => {
            if (generation === this.generation) this.fail(error);
          });
      }
      for (let index = 0; index < dues.length; index++) this.wheel.add(dues[index]!, baseOffset + index);
      this.counters.scheduled += dues.length;
      this.armAt(soonest);
      return { partition, baseOffset, lastOffset, durability, delayed: true };
    } finally {
      this.lifecycle.settled();
    }
  }

  /**
   * The topic was deleted: its firers' fences belong to the old partitions, so a topic created again
   * under the name gets a new fence before its first round (what is queued for it goes to the dead
   * letters when it comes to be appended).
   */
  topicDeleted(topic: string): void {
    for (const firer of this.firers.values()) {
      if (firer.topic !== topic || firer.key === deadKey) continue;
      firer.fenced = false;
      firer.fencing = null;
    }
  }

  /** Forward rewrite passes that moved something, and the messages moved, since open. */
  get rewriteStats(): { passes: number; moved: number; redirects: number } {
    return { ...this.rewriteCounters, redirects: this.redirects.size };
  }

  stats(): DelayStats {
    const nowMs = this.clock.nowMs();
    const horizons = this.wheel.horizonCounts(nowMs);
    const samples = Math.min(this.latenessCount, latenessSamplesMax);
    const sorted = this.lateness.slice(0, samples).sort();
    const percentile = (p: number): number =>
      samples === 0 ? 0 : sorted[Math.min(samples - 1, Math.floor(p * samples))]!;
    const next = this.wheel.nextDueMs();
    let firerNext = Number.POSITIVE_INFINITY;
    for (const firer of this.firers.values()) {
      for (let i = firer.head; i < firer.queue.length; i += 3)
        firerNext = Math.min(firerNext, firer.queue[i + 1]!);
    }
    const nextDue = Math.min(next ?? Number.POSITIVE_INFINITY, firerNext);
    return {
      pending: this.wheel.size + this.queued,
      withinMinute: horizons.withinMinute + this.queued,
      withinHour: horizons.withinHour,
      withinDay: horizons.withinDay,
      later: horizons.later,
      nextDueMs: nextDue === Number.POSITIVE_INFINITY ? null : nextDue,
      scheduled: this.counters.scheduled,
      fired: this.counters.fired,
      deadLettered: this.counters.deadLettered,
      lateness: {
        samples,
        p50Ms: percentile(0.5),
        p99Ms: percentile(0.99),
        maxMs: samples === 0 ? 0 : sorted[samples - 1]!,
      },
      wheelBytes: this.wheel.capacityBytes,
      delayLogBytes: this.store.delay.log.sizeBytes,
    };
  }

  /**
   * Stops firing: lets the rounds being appended finish and their markers commit, then commits the
   * clean-close flag (the next open scans nothing). Messages due and not appended fire after restart.
   */
  async stop(): Promise<void> {
    if (this.replication !== null) {
      this.stopTerm('the broker is closing');
      while (this.running.size > 0) await Promise.allSettled([...this.running]);
      return;
    }
    if (this.stopped) return;
    this.stopped = true;
    this.clock.clearTimer(this.timer);
    this.timer = null;
    for (const firer of this.firers.values()) {
      this.clock.clearTimer(firer.retryTimer);
      firer.retryTimer = null;
    }
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
    const machine = this.store.machine;
    // Only when a scan would have something to do (a fence exists and the flag is not set already).
    // Not in a cluster: a term's recovery always scans (another broker may have fired meanwhile).
    if (
      this.replication === null &&
      this.failure === null &&
      !machine.closedCleanly &&
      machine.fences.size > 0
    ) {
      await this.store.state.commit({ t: 'c', v: true }).catch(() => undefined);
    }
  }

  /** Sets the timer for the wheel's next due time (sooner than the one set, if any). */
  private arm(): void {
    const next = this.wheel.nextDueMs();
    if (next !== null) this.armAt(next);
  }

  /** Sets the timer for `next` unless one is set for that time or sooner. */
  private armAt(next: number): void {
    if (this.stopped || next >= this.timerDueMs) return;
    this.clock.clearTimer(this.timer);
    const nowMs = this.clock.nowMs();
    // Timers hold at most ~24.8 days: wake up then and look again.
    const waitMs = Math.min(Math.max(0, next - nowMs), 2 ** 31 - 1);
    this.timerDueMs = next;
    if (waitMs === 0) {
      // Due already (also with a manual clock, whose timers run only when it moves): next turn.
      this.timer = null;
      setImmediate(() => {
        if (this.timerDueMs === next) this.tick();
      });
      return;
    }
    this.timer = this.clock.setTimeout(() => this.tick(), waitMs, { unref: true });
  }

  private tick(): void {
    this.timer = null;
    this.timerDueMs = Number.POSITIVE_INFINITY;
    if (this.stopped) return;
    const due: number[] = [];
    this.wheel.advance(this.clock.nowMs(), (dueMs, ref) => {
      due.push(ref, dueMs);
    });
    if (due.length > 0) this.dispatch(due);
    this.arm();
  }

  /**
   * Hands due [wheel ref, dueMs] pairs to the firers of their targets (a moved message's wheel ref
   * is redirected to where it is now; one being moved waits for the move to end).
   */
  private dispatch(due: number[]): void {
    let batch: ScheduledBatch | null = null;
    // Due entries interleave the batches of several targets: the batches met in this call, so that
    // each is read (and its target decoded) once, not at every switch. Valid during this call only.
    const recent: ScheduledBatch[] = [];
    const touched = new Set<Firer>();
    const redirected = this.redirects.size > 0 || this.moving.size > 0;
    for (let i = 0; i < due.length; i += 2) {
      let ref = due[i]!;
      const dueMs = due[i + 1]!;
      if (redirected) {
        if (this.moving.has(ref)) {
          this.deferred.push(ref, dueMs);
          continue;
        }
        const now = this.redirects.get(ref);
        if (now !== undefined) {
          this.redirects.delete(ref);
          this.redirectedFrom.delete(now);
          ref = now;
        }
      }
      if (batch === null || ref < batch.base || ref >= batch.base + batch.count) {
        batch = null;
        for (let r = recent.length - 1; r >= 0; r--) {
          const candidate = recent[r]!;
          if (ref >= candidate.base && ref < candidate.base + candidate.count) {
            batch = candidate;
            break;
          }
        }
        if (batch === null) {
          batch = readScheduledBatch(this.store.delay.log, ref);
          if (batch !== null) {
            if (recent.length >= dispatchBatchesCached) recent.shift();
            recent.push(batch);
          }
        }
      }
      if (batch === null) {
        // Only damage to `__delay` can do this (the log is kept while anything in it is pending).
        process.emitWarning(`delayed message at __delay offset ${ref} could not be read: not fired`);
        continue;
      }
      const { target } = batch;
      const topic = this.targets.topic(target.topic);
      let reason = -1;
      if (topic === undefined) reason = 0;
      else if (topic.createdAtMs !== target.createdAtMs) reason = 1;
      else if (target.partition >= topic.partitionCount) reason = 2;
      const firer =
        reason < 0
          ? this.firerFor(targetKey(target.topic, target.partition), target.topic, target.partition)
          : this.firerFor(deadKey, delayDeadTopicName, 0);
      firer.queue.push(ref, dueMs, reason);
      this.queued++;
      touched.add(firer);
    }
    for (const firer of touched) this.run(firer);
  }

  private firerFor(key: string, topic: string, partition: number): Firer {
    let firer = this.firers.get(key);
    if (firer === undefined) {
      firer = {
        key,
        topic,
        partition,
        queue: [],
        head: 0,
        running: false,
        fenced: false,
        fencing: null,
        retryTimer: null,
        batch: null,
        cursor: null,
      };
      this.firers.set(key, firer);
    }
    return firer;
  }

  private run(firer: Firer): void {
    if (firer.running || this.stopped || firer.retryTimer !== null) return;
    firer.running = true;
    const done = this.fire(firer).finally(() => {
      firer.running = false;
      this.running.delete(done);
    });
    this.running.add(done);
  }

  /**
   * Commits the firer's first fence of this run (the target's log end now: every copy appended later
   * lies at or after it). Started early by `schedule` for messages due within delayPrefenceMs, so
   * that their first round does not wait for the fdatasync.
   */
  private fence(firer: Firer): Promise<void> {
    if (firer.fencing === null) {
      const offset =
        firer.key === deadKey
          ? this.store.dead.log.logEndOffset
          : this.targets.fenceOffset(firer.topic, firer.partition);
      // A local offset is committed in this turn (nothing appended meanwhile can precede it).
      const committed =
        typeof offset === 'number'
          ? this.store.state.commit({ t: 'e', key: firer.key, e: offset })
          : offset.then((e) => this.store.state.commit({ t: 'e', key: firer.key, e }));
      firer.fencing = committed.then(
        () => {
          firer.fenced = true;
        },
        (error: unknown) => {
          firer.fencing = null;
          throw error;
        },
      );
    }
    return firer.fencing;
  }

  /** Appends the firer's queue in rounds until it is empty (or the service stops). */
  private async fire(firer: Firer): Promise<void> {
    const generation = this.generation;
    while (firer.head < firer.queue.length && !this.stopped && this.failure === null) {
      if (firer.key !== deadKey && !this.targets.exists(firer.topic, firer.partition)) {
        this.redirectToDead(firer, firer.head, firer.queue.length, 0);
        continue;
      }
      if (!firer.fenced) {
        try {
          await this.fence(firer);
        } catch (error) {
          if (generation === this.generation) this.fail(error);
          return;
        }
        if (generation !== this.generation) return;
      }
      const start = firer.head;
      const { bytes, triples, end } = this.buildRound(firer);
      if (triples.length === 0) {
        this.queued -= (end - start) / 3;
        firer.head = end;
        continue;
      }
      let fence: number;
      try {
        if (firer.key === deadKey) {
          await this.store.dead.log.append(bytes);
          this.onInternalAppend(this.store.dead.log);
          fence = this.store.dead.log.logEndOffset;
          if (this.replication !== null) {
            this.assertTerm(generation);
            await this.replication.dead(fence);
          }
        } else {
          fence = await this.targets.append(firer.topic, firer.partition, bytes);
        }
      } catch (error) {
        if (generation !== this.generation) return;
        const code = error instanceof SpillwayError ? error.code : '';
        if (code === 'UNKNOWN_TOPIC' || code === 'UNKNOWN_PARTITION') {
          // Deleted while due: what this round held goes to the dead letters.
          this.redirectToDead(firer, start, end, code === 'UNKNOWN_TOPIC' ? 0 : 2);
          continue;
        }
        if (this.stopped || code === 'SERVICE_FENCED') return;
        // Retriable or not, nothing was appended: the round stays at the head, tried again later.
        process.emitWarning(
          `delayed messages for ${firer.topic}/${firer.partition} not fired yet: ${(error as Error).message}`,
        );
        firer.retryTimer = this.clock.setTimeout(
          () => {
            firer.retryTimer = null;
            this.run(firer);
          },
          delayRetryMs,
          { unref: true },
        );
        return;
      }
      if (generation !== this.generation) return;
      firer.head = end;
      const count = triples.length / 3;
      this.queued -= (end - start) / 3;
      const nowMs = this.clock.nowMs();
      for (let i = start; i < end; i += 3) {
        this.lateness[this.latenessCount++ % latenessSamplesMax] = nowMs - firer.queue[i + 1]!;
      }
      if (firer.key === deadKey) this.counters.deadLettered += count;
      else this.counters.fired += count;
      if (firer.head === firer.queue.length) {
        firer.queue = [];
        firer.head = 0;
      } else if (firer.head > 3 * 65_536) {
        firer.queue = firer.queue.slice(firer.head);
        firer.head = 0;
      }
      this.store.state.commit({ t: 'f', key: firer.key, r: triples, e: fence }).then(
        () => this.scheduleCleanup(),
        (error: unknown) => {
          if (generation === this.generation) this.fail(error);
        },
      );
    }
  }

  /**
   * The batch of fired copies for the firer's next entries (at most delayFireRecordsMax records and
   * about delayFireBatchBytesMax bytes; one larger record travels alone), with their marker triples.
   */
  private buildRound(firer: Firer): { bytes: Uint8Array; triples: number[]; end: number } {
    const builder = this.fireBuilder;
    builder.reset();
    const nowMs = this.clock.nowMs();
    const triples: number[] = [];
    const queue = firer.queue;
    // The firer's batch and cursor from its last round, used when its next entry is in that batch
    // (then the batch has a message not handled, so its segment is not deleted; a cached batch whose
    // messages are all handled is never read again: no new entry falls in its range). Entries of one
    // batch come in record order, so a cursor walks each batch once, not from its start every round.
    let batch: ScheduledBatch | null = firer.batch;
    let cursor: RecordCursor | null = firer.cursor;
    let index = firer.head;
    for (; index < queue.length && builder.recordCount < delayFireRecordsMax; index += 3) {
      const ref = queue[index]!;
      if (batch === null || ref < batch.base || ref >= batch.base + batch.count) {
        batch = readScheduledBatch(this.store.delay.log, ref);
        cursor = null;
        if (batch === null) continue; // damage: warned at dispatch, cannot happen here otherwise
      }
      if (cursor === null || cursor.index > ref - batch.base) cursor = new RecordCursor(batch.bytes, 0);
      while (cursor.index < ref - batch.base && cursor.next()) {}
      const headers: Array<[string, Uint8Array | string | null]> = [];
      for (const header of cursor.headers()) {
        if (header[0] !== deliverAtHeader && header[0] !== delayMsHeader) headers.push(header);
      }
      headers.push([originalDeliverAtHeader, String(queue[index + 1]!)]);
      headers.push([delayRefHeader, String(ref)]);
      const reason = queue[index + 2]!;
      if (reason >= 0) {
        headers.push([delayDeadReasonHeader, deadReasons[reason]!]);
        headers.push([delayTargetHeader, `${batch.target.topic}/${batch.target.partition}`]);
      }
      const record = { key: cursor.key(), value: cursor.value(), headers, timestamp: nowMs };
      if (builder.recordCount > 0 && builder.sizeBytes >= delayFireBatchBytesMax) break;
      if (!builder.append(record)) break;
      triples.push(ref, batch.base, batch.count);
    }
    firer.batch = batch;
    firer.cursor = cursor;
    return { bytes: builder.finishCopy({ crc32c: crc32cOfBytes }), triples, end: index };
  }

  /** Moves the firer's entries [from, to) to the dead letters with `reason`. */
  private redirectToDead(firer: Firer, from: number, to: number, reason: number): void {
    const dead = this.firerFor(deadKey, delayDeadTopicName, 0);
    for (let i = from; i < to; i += 3) dead.queue.push(firer.queue[i]!, firer.queue[i + 1]!, reason);
    firer.head = to;
    if (firer.head === firer.queue.length) {
      firer.queue = [];
      firer.head = 0;
    }
    this.run(dead);
  }

  /** Deletes `__delay` segments whose messages are all handled (at most once a second). */
  private scheduleCleanup(): void {
    if (this.cleanupScheduled || this.stopped) return;
    this.cleanupScheduled = true;
    this.clock.setTimeout(
      () => {
        this.cleanupScheduled = false;
        if (this.stopped || this.failure !== null) return;
        const log = this.store.delay.log;
        const before = log.logStartOffset;
        const firstNeeded = Math.min(this.store.machine.firstNotDone(before), this.transactionFloor());
        if (firstNeeded > before) {
          try {
            const { logStartOffset } = log.deleteBelow(firstNeeded);
            if (logStartOffset > before) {
              this.store.state
                .commit({ t: 'L', o: logStartOffset })
                .catch((error: unknown) => this.fail(error));
            }
            // A sealed segment wholly handled is still there (deleteBelow defers while the log's
            // checkpoint is being written): look again, or nothing would when no message comes.
            if (log.segmentCount > 1 && log.segmentBaseOffsets()[1]! <= firstNeeded) this.scheduleCleanup();
          } catch (error) {
            process.emitWarning(`deleting handled __delay segments failed (retried later): ${String(error)}`);
          }
        }
        // After the deletion: the first segment kept is the one a rewrite pass would free (judged
        // before it, a pass would wait for the next cleanup, which no message may come to start).
        if (log.segmentCount > 1 && firstNeeded < log.segmentBaseOffsets()[1]!) this.startRewrite();
      },
      1000,
      { unref: true },
    );
  }

  /**
   * The first `__delay` offset a transaction not yet durably finished may still need (its recovery
   * looks there for the batches stored already); drops the finished ones.
   */
  private transactionFloor(): number {
    let floor = Number.POSITIVE_INFINITY;
    for (const [id, { commitMs, indexes }] of this.transactionBatches) {
      if (
        this.transactionSettled(id, commitMs) &&
        ![...indexes.values()].some((value) => typeof value !== 'number')
      ) {
        this.transactionBatches.delete(id);
        continue;
      }
      for (const value of indexes.values()) {
        // A batch being stored lands at the log end or later.
        const base = typeof value === 'number' ? value - 1 : this.store.delay.log.logEndOffset;
        if (base < floor) floor = base;
      }
    }
    return floor;
  }

  private pruneTransactionBatches(): void {
    // In a cluster entries are kept for a time (joinCluster): not a scan per new transaction.
    const nowMs = this.clock.nowMs();
    if (nowMs - this.transactionsPrunedAtMs < 1000) return;
    this.transactionsPrunedAtMs = nowMs;
    this.transactionFloor();
  }

  /** Runs one rewrite pass unless one runs (its failure stops the service: see rewrite()). */
  private startRewrite(): void {
    if (this.rewriting || this.stopped || this.failure !== null) return;
    this.rewriting = true;
    const generation = this.generation;
    const done = this.rewrite()
      .catch((error: unknown) => {
        if (generation === this.generation) this.fail(error);
      })
      .finally(() => {
        this.rewriting = false;
        this.running.delete(done);
        if (this.deferred.length > 0) {
          const deferred = this.deferred;
          this.deferred = [];
          if (!this.stopped) this.dispatch(deferred);
        }
      });
    this.running.add(done);
  }

  /**
   * One forward rewrite pass ("Rewrite" in docs/STATE.md): from the oldest `__delay` segment on,
   * while a sealed segment holds few live (unhandled) messages (at most delayRewriteScanRecordsMax,
   * a quarter of the segment size), none due within delayRewriteAheadMsMin and none of a transaction
   * still finishing, copies up to delayRewriteRecordsMax of them (delayRewriteBytesMax) to the log
   * end — each source batch's live records as one pair whose target record lists the refs they came
   * from — syncs `__delay`, then commits a marker under the rewrite key that marks the old refs
   * handled (its fence: the rewrite key's fence, committed before the first copy of the run, so a
   * crash before the marker is found by recovery's scan from it). Only then are the wheel's refs
   * redirected; the cleanup deletes the segment once all of it is handled. A failure stops the
   * service (copies without a marker must not survive a clean close, which skips that scan).
   */
  private async rewrite(): Promise<void> {
    const log = this.store.delay.log;
    const machine = this.store.machine;
    const bases = log.segmentBaseOffsets();
    const floor = this.transactionFloor();
    const nowMs = this.clock.nowMs();
    const moves: Array<{ batch: ScheduledBatch; indexes: number[] }> = [];
    let movedRecords = 0;
    let movedBytes = 0;
    let offset = machine.firstNotDone(log.logStartOffset);
    // Segment by segment (never the active one), while sparse and the bounds allow.
    for (let segment = 0; segment < bases.length - 1; segment++) {
      const end = Math.min(bases[segment + 1]!, floor);
      const before = moves.length;
      const beforeRecords = movedRecords;
      const beforeBytes = movedBytes;
      const scan = this.collectMoves(offset, end, nowMs, moves, movedRecords, movedBytes);
      if (scan === null) {
        // Dense or due soon: this segment stays, and so does everything after it.
        moves.length = before;
        movedRecords = beforeRecords;
        movedBytes = beforeBytes;
        break;
      }
      ({ movedRecords, movedBytes, offset } = scan);
      if (scan.full || end === floor) break; // the bounds were reached, or a transaction's batches
    }
    await this.moveForward(moves, movedRecords, nowMs);
  }

  /**
   * Collects into `moves` the live records of `__delay` from `offset` to `end` (one segment) within
   * the per-pass bounds; null when that segment is dense or holds a record due soon. Returns the
   * counts so far, whether the bounds were reached (the rest of the segment is still counted, to
   * tell a dense segment, but not collected) and where the walk stopped (at or past `end`: a pair may
   * straddle two segments; the next segment's walk starts there, so nothing is collected twice).
   */
  private collectMoves(
    from: number,
    end: number,
    nowMs: number,
    moves: Array<{ batch: ScheduledBatch; indexes: number[] }>,
    recordsSoFar: number,
    bytesSoFar: number,
  ): { movedRecords: number; movedBytes: number; full: boolean; offset: number } | null {
    const log = this.store.delay.log;
    const machine = this.store.machine;
    let liveRecords = 0;
    let liveBytes = 0;
    let movedRecords = recordsSoFar;
    let movedBytes = bytesSoFar;
    let offset = from;
    let full = false;
    while (offset < end) {
      const batch = scheduledBatchAt(log, offset);
      if (batch === null) {
        // A torn pair (never answered) or damage: nothing to move there.
        const read = log.read(offset, 1);
        if (read.batchCount === 0) return null;
        offset = machine.firstNotDone(read.nextOffset);
        continue;
      }
      const perRecord = batch.bytes.length / batch.count;
      const indexes: number[] = [];
      const cursor = new RecordCursor(batch.bytes, 0);
      while (cursor.next()) {
        const ref = batch.base + cursor.index;
        if (machine.isHandled(ref, batch.base)) continue;
        const due = dueOf(cursor, batch.target.baseMs) ?? 0;
        if (due < nowMs + delayRewriteAheadMsMin) return null; // fires soon: the segment frees itself
        liveRecords++;
        liveBytes += perRecord;
        if (
          !full &&
          movedRecords < delayRewriteRecordsMax &&
          movedBytes + perRecord <= delayRewriteBytesMax
        ) {
          indexes.push(cursor.index);
          movedRecords++;
          movedBytes += perRecord;
        } else {
          full = true;
        }
      }
      if (liveRecords > delayRewriteScanRecordsMax || liveBytes > this.store.delay.segmentBytes / 4)
        return null;
      if (indexes.length > 0) moves.push({ batch, indexes });
      offset = machine.firstNotDone(batch.base + batch.count);
    }
    return { movedRecords, movedBytes, full, offset };
  }

  /** Copies `moves` to the log end, durably, marks their old places, redirects the wheel (see rewrite). */
  private async moveForward(
    moves: Array<{ batch: ScheduledBatch; indexes: number[] }>,
    movedRecords: number,
    nowMs: number,
  ): Promise<void> {
    const log = this.store.delay.log;
    if (moves.length === 0) return;
    if (this.redirects.size + movedRecords > delayRedirectsMax) return;
    const generation = this.generation;
    if (!this.rewriteFenced) {
      await this.store.state.commit({ t: 'e', key: rewriteKey, e: log.logEndOffset });
      this.assertTerm(generation);
      this.rewriteFenced = true;
    }
    if (this.stopped) return;
    // Wheel refs of the messages moved (where the wheel holds them: their first place).
    const wheelRefs: number[] = [];
    for (const { batch, indexes } of moves) {
      for (const index of indexes) {
        const ref = batch.base + index;
        const wheelRef = this.redirectedFrom.get(ref) ?? ref;
        wheelRefs.push(wheelRef);
        this.moving.add(wheelRef);
      }
    }
    try {
      const appends: Array<Promise<{ baseOffset: number }>> = [];
      const triples: number[] = [];
      for (const { batch, indexes } of moves) {
        const builder = new BatchBuilder({ initialBytes: 1024 });
        const movedFrom: number[] = [];
        const cursor = new RecordCursor(batch.bytes, 0);
        for (const index of indexes) {
          while (cursor.index < index && cursor.next()) {}
          builder.append({
            key: cursor.key(),
            value: cursor.value(),
            headers: cursor.headers(),
            timestamp: cursor.timestamp,
          });
          movedFrom.push(batch.base + index);
          triples.push(batch.base + index, batch.base, batch.count);
        }
        const copies = builder.finishCopy({ crc32c: crc32cOfBytes, attributes: BatchAttributes.delayed });
        const pair = this.targetEncoder.encode({ ...batch.target, movedFrom }, nowMs);
        // Back to back, synchronously: nothing lands between the target record and its batch.
        appends.push(log.append(pair));
        appends.push(log.append(copies));
      }
      const results = await Promise.all(appends);
      await log.flush();
      this.onInternalAppend(log);
      if (this.replication !== null) {
        this.assertTerm(generation);
        await this.replication.delay(log.logEndOffset);
      }
      this.assertTerm(generation);
      this.onRewriteStep?.('copied');
      await this.store.state.commit({ t: 'f', key: rewriteKey, r: triples, e: log.logEndOffset });
      this.onRewriteStep?.('marked');
      this.assertTerm(generation);
      // The old places are handled (durably): redirect the wheel's refs to the new ones.
      let moved = 0;
      for (let pair = 0; pair < moves.length; pair++) {
        const newBase = results[pair * 2 + 1]!.baseOffset;
        const { batch, indexes } = moves[pair]!;
        for (let i = 0; i < indexes.length; i++) {
          const oldRef = batch.base + indexes[i]!;
          const wheelRef = wheelRefs[moved++]!;
          const newRef = newBase + i;
          this.redirectedFrom.delete(oldRef);
          this.redirects.set(wheelRef, newRef);
          this.redirectedFrom.set(newRef, wheelRef);
        }
      }
      this.rewriteCounters.passes++;
      this.rewriteCounters.moved += movedRecords;
      this.scheduleCleanup();
    } finally {
      for (const wheelRef of wheelRefs) this.moving.delete(wheelRef);
    }
  }

  /** The state log failed: stop firing (nothing is fired that could not be marked). */
  private fail(error: unknown): void {
    if (this.failure !== null) return;
    this.failure = error instanceof SpillwayError ? error : new SpillwayError('STORAGE_IO', String(error));
    process.emitWarning(`delayed messages stopped firing: ${String(error)}`);
  }
}

/** The fired copies in the target named by `key` (a fence key) from `from` on, or null when it is gone. */
async function findFiredAt(
  store: DelayStore,
  targets: DelayTargets,
  key: string,
  from: number,
): Promise<{ refs: number[]; scannedBytes: number; endOffset: number } | null> {
  if (key === deadKey) {
    const log = store.dead.log;
    return { ...findFiredCopies(log, from), endOffset: log.logEndOffset };
  }
  const separator = key.lastIndexOf('\u0000');
  return targets.findFired(key.slice(0, separator), Number(key.slice(separator + 1)), from);
}

/** The transaction stamp of a committed batch (attribute transactional), or null. */
function transactionStampOf(batch: Uint8Array): { id: number; index: number } | null {
  const view = new DataView(batch.buffer, batch.byteOffset, BatchHeader.size);
  if ((view.getUint16(BatchHeader.attributes, true) & BatchAttributes.transactional) === 0) return null;
  return {
    id: Number(view.getBigInt64(BatchHeader.producerId, true)),
    index: view.getInt32(BatchHeader.baseSequence, true),
  };
}

/** Throws INVALID_BATCH when record `index`'s due time is missing or more than 10 years ahead. */
function checkDue(index: number, due: number | null, nowMs: number): void {
  if (due === null) {
    throw new InvalidBatchError(
      `record ${index} of a delayed batch has no valid ${deliverAtHeader} header (epoch ms as decimal digits) nor ${delayMsHeader} (ms)`,
    );
  }
  if (due > nowMs + delayAheadMsMax) {
    throw new InvalidBatchError(
      `record ${index} is due at ${due}, more than ${delayAheadMsMax} ms (10 years) ahead`,
    );
  }
}

/**
 * Checks a delayed batch sent inside a transaction (TXN_SEND): every record has `sw-deliver-at` or
 * `sw-delay-ms` (counted from the commit), within 10 years of `nowMs`. Throws INVALID_BATCH.
 */
export function checkDelayedBatch(batch: Uint8Array, nowMs: number): void {
  const cursor = new RecordCursor(batch, 0);
  while (cursor.next()) {
    const due = dueOf(cursor, nowMs);
    checkDue(cursor.index, due, nowMs);
  }
}

/** The scheduled batch holding `__delay` offset `offset` (a record, or its target record), or null. */
function scheduledBatchAt(log: LogStore, offset: number): ScheduledBatch | null {
  const read = log.read(offset, 1);
  if (read.batchCount === 0) return null;
  const delayed = (read.bytes[BatchHeader.attributes]! & BatchAttributes.delayed) !== 0;
  return readScheduledBatch(log, delayed ? offset : read.firstOffset + 1);
}

/**
 * Recovery of the forward rewrite: the copies appended to `__delay` from the rewrite fence on whose
 * marker was lost get it now (their old places marked handled). Returns the records so marked.
 */
async function markMoved(store: DelayStore, fence: number): Promise<number> {
  const machine = store.machine;
  const triples: number[] = [];
  scanScheduledBatches(store.delay.log, fence, (batch) => {
    const movedFrom = batch.target.movedFrom;
    if (movedFrom === undefined || movedFrom.length !== batch.count) return;
    for (const ref of movedFrom) {
      const old = readScheduledBatch(store.delay.log, ref);
      if (old === null || machine.isHandled(ref, old.base)) continue;
      triples.push(ref, old.base, old.count);
    }
  });
  if (triples.length > 0) {
    await store.state.commit({ t: 'f', key: rewriteKey, r: triples, e: store.delay.log.logEndOffset });
  }
  return triples.length / 3;
}
