/**
 * The follower role of one partition replica (docs/CLUSTER-REPLICATION.md): pulls the leader's
 * batches with REPLICA_FETCH over the WebSocket protocol and appends them unchanged, at the leader's
 * offsets, so its log ends up byte-identical to the leader's (the log patches baseOffset with its
 * log end, which is the batch's own baseOffset: checked before each append).
 *
 * Before its first fetch of an epoch (and again whenever the leader says its fetch offset is past
 * the leader's log end), it truncates its log to where its leader epoch history and the leader's
 * diverge (KIP-101/KIP-279, OFFSET_FOR_LEADER_EPOCH):
 *   - asks the leader where its latest epoch E ends: the leader answers its largest epoch E' <= E
 *     and the start of its next epoch (or its log end);
 *   - E' == E: truncate to min(that end, own log end); E' < E: to min(that end, where E' ends in
 *     its own history); E' == -1 (the leader knows none of its epochs): to its first epoch's start.
 * Never by the high watermark: that could cut acknowledged records (KIP-101's first scenario) or
 * keep a divergent tail (its second).
 *
 * With durability `always` each fetch's appends are awaited (fdatasync'd) before the next fetch, so
 * the durable offset it reports is its log end: that is what the leader counts for `acks: 'all'`.
 * Produces to a follower fail with NOT_LEADER; consumers of a follower see up to the leader's high
 * watermark as last heard (never past its own log end).
 *
 * Errors: connection loss, timeouts and NOT_LEADER / FENCED_LEADER_EPOCH (metadata not yet
 * converged) are retried with a backoff (50 ms doubling to 1 s) until the control plane assigns
 * something else (`stop`); a closed log (the broker closing) ends the loop.
 */
import type { Partition } from '../../broker/partition.js';
import type { PartitionReplica } from '../../broker/partition-replica.js';
import type { Transport } from '../../client/transport.js';
import { CorruptBatchError, SpillwayError } from '../../errors.js';
import { BatchHeader, batchBaseOffset, batchLengthAt, checkBatchHeader } from '../../format/batch-header.js';
import { crc32c } from '../../native.js';
import { Opcode } from '../../protocol/opcodes.js';
import type {
  OffsetForLeaderEpochRequest,
  OffsetForLeaderEpochResult,
  ProduceOptions,
  ReplicaFetchRequest,
  ReplicaPartitionStats,
} from '../../protocol/replication-api.js';
import type { PartitionAssignment } from '../partition-role.js';
import type { LeaderEpochHistory } from './leader-epoch-history.js';
import type { ReplicaContext } from './replica-context.js';

const backoffMsMin = 50;
const backoffMsMax = 1000;
/** Codes after which the loop stops: the log or broker is gone. */
const finalCodes: ReadonlySet<string> = new Set(['LOG_CLOSED', 'BROKER_CLOSING', 'PARTITION_DAMAGED']);

/** The REPLICA_FETCH answer header (the batches are the frame body). */
interface ReplicaFetchHeader {
  nextOffset: number;
  /** The leader's log start (absent from older leaders): see followLogStart. */
  logStartOffset?: unknown;
  logEndOffset: number;
  highWatermark: number;
  epochs: Array<[number, number]>;
}

function isNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value);
}

function parseFetchHeader(header: unknown): ReplicaFetchHeader {
  const fields = (header ?? {}) as Record<string, unknown>;
  const epochs = fields['epochs'];
  if (
    !isNumber(fields['nextOffset']) ||
    !isNumber(fields['logEndOffset']) ||
    !isNumber(fields['highWatermark']) ||
    !Array.isArray(epochs) ||
    !epochs.every((entry) => Array.isArray(entry) && entry.length === 2 && entry.every(isNumber))
  ) {
    throw new SpillwayError('PROTOCOL_ERROR', 'malformed REPLICA_FETCH answer');
  }
  return fields as unknown as ReplicaFetchHeader;
}

export class PartitionFollower implements PartitionReplica {
  readonly epoch: number;
  readonly leaderId: number;
  private readonly replicaCount: number;
  private readonly partition: Partition;
  private readonly history: LeaderEpochHistory;
  private readonly context: ReplicaContext;
  private readonly connect: () => Promise<Transport>;
  private leaderHighWatermark: number;
  private readonly abort = new AbortController();
  private loop: Promise<void> | null = null;
  private lastWarning = '';
  /** Truncations made since the role began (tests). */
  truncations = 0;

  constructor(
    partition: Partition,
    assignment: PartitionAssignment,
    history: LeaderEpochHistory,
    context: ReplicaContext,
    connect: () => Promise<Transport>,
    initialHighWatermark: number,
  ) {
    this.partition = partition;
    this.epoch = assignment.leaderEpoch;
    this.leaderId = assignment.leaderId;
    this.replicaCount = assignment.replicas.length;
    this.history = history;
    this.context = context;
    this.connect = connect;
    this.leaderHighWatermark = initialHighWatermark;
  }

  get highWatermark(): number {
    const log = this.partition.openLog;
    return log === null ? this.leaderHighWatermark : Math.min(this.leaderHighWatermark, log.logEndOffset);
  }

  /** Metrics: the HW as last heard from the leader (the leader keeps the ISR and the lags). */
  stats(): ReplicaPartitionStats {
    const log = this.partition.openLog;
    return {
      topic: this.partition.topic,
      partition: this.partition.index,
      role: 'follower',
      leaderEpoch: this.epoch,
      highWatermark: this.highWatermark,
      logEndOffset: log === null ? this.highWatermark : log.logEndOffset,
      isrSize: 0,
      replicaCount: this.replicaCount,
      followers: [],
    };
  }

  admitProduce(_options: ProduceOptions | undefined): void {
    throw new SpillwayError(
      'NOT_LEADER',
      `not the leader of ${this.partition.topic}/${this.partition.index}: broker ${this.leaderId} leads it at epoch ${this.epoch}`,
    );
  }

  appended(): void {}

  replicated(_endOffset: number, options: ProduceOptions | undefined): Promise<void> {
    try {
      this.admitProduce(options);
    } catch (error) {
      return Promise.reject(error);
    }
    return Promise.resolve();
  }

  /** Starts pulling from the leader (truncating first). */
  start(): void {
    if (this.loop === null) this.loop = this.run();
  }

  /** Stops pulling; resolves once the append in progress (if any) has ended. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    let truncated = false;
    let backoffMs = backoffMsMin;
    while (!signal.aborted) {
      try {
        const transport = await this.connect();
        if (signal.aborted) break;
        if (!truncated) {
          await this.truncateToLeader(transport);
          truncated = true;
        }
        await this.fetchOnce(transport);
        backoffMs = backoffMsMin;
        this.lastWarning = '';
      } catch (error) {
        if (signal.aborted) break;
        const code = error instanceof SpillwayError ? error.code : 'INTERNAL';
        if (finalCodes.has(code)) break;
        if (code === 'OFFSET_OUT_OF_RANGE') truncated = false;
        const warning = `follower of ${this.partition.topic}/${this.partition.index} (leader ${this.leaderId}, epoch ${this.epoch}): ${error instanceof Error ? error.message : String(error)}`;
        if (warning !== this.lastWarning) this.context.warn(warning);
        this.lastWarning = warning;
        await sleep(backoffMs, signal);
        backoffMs = Math.min(backoffMs * 2, backoffMsMax);
      }
    }
  }

  /** Truncates the log to the divergence point with the leader's epoch history (see the header). */
  private async truncateToLeader(transport: Transport): Promise<void> {
    const log = this.partition.log;
    const logEnd = log.logEndOffset;
    const latest = this.history.latestEpoch;
    let target: number;
    if (latest === -1) {
      // Data written before any epoch (none, for a replica that began empty): the leader's is the truth.
      target = log.logStartOffset;
    } else {
      const request: OffsetForLeaderEpochRequest = {
        topic: this.partition.topic,
        partition: this.partition.index,
        replicaId: this.context.brokerId,
        leaderEpoch: this.epoch,
        epoch: latest,
      };
      const answer = await transport.request(Opcode.offsetForLeaderEpoch, request, undefined, {
        signal: this.abort.signal,
      });
      const { epoch, endOffset } = answer.header as OffsetForLeaderEpochResult;
      if (!isNumber(epoch) || !isNumber(endOffset)) {
        throw new SpillwayError('PROTOCOL_ERROR', 'malformed OFFSET_FOR_LEADER_EPOCH answer');
      }
      if (epoch === -1) target = this.history.entries[0]!.startOffset;
      else if (epoch === latest) target = Math.min(endOffset, logEnd);
      else target = Math.min(endOffset, this.history.endOffsetFor(epoch, logEnd).endOffset);
    }
    if (this.abort.signal.aborted) return;
    target = Math.max(target, log.logStartOffset);
    if (target < logEnd) {
      // The batch holding `target` (a boundary in practice: both logs copied the same batches).
      const boundary = log.read(target, 1).firstOffset;
      // The shortened history is durable before the log is cut: a crash between leaves a history
      // ending before the log (the next truncation cuts more), never one naming cut records.
      await this.history.truncateFromEnd(boundary);
      log.truncateTo(boundary);
      this.truncations++;
      this.context.warn(
        `${this.partition.topic}/${this.partition.index}: truncated from ${logEnd} to ${boundary} to follow broker ${this.leaderId} at epoch ${this.epoch}`,
      );
    } else {
      await this.history.truncateFromEnd(logEnd + 1);
    }
  }

  private async fetchOnce(transport: Transport): Promise<void> {
    const log = this.partition.log;
    const request: ReplicaFetchRequest = {
      topic: this.partition.topic,
      partition: this.partition.index,
      replicaId: this.context.brokerId,
      leaderEpoch: this.epoch,
      fetchOffset: log.logEndOffset,
      durableOffset: Math.min(log.durableOffset, log.logEndOffset),
      highWatermark: this.leaderHighWatermark,
      maxBytes: this.context.replicaFetchMaxBytes,
      maxWaitMs: this.context.replicaFetchMaxWaitMs,
    };
    const receiveBuffers = this.context.receiveBuffers;
    const answer = await transport.request(Opcode.replicaFetch, request, undefined, {
      timeoutMs: this.context.replicaFetchMaxWaitMs + 10_000,
      signal: this.abort.signal,
      bodyBuffer: receiveBuffers.take,
    });
    const pending: Array<Promise<unknown>> = [];
    const before = this.highWatermark;
    let header: ReplicaFetchHeader;
    let appended: number;
    try {
      if (this.abort.signal.aborted) return;
      header = parseFetchHeader(answer.header);
      appended = await this.appendEach(answer.body, header.epochs, pending);
    } catch (error) {
      await Promise.allSettled(pending);
      throw error;
    } finally {
      // The appends have written the body (the log keeps no view of it, LogStore.append): its
      // buffer serves the next answer while these wait for their fdatasync (`always`).
      receiveBuffers.release(answer.body);
    }
    await Promise.all(pending);
    this.leaderHighWatermark = header.highWatermark;
    this.followLogStart(header.logStartOffset);
    if (appended > 0 || this.highWatermark !== before) this.context.wakeConsumers(this.partition);
  }

  /**
   * Deletes the local segments that hold only offsets below the leader's log start, never past the
   * high watermark (Kafka's follower log start offset). Services trim their internal logs on the
   * leader only (`__delay`, `__txn_half`, a state log behind its snapshot): without this a follower's
   * replica of them grew without bound until it led.
   */
  private followLogStart(leaderStart: unknown): void {
    const log = this.partition.log;
    if (!isNumber(leaderStart) || leaderStart <= log.logStartOffset) return;
    const below = Math.min(leaderStart, this.highWatermark, log.logEndOffset);
    if (below > log.logStartOffset) log.deleteBelow(below);
  }

  /**
   * Starts the appends of the batches of `bytes` at their own offsets (into `pending`); returns
   * how many. Awaits only a new leader epoch's commit before its first batch.
   */
  private async appendEach(
    bytes: Uint8Array,
    epochs: Array<[number, number]>,
    pending: Array<Promise<unknown>>,
  ): Promise<number> {
    const log = this.partition.log;
    let position = 0;
    let count = 0;
    while (position < bytes.length) {
      const problem = checkBatchHeader(bytes, position, bytes.length - position);
      if (problem !== null) throw new CorruptBatchError(`REPLICA_FETCH answer: ${problem}`);
      const length = batchLengthAt(bytes, position);
      const baseOffset = batchBaseOffset(bytes, position);
      const at = position + BatchHeader.crc;
      const stored =
        (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0;
      if (crc32c(bytes, 0, position + BatchHeader.crcStart, position + length) !== stored) {
        throw new CorruptBatchError(`REPLICA_FETCH answer: CRC32C mismatch in the batch at ${baseOffset}`);
      }
      if (baseOffset !== log.logEndOffset) {
        throw new SpillwayError(
          'OFFSET_OUT_OF_RANGE',
          `the leader sent a batch at ${baseOffset} for a log ending at ${log.logEndOffset}`,
        );
      }
      let assigned: Promise<void> | null = null;
      for (const [epoch, startOffset] of epochs) {
        if (startOffset <= baseOffset && epoch > this.history.latestEpoch) {
          const latestStart = this.history.entries.at(-1)?.startOffset ?? 0;
          assigned = this.history.assign(epoch, Math.max(startOffset, latestStart));
        }
      }
      // A new epoch is durable in the history before its first batch is appended (leader changes
      // only: the appends of an answer otherwise go out in one turn, one fdatasync).
      if (assigned !== null) {
        await assigned;
        if (this.abort.signal.aborted) break;
      }
      pending.push(log.append(bytes.subarray(position, position + length)));
      position += length;
      count++;
    }
    return count;
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
