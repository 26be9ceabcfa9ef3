/**
 * Reads one data partition led by another broker for one queue partition of the queue service
 * (docs/CLUSTER.md "Built: shared and key_shared queues"): a `QueuePartitionSource`
 * (src/broker/queues/queue-partition-source.ts) backed by a bounded cache that a background loop
 * fills with the ordinary FETCH, long-polling the partition's leader.
 *
 * Contract:
 * - **Only committed data**: FETCH answers only below the leader's high watermark, so nothing cached
 *   can be truncated away by a later leader. `visibleEndOffset` is the leader's high watermark as
 *   last heard (at least the end of what is cached: `cachedEndOffset`), so a queue's lag counts
 *   what is not cached yet; reads past the cache miss.
 * - **Never blocks**: `read` answers from the cache only; a miss returns no batch (the offset waits)
 *   and, for an offset below the cache's start, restarts the cache there (the refetch). A fetch that
 *   brings batches calls `onData` (the queue wakes its waiting receives).
 * - **Bounded**: the cache holds whole batches from the batch holding the queue's ack floor
 *   (`floor()`) up to `floor + windowOffsets` offsets, at most `cacheBytesMax` bytes (one batch at
 *   least) and, with every reader of the broker, `budget.bytesMax`; at a bound it does not fetch
 *   until `settled()` (acks moved the floor) or another reader freed bytes (the bounds are checked
 *   before each fetch: one answer, at most `fetchBytesMax`, may pass them). A reader with nothing
 *   cached fetches whenever the shared budget has room. Batches below the floor
 *   are dropped at every fetch and `settled()`.
 * - **Retention**: `logStartOffset` is the leader's log start as last heard (every FETCH answer says
 *   it). A fetch below it (OFFSET_OUT_OF_RANGE: the leader deleted what the cache was about to fetch)
 *   asks the leader's log start (LIST_OFFSET earliest), moves the fetch offset there and calls
 *   `onData` (the queue skips what is gone); a read below it never restarts the cache.
 * - **Follows the leader**: before each fetch it asks `route()` who leads the partition now (the
 *   cluster's view); an error (NOT_LEADER, a lost connection, a timeout) backs off 50 ms doubling to
 *   1 s and asks again.
 * - `close()`: the loop ends (an outstanding fetch is aborted), the cache is dropped and its bytes
 *   returned to the budget. Single-threaded (one event loop).
 */
import type { Transport } from '../../client/transport.js';
import { type Clock, type ClockTimer, systemClock } from '../../clock.js';
import { SpillwayError } from '../../errors.js';
import { batchBaseOffset, batchLengthAt, batchRecordCountAt } from '../../format/batch-header.js';
import {
  queueRemoteCacheBytesMax,
  queueRemoteFetchBytesMax,
  queueRemoteFetchWaitMs,
  queueUnackedPerPartitionMax,
} from '../../limits.js';
import { Opcode } from '../../protocol/opcodes.js';
import { listOffsetOn } from './leader-fetch.js';

/** The bytes every reader of a broker caches together, and the readers waiting for some to free. */
export class RemoteCacheBudget {
  bytes = 0;
  private readonly waiting = new Set<() => void>();

  constructor(readonly bytesMax: number) {}

  get full(): boolean {
    return this.bytes >= this.bytesMax;
  }

  /** `bytes` were freed: readers waiting for room look again. */
  release(bytes: number): void {
    this.bytes -= bytes;
    if (bytes > 0 && this.waiting.size > 0) for (const wake of [...this.waiting]) wake();
  }

  waitFor(wake: () => void): () => void {
    this.waiting.add(wake);
    return () => this.waiting.delete(wake);
  }
}

export interface RemoteReaderOptions {
  topic: string;
  partition: number;
  /** The partition's leader now (another broker), or undefined while none is known. */
  route(): { brokerId: number; url: string } | undefined;
  connect(url: string): Promise<Transport>;
  /** The queue partition's ack floor now. */
  floor(): number;
  /** New batches arrived. */
  onData(): void;
  budget: RemoteCacheBudget;
  /** Default queueRemoteCacheBytesMax. */
  cacheBytesMax?: number;
  /** Default queueUnackedPerPartitionMax. */
  windowOffsets?: number;
  /** Default queueRemoteFetchWaitMs. */
  fetchWaitMs?: number;
  /** Default queueRemoteFetchBytesMax. */
  fetchBytesMax?: number;
  clock?: Clock;
}

/** One cached batch: `bytes` is a view of a fetch answer's body (batches of one body are contiguous). */
interface CachedBatch {
  base: number;
  last: number;
  chunk: Uint8Array;
  start: number;
  end: number;
}

const backoffMsMin = 50;
const backoffMsMax = 1000;

export class RemotePartitionReader {
  readonly index: number;
  readonly damage = null;
  /** Cached batches, contiguous, in offset order. */
  private batches: CachedBatch[] = [];
  /** Next offset to fetch (the end of the cache). */
  private fetchOffset: number;
  private cachedBytes = 0;
  /** The leader's high watermark in the last FETCH answer. */
  private highWatermark = 0;
  /** The leader's log start as last heard. */
  private logStart = 0;
  private closed = false;
  private sleeper: { timer: ClockTimer | null; wake: () => void } | null = null;
  private abort: AbortController | null = null;
  private readonly clock: Clock;
  private readonly options: RemoteReaderOptions;
  /** What the reader did (tests, describe). */
  readonly stats = { fetches: 0, fetchErrors: 0, misses: 0, restarts: 0, skips: 0, lastError: '' };
  /** Brokers fetched from, in order of first use (tests: the leader moves). */
  readonly leadersUsed: number[] = [];

  constructor(options: RemoteReaderOptions) {
    this.options = options;
    this.index = options.partition;
    this.clock = options.clock ?? systemClock;
    this.fetchOffset = Math.max(0, options.floor());
    void this.run();
  }

  /** Offset after the last record a consumer may read, as last heard from the leader. */
  get visibleEndOffset(): number {
    return Math.max(this.fetchOffset, this.highWatermark);
  }

  /** The first offset the leader still holds, as last heard (retention moves it). */
  get logStartOffset(): number {
    return this.logStart;
  }

  /** Offset after the last cached record. */
  get cachedEndOffset(): number {
    return this.fetchOffset;
  }

  /** Bytes cached now. */
  get bytes(): number {
    return this.cachedBytes;
  }

  /** The offset the cache starts at (the first cached batch's base), or the fetch offset when empty. */
  get cacheStartOffset(): number {
    return this.batches[0]?.base ?? this.fetchOffset;
  }

  read(offset: number, maxBytes: number): { records: Uint8Array; batchCount: number } {
    const batches = this.batches;
    let low = 0;
    let high = batches.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (batches[middle]!.last < offset) low = middle + 1;
      else high = middle;
    }
    const first = batches[low];
    if (first === undefined || first.base > offset) {
      this.stats.misses++;
      // Below the floor nothing is wanted (it is settled): no refetch for it.
      // Below the log start it is gone (the queue skips it): no refetch either.
      if (offset < this.cacheStartOffset && offset >= this.options.floor() && offset >= this.logStart)
        this.restartAt(offset);
      return { records: empty, batchCount: 0 };
    }
    let end = first.end;
    let count = 1;
    for (let index = low + 1; index < batches.length; index++) {
      const next = batches[index]!;
      if (next.chunk !== first.chunk || next.start !== end || next.end - first.start > maxBytes) break;
      end = next.end;
      count++;
    }
    return { records: first.chunk.subarray(first.start, end), batchCount: count };
  }

  /** The queue settled offsets (its floor may have moved): drop what is below it, fetch again. */
  settled(): void {
    if (this.trim() > 0) this.kick();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.abort?.abort();
    this.dropAll();
    this.kick();
  }

  /** Drops every cached batch and fetches from `offset` (a read below the cache start). */
  private restartAt(offset: number): void {
    this.stats.restarts++;
    this.dropAll();
    this.fetchOffset = offset;
    this.abort?.abort();
    this.kick();
  }

  private dropAll(): void {
    this.batches = [];
    this.options.budget.release(this.cachedBytes);
    this.cachedBytes = 0;
  }

  /** Drops the batches wholly below the floor; returns the bytes freed. */
  private trim(): number {
    const floor = this.options.floor();
    let drop = 0;
    let freed = 0;
    while (drop < this.batches.length && this.batches[drop]!.last < floor) {
      const batch = this.batches[drop]!;
      freed += batch.end - batch.start;
      drop++;
    }
    if (drop === 0) {
      if (this.batches.length === 0 && this.fetchOffset < floor) this.fetchOffset = floor;
      return 0;
    }
    this.batches.splice(0, drop);
    this.cachedBytes -= freed;
    this.options.budget.release(freed);
    if (this.batches.length === 0 && this.fetchOffset < floor) this.fetchOffset = floor;
    return freed;
  }

  /** True while a bound stops fetching. */
  private get full(): boolean {
    const { options } = this;
    if (this.batches.length === 0) return options.budget.full;
    if (this.fetchOffset >= options.floor() + (options.windowOffsets ?? queueUnackedPerPartitionMax))
      return true;
    return this.cachedBytes >= (options.cacheBytesMax ?? queueRemoteCacheBytesMax) || options.budget.full;
  }

  private async run(): Promise<void> {
    const { options } = this;
    let backoffMs = backoffMsMin;
    while (!this.closed) {
      this.trim();
      if (this.full) {
        const unsubscribe = options.budget.waitFor(() => this.kick());
        await this.sleep(backoffMsMax);
        unsubscribe();
        continue;
      }
      const route = options.route();
      if (route === undefined) {
        await this.sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, backoffMsMax);
        continue;
      }
      try {
        await this.fetchFrom(route);
        backoffMs = backoffMsMin;
      } catch (error) {
        if (this.closed) return;
        if (this.abort?.signal.aborted === true) continue; // a restart: fetch again at once
        if (error instanceof SpillwayError && error.code === 'OFFSET_OUT_OF_RANGE') {
          try {
            if (await this.skipToLogStart(route)) {
              backoffMs = backoffMsMin;
              continue;
            }
          } catch {
            // Counted below with the fetch's error; asked again after the backoff.
          }
        }
        this.stats.fetchErrors++;
        this.stats.lastError = error instanceof Error ? error.message : String(error);
        await this.sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, backoffMsMax);
      }
    }
  }

  private async fetchFrom(route: { brokerId: number; url: string }): Promise<void> {
    const { options } = this;
    const transport = await options.connect(route.url);
    if (this.closed) return;
    if (!this.leadersUsed.includes(route.brokerId)) this.leadersUsed.push(route.brokerId);
    const offset = this.fetchOffset;
    const waitMs = options.fetchWaitMs ?? queueRemoteFetchWaitMs;
    const abort = new AbortController();
    this.abort = abort;
    this.stats.fetches++;
    const answer = await transport.request(
      Opcode.fetch,
      {
        topic: options.topic,
        partition: options.partition,
        offset,
        maxBytes: options.fetchBytesMax ?? queueRemoteFetchBytesMax,
        maxWaitMs: waitMs,
      },
      undefined,
      { timeoutMs: waitMs + 10_000, signal: abort.signal },
    );
    if (this.closed || abort.signal.aborted || this.fetchOffset !== offset) return;
    const header = answer.header as { highWatermark?: unknown };
    if (typeof header.highWatermark !== 'number') {
      throw new SpillwayError(
        'PROTOCOL_ERROR',
        `FETCH answer without highWatermark from broker ${route.brokerId}`,
      );
    }
    this.highWatermark = header.highWatermark;
    const logStart = (answer.header as { logStartOffset?: unknown }).logStartOffset;
    if (typeof logStart === 'number' && logStart > this.logStart) {
      this.logStart = logStart;
      if (logStart > options.floor()) options.onData(); // the queue skips what is gone
    }
    const body = answer.body;
    if (body.length === 0) return;
    // Owned from here (the transport's buffer may be reused); one copy per answer.
    const chunk = body.slice();
    let added = 0;
    for (let position = 0; position < chunk.length; ) {
      const length = batchLengthAt(chunk, position);
      const base = batchBaseOffset(chunk, position);
      const last = base + batchRecordCountAt(chunk, position) - 1;
      const start = position;
      position += length;
      if (last < this.fetchOffset || base >= header.highWatermark) continue;
      this.batches.push({ base, last, chunk, start, end: position });
      this.cachedBytes += length;
      options.budget.bytes += length;
      this.fetchOffset = last + 1;
      added++;
    }
    if (added > 0) options.onData();
  }

  /**
   * The fetch offset fell below the leader's log start: asks the leader where its log starts now and
   * moves there (what was cached is below it: dropped). False when the offset is not below it (past
   * the leader's end: an error like any other).
   */
  private async skipToLogStart(route: { brokerId: number; url: string }): Promise<boolean> {
    const { options } = this;
    const transport = await options.connect(route.url);
    const offset = this.fetchOffset;
    const start = await listOffsetOn(transport, options.topic, options.partition, 'earliest', {
      timeoutMs: 10_000,
    });
    if (this.closed || this.fetchOffset !== offset) return true;
    if (start <= offset) return false;
    this.logStart = Math.max(this.logStart, start);
    this.stats.skips++;
    this.dropAll();
    this.fetchOffset = start;
    options.onData();
    return true;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const sleeper = {
        timer: null as ClockTimer | null,
        wake: () => {
          this.clock.clearTimer(sleeper.timer);
          if (this.sleeper === sleeper) this.sleeper = null;
          resolve();
        },
      };
      sleeper.timer = this.clock.setTimeout(sleeper.wake, ms, { unref: true });
      this.sleeper = sleeper;
    });
  }

  private kick(): void {
    this.sleeper?.wake();
  }
}

const empty = new Uint8Array(0);
