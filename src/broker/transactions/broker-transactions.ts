/**
 * Transactional messages (docs/TRANSACTIONS.md): half messages, commit/rollback, check-back.
 *
 *  - BEGIN (TXN_BEGIN, or the first TXN_SEND / TXN_END naming with `begin` an id TXN_IDS reserved
 *    for the session: `reserveIds`, `beginLeased`) makes the transaction (group, check settings,
 *    deadlines, where its halves start in `__txn_half`); its `open` record goes to `__transactions`
 *    transactionBeginRecordDelayMs later, unless a decision or check-back recorded it first (the
 *    decision holds every field; a commit decision is durable before any delivery).
 *  - SEND stores the producer's batch in `__txn_half` under the target topic's durability; nothing
 *    reaches the target, so its consumers see nothing. `sendMany`: several batches of one request.
 *  - END commit: waits for the transaction's sends in flight, records the decision (state
 *    `committing`, with each target's log end) durably, then delivers every half, in send order,
 *    through `deliverCommitted` inside one commit round (commit-rounds.ts: the targets' visibility is
 *    held until all are appended and acknowledged, then released in one step), then records
 *    `committed` (not awaited: recovery finds delivered batches by their stamp, below; one
 *    `committed` entry for the commits finished in one turn, recordCommitted).
 *    END rollback: records `rolled-back`; the halves are left for the half log's cleanup.
 *  - A delivered batch is the producer's batch stamped by the broker: attribute transactional,
 *    producerId = transaction id, producerEpoch 0, baseSequence = the half's index in the
 *    transaction, CRC32C recomputed. After a crash in the middle of a commit, recovery (`recover`,
 *    awaited before the broker serves) scans each target from the recorded log end for batches so
 *    stamped and delivers only the missing halves: a commit is finished once, never doubled.
 *  - Check-back: an open transaction undecided at `nextCheckAtMs` is asked about (server request
 *    TXN_CHECK, opcode 65) on a connected session of its producer group (round robin over the
 *    members, the next member tried when one fails), at most `maxChecks` times, the wait doubling
 *    from checkAfterMs up to transactionCheckBackoffMsMax; past that it is rolled back (decidedBy
 *    'timeout') and `onLog` says so. The deadlines are wall times in `__transactions`: after a
 *    restart the clock resumes where it was.
 *  - A decision applied twice: the second END (or answer) gets the first outcome, `duplicate` true;
 *    a contradicting one fails with TRANSACTION_COMMITTED / TRANSACTION_ROLLED_BACK saying who
 *    decided and when. Outcomes of the newest transactionOutcomesMax transactions are remembered.
 *
 * In a cluster (`clusterMember`; docs/TRANSACTIONS.md, "In a cluster"): the service runs only while
 * this broker leads `__transactions` and `__txn_half` (src/cluster/state-services/), between
 * `startServing(forwarder)` and `stopServing(why)`. Stopped, every request fails NOT_COORDINATOR
 * (retriable: the client finds the new coordinator) and nothing is written to either log. Starting,
 * it recovers the state from the logs as replication left them; every write (records, ids, halves)
 * is answered only once the in-sync replicas have it. Commits copy the halves through the term's
 * forwarder into target partitions led by any broker, each record stamped `sw-txn: id:index`
 * (forwarded-commit.ts), without commit rounds (visibility is per partition, by its high
 * watermark); a committing transaction found at the start is finished by scanning its targets
 * (`forwarder.scan`, which first fences the previous term) for the stamps from the offsets recorded
 * with the decision, copying only what is missing. Ids reserved by a session of an earlier term may
 * be begun once by any session (their lease was on the old coordinator). A numbered TXN_SEND (`seq`)
 * resent after a move is answered with the halves stored the first time.
 *
 * Bounds: transactionsOpenMax, transactionsOpenPerSessionMax (TOO_MANY_TRANSACTIONS),
 * transactionHalfBytesMax, transactionHalfBatchesMax, transactionHalfBatchBytesMax
 * (TRANSACTION_TOO_LARGE), producerGroupsMax. One event loop; every method may run concurrently.
 */
import type { Clock, ClockTimer } from '../../clock.js';
import {
  InvalidArgumentError,
  InvalidBatchError,
  SpillwayError,
  UnknownPartitionError,
  UnknownTopicError,
} from '../../errors.js';
import { BatchAttributes, BatchHeader, batchLengthAt } from '../../format/batch-header.js';
import { writeInt64LE } from '../../format/int64.js';
import { validateBatch } from '../../format/record-batch.js';
import {
  producerGroupNameLengthMax,
  producerGroupsMax,
  transactionBeginRecordDelayMs,
  transactionCheckAfterMsDefault,
  transactionCheckAfterMsMax,
  transactionCheckAfterMsMin,
  transactionCheckBackoffMsMax,
  transactionCheckTimeoutMs,
  transactionDelayRetryMsMax,
  transactionDelayRetryMsMin,
  transactionEarlierIdsBegunMax,
  transactionHalfBatchBytesMax,
  transactionHalfBatchesMax,
  transactionHalfBytesMax,
  transactionIdLeaseMax,
  transactionIdLeasesPerSessionMax,
  transactionIdsReservedPerSessionMax,
  transactionMaxChecksDefault,
  transactionMaxChecksMax,
  transactionsOpenMax,
  transactionsOpenPerSessionMax,
} from '../../limits.js';
import { crc32c as nativeCrc32c } from '../../native.js';
import { Opcode } from '../../protocol/opcodes.js';
import { msgIdHeader } from '../../protocol/reserved-headers.js';
import type { Session } from '../../protocol/session.js';
import type {
  BeginTransactionRequest,
  CheckAnswer,
  EndTransactionResult,
  IdLease,
  SendHalfResult,
  SendHalvesResult,
  TransactionDecision,
  TransactionInfo,
  TransactionService,
  TransactionStats,
} from '../../protocol/transaction-api.js';
import type { AppendResult, LogStore } from '../../storage/log-store.js';
import type { BrokerTopics } from '../broker-topics.js';
import { batchMsgIds } from '../dedup/batch-msg-ids.js';
import { checkDelayedBatch } from '../delay/broker-delay.js';
import type { DiskReserve } from '../disk-reserve.js';
import type { Lifecycle } from '../lifecycle.js';
import type { Partition } from '../partition.js';
import type { StateLog } from '../state/state-log.js';
import { isInternalTopicName } from '../topic-name.js';
import { CheckSchedule } from './check-schedule.js';
import { type CommitRound, CommitRounds } from './commit-rounds.js';
import { forwardedStampOf, stampForwardedBatch, type TransactionForwarder } from './forwarded-commit.js';
import { type HalfLocation, type HalfLog, sendKeyOf } from './half-log.js';
import type {
  CommitTarget,
  DecidedBy,
  TransactionEntry,
  TransactionOutcome,
  TransactionRecord,
  TransactionStateMachine,
} from './transaction-state.js';

const crc32cOfBytes = (bytes: Uint8Array): number => nativeCrc32c(bytes);

/** A transaction not finished yet, as the service holds it. */
interface LiveTransaction {
  /** The newest record written (or being written) to `__transactions`. */
  record: TransactionRecord;
  halves: HalfLocation[];
  halfBytes: number;
  halfRecords: number;
  /** Sends being stored, and who waits for them to settle. */
  sendsInFlight: number;
  sendsIdle: Array<() => void> | null;
  decision: TransactionDecision | null;
  ending: Promise<EndTransactionResult> | null;
  /** The session that began it (for the per-session bound); null after a restart. */
  sessionId: number | null;
  /** A record of it was written (or is being written) to `__transactions`. */
  recorded: boolean;
  /** Numbered sends stored or being stored (sendKey -> their result), for resends; null until one. */
  sent: Map<number, Promise<SendHalfResult>> | null;
}

/** Ids reserved by one session (TXN_IDS), each begun at most once by that session's first send or end. */
interface LeasedIds {
  from: number;
  /** 1 once the id at that index was begun. */
  used: Uint8Array;
  /** Ids of it not begun yet. */
  unused: number;
}

/** The reservations of one session, oldest first. */
interface SessionLeases {
  list: LeasedIds[];
  /** Ids reserved and not begun yet, over the list. */
  unused: number;
}

export interface BrokerTransactionsOptions {
  topics: BrokerTopics;
  lifecycle: Lifecycle;
  clock: Clock;
  diskReserve: DiskReserve;
  state: StateLog<TransactionEntry>;
  machine: TransactionStateMachine;
  halves: HalfLog;
  /** Readers of a partition read again (its visibility hold was released). */
  wake: (partition: Partition) => void;
  /**
   * A cluster member (see the header): starts stopped and serves between startServing and
   * stopServing; `store` detaches and reopens the state log, `replicateHalves(endOffset)` resolves
   * once the in-sync replicas of `__txn_half` hold everything before endOffset.
   */
  cluster?: {
    store: {
      readonly state: StateLog<TransactionEntry>;
      readonly machine: TransactionStateMachine;
      detach(error: unknown): void;
      reopen(): void;
    };
  };
}

function checkGroup(group: unknown): string {
  if (typeof group !== 'string' || group.length === 0 || group.length > producerGroupNameLengthMax) {
    throw new InvalidArgumentError(
      `producer group must be a string of 1 to ${producerGroupNameLengthMax} characters`,
    );
  }
  return group;
}

function integerSetting(
  name: string,
  value: number | undefined,
  fallback: number,
  min: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

/** The producer's batch as delivered: transactional, stamped with the transaction and the half index. */
export function stampCommittedBatch(batch: Uint8Array, transactionId: number, halfIndex: number): Uint8Array {
  const view = new DataView(batch.buffer, batch.byteOffset, batch.length);
  view.setUint16(
    BatchHeader.attributes,
    view.getUint16(BatchHeader.attributes, true) | BatchAttributes.transactional,
    true,
  );
  writeInt64LE(batch, transactionId, BatchHeader.producerId);
  view.setInt16(BatchHeader.producerEpoch, 0, true);
  view.setInt32(BatchHeader.baseSequence, halfIndex, true);
  view.setUint32(BatchHeader.crc, crc32cOfBytes(batch.subarray(BatchHeader.crcStart)) >>> 0, true);
  return batch;
}

const ignoreBatch = (): void => undefined;

function hasTarget(targets: readonly CommitTarget[], topic: string, partition: number): boolean {
  for (const target of targets) if (target.partition === partition && target.topic === topic) return true;
  return false;
}

/** For a first commit attempt: no half delivered yet (never written to). */
const nothingDelivered: ReadonlySet<number> = new Set();

function describeDecision(record: Pick<TransactionRecord, 'decidedAtMs' | 'decidedBy' | 'checks'>): string {
  const when = record.decidedAtMs === null ? '' : ` at ${new Date(record.decidedAtMs).toISOString()}`;
  const by =
    record.decidedBy === 'timeout'
      ? `by the broker after ${record.checks} check-backs without a decision`
      : record.decidedBy === 'check-back'
        ? "by a producer's answer to a check-back"
        : 'by the producer';
  return `${by}${when}`;
}

export class BrokerTransactions implements TransactionService {
  /** Told of what the broker decided by itself (timeout rollbacks) and of delivery retries. */
  onLog: (line: string) => void = (line) => console.warn(`spillway: ${line}`);

  private readonly topics: BrokerTopics;
  private readonly lifecycle: Lifecycle;
  private readonly clock: Clock;
  private readonly diskReserve: DiskReserve;
  private state: StateLog<TransactionEntry>;
  private machine: TransactionStateMachine;
  private readonly halfLog: HalfLog;
  private readonly live = new Map<number, LiveTransaction>();
  private nextId: number;
  private readonly schedule = new CheckSchedule();
  private timer: ClockTimer | null = null;
  private timerAtMs = Number.POSITIVE_INFINITY;
  private readonly rounds: CommitRounds;
  /** Connected members of each producer group, in registration order. */
  private readonly groups = new Map<string, Set<Session>>();
  private readonly nextMember = new Map<string, number>();
  private readonly openPerSession = new Map<number, number>();
  /** Id reservations per session id (bounded by transactionIdLeasesPerSessionMax and transactionIdsReservedPerSessionMax). */
  private readonly leases = new Map<number, SessionLeases>();
  private cleanupTimer: ClockTimer | null = null;
  /**
   * Ids begun, begin record not written yet (see start), and the timer that writes them. Ids, not
   * the transactions: a transaction decided meanwhile is not kept alive by this list.
   */
  private unrecorded: number[] = [];
  private beginTimer: ClockTimer | null = null;
  private readonly counters = {
    committed: 0,
    rolledBack: 0,
    timedOut: 0,
    checksSent: 0,
    checksWithoutProducer: 0,
    checkAnswers: { commit: 0, rollback: 0, unknown: 0, failed: 0 },
  };
  private halfBytesTotal = 0;
  /** Commits finished in this turn, recorded together (recordCommitted). */
  private committedNow: LiveTransaction[] = [];

  /** Cluster: the store's hooks; null on a single broker. */
  private readonly cluster: NonNullable<BrokerTransactionsOptions['cluster']> | null;
  /** Cluster: resolves once `__txn_half`'s in-sync replicas hold everything before endOffset. */
  private replicateHalves: ((endOffset: number) => Promise<void>) | null = null;
  /** Why this broker does not coordinate transactions now; null while it does (always on a single broker). */
  private notServing: string | null = null;
  /** Bumped at every stop and start: an answer awaited across one is NOT_COORDINATOR. */
  private serviceEpoch = 0;
  /** Cluster: the running term's forwarder. */
  private forwarder: TransactionForwarder | null = null;
  /** Cluster: per target (`partition topic`), the log end after this term's newest copy there. */
  private readonly copiedEnds = new Map<string, number>();
  /** Cluster: ids below it were reserved in an earlier term (their lease was on another coordinator). */
  private termFirstId = 0;
  /** Cluster: ids of an earlier term begun in this one (each is begun once). */
  private readonly earlierIdsBegun = new Set<number>();

  /** Where committed delayed batches go (the delay service's scheduleCommitted); null: refused. */
  scheduleDelayed:
    | ((topic: string, partition: number, batch: Uint8Array, commitMs: number) => Promise<unknown>)
    | null = null;

  constructor(options: BrokerTransactionsOptions) {
    this.topics = options.topics;
    this.lifecycle = options.lifecycle;
    this.clock = options.clock;
    this.diskReserve = options.diskReserve;
    this.state = options.state;
    this.machine = options.machine;
    this.halfLog = options.halves;
    this.nextId = options.machine.nextId;
    this.rounds = new CommitRounds((partitions) => {
      for (const partition of partitions) options.wake(partition);
    });
    this.cluster = options.cluster ?? null;
    if (this.cluster !== null) {
      this.notServing = 'waiting for the cluster to assign __transactions and __txn_half';
      return;
    }
    this.cleanupTimer = this.clock.setInterval(() => this.cleanHalves(), 5_000, { unref: true });
  }

  /**
   * Cluster: every write is answered only once the in-sync replicas have it: `state(endOffset)` for
   * `__transactions` (StateLog.replicate, kept across reopen), `halves(endOffset)` for `__txn_half`.
   */
  replicateWrites(
    state: (endOffset: number) => Promise<void>,
    halves: (endOffset: number) => Promise<void>,
  ): void {
    if (this.cluster === null) return;
    this.cluster.store.state.replicate = state;
    this.replicateHalves = halves;
  }

  /** True while this broker coordinates transactions (always on a single broker). */
  get serving(): boolean {
    return this.notServing === null;
  }

  /**
   * Cluster: stops at once (this broker no longer leads `__transactions` / `__txn_half`): nothing more
   * is written to either log, the forwarder closes, the state is dropped, and every request fails
   * NOT_COORDINATOR naming `why` until startServing. The producer-group registrations of connected
   * sessions are kept (check-backs resume on them if the service comes back here). Idempotent.
   */
  stopServing(why: string): void {
    const cluster = this.cluster;
    if (cluster === null || this.notServing !== null) return;
    this.notServing = why;
    this.serviceEpoch++;
    cluster.store.detach(this.notCoordinating());
    this.forwarder?.close(why);
    this.forwarder = null;
    this.clock.clearTimer(this.timer);
    this.timer = null;
    this.timerAtMs = Number.POSITIVE_INFINITY;
    this.clock.clearTimer(this.beginTimer);
    this.beginTimer = null;
    this.clock.clearTimer(this.cleanupTimer);
    this.cleanupTimer = null;
    this.schedule.clear();
    this.unrecorded = [];
    this.committedNow = [];
    this.live.clear();
    this.leases.clear();
    this.openPerSession.clear();
    this.copiedEnds.clear();
    this.earlierIdsBegun.clear();
    this.halfBytesTotal = 0;
  }

  /**
   * Cluster: serves for a new term (this broker leads both logs): recovers the state from
   * `__transactions` and `__txn_half` as they are, resumes the check-back clock of open transactions
   * and finishes the committing ones in the background (their END waits for it), through `forwarder`.
   */
  startServing(forwarder: TransactionForwarder): void {
    const cluster = this.cluster;
    if (cluster === null || this.notServing === null) return;
    cluster.store.reopen();
    this.state = cluster.store.state;
    this.machine = cluster.store.machine;
    this.nextId = this.machine.nextId;
    this.termFirstId = this.nextId;
    this.forwarder = forwarder;
    this.notServing = null;
    this.serviceEpoch++;
    this.cleanupTimer = this.clock.setInterval(() => this.cleanHalves(), 5_000, { unref: true });
    for (const live of this.rebuildLive()) {
      const ending = this.finishCommit(live, null, true);
      live.ending = ending;
      ending.catch((error: unknown) => {
        if (live.ending === ending) live.ending = null;
        if (this.serving) {
          this.onLog(
            `transaction ${live.record.id}: finishing its commit failed (${String(error)}); a later END retries`,
          );
        }
      });
    }
  }

  private notCoordinating(): SpillwayError {
    return new SpillwayError(
      'NOT_COORDINATOR',
      `transactions are not coordinated here: ${this.notServing ?? 'the coordinator moved meanwhile'}`,
    );
  }

  /** The broker is open and coordinates transactions, or the error saying why not. */
  private assertServing(): void {
    this.lifecycle.assertOpen();
    if (this.notServing !== null) throw this.notCoordinating();
  }

  /** NOT_COORDINATOR when the service stopped (or moved away and back) since `epoch`. */
  private assertServingSince(epoch: number): void {
    if (this.serviceEpoch !== epoch) throw this.notCoordinating();
  }

  /**
   * Rebuilds the unfinished transactions from `__transactions` and `__txn_half`, finishes the
   * commits a crash interrupted (delivering only what is missing), and resumes the check-back clock of
   * open ones. Awaited before the broker serves.
   */
  async recover(): Promise<void> {
    // A cluster member recovers at startServing, from the logs as replication left them.
    if (this.cluster !== null) return;
    // What a crash left in the page cache of an `always` partition is invisible until synced (the
    // durable offset restarts at the recovery point): sync it now, so that a transaction delivered
    // to an `always` and an `interval` partition before the crash is not seen in part after it.
    const syncs: Array<Promise<void>> = [];
    for (const topic of this.topics.all()) {
      if (isInternalTopicName(topic.name)) continue;
      for (const partition of topic.partitions) {
        const log = partition.openLog;
        if (partition.durability === 'always' && log !== null && log.durableOffset < log.logEndOffset) {
          syncs.push(log.flush());
        }
      }
    }
    await Promise.all(syncs);
    for (const live of this.rebuildLive()) {
      try {
        const ending = this.finishCommit(live, this.deliveredHalves(live.record), false);
        live.ending = ending;
        await ending;
      } catch (error) {
        // E.g. a target partition stopped for damage: the broker serves the rest; a later END
        // commit (or the next open) finishes it.
        live.ending = null;
        this.onLog(
          `transaction ${live.record.id}: finishing its commit at open failed (${String(error)}); retried by a later commit or restart`,
        );
      }
    }
  }

  /**
   * The unfinished transactions of the machine as live ones, with their halves found in `__txn_half`;
   * schedules the open ones' check-backs and returns the committing ones (to finish).
   */
  private rebuildLive(): LiveTransaction[] {
    const records = [...this.machine.live.values()];
    const committing: LiveTransaction[] = [];
    if (records.length === 0) return committing;
    for (const record of records) {
      this.live.set(record.id, {
        record,
        halves: [],
        halfBytes: 0,
        halfRecords: 0,
        sendsInFlight: 0,
        sendsIdle: null,
        decision: record.state === 'committing' ? 'commit' : null,
        ending: null,
        sessionId: null,
        recorded: true,
        sent: null,
      });
    }
    const from = Math.min(...records.map((record) => record.halfFrom));
    this.halfLog.scan(from, (id, location) => {
      const live = this.live.get(id);
      if (live === undefined || location.halfOffset < live.record.halfFrom) return;
      if (location.sendKey >= 0) {
        live.sent ??= new Map();
        // One half per sendKey (resends are answered with it): a second one would be ignored.
        if (live.sent.has(location.sendKey)) return;
        live.sent.set(
          location.sendKey,
          Promise.resolve({ halfOffset: location.halfOffset, records: location.records }),
        );
      }
      live.halves.push(location);
      live.halfBytes += location.bytes;
      live.halfRecords += location.records;
      this.halfBytesTotal += location.bytes;
    });
    for (const live of this.live.values()) {
      if (live.record.state === 'open') this.scheduleCheck(live);
      else committing.push(live);
    }
    return committing;
  }

  register(session: Session, group: string): void {
    this.lifecycle.assertOpen();
    checkGroup(group);
    let members = this.groups.get(group);
    if (members === undefined) {
      if (this.groups.size >= producerGroupsMax) {
        throw new SpillwayError(
          'TOO_MANY_REQUESTS',
          `${producerGroupsMax} producer groups have members connected`,
        );
      }
      members = new Set();
      this.groups.set(group, members);
    }
    if (members.has(session)) return;
    members.add(session);
    session.onClose(() => {
      members.delete(session);
      if (members.size === 0 && this.groups.get(group) === members) this.groups.delete(group);
    });
  }

  async begin(session: Session, request: BeginTransactionRequest): Promise<{ id: number }> {
    this.assertServing();
    return { id: this.start(session, null, request) };
  }

  /**
   * Reserves `count` ids for this session (docs/TRANSACTIONS.md, "Begin without a request"): its
   * first TXN_SEND or TXN_END naming one of them with `begin` begins that transaction. The reservation
   * is durable before the answer, so no id is given twice even across a crash; it lasts as long as the
   * session (and at most transactionIdLeasesPerSessionMax reservations per session).
   */
  async reserveIds(session: Session, group: string, count: number): Promise<IdLease> {
    this.assertServing();
    checkGroup(group);
    if (!Number.isSafeInteger(count) || count < 1 || count > transactionIdLeaseMax) {
      throw new InvalidArgumentError(
        `count must be an integer in [1, ${transactionIdLeaseMax}], got ${String(count)}`,
      );
    }
    this.register(session, group);
    const from = this.nextId;
    this.nextId += count;
    const epoch = this.serviceEpoch;
    try {
      await this.state.commit({ kind: 'next', nextId: this.nextId });
    } catch (error) {
      this.assertServingSince(epoch);
      throw error;
    }
    this.assertServingSince(epoch);
    let leases = this.leases.get(session.id);
    if (leases === undefined) {
      leases = { list: [], unused: 0 };
      this.leases.set(session.id, leases);
      session.onClose(() => {
        this.leases.delete(session.id);
      });
    }
    leases.list.push({ from, used: new Uint8Array(count), unused: count });
    leases.unused += count;
    while (
      leases.list.length > transactionIdLeasesPerSessionMax ||
      leases.unused > transactionIdsReservedPerSessionMax
    ) {
      leases.unused -= leases.list.shift()!.unused;
    }
    return { from, count };
  }

  /**
   * Begins transaction `id` if it is an id reserved by this session and not begun yet; does nothing
   * when it is live already or not such an id (the send or end that follows says what it is).
   */
  beginLeased(session: Session, id: number, request: BeginTransactionRequest): void {
    this.assertServing();
    if (this.live.has(id)) return;
    const leases = this.leases.get(session.id);
    if (leases === undefined) {
      this.beginEarlierId(session, id, request);
      return;
    }
    for (let i = 0; i < leases.list.length; i++) {
      const lease = leases.list[i]!;
      const index = id - lease.from;
      if (index < 0 || index >= lease.used.length) continue;
      if (lease.used[index] === 1) return;
      this.start(session, id, request);
      lease.used[index] = 1;
      lease.unused--;
      leases.unused--;
      if (lease.unused === 0) leases.list.splice(i, 1);
      return;
    }
    this.beginEarlierId(session, id, request);
  }

  /**
   * Cluster: begins `id` when it was reserved in an earlier term (below termFirstId: its lease was on
   * a coordinator that stopped), is not known here (live or decided) and was not begun in this term.
   */
  private beginEarlierId(session: Session, id: number, request: BeginTransactionRequest): void {
    if (
      this.cluster === null ||
      id >= this.termFirstId ||
      this.earlierIdsBegun.has(id) ||
      this.machine.outcomes.has(id) ||
      this.earlierIdsBegun.size >= transactionEarlierIdsBegunMax
    ) {
      return;
    }
    this.start(session, id, request);
    this.earlierIdsBegun.add(id);
  }

  /** Validates and records a new transaction (`id` null: the next id); see begin. */
  private start(session: Session, givenId: number | null, request: BeginTransactionRequest): number {
    if (typeof request !== 'object' || request === null)
      throw new InvalidArgumentError('begin takes { group }');
    const group = checkGroup(request.group);
    const checkAfterMs = integerSetting(
      'checkAfterMs',
      request.checkAfterMs,
      transactionCheckAfterMsDefault,
      transactionCheckAfterMsMin,
      transactionCheckAfterMsMax,
    );
    const maxChecks = integerSetting(
      'maxChecks',
      request.maxChecks,
      transactionMaxChecksDefault,
      0,
      transactionMaxChecksMax,
    );
    if (this.live.size >= transactionsOpenMax) {
      throw new SpillwayError(
        'TOO_MANY_TRANSACTIONS',
        `${this.live.size} transactions are open on this broker (transactionsOpenMax ${transactionsOpenMax}): commit or roll back some first`,
      );
    }
    const sessionOpen = this.openPerSession.get(session.id) ?? 0;
    if (sessionOpen >= transactionsOpenPerSessionMax) {
      throw new SpillwayError(
        'TOO_MANY_TRANSACTIONS',
        `this connection holds ${sessionOpen} open transactions (transactionsOpenPerSessionMax ${transactionsOpenPerSessionMax})`,
      );
    }
    this.register(session, group);
    const id = givenId ?? this.nextId++;
    const now = this.clock.nowMs();
    const record: TransactionRecord = {
      id,
      group,
      beganAtMs: now,
      checkAfterMs,
      maxChecks,
      checks: 0,
      nextCheckAtMs: now + checkAfterMs,
      halfFrom: this.halfLog.endOffset,
      state: 'open',
      decidedBy: null,
      decidedAtMs: null,
      messages: 0,
      targets: [],
    };
    const live: LiveTransaction = {
      record,
      halves: [],
      halfBytes: 0,
      halfRecords: 0,
      sendsInFlight: 0,
      sendsIdle: null,
      decision: null,
      ending: null,
      sessionId: session.id,
      recorded: false,
      sent: null,
    };
    if (sessionOpen === 0) {
      session.onClose(() => {
        this.openPerSession.delete(session.id);
      });
    }
    this.openPerSession.set(session.id, sessionOpen + 1);
    this.live.set(id, live);
    // The begin record is written transactionBeginRecordDelayMs later, and only if nothing else
    // about the transaction was recorded by then (a decision or a check-back record holds all of it):
    // a transaction decided within that time costs one record less. A crash before a record of it
    // is durable forgets the transaction: its halves are orphans (never delivered, cleaned with the
    // half log) and the producer's next request gets UNKNOWN_TRANSACTION.
    this.unrecorded.push(id);
    if (this.beginTimer === null) {
      this.beginTimer = this.clock.setTimeout(() => this.recordBegins(), transactionBeginRecordDelayMs, {
        unref: true,
      });
    }
    this.scheduleCheck(live);
    return id;
  }

  /** Writes the begin record of the transactions begun and neither recorded nor decided since. */
  private recordBegins(): void {
    this.clock.clearTimer(this.beginTimer);
    this.beginTimer = null;
    const begun = this.unrecorded;
    this.unrecorded = [];
    for (const id of begun) {
      const live = this.live.get(id);
      if (live === undefined || live.recorded || live.decision !== null) continue;
      live.recorded = true;
      this.state.commit({ kind: 'transaction', record: live.record }).catch((error: unknown) => {
        if (this.live.get(id) === live && live.decision === null) this.forget(live);
        if (this.serving) this.onLog(`transaction ${id}: recording its begin failed (${String(error)})`);
      });
    }
  }

  /**
   * Several half batches in one request: `body` holds one batch per part, back to back, stored in
   * that order (as that many sends issued at once).
   */
  async sendMany(
    session: Session,
    id: number,
    parts: ReadonlyArray<{ topic: string; partition: number }>,
    body: Uint8Array,
    seq: number | null = null,
  ): Promise<SendHalvesResult> {
    this.assertServing();
    if (!(body instanceof Uint8Array)) throw new InvalidArgumentError('the body must hold the batches');
    const batches: Uint8Array[] = [];
    let position = 0;
    for (let i = 0; i < parts.length; i++) {
      if (body.length - position < BatchHeader.size) {
        throw new InvalidBatchError(`the body holds fewer batches than the ${parts.length} parts named`);
      }
      const length = batchLengthAt(body, position);
      if (length < BatchHeader.size || position + length > body.length) {
        throw new InvalidBatchError(`batch ${i} of the body is cut short (${length} bytes at ${position})`);
      }
      batches.push(body.subarray(position, position + length));
      position += length;
    }
    if (position !== body.length) {
      throw new InvalidBatchError(`${body.length - position} bytes after the ${parts.length} batches named`);
    }
    const results = await Promise.all(
      parts.map((part, i) =>
        this.sendPart(session, id, part.topic, part.partition, batches[i]!, sendKeyOf(seq, i)),
      ),
    );
    let records = 0;
    for (const result of results) records += result.records;
    return { halfOffsets: results.map((result) => result.halfOffset), records };
  }

  send(
    session: Session,
    id: number,
    topic: string,
    partition: number,
    batch: Uint8Array,
    seq: number | null = null,
  ): Promise<SendHalfResult> {
    return this.sendPart(session, id, topic, partition, batch, sendKeyOf(seq, 0));
  }

  private sendPart(
    session: Session,
    id: number,
    topic: string,
    partition: number,
    batch: Uint8Array,
    sendKey: number,
  ): Promise<SendHalfResult> {
    try {
      if (sendKey < 0) return this.storeHalf(session, id, topic, partition, batch, -1);
      // A numbered send: a resend (its coordinator moved, its answer was lost) gets the first result.
      const live = this.live.get(id);
      const earlier = live?.sent?.get(sendKey);
      if (earlier !== undefined) return earlier;
      const stored = this.storeHalf(session, id, topic, partition, batch, sendKey);
      const owner = this.live.get(id)!;
      owner.sent ??= new Map();
      owner.sent.set(sendKey, stored);
      stored.catch(() => {
        if (owner.sent?.get(sendKey) === stored) owner.sent.delete(sendKey);
      });
      return stored;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** `send`, throwing what it refuses; the append is started before it returns (no async frame). */
  private storeHalf(
    session: Session,
    id: number,
    topic: string,
    partition: number,
    batch: Uint8Array,
    sendKey: number,
  ): Promise<SendHalfResult> {
    this.assertServing();
    const live = this.undecided(id);
    // In a cluster, a session sending for the group's transaction is a member (check-backs reach it
    // on the coordinator it reaches now, also after a move).
    if (this.cluster !== null) this.register(session, live.record.group);
    if (isInternalTopicName(topic)) {
      throw new InvalidArgumentError(`topic '${topic}' is internal: only the broker writes to it`);
    }
    const target = this.topics.partitionOf(topic, partition);
    if (!(batch instanceof Uint8Array)) throw new InvalidArgumentError('batch must be a Uint8Array');
    const fields = validateBatch(batch, { crc32c: crc32cOfBytes, baseOffset: 0 });
    if (fields.batchLength !== batch.length) {
      throw new InvalidBatchError(
        `${batch.length} bytes given for a batch of ${fields.batchLength}: a send takes exactly one batch`,
      );
    }
    if ((fields.attributes & BatchAttributes.delayed) !== 0) {
      // Delayed: each record due at `sw-deliver-at` or `sw-delay-ms` after the commit (checked now).
      // In a cluster the commit hands it to the delay service (finishCommitForwarded).
      if (this.scheduleDelayed === null) {
        throw new InvalidArgumentError('delayed messages are not supported by this broker');
      }
      checkDelayedBatch(batch, this.clock.nowMs());
    }
    if ((fields.attributes & (BatchAttributes.transactional | BatchAttributes.control)) !== 0) {
      throw new InvalidBatchError('a half batch is sent as a plain batch (no transactional or control bit)');
    }
    if (fields.producerId !== -1) {
      throw new InvalidArgumentError(
        'idempotent batches (producerId >= 0) cannot be sent inside a transaction',
      );
    }
    // Msg-id dedup does not apply to a commit's copies (on a single broker they are appended past
    // it; in a cluster a forwarded copy with msgIds would be refused at the target): refused here.
    if (this.topics.topicNamed(topic).config.dedupWindowMs > 0 && batchMsgIds(batch) !== null) {
      throw new InvalidBatchError(
        `topic '${topic}' deduplicates by msgId: a transaction's batch cannot carry msgIds (${msgIdHeader} headers); msg-id dedup does not apply inside transactions`,
      );
    }
    if (batch.length > transactionHalfBatchBytesMax) {
      throw new SpillwayError(
        'TRANSACTION_TOO_LARGE',
        `a half batch of ${batch.length} bytes exceeds transactionHalfBatchBytesMax ${transactionHalfBatchBytesMax}`,
      );
    }
    if (live.halfBytes + batch.length > transactionHalfBytesMax) {
      throw new SpillwayError(
        'TRANSACTION_TOO_LARGE',
        `transaction ${id} would hold ${live.halfBytes + batch.length} bytes of half messages (transactionHalfBytesMax ${transactionHalfBytesMax})`,
      );
    }
    if (live.halves.length + live.sendsInFlight >= transactionHalfBatchesMax) {
      throw new SpillwayError(
        'TRANSACTION_TOO_LARGE',
        `transaction ${id} holds ${transactionHalfBatchesMax} half batches (transactionHalfBatchesMax)`,
      );
    }
    this.diskReserve.admit(batch.length, `transactional send to ${topic}/${partition}`);
    const bytes = batch.length;
    const records = fields.recordCount;
    live.halfBytes += bytes;
    this.halfBytesTotal += bytes;
    live.sendsInFlight++;
    this.lifecycle.begin();
    let stored: Promise<AppendResult>;
    const epoch = this.serviceEpoch;
    try {
      stored = this.halfLog.append(
        id,
        topic,
        partition,
        batch,
        target.durability,
        this.clock.nowMs(),
        sendKey,
      );
      const replicate = this.replicateHalves;
      if (this.cluster !== null && replicate !== null) {
        // Answered once the in-sync replicas of `__txn_half` have it (a new coordinator has it).
        stored = stored.then((appended) => replicate(appended.lastOffset + 1).then(() => appended));
      }
    } catch (error) {
      this.halfFailed(live, bytes);
      throw error;
    }
    return stored.then(
      (appended) => {
        if (this.serviceEpoch !== epoch) {
          // Stopped meanwhile: `live` was dropped with the state (the half is the next term's to find).
          this.halfSettled(live);
          throw this.notCoordinating();
        }
        const halfOffset = appended.baseOffset;
        live.halves.push({ halfOffset, topic, partition, bytes, records, sendKey });
        live.halfRecords += records;
        this.halfSettled(live);
        return { halfOffset, records };
      },
      (error: unknown) => {
        if (this.serviceEpoch !== epoch) {
          this.halfSettled(live);
          throw this.notCoordinating();
        }
        this.halfFailed(live, bytes);
        throw error;
      },
    );
  }

  /** A half of `live` was not stored: its bytes are not held; see halfSettled. */
  private halfFailed(live: LiveTransaction, bytes: number): void {
    live.halfBytes -= bytes;
    this.halfBytesTotal -= bytes;
    this.halfSettled(live);
  }

  /** A send of `live` settled: who waits for its sends to settle goes on. */
  private halfSettled(live: LiveTransaction): void {
    live.sendsInFlight--;
    if (live.sendsInFlight === 0 && live.sendsIdle !== null) {
      const waiting = live.sendsIdle;
      live.sendsIdle = null;
      for (const idle of waiting) idle();
    }
    this.lifecycle.settled();
  }

  end(session: Session | null, id: number, decision: TransactionDecision): Promise<EndTransactionResult> {
    if (this.cluster !== null && session !== null && this.notServing === null) {
      const group = this.live.get(id)?.record.group;
      if (group !== undefined) this.register(session, group);
    }
    return this.decide(id, decision, 'producer');
  }

  groupOf(id: number): string | null {
    return this.live.get(id)?.record.group ?? null;
  }

  list(): TransactionInfo[] {
    const now = this.clock.nowMs();
    const infos: TransactionInfo[] = [];
    for (const live of this.live.values()) {
      const { record } = live;
      if (record.state !== 'open' && record.state !== 'committing') continue;
      infos.push({
        id: record.id,
        group: record.group,
        state: record.state,
        beganAtMs: record.beganAtMs,
        ageMs: Math.max(0, now - record.beganAtMs),
        checks: record.checks,
        maxChecks: record.maxChecks,
        nextCheckAtMs: record.nextCheckAtMs,
        halves: live.halves.length,
        messages: live.halfRecords,
        halfBytes: live.halfBytes,
      });
    }
    return infos.sort((a, b) => a.id - b.id);
  }

  stats(): TransactionStats {
    let open = 0;
    let committing = 0;
    for (const live of this.live.values()) {
      if (live.record.state === 'open') open++;
      else if (live.record.state === 'committing') committing++;
    }
    return {
      open,
      committing,
      committed: this.counters.committed,
      rolledBack: this.counters.rolledBack,
      timedOut: this.counters.timedOut,
      checksSent: this.counters.checksSent,
      checksWithoutProducer: this.counters.checksWithoutProducer,
      checkAnswers: { ...this.counters.checkAnswers },
      halfBytes: this.halfBytesTotal,
    };
  }

  /** Stops the check-back clock (the broker is closing); unfinished transactions resume at the next open. */
  close(): void {
    // Open transactions survive a clean close: their begin records go now (the state log closes after).
    this.recordBegins();
    this.writeCommitted();
    this.clock.clearTimer(this.timer);
    this.timer = null;
    this.clock.clearTimer(this.cleanupTimer);
    this.cleanupTimer = null;
    this.schedule.clear();
    this.forwarder?.close('the broker is closing');
  }

  /**
   * Where a committed batch goes: appended to (topic, partition), synchronously (the offset is
   * assigned before this returns a promise), acknowledged under the topic's durability. Every batch
   * a commit makes visible passes here, once.
   */
  deliverCommitted(topic: string, partition: number, batch: Uint8Array): Promise<unknown> {
    const view = new DataView(batch.buffer, batch.byteOffset, batch.length);
    if ((view.getUint16(BatchHeader.attributes, true) & BatchAttributes.delayed) !== 0) {
      // A delayed batch goes to the delay service, idempotently per (transaction id, index): its
      // delays count from the decision time recorded with the commit (the same after a restart).
      const id = Number(view.getBigInt64(BatchHeader.producerId, true));
      const commitMs = this.live.get(id)?.record.decidedAtMs ?? this.clock.nowMs();
      if (this.scheduleDelayed === null) {
        return Promise.reject(new InvalidArgumentError('delayed messages are not supported by this broker'));
      }
      return this.scheduleDelayed(topic, partition, batch, commitMs);
    }
    return this.topics.partitionOf(topic, partition).log.append(batch);
  }

  /** Applies a decision once; see the header. */
  private async decide(
    id: number,
    decision: TransactionDecision,
    by: DecidedBy,
  ): Promise<EndTransactionResult> {
    this.assertServing();
    if (decision !== 'commit' && decision !== 'rollback') {
      throw new InvalidArgumentError(`decision must be 'commit' or 'rollback', got ${String(decision)}`);
    }
    const live = this.live.get(id);
    if (live === undefined) return this.repeatedDecision(id, decision, this.machine.outcomes.get(id));
    if (live.decision !== null && live.decision !== decision) {
      const rolledBack = live.decision === 'rollback';
      throw new SpillwayError(
        rolledBack ? 'TRANSACTION_ROLLED_BACK' : 'TRANSACTION_COMMITTED',
        `transaction ${id} is being ${rolledBack ? 'rolled back' : 'committed'} ${describeDecision(live.record)}`,
      );
    }
    const epoch = this.serviceEpoch;
    if (live.ending !== null) {
      let result: EndTransactionResult;
      try {
        result = await live.ending;
      } catch (error) {
        this.assertServingSince(epoch);
        throw error;
      }
      this.assertServingSince(epoch);
      return { ...result, duplicate: true };
    }
    live.decision = decision;
    this.lifecycle.begin();
    try {
      live.ending = decision === 'commit' ? this.commit(live, by) : this.rollback(live, by);
      const result = await live.ending;
      this.assertServingSince(epoch);
      return result;
    } catch (error) {
      // Stopped meanwhile: the next coordinator has what was decided durably (a resent END gets it).
      this.assertServingSince(epoch);
      // Nothing was decided durably (or, committing, the delivery failed: a later END retries it).
      if (live.record.state === 'open') live.decision = null;
      live.ending = null;
      throw error;
    } finally {
      this.lifecycle.settled();
    }
  }

  private repeatedDecision(
    id: number,
    decision: TransactionDecision,
    outcome: TransactionOutcome | undefined,
  ): EndTransactionResult {
    if (outcome === undefined) {
      throw new SpillwayError(
        'UNKNOWN_TRANSACTION',
        `no transaction ${id} here: never begun on this broker, or decided long ago (the newest outcomes are kept)`,
      );
    }
    const committed = outcome.state === 'committed';
    if (committed !== (decision === 'commit')) {
      throw new SpillwayError(
        committed ? 'TRANSACTION_COMMITTED' : 'TRANSACTION_ROLLED_BACK',
        `transaction ${id} was already ${committed ? 'committed' : 'rolled back'} ${describeDecision(outcome)}`,
      );
    }
    return this.result(outcome, true);
  }

  private result(
    record: Pick<TransactionRecord, 'id' | 'state' | 'decidedBy' | 'messages'>,
    duplicate: boolean,
  ): EndTransactionResult {
    return {
      id: record.id,
      outcome: record.state === 'committed' || record.state === 'committing' ? 'committed' : 'rolled-back',
      duplicate,
      decidedBy: record.decidedBy ?? 'producer',
      messages: record.messages,
    };
  }

  private waitForSends(live: LiveTransaction): Promise<void> {
    if (live.sendsInFlight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      live.sendsIdle ??= [];
      live.sendsIdle.push(resolve);
    });
  }

  private async rollback(live: LiveTransaction, by: DecidedBy): Promise<EndTransactionResult> {
    if (live.sendsInFlight > 0) await this.waitForSends(live);
    const record: TransactionRecord = {
      ...live.record,
      state: 'rolled-back',
      decidedBy: by,
      decidedAtMs: this.clock.nowMs(),
      messages: live.halfRecords,
      targets: [],
    };
    live.recorded = true;
    await this.state.commit({ kind: 'transaction', record });
    live.record = record;
    this.forget(live);
    this.counters.rolledBack++;
    if (by === 'timeout') {
      this.counters.timedOut++;
      this.onLog(
        `transaction ${record.id} of producer group '${record.group}' rolled back: undecided after ${record.checks} check-backs (${live.halfRecords} messages discarded)`,
      );
    }
    return this.result(record, false);
  }

  private async commit(live: LiveTransaction, by: DecidedBy): Promise<EndTransactionResult> {
    if (live.record.state === 'committing') {
      // A commit whose delivery failed earlier: deliver what is missing.
      return this.finishCommit(live, this.cluster !== null ? null : this.deliveredHalves(live.record), true);
    }
    if (live.sendsInFlight > 0) await this.waitForSends(live);
    live.halves.sort((a, b) => a.halfOffset - b.halfOffset);
    const targets: CommitTarget[] =
      this.cluster !== null ? await this.clusterTargets(live.halves) : this.localTargets(live.halves);
    const record: TransactionRecord = {
      ...live.record,
      state: 'committing',
      decidedBy: by,
      decidedAtMs: this.clock.nowMs(),
      messages: live.halfRecords,
      targets,
    };
    live.recorded = true;
    await this.state.commit({ kind: 'transaction', record });
    live.record = record;
    return this.finishCommit(live, nothingDelivered, true);
  }

  /**
   * Cluster: each target partition of `halves` with an offset at or below where this commit's copies
   * will land: the log end after this term's last copy there, else the log end the partition's
   * leader reports (a scan from the end: nothing of this service is returned, and it fences nothing
   * newer than this term).
   */
  private async clusterTargets(halves: readonly HalfLocation[]): Promise<CommitTarget[]> {
    const forwarder = this.forwarder;
    if (forwarder === null) throw this.notCoordinating();
    const targets: CommitTarget[] = [];
    const ends: Array<Promise<number>> = [];
    for (const half of halves) {
      if (hasTarget(targets, half.topic, half.partition)) continue;
      targets.push({ topic: half.topic, partition: half.partition, fromOffset: 0 });
      const known = this.copiedEnds.get(`${half.partition} ${half.topic}`);
      ends.push(
        known !== undefined
          ? Promise.resolve(known)
          : forwarder.scan(half.topic, half.partition, Number.MAX_SAFE_INTEGER, ignoreBatch),
      );
    }
    const offsets = await Promise.all(ends);
    return targets.map((target, index) => ({ ...target, fromOffset: offsets[index]! }));
  }

  /** Each target partition of `halves` with its log end now (a single broker). */
  private localTargets(halves: readonly HalfLocation[]): CommitTarget[] {
    const targets: CommitTarget[] = [];
    // Few halves (the common case): a linear look, without a key string per half and a set per commit.
    const seen = halves.length > 8 ? new Set<string>() : null;
    for (const half of halves) {
      if (seen === null) {
        if (hasTarget(targets, half.topic, half.partition)) continue;
      } else {
        const key = `${half.partition} ${half.topic}`;
        if (seen.has(key)) continue;
        seen.add(key);
      }
      const partition = this.topics.partitionOf(half.topic, half.partition);
      targets.push({ topic: half.topic, partition: half.partition, fromOffset: partition.log.logEndOffset });
    }
    return targets;
  }

  /**
   * Delivers the halves not in `delivered` (indexes) in one commit round, then records the end.
   * `retry`: on a failed delivery, try again every second while the broker is open.
   */
  private async finishCommit(
    live: LiveTransaction,
    delivered: ReadonlySet<number> | null,
    retry: boolean,
  ): Promise<EndTransactionResult> {
    if (this.cluster !== null) return this.finishCommitForwarded(live, delivered);
    return this.finishCommitLocal(live, delivered ?? nothingDelivered, retry);
  }

  /**
   * Cluster: copies the halves not in `delivered` (null: not known, scan the targets for this
   * transaction's stamps first) through the term's forwarder, in index order (per target partition,
   * in that order), then records the end. The forwarder retries what is retriable until the term
   * ends; a deleted target's halves are dropped (logged).
   */
  private async finishCommitForwarded(
    live: LiveTransaction,
    delivered: ReadonlySet<number> | null,
  ): Promise<EndTransactionResult> {
    const forwarder = this.forwarder;
    if (forwarder === null) throw this.notCoordinating();
    const id = live.record.id;
    const copied = delivered ?? (await this.forwardedHalves(forwarder, live.record));
    const copies: Array<Promise<void>> = [];
    for (let index = 0; index < live.halves.length; index++) {
      if (copied.has(index)) continue;
      const half = live.halves[index]!;
      const key = `${half.partition} ${half.topic}`;
      const bytes = this.halfLog.read(half.halfOffset);
      const delayed =
        (new DataView(bytes.buffer, bytes.byteOffset, bytes.length).getUint16(BatchHeader.attributes, true) &
          BatchAttributes.delayed) !==
        0;
      copies.push(
        (delayed
          ? this.handDelayed(forwarder, live, index)
          : forwarder.append(half.topic, half.partition, stampForwardedBatch(bytes, id, index))
        ).then(
          (result) => {
            if (result === null) return; // a delayed half: nothing was copied into the target
            if (forwarder === this.forwarder) {
              this.copiedEnds.set(key, Math.max(this.copiedEnds.get(key) ?? 0, result.lastOffset + 1));
            }
          },
          (error: unknown) => {
            if (
              error instanceof SpillwayError &&
              (error.code === 'UNKNOWN_TOPIC' || error.code === 'UNKNOWN_PARTITION')
            ) {
              this.onLog(
                `transaction ${id}: ${half.topic}/${half.partition} no longer exists; its messages are dropped`,
              );
              return;
            }
            throw error;
          },
        ),
      );
    }
    const outcomes = await Promise.allSettled(copies);
    if (forwarder !== this.forwarder) throw this.notCoordinating();
    const failed = outcomes.find((outcome) => outcome.status === 'rejected');
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    return this.committedNowDone(live);
  }

  /**
   * Cluster: hands delayed half `index` of a committed transaction to the delay service (wherever
   * `__delay` is led: `scheduleDelayed`, DELAY_SCHEDULE_COMMITTED) stamped as on a single broker
   * (producerId = the id, baseSequence = the index), its delays counting from the decision's
   * `decidedAtMs` (recorded: a later coordinator sends the same). The delay service answers a known
   * (id, index) with its first result, so every coordinator finishing the commit sends it again
   * (nothing is copied into the target to scan for). Retriable errors (NOT_COORDINATOR while the
   * delay service moves, a lost connection) are retried with backoff until this term ends.
   */
  private async handDelayed(
    forwarder: TransactionForwarder,
    live: LiveTransaction,
    index: number,
  ): Promise<null> {
    const { id, decidedAtMs } = live.record;
    const half = live.halves[index]!;
    let backoff = transactionDelayRetryMsMin;
    for (;;) {
      if (forwarder !== this.forwarder) throw this.notCoordinating();
      const schedule = this.scheduleDelayed;
      if (schedule === null)
        throw new InvalidArgumentError('delayed messages are not supported by this broker');
      const batch = stampCommittedBatch(this.halfLog.read(half.halfOffset).slice(), id, index);
      try {
        await schedule(half.topic, half.partition, batch, decidedAtMs ?? this.clock.nowMs());
        return null;
      } catch (error) {
        if (error instanceof SpillwayError && !error.retriable) throw error;
      }
      await new Promise((resolve) => this.clock.setTimeout(() => resolve(null), backoff, { unref: true }));
      backoff = Math.min(backoff * 2, transactionDelayRetryMsMax);
    }
  }

  /** Cluster: indexes of the halves of a committing transaction already copied (found by their stamp). */
  private async forwardedHalves(
    forwarder: TransactionForwarder,
    record: TransactionRecord,
  ): Promise<Set<number>> {
    const copied = new Set<number>();
    await Promise.all(
      record.targets.map((target) =>
        forwarder
          .scan(target.topic, target.partition, target.fromOffset, (batch) => {
            const stamp = forwardedStampOf(batch);
            if (stamp !== null && stamp.id === record.id) copied.add(stamp.index);
          })
          .catch((error: unknown) => {
            // A deleted target: nothing to copy there (finishCommitForwarded drops its halves).
            if (
              error instanceof SpillwayError &&
              (error.code === 'UNKNOWN_TOPIC' || error.code === 'UNKNOWN_PARTITION')
            ) {
              return 0;
            }
            throw error;
          }),
      ),
    );
    return copied;
  }

  private async finishCommitLocal(
    live: LiveTransaction,
    delivered: ReadonlySet<number>,
    retry: boolean,
  ): Promise<EndTransactionResult> {
    const id = live.record.id;
    const deliveries = [];
    for (let index = 0; index < live.halves.length; index++) {
      if (delivered.has(index)) continue;
      const half = live.halves[index]!;
      let partition: Partition;
      try {
        partition = this.topics.partitionOf(half.topic, half.partition);
      } catch (error) {
        if (!(error instanceof UnknownTopicError || error instanceof UnknownPartitionError)) throw error;
        // Deleted after the decision: nothing to deliver there.
        this.onLog(
          `transaction ${id}: ${half.topic}/${half.partition} no longer exists; its messages are dropped`,
        );
        continue;
      }
      deliveries.push({
        partition,
        deliver: () =>
          this.deliverCommitted(
            half.topic,
            half.partition,
            stampCommittedBatch(this.halfLog.read(half.halfOffset), id, index),
          ),
      });
    }
    if (deliveries.length > 0) {
      const round: CommitRound = this.rounds.start(deliveries);
      for (;;) {
        try {
          await round.run();
          break;
        } catch (error) {
          if (!retry || this.lifecycle.closing) {
            round.abandon();
            throw error;
          }
          this.onLog(
            `transaction ${id}: delivering its committed messages failed (${String(error)}); retrying`,
          );
          await new Promise<void>((resolve) => this.clock.setTimeout(resolve, 1000, { unref: true }));
        }
      }
    }
    return this.committedNowDone(live);
  }

  /** Every half of `live` is delivered: it is committed (its end recorded with this turn's). */
  private committedNowDone(live: LiveTransaction): EndTransactionResult {
    const record: TransactionRecord = { ...live.record, state: 'committed', targets: [] };
    live.record = record;
    this.counters.committed++;
    this.halfBytesTotal -= live.halfBytes;
    this.decrementSession(live);
    this.recordCommitted(live);
    return this.result(record, false);
  }

  /**
   * Records that `live` is committed: one `committed` entry (its id with those of every other commit
   * finished in this turn, written at the end of the turn's microtasks). Not awaited by the commit:
   * a crash before it is durable redoes nothing (the stamps say what was delivered).
   */
  private recordCommitted(live: LiveTransaction): void {
    this.committedNow.push(live);
    if (this.committedNow.length === 1) process.nextTick(this.writeCommitted);
  }

  private readonly writeCommitted = (): void => {
    const finished = this.committedNow;
    this.committedNow = [];
    if (finished.length === 0) return;
    const ids = finished.map((live) => live.record.id);
    this.state.commit({ kind: 'committed', ids }).then(
      () => {
        for (const live of finished) {
          if (this.live.get(live.record.id) === live) this.live.delete(live.record.id);
        }
      },
      (error: unknown) => {
        // Stopped (a cluster coordinator moved): the next term finishes them again from the logs.
        if (!this.serving) return;
        this.onLog(
          `transactions ${ids[0]}..${ids.at(-1)} (${ids.length}): recording their end failed (${String(error)})`,
        );
      },
    );
  };

  /** Indexes of the halves of a committing transaction already in their targets (stamped batches). */
  private deliveredHalves(record: TransactionRecord): Set<number> {
    const delivered = new Set<number>();
    for (const target of record.targets) {
      let log: LogStore;
      try {
        log = this.topics.partitionOf(target.topic, target.partition).log;
      } catch (error) {
        if (error instanceof UnknownTopicError) continue;
        throw error;
      }
      let offset = Math.max(target.fromOffset, log.logStartOffset);
      while (offset < log.logEndOffset) {
        const result = log.read(offset, 1024 * 1024);
        if (result.batchCount === 0) break;
        const bytes = result.bytes;
        let position = 0;
        while (position < bytes.length) {
          const view = new DataView(bytes.buffer, bytes.byteOffset + position, BatchHeader.size);
          const transactional =
            (view.getUint16(BatchHeader.attributes, true) & BatchAttributes.transactional) !== 0;
          if (transactional && Number(view.getBigInt64(BatchHeader.producerId, true)) === record.id) {
            delivered.add(view.getInt32(BatchHeader.baseSequence, true));
          }
          position += batchLengthAt(bytes, position);
        }
        offset = result.nextOffset;
      }
    }
    return delivered;
  }

  /** An undecided live transaction, or the error saying why not. */
  private undecided(id: number): LiveTransaction {
    const live = this.live.get(id);
    if (live !== undefined && live.decision === null) return live;
    const record = live?.record ?? this.machine.outcomes.get(id);
    if (record === undefined) {
      throw new SpillwayError(
        'UNKNOWN_TRANSACTION',
        `no transaction ${id} here (never begun, or long decided)`,
      );
    }
    const committed = live !== undefined ? live.decision === 'commit' : record.state === 'committed';
    throw new SpillwayError(
      committed ? 'TRANSACTION_COMMITTED' : 'TRANSACTION_ROLLED_BACK',
      `transaction ${id} is ${committed ? 'committed' : 'rolled back'} ${describeDecision(record)}: no more sends`,
    );
  }

  private forget(live: LiveTransaction): void {
    this.live.delete(live.record.id);
    this.halfBytesTotal -= live.halfBytes;
    this.decrementSession(live);
  }

  private decrementSession(live: LiveTransaction): void {
    const sessionId = live.sessionId;
    if (sessionId === null) return;
    live.sessionId = null;
    const count = this.openPerSession.get(sessionId);
    if (count !== undefined) this.openPerSession.set(sessionId, count - 1);
  }

  private scheduleCheck(live: LiveTransaction): void {
    const at = live.record.nextCheckAtMs;
    this.schedule.push(at, live.record.id);
    if (at < this.timerAtMs) this.arm();
  }

  private arm(): void {
    this.clock.clearTimer(this.timer);
    this.timer = null;
    this.timerAtMs = Number.POSITIVE_INFINITY;
    const next = this.schedule.peekAtMs();
    if (next === null || this.lifecycle.closing) return;
    this.timerAtMs = next;
    this.timer = this.clock.setTimeout(() => this.onTimer(), Math.max(0, next - this.clock.nowMs()), {
      unref: true,
    });
  }

  private onTimer(): void {
    this.timer = null;
    this.timerAtMs = Number.POSITIVE_INFINITY;
    const now = this.clock.nowMs();
    while (this.schedule.size > 0 && this.schedule.peekAtMs()! <= now) {
      const at = this.schedule.peekAtMs()!;
      const live = this.live.get(this.schedule.pop());
      if (live === undefined || live.decision !== null || live.record.nextCheckAtMs !== at) continue;
      void this.check(live);
    }
    this.arm();
  }

  /** One check-back of an undecided transaction, or its rollback once maxChecks were made. */
  private async check(live: LiveTransaction): Promise<void> {
    const record = live.record;
    if (record.checks >= record.maxChecks) {
      await this.decide(record.id, 'rollback', 'timeout').catch((error: unknown) => {
        this.onLog(`transaction ${record.id}: the timeout rollback failed (${String(error)})`);
      });
      return;
    }
    const checks = record.checks + 1;
    const waitMs = Math.max(
      record.checkAfterMs,
      Math.min(record.checkAfterMs * 2 ** checks, transactionCheckBackoffMsMax),
    );
    live.record = { ...record, checks, nextCheckAtMs: this.clock.nowMs() + waitMs };
    live.recorded = true;
    this.scheduleCheck(live);
    this.counters.checksSent++;
    try {
      await this.state.commit({ kind: 'transaction', record: live.record });
    } catch (error) {
      if (this.serving)
        this.onLog(`transaction ${record.id}: recording a check-back failed (${String(error)})`);
      return;
    }
    const answer = await this.ask(live.record);
    if (answer === null || answer === 'unknown') return;
    if (live.decision !== null) return;
    await this.decide(record.id, answer, 'check-back').catch((error: unknown) => {
      this.onLog(
        `transaction ${record.id}: applying the check-back answer '${answer}' failed (${String(error)})`,
      );
    });
  }

  /** Asks connected members of the group in turn until one answers; null when none does. */
  private async ask(record: TransactionRecord): Promise<CheckAnswer | null> {
    const members = [...(this.groups.get(record.group) ?? [])].filter((session) => session.canRequest);
    if (members.length === 0) {
      this.counters.checksWithoutProducer++;
      return null;
    }
    const start = (this.nextMember.get(record.group) ?? 0) % members.length;
    this.nextMember.set(record.group, start + 1);
    for (let i = 0; i < Math.min(members.length, 3); i++) {
      const session = members[(start + i) % members.length]!;
      try {
        const answer = await session.request(
          Opcode.txnCheck,
          { id: record.id, group: record.group, beganAtMs: record.beganAtMs, checks: record.checks },
          undefined,
          { timeoutMs: Math.min(transactionCheckTimeoutMs, record.checkAfterMs) },
        );
        const decision = (answer.header as { decision?: unknown } | null)?.decision;
        if (decision === 'commit' || decision === 'rollback' || decision === 'unknown') {
          this.counters.checkAnswers[decision]++;
          return decision;
        }
        this.counters.checkAnswers.failed++;
      } catch {
        this.counters.checkAnswers.failed++;
      }
    }
    return null;
  }

  /** Deletes `__txn_half` segments below every unfinished transaction's halves. */
  private cleanHalves(): void {
    if (this.lifecycle.closing || this.notServing !== null) return;
    let floor = this.halfLog.endOffset;
    for (const live of this.live.values()) floor = Math.min(floor, live.record.halfFrom);
    try {
      this.halfLog.log.deleteBelow(floor);
    } catch (error) {
      this.onLog(`cleaning ${'__txn_half'} failed (${String(error)}); retried later`);
    }
  }
}
