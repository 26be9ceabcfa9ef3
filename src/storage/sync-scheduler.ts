/**
 * Flushing a partition log to disk: rounds of fdatasync, each covering everything appended before
 * it started, shared by every append waiting on it (group commit); one round at a time per log, two
 * while the log is lightly loaded (below). Durability modes:
 *
 *  - `none`:     appends are acknowledged after the write into the page cache; the OS writes back.
 *                (The log still syncs a segment in the background when it rolls, for recovery.)
 *  - `interval`: acknowledged after the write; a timer syncs every `flushIntervalMs`.
 *  - `always`:   acknowledged only when an fdatasync that started after the batch was written has
 *                completed. Appends arriving while a sync is in flight wait for the next round. On
 *                a lightly loaded log (the last round acknowledged at most `syncPipelineWaitersMax`
 *                appends) that round starts at once beside the one in flight (at most
 *                `syncRoundsInFlightMax` in flight): a lone append waits for one fdatasync, not
 *                for the rest of the previous one plus its own (issue 15: the `always` latency
 *                tail). Under load the next round starts when the current one ends, so each
 *                fdatasync covers every append that arrived meanwhile (group commit: throughput).
 *
 * Rounds complete in the order they started: a round's offset counts only once every earlier round
 * has completed too (an earlier round synced files the later one left out), so the durable offset
 * only ever moves forward over data that is on disk.
 *
 * fdatasync runs in libuv's thread pool, so the event loop does not block on the disk, except for
 * the rounds of a lightly loaded `always` log while the process's budget allows (inline-sync.ts: no
 * other round in flight, one file, the last round acknowledged at most `syncPipelineWaitersMax`
 * appends): those run it on the event loop, sparing the acknowledgement two thread hand-offs. A failed
 * fdatasync (EIO) poisons the log: Linux may already have dropped the dirty pages, so retrying could
 * report success for lost data. Every waiter gets the error, and so does every later sync.
 */
import { fdatasync, fdatasyncSync, fsync } from 'node:fs';
import { BackpressureError, LogTruncatedError, type SpillwayError, storageErrorFrom } from '../errors.js';
import { pendingSyncAppendCountMax, syncPipelineWaitersMax, syncRoundsInFlightMax } from '../limits.js';
import type { InlineSyncBudget } from './inline-sync.js';

export type Durability = 'none' | 'interval' | 'always';
export const durabilities: readonly Durability[] = ['none', 'interval', 'always'];

/** What a sync needs from the log: the files with unsynced data, captured when the sync starts. */
export interface SyncTarget {
  /** Offset after the last appended record: what a sync started now can cover at most. */
  endOffset(): number;
  /**
   * The files to sync in a round that must cover every offset below `neededOffset` (the largest
   * offset a waiter asked for), each with a callback to call when its sync ended, and the offset the
   * round covers once they are synced (at least `neededOffset`). A target may leave out files that
   * hold only later offsets (the log leaves out its active segment when only sealed data is needed).
   */
  takeRound(neededOffset: number): { offset: number; files: SyncFile[] };
  /** Called after a sync covering everything below `offset` succeeded. */
  onSynced(offset: number): void;
}

/** A file a round syncs. */
export interface SyncFile {
  fd: number;
  /** Called when the round's sync of it ended (succeeded or not). */
  done: () => void;
  /**
   * Another fdatasync of the file is in flight (the zeros a segment syncs ahead of its data): a
   * round's fdatasync would wait for its writeback, so it never runs on the event loop.
   */
  busy?: boolean;
}

interface Waiter {
  offset: number;
  resolve: () => void;
  reject: (error: Error) => void;
}

/** Syncs one file: fdatasync, or fsync for a directory. Replaceable in tests (SyncScheduler's constructor). */
export type SyncFileFunction = (fd: number, directory: boolean) => Promise<void>;

/**
 * Rounds of a lightly loaded log synced on the event loop (inline-sync.ts): the process's budget,
 * and the blocking fdatasync (TEST-ONLY replaceable).
 */
export interface InlineSync {
  budget: InlineSyncBudget;
  fdatasync?: (fd: number) => void;
}

function syncFile(fd: number, directory: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (error: NodeJS.ErrnoException | null) => (error ? reject(error) : resolve());
    if (directory) fsync(fd, done);
    else fdatasync(fd, done);
  });
}

export class SyncScheduler {
  private readonly target: SyncTarget;
  private readonly directoryFd: number;
  private readonly syncFile: SyncFileFunction;
  private syncedOffset: number;
  /** Rounds started and not yet completed, oldest first (at most syncRoundsInFlightMax). */
  private readonly rounds: Array<{ offset: number; done: Promise<void> }> = [];
  private startScheduled = false;
  private waiters: Waiter[] = [];
  private directoryDirty = false;
  private failure: SpillwayError | null = null;
  /** Truncations so far: a sync that started before one must not advance the synced offset. */
  private truncations = 0;
  /** Number of fdatasync rounds completed, for metrics and tests of group commit. */
  syncCount = 0;
  /** The most rounds in flight at once so far (tests of the pipelining). */
  roundsInFlightPeak = 0;
  /** Appends the last completed round acknowledged: few means a lightly loaded log (pipelining). */
  private lastRoundWaiters = 0;
  private readonly inline: InlineSync | null;
  private readonly fdatasyncInline: (fd: number) => void;
  /** Rounds whose fdatasync ran on the event loop (of `syncCount`). */
  inlineSyncCount = 0;

  /**
   * `sync`: TEST-ONLY replacement of fdatasync/fsync (to hold rounds in flight, or fail them).
   * `inline`: given (durability `always`), a round of a lightly loaded log may run its fdatasync on
   * the event loop while the budget allows (`mayRunInline`, `runInline`).
   */
  constructor(
    target: SyncTarget,
    directoryFd: number,
    syncedOffset: number,
    sync: SyncFileFunction = syncFile,
    inline: InlineSync | null = null,
  ) {
    this.target = target;
    this.directoryFd = directoryFd;
    this.syncedOffset = syncedOffset;
    this.syncFile = sync;
    this.inline = inline;
    this.fdatasyncInline = inline?.fdatasync ?? fdatasyncSync;
  }

  get durableOffset(): number {
    return this.syncedOffset;
  }

  get failed(): SpillwayError | null {
    return this.failure;
  }

  get pendingWaiterCount(): number {
    return this.waiters.length;
  }

  /** A new file was created in the log's directory: the next sync also fsyncs the directory. */
  markDirectoryDirty(): void {
    this.directoryDirty = true;
  }

  /**
   * The log was cut at `offset`: lowers the synced offset, fails the appends waiting for data that
   * no longer exists, and makes a sync that started before the cut count for nothing beyond it.
   */
  truncatedTo(offset: number): void {
    this.truncations++;
    if (offset < this.syncedOffset) this.syncedOffset = offset;
    const remaining: Waiter[] = [];
    for (const waiter of this.waiters) {
      if (waiter.offset > offset) {
        waiter.reject(
          new LogTruncatedError(`the log was truncated to offset ${offset} before this append was synced`),
        );
      } else {
        remaining.push(waiter);
      }
    }
    this.waiters = remaining;
  }

  /**
   * Fails the log from outside a round: an fdatasync of the log's files made elsewhere (the zeros a
   * segment syncs ahead of its data) failed. Linux reports a writeback error once per descriptor,
   * so the rounds' own fdatasync could no longer see it: every waiter and every later sync fails.
   */
  fail(error: SpillwayError): void {
    if (this.failure !== null) return;
    this.failure = error;
    this.rejectAll(error);
  }

  /** Resolves once everything below `offset` is on disk; starts a sync if none is running. */
  waitFor(offset: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (offset <= this.syncedOffset) return Promise.resolve();
    if (this.pendingWaiterCount >= pendingSyncAppendCountMax) {
      return Promise.reject(
        new BackpressureError(`${pendingSyncAppendCountMax} appends already wait for a sync`),
      );
    }
    const promise = new Promise<void>((resolve, reject) => {
      this.waiters.push({ offset, resolve, reject });
    });
    this.scheduleStart();
    return promise;
  }

  /** Syncs everything appended so far (used by the interval timer, rolls and close). */
  syncAll(): Promise<void> {
    return this.waitFor(this.target.endOffset());
  }

  /** Resolves when no sync is running or about to start. */
  async idle(): Promise<void> {
    while (this.rounds.length > 0 || this.startScheduled) {
      const last = this.rounds.at(-1);
      if (last !== undefined) await last.done.catch(() => undefined);
      else await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** The offset the rounds in flight will have synced when they complete (the synced offset if none). */
  private get coveredOffset(): number {
    return this.rounds.length > 0 ? this.rounds.at(-1)!.offset : this.syncedOffset;
  }

  private start(): void {
    let neededOffset = 0;
    for (const waiter of this.waiters) neededOffset = Math.max(neededOffset, waiter.offset);
    const { offset, files } = this.target.takeRound(neededOffset);
    const syncDirectory = this.directoryDirty;
    this.directoryDirty = false;
    if (this.mayRunInline(files, syncDirectory)) {
      this.runInline(offset, files[0]!, this.truncations);
      return;
    }
    const previous = this.rounds.at(-1)?.done ?? null;
    const round = { offset, done: Promise.resolve() };
    round.done = this.run(offset, files, syncDirectory, this.truncations, previous);
    this.rounds.push(round);
    this.roundsInFlightPeak = Math.max(this.roundsInFlightPeak, this.rounds.length);
  }

  /** Never rejects: a failure poisons the scheduler and fails the waiters instead. */
  private async run(
    offset: number,
    files: SyncFile[],
    syncDirectory: boolean,
    truncations: number,
    previous: Promise<void> | null,
  ): Promise<void> {
    let error: SpillwayError | null = null;
    try {
      await Promise.all(files.map((file) => this.syncFile(file.fd, false)));
      if (syncDirectory) await this.syncFile(this.directoryFd, true);
    } catch (cause) {
      error = storageErrorFrom('fdatasync', cause);
    } finally {
      for (const file of files) file.done();
    }
    // Complete in start order: what this round left out, an earlier round synced.
    if (previous !== null) await previous.catch(() => undefined);
    this.rounds.shift();
    this.complete(offset, truncations, error);
  }

  /**
   * Inline only for a round with one file that no other fdatasync is writing back and no directory
   * to sync, with no round in flight (so it completes in order), on a lightly loaded log (the last
   * round acknowledged at most `syncPipelineWaitersMax` appends), while the process's budget allows;
   * never the first round (at open, a recovered log may have a whole segment to write back).
   */
  private mayRunInline(files: readonly SyncFile[], syncDirectory: boolean): boolean {
    return (
      this.inline !== null &&
      this.syncCount > 0 &&
      files.length === 1 &&
      files[0]!.busy !== true &&
      !syncDirectory &&
      this.rounds.length === 0 &&
      this.lastRoundWaiters <= syncPipelineWaitersMax &&
      this.inline.budget.allows()
    );
  }

  /** A round whose fdatasync runs on the event loop: completed before this returns. */
  private runInline(offset: number, file: SyncFile, truncations: number): void {
    const budget = this.inline!.budget;
    let error: SpillwayError | null = null;
    const startedMs = budget.clock();
    try {
      this.fdatasyncInline(file.fd);
    } catch (cause) {
      error = storageErrorFrom('fdatasync', cause);
    } finally {
      file.done();
    }
    budget.record(budget.clock() - startedMs);
    this.inlineSyncCount++;
    this.complete(offset, truncations, error);
  }

  /** After a round's syncs ended (in start order): the synced offset, the waiters, the next round. */
  private complete(offset: number, truncations: number, error: SpillwayError | null): void {
    this.syncCount++;
    if (error && this.failure === null) {
      this.failure = error;
      this.rejectAll(error);
    }
    if (this.failure !== null) return;
    if (truncations === this.truncations && offset > this.syncedOffset) this.syncedOffset = offset;
    this.target.onSynced(this.syncedOffset);
    this.lastRoundWaiters = this.resolveUpTo(this.syncedOffset);
    if (this.pendingWaiterCount > 0) this.scheduleStart();
  }

  /** How many rounds may be in flight now: more than one only while the log is lightly loaded. */
  private get roundsAllowed(): number {
    return this.lastRoundWaiters <= syncPipelineWaitersMax ? syncRoundsInFlightMax : 1;
  }

  /**
   * Starts the next sync round after the current turn of the event loop (setImmediate), not at once:
   * appenders that were just acknowledged get to append again first, so one fdatasync covers all of
   * them instead of alternating between one and the rest. A round starts only for waiters the rounds
   * in flight do not cover, and only while fewer than `roundsAllowed` are in flight (the completion
   * of one schedules the next).
   */
  private scheduleStart(): void {
    if (this.startScheduled || this.rounds.length >= this.roundsAllowed) return;
    this.startScheduled = true;
    setImmediate(() => {
      this.startScheduled = false;
      if (this.failure !== null || this.rounds.length >= this.roundsAllowed) return;
      if (this.waiters.some((waiter) => waiter.offset > this.coveredOffset)) this.start();
    });
  }

  /** Resolves the waiters covered by `offset`; returns how many. */
  private resolveUpTo(offset: number): number {
    // Waiters are not necessarily sorted (a truncation can lower offsets): resolve every covered one.
    const remaining: Waiter[] = [];
    for (const waiter of this.waiters) {
      if (waiter.offset <= offset) waiter.resolve();
      else remaining.push(waiter);
    }
    const resolved = this.waiters.length - remaining.length;
    this.waiters = remaining;
    return resolved;
  }

  private rejectAll(error: Error): void {
    for (const waiter of this.waiters) waiter.reject(error);
    this.waiters = [];
  }
}
