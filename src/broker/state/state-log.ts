/**
 * A state log: broker state (topic metadata now; committed offsets, group generations, delay timers,
 * transactions, producer ids later) kept as a state machine (state-machine.ts) over an internal
 * partition log of the storage engine. Every change is an entry appended to the log and applied to the
 * machine once the log acknowledged it under its durability; snapshots of the whole state are written
 * into the same log; recovery is the newest usable snapshot plus a replay of the changes after it
 * (state-log-recovery.ts). The log is the only file: replication copies state by copying the log.
 *
 * Log layout (batches of the record-batch format, docs/FORMAT.md; docs/STATE.md explains the choices):
 *
 *   change batch     attributes 0; one record per entry: key and value as the machine's codec
 *                    encodes them (key: what the entry is about; value: what it is now, null for gone)
 *   snapshot         control batches (attribute bit 5), written back to back in one go:
 *                      offset b        header snapshot=begin, value msgpack { version: 1, entryCount: N }   (a batch of its own)
 *                      offsets b+1..   one entry each, encoded as in change batches, no header (N records)
 *                      offset b+N+1    header snapshot=end, value msgpack { version: 1, entryCount: N, beginOffset: b }   (a batch of its own)
 *                    Its entries rebuild the state as of offset b: every change below b is in it.
 *
 * Writes: `commit(entry)` queues the entry; everything queued in one event-loop turn goes out as one
 * or a few batches (group commit), so many entries share one append and, with `always`, one fdatasync.
 * Entries are applied in log order once their batch is acknowledged, then their commits resolve with
 * the entry's offset. A machine that refuses an entry it was committed is an invariant violation
 * (src/assert.ts aborts the process): callers validate entries before they commit them. After a failed append the state log is failed: every later commit rejects with
 * the same error (the machine would otherwise miss a change that may still be in the log).
 *
 * Snapshots: once the bytes of changes since the last snapshot reach max(snapshotBytesMin,
 * snapshotGrowthFactor x the last snapshot's size), the next turn holds new commits until everything
 * appended is applied, writes the snapshot, then resumes. When a snapshot is acknowledged, the
 * segments below the previous one are deleted: the log keeps the two newest snapshots and every change
 * since the older, so a damaged newest snapshot falls back to the one before.
 *
 * Concurrency: one event loop. `commit` may be called any number of times without awaiting, up to
 * `pendingBytesMax` queued bytes (then it rejects with BACKPRESSURE).
 */
import { assert, unreachable } from '../../assert.js';
import { BackpressureError, InvalidArgumentError, LogClosedError } from '../../errors.js';
import { BatchAttributes } from '../../format/batch-header.js';
import { BatchBuilder } from '../../format/record-batch.js';
import { crc32c as nativeCrc32c } from '../../native.js';
import type { LogStore } from '../../storage/log-store.js';
import {
  recoverState,
  type SnapshotExtent,
  type SnapshotMarker,
  type StateRecoveryReport,
  snapshotMarkerHeader,
} from './state-log-recovery.js';
import { type EncodedEntry, type EntryCodec, type StateMachine, statePackr } from './state-machine.js';

export interface StateLogOptions<Entry> {
  /** Names the log in errors and reports, e.g. `__metadata/0`. */
  name: string;
  log: LogStore;
  machine: StateMachine<Entry>;
  codec: EntryCodec<Entry>;
  /** A snapshot is written once the changes since the last one reach at least this many bytes. Default 16 MiB. */
  snapshotBytesMin?: number;
  /** ... and at least this multiple of the last snapshot's size. Default 2. */
  snapshotGrowthFactor?: number;
  /** Largest batch written. Default 1 MiB; an entry must fit in one. */
  batchBytesMax?: number;
  /** Bytes of entries queued and not yet appended before commit rejects with BACKPRESSURE. Default 64 MiB. */
  pendingBytesMax?: number;
  /** Wall clock for record timestamps. Default Date.now. */
  nowMs?: () => number;
  /**
   * False: the open writes nothing (no snapshot even when one is due) — for a log a replication
   * follower may be writing (a cluster's internal partition before this broker leads it). Default true.
   */
  writeAtOpen?: boolean;
}

export const stateLogDefaults = {
  snapshotBytesMin: 16 * 1024 * 1024,
  snapshotGrowthFactor: 2,
  batchBytesMax: 1024 * 1024,
  pendingBytesMax: 64 * 1024 * 1024,
} as const;

/** What a state log did since it was opened (for describe, metrics, tests and benchmarks). */
export interface StateLogStats {
  committedEntries: number;
  appendedBatches: number;
  snapshotsWritten: number;
  lastSnapshotOffset: number | null;
  /** Bytes of changes appended since the newest snapshot. */
  bytesSinceSnapshot: number;
  /** Where the log starts now (segments behind the older kept snapshot are deleted). */
  logStartOffset: number;
  /** The last error deleting old segments, null when none (kept longer, retried at the next snapshot). */
  cleanupFailure: unknown;
}

interface PendingCommit<Entry> {
  entry: Entry;
  record: EncodedEntry;
  /** Bytes of key and value. */
  bytes: number;
  resolve: (offset: number) => void;
  reject: (error: unknown) => void;
}

/** An appended batch waiting for its acknowledgement; a snapshot batch carries no commits. */
interface InFlightBatch<Entry> {
  baseOffset: number;
  commits: PendingCommit<Entry>[];
  settled: boolean;
  error: unknown;
  /** The batch is in the log but its replication failed (StateLog.replicate): commits reject with it. */
  replicationError: unknown;
  /** For the last batch of a snapshot: the snapshot it completes. */
  completesSnapshot: SnapshotExtent | null;
}

/** Snapshot markers: msgpack maps in the value of the marked records. */
const markerCodec = {
  encode: (marker: SnapshotMarker): Uint8Array => statePackr.pack(marker),
  decode(bytes: Uint8Array): SnapshotMarker {
    const value: unknown = statePackr.unpack(bytes);
    if (typeof value !== 'object' || value === null) throw new Error('snapshot marker is not a map');
    const { version, entryCount, beginOffset } = value as Partial<SnapshotMarker>;
    if (version !== 1) throw new Error(`unknown snapshot marker version ${String(version)}`);
    if (typeof entryCount !== 'number' || !Number.isSafeInteger(entryCount) || entryCount < 0) {
      throw new Error(`snapshot marker entryCount ${String(entryCount)}`);
    }
    if (
      beginOffset !== undefined &&
      (typeof beginOffset !== 'number' || !Number.isSafeInteger(beginOffset))
    ) {
      throw new Error(`snapshot marker beginOffset ${String(beginOffset)}`);
    }
    return beginOffset === undefined ? { version, entryCount } : { version, entryCount, beginOffset };
  },
};

const crc32cOfBytes = (bytes: Uint8Array): number => nativeCrc32c(bytes);
const markerHeaders = {
  begin: [[snapshotMarkerHeader, 'begin']] as Array<[string, string]>,
  end: [[snapshotMarkerHeader, 'end']] as Array<[string, string]>,
};

function positiveOption(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new InvalidArgumentError(
      `state log option ${name} must be a positive number, got ${String(value)}`,
    );
  }
  return value;
}

export class StateLog<Entry> {
  readonly name: string;
  /** What recovery found and did when the state log was opened. */
  readonly recovery: StateRecoveryReport;

  private readonly log: LogStore;
  private readonly machine: StateMachine<Entry>;
  private readonly codec: EntryCodec<Entry>;
  private readonly snapshotBytesMin: number;
  private readonly snapshotGrowthFactor: number;
  private readonly pendingBytesMax: number;
  /** Called after every acknowledged append to the log (e.g. to wake readers of the internal topic). */
  onAppend: (() => void) | null = null;
  /**
   * In a cluster (src/cluster/state-services/): after the local append of a batch ending before
   * `endOffset`, resolves once the in-sync replicas have it (acks 'all' on the internal partition).
   * Its commits resolve only then. A rejection (NOT_LEADER, NOT_ENOUGH_REPLICAS, TIMEOUT) still
   * applies the entries (they are in the local log, like a produce that was written but not
   * acknowledged) and rejects their commits with that error. Null (a single broker): not waited for.
   */
  replicate: ((endOffset: number) => Promise<void>) | null = null;
  private readonly nowMs: () => number;
  private readonly builder: BatchBuilder;
  private pending: PendingCommit<Entry>[] = [];
  private pendingBytes = 0;
  private readonly inFlight: InFlightBatch<Entry>[] = [];
  private flushScheduled = false;
  private snapshotWanted = false;
  /** The newest complete snapshots, oldest first (at most two are needed). */
  private readonly snapshots: SnapshotExtent[];
  private lastSnapshotBytes: number;
  private failure: unknown = null;
  private closed = false;
  private readonly idleWaiters: Array<() => void> = [];
  private readonly counters = { committedEntries: 0, appendedBatches: 0, snapshotsWritten: 0 };
  private cleanupFailure: unknown = null;
  private bytesSinceSnapshot: number;

  private constructor(private readonly options: StateLogOptions<Entry>) {
    this.name = options.name;
    this.log = options.log;
    this.machine = options.machine;
    this.codec = options.codec;
    this.snapshotBytesMin = positiveOption(
      'snapshotBytesMin',
      options.snapshotBytesMin,
      stateLogDefaults.snapshotBytesMin,
    );
    this.snapshotGrowthFactor = positiveOption(
      'snapshotGrowthFactor',
      options.snapshotGrowthFactor,
      stateLogDefaults.snapshotGrowthFactor,
    );
    this.pendingBytesMax = positiveOption(
      'pendingBytesMax',
      options.pendingBytesMax,
      stateLogDefaults.pendingBytesMax,
    );
    const batchBytesMax = positiveOption(
      'batchBytesMax',
      options.batchBytesMax,
      stateLogDefaults.batchBytesMax,
    );
    this.builder = new BatchBuilder({
      maxBatchBytes: batchBytesMax,
      initialBytes: Math.min(batchBytesMax, 64 * 1024),
    });
    this.nowMs = options.nowMs ?? Date.now;
    this.recovery = recoverState(this.log, this.name, this.machine, this.codec, markerCodec.decode);
    this.snapshots = this.recovery.snapshots.slice(-2);
    this.lastSnapshotBytes = this.snapshots.at(-1)?.bytes ?? 0;
    this.bytesSinceSnapshot = this.recovery.replayedBytes;
    if (options.writeAtOpen !== false && this.snapshotDue()) {
      this.snapshotWanted = true;
      this.scheduleFlush();
    }
  }

  private snapshotDue(): boolean {
    return (
      this.bytesSinceSnapshot > 0 &&
      this.bytesSinceSnapshot >=
        Math.max(this.snapshotBytesMin, this.snapshotGrowthFactor * this.lastSnapshotBytes)
    );
  }

  /**
   * Recovers the machine from `options.log` (already open) and returns the running state log.
   * Throws CorruptLogError when the state cannot be rebuilt (state-log-recovery.ts).
   */
  static open<Entry>(options: StateLogOptions<Entry>): StateLog<Entry> {
    return new StateLog(options);
  }

  get stats(): StateLogStats {
    return {
      ...this.counters,
      lastSnapshotOffset: this.snapshots.at(-1)?.beginOffset ?? null,
      bytesSinceSnapshot: this.bytesSinceSnapshot,
      logStartOffset: this.log.logStartOffset,
      cleanupFailure: this.cleanupFailure,
    };
  }

  /**
   * Appends `entry` (with the next entries of this turn, in one batch) and applies it to the machine
   * once the log acknowledged it; resolves with its offset. The machine must accept the entry
   * (validate first): a refusal after the append is an invariant violation.
   */
  commit(entry: Entry): Promise<number> {
    if (this.closed) return Promise.reject(new LogClosedError(`state log ${this.name}`));
    if (this.failure !== null) return Promise.reject(this.failure);
    let record: EncodedEntry;
    try {
      record = this.codec.encode(entry);
    } catch (error) {
      return Promise.reject(error);
    }
    // A string key counts its UTF-16 length: close enough for a bound (keys are short).
    const bytes = (record.key?.length ?? 0) + (record.value?.length ?? 0);
    if (this.pendingBytes + bytes > this.pendingBytesMax) {
      return Promise.reject(
        new BackpressureError(`state log ${this.name} has ${this.pendingBytes} bytes of entries queued`),
      );
    }
    return new Promise<number>((resolve, reject) => {
      this.pending.push({ entry, record, bytes, resolve, reject });
      this.pendingBytes += bytes;
      this.scheduleFlush();
    });
  }

  /**
   * Writes a snapshot now (after what is queued), whatever the size of the changes since the last;
   * resolves once it is acknowledged, rejects when the state log failed.
   */
  snapshot(): Promise<void> {
    if (this.closed) return Promise.reject(new LogClosedError(`state log ${this.name}`));
    this.snapshotWanted = true;
    this.scheduleFlush();
    return this.idle().then(() => {
      if (this.failure !== null) throw this.failure;
    });
  }

  /** Resolves when nothing is queued or in flight (a failure is reported by the commits, not here). */
  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * At once, without waiting: refuses every later commit and rejects the queued ones (not appended)
   * with `error`; batches already appended settle as usual. For a service that stops leading its
   * internal partition (src/cluster/state-services/): nothing more may be appended to a log the
   * replication follower now writes. The state log is not used again (a new one recovers the log).
   */
  /**
   * A new state log over the same partition log, recovered again from it as it is now (snapshot +
   * replay into `machine`: what a replication follower copied meanwhile), with this one's options
   * and hooks (`onAppend`, `replicate`); then this one is detached. The new one writes at open as a
   * fresh open does. What a cluster service does with its state log when a term starts. Throws
   * CorruptLogError (this one untouched) when the log cannot be recovered.
   */
  reopen(machine: StateMachine<Entry>): StateLog<Entry> {
    const { writeAtOpen: _writeAtOpen, ...options } = this.options;
    const next = new StateLog({ ...options, machine });
    this.detach(new LogClosedError(`state log ${this.name} (reopened)`));
    next.onAppend = this.onAppend;
    next.replicate = this.replicate;
    return next;
  }

  detach(error: unknown): void {
    if (this.closed) return;
    this.closed = true;
    this.failure ??= error;
    this.snapshotWanted = false;
    this.failQueued();
    this.notifyIdle();
  }

  /** Waits for what is queued and in flight, then refuses new commits. Does not close the log. */
  async close(): Promise<void> {
    await this.idle();
    this.closed = true;
  }

  private isIdle(): boolean {
    return (
      this.pending.length === 0 && this.inFlight.length === 0 && !this.flushScheduled && !this.snapshotWanted
    );
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Appends what is queued, or first the snapshot that is due (once everything appended is applied). */
  private flush(): void {
    if (this.snapshotWanted) {
      if (this.inFlight.length > 0) return; // settle() calls flush again once they are applied.
      if (this.failure === null) this.writeSnapshot();
    }
    if (this.failure !== null) {
      this.snapshotWanted = false;
      this.failQueued();
      this.notifyIdle();
      return;
    }
    const queued = this.pending;
    if (queued.length > 0) {
      this.pending = [];
      this.pendingBytes = 0;
      this.appendChanges(queued);
    }
    this.notifyIdle();
  }

  private appendChanges(queued: PendingCommit<Entry>[]): void {
    const builder = this.builder;
    let commits: PendingCommit<Entry>[] = [];
    builder.reset();
    // One record object and one timestamp for the whole turn: no allocation per entry here.
    const record: { key: string | Uint8Array | null; value: Uint8Array | null; timestamp: number } = {
      key: null,
      value: null,
      timestamp: this.nowMs(),
    };
    for (const commit of queued) {
      record.key = commit.record.key;
      record.value = commit.record.value;
      if (!this.fits(record)) {
        if (commits.length > 0) {
          this.appendBatch(builder.finish({ crc32c: crc32cOfBytes }), commits, null, 0);
          commits = [];
          builder.reset();
        }
        if (!this.fits(record)) {
          commit.reject(
            new InvalidArgumentError(
              `state log ${this.name}: an entry of ${commit.bytes} bytes does not fit one batch of ${builder.maxBatchBytes}`,
            ),
          );
          continue;
        }
      }
      commits.push(commit);
    }
    if (commits.length > 0) this.appendBatch(builder.finish({ crc32c: crc32cOfBytes }), commits, null, 0);
  }

  /**
   * Appends one finished batch (the log copies it before returning) and tracks its acknowledgement.
   * `attributes` tell a change batch (0) from a snapshot batch (control).
   */
  private appendBatch(
    batch: Uint8Array,
    commits: PendingCommit<Entry>[],
    completesSnapshot: SnapshotExtent | null,
    attributes: number,
  ): void {
    const baseOffset = this.log.logEndOffset;
    const inFlight: InFlightBatch<Entry> = {
      baseOffset,
      commits,
      settled: false,
      error: null,
      replicationError: null,
      completesSnapshot,
    };
    this.inFlight.push(inFlight);
    this.counters.appendedBatches++;
    if (attributes === 0) this.bytesSinceSnapshot += batch.length;
    this.log.append(batch).then(
      (appended) => {
        assert(
          appended.baseOffset === baseOffset,
          () => `state log ${this.name}: batch appended at ${appended.baseOffset}, expected ${baseOffset}`,
        );
        const replicate = this.replicate;
        if (replicate === null) {
          inFlight.settled = true;
          this.settle();
          // Readers of the internal topic see a batch once it is acknowledged (durable with `always`).
          this.onAppend?.();
          return;
        }
        const replicated = (): void => {
          inFlight.settled = true;
          this.settle();
          this.onAppend?.();
        };
        replicate(appended.lastOffset + 1).then(replicated, (error: unknown) => {
          inFlight.replicationError = error;
          replicated();
        });
      },
      (error: unknown) => {
        inFlight.error = error;
        inFlight.settled = true;
        this.settle();
      },
    );
    if (attributes === 0 && this.snapshotDue()) this.snapshotWanted = true;
  }

  /** Applies acknowledged batches in log order and settles their commits. */
  private settle(): void {
    while (this.inFlight.length > 0 && this.inFlight[0]!.settled) {
      const batch = this.inFlight.shift()!;
      if (batch.error !== null || this.failure !== null) {
        this.failure ??= batch.error;
        for (const commit of batch.commits) commit.reject(this.failure);
        continue;
      }
      let offset = batch.baseOffset;
      for (const commit of batch.commits) {
        if (this.failure !== null) {
          commit.reject(this.failure);
          continue;
        }
        try {
          this.machine.apply(commit.entry, offset);
        } catch (error) {
          // Callers validate before they commit: the entry is in the log and the machine cannot take
          // it, so memory and log disagree from here on. A broker in that state must not serve.
          unreachable(
            () =>
              `state log ${this.name}: the machine refused the committed entry at offset ${offset}: ${error instanceof Error ? error.message : String(error)}`,
          );
        }
        this.counters.committedEntries++;
        if (batch.replicationError !== null) commit.reject(batch.replicationError);
        else commit.resolve(offset);
        offset++;
      }
      if (batch.completesSnapshot !== null) this.snapshotAcknowledged(batch.completesSnapshot);
    }
    if (this.inFlight.length === 0) {
      if (this.snapshotWanted || this.pending.length > 0) this.scheduleFlush();
      else this.notifyIdle();
    }
  }

  /** Writes the whole state as a snapshot. Only when nothing is in flight: the machine is the log. */
  private writeSnapshot(): void {
    this.snapshotWanted = false;
    const entries: EncodedEntry[] = [];
    try {
      for (const entry of this.machine.snapshot()) entries.push(this.codec.encode(entry));
    } catch (error) {
      this.failure = error;
      return;
    }
    const beginOffset = this.log.logEndOffset;
    const builder = this.builder;
    const timestamp = this.nowMs();
    let bytes = 0;
    const finish = (last: SnapshotExtent | null): void => {
      const batch = builder.finish({ crc32c: crc32cOfBytes, attributes: BatchAttributes.control });
      if (last !== null) last.bytes = bytes + batch.length;
      bytes += batch.length;
      this.appendBatch(batch, [], last, BatchAttributes.control);
      builder.reset();
    };
    // The begin and end markers go in batches of their own: damage to any one batch of a snapshot
    // can then be told apart from damage to changes (state-log-recovery.ts).
    builder.reset();
    builder.append({
      key: null,
      value: markerCodec.encode({ version: 1, entryCount: entries.length }),
      headers: markerHeaders.begin,
      timestamp,
    });
    finish(null);
    for (const entry of entries) {
      const record = { key: entry.key, value: entry.value, timestamp };
      if (this.fits(record)) continue;
      finish(null);
      if (!this.fits(record)) {
        this.failure = new InvalidArgumentError(
          `state log ${this.name}: a snapshot entry of ${(entry.key?.length ?? 0) + (entry.value?.length ?? 0)} bytes does not fit one batch of ${builder.maxBatchBytes}`,
        );
        return;
      }
    }
    if (builder.recordCount > 0) finish(null);
    builder.append({
      key: null,
      value: markerCodec.encode({ version: 1, entryCount: entries.length, beginOffset }),
      headers: markerHeaders.end,
      timestamp,
    });
    finish({
      beginOffset,
      endOffset: beginOffset + entries.length + 1,
      entryCount: entries.length,
      bytes: 0,
    });
    this.lastSnapshotBytes = bytes;
    this.counters.snapshotsWritten++;
    this.bytesSinceSnapshot = 0;
  }

  /** Appends `record` to the builder; false when the batch is full (or the record can never fit). */
  private fits(record: {
    key: string | Uint8Array | null;
    value: Uint8Array | null;
    timestamp: number;
  }): boolean {
    try {
      return this.builder.append(record);
    } catch {
      // BatchBuilder refuses a record larger than any batch it can make.
      return false;
    }
  }

  /** A snapshot is acknowledged: segments below the one before it are no longer needed. */
  private snapshotAcknowledged(snapshot: SnapshotExtent): void {
    this.snapshots.push(snapshot);
    if (this.snapshots.length > 2) this.snapshots.shift();
    if (this.snapshots.length < 2) return;
    try {
      this.log.deleteBelow(this.snapshots[0]!.beginOffset);
      this.cleanupFailure = null;
    } catch (error) {
      // Keeping segments longer is harmless; the next snapshot tries again.
      this.cleanupFailure = error;
    }
  }

  private failQueued(): void {
    const queued = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    for (const commit of queued) commit.reject(this.failure);
  }

  private notifyIdle(): void {
    if (!this.isIdle()) return;
    for (const waiter of this.idleWaiters.splice(0)) waiter();
  }
}
